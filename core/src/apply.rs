//! The decisions of an apply run, pure: which desired objects go to the cluster in which wave,
//! which are skipped because nothing changed since their last apply, and which live objects are
//! pruned. `sync::apply` executes the plan (requests, records, progress) and nothing else.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::vocab::Trigger;
use crate::waves::{self, WavePlan};
use crate::ResourceKey;

/// One stored desired object to apply.
#[derive(Debug, Clone)]
pub struct Desired {
    pub id: uuid::Uuid,
    pub key: ResourceKey,
    pub version: String,
    pub body: Value,
    pub hash: String,
    pub last_applied_hash: Option<String>,
    /// resourceVersion the cluster returned to the last apply.
    pub applied_resource_version: Option<String>,
    /// Self-heal gave up on it (another writer keeps changing it).
    pub contested: bool,
}

/// One object as the cluster has it.
#[derive(Debug, Clone)]
pub struct Live {
    pub key: ResourceKey,
    pub version: String,
    pub resource_version: String,
    pub managed_by_fabric: bool,
    /// As compared (`diff::comparable_live`): without status and server-set metadata; Null when
    /// only the watch's stored view (key and resourceVersion) is known.
    pub object: Value,
}

/// The resources a Remediate run is limited to (the run's `targets`): desired ones to reapply,
/// orphans to delete. A run without targets covers the whole fabric.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Targets {
    pub apply: HashSet<ResourceKey>,
    pub delete: HashSet<ResourceKey>,
}

/// What happens to one desired object.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Hash equals the last applied one and the live object has not moved: not sent.
    Skip,
    Send {
        exists: bool,
    },
}

/// Skip an object only when nothing about it can have changed since its last apply.
pub fn decide(desired: &Desired, live: Option<&Live>) -> Decision {
    match live {
        Some(live)
            if desired.last_applied_hash.as_deref() == Some(desired.hash.as_str())
                && desired.applied_resource_version.as_deref() == Some(live.resource_version.as_str()) =>
        {
            Decision::Skip
        }
        Some(_) => Decision::Send { exists: true },
        None => Decision::Send { exists: false },
    }
}

/// Whether a run covers `desired`: self-heal leaves contested resources to the user, and a
/// Remediate run only its targets.
pub fn in_run(desired: &Desired, trigger: Trigger, targets: Option<&Targets>) -> bool {
    !(trigger == Trigger::SelfHeal && desired.contested) && targets.is_none_or(|t| t.apply.contains(&desired.key))
}

/// The apply waves of `desired` (validation before apply: an invalid sync-wave annotation
/// stops the run before anything is sent).
pub fn plan_waves(desired: &[Desired]) -> WavePlan {
    waves::waves(desired, |d| waves::wave_of(&d.key.kind, &d.body))
}

/// What a run will do, decided before the first request.
#[derive(Debug, Default, PartialEq)]
pub struct ApplyPlan {
    /// (wave, indexes into `desired`) to send, lowest wave first; empty waves left out.
    pub send: Vec<(i64, Vec<usize>)>,
    /// Indexes into `desired` not sent: unchanged since their last apply.
    pub skipped: Vec<usize>,
    /// Indexes into `live` to delete: labelled objects no longer desired, when the fabric prunes
    /// or the run's targets name them.
    pub prune: Vec<usize>,
}

