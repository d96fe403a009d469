//! The domain's words: every status, mode, trigger and stream name, each with one spelling.
//! The words are what PostgreSQL stores (readable in SQL, checked by the migrations' CHECKs);
//! the API maps each enum to its proto enum in one place (`api::convert`).

use std::fmt;
use std::str::FromStr;

/// A closed set of stored words.
pub trait Word: Copy + Eq + Sized + 'static {
    /// Every value, in the order the words are listed to users.
    const ALL: &'static [Self];
    /// The type's name in errors ("run status").
    const WHAT: &'static str;
    fn word(self) -> &'static str;
    fn parse(word: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.word() == word)
    }
    /// "a, b, c": the allowed words, for error messages.
    fn listing() -> String {
        Self::ALL.iter().map(|v| v.word()).collect::<Vec<_>>().join(", ")
    }
}

/// A word that is not one of its type's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownWord {
    pub what: &'static str,
    pub word: String,
    pub allowed: String,
}

impl fmt::Display for UnknownWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.word.chars().take(64).collect();
        write!(f, "unknown {} {shown:?}; one of {}", self.what, self.allowed)
    }
}

impl std::error::Error for UnknownWord {}

macro_rules! words {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// The stored spelling (also callable in constants, which the trait's is not).
            pub const fn word(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }
        }

        impl Word for $name {
            const ALL: &'static [Self] = &[$($name::$variant),+];
            const WHAT: &'static str = $what;
            fn word(self) -> &'static str {
                $name::word(self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.word())
            }
        }

        impl FromStr for $name {
            type Err = UnknownWord;
            fn from_str(word: &str) -> Result<Self, UnknownWord> {
                <$name as Word>::parse(word).ok_or_else(|| UnknownWord {
                    what: $what,
                    word: word.to_string(),
                    allowed: <$name as Word>::listing(),
                })
            }
        }
    };
}

words!(
    /// A sync run's state (`sync_runs.status`).
    RunStatus, "run status" {
        Queued = "queued", Running = "running", Succeeded = "succeeded", Failed = "failed", Cancelled = "cancelled",
    }
);

impl RunStatus {
    /// Succeeded, failed or cancelled: the run will not change again.
    pub fn is_finished(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Running)
    }
}

words!(
    /// What a run does: pull Git into PostgreSQL, apply PostgreSQL to the cluster, or both; or
    /// import the cluster's inventory (nodes, workloads, VMs), which touches neither.
    SyncMode, "sync mode" { Pull = "pull", Apply = "apply", Full = "full", Inventory = "inventory" }
);

impl SyncMode {
    pub fn pulls(self) -> bool {
        matches!(self, SyncMode::Pull | SyncMode::Full)
    }
    pub fn applies(self) -> bool {
        matches!(self, SyncMode::Apply | SyncMode::Full)
    }
}

words!(
    /// Who started a run.
    Trigger, "trigger" { User = "user", Schedule = "schedule", SelfHeal = "self_heal", Webhook = "webhook" }
);

words!(
    /// A fabric's last pull (`fabrics.sync_status`).
    SyncStatus, "sync status" { NeverSynced = "never_synced", Syncing = "syncing", Synced = "synced", Failed = "failed" }
);

words!(
    /// A fabric's aggregate drift (`fabrics.drift_status`).
    FabricDrift, "fabric drift status" { Unknown = "unknown", InSync = "in_sync", Drifted = "drifted" }
);

words!(
    /// A resource's drift (`resources.drift_status`).
    DriftStatus, "drift status" {
        InSync = "in_sync",
        Drifted = "drifted",
        /// Desired, absent in the cluster.
        Missing = "missing",
        /// In the cluster with the fabric's label, not desired.
        Orphaned = "orphaned",
        /// No live view to compare with.
        Unknown = "unknown",
        /// Drifted, and self-heal stopped reverting it: another writer keeps changing it.
        Contested = "contested",
    }
);

impl DriftStatus {
    /// Whether the resource makes its fabric drifted (the SQL function fabricsync_store_drift
    /// spells the same set, as `counts_as_drift_words` checks).
    pub fn counts_as_drift(self) -> bool {
        matches!(self, DriftStatus::Drifted | DriftStatus::Missing | DriftStatus::Orphaned | DriftStatus::Contested)
    }
    /// The words of the statuses that count as drift, for SQL filters.
    pub fn drifted_words() -> Vec<&'static str> {
        DriftStatus::ALL.iter().filter(|s| s.counts_as_drift()).map(|s| s.word()).collect()
    }
}

words!(
    /// A fabric's cluster watch (`fabrics.watch_status`).
    WatchStatus, "watch status" { Inactive = "inactive", Starting = "starting", Active = "active", Error = "error" }
);

words!(
    /// Which objects of the watched kinds a fabric's watch sees (`fabrics.watch_scope`): every
    /// one in the cluster, the namespaced ones only in the fabric's namespace, or only those
    /// carrying the fabric's label. Fabrics that share a cluster tell their objects apart so.
    WatchScope, "watch scope" { Cluster = "cluster", Namespace = "namespace", Labelled = "labelled" }
);

