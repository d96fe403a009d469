//! Queries for the fabrics aggregate.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use fabricsync_core::vocab::{ConnectionStatus, FabricDrift, Layout, SyncStatus, WatchScope, WatchStatus};
use uuid::Uuid;

use super::schema::fabrics;
use fabricsync_core::diff::IgnoreRule;

use super::typed::{Json, Stored};
use super::{DbError, Listed, Page};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = fabrics)]
pub struct FabricRow {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub repository_id: Uuid,
    pub git_ref: String,
    pub gitops_path: String,
    pub cluster_server_url: String,
    pub cluster_ca_pem: String,
    pub cluster_namespace: String,
    pub cluster_token_sealed: Option<Vec<u8>>,
    pub cluster_token_key_id: Option<String>,
    pub auto_sync_interval_seconds: i64,
    pub self_heal: bool,
    pub prune: bool,
    pub allow_empty: bool,
    pub strict_references: bool,
    pub ignore_differences: Json<Vec<IgnoreRule>>,
    #[diesel(deserialize_as = Stored<ConnectionStatus>, serialize_as = Stored<ConnectionStatus>)]
    pub connection_status: ConnectionStatus,
    #[diesel(deserialize_as = Stored<SyncStatus>, serialize_as = Stored<SyncStatus>)]
    pub sync_status: SyncStatus,
    #[diesel(deserialize_as = Stored<FabricDrift>, serialize_as = Stored<FabricDrift>)]
    pub drift_status: FabricDrift,
    #[diesel(deserialize_as = Stored<WatchStatus>, serialize_as = Stored<WatchStatus>)]
    pub watch_status: WatchStatus,
    pub watch_error: Option<String>,
    /// (group, kind, objects) of the last synced commit.
    pub resource_counts: Json<Vec<(String, String, i64)>>,
    pub last_synced_commit: Option<String>,
    pub last_sync_time: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub synced_source: Option<String>,
    pub include_paths: Vec<String>,
    pub exclude_paths: Vec<String>,
    #[diesel(deserialize_as = Stored<Layout>, serialize_as = Stored<Layout>)]
    pub layout: Layout,
    /// No auto-sync and no self-heal; the watch follows `watch_enabled`.
    pub paused: bool,
    pub watch_enabled: bool,
    /// Kinds the watch follows; empty = every kind of the registry.
    pub watch_kinds: Vec<String>,
    pub watch_started_at: Option<DateTime<Utc>>,
    pub watch_last_event_at: Option<DateTime<Utc>>,
    pub watch_event_count: i64,
    /// Auto-sync applies what it pulls (FULL runs).
    pub auto_apply: bool,
    /// Written by the fabric's watch; None until it told the health once.
    pub health: Option<Json<StoredHealth>>,
    /// What an inventory import keeps.
    pub inventory: Json<InventorySettings>,
    /// How often the schedule imports the inventory; 0: on request only.
    pub inventory_interval_seconds: i64,
    pub next_inventory_at: Option<DateTime<Utc>>,
    #[diesel(deserialize_as = Stored<WatchScope>, serialize_as = Stored<WatchScope>)]
    pub watch_scope: WatchScope,
    /// The process watching it (see `AppState::process`); None while no watch runs.
    pub watch_process: Option<String>,
}

impl FabricRow {
    /// Whether the fabric's watch (when active) sees the object of `key`: a kind it follows, and
    /// within its scope. Cluster-scoped objects have no namespace; a labelled scope sees what its
    /// applies labelled, so every desired object once applied.
    pub fn watches(&self, key: &fabricsync_core::ResourceKey) -> bool {
        let kind = self.watch_kinds.is_empty() || self.watch_kinds.contains(&key.kind);
        let scope = self.watch_scope != WatchScope::Namespace
            || key.namespace.is_empty()
            || key.namespace == self.cluster_namespace;
        kind && scope
    }
}

/// A fabric's inventory filter as stored (`fabrics.inventory`); empty fields mean all.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct InventorySettings {
    pub namespace_regex: String,
    /// A `WorkloadFilter` word; empty: all.
    pub workloads: String,
    /// `InventoryKind` words; empty: all.
    pub kinds: Vec<String>,
    /// The node label naming the node's Server; empty: the node's name.
    pub server_label: String,
}

