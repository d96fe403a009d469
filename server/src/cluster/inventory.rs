//! Reading the cluster's inventory: every object of one kind, listed in pages (read only).

use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::Api;
use serde_json::Value;

use fabricsync_core::vocab::InventoryKind;

use super::ClusterError;

/// Objects per list request: a 20,000-pod cluster is listed in 40 requests of bounded size.
const PAGE: u32 = 500;

fn resource(kind: InventoryKind) -> ApiResource {
    let (group, version) = kind.group_version();
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind.kind()))
}

/// (API group, resource) of the kind, as RBAC rules name it.
pub fn group_resource(kind: InventoryKind) -> (String, String) {
    let resource = resource(kind);
    (resource.group, resource.plural)
}

/// Whether the cluster serves the kind (KubeVirt's kinds only where KubeVirt is installed).
pub async fn served(client: &kube::Client, kind: InventoryKind) -> Result<bool, ClusterError> {
    super::serves(client, kind.api_version(), &resource(kind).plural).await
}

/// Every object of `kind` in the cluster (all namespaces), as JSON, handed to `each` page by
/// page (a page's objects are dropped before the next is read); returns how many were listed.
pub async fn list(
    client: &kube::Client,
    kind: InventoryKind,
    mut each: impl FnMut(&Value),
) -> Result<usize, ClusterError> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource(kind));
    let mut listed = 0;
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = api.list(&params).await.map_err(ClusterError::from)?;
        let next = page.metadata.continue_.filter(|c| !c.is_empty());
        for item in page.items {
            // The list's items carry no kind; the inventory's reader checks it.
            let mut value = serde_json::to_value(&item).unwrap_or(Value::Null);
            if let Some(object) = value.as_object_mut() {
                object.insert("apiVersion".into(), kind.api_version().into());
                object.insert("kind".into(), kind.kind().into());
            }
            each(&value);
            listed += 1;
        }
        match next {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(listed),
        }
    }
}
