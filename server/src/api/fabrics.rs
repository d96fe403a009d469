//! FabricService: fabric CRUD, the stored resources of a fabric, and the cluster calls
//! (TestClusterConnection, GenerateRbacManifests).

use diesel_async::AsyncPgConnection;
use fabricsync_core::vocab as v;
use tonic::{Request, Response, Status};
use tracing::info;
use uuid::Uuid;

use super::error::{ApiError, Violations};
use super::{check_etag, etag, listing, mask_paths, parse_id, validate, AppState};
use crate::cluster::{self, check, rbac, ClusterError};
use crate::convert::{
    self, APPLY_STATUSES, CONNECTION_STATUSES, DRIFT_STATUSES, LAYOUTS, RESOURCE_DRIFT_STATUSES, SYNC_STATUSES,
    WATCH_STATUSES,
};
use crate::crypto;
use crate::db::fabrics::{self as store, FabricFilter, FabricRow};
use crate::db::resources::{self, ResourceFilter, ResourceRow};
use crate::db::typed::Json;
use crate::db::{repositories, DbError};
use crate::outbound::Outbound;
use crate::proto::fabric_service_server::FabricService;
use crate::proto::*;
use crate::redact::Redactor;
use crate::text::quote;
use fabricsync_core::diff::IgnoreRule;
use fabricsync_core::manifest::KindRegistry;
use fabricsync_core::sources;

pub struct FabricApi {
    state: AppState,
}

impl FabricApi {
    pub fn new(state: AppState) -> Self {
        FabricApi { state }
    }
}

const UPDATABLE: &[&str] = &[
    "name",
    "description",
    "repository_id",
    "git_ref",
    "gitops_path",
    "include_paths",
    "exclude_paths",
    "paused",
    "watch",
    "watch.enabled",
    "watch.kinds",
    "watch.scope",
    "sync_policy",
    "sync_policy.auto_sync_interval",
    "sync_policy.self_heal",
    "sync_policy.prune",
    "sync_policy.allow_empty",
    "sync_policy.strict_references",
    "sync_policy.ignore_differences",
    "sync_policy.auto_apply",
    "cluster",
    "cluster.server_url",
    "cluster.ca_certificate_pem",
    "cluster.bearer_token",
    "cluster.namespace",
    "inventory",
];
const FILTERS: &[&str] = &["name", "repository_id", "sync_status", "drift_status", "watch_status", "connection_status"];
const DEFAULT_REF: &str = "main";
const DEFAULT_NAMESPACE: &str = "default";
const MIN_AUTO_SYNC_SECONDS: i64 = 10;
const MAX_AUTO_SYNC_SECONDS: i64 = 7 * 24 * 3600;
const MAX_IGNORE_RULES: usize = 100;
/// A Kubernetes group, kind, namespace or name is at most a DNS subdomain (253).
const MAX_KEY_PART: usize = 253;

/// "" and "." both mean the repository root; trailing slashes are dropped.
fn normalize_gitops_path(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed == "." {
        String::new()
    } else {
        trimmed.trim_start_matches("./").to_string()
    }
}

fn auto_sync_seconds(d: Option<&prost_types::Duration>, v: &mut Violations) -> i64 {
    validate::interval_seconds(d, MIN_AUTO_SYNC_SECONDS, MAX_AUTO_SYNC_SECONDS).unwrap_or_else(|e| {
        v.add("fabric.sync_policy.auto_sync_interval", e);
        0
    })
}

fn ignore_differences(rules: &[IgnoreDifference], v: &mut Violations) -> Json<Vec<IgnoreRule>> {
    if rules.len() > MAX_IGNORE_RULES {
        v.add("fabric.sync_policy.ignore_differences", format!("at most {MAX_IGNORE_RULES} rules"));
    }
    for (i, rule) in rules.iter().enumerate() {
        let field = format!("fabric.sync_policy.ignore_differences[{i}]");
        if rule.kind.is_empty() {
            v.add(format!("{field}.kind"), "is required");
        }
        v.check(validate::max_len(&rule.kind, MAX_KEY_PART), &format!("{field}.kind"));
        v.check(validate::max_len(&rule.group, MAX_KEY_PART), &format!("{field}.group"));
        if rule.json_pointers.is_empty() {
            v.add(format!("{field}.json_pointers"), "must name at least one field");
        }
        for (j, pointer) in rule.json_pointers.iter().enumerate() {
            v.check(validate::json_pointer(pointer), &format!("{field}.json_pointers[{j}]"));
        }
    }
    Json(
        rules
            .iter()
            .map(|r| IgnoreRule {
                group: r.group.clone(),
                kind: r.kind.clone(),
                json_pointers: r.json_pointers.clone(),
            })
            .collect(),
    )
}

fn ignore_differences_proto(rules: &[IgnoreRule]) -> Vec<IgnoreDifference> {
    rules
        .iter()
        .map(|r| IgnoreDifference {
            group: r.group.clone(),
            kind: r.kind.clone(),
            json_pointers: r.json_pointers.clone(),
        })
        .collect()
}

