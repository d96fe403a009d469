//! Server-side apply requests for a fabric (`Applier`): list, apply in waves with bounded
//! concurrency and retries, delete. What to send is decided by `fabricsync_core::apply`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::{stream, StreamExt};
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::Value;

use super::{breaker, ClusterError, FABRIC_LABEL, FIELD_MANAGER};
pub use fabricsync_core::apply::{Desired, Live};
use fabricsync_core::diff::{changed_fields, comparable_live};
use fabricsync_core::manifest::kinds::{KindDef, KindRegistry};
use fabricsync_core::ResourceKey;

/// Objects sent at once within a wave.
const CONCURRENCY: usize = 16;
/// Attempts for a request that fails with 429, 5xx or a timeout.
const ATTEMPTS: u32 = 4;
const LIST_PAGE: u32 = 500;
/// The longest Retry-After honoured, in seconds.
const MAX_RETRY_AFTER: u64 = 30;

/// The object as sent: the desired body with the fabric's label.
pub fn with_fabric_label(body: &Value, fabric: &str) -> Value {
    let mut body = body.clone();
    if let Some(metadata) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        let labels = metadata.entry("labels").or_insert_with(|| Value::Object(Default::default()));
        if let Some(labels) = labels.as_object_mut() {
            labels.insert(FABRIC_LABEL.to_string(), Value::String(fabric.to_string()));
        }
    }
    body
}

/// The result for one object.
#[derive(Debug)]
pub enum Applied {
    Created { uid: String, resource_version: String },
    Updated { uid: String, resource_version: String, fields: Vec<String> },
    Unchanged { uid: String, resource_version: String },
    Failed(ClusterError),
}

pub struct Applier {
    client: Client,
    /// The API server URL: the circuit breaker's key.
    cluster: String,
    fabric: String,
    dry_run: bool,
    force: bool,
}

impl Applier {
    pub fn new(client: Client, cluster: &str, fabric: &str, dry_run: bool, force: bool) -> Applier {
        Applier { client, cluster: cluster.to_string(), fabric: fabric.to_string(), dry_run, force }
    }

