//! A resource's health, apart from its drift: whether the object is in the cluster and in
//! effect. Hedgehog's objects carry no health conditions of their own; what tells their health
//! is the last apply, the live view and, for a Switch, its agent's rollout. Per fabric, a
//! summary: resources per health and switches per rollout state.

use crate::rollout::SwitchRollout;
use crate::vocab::{ApplyStatus, Health, RolloutState, Word};

/// What is known of one resource.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub desired: bool,
    pub live: bool,
    pub apply_status: ApplyStatus,
    pub apply_error: Option<&'a str>,
}

/// A health and why, in words a user reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub health: Health,
    pub reason: String,
}

fn verdict(health: Health, reason: impl Into<String>) -> Verdict {
    Verdict { health, reason: reason.into() }
}

/// The health of a resource; `switch` is the rollout of a Switch (None for other kinds).
pub fn of_resource(facts: Facts<'_>, switch: Option<&SwitchRollout>) -> Verdict {
    if facts.desired && facts.apply_status == ApplyStatus::Failed {
        let error = facts.apply_error.filter(|e| !e.is_empty()).unwrap_or("no reason given");
        return verdict(Health::Degraded, format!("the last apply failed: {error}"));
    }
    if !facts.live {
        return match facts.desired {
            true => verdict(Health::Missing, "desired, not in the cluster"),
            false => verdict(Health::Unknown, "not seen in the cluster"),
        };
    }
    let Some(rollout) = switch else {
        return verdict(Health::Healthy, "in the cluster");
    };
    let health = match rollout.state {
        RolloutState::UpToDate => Health::Healthy,
        RolloutState::Applying => Health::Progressing,
        RolloutState::Stale => Health::Degraded,
        RolloutState::Unknown => Health::Unknown,
    };
    verdict(health, format!("switch agent: {}", rollout.reason))
}

/// The fabric's health: the worst of its resources' (healthy when it has none), with counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub health: Health,
    /// Resources per health, in `Health`'s order, every health present.
    pub resources: Vec<(Health, usize)>,
    /// Switches per rollout state, in `RolloutState`'s order, every state present.
    pub switches: Vec<(RolloutState, usize)>,
}

pub fn summary(resources: &[Health], switches: &[SwitchRollout]) -> Summary {
    let count = |health: Health| resources.iter().filter(|&&h| h == health).count();
    Summary {
        // `Health::ALL` lists the worst first.
        health: Health::ALL.iter().copied().find(|&h| count(h) > 0).unwrap_or(Health::Healthy),
        resources: Health::ALL.iter().map(|&h| (h, count(h))).collect(),
        switches: crate::rollout::summary(switches),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{agent_status, switch_rollout};

    fn facts(desired: bool, live: bool, apply_status: ApplyStatus) -> Facts<'static> {
        Facts { desired, live, apply_status, apply_error: None }
    }

    fn agent(generation: i64, applied: i64) -> crate::rollout::AgentStatus {
        agent_status(&serde_json::json!({
            "metadata": {"name": "leaf-01", "generation": generation},
            "status": {"lastAppliedGen": applied, "lastHeartbeat": "2026-12-02T10:00:00Z"}
        }))
    }

    #[test]
    fn a_resource_is_healthy_in_the_cluster_missing_without_and_degraded_when_its_apply_failed() {
        assert_eq!(of_resource(facts(true, true, ApplyStatus::Applied), None).health, Health::Healthy);
        assert_eq!(
            of_resource(facts(true, false, ApplyStatus::Pending), None),
            verdict(Health::Missing, "desired, not in the cluster")
        );
        let failed =
            Facts { apply_error: Some("admission webhook denied it"), ..facts(true, true, ApplyStatus::Failed) };
        assert_eq!(
            of_resource(failed, None),
            verdict(Health::Degraded, "the last apply failed: admission webhook denied it")
        );
        // An orphan is judged by what is in the cluster; its stale apply status is not its own.
        assert_eq!(of_resource(facts(false, true, ApplyStatus::Failed), None).health, Health::Healthy);
        assert_eq!(of_resource(facts(false, false, ApplyStatus::Pending), None).health, Health::Unknown);
    }

    #[test]
    fn a_switch_is_as_healthy_as_its_agent_says() {
        let live = facts(true, true, ApplyStatus::Applied);
        let health = |rollout: SwitchRollout| of_resource(live, Some(&rollout));
        assert_eq!(health(switch_rollout("leaf-01", Some(agent(2, 2)), Some(5), 300)).health, Health::Healthy);
        let applying = health(switch_rollout("leaf-01", Some(agent(3, 2)), Some(5), 300));
        assert_eq!(applying, verdict(Health::Progressing, "switch agent: applied generation 2 of 3"));
        assert_eq!(health(switch_rollout("leaf-01", Some(agent(2, 2)), Some(301), 300)).health, Health::Degraded);
        assert_eq!(health(switch_rollout("leaf-01", None, None, 300)).health, Health::Unknown);
        // Not in the cluster: missing, whatever an agent says.
        let gone = of_resource(
            facts(true, false, ApplyStatus::Applied),
            Some(&switch_rollout("leaf-01", Some(agent(2, 2)), Some(5), 300)),
        );
        assert_eq!(gone.health, Health::Missing);
    }

    #[test]
    fn the_fabric_is_as_healthy_as_its_worst_resource() {
        let s = summary(&[Health::Healthy, Health::Progressing, Health::Healthy], &[]);
        assert_eq!(s.health, Health::Progressing);
        assert_eq!(
            s.resources,
            [
                (Health::Degraded, 0),
                (Health::Missing, 0),
                (Health::Progressing, 1),
                (Health::Unknown, 0),
                (Health::Healthy, 2)
            ]
        );
        assert_eq!(summary(&[Health::Unknown, Health::Degraded], &[]).health, Health::Degraded);
        assert_eq!(summary(&[], &[]).health, Health::Healthy);
        let switches = [switch_rollout("a", None, None, 300)];
        assert_eq!(summary(&[], &switches).switches[3], (RolloutState::Unknown, 1));
    }
}
