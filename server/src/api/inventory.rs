//! InventoryService: imports of a fabric's cluster inventory (runs of mode INVENTORY, see
//! `sync::inventory`), the imported objects, and the cross-layer view of core `inventory`:
//! a switch port, the Servers its Connections link to it, their nodes, the pods and VMs on them;
//! and the extra clusters a fabric's imports read besides its own.

use fabricsync_core::inventory::{self, InventoryKey, NodeRef, ServerView, CONNECTION_KIND, SERVER_KIND};
use fabricsync_core::key::WIRING_GROUP;
use fabricsync_core::vocab::{self as v, InventoryKind, Word};
use tonic::{Request, Response, Status};

use super::error::{ApiError, Violations};
use super::fabrics::load;
use super::{listing, parse_id, validate, AppState};
use crate::convert::{self, WORKLOAD_FILTERS, WORKLOAD_TYPES};
use crate::crypto;
use crate::db::fabrics::{FabricRow, InventorySettings as StoredSettings};
use crate::db::inventory::{self as store, ClusterRow, InventoryFilter, InventoryRow};
use crate::db::resources;
use crate::db::typed::Json;
use crate::proto::inventory_service_server::InventoryService;
use crate::proto::*;
use crate::sync::queue::{self, Enqueued};

const FILTERS: &[&str] = &["cluster", "kind", "namespace", "name", "node", "workload"];
/// Inventory clusters per fabric: each import reads them all, one after the other.
const MAX_CLUSTERS: usize = 16;
const MIN_INTERVAL_SECONDS: i64 = 10;
const MAX_INTERVAL_SECONDS: i64 = 7 * 24 * 3600;
const MAX_REGEX: usize = 1024;
/// A label key: an optional DNS-subdomain prefix and `/`, and a name (Kubernetes' rule, bounded).
const MAX_LABEL: usize = 253;

pub struct InventoryApi {
    state: AppState,
}

impl InventoryApi {
    pub fn new(state: AppState) -> Self {
        InventoryApi { state }
    }
}

/// A fabric's inventory settings as the API shows them.
pub(super) fn settings_proto(row: &FabricRow) -> InventorySettings {
    let s = &row.inventory.0;
    InventorySettings {
        namespace_regex: s.namespace_regex.clone(),
        workloads: WORKLOAD_FILTERS.value(&s.workloads).unwrap_or(WorkloadFilter::All) as i32,
        kinds: s.kinds.clone(),
        server_label: s.server_label.clone(),
        interval: (row.inventory_interval_seconds > 0)
            .then_some(prost_types::Duration { seconds: row.inventory_interval_seconds, nanos: 0 }),
    }
}

/// Sets the fabric's inventory settings from the request, checked.
pub(super) fn apply_settings(row: &mut FabricRow, given: &InventorySettings, v: &mut Violations) {
    let field = |name: &str| format!("fabric.inventory.{name}");
    v.check(validate::max_len(&given.namespace_regex, MAX_REGEX), &field("namespace_regex"));
    if !given.namespace_regex.is_empty() {
        if let Err(e) = inventory::InventoryFilter::new(Some(&given.namespace_regex), v::WorkloadFilter::All, []) {
            v.add(field("namespace_regex"), e.to_string());
        }
    }
    let workloads = WorkloadFilter::try_from(given.workloads).unwrap_or(WorkloadFilter::Unspecified);
    let mut kinds = Vec::new();
    for (i, kind) in given.kinds.iter().enumerate() {
        match InventoryKind::parse(kind) {
            Some(k) => kinds.push(k.word().to_string()),
            None => {
                v.add(format!("fabric.inventory.kinds[{i}]"), format!("must be one of {}", InventoryKind::listing()))
            }
        }
    }
    kinds.sort();
    kinds.dedup();
    v.check(label_key(&given.server_label), &field("server_label"));
    let interval = validate::interval_seconds(given.interval.as_ref(), MIN_INTERVAL_SECONDS, MAX_INTERVAL_SECONDS)
        .unwrap_or_else(|e| {
            v.add(field("interval"), e);
            0
        });
    row.inventory_interval_seconds = interval;
    row.inventory = Json(StoredSettings {
        namespace_regex: given.namespace_regex.clone(),
        workloads: WORKLOAD_FILTERS.word(workloads).unwrap_or_default().to_string(),
        kinds,
        server_label: given.server_label.clone(),
    });
}