/// Applies one sync-policy field (or all with "sync_policy") from the request to the row.
fn apply_policy(row: &mut FabricRow, policy: &SyncPolicy, path: &str, v: &mut Violations) {
    let all = path == "sync_policy";
    if all || path == "sync_policy.auto_sync_interval" {
        row.auto_sync_interval_seconds = auto_sync_seconds(policy.auto_sync_interval.as_ref(), v);
    }
    if all || path == "sync_policy.self_heal" {
        row.self_heal = policy.self_heal;
    }
    if all || path == "sync_policy.prune" {
        row.prune = policy.prune;
    }
    if all || path == "sync_policy.allow_empty" {
        row.allow_empty = policy.allow_empty;
    }
    if all || path == "sync_policy.strict_references" {
        row.strict_references = policy.strict_references;
    }
    if all || path == "sync_policy.ignore_differences" {
        row.ignore_differences = ignore_differences(&policy.ignore_differences, v);
    }
    if all || path == "sync_policy.auto_apply" {
        row.auto_apply = policy.auto_apply;
    }
}

/// Applies one cluster field (or all with "cluster") from the request; the token is sealed
/// bound to the fabric's id, and an empty token clears it.
fn apply_cluster(
    row: &mut FabricRow,
    cluster: &ClusterConnectionInput,
    path: &str,
    keyring: &crypto::Keyring,
    v: &mut Violations,
) {
    let all = path == "cluster";
    if all || path == "cluster.server_url" {
        if !cluster.server_url.is_empty() {
            v.check(validate::cluster_url(&cluster.server_url), "cluster.server_url");
        }
        row.cluster_server_url = cluster.server_url.clone();
    }
    if all || path == "cluster.ca_certificate_pem" {
        if !cluster.ca_certificate_pem.is_empty() {
            v.check(validate::ca_certificate_pem(&cluster.ca_certificate_pem), "cluster.ca_certificate_pem");
        }
        row.cluster_ca_pem = cluster.ca_certificate_pem.clone();
    }
    if all || path == "cluster.namespace" {
        let namespace = if cluster.namespace.is_empty() { DEFAULT_NAMESPACE } else { cluster.namespace.as_str() };
        v.check(validate::dns1123_label(namespace), "cluster.namespace");
        row.cluster_namespace = namespace.to_string();
    }
    if all || path == "cluster.bearer_token" {
        v.check(validate::max_len(&cluster.bearer_token, validate::MAX_TOKEN), "cluster.bearer_token");
        let sealed = (!cluster.bearer_token.is_empty()).then(|| {
            keyring
                .seal_secret(&crypto::Secret::new(cluster.bearer_token.clone()), &crypto::fabric_token_context(row.id))
        });
        row.cluster_token_key_id = sealed.as_ref().map(|s| s.key_id.clone());
        row.cluster_token_sealed = sealed.map(|s| s.blob);
    }
}

/// A bearer token is bound to the API server it is for (see update_fabric): one given without
/// a server URL would be sent to whatever URL is set later.
fn check_token_has_server(row: &FabricRow, token_given: bool, v: &mut Violations) {
    if token_given && row.cluster_token_sealed.is_some() && row.cluster_server_url.is_empty() {
        v.add("cluster.bearer_token", "needs cluster.server_url, the API server it is for");
    }
}

/// Checks a fabric's globs (`fabricsync_core::sources`), naming the one that is not a glob.
fn check_globs(include: &[String], exclude: &[String], v: &mut Violations) {
    for (list, globs) in [("include_paths", include), ("exclude_paths", exclude)] {
        for (i, glob) in globs.iter().enumerate() {
            v.check(crate::text::no_nul(glob), &format!("fabric.{list}[{i}]"));
        }
    }
    if let Err(e) = sources::check_globs(include, exclude) {
        let field = match e.index {
            Some(i) => format!("fabric.{}[{i}]", e.list),
            None => format!("fabric.{}", e.list),
        };
        v.add(field, e.message);
    }
}

/// Applies the watch settings (or one of them) from the request; kinds must be kinds of the
/// registry.
fn apply_watch(row: &mut FabricRow, watch: &WatchSettings, path: &str, kinds: &KindRegistry, v: &mut Violations) {
    let all = path == "watch";
    if all || path == "watch.enabled" {
        row.watch_enabled = watch.enabled;
    }
    if all || path == "watch.kinds" {
        let known: Vec<&str> = kinds.kinds().map(|k| k.kind.as_str()).collect();
        for (i, kind) in watch.kinds.iter().enumerate() {
            if !known.contains(&kind.as_str()) {
                let mut listing = known.clone();
                listing.sort_unstable();
                listing.dedup();
                v.add(
                    format!("fabric.watch.kinds[{i}]"),
                    format!("{} is not a kind of the registry; one of {}", quote(kind), listing.join(", ")),
                );
            }
        }
        let mut chosen = watch.kinds.clone();
        chosen.sort();
        chosen.dedup();
        row.watch_kinds = chosen;
    }
    if all || path == "watch.scope" {
        match WatchScope::try_from(watch.scope) {
            Ok(scope) => row.watch_scope = convert::WATCH_SCOPES.domain(scope).unwrap_or(v::WatchScope::Cluster),
            Err(_) => v.add("fabric.watch.scope", format!("{} is not a watch scope", watch.scope)),
        }
    }
}