/// The fabric's health summary as stored (`fabrics.health`): words and counts.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredHealth {
    pub health: String,
    pub resources: Vec<(String, i64)>,
    pub switches: Vec<(String, i64)>,
}

impl From<&fabricsync_core::health::Summary> for StoredHealth {
    fn from(s: &fabricsync_core::health::Summary) -> StoredHealth {
        StoredHealth {
            health: s.health.word().to_string(),
            resources: s.resources.iter().map(|(h, n)| (h.word().to_string(), *n as i64)).collect(),
            switches: s.switches.iter().map(|(r, n)| (r.word().to_string(), *n as i64)).collect(),
        }
    }
}

/// Equality filters of ListFabrics; None matches all.
#[derive(Debug, Clone, Default)]
pub struct FabricFilter {
    pub name: Option<String>,
    pub repository_id: Option<Uuid>,
    pub sync_status: Option<String>,
    pub drift_status: Option<String>,
    pub watch_status: Option<String>,
    pub connection_status: Option<String>,
    /// A principal's fabric scope as LIKE patterns; empty matches all.
    pub scope: Vec<String>,
}

pub async fn insert(conn: &mut AsyncPgConnection, row: &FabricRow) -> Result<(), DbError> {
    diesel::insert_into(fabrics::table).values(row.clone()).execute(conn).await?;
    Ok(())
}