/// Empty, or a Kubernetes label key of letters, digits, '.', '_', '-' and one '/'.
fn label_key(key: &str) -> Result<(), String> {
    validate::max_len(key, MAX_LABEL)?;
    let name = key.rsplit_once('/').map_or(key, |(_, name)| name);
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/');
    if !key.is_empty()
        && (name.is_empty() || key.matches('/').count() > 1 || !key.chars().all(allowed) || key.starts_with('/'))
    {
        return Err("must be a label key: [prefix/]name of letters, digits, '.', '_' and '-'".into());
    }
    Ok(())
}

fn object_proto(row: &InventoryRow) -> InventoryObject {
    InventoryObject {
        cluster: row.cluster.clone(),
        fabric_id: row.fabric_id.to_string(),
        kind: row.kind.0.word().to_string(),
        namespace: row.namespace.clone(),
        name: row.name.clone(),
        uid: row.uid.clone(),
        workload: row.workload.map_or(WorkloadType::Unspecified, |w| WORKLOAD_TYPES.of(w.0.word())) as i32,
        node: row.node.clone().unwrap_or_default(),
        vm: row.vm.clone().unwrap_or_default(),
        facts: convert::json_struct(&row.facts),
        update_time: Some(convert::timestamp(row.updated_at)),
    }
}

// `nodes` is still filled for clients that read it.
#[allow(deprecated)]
fn server_proto(view: ServerView) -> ServerInventory {
    ServerInventory {
        server: view.server,
        nodes: view.nodes.iter().map(|n| n.name.clone()).collect(),
        node_refs: view.nodes.into_iter().map(|n| InventoryNode { cluster: n.cluster, name: n.name }).collect(),
        links: view
            .links
            .into_iter()
            .map(|l| PortLink {
                connection: l.connection,
                server_port: l.server_port,
                switch: l.switch,
                switch_port: l.switch_port,
            })
            .collect(),
        workloads: view
            .workloads
            .into_iter()
            .map(|h| HostedWorkload {
                cluster: h.cluster,
                workload: WORKLOAD_TYPES.of(h.workload.word()) as i32,
                kind: h.kind.word().to_string(),
                namespace: h.namespace,
                name: h.name,
                node: h.node,
                vm: h.vm.unwrap_or_default(),
            })
            .collect(),
    }
}

fn cluster_proto(row: &ClusterRow) -> InventoryCluster {
    InventoryCluster {
        name: row.name.clone(),
        connection: Some(ClusterConnection {
            server_url: row.server_url.clone(),
            ca_certificate_pem: row.ca_pem.clone(),
            has_bearer_token: row.token_sealed.is_some(),
            namespace: String::new(),
        }),
    }
}

/// The cluster a PutInventoryCluster request stores, checked; `current` is the stored one of
/// its name. The token is sealed bound to (fabric, name); one not given again is kept while the
/// server URL stays (the bool says whether it was dropped).
fn put_row(
    fabric_id: uuid::Uuid,
    name: &str,
    given: &ClusterConnectionInput,
    current: Option<&ClusterRow>,
    keyring: &crypto::Keyring,
) -> Result<(ClusterRow, bool), ApiError> {
    let mut v = Violations::default();
    v.check(validate::dns1123_label(name), "name");
    if given.server_url.is_empty() {
        v.add("connection.server_url", "is required");
    } else {
        v.check(validate::cluster_url(&given.server_url), "connection.server_url");
    }
    if !given.ca_certificate_pem.is_empty() {
        v.check(validate::ca_certificate_pem(&given.ca_certificate_pem), "connection.ca_certificate_pem");
    }
    v.check(validate::max_len(&given.bearer_token, validate::MAX_TOKEN), "connection.bearer_token");
    if !given.namespace.is_empty() {
        v.add("connection.namespace", "must be empty: an import reads every namespace its filter keeps");
    }
    v.into_result()?;
    let kept = current.filter(|c| c.server_url == given.server_url && given.bearer_token.is_empty());
    let cleared = given.bearer_token.is_empty() && kept.is_none() && current.is_some_and(|c| c.token_sealed.is_some());
    let (token_sealed, token_key_id) = match kept {
        Some(current) => (current.token_sealed.clone(), current.token_key_id.clone()),
        None if given.bearer_token.is_empty() => (None, None),
        None => {
            let context = crypto::inventory_cluster_token_context(fabric_id, name);
            let sealed = keyring.seal_secret(&crypto::Secret::new(given.bearer_token.clone()), &context);
            (Some(sealed.blob), Some(sealed.key_id))
        }
    };
    let row = ClusterRow {
        fabric_id,
        name: name.to_string(),
        server_url: given.server_url.clone(),
        ca_pem: given.ca_certificate_pem.clone(),
        token_sealed,
        token_key_id,
    };
    Ok((row, cleared))
}