fn apply_field(row: &mut FabricRow, fabric: &Fabric, path: &str, v: &mut Violations) -> Result<(), ApiError> {
    match path {
        "name" => {
            v.check(validate::dns1123_label(&fabric.name), "fabric.name");
            row.name = fabric.name.clone();
        }
        "description" => {
            v.check(validate::max_len(&fabric.description, validate::MAX_DESCRIPTION), "fabric.description");
            row.description = fabric.description.clone();
        }
        "repository_id" => row.repository_id = parse_id("fabric.repository_id", &fabric.repository_id)?,
        "git_ref" => {
            let git_ref = if fabric.git_ref.is_empty() { DEFAULT_REF } else { fabric.git_ref.as_str() };
            v.check(validate::git_ref(git_ref), "fabric.git_ref");
            row.git_ref = git_ref.to_string();
        }
        "gitops_path" => {
            v.check(validate::gitops_path(&fabric.gitops_path), "fabric.gitops_path");
            row.gitops_path = normalize_gitops_path(&fabric.gitops_path);
        }
        "include_paths" => {
            check_globs(&fabric.include_paths, &[], v);
            row.include_paths = fabric.include_paths.clone();
        }
        "exclude_paths" => {
            check_globs(&[], &fabric.exclude_paths, v);
            row.exclude_paths = fabric.exclude_paths.clone();
        }
        "paused" => row.paused = fabric.paused,
        _ => {}
    }
    Ok(())
}

/// One fabric as the API shows it, with its drift count.
async fn shown(state: &AppState, row: &FabricRow) -> Result<Fabric, ApiError> {
    let mut conn = state.conn().await?;
    let drifted = resources::drifted_counts(&mut conn, &[row.id]).await?;
    Ok(to_proto(row, drifted.get(&row.id).copied().unwrap_or(0)))
}

/// `drift_count`: the fabric's resources that count as drift (`resources::drifted_counts`).
pub(crate) fn to_proto(row: &FabricRow, drift_count: i64) -> Fabric {
    let counts: Vec<KindCount> = row
        .resource_counts
        .0
        .iter()
        .map(|(group, kind, count)| KindCount { group: group.clone(), kind: kind.clone(), count: *count })
        .collect();
    Fabric {
        id: row.id.to_string(),
        name: row.name.clone(),
        description: row.description.clone(),
        repository_id: row.repository_id.to_string(),
        git_ref: row.git_ref.clone(),
        gitops_path: row.gitops_path.clone(),
        cluster: Some(ClusterConnection {
            server_url: row.cluster_server_url.clone(),
            ca_certificate_pem: row.cluster_ca_pem.clone(),
            has_bearer_token: row.cluster_token_sealed.is_some(),
            namespace: row.cluster_namespace.clone(),
        }),
        sync_policy: Some(SyncPolicy {
            auto_sync_interval: (row.auto_sync_interval_seconds > 0)
                .then_some(prost_types::Duration { seconds: row.auto_sync_interval_seconds, nanos: 0 }),
            self_heal: row.self_heal,
            prune: row.prune,
            allow_empty: row.allow_empty,
            strict_references: row.strict_references,
            ignore_differences: ignore_differences_proto(&row.ignore_differences.0),
            auto_apply: row.auto_apply,
        }),
        connection_status: crate::convert::proto_of(&CONNECTION_STATUSES, row.connection_status) as i32,
        sync_status: crate::convert::proto_of(&SYNC_STATUSES, row.sync_status) as i32,
        drift_status: crate::convert::proto_of(&DRIFT_STATUSES, row.drift_status) as i32,
        watch_status: crate::convert::proto_of(&WATCH_STATUSES, row.watch_status) as i32,
        watch_error: row.watch_error.clone().unwrap_or_default(),
        resource_counts: counts,
        last_synced_commit: row.last_synced_commit.clone().unwrap_or_default(),
        last_sync_time: convert::opt_timestamp(row.last_sync_time),
        last_error: row.last_error.clone().unwrap_or_default(),
        create_time: Some(convert::timestamp(row.created_at)),
        update_time: Some(convert::timestamp(row.updated_at)),
        etag: etag(row.version),
        drift_count,
        include_paths: row.include_paths.clone(),
        exclude_paths: row.exclude_paths.clone(),
        layout: crate::convert::proto_of(&LAYOUTS, row.layout) as i32,
        paused: row.paused,
        watch: Some(WatchSettings {
            enabled: row.watch_enabled,
            kinds: row.watch_kinds.clone(),
            scope: convert::WATCH_SCOPES.value(row.watch_scope.word()).unwrap_or_default() as i32,
        }),
        watch_activity: Some(WatchActivity {
            started_time: convert::opt_timestamp(row.watch_started_at),
            last_event_time: convert::opt_timestamp(row.watch_last_event_at),
            event_count: row.watch_event_count,
            process: row.watch_process.clone().unwrap_or_default(),
        }),
        // What the watch told last is current only while it watches.
        health: row
            .health
            .as_ref()
            .filter(|_| row.watch_status == v::WatchStatus::Active)
            .map(|h| convert::fabric_health(&h.0)),
        inventory: Some(super::inventory::settings_proto(row)),
    }
}

fn name_taken(name: &str) -> impl FnOnce(DbError) -> ApiError + '_ {
    move |e| match e {
        DbError::UniqueViolation(_) => {
            ApiError::AlreadyExists(format!("a fabric named {} already exists", quote(name)))
        }
        DbError::ForeignKeyViolation(_) => {
            ApiError::NotFound { kind: "repository", id: "referenced by the fabric".into() }
        }
        e => e.into(),
    }
}

