//! Hedgehog switch agents (agent.githedgehog.com/v1beta1 Agent): read, never applied or pruned.

use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::Api;
use serde_json::Value;

use super::ClusterError;

pub const GROUP: &str = "agent.githedgehog.com";
pub const VERSION: &str = "v1beta1";
pub const KIND: &str = "Agent";
pub const PLURAL: &str = "agents";

/// The agents in `namespace`, as JSON; None when the cluster has no Agent kind.
pub async fn list(client: &kube::Client, namespace: &str) -> Result<Option<Vec<Value>>, ClusterError> {
    let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, KIND), PLURAL);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    match api.list(&ListParams::default()).await.map_err(ClusterError::from) {
        Ok(listed) => Ok(Some(listed.items.iter().filter_map(|a| serde_json::to_value(a).ok()).collect())),
        Err(ClusterError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}