/// What the cross-layer view joins: the fabric's Server names, each server's links from its
/// Connections, and the imported nodes (what runs on them is loaded per question).
struct Layers {
    fabric_id: uuid::Uuid,
    servers: Vec<String>,
    links: std::collections::BTreeMap<String, Vec<inventory::PortLink>>,
    nodes: Vec<inventory::InventoryObject>,
    label: Option<String>,
}

impl Layers {
    async fn load(state: &AppState, fabric: &FabricRow) -> Result<Layers, ApiError> {
        let mut conn = state.conn().await?;
        let servers = resources::desired_of_kind(&mut conn, fabric.id, WIRING_GROUP, SERVER_KIND).await?;
        let connections = resources::desired_of_kind(&mut conn, fabric.id, WIRING_GROUP, CONNECTION_KIND).await?;
        let connections: Vec<serde_json::Value> = connections.into_iter().map(|(_, body)| body).collect();
        let label = Some(fabric.inventory.0.server_label.clone()).filter(|l| !l.is_empty());
        Ok(Layers {
            fabric_id: fabric.id,
            servers: servers.into_iter().map(|(name, _)| name).collect(),
            links: inventory::server_links(&connections),
            nodes: store::nodes(&mut conn, fabric.id).await?,
            label,
        })
    }

    /// The views `view` makes, in two steps: over the nodes alone (which nodes the servers
    /// have), then with the pods and VMs of those nodes, loaded for them only.
    async fn views<E>(
        &self,
        state: &AppState,
        view: impl Fn(&[inventory::InventoryObject]) -> Result<Vec<ServerView>, E>,
    ) -> Result<Result<Vec<ServerView>, E>, ApiError> {
        let first = match view(&self.nodes) {
            Ok(first) => first,
            Err(e) => return Ok(Err(e)),
        };
        let nodes: Vec<NodeRef> = first.iter().flat_map(|v| v.nodes.iter().cloned()).collect();
        if nodes.is_empty() {
            return Ok(Ok(first));
        }
        let mut conn = state.conn().await?;
        let mut placed = self.nodes.clone();
        placed.extend(store::on_nodes(&mut conn, self.fabric_id, &nodes).await?);
        Ok(view(&placed))
    }

    async fn server(&self, state: &AppState, server: &str) -> Result<ServerInventory, ApiError> {
        let label = self.label.as_deref();
        let hosted = |placed: &[inventory::InventoryObject]| {
            Ok::<_, std::convert::Infallible>(vec![inventory::hosted_on(
                server,
                &self.links,
                &self.servers,
                label,
                placed,
            )])
        };
        let views = self.views(state, hosted).await?.unwrap_or_else(|never| match never {});
        Ok(views.into_iter().next().map(server_proto).unwrap_or_default())
    }
}

#[tonic::async_trait]
impl InventoryService for InventoryApi {
    async fn start_inventory_import(
        &self,
        request: Request<StartInventoryImportRequest>,
    ) -> Result<Response<StartInventoryImportResponse>, Status> {
        let requested_by = super::requester(&request)?;
        let req = request.into_inner();
        let fabric_id = parse_id("fabric_id", &req.fabric_id)?;
        let fabric = load(&self.state, fabric_id).await?;
        let mut conn = self.state.conn().await?;
        if fabric.cluster_server_url.is_empty() && store::clusters(&mut conn, fabric_id).await?.is_empty() {
            let message = "an inventory import reads the fabric's clusters: set cluster.server_url with UpdateFabric, \
                           or add one with PutInventoryCluster";
            return Err(ApiError::FailedPrecondition(message.into()).into());
        }
        let request = queue::Request {
            fabric_id,
            mode: v::SyncMode::Inventory,
            trigger: v::Trigger::User,
            dry_run: req.dry_run,
            force: false,
            requested_ref: String::new(),
            targets: None,
            requested_by,
            rollout_wait_seconds: 0,
        };
        let (row, already_active) = match queue::enqueue(&mut conn, &request).await.map_err(ApiError::from)? {
            Enqueued::New(row) => (row, false),
            Enqueued::AlreadyActive(Some(row)) => (row, true),
            Enqueued::AlreadyActive(None) => {
                return Err(ApiError::Aborted("the fabric's active import just ended; start again".into()).into())
            }
        };
        let run = super::sync::to_proto(&row, super::sync::last_sequence(&mut conn, row.id).await?);
        Ok(Response::new(StartInventoryImportResponse { run: Some(run), already_active }))
    }