pub(super) async fn load(state: &AppState, id: Uuid) -> Result<FabricRow, ApiError> {
    let mut conn = state.conn().await?;
    store::get(&mut conn, id).await?.ok_or_else(|| ApiError::NotFound { kind: "fabric", id: id.to_string() })
}

/// Refuses, before anything is stored or connects, a cluster URL whose literal address or current
/// resolution the outbound policy rules out (checked again at every connection).
pub(super) async fn check_cluster_reachable(
    outbound: &Outbound,
    server_url: &str,
    field: &str,
) -> Result<(), ApiError> {
    let Some((host, port)) =
        url::Url::parse(server_url).ok().and_then(|u| Some((u.host_str()?.to_owned(), u.port_or_known_default()?)))
    else {
        return Ok(()); // empty (no cluster), or already refused by validation
    };
    outbound.precheck(&host, port).await.map_err(|r| ApiError::invalid(field, r.to_string()))
}

async fn require_repository(state: &AppState, id: Uuid) -> Result<(), ApiError> {
    let mut conn = state.conn().await?;
    match repositories::get(&mut conn, id).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::NotFound { kind: "repository", id: id.to_string() }),
    }
}

#[tonic::async_trait]
impl FabricService for FabricApi {
    async fn create_fabric(
        &self,
        request: Request<CreateFabricRequest>,
    ) -> Result<Response<CreateFabricResponse>, Status> {
        let req = request.into_inner();
        let fabric = req.fabric.ok_or_else(|| ApiError::invalid("fabric", "is required"))?;
        let now = crate::db::now();
        let mut row = FabricRow {
            id: Uuid::new_v4(),
            name: String::new(),
            description: String::new(),
            repository_id: Uuid::nil(),
            git_ref: String::new(),
            gitops_path: String::new(),
            cluster_server_url: String::new(),
            cluster_ca_pem: String::new(),
            cluster_namespace: DEFAULT_NAMESPACE.into(),
            cluster_token_sealed: None,
            cluster_token_key_id: None,
            auto_sync_interval_seconds: 0,
            self_heal: false,
            prune: false,
            allow_empty: false,
            strict_references: false,
            ignore_differences: Json(Vec::new()),
            connection_status: v::ConnectionStatus::Unknown,
            sync_status: v::SyncStatus::NeverSynced,
            drift_status: v::FabricDrift::Unknown,
            watch_status: v::WatchStatus::Inactive,
            watch_error: None,
            resource_counts: Json(Vec::new()),
            last_synced_commit: None,
            last_sync_time: None,
            last_error: None,
            version: 1,
            created_at: now,
            updated_at: now,
            synced_source: None,
            include_paths: Vec::new(),
            exclude_paths: Vec::new(),
            layout: v::Layout::Unknown,
            paused: false,
            watch_enabled: true,
            watch_kinds: Vec::new(),
            watch_started_at: None,
            watch_last_event_at: None,
            watch_event_count: 0,
            auto_apply: false,
            health: None,
            inventory: Json(Default::default()),
            inventory_interval_seconds: 0,
            next_inventory_at: None,
            watch_scope: v::WatchScope::Cluster,
            watch_process: None,
        };
        let mut v = Violations::default();
        for path in ["name", "description", "git_ref", "gitops_path", "include_paths", "exclude_paths", "paused"] {
            apply_field(&mut row, &fabric, path, &mut v)?;
        }
        if let Some(watch) = &fabric.watch {
            apply_watch(&mut row, watch, "watch", self.state.settings.kinds, &mut v);
        }
        if let Some(inventory) = &fabric.inventory {
            super::inventory::apply_settings(&mut row, inventory, &mut v);
        }
        if fabric.repository_id.is_empty() {
            v.add("fabric.repository_id", "is required");
        } else {
            apply_field(&mut row, &fabric, "repository_id", &mut v)?;
        }
        apply_policy(&mut row, &fabric.sync_policy.unwrap_or_default(), "sync_policy", &mut v);
        if let Some(cluster) = &req.cluster {
            apply_cluster(&mut row, cluster, "cluster", &self.state.keyring, &mut v);
        }
        check_token_has_server(&row, req.cluster.is_some(), &mut v);
        v.into_result()?;
        check_cluster_reachable(&self.state.settings.outbound, &row.cluster_server_url, "cluster.server_url").await?;
        require_repository(&self.state, row.repository_id).await?;
        let mut conn = self.state.conn().await?;
        store::insert(&mut conn, &row).await.map_err(name_taken(&row.name))?;
        info!(fabric_id = %row.id, name = %row.name, "fabric created");
        Ok(Response::new(CreateFabricResponse { fabric: Some(to_proto(&row, 0)) }))
    }

    async fn get_fabric(&self, request: Request<GetFabricRequest>) -> Result<Response<GetFabricResponse>, Status> {
        let id = parse_id("id", &request.get_ref().id)?;
        Ok(Response::new(GetFabricResponse { fabric: Some(shown(&self.state, &load(&self.state, id).await?).await?) }))
    }