words!(
    /// A switch's rollout: what its Hedgehog Agent applied of the configuration it was given.
    RolloutState, "rollout state" {
        /// The agent applied the current generation and its heartbeat is recent.
        UpToDate = "up_to_date",
        /// The agent has not applied the current generation yet.
        Applying = "applying",
        /// No heartbeat for longer than the stale threshold: what it runs is not known now.
        Stale = "stale",
        /// No agent for the switch (not installed, not yet registered).
        Unknown = "unknown",
    }
);

words!(
    /// A resource's health (`resources.health`): whether the object does its job, apart from
    /// whether it matches Git (drift). Listed from the worst.
    Health, "health" {
        /// The last apply failed, or the switch's agent went silent.
        Degraded = "degraded",
        /// Desired, not in the cluster.
        Missing = "missing",
        /// In the cluster, not in effect yet (a switch's agent has not applied it).
        Progressing = "progressing",
        /// Not known: no live view yet, or a switch without an agent.
        Unknown = "unknown",
        /// In the cluster and, for a switch, applied by its agent.
        Healthy = "healthy",
    }
);

words!(
    /// Whether a repository or cluster was last reached (`*.connection_status`).
    ConnectionStatus, "connection status" { Unknown = "unknown", Reachable = "reachable", Failed = "failed" }
);

words!(
    /// A resource's last apply (`resources.apply_status`).
    ApplyStatus, "apply status" { Pending = "pending", Applied = "applied", Failed = "failed", Unchanged = "unchanged" }
);

words!(
    /// The Git hosting a repository is on.
    Provider, "provider" { Generic = "generic", Github = "github", Gitlab = "gitlab", Gitea = "gitea", Bitbucket = "bitbucket" }
);

words!(
    /// How a repository authenticates.
    AuthType, "auth type" { None = "none", Token = "token", Basic = "basic", SshKey = "ssh_key" }
);

words!(
    /// What a run does to one object.
    ChangeAction, "change action" { Create = "create", Update = "update", Delete = "delete", Unchanged = "unchanged" }
);

words!(
    /// How a fabric's GitOps directory is laid out (`fabrics.layout`, found by each pull; see `sources`).
    Layout, "layout" { Unknown = "unknown", Plain = "plain", Hnp = "hnp" }
);

words!(
    /// How a write to a fabric's repository ended.
    WriteOutcome, "write outcome" { Committed = "committed", Unchanged = "unchanged", Rejected = "rejected", DryRun = "dry_run" }
);

words!(
    /// The event log's streams (`events.stream`).
    Stream, "stream" { Progress = "progress", Watch = "watch", Drift = "drift" }
);

words!(
    /// The cluster objects an inventory imports (see `inventory`).
    InventoryKind, "inventory kind" {
        Node = "node",
        Namespace = "namespace",
        Deployment = "deployment",
        StatefulSet = "statefulset",
        DaemonSet = "daemonset",
        Pod = "pod",
        Service = "service",
        /// KubeVirt's (kubevirt.io/v1).
        VirtualMachine = "virtualmachine",
        VirtualMachineInstance = "virtualmachineinstance",
    }
);

words!(
    /// What a pod runs: containers, or a KubeVirt VM (its virt-launcher pod).
    WorkloadType, "workload type" { Container = "container", Vm = "vm" }
);

words!(
    /// Which workloads an inventory imports.
    WorkloadFilter, "workload filter" { All = "all", Containers = "containers", Vms = "vms" }
);

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<W: Word + fmt::Debug>() {
        for v in W::ALL {
            assert_eq!(W::parse(v.word()), Some(*v));
        }
        let mut words: Vec<&str> = W::ALL.iter().map(|v| v.word()).collect();
        words.sort();
        words.dedup();
        assert_eq!(words.len(), W::ALL.len(), "{} spells two values alike", W::WHAT);
    }

    #[test]
    fn every_word_round_trips_and_is_unique() {
        round_trip::<RunStatus>();
        round_trip::<SyncMode>();
        round_trip::<Trigger>();
        round_trip::<RolloutState>();
        round_trip::<Health>();
        round_trip::<SyncStatus>();
        round_trip::<FabricDrift>();
        round_trip::<DriftStatus>();
        round_trip::<WatchStatus>();
        round_trip::<ConnectionStatus>();
        round_trip::<ApplyStatus>();
        round_trip::<Provider>();
        round_trip::<AuthType>();
        round_trip::<Stream>();
        round_trip::<ChangeAction>();
        round_trip::<InventoryKind>();
        round_trip::<WorkloadType>();
        round_trip::<WorkloadFilter>();
    }

    #[test]
    fn unknown_words_name_the_allowed_ones() {
        let err = "done".parse::<RunStatus>().unwrap_err().to_string();
        assert_eq!(err, "unknown run status \"done\"; one of queued, running, succeeded, failed, cancelled");
    }

    #[test]
    fn predicates() {
        assert!(!RunStatus::Running.is_finished() && RunStatus::Cancelled.is_finished());
        assert_eq!(DriftStatus::drifted_words(), ["drifted", "missing", "orphaned", "contested"]);
        assert!(SyncMode::Full.pulls() && SyncMode::Full.applies() && !SyncMode::Pull.applies());
    }
}