    async fn list_inventory_objects(
        &self,
        request: Request<ListInventoryObjectsRequest>,
    ) -> Result<Response<ListInventoryObjectsResponse>, Status> {
        let req = request.into_inner();
        let fabric_id = parse_id("fabric_id", &req.fabric_id)?;
        let page = listing::page(req.page_size, &req.page_token)?;
        let terms = listing::filter(&req.filter, FILTERS)?;
        let filter = InventoryFilter {
            cluster: terms.get("cluster").cloned(),
            kind: terms.get("kind").map(|w| listing::word_filter::<InventoryKind>("kind", w)).transpose()?,
            namespace: terms.get("namespace").cloned(),
            name: terms.get("name").cloned(),
            node: terms.get("node").cloned(),
            workload: terms
                .get("workload")
                .map(|w| listing::word_filter::<v::WorkloadType>("workload", w))
                .transpose()?,
        };
        load(&self.state, fabric_id).await?;
        let mut conn = self.state.conn().await?;
        let listed = store::list(&mut conn, fabric_id, &filter, &page).await.map_err(ApiError::from)?;
        let last = listed.items.last().map(store::page_key);
        Ok(Response::new(ListInventoryObjectsResponse {
            objects: listed.items.iter().map(object_proto).collect(),
            next_page_token: listing::next_page_token(listed.has_more, last.as_deref()),
            total_size: i32::try_from(listed.total).unwrap_or(i32::MAX),
        }))
    }

    async fn get_inventory_object(
        &self,
        request: Request<GetInventoryObjectRequest>,
    ) -> Result<Response<GetInventoryObjectResponse>, Status> {
        let req = request.into_inner();
        let fabric_id = parse_id("fabric_id", &req.fabric_id)?;
        let mut v = Violations::default();
        let kind = InventoryKind::parse(&req.kind);
        if kind.is_none() {
            v.add("kind", format!("must be one of {}", InventoryKind::listing()));
        }
        if req.name.is_empty() {
            v.add("name", "is required");
        }
        v.check(validate::max_len(&req.name, MAX_LABEL), "name");
        v.check(validate::max_len(&req.namespace, MAX_LABEL), "namespace");
        v.check(validate::max_len(&req.cluster, MAX_LABEL), "cluster");
        v.into_result()?;
        let key = InventoryKey {
            cluster: req.cluster,
            kind: kind.unwrap_or(InventoryKind::Node),
            namespace: req.namespace,
            name: req.name,
        };
        let fabric = load(&self.state, fabric_id).await?;
        let row = {
            let mut conn = self.state.conn().await?;
            store::get(&mut conn, fabric_id, &key).await.map_err(ApiError::from)?
        };
        let row = row.ok_or_else(|| ApiError::NotFound { kind: "inventory object", id: key.to_string() })?;
        let layers = Layers::load(&self.state, &fabric).await?;
        let object = row.object();
        // A VM runs where its VMI runs.
        let node_name = match key.kind {
            InventoryKind::Node => Some(object.name.clone()),
            InventoryKind::VirtualMachine => {
                let vmi = InventoryKey { kind: InventoryKind::VirtualMachineInstance, ..key.clone() };
                let mut conn = self.state.conn().await?;
                store::get(&mut conn, fabric_id, &vmi).await.map_err(ApiError::from)?.and_then(|r| r.node)
            }
            _ => object.node.clone(),
        };
        let node = node_name.and_then(|n| layers.nodes.iter().find(|o| o.name == n && o.cluster == key.cluster));
        let server = match node.and_then(|n| inventory::node_server(n, &layers.servers, layers.label.as_deref())) {
            Some(name) => Some(layers.server(&self.state, &name).await?),
            None => None,
        };
        Ok(Response::new(GetInventoryObjectResponse { object: Some(object_proto(&row)), server }))
    }