pub async fn name_of(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Option<String>, DbError> {
    Ok(fabrics::table.find(id).select(fabrics::name).first(conn).await.optional()?)
}

/// Names of the fabrics that use a repository.
pub async fn names_using_repository(conn: &mut AsyncPgConnection, repository_id: Uuid) -> Result<Vec<String>, DbError> {
    Ok(fabrics::table.filter(fabrics::repository_id.eq(repository_id)).select(fabrics::name).load(conn).await?)
}

/// The fabrics that use a repository, by name.
pub async fn using_repository(conn: &mut AsyncPgConnection, repository_id: Uuid) -> Result<Vec<FabricRow>, DbError> {
    Ok(fabrics::table
        .filter(fabrics::repository_id.eq(repository_id))
        .order(fabrics::name.asc())
        .select(FabricRow::as_select())
        .load(conn)
        .await?)
}

pub async fn get(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Option<FabricRow>, DbError> {
    Ok(fabrics::table.find(id).select(FabricRow::as_select()).first(conn).await.optional()?)
}

fn filtered(filter: &FabricFilter) -> fabrics::BoxedQuery<'static, diesel::pg::Pg> {
    let mut query = fabrics::table.into_boxed();
    if let Some(v) = &filter.name {
        query = query.filter(fabrics::name.eq(v.clone()));
    }
    if !filter.scope.is_empty() {
        query = query.filter(super::scope_condition("fabrics.name LIKE ANY(", &filter.scope, ")"));
    }
    if let Some(v) = filter.repository_id {
        query = query.filter(fabrics::repository_id.eq(v));
    }
    if let Some(v) = &filter.sync_status {
        query = query.filter(fabrics::sync_status.eq(v.clone()));
    }
    if let Some(v) = &filter.drift_status {
        query = query.filter(fabrics::drift_status.eq(v.clone()));
    }
    if let Some(v) = &filter.watch_status {
        query = query.filter(fabrics::watch_status.eq(v.clone()));
    }
    if let Some(v) = &filter.connection_status {
        query = query.filter(fabrics::connection_status.eq(v.clone()));
    }
    query
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    filter: &FabricFilter,
    page: &Page,
) -> Result<Listed<FabricRow>, DbError> {
    let total = filtered(filter).count().get_result(conn).await?;
    let mut query = filtered(filter).select(FabricRow::as_select()).order(fabrics::name.asc());
    if let Some(after) = &page.after {
        query = query.filter(fabrics::name.gt(after.clone()));
    }
    let items: Vec<FabricRow> = query.limit(page.limit()).load(conn).await?;
    Ok(page.finish(items, total))
}

/// Writes `row` if the stored version is still `expected_version`; bumps the version.
/// Returns false when another writer got there first.
/// Writes what a user may change (UpdateFabric), if the row is still at `expected_version`. The
/// status columns the engine writes (sync, drift, watch) are left alone: a stale read of them
/// must not overwrite a newer run's record.
pub async fn update(conn: &mut AsyncPgConnection, row: &FabricRow, expected_version: i64) -> Result<bool, DbError> {
    use fabrics::dsl as f;
    let changed = diesel::update(f::fabrics.filter(f::id.eq(row.id)).filter(f::version.eq(expected_version)))
        .set((
            (
                f::name.eq(&row.name),
                f::description.eq(&row.description),
                f::repository_id.eq(row.repository_id),
                f::git_ref.eq(&row.git_ref),
                f::gitops_path.eq(&row.gitops_path),
                f::include_paths.eq(&row.include_paths),
                f::exclude_paths.eq(&row.exclude_paths),
            ),
            (
                f::cluster_server_url.eq(&row.cluster_server_url),
                f::cluster_ca_pem.eq(&row.cluster_ca_pem),
                f::cluster_namespace.eq(&row.cluster_namespace),
                f::cluster_token_sealed.eq(&row.cluster_token_sealed),
                f::cluster_token_key_id.eq(&row.cluster_token_key_id),
            ),
            (
                f::auto_sync_interval_seconds.eq(row.auto_sync_interval_seconds),
                f::self_heal.eq(row.self_heal),
                f::prune.eq(row.prune),
                f::allow_empty.eq(row.allow_empty),
                f::strict_references.eq(row.strict_references),
                f::ignore_differences.eq(&row.ignore_differences),
                f::auto_apply.eq(row.auto_apply),
            ),
            (
                f::paused.eq(row.paused),
                f::watch_enabled.eq(row.watch_enabled),
                f::watch_kinds.eq(&row.watch_kinds),
                f::watch_scope.eq(Stored(row.watch_scope)),
            ),
            (f::inventory.eq(&row.inventory), f::inventory_interval_seconds.eq(row.inventory_interval_seconds)),
            (f::version.eq(expected_version + 1), f::updated_at.eq(super::now())),
        ))
        .execute(conn)
        .await?;
    Ok(changed == 1)
}

pub async fn delete(conn: &mut AsyncPgConnection, id: Uuid, expected_version: Option<i64>) -> Result<usize, DbError> {
    let mut query = diesel::delete(fabrics::table).filter(fabrics::id.eq(id)).into_boxed();
    if let Some(v) = expected_version {
        query = query.filter(fabrics::version.eq(v));
    }
    Ok(query.execute(conn).await?)
}

/// Every sealed cluster token, for key rotation.
pub async fn sealed_tokens(conn: &mut AsyncPgConnection) -> Result<Vec<(Uuid, Vec<u8>, String)>, DbError> {
    let rows: Vec<(Uuid, Option<Vec<u8>>, Option<String>)> = fabrics::table
        .select((fabrics::id, fabrics::cluster_token_sealed, fabrics::cluster_token_key_id))
        .filter(fabrics::cluster_token_sealed.is_not_null())
        .load(conn)
        .await?;
    Ok(rows.into_iter().filter_map(|(id, blob, key)| Some((id, blob?, key?))).collect())
}

pub async fn store_sealed_token(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    blob: &[u8],
    key_id: &str,
) -> Result<(), DbError> {
    diesel::update(fabrics::table.find(id))
        .set((fabrics::cluster_token_sealed.eq(blob), fabrics::cluster_token_key_id.eq(key_id)))
        .execute(conn)
        .await?;
    Ok(())
}

/// Status fields a sync run writes; output-only, so the etag version stays.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = fabrics)]
pub struct SyncRecord {
    #[diesel(serialize_as = Stored<SyncStatus>)]
    pub sync_status: SyncStatus,
    pub last_error: Option<Option<String>>,
    pub resource_counts: Option<Json<Vec<(String, String, i64)>>>,
    pub last_synced_commit: Option<Option<String>>,
    pub last_sync_time: Option<Option<DateTime<Utc>>>,
    pub synced_source: Option<Option<String>>,
    pub layout: Option<Stored<Layout>>,
}

impl SyncRecord {
    /// Only the status changes.
    pub fn status(sync_status: SyncStatus) -> SyncRecord {
        SyncRecord {
            sync_status,
            last_error: None,
            resource_counts: None,
            last_synced_commit: None,
            last_sync_time: None,
            synced_source: None,
            layout: None,
        }
    }
}

pub async fn record_sync(conn: &mut AsyncPgConnection, id: Uuid, record: &SyncRecord) -> Result<(), DbError> {
    diesel::update(fabrics::table.find(id)).set(record.clone()).execute(conn).await?;
    Ok(())
}

/// Claims one fabric whose auto-sync check is due and moves its next check one interval ahead;
/// SKIP LOCKED lets every replica's scheduler take different fabrics.
pub async fn claim_due_auto_sync(conn: &mut AsyncPgConnection) -> Result<Option<Uuid>, DbError> {
    claim_due(conn, "auto_sync_interval_seconds", "next_auto_sync_at", "").await
}

/// Claims one fabric with a cluster to read (its own, or an inventory cluster) whose scheduled
/// inventory import is due, the same way.
pub async fn claim_due_inventory(conn: &mut AsyncPgConnection) -> Result<Option<Uuid>, DbError> {
    let readable = "AND (cluster_server_url <> '' \
                    OR EXISTS (SELECT 1 FROM inventory_clusters c WHERE c.fabric_id = fabrics.id))";
    claim_due(conn, "inventory_interval_seconds", "next_inventory_at", readable).await
}

/// A schedule's claim: a fabric (not paused, `also`) whose `next` time is due moves it on by its
/// `interval` column. The column names are this module's constants, never input.
async fn claim_due(
    conn: &mut AsyncPgConnection,
    interval: &'static str,
    next: &'static str,
    also: &'static str,
) -> Result<Option<Uuid>, DbError> {
    #[derive(diesel::QueryableByName)]
    struct Claimed {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
    }
    let rows: Vec<Claimed> = diesel::sql_query(format!(
        "UPDATE fabrics SET {next} = now() + make_interval(secs => {interval})
         WHERE id = (SELECT id FROM fabrics
                     WHERE {interval} > 0 AND NOT paused {also}
                       AND ({next} IS NULL OR {next} <= now())
                     ORDER BY {next} NULLS FIRST LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING id"
    ))
    .load(conn)
    .await?;
    Ok(rows.into_iter().next().map(|c| c.id))
}

/// Makes the fabric's next inventory import due now (its schedule changed).
pub async fn restart_inventory_schedule(conn: &mut AsyncPgConnection, id: Uuid) -> Result<(), DbError> {
    diesel::update(fabrics::table.find(id))
        .set(fabrics::next_inventory_at.eq(None::<DateTime<Utc>>))
        .execute(conn)
        .await?;
    Ok(())
}

/// Records the outcome of a cluster connection check.
pub async fn set_connection_status(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    status: ConnectionStatus,
) -> Result<(), DbError> {
    diesel::update(fabrics::table.find(id)).set(fabrics::connection_status.eq(status.word())).execute(conn).await?;
    Ok(())
}

/// A fabric to watch: with a cluster and the watch enabled. A new version (any UpdateFabric)
/// restarts its watch; `held`: some process holds its watch lock (class `lock_class`).
#[derive(Debug, Clone, QueryableByName)]
pub struct ToWatch {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub id: Uuid,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub version: i64,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub held: bool,
}

pub async fn to_watch(conn: &mut AsyncPgConnection, lock_class: i32) -> Result<Vec<ToWatch>, DbError> {
    let held = super::advisory_lock_held("$1", "id::text");
    Ok(diesel::sql_query(format!(
        "SELECT id, version, {held} AS held FROM fabrics WHERE cluster_server_url <> '' AND watch_enabled"
    ))
    .bind::<diesel::sql_types::Int4, _>(lock_class)
    .load(conn)
    .await?)
}

/// A watch this process let go of (for another process to take): inactive, with no health and
/// no watcher, unless another process has started watching it already.
pub async fn watch_released(conn: &mut AsyncPgConnection, id: Uuid, process: &str) -> Result<(), DbError> {
    use fabrics::dsl as f;
    diesel::update(fabrics::table.find(id).filter(f::watch_process.eq(process)))
        .set((
            f::watch_status.eq(WatchStatus::Inactive.word()),
            f::watch_started_at.eq(None::<DateTime<Utc>>),
            f::health.eq(None::<Json<StoredHealth>>),
            f::watch_process.eq(None::<String>),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Records the state of the fabric's cluster watch. A watch that starts begins its activity
/// afresh (started now, no events yet); one that is stopped has none.
pub async fn set_watch_status(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    status: WatchStatus,
    error: Option<&str>,
    process: &str,
) -> Result<(), DbError> {
    use fabrics::dsl as f;
    let target = fabrics::table.find(id);
    let state = (f::watch_status.eq(status.word()), f::watch_error.eq(error));
    match status {
        WatchStatus::Starting => {
            let now = super::now();
            diesel::update(target)
                .set((
                    state,
                    f::watch_started_at.eq(now),
                    f::watch_last_event_at.eq(None::<DateTime<Utc>>),
                    f::watch_event_count.eq(0),
                    f::watch_process.eq(process),
                ))
                .execute(conn)
                .await?
        }
        // No watch, no health: what it told last would be read as current.
        WatchStatus::Inactive => {
            let none = (
                f::watch_started_at.eq(None::<DateTime<Utc>>),
                f::health.eq(None::<Json<StoredHealth>>),
                f::watch_process.eq(None::<String>),
            );
            diesel::update(target).set((state, none)).execute(conn).await?
        }
        WatchStatus::Active | WatchStatus::Error => diesel::update(target).set(state).execute(conn).await?,
    };
    Ok(())
}

/// Counts `events` changes the watch saw at `at`.
pub async fn record_watch_events(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    events: i64,
    at: DateTime<Utc>,
) -> Result<(), DbError> {
    use fabrics::dsl as f;
    diesel::update(fabrics::table.find(id))
        .set((f::watch_event_count.eq(f::watch_event_count + events), f::watch_last_event_at.eq(at)))
        .execute(conn)
        .await?;
    Ok(())
}

/// Stores the fabric's health summary; the row's version is not changed (the engine's writes
/// never conflict with a user's etag).
pub async fn set_health(conn: &mut AsyncPgConnection, id: Uuid, health: &StoredHealth) -> Result<(), DbError> {
    diesel::update(fabrics::table.find(id)).set(fabrics::health.eq(Some(Json(health.clone())))).execute(conn).await?;
    Ok(())
}

/// Per fabric, what the metrics read at scrape time: its watch state, its last watch event and
/// its resources per drift status (counted on the (fabric, drift status) index).
pub async fn metric_gauges(conn: &mut AsyncPgConnection) -> Result<Vec<crate::metrics::FabricGauges>, DbError> {
    use diesel::sql_types::{Int8, Nullable, Text, Timestamptz};
    use fabricsync_core::vocab::{DriftStatus, Word};
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = Text)]
        watch_status: String,
        #[diesel(sql_type = Nullable<Timestamptz>)]
        last_event: Option<DateTime<Utc>>,
        #[diesel(sql_type = Nullable<Text>)]
        drift_status: Option<String>,
        #[diesel(sql_type = Int8)]
        resources: i64,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT f.name, f.watch_status, f.watch_last_event_at AS last_event, d.drift_status, \
                COALESCE(d.n, 0) AS resources \
         FROM fabrics f LEFT JOIN ( \
             SELECT fabric_id, drift_status, count(*) AS n FROM resources GROUP BY fabric_id, drift_status \
         ) d ON d.fabric_id = f.id \
         ORDER BY f.name",
    )
    .load(conn)
    .await?;
    let mut fabrics: Vec<crate::metrics::FabricGauges> = Vec::new();
    for row in rows {
        if fabrics.last().is_none_or(|f| f.name != row.name) {
            fabrics.push(crate::metrics::FabricGauges {
                name: row.name.clone(),
                watch: WatchStatus::parse(&row.watch_status).unwrap_or(WatchStatus::Inactive),
                drift: Vec::new(),
                last_watch_event: row.last_event,
            });
        }
        if let (Some(fabric), Some(status)) =
            (fabrics.last_mut(), row.drift_status.as_deref().and_then(DriftStatus::parse))
        {
            fabric.drift.push((status, row.resources));
        }
    }
    Ok(fabrics)
}
