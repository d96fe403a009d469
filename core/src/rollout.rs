//! Rollout to the switches. An applied object is only accepted by the API server; the fabric's
//! controller turns it into each switch's Agent (agent.githedgehog.com), whose
//! `metadata.generation` is the configuration to apply and whose `status.lastAppliedGen` and
//! `status.lastHeartbeat` say what the switch applied and when it last reported, as Hedgehog's
//! troubleshooting guide reads them. From those, per switch, a state.

use serde_json::Value;

use crate::vocab::RolloutState;

/// The kind whose objects have agents (of `key::WIRING_GROUP`): a Switch's agent has the
/// switch's name.
pub const SWITCH_KIND: &str = "Switch";

/// Whether (group, kind) is the Switch kind.
pub fn is_switch(group: &str, kind: &str) -> bool {
    group == crate::key::WIRING_GROUP && kind == SWITCH_KIND
}

/// What an Agent object says, read by `agent_status`; the shell turns the heartbeat's RFC 3339
/// time into an age (the core has no clock).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentStatus {
    pub generation: i64,
    pub applied_generation: i64,
    pub heartbeat: Option<String>,
    pub reboot_required: bool,
    pub nos_version: String,
}

/// Reads an Agent object's generation and status (absent fields are zero, false, empty).
pub fn agent_status(agent: &Value) -> AgentStatus {
    let int = |pointer: &str| agent.pointer(pointer).and_then(Value::as_i64).unwrap_or(0);
    let text = |pointer: &str| agent.pointer(pointer).and_then(Value::as_str).map(str::to_string);
    AgentStatus {
        generation: int("/metadata/generation"),
        applied_generation: int("/status/lastAppliedGen"),
        heartbeat: text("/status/lastHeartbeat").filter(|t| !t.is_empty()),
        reboot_required: agent.pointer("/status/rebootRequired").and_then(Value::as_bool).unwrap_or(false),
        nos_version: text("/status/state/nos/softwareVersion").unwrap_or_default(),
    }
}

/// A switch's rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchRollout {
    pub switch: String,
    pub state: RolloutState,
    /// Why, in words a user reads ("applied generation 3 of 4").
    pub reason: String,
    /// None without an agent.
    pub agent: Option<AgentStatus>,
    /// Seconds since the last heartbeat; None when the agent never sent one.
    pub heartbeat_age_seconds: Option<i64>,
}

/// The state of `switch` from its agent (None: no agent) and the age of its last heartbeat.
pub fn switch_rollout(
    switch: &str,
    agent: Option<AgentStatus>,
    heartbeat_age_seconds: Option<i64>,
    stale_after_seconds: i64,
) -> SwitchRollout {
    let (state, reason) = match &agent {
        None => (RolloutState::Unknown, "no agent for this switch".to_string()),
        Some(_) if heartbeat_age_seconds.is_none() => (RolloutState::Stale, "the agent never sent a heartbeat".into()),
        // The reason names the last heartbeat, not its age: it stays the same while the switch is
        // silent, so a stored health does not change with every look.
        Some(a) if heartbeat_age_seconds.is_some_and(|age| age > stale_after_seconds) => (
            RolloutState::Stale,
            format!(
                "no heartbeat since {} (stale after {stale_after_seconds} s)",
                a.heartbeat.as_deref().unwrap_or_default()
            ),
        ),
        Some(a) if a.applied_generation < a.generation => {
            (RolloutState::Applying, format!("applied generation {} of {}", a.applied_generation, a.generation))
        }
        Some(a) => (RolloutState::UpToDate, format!("generation {} applied", a.generation)),
    };
    SwitchRollout { switch: switch.to_string(), state, reason, agent, heartbeat_age_seconds }
}

/// Switches per state, in `RolloutState`'s order; every state present, zero or not.
pub fn summary(switches: &[SwitchRollout]) -> Vec<(RolloutState, usize)> {
    use crate::vocab::Word;
    RolloutState::ALL.iter().map(|&state| (state, switches.iter().filter(|s| s.state == state).count())).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn agent(generation: i64, applied: i64) -> Value {
        json!({
            "apiVersion": "agent.githedgehog.com/v1beta1", "kind": "Agent",
            "metadata": {"name": "leaf-01", "namespace": "default", "generation": generation},
            "status": {"lastAppliedGen": applied, "lastHeartbeat": "2026-12-02T10:00:00Z", "rebootRequired": true,
                       "state": {"nos": {"softwareVersion": "4.5.0-Enterprise_Base"}}}
        })
    }

    #[test]
    fn an_agent_reads_as_its_generations_heartbeat_and_nos() {
        let status = agent_status(&agent(4, 3));
        assert_eq!((status.generation, status.applied_generation), (4, 3));
        assert_eq!(status.heartbeat.as_deref(), Some("2026-12-02T10:00:00Z"));
        assert!(status.reboot_required);
        assert_eq!(status.nos_version, "4.5.0-Enterprise_Base");
        assert_eq!(agent_status(&json!({"metadata": {"name": "new"}})), AgentStatus::default());
    }

    #[test]
    fn each_state_and_its_reason() {
        let state = |agent: Option<AgentStatus>, age: Option<i64>| {
            let r = switch_rollout("leaf-01", agent, age, 300);
            (r.state, r.reason)
        };
        let current = agent_status(&agent(4, 4));
        let behind = agent_status(&agent(4, 3));
        assert_eq!(state(Some(current.clone()), Some(10)), (RolloutState::UpToDate, "generation 4 applied".into()));
        assert_eq!(state(Some(behind.clone()), Some(10)), (RolloutState::Applying, "applied generation 3 of 4".into()));
        // A silent agent is stale whatever it last applied.
        let stale = state(Some(behind), Some(301));
        assert_eq!(stale.0, RolloutState::Stale);
        assert_eq!(stale.1, "no heartbeat since 2026-12-02T10:00:00Z (stale after 300 s)");
        assert_eq!(state(Some(current), None).0, RolloutState::Stale);
        assert_eq!(state(None, None), (RolloutState::Unknown, "no agent for this switch".into()));
    }

    #[test]
    fn the_summary_counts_every_state() {
        let switches = [
            switch_rollout("a", Some(agent_status(&agent(2, 2))), Some(1), 300),
            switch_rollout("b", Some(agent_status(&agent(2, 2))), Some(1), 300),
            switch_rollout("c", None, None, 300),
        ];
        assert_eq!(
            summary(&switches),
            [
                (RolloutState::UpToDate, 2),
                (RolloutState::Applying, 0),
                (RolloutState::Stale, 0),
                (RolloutState::Unknown, 1)
            ]
        );
    }
}