    async fn list_behind_switch_port(
        &self,
        request: Request<ListBehindSwitchPortRequest>,
    ) -> Result<Response<ListBehindSwitchPortResponse>, Status> {
        let req = request.into_inner();
        let fabric_id = parse_id("fabric_id", &req.fabric_id)?;
        validate::max_len(&req.switch_port, MAX_LABEL).map_err(|e| ApiError::invalid("switch_port", e))?;
        let fabric = load(&self.state, fabric_id).await?;
        let layers = Layers::load(&self.state, &fabric).await?;
        let label = layers.label.as_deref();
        let behind = |placed: &[inventory::InventoryObject]| {
            inventory::behind_switch_port(&req.switch_port, &layers.links, &layers.servers, label, placed)
        };
        let views =
            layers.views(&self.state, behind).await?.map_err(|e| ApiError::invalid("switch_port", e.to_string()))?;
        Ok(Response::new(ListBehindSwitchPortResponse { servers: views.into_iter().map(server_proto).collect() }))
    }

    async fn get_server_inventory(
        &self,
        request: Request<GetServerInventoryRequest>,
    ) -> Result<Response<GetServerInventoryResponse>, Status> {
        let req = request.into_inner();
        let fabric_id = parse_id("fabric_id", &req.fabric_id)?;
        if req.server.is_empty() {
            return Err(ApiError::invalid("server", "is required").into());
        }
        validate::max_len(&req.server, MAX_LABEL).map_err(|e| ApiError::invalid("server", e))?;
        let fabric = load(&self.state, fabric_id).await?;
        let layers = Layers::load(&self.state, &fabric).await?;
        if !layers.servers.contains(&req.server) {
            return Err(ApiError::NotFound { kind: "server", id: req.server }.into());
        }
        Ok(Response::new(GetServerInventoryResponse { server: Some(layers.server(&self.state, &req.server).await?) }))
    }

    async fn put_inventory_cluster(
        &self,
        request: Request<PutInventoryClusterRequest>,
    ) -> Result<Response<PutInventoryClusterResponse>, Status> {
        let req = request.into_inner();
        let fabric_id = parse_id("fabric_id", &req.fabric_id)?;
        let given = req.connection.unwrap_or_default();
        load(&self.state, fabric_id).await?;
        let stored = {
            let mut conn = self.state.conn().await?;
            store::clusters(&mut conn, fabric_id).await?
        };
        let current = stored.iter().find(|c| c.name == req.name);
        let (row, credentials_cleared) = put_row(fabric_id, &req.name, &given, current, &self.state.keyring)?;
        super::fabrics::check_cluster_reachable(
            &self.state.settings.outbound,
            &row.server_url,
            "connection.server_url",
        )
        .await?;
        let mut conn = self.state.conn().await?;
        if !store::put_cluster(&mut conn, &row, MAX_CLUSTERS).await? {
            let message = format!("the fabric has {MAX_CLUSTERS} inventory clusters, the most it may have");
            return Err(ApiError::FailedPrecondition(message).into());
        }
        Ok(Response::new(PutInventoryClusterResponse { cluster: Some(cluster_proto(&row)), credentials_cleared }))
    }

    async fn delete_inventory_cluster(
        &self,
        request: Request<DeleteInventoryClusterRequest>,
    ) -> Result<Response<DeleteInventoryClusterResponse>, Status> {
        let req = request.into_inner();
        let fabric_id = parse_id("fabric_id", &req.fabric_id)?;
        validate::max_len(&req.name, MAX_LABEL).map_err(|e| ApiError::invalid("name", e))?;
        load(&self.state, fabric_id).await?;
        let mut conn = self.state.conn().await?;
        if !store::delete_cluster(&mut conn, fabric_id, &req.name).await? {
            return Err(ApiError::NotFound { kind: "inventory cluster", id: req.name }.into());
        }
        Ok(Response::new(DeleteInventoryClusterResponse {}))
    }

    async fn list_inventory_clusters(
        &self,
        request: Request<ListInventoryClustersRequest>,
    ) -> Result<Response<ListInventoryClustersResponse>, Status> {
        let fabric_id = parse_id("fabric_id", &request.get_ref().fabric_id)?;
        load(&self.state, fabric_id).await?;
        let mut conn = self.state.conn().await?;
        let clusters = store::clusters(&mut conn, fabric_id).await?;
        Ok(Response::new(ListInventoryClustersResponse { clusters: clusters.iter().map(cluster_proto).collect() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys() {
        for good in ["", "fabricsync.githedgehog.com/server", "server", "a.b-c_d"] {
            assert_eq!(label_key(good), Ok(()), "{good}");
        }
        for bad in ["/server", "a/b/c", "prefix/", "spa ce", "x=y", &"a".repeat(MAX_LABEL + 1)] {
            assert!(label_key(bad).is_err(), "{bad}");
        }
    }
}