    async fn list_fabrics(
        &self,
        request: Request<ListFabricsRequest>,
    ) -> Result<Response<ListFabricsResponse>, Status> {
        let scope = super::scope_patterns(&request)?;
        let req = request.into_inner();
        let page = listing::page(req.page_size, &req.page_token)?;
        let terms = listing::filter(&req.filter, FILTERS)?;
        let filter = FabricFilter {
            name: terms.get("name").cloned(),
            repository_id: terms.get("repository_id").map(|id| parse_id("filter", id)).transpose()?,
            sync_status: terms
                .get("sync_status")
                .map(|w| listing::word_filter::<v::SyncStatus>("sync_status", w))
                .transpose()?,
            drift_status: terms
                .get("drift_status")
                .map(|w| listing::word_filter::<v::FabricDrift>("drift_status", w))
                .transpose()?,
            watch_status: terms
                .get("watch_status")
                .map(|w| listing::word_filter::<v::WatchStatus>("watch_status", w))
                .transpose()?,
            connection_status: terms
                .get("connection_status")
                .map(|w| listing::word_filter::<v::ConnectionStatus>("connection_status", w))
                .transpose()?,
            scope,
        };
        let mut conn = self.state.conn().await?;
        let listed = store::list(&mut conn, &filter, &page).await.map_err(ApiError::from)?;
        let ids: Vec<Uuid> = listed.items.iter().map(|f| f.id).collect();
        let drifted = resources::drifted_counts(&mut conn, &ids).await?;
        Ok(Response::new(ListFabricsResponse {
            next_page_token: listing::next_page_token(listed.has_more, listed.items.last().map(|f| f.name.as_str())),
            fabrics: listed.items.iter().map(|f| to_proto(f, drifted.get(&f.id).copied().unwrap_or(0))).collect(),
            total_size: listed.total as i32,
        }))
    }

    async fn update_fabric(
        &self,
        request: Request<UpdateFabricRequest>,
    ) -> Result<Response<UpdateFabricResponse>, Status> {
        let req = request.into_inner();
        let fabric = req.fabric.ok_or_else(|| ApiError::invalid("fabric", "is required"))?;
        let id = parse_id("fabric.id", &fabric.id)?;
        let paths = mask_paths(req.update_mask.as_ref(), UPDATABLE)?;
        let current = load(&self.state, id).await?;
        check_etag(&req.etag, current.version, "fabric")?;

        let mut row = current.clone();
        let mut v = Violations::default();
        let policy = fabric.sync_policy.clone().unwrap_or_default();
        let cluster = req.cluster.clone().unwrap_or_default();
        let watch = fabric.watch.clone().unwrap_or_default();
        for path in &paths {
            if path.starts_with("sync_policy") {
                apply_policy(&mut row, &policy, path, &mut v);
            } else if path.starts_with("watch") {
                apply_watch(&mut row, &watch, path, self.state.settings.kinds, &mut v);
            } else if path.starts_with("cluster") {
                apply_cluster(&mut row, &cluster, path, &self.state.keyring, &mut v);
            } else if path == "inventory" {
                super::inventory::apply_settings(&mut row, &fabric.inventory.clone().unwrap_or_default(), &mut v);
            } else {
                apply_field(&mut row, &fabric, path, &mut v)?;
            }
        }
        // The bearer token is bound to the API server it was given for: a new server_url without
        // the token given again drops it.
        let token_given = paths.iter().any(|p| p == "cluster" || p == "cluster.bearer_token");
        check_token_has_server(&row, token_given, &mut v);
        v.into_result()?;
        let credentials_cleared = row.cluster_server_url != current.cluster_server_url
            && !token_given
            && current.cluster_token_sealed.is_some();
        if credentials_cleared {
            row.cluster_token_sealed = None;
            row.cluster_token_key_id = None;
        }
        if row.cluster_server_url != current.cluster_server_url {
            check_cluster_reachable(&self.state.settings.outbound, &row.cluster_server_url, "cluster.server_url")
                .await?;
        }
        if row.repository_id != current.repository_id {
            require_repository(&self.state, row.repository_id).await?;
        }
        let cluster_changed = row.cluster_server_url != current.cluster_server_url
            || row.cluster_ca_pem != current.cluster_ca_pem
            || row.cluster_token_sealed != current.cluster_token_sealed;
        let mut conn = self.state.conn().await?;
        if !store::update(&mut conn, &row, current.version).await.map_err(name_taken(&row.name))? {
            return Err(ApiError::stale_etag("fabric").into());
        }
        // The last connection test was of the old connection.
        if cluster_changed {
            store::set_connection_status(&mut conn, id, v::ConnectionStatus::Unknown).await?;
        }
        // A new inventory schedule starts now.
        if row.inventory_interval_seconds != current.inventory_interval_seconds {
            store::restart_inventory_schedule(&mut conn, id).await?;
        }
        info!(fabric_id = %id, fields = ?paths, credentials_cleared, "fabric updated");
        Ok(Response::new(UpdateFabricResponse {
            fabric: Some(shown(&self.state, &load(&self.state, id).await?).await?),
            credentials_cleared,
        }))
    }

    async fn delete_fabric(
        &self,
        request: Request<DeleteFabricRequest>,
    ) -> Result<Response<DeleteFabricResponse>, Status> {
        let req = request.into_inner();
        let id = parse_id("id", &req.id)?;
        let current = load(&self.state, id).await?;
        check_etag(&req.etag, current.version, "fabric")?;
        let mut conn = self.state.conn().await?;
        let expected = (!req.etag.is_empty()).then_some(current.version);
        if store::delete(&mut conn, id, expected).await.map_err(ApiError::from)? == 0 {
            return Err(ApiError::stale_etag("fabric").into());
        }
        info!(fabric_id = %id, "fabric deleted");
        Ok(Response::new(DeleteFabricResponse {}))
    }