    fn api(&self, key: &ResourceKey, version: &str, kinds: &KindRegistry) -> Result<Api<DynamicObject>, ClusterError> {
        let ResourceKey { group, kind, namespace, .. } = key;
        let def = kinds
            .of_key(key, version)
            .ok_or_else(|| ClusterError::Other(format!("{} {kind} is not a known kind", key.api_version(version))))?;
        let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), &def.plural);
        Ok(if def.namespaced {
            Api::namespaced_with(self.client.clone(), namespace, &resource)
        } else {
            Api::all_with(self.client.clone(), &resource)
        })
    }

    /// Every object of the fabric's kinds in the cluster, paged.
    pub async fn list_live(&self, defs: impl Iterator<Item = &KindDef>) -> Result<Vec<Live>, ClusterError> {
        let mut live = Vec::new();
        for def in defs {
            let resource = ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(&def.group, &def.version, &def.kind),
                &def.plural,
            );
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
            let mut params = ListParams::default().limit(LIST_PAGE);
            loop {
                let page = retry(&self.cluster, || api.list(&params)).await?;
                for object in page.items {
                    let labels = object.metadata.labels.clone().unwrap_or_default();
                    let key = ResourceKey::new(
                        &def.group,
                        &def.kind,
                        object.metadata.namespace.clone().unwrap_or_default(),
                        object.metadata.name.clone().unwrap_or_default(),
                    );
                    live.push(Live {
                        key,
                        version: def.version.clone(),
                        resource_version: object.metadata.resource_version.clone().unwrap_or_default(),
                        managed_by_fabric: labels.get(FABRIC_LABEL) == Some(&self.fabric),
                        // Only what a diff needs: managedFields and status would triple the memory.
                        object: comparable_live(
                            &serde_json::to_value(&object).map_err(|e| ClusterError::Other(e.to_string()))?,
                            &[],
                        ),
                    });
                }
                match page.metadata.continue_.filter(|c| !c.is_empty()) {
                    Some(token) => params = params.continue_token(&token),
                    None => break,
                }
            }
        }
        Ok(live)
    }

    /// Server-side apply of one object (dry run if asked); `live` tells created from updated.
    pub async fn apply(&self, desired: &Desired, live: Option<&Live>, kinds: &KindRegistry) -> Applied {
        let api = match self.api(&desired.key, &desired.version, kinds) {
            Ok(api) => api,
            Err(e) => return Applied::Failed(e),
        };
        let body = with_fabric_label(&desired.body, &self.fabric);
        let mut params = PatchParams::apply(FIELD_MANAGER);
        params.force = self.force;
        params.dry_run = self.dry_run;
        let name = &desired.key.name;
        let patch = Patch::Apply(&body);
        let applied = match retry(&self.cluster, || api.patch(name, &params, &patch)).await {
            Ok(object) => object,
            Err(e) => return Applied::Failed(e),
        };
        let uid = applied.metadata.uid.clone().unwrap_or_default();
        let resource_version = applied.metadata.resource_version.clone().unwrap_or_default();
        match live {
            None => Applied::Created { uid, resource_version },
            // An apply that changes nothing keeps the resourceVersion.
            Some(live) if live.resource_version == resource_version => Applied::Unchanged { uid, resource_version },
            Some(live) => {
                let after = comparable_live(&serde_json::to_value(&applied).unwrap_or(Value::Null), &[]);
                let schema = kinds.schema_of(&desired.key, &desired.version);
                let fields = changed_fields(&live.object, &after, schema);
                if fields.is_empty() && self.dry_run {
                    Applied::Unchanged { uid, resource_version }
                } else {
                    Applied::Updated { uid, resource_version, fields }
                }
            }
        }
    }

    /// Deletes one labelled object (dry run if asked).
    pub async fn delete(&self, live: &Live, kinds: &KindRegistry) -> Result<(), ClusterError> {
        let api = self.api(&live.key, &live.version, kinds)?;
        let params = DeleteParams { dry_run: self.dry_run, ..Default::default() };
        match retry(&self.cluster, || api.delete(&live.key.name, &params)).await {
            Ok(_) => Ok(()),
            Err(ClusterError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Applies `indexes` of `desired` with bounded concurrency; results in completion order.
    pub async fn apply_wave<'a>(
        &'a self,
        desired: &'a [Desired],
        indexes: &'a [usize],
        live: &'a HashMap<ResourceKey, &'a Live>,
        kinds: &'a KindRegistry,
    ) -> impl futures::Stream<Item = (usize, Applied)> + 'a {
        stream::iter(indexes.iter().copied())
            .map(move |i| async move { (i, self.apply(&desired[i], live.get(&desired[i].key).copied(), kinds).await) })
            .buffer_unordered(CONCURRENCY)
    }
}

/// Runs a request through the cluster's circuit breaker, retrying 429/5xx/timeouts with
/// exponential backoff and jitter, or after the server's Retry-After when it gives one.
async fn retry<T, F, Fut>(cluster: &str, mut request: F) -> Result<T, ClusterError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let breakers = breaker::breakers();
    let mut attempt = 0;
    loop {
        breakers.check(cluster, Instant::now())?;
        let result = request().await.map_err(ClusterError::from);
        breakers.record(cluster, result.as_ref().map(|_| ()), Instant::now());
        match result {
            Err(e) if e.is_transient() && attempt + 1 < ATTEMPTS => {
                crate::metrics::global().apply_retried(e.code());
                let wait = match &e {
                    ClusterError::Busy { retry_after: Some(s), .. } => {
                        Duration::from_secs(u64::from(*s).min(MAX_RETRY_AFTER))
                    }
                    _ => backoff(attempt),
                };
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// 100 ms doubling per attempt, with up to half of it again as jitter so retries spread out.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(100) * 2u32.saturating_pow(attempt);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    base + base.mul_f64(f64::from(nanos % 1000) / 2000.0)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn label_is_added_without_losing_others() {
        let body = json!({"metadata": {"name": "a", "labels": {"team": "net"}}, "spec": {}});
        let sent = with_fabric_label(&body, "lab");
        assert_eq!(sent["metadata"]["labels"], json!({"team": "net", FABRIC_LABEL: "lab"}));
        let bare = with_fabric_label(&json!({"metadata": {"name": "a"}}), "lab");
        assert_eq!(bare["metadata"]["labels"][FABRIC_LABEL], "lab");
    }

    #[test]
    fn backoff_grows() {
        assert!(backoff(0) >= Duration::from_millis(100) && backoff(0) < Duration::from_millis(151));
        assert!(backoff(3) >= Duration::from_millis(800));
    }
}
