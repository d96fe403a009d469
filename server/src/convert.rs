//! The one place the domain's words (`fabricsync_core::vocab`) meet their proto enums, and the
//! domain's values their proto messages (keys, drift, times, JSON).

use chrono::{DateTime, Utc};
use fabricsync_core::drift::StoredDrift;
use fabricsync_core::vocab::{self as v, Word};

use crate::proto::{
    self, ApplyStatus, AuthType, ConnectionStatus, DriftStatus, Layout, Provider, ResourceDriftStatus, ResourceHealth,
    Role, RolloutState, SyncMode, SyncRunStatus, SyncStatus, SyncTrigger, WatchScope, WatchStatus, WriteOutcome,
};

pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }
}

pub fn opt_timestamp(t: Option<DateTime<Utc>>) -> Option<prost_types::Timestamp> {
    t.map(timestamp)
}

/// A JSON object as a protobuf Struct; None for anything but an object.
pub fn json_struct(value: &serde_json::Value) -> Option<prost_types::Struct> {
    match value {
        serde_json::Value::Object(map) => {
            Some(prost_types::Struct { fields: map.iter().map(|(k, v)| (k.clone(), json_value(v))).collect() })
        }
        _ => None,
    }
}

pub fn json_value(value: &serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    use serde_json::Value as J;
    let kind = match value {
        J::Null => Kind::NullValue(0),
        J::Bool(b) => Kind::BoolValue(*b),
        J::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        J::String(s) => Kind::StringValue(s.clone()),
        J::Array(items) => Kind::ListValue(prost_types::ListValue { values: items.iter().map(json_value).collect() }),
        J::Object(_) => Kind::StructValue(json_struct(value).unwrap_or_default()),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A protobuf Struct as JSON. Numbers arrive as doubles: whole ones within i64 become integers
/// again (Kubernetes schemas type ports, VLANs and ASNs as integers).
pub fn struct_json(value: &prost_types::Struct) -> serde_json::Value {
    serde_json::Value::Object(value.fields.iter().map(|(k, v)| (k.clone(), value_json(v))).collect())
}

fn value_json(value: &prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    use serde_json::Value as J;
    match &value.kind {
        None | Some(Kind::NullValue(_)) => J::Null,
        Some(Kind::BoolValue(b)) => J::Bool(*b),
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 9.0e15 => J::from(*n as i64),
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(*n).map_or(J::Null, J::Number),
        Some(Kind::StringValue(s)) => J::String(s.clone()),
        Some(Kind::ListValue(list)) => J::Array(list.values.iter().map(value_json).collect()),
        Some(Kind::StructValue(s)) => struct_json(s),
    }
}

/// A two-way table between stored words and enum values.
pub struct Words<E: 'static>(&'static [(E, &'static str)]);

impl<E: Copy + PartialEq> Words<E> {
    pub fn word(&self, value: E) -> Option<&'static str> {
        self.0.iter().find(|(e, _)| *e == value).map(|(_, w)| *w)
    }
    pub fn value(&self, word: &str) -> Option<E> {
        self.0.iter().find(|(_, w)| *w == word).map(|(e, _)| *e)
    }
    /// The domain word of a proto value; None for UNSPECIFIED and unknown values.
    pub fn domain<W: Word>(&self, value: E) -> Option<W> {
        self.word(value).and_then(W::parse)
    }
    pub fn words(&self) -> Vec<&'static str> {
        self.0.iter().map(|(_, w)| *w).collect()
    }
    /// The enum of a stored word; stored words are ours, so an unknown one maps to the zero value.
    pub fn of(&self, word: &str) -> E
    where
        E: Default,
    {
        self.value(word).unwrap_or_default()
    }
}

pub const PROVIDERS: Words<Provider> = Words(&[
    (Provider::Generic, v::Provider::Generic.word()),
    (Provider::Github, v::Provider::Github.word()),
    (Provider::Gitlab, v::Provider::Gitlab.word()),
    (Provider::Gitea, v::Provider::Gitea.word()),
    (Provider::Bitbucket, v::Provider::Bitbucket.word()),
]);

pub const AUTH_TYPES: Words<AuthType> = Words(&[
    (AuthType::None, v::AuthType::None.word()),
    (AuthType::Token, v::AuthType::Token.word()),
    (AuthType::Basic, v::AuthType::Basic.word()),
    (AuthType::SshKey, v::AuthType::SshKey.word()),
]);

pub const CONNECTION_STATUSES: Words<ConnectionStatus> = Words(&[
    (ConnectionStatus::Unknown, v::ConnectionStatus::Unknown.word()),
    (ConnectionStatus::Reachable, v::ConnectionStatus::Reachable.word()),
    (ConnectionStatus::Failed, v::ConnectionStatus::Failed.word()),
]);

pub const SYNC_STATUSES: Words<SyncStatus> = Words(&[
    (SyncStatus::NeverSynced, v::SyncStatus::NeverSynced.word()),
    (SyncStatus::Syncing, v::SyncStatus::Syncing.word()),
    (SyncStatus::Synced, v::SyncStatus::Synced.word()),
    (SyncStatus::Failed, v::SyncStatus::Failed.word()),
]);

pub const DRIFT_STATUSES: Words<DriftStatus> = Words(&[
    (DriftStatus::Unknown, v::FabricDrift::Unknown.word()),
    (DriftStatus::InSync, v::FabricDrift::InSync.word()),
    (DriftStatus::Drifted, v::FabricDrift::Drifted.word()),
]);

pub const WATCH_STATUSES: Words<WatchStatus> = Words(&[
    (WatchStatus::Inactive, v::WatchStatus::Inactive.word()),
    (WatchStatus::Starting, v::WatchStatus::Starting.word()),
    (WatchStatus::Active, v::WatchStatus::Active.word()),
    (WatchStatus::Error, v::WatchStatus::Error.word()),
]);

pub const WATCH_SCOPES: Words<WatchScope> = Words(&[
    (WatchScope::Cluster, v::WatchScope::Cluster.word()),
    (WatchScope::Namespace, v::WatchScope::Namespace.word()),
    (WatchScope::Labelled, v::WatchScope::Labelled.word()),
]);

pub const LAYOUTS: Words<Layout> = Words(&[
    (Layout::Unknown, v::Layout::Unknown.word()),
    (Layout::Plain, v::Layout::Plain.word()),
    (Layout::Hnp, v::Layout::Hnp.word()),
]);

pub const WRITE_OUTCOMES: Words<WriteOutcome> = Words(&[
    (WriteOutcome::Committed, v::WriteOutcome::Committed.word()),
    (WriteOutcome::Unchanged, v::WriteOutcome::Unchanged.word()),
    (WriteOutcome::Rejected, v::WriteOutcome::Rejected.word()),
    (WriteOutcome::DryRun, v::WriteOutcome::DryRun.word()),
]);

pub const SYNC_MODES: Words<SyncMode> = Words(&[
    (SyncMode::Pull, v::SyncMode::Pull.word()),
    (SyncMode::Apply, v::SyncMode::Apply.word()),
    (SyncMode::Full, v::SyncMode::Full.word()),
    (SyncMode::Inventory, v::SyncMode::Inventory.word()),
]);

/// UNSPECIFIED reads as all.
pub const WORKLOAD_FILTERS: Words<proto::WorkloadFilter> = Words(&[
    (proto::WorkloadFilter::All, v::WorkloadFilter::All.word()),
    (proto::WorkloadFilter::Containers, v::WorkloadFilter::Containers.word()),
    (proto::WorkloadFilter::Vms, v::WorkloadFilter::Vms.word()),
]);

pub const WORKLOAD_TYPES: Words<proto::WorkloadType> = Words(&[
    (proto::WorkloadType::Container, v::WorkloadType::Container.word()),
    (proto::WorkloadType::Vm, v::WorkloadType::Vm.word()),
]);

pub const ROLLOUT_STATES: Words<RolloutState> = Words(&[
    (RolloutState::UpToDate, v::RolloutState::UpToDate.word()),
    (RolloutState::Applying, v::RolloutState::Applying.word()),
    (RolloutState::Stale, v::RolloutState::Stale.word()),
    (RolloutState::Unknown, v::RolloutState::Unknown.word()),
]);

pub const HEALTHS: Words<ResourceHealth> = Words(&[
    (ResourceHealth::Degraded, v::Health::Degraded.word()),
    (ResourceHealth::Missing, v::Health::Missing.word()),
    (ResourceHealth::Progressing, v::Health::Progressing.word()),
    (ResourceHealth::Unknown, v::Health::Unknown.word()),
    (ResourceHealth::Healthy, v::Health::Healthy.word()),
]);

/// A fabric's stored health summary as the API shows it.
pub fn fabric_health(stored: &crate::db::fabrics::StoredHealth) -> proto::FabricHealth {
    proto::FabricHealth {
        status: HEALTHS.of(&stored.health) as i32,
        resources: stored
            .resources
            .iter()
            .map(|(h, n)| proto::HealthCount { health: HEALTHS.of(h) as i32, count: *n as i32 })
            .collect(),
        switches: stored
            .switches
            .iter()
            .map(|(r, n)| proto::RolloutStateCount { state: ROLLOUT_STATES.of(r) as i32, count: *n as i32 })
            .collect(),
    }
}

pub const SYNC_TRIGGERS: Words<SyncTrigger> = Words(&[
    (SyncTrigger::User, v::Trigger::User.word()),
    (SyncTrigger::Schedule, v::Trigger::Schedule.word()),
    (SyncTrigger::SelfHeal, v::Trigger::SelfHeal.word()),
    (SyncTrigger::Webhook, v::Trigger::Webhook.word()),
]);

pub const RUN_STATUSES: Words<SyncRunStatus> = Words(&[
    (SyncRunStatus::Queued, v::RunStatus::Queued.word()),
    (SyncRunStatus::Running, v::RunStatus::Running.word()),
    (SyncRunStatus::Succeeded, v::RunStatus::Succeeded.word()),
    (SyncRunStatus::Failed, v::RunStatus::Failed.word()),
    (SyncRunStatus::Cancelled, v::RunStatus::Cancelled.word()),
]);

pub const APPLY_STATUSES: Words<ApplyStatus> = Words(&[
    (ApplyStatus::Pending, v::ApplyStatus::Pending.word()),
    (ApplyStatus::Applied, v::ApplyStatus::Applied.word()),
    (ApplyStatus::Failed, v::ApplyStatus::Failed.word()),
    (ApplyStatus::Unchanged, v::ApplyStatus::Unchanged.word()),
]);

pub const RESOURCE_DRIFT_STATUSES: Words<ResourceDriftStatus> = Words(&[
    (ResourceDriftStatus::Unknown, v::DriftStatus::Unknown.word()),
    (ResourceDriftStatus::InSync, v::DriftStatus::InSync.word()),
    (ResourceDriftStatus::Drifted, v::DriftStatus::Drifted.word()),
    (ResourceDriftStatus::Missing, v::DriftStatus::Missing.word()),
    (ResourceDriftStatus::Orphaned, v::DriftStatus::Orphaned.word()),
    (ResourceDriftStatus::Contested, v::DriftStatus::Contested.word()),
]);

pub const CHANGE_ACTIONS: Words<proto::ChangeAction> = Words(&[
    (proto::ChangeAction::Create, v::ChangeAction::Create.word()),
    (proto::ChangeAction::Update, v::ChangeAction::Update.word()),
    (proto::ChangeAction::Delete, v::ChangeAction::Delete.word()),
    (proto::ChangeAction::Unchanged, v::ChangeAction::Unchanged.word()),
]);

/// API token roles; the words are `auth::Role`'s.
pub const ROLES: Words<Role> = Words(&[(Role::Viewer, "viewer"), (Role::Operator, "operator"), (Role::Admin, "admin")]);

/// The proto enum of a domain word, through its table.
pub fn proto_of<E: Copy + PartialEq + Default, W: Word>(words: &Words<E>, value: W) -> E {
    words.of(value.word())
}

pub fn drift_status(status: v::DriftStatus) -> ResourceDriftStatus {
    proto_of(&RESOURCE_DRIFT_STATUSES, status)
}

/// A resource's key as the API shows it, with the API version it is stored in.
pub fn resource_key(key: &fabricsync_core::ResourceKey, version: &str) -> proto::ResourceKey {
    proto::ResourceKey {
        group: key.group.clone(),
        version: version.to_string(),
        kind: key.kind.clone(),
        namespace: key.namespace.clone(),
        name: key.name.clone(),
    }
}

/// A resource's stored drift as the API shows it.
pub fn resource_drift(
    id: uuid::Uuid,
    key: proto::ResourceKey,
    status: v::DriftStatus,
    stored: &StoredDrift,
    time: Option<prost_types::Timestamp>,
) -> proto::ResourceDrift {
    let fields = stored
        .fields
        .iter()
        .map(|f| proto::FieldDrift {
            path: f.pointer.clone(),
            desired: f.desired.as_ref().filter(|v| !v.is_null()).map(json_value),
            live: f.live.as_ref().filter(|v| !v.is_null()).map(json_value),
            managers: f
                .managers
                .iter()
                .map(|(manager, operation, time)| proto::FieldChange {
                    manager: manager.clone(),
                    operation: operation.clone(),
                    time: DateTime::parse_from_rfc3339(time).ok().map(|t| timestamp(t.with_timezone(&Utc))),
                })
                .collect(),
        })
        .collect();
    proto::ResourceDrift {
        resource_id: id.to_string(),
        key: Some(key),
        status: drift_status(status) as i32,
        score: stored.score,
        fields,
        unified_diff: String::new(),
        contested_by: stored.contested_by.clone().unwrap_or_default(),
        compute_time: time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for p in [Provider::Generic, Provider::Github, Provider::Bitbucket] {
            assert_eq!(PROVIDERS.value(PROVIDERS.word(p).unwrap()), Some(p));
        }
        assert_eq!(PROVIDERS.word(Provider::Unspecified), None);
        assert_eq!(SYNC_STATUSES.of("bogus"), SyncStatus::Unspecified);
    }

    /// Every domain word has its proto value, and every proto value but UNSPECIFIED its word.
    #[test]
    fn a_struct_reads_back_as_the_json_it_came_from() {
        let object =
            serde_json::json!({"spec": {"asn": 65101, "ratio": 0.5, "on": true, "tags": ["a", null], "none": {}}});
        assert_eq!(struct_json(&json_struct(&object).unwrap()), object);
    }

    #[test]
    fn every_word_has_its_proto_value() {
        fn covered<E: Copy + PartialEq + Default + std::fmt::Debug, W: Word + std::fmt::Debug>(words: &Words<E>) {
            for w in W::ALL {
                assert_ne!(proto_of(words, *w), E::default(), "{} {w:?} has no proto value", W::WHAT);
            }
            assert_eq!(words.words().len(), W::ALL.len(), "{}: the table lists other words", W::WHAT);
        }
        covered::<Provider, v::Provider>(&PROVIDERS);
        covered::<AuthType, v::AuthType>(&AUTH_TYPES);
        covered::<ConnectionStatus, v::ConnectionStatus>(&CONNECTION_STATUSES);
        covered::<SyncStatus, v::SyncStatus>(&SYNC_STATUSES);
        covered::<WatchStatus, v::WatchStatus>(&WATCH_STATUSES);
        covered::<Layout, v::Layout>(&LAYOUTS);
        covered::<WriteOutcome, v::WriteOutcome>(&WRITE_OUTCOMES);
        covered::<SyncMode, v::SyncMode>(&SYNC_MODES);
        covered::<SyncTrigger, v::Trigger>(&SYNC_TRIGGERS);
        covered::<RolloutState, v::RolloutState>(&ROLLOUT_STATES);
        covered::<ResourceHealth, v::Health>(&HEALTHS);
        covered::<proto::WorkloadFilter, v::WorkloadFilter>(&WORKLOAD_FILTERS);
        covered::<proto::WorkloadType, v::WorkloadType>(&WORKLOAD_TYPES);
        covered::<SyncRunStatus, v::RunStatus>(&RUN_STATUSES);
        covered::<ApplyStatus, v::ApplyStatus>(&APPLY_STATUSES);
        covered::<proto::ChangeAction, v::ChangeAction>(&CHANGE_ACTIONS);
    }
}