    async fn list_resources(
        &self,
        request: Request<ListResourcesRequest>,
    ) -> Result<Response<ListResourcesResponse>, Status> {
        let req = request.into_inner();
        let fabric_id = parse_id("fabric_id", &req.fabric_id)?;
        let page = listing::page(req.page_size, &req.page_token)?;
        let terms = listing::filter(&req.filter, RESOURCE_FILTERS)?;
        let filter = ResourceFilter {
            group: terms.get("group").cloned(),
            kind: terms.get("kind").cloned(),
            namespace: terms.get("namespace").cloned(),
            name: terms.get("name").cloned(),
            drift_status: terms
                .get("drift_status")
                .map(|w| listing::word_filter::<v::DriftStatus>("drift_status", w))
                .transpose()?,
            apply_status: terms
                .get("apply_status")
                .map(|w| listing::word_filter::<v::ApplyStatus>("apply_status", w))
                .transpose()?,
            health: terms.get("health").map(|w| listing::word_filter::<v::Health>("health", w)).transpose()?,
            drifted_only: false,
        };
        load(&self.state, fabric_id).await?;
        let mut conn = self.state.conn().await?;
        let listed = resources::list(&mut conn, fabric_id, &filter, &page).await.map_err(ApiError::from)?;
        let last = listed.items.last().map(resources::page_key);
        Ok(Response::new(ListResourcesResponse {
            resources: listed.items.iter().map(|r| resource_proto(r, req.include_objects)).collect(),
            next_page_token: listing::next_page_token(listed.has_more, last.as_deref()),
            total_size: i32::try_from(listed.total).unwrap_or(i32::MAX),
        }))
    }

    async fn get_resource(
        &self,
        request: Request<GetResourceRequest>,
    ) -> Result<Response<GetResourceResponse>, Status> {
        let req = request.into_inner();
        let fabric_id = parse_id("fabric_id", &req.fabric_id)?;
        let wanted = match &req.resource {
            Some(get_resource_request::Resource::Id(id)) => Some(ResourceRef::Id(id)),
            Some(get_resource_request::Resource::Key(key)) => Some(ResourceRef::Key(key)),
            None => None,
        };
        let row = find_resource(&self.state, fabric_id, wanted).await?;
        Ok(Response::new(GetResourceResponse { resource: Some(resource_proto(&row, true)) }))
    }

    async fn test_cluster_connection(
        &self,
        request: Request<TestClusterConnectionRequest>,
    ) -> Result<Response<TestClusterConnectionResponse>, Status> {
        let id = parse_id("id", &request.get_ref().id)?;
        let fabric = load(&self.state, id).await?;
        let started = std::time::Instant::now();
        let kinds = self.state.settings.kinds;
        let (checked, redactor) =
            match cluster::connect(&fabric, &self.state.keyring, &self.state.settings.outbound).await {
                Ok(connection) => (check::run(&connection.client, kinds).await, connection.redactor),
                Err(e) => (Err(e), Redactor::none()),
            };
        let mut response = TestClusterConnectionResponse::default();
        match checked {
            Ok(report) => {
                response.reachable = true;
                response.server_version = redactor.clean(&report.server_version);
                if let Some(problems) = check::problems(&report, kinds) {
                    let forbidden = report.permissions.iter().any(|p| !p.allowed);
                    response.failure = if forbidden { ClusterFailure::Forbidden } else { ClusterFailure::Other } as i32;
                    response.message = problems;
                }
                response.crds = report
                    .crds
                    .into_iter()
                    .map(|c| InstalledCrd { group: c.group, kind: c.kind, versions: c.versions })
                    .collect();
                response.permissions = report
                    .permissions
                    .into_iter()
                    .map(|p| PermissionCheck {
                        group: p.group,
                        resource: p.resource,
                        verb: p.verb,
                        allowed: p.allowed,
                        reason: redactor.clean(&p.reason),
                    })
                    .collect();
            }
            Err(e) => {
                response.failure = cluster_failure(&e) as i32;
                response.message = redactor.clean(&e.to_string());
            }
        }
        response.latency = prost_types::Duration::try_from(started.elapsed()).ok();
        let status = if response.failure == ClusterFailure::Unspecified as i32 {
            v::ConnectionStatus::Reachable
        } else {
            v::ConnectionStatus::Failed
        };
        let mut conn = self.state.conn().await?;
        store::set_connection_status(&mut conn, id, status).await.map_err(ApiError::from)?;
        info!(fabric_id = %id, %status, "cluster connection tested");
        Ok(Response::new(response))
    }

    async fn generate_rbac_manifests(
        &self,
        request: Request<GenerateRbacManifestsRequest>,
    ) -> Result<Response<GenerateRbacManifestsResponse>, Status> {
        let req = request.into_inner();
        let id = parse_id("fabric_id", &req.fabric_id)?;
        let account =
            if req.service_account_name.is_empty() { "fabricsync" } else { req.service_account_name.as_str() };
        let mut v = Violations::default();
        v.check(validate::dns1123_label(account), "service_account_name");
        if !req.namespace.is_empty() {
            v.check(validate::dns1123_label(&req.namespace), "namespace");
        }
        v.into_result()?;
        let fabric = load(&self.state, id).await?;
        let namespace =
            if req.namespace.is_empty() { fabric.cluster_namespace.as_str() } else { req.namespace.as_str() };
        let m = rbac::manifests(self.state.settings.kinds, &fabric.name, account, namespace);
        Ok(Response::new(GenerateRbacManifestsResponse { yaml: m.yaml, token_secret_name: m.token_secret_name }))
    }