/// The plan of one run from the desired objects, their waves and the live view.
pub fn plan_apply(
    desired: &[Desired],
    waves: &[(i64, Vec<usize>)],
    live: &[Live],
    targets: Option<&Targets>,
    trigger: Trigger,
    prune: bool,
) -> ApplyPlan {
    let live_by_key: HashMap<&ResourceKey, &Live> = live.iter().map(|l| (&l.key, l)).collect();
    let mut plan = ApplyPlan::default();
    for (wave, indexes) in waves {
        // Contested resources stay desired: never pruned, only not sent.
        let mut to_send = Vec::new();
        for &i in indexes.iter().filter(|&&i| in_run(&desired[i], trigger, targets)) {
            match decide(&desired[i], live_by_key.get(&desired[i].key).copied()) {
                Decision::Skip => plan.skipped.push(i),
                Decision::Send { .. } => to_send.push(i),
            }
        }
        if !to_send.is_empty() {
            plan.send.push((*wave, to_send));
        }
    }
    let wanted: HashSet<&ResourceKey> = desired.iter().map(|d| &d.key).collect();
    let orphan = |l: &Live| l.managed_by_fabric && !wanted.contains(&l.key);
    plan.prune = live
        .iter()
        .enumerate()
        .filter(|(_, l)| orphan(l))
        .filter(|(_, l)| match targets {
            Some(t) => t.delete.contains(&l.key),
            None => prune,
        })
        .map(|(i, _)| i)
        .collect();
    plan
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn desired(kind: &str, name: &str, applied: bool) -> Desired {
        Desired {
            id: uuid::Uuid::new_v4(),
            key: ResourceKey::new("wiring.githedgehog.com", kind, "default", name),
            version: "v1beta1".into(),
            body: json!({"metadata": {"name": name}}),
            hash: "h".into(),
            last_applied_hash: applied.then(|| "h".into()),
            applied_resource_version: applied.then(|| "7".into()),
            contested: false,
        }
    }

    fn live(kind: &str, name: &str, rv: &str, ours: bool) -> Live {
        Live {
            key: ResourceKey::new("wiring.githedgehog.com", kind, "default", name),
            version: "v1beta1".into(),
            resource_version: rv.into(),
            managed_by_fabric: ours,
            object: Value::Null,
        }
    }

    fn plan(desired: &[Desired], live: &[Live], targets: Option<&Targets>, trigger: Trigger, prune: bool) -> ApplyPlan {
        plan_apply(desired, &plan_waves(desired).waves, live, targets, trigger, prune)
    }

    #[test]
    fn unchanged_objects_are_skipped_moved_and_new_ones_sent_in_wave_order() {
        let d = [desired("Connection", "c1", true), desired("Switch", "s1", true), desired("Switch", "s2", false)];
        // s1 unchanged since its apply; c1 moved in the cluster (another resourceVersion); s2 new.
        let l = [live("Switch", "s1", "7", true), live("Connection", "c1", "8", true)];
        let p = plan(&d, &l, None, Trigger::User, false);
        assert_eq!(p.send, [(1, vec![2]), (2, vec![0])]);
        assert_eq!(p.skipped, [1]);
        assert!(p.prune.is_empty());
    }

    #[test]
    fn skips_only_when_hash_and_live_version_are_unchanged() {
        let d = desired("Switch", "s1", true);
        assert_eq!(decide(&d, Some(&live("Switch", "s1", "7", true))), Decision::Skip);
        let changed = Desired { hash: "h2".into(), ..d.clone() };
        assert_eq!(decide(&changed, Some(&live("Switch", "s1", "7", true))), Decision::Send { exists: true });
        // Someone changed the live object since: send again.
        assert_eq!(decide(&d, Some(&live("Switch", "s1", "9", true))), Decision::Send { exists: true });
        // Deleted from the cluster: create.
        assert_eq!(decide(&d, None), Decision::Send { exists: false });
    }

    #[test]
    fn prune_takes_only_this_fabrics_objects_that_left_git() {
        let d = [desired("Switch", "s1", true)];
        let l =
            [live("Switch", "s1", "7", true), live("Switch", "gone", "3", true), live("Switch", "foreign", "4", false)];
        assert_eq!(plan(&d, &l, None, Trigger::User, true).prune, [1]);
        assert!(plan(&d, &l, None, Trigger::User, false).prune.is_empty(), "no prune policy: nothing deleted");
    }

    #[test]
    fn targets_limit_what_is_sent_and_deleted() {
        let d = [desired("Switch", "s1", false), desired("Switch", "s2", false)];
        let l = [live("Switch", "x", "1", true), live("Switch", "y", "1", true)];
        let targets = Targets {
            apply: [d[1].key.clone()].into_iter().collect(),
            delete: [l[0].key.clone()].into_iter().collect(),
        };
        let p = plan(&d, &l, Some(&targets), Trigger::User, false);
        assert_eq!(p.send, [(1, vec![1])]);
        assert_eq!(p.prune, [0], "targets delete named orphans even without a prune policy");
    }

    #[test]
    fn self_heal_leaves_contested_resources_alone() {
        let mut d = [desired("Switch", "s1", false)];
        d[0].contested = true;
        assert!(plan(&d, &[], None, Trigger::SelfHeal, false).send.is_empty());
        assert_eq!(plan(&d, &[], None, Trigger::User, false).send, [(1, vec![0])]);
    }
}
