//! Hedgehog switch agents (agent.githedgehog.com/v1beta1 Agent): read, never applied or pruned.

use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::Api;
use serde_json::Value;

use fabricsync_core::rollout::{self, SwitchRollout};

use super::ClusterError;

pub const GROUP: &str = "agent.githedgehog.com";
pub const VERSION: &str = "v1beta1";
pub const KIND: &str = "Agent";
pub const PLURAL: &str = "agents";

/// The Agent kind as the dynamic API names it.
pub fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, KIND), PLURAL)
}

/// The agents' API in `namespace`.
pub fn api(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &resource())
}

/// Whether the cluster serves the Agent kind.
pub async fn installed(client: &kube::Client) -> Result<bool, ClusterError> {
    super::serves(client, &format!("{GROUP}/{VERSION}"), PLURAL).await
}

/// The agents in `namespace`, as JSON; None when the cluster has no Agent kind.
pub async fn list(client: &kube::Client, namespace: &str) -> Result<Option<Vec<Value>>, ClusterError> {
    let api = api(client, namespace);
    match api.list(&ListParams::default()).await.map_err(ClusterError::from) {
        Ok(listed) => Ok(Some(listed.items.iter().filter_map(|a| serde_json::to_value(a).ok()).collect())),
        Err(ClusterError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// An agent's last heartbeat, when it sent one that reads as RFC 3339.
pub fn heartbeat(status: &rollout::AgentStatus) -> Option<chrono::DateTime<chrono::Utc>> {
    let text = status.heartbeat.as_deref()?;
    chrono::DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&chrono::Utc))
}

/// The rollout of each of `switches` from the agents listed (None: the cluster has no Agent
/// kind), at `now`.
pub fn rollouts(
    switches: &[String],
    agents: Option<&[Value]>,
    now: chrono::DateTime<chrono::Utc>,
    stale_after_seconds: i64,
) -> Vec<SwitchRollout> {
    let agent_of =
        |switch: &str| agents?.iter().find(|a| a.pointer("/metadata/name").and_then(Value::as_str) == Some(switch));
    switches
        .iter()
        .map(|switch| {
            let status = agent_of(switch).map(rollout::agent_status);
            let age = status.as_ref().and_then(heartbeat).map(|t| (now - t).num_seconds().max(0));
            rollout::switch_rollout(switch, status, age, stale_after_seconds)
        })
        .collect()
}