    async fn get_fabric_rollout(
        &self,
        request: Request<GetFabricRolloutRequest>,
    ) -> Result<Response<GetFabricRolloutResponse>, Status> {
        let req = request.into_inner();
        let id = parse_id("fabric_id", &req.fabric_id)?;
        let default = self.state.settings.switch_stale_after_seconds;
        let stale_after = match req.stale_after {
            None => default,
            Some(d) if d.seconds < 0 || d.nanos < 0 => {
                return Err(ApiError::invalid("stale_after", "must not be negative").into())
            }
            Some(d) if d.seconds == 0 && d.nanos == 0 => default,
            Some(d) => d.seconds.max(1),
        };
        let fabric = load(&self.state, id).await?;
        let switches = {
            let mut conn = self.state.conn().await?;
            crate::db::resources::switch_names(&mut conn, id).await.map_err(ApiError::from)?
        };
        let connection = cluster::connect(&fabric, &self.state.keyring, &self.state.settings.outbound).await;
        let read = match connection {
            Ok(c) => cluster::agents::list(&c.client, &fabric.cluster_namespace)
                .await
                .map_err(|e| c.redactor.clean(&e.to_string())),
            Err(ClusterError::NotConfigured) => {
                return Err(ApiError::FailedPrecondition(ClusterError::NotConfigured.to_string()).into())
            }
            Err(e) => Err(e.to_string()),
        };
        let agents = read.map_err(|e| ApiError::Unavailable(format!("reading the switches' agents: {e}")))?;
        Ok(Response::new(rollout_response(&switches, agents.as_deref(), crate::db::now(), stale_after)))
    }
}

/// The switches' rollout from their agents, as the response lists it.
fn rollout_response(
    switches: &[String],
    agents: Option<&[serde_json::Value]>,
    now: chrono::DateTime<chrono::Utc>,
    stale_after_seconds: i64,
) -> GetFabricRolloutResponse {
    use fabricsync_core::rollout;
    let rollouts = cluster::agents::rollouts(switches, agents, now, stale_after_seconds);
    let state = |s| crate::convert::proto_of(&crate::convert::ROLLOUT_STATES, s) as i32;
    GetFabricRolloutResponse {
        by_state: rollout::summary(&rollouts)
            .into_iter()
            .map(|(s, count)| RolloutStateCount { state: state(s), count: count as i32 })
            .collect(),
        switches: rollouts
            .into_iter()
            .map(|r| {
                let agent = r.agent.unwrap_or_default();
                let heartbeat = cluster::agents::heartbeat(&agent);
                SwitchRollout {
                    switch: r.switch,
                    state: state(r.state),
                    reason: r.reason,
                    generation: agent.generation,
                    applied_generation: agent.applied_generation,
                    last_heartbeat: heartbeat.map(convert::timestamp),
                    reboot_required: agent.reboot_required,
                    nos_version: agent.nos_version,
                }
            })
            .collect(),
        agents_installed: agents.is_some(),
        compute_time: Some(convert::timestamp(now)),
    }
}

fn cluster_failure(e: &ClusterError) -> ClusterFailure {
    match e {
        ClusterError::Unreachable(_) => ClusterFailure::Unreachable,
        ClusterError::Timeout(_) => ClusterFailure::Timeout,
        ClusterError::Tls(_) => ClusterFailure::Tls,
        ClusterError::Unauthenticated(_) => ClusterFailure::Unauthenticated,
        ClusterError::Forbidden(_) => ClusterFailure::Forbidden,
        _ => ClusterFailure::Other,
    }
}

/// A resource named in a request: by id or by key.
pub(super) enum ResourceRef<'a> {
    Id(&'a str),
    Key(&'a ResourceKey),
}

/// A key a request names, checked (`field` names it in violations); namespace "" is the
/// default one.
pub(super) fn requested_key(field: &str, key: &ResourceKey, v: &mut Violations) -> fabricsync_core::ResourceKey {
    for (part, value) in
        [("group", &key.group), ("kind", &key.kind), ("namespace", &key.namespace), ("name", &key.name)]
    {
        v.check(validate::max_len(value, MAX_KEY_PART), &format!("{field}.{part}"));
    }
    if key.kind.is_empty() || key.name.is_empty() {
        v.add(field, "kind and name are required");
    }
    let namespace = if key.namespace.is_empty() { DEFAULT_NAMESPACE } else { key.namespace.as_str() };
    fabricsync_core::ResourceKey::new(&key.group, &key.kind, namespace, &key.name)
}

/// The fabric's resource named by `wanted`; NOT_FOUND for the fabric or the resource.
pub(super) async fn find_resource(
    state: &AppState,
    fabric_id: Uuid,
    wanted: Option<ResourceRef<'_>>,
) -> Result<ResourceRow, ApiError> {
    load(state, fabric_id).await?;
    let mut conn = state.conn().await?;
    find_resource_in(&mut conn, fabric_id, wanted).await
}

/// `find_resource` of a fabric known to exist, on `conn`.
pub(super) async fn find_resource_in(
    conn: &mut AsyncPgConnection,
    fabric_id: Uuid,
    wanted: Option<ResourceRef<'_>>,
) -> Result<ResourceRow, ApiError> {
    let (found, wanted) = match wanted {
        Some(ResourceRef::Id(id)) => {
            let id = parse_id("id", id)?;
            (resources::get(conn, fabric_id, id).await, id.to_string())
        }
        Some(ResourceRef::Key(key)) => {
            let mut v = Violations::default();
            let key = requested_key("key", key, &mut v);
            v.into_result()?;
            let found = resources::get_by_key(conn, fabric_id, &key.group, &key.kind, &key.namespace, &key.name).await;
            (found, format!("{}/{}/{}", key.kind, key.namespace, key.name))
        }
        None => return Err(ApiError::invalid("resource", "give an id or a key")),
    };
    found?.ok_or(ApiError::NotFound { kind: "resource", id: wanted })
}

const RESOURCE_FILTERS: &[&str] = &["group", "kind", "namespace", "name", "drift_status", "apply_status", "health"];

/// The stored managedFields summary (see `watch::field_managers`).
fn field_managers(stored: &[fabricsync_core::drift::FieldManager]) -> Vec<FieldManager> {
    stored
        .iter()
        .map(|m| FieldManager {
            manager: m.manager.clone(),
            operation: m.operation.clone(),
            time: chrono::DateTime::parse_from_rfc3339(&m.time)
                .ok()
                .map(|t| convert::timestamp(t.with_timezone(&chrono::Utc))),
            fields: m.fields.clone(),
        })
        .collect()
}

pub(super) fn resource_key(row: &ResourceRow) -> ResourceKey {
    convert::resource_key(&row.key(), &row.api_version)
}

fn resource_proto(row: &ResourceRow, with_objects: bool) -> Resource {
    let object =
        |v: &Option<serde_json::Value>| if with_objects { v.as_ref().and_then(convert::json_struct) } else { None };
    Resource {
        id: row.id.to_string(),
        fabric_id: row.fabric_id.to_string(),
        key: Some(resource_key(row)),
        desired: object(&row.desired),
        source: row.source_file.as_ref().map(|file| SourceLocation {
            file: file.clone(),
            document_index: row.source_document.unwrap_or(0),
            line: row.source_line.unwrap_or(0),
        }),
        content_hash: row.desired_hash.clone().unwrap_or_default(),
        commit: row.commit_sha.clone().unwrap_or_default(),
        live: object(&row.live),
        live_resource_version: row.live_resource_version.clone().unwrap_or_default(),
        uid: row.live_uid.clone().unwrap_or_default(),
        field_managers: field_managers(&row.field_managers.0),
        apply_status: crate::convert::proto_of(&APPLY_STATUSES, row.apply_status) as i32,
        apply_error: row.apply_error.clone().unwrap_or_default(),
        last_applied_hash: row.last_applied_hash.clone().unwrap_or_default(),
        last_applied_time: convert::opt_timestamp(row.last_applied_at),
        drift_status: crate::convert::proto_of(&RESOURCE_DRIFT_STATUSES, row.drift_status) as i32,
        update_time: Some(convert::timestamp(row.updated_at)),
        health: crate::convert::proto_of(&convert::HEALTHS, row.health) as i32,
        health_reason: row.health_reason.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitops_paths_normalize() {
        assert_eq!(normalize_gitops_path("."), "");
        assert_eq!(normalize_gitops_path("./"), "");
        assert_eq!(normalize_gitops_path("env/lab/"), "env/lab");
        assert_eq!(normalize_gitops_path("./env"), "env");
    }

    #[test]
    fn auto_sync_bounds() {
        let mut v = Violations::default();
        assert_eq!(auto_sync_seconds(None, &mut v), 0);
        assert_eq!(auto_sync_seconds(Some(&prost_types::Duration { seconds: 60, nanos: 0 }), &mut v), 60);
        assert!(v.into_result().is_ok());
        for bad in [(5, 0), (-1, 0), (60, 5), (MAX_AUTO_SYNC_SECONDS + 1, 0)] {
            let mut v = Violations::default();
            auto_sync_seconds(Some(&prost_types::Duration { seconds: bad.0, nanos: bad.1 }), &mut v);
            assert!(v.into_result().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ignore_differences_round_trip_and_validate() {
        let rules = vec![IgnoreDifference {
            group: "vpc.githedgehog.com".into(),
            kind: "VPC".into(),
            json_pointers: vec!["/spec/vlan".into()],
        }];
        let mut v = Violations::default();
        let stored = ignore_differences(&rules, &mut v);
        assert!(v.into_result().is_ok());
        assert_eq!(ignore_differences_proto(&stored.0), rules);
        let mut v = Violations::default();
        ignore_differences(
            &[IgnoreDifference { group: String::new(), kind: String::new(), json_pointers: vec!["spec".into()] }],
            &mut v,
        );
        let err = v.into_result().unwrap_err().to_string();
        assert!(
            err.contains("ignore_differences[0].kind") && err.contains("ignore_differences[0].json_pointers[0]"),
            "{err}"
        );
    }
}
