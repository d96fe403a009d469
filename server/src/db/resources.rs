//! Resources of a fabric: the desired object from Git and, later, the live one from the cluster.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use fabricsync_core::drift::{FieldManager, StoredDrift};
use fabricsync_core::plan::IndexEntry;
use fabricsync_core::vocab::{ApplyStatus, DriftStatus, Health, Stream};
use fabricsync_core::ResourceKey;

use super::schema::resources;
use super::typed::{Json, Stored};
use super::{DbError, Listed, Page};

/// Rows per INSERT statement; keeps bind parameters far below PostgreSQL's 65535.
const UPSERT_CHUNK: usize = 1000;

/// A resource's key columns, embedded in the row structs over `resources` (one spelling).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Queryable, Selectable, Insertable)]
#[diesel(table_name = resources)]
pub struct KeyColumns {
    pub api_group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl KeyColumns {
    pub fn key(&self) -> ResourceKey {
        ResourceKey::new(&self.api_group, &self.kind, &self.namespace, &self.name)
    }
}

impl From<&ResourceKey> for KeyColumns {
    fn from(k: &ResourceKey) -> KeyColumns {
        KeyColumns {
            api_group: k.group.clone(),
            kind: k.kind.clone(),
            namespace: k.namespace.clone(),
            name: k.name.clone(),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = resources)]
pub struct ResourceRow {
    pub id: Uuid,
    pub fabric_id: Uuid,
    #[diesel(embed)]
    pub identity: KeyColumns,
    pub api_version: String,
    pub desired: Option<serde_json::Value>,
    pub desired_hash: Option<String>,
    pub source_file: Option<String>,
    pub source_document: Option<i32>,
    pub source_line: Option<i32>,
    pub commit_sha: Option<String>,
    pub live: Option<serde_json::Value>,
    pub live_resource_version: Option<String>,
    pub live_uid: Option<String>,
    pub field_managers: Json<Vec<FieldManager>>,
    #[diesel(deserialize_as = Stored<ApplyStatus>)]
    pub apply_status: ApplyStatus,
    pub apply_error: Option<String>,
    pub last_applied_hash: Option<String>,
    pub last_applied_at: Option<DateTime<Utc>>,
    #[diesel(deserialize_as = Stored<DriftStatus>)]
    pub drift_status: DriftStatus,
    pub drift: Json<StoredDrift>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub applied_resource_version: Option<String>,
    pub self_heal_reverts: Option<serde_json::Value>,
    #[diesel(deserialize_as = Stored<Health>)]
    pub health: Health,
    pub health_reason: String,
}

impl ResourceRow {
    pub fn key(&self) -> ResourceKey {
        self.identity.key()
    }
}

/// A desired object to store.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = resources)]
pub struct DesiredInput {
    pub id: Uuid,
    pub fabric_id: Uuid,
    #[diesel(embed)]
    pub identity: KeyColumns,
    pub api_version: String,
    pub desired: Option<serde_json::Value>,
    pub desired_hash: Option<String>,
    pub source_file: Option<String>,
    pub source_document: Option<i32>,
    pub source_line: Option<i32>,
    pub commit_sha: Option<String>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
pub struct ResourceFilter {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub drift_status: Option<String>,
    pub apply_status: Option<String>,
    pub health: Option<String>,
    /// Only resources that count as drift (see `DRIFTED`).
    pub drifted_only: bool,
}

/// The names of the fabric's desired Switches, sorted: the switches whose agents tell the rollout.
pub async fn switch_names(conn: &mut AsyncPgConnection, fabric_id: Uuid) -> Result<Vec<String>, DbError> {
    Ok(resources::table
        .filter(resources::fabric_id.eq(fabric_id))
        .filter(resources::api_group.eq(fabricsync_core::key::WIRING_GROUP))
        .filter(resources::kind.eq(fabricsync_core::rollout::SWITCH_KIND))
        .filter(resources::desired.is_not_null())
        .select(resources::name)
        .order(resources::name.asc())
        .load(conn)
        .await?)
}

/// The fabric's desired objects of one kind, by name.
pub async fn desired_of_kind(
    conn: &mut AsyncPgConnection,
    fabric_id: Uuid,
    group: &str,
    kind: &str,
) -> Result<Vec<(String, serde_json::Value)>, DbError> {
    let rows: Vec<(String, Option<serde_json::Value>)> = resources::table
        .filter(resources::fabric_id.eq(fabric_id))
        .filter(resources::api_group.eq(group))
        .filter(resources::kind.eq(kind))
        .filter(resources::desired.is_not_null())
        .select((resources::name, resources::desired))
        .order(resources::name.asc())
        .load(conn)
        .await?;
    Ok(rows.into_iter().filter_map(|(name, body)| Some((name, body?))).collect())
}

/// Every resource of the fabric that has a desired object or a live one.
pub async fn index(conn: &mut AsyncPgConnection, fabric_id: Uuid) -> Result<Vec<IndexEntry>, DbError> {
    type Row = (Uuid, String, String, String, String, Option<String>, bool);
    let rows: Vec<Row> = resources::table
        .filter(resources::fabric_id.eq(fabric_id))
        .select((
            resources::id,
            resources::api_group,
            resources::kind,
            resources::namespace,
            resources::name,
            resources::desired_hash,
            resources::live.is_not_null(),
        ))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, group, kind, namespace, name, desired_hash, has_live)| IndexEntry {
            id,
            key: ResourceKey { group, kind, namespace, name },
            desired_hash,
            has_live,
        })
        .collect())
}

/// Inserts new and replaces changed desired objects (by fabric, group, kind, namespace, name).
pub async fn upsert_desired(conn: &mut AsyncPgConnection, rows: &[DesiredInput]) -> Result<(), DbError> {
    for chunk in rows.chunks(UPSERT_CHUNK) {
        diesel::insert_into(resources::table)
            .values(chunk)
            .on_conflict((
                resources::fabric_id,
                resources::api_group,
                resources::kind,
                resources::namespace,
                resources::name,
            ))
            .do_update()
            .set((
                resources::api_version.eq(excluded(resources::api_version)),
                resources::desired.eq(excluded(resources::desired)),
                resources::desired_hash.eq(excluded(resources::desired_hash)),
                resources::source_file.eq(excluded(resources::source_file)),
                resources::source_document.eq(excluded(resources::source_document)),
                resources::source_line.eq(excluded(resources::source_line)),
                resources::commit_sha.eq(excluded(resources::commit_sha)),
                resources::updated_at.eq(excluded(resources::updated_at)),
            ))
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Records the commit on unchanged objects without rewriting them (one cheap statement).
pub async fn touch_commit(conn: &mut AsyncPgConnection, fabric_id: Uuid, commit: &str) -> Result<(), DbError> {
    diesel::update(
        resources::table.filter(resources::fabric_id.eq(fabric_id)).filter(resources::desired.is_not_null()),
    )
    .filter(resources::commit_sha.is_distinct_from(commit))
    .set(resources::commit_sha.eq(commit))
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes objects from the desired state: rows with no live object go, others keep their
/// live view (they become orphans if still labelled in the cluster).
pub async fn remove_desired(conn: &mut AsyncPgConnection, ids: &[Uuid], now: DateTime<Utc>) -> Result<(), DbError> {
    for chunk in ids.chunks(UPSERT_CHUNK * 10) {
        diesel::delete(resources::table.filter(resources::id.eq_any(chunk)).filter(resources::live.is_null()))
            .execute(conn)
            .await?;
        diesel::update(resources::table.filter(resources::id.eq_any(chunk)))
            .set((
                resources::desired.eq(None::<serde_json::Value>),
                resources::desired_hash.eq(None::<String>),
                resources::source_file.eq(None::<String>),
                resources::source_document.eq(None::<i32>),
                resources::source_line.eq(None::<i32>),
                resources::updated_at.eq(now),
            ))
            .execute(conn)
            .await?;
    }
    Ok(())
}

fn filtered(fabric_id: Uuid, filter: &ResourceFilter) -> resources::BoxedQuery<'static, diesel::pg::Pg> {
    let mut query = resources::table.filter(resources::fabric_id.eq(fabric_id)).into_boxed();
    if let Some(v) = &filter.group {
        query = query.filter(resources::api_group.eq(v.clone()));
    }
    if let Some(v) = &filter.kind {
        query = query.filter(resources::kind.eq(v.clone()));
    }
    if let Some(v) = &filter.namespace {
        query = query.filter(resources::namespace.eq(v.clone()));
    }
    if let Some(v) = &filter.name {
        query = query.filter(resources::name.eq(v.clone()));
    }
    if let Some(v) = &filter.drift_status {
        query = query.filter(resources::drift_status.eq(v.clone()));
    }
    if let Some(v) = &filter.apply_status {
        query = query.filter(resources::apply_status.eq(v.clone()));
    }
    if let Some(v) = &filter.health {
        query = query.filter(resources::health.eq(v.clone()));
    }
    if filter.drifted_only {
        query = query.filter(resources::drift_status.eq_any(DriftStatus::drifted_words()));
    }
    query
}

/// Ordered by (group, kind, namespace, name), unique in a fabric; a page starts after the key
/// `page_key` made of the previous page's last row.
pub async fn list(
    conn: &mut AsyncPgConnection,
    fabric_id: Uuid,
    filter: &ResourceFilter,
    page: &Page,
) -> Result<Listed<ResourceRow>, DbError> {
    use diesel::sql_types::{Bool, Text};
    let total = filtered(fabric_id, filter).count().get_result(conn).await?;
    let mut query = filtered(fabric_id, filter);
    // The cursor is the last row's key, in its stored form (a JSON 4-array).
    if let Some(ResourceKey { group, kind, namespace, name }) =
        page.after.as_deref().and_then(|t| serde_json::from_str::<ResourceKey>(t).ok())
    {
        let after = diesel::dsl::sql::<Bool>("(api_group, kind, namespace, name) > (")
            .bind::<Text, _>(group)
            .sql(", ")
            .bind::<Text, _>(kind)
            .sql(", ")
            .bind::<Text, _>(namespace)
            .sql(", ")
            .bind::<Text, _>(name)
            .sql(")");
        query = query.filter(after);
    }
    let order = (resources::api_group.asc(), resources::kind.asc(), resources::namespace.asc(), resources::name.asc());
    let items: Vec<ResourceRow> =
        query.order(order).limit(page.limit()).select(ResourceRow::as_select()).load(conn).await?;
    Ok(page.finish(items, total))
}

/// Where the page after `row` starts (see `list`).
pub fn page_key(row: &ResourceRow) -> String {
    serde_json::to_string(&row.key()).unwrap_or_default()
}

pub async fn get(conn: &mut AsyncPgConnection, fabric_id: Uuid, id: Uuid) -> Result<Option<ResourceRow>, DbError> {
    Ok(resources::table
        .filter(resources::fabric_id.eq(fabric_id))
        .filter(resources::id.eq(id))
        .select(ResourceRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

pub async fn get_by_key(
    conn: &mut AsyncPgConnection,
    fabric_id: Uuid,
    group: &str,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<Option<ResourceRow>, DbError> {
    Ok(resources::table
        .filter(resources::fabric_id.eq(fabric_id))
        .filter(resources::api_group.eq(group))
        .filter(resources::kind.eq(kind))
        .filter(resources::namespace.eq(namespace))
        .filter(resources::name.eq(name))
        .select(ResourceRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The fabric's resources in any of `statuses`, in key order, at most `limit`.
pub async fn with_drift(
    conn: &mut AsyncPgConnection,
    fabric_id: Uuid,
    statuses: &[DriftStatus],
    limit: i64,
) -> Result<Vec<ResourceRow>, DbError> {
    let words: Vec<&str> = statuses.iter().map(|s| s.word()).collect();
    Ok(resources::table
        .filter(resources::fabric_id.eq(fabric_id))
        .filter(resources::drift_status.eq_any(words))
        .order((resources::api_group, resources::kind, resources::namespace, resources::name))
        .limit(limit)
        .select(ResourceRow::as_select())
        .load(conn)
        .await?)
}

/// Stored desired objects by resource id.
pub async fn desired_bodies(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, serde_json::Value>, DbError> {
    let rows: Vec<(Uuid, Option<serde_json::Value>)> = resources::table
        .filter(resources::id.eq_any(ids))
        .select((resources::id, resources::desired))
        .load(conn)
        .await?;
    Ok(rows.into_iter().filter_map(|(id, body)| body.map(|b| (id, b))).collect())
}

/// A desired object with what the last apply recorded, for applying.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = resources)]
pub struct ApplyEntry {
    pub id: Uuid,
    #[diesel(embed)]
    pub identity: KeyColumns,
    pub api_version: String,
    pub desired: Option<serde_json::Value>,
    pub desired_hash: Option<String>,
    pub last_applied_hash: Option<String>,
    pub applied_resource_version: Option<String>,
    #[diesel(deserialize_as = Stored<DriftStatus>)]
    pub drift_status: DriftStatus,
}

/// Every desired object of a fabric.
pub async fn for_apply(conn: &mut AsyncPgConnection, fabric_id: Uuid) -> Result<Vec<ApplyEntry>, DbError> {
    Ok(resources::table
        .filter(resources::fabric_id.eq(fabric_id))
        .filter(resources::desired.is_not_null())
        .order((resources::kind, resources::namespace, resources::name))
        .select(ApplyEntry::as_select())
        .load(conn)
        .await?)
}

/// The outcome of applying one object. `applied_hash` is set when the cluster accepted it.
#[derive(Debug, Clone)]
pub struct ApplyRecord {
    pub id: Uuid,
    pub status: ApplyStatus,
    pub error: Option<String>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub applied_hash: Option<String>,
}

/// Records apply outcomes in one statement per chunk (arrays unnested server-side); a field
/// left None keeps its stored value.
pub async fn record_apply(
    conn: &mut AsyncPgConnection,
    records: &[ApplyRecord],
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    use diesel::sql_types::{Array, Nullable, Text, Timestamptz, Uuid as SqlUuid};
    for chunk in records.chunks(UPSERT_CHUNK * 5) {
        let column = |f: fn(&ApplyRecord) -> Option<String>| chunk.iter().map(f).collect::<Vec<_>>();
        diesel::sql_query(
            "UPDATE resources r SET apply_status = u.status, apply_error = u.error, \
               live_uid = COALESCE(u.uid, r.live_uid), \
               live_resource_version = COALESCE(u.rv, r.live_resource_version), \
               applied_resource_version = COALESCE(u.rv, r.applied_resource_version), \
               last_applied_hash = COALESCE(u.hash, r.last_applied_hash), \
               last_applied_at = CASE WHEN u.hash IS NULL THEN r.last_applied_at ELSE $7 END \
             FROM unnest($1, $2, $3, $4, $5, $6) AS u(id, status, error, uid, rv, hash) WHERE r.id = u.id",
        )
        .bind::<Array<SqlUuid>, _>(chunk.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(chunk.iter().map(|r| r.status.word()).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(column(|r| r.error.clone()))
        .bind::<Array<Nullable<Text>>, _>(column(|r| r.uid.clone()))
        .bind::<Array<Nullable<Text>>, _>(column(|r| r.resource_version.clone()))
        .bind::<Array<Nullable<Text>>, _>(column(|r| r.applied_hash.clone()))
        .bind::<Timestamptz, _>(now)
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// A live object as the watch saw it; `object` None means it was deleted.
#[derive(Debug, Clone)]
pub struct LiveRecord {
    pub api_group: String,
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub object: Option<serde_json::Value>,
    pub resource_version: Option<String>,
    pub uid: Option<String>,
    pub field_managers: Option<Vec<FieldManager>>,
}

impl LiveRecord {
    pub fn key(&self) -> ResourceKey {
        ResourceKey::new(&self.api_group, &self.kind, &self.namespace, &self.name)
    }
}

/// Records live objects: updates the resource with that key, or adds one without a desired
/// object (an object only the cluster has). Deleted objects lose their live view; a row left
/// with neither desired nor live goes.
pub async fn record_live(
    conn: &mut AsyncPgConnection,
    fabric_id: Uuid,
    records: &[LiveRecord],
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    use diesel::sql_types::{Array, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
    for chunk in records.chunks(UPSERT_CHUNK) {
        let text = |f: fn(&LiveRecord) -> String| chunk.iter().map(f).collect::<Vec<_>>();
        let opt = |f: fn(&LiveRecord) -> Option<String>| chunk.iter().map(f).collect::<Vec<_>>();
        let json = |f: fn(&LiveRecord) -> Option<serde_json::Value>| chunk.iter().map(f).collect::<Vec<_>>();
        diesel::sql_query(
            "INSERT INTO resources (id, fabric_id, api_group, api_version, kind, namespace, name, live, \
               live_resource_version, live_uid, field_managers, updated_at) \
             SELECT gen_random_uuid(), $1, u.g, u.v, u.k, u.ns, u.n, u.live, u.rv, u.uid, u.fm, $11 \
             FROM unnest($2, $3, $4, $5, $6, $7, $8, $9, $10) AS u(g, v, k, ns, n, live, rv, uid, fm) \
             ON CONFLICT (fabric_id, api_group, kind, namespace, name) DO UPDATE SET \
               live = excluded.live, live_resource_version = excluded.live_resource_version, \
               live_uid = excluded.live_uid, field_managers = excluded.field_managers, updated_at = excluded.updated_at",
        )
        .bind::<SqlUuid, _>(fabric_id)
        .bind::<Array<Text>, _>(text(|r| r.api_group.clone()))
        .bind::<Array<Text>, _>(text(|r| r.api_version.clone()))
        .bind::<Array<Text>, _>(text(|r| r.kind.clone()))
        .bind::<Array<Text>, _>(text(|r| r.namespace.clone()))
        .bind::<Array<Text>, _>(text(|r| r.name.clone()))
        .bind::<Array<Nullable<Jsonb>>, _>(json(|r| r.object.clone()))
        .bind::<Array<Nullable<Text>>, _>(opt(|r| r.resource_version.clone()))
        .bind::<Array<Nullable<Text>>, _>(opt(|r| r.uid.clone()))
        .bind::<Array<Nullable<Jsonb>>, _>(
            chunk.iter().map(|r| r.field_managers.as_ref().map(Json)).collect::<Vec<_>>(),
        )
        .bind::<Timestamptz, _>(now)
        .execute(conn)
        .await?;
    }
    // Only the keys just deleted can have become empty: no scan of the fabric per batch.
    let gone: Vec<&LiveRecord> = records.iter().filter(|r| r.object.is_none()).collect();
    if !gone.is_empty() {
        let text = |f: fn(&LiveRecord) -> String| gone.iter().map(|r| f(r)).collect::<Vec<_>>();
        diesel::sql_query(
            "DELETE FROM resources r USING unnest($2, $3, $4, $5) AS u(g, k, ns, n) \
             WHERE r.fabric_id = $1 AND r.api_group = u.g AND r.kind = u.k AND r.namespace = u.ns AND r.name = u.n \
               AND r.desired IS NULL AND r.live IS NULL",
        )
        .bind::<SqlUuid, _>(fabric_id)
        .bind::<Array<Text>, _>(text(|r| r.api_group.clone()))
        .bind::<Array<Text>, _>(text(|r| r.kind.clone()))
        .bind::<Array<Text>, _>(text(|r| r.namespace.clone()))
        .bind::<Array<Text>, _>(text(|r| r.name.clone()))
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// (key, live resourceVersion) of every live object stored for a fabric.
pub async fn live_versions(
    conn: &mut AsyncPgConnection,
    fabric_id: Uuid,
) -> Result<Vec<(ResourceKey, String)>, DbError> {
    let rows: Vec<(String, String, String, String, Option<String>)> = resources::table
        .filter(resources::fabric_id.eq(fabric_id))
        .filter(resources::live.is_not_null())
        .select((
            resources::api_group,
            resources::kind,
            resources::namespace,
            resources::name,
            resources::live_resource_version,
        ))
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|(g, k, ns, n, rv)| (ResourceKey::new(g, k, ns, n), rv.unwrap_or_default())).collect())
}

/// What drift is computed from.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = resources)]
pub struct DriftInput {
    pub id: Uuid,
    #[diesel(embed)]
    pub identity: KeyColumns,
    pub api_version: String,
    pub desired: Option<serde_json::Value>,
    pub live: Option<serde_json::Value>,
    pub field_managers: Json<Vec<FieldManager>>,
    #[diesel(deserialize_as = Stored<DriftStatus>)]
    pub drift_status: DriftStatus,
    pub drift: Json<StoredDrift>,
}

impl DriftInput {
    pub fn key(&self) -> ResourceKey {
        self.identity.key()
    }
}

/// Drift of one resource to store.
#[derive(Debug, Clone)]
pub struct DriftRecord {
    pub id: Uuid,
    pub status: DriftStatus,
    pub drift: StoredDrift,
}

/// One page of a fabric's drift inputs in id order, after `after`: a full recompute holds
/// one page in memory at a time.
pub async fn drift_inputs_page(
    conn: &mut AsyncPgConnection,
    fabric_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<DriftInput>, DbError> {
    let mut query = resources::table.filter(resources::fabric_id.eq(fabric_id)).into_boxed();
    if let Some(after) = after {
        query = query.filter(resources::id.gt(after));
    }
    Ok(query.order(resources::id).limit(limit).select(DriftInput::as_select()).load(conn).await?)
}

/// The drift inputs of the given keys of a fabric, found through the unique key index (each key
/// part as an array: a cached statement; combinations that are not keys are dropped here).
pub async fn drift_inputs(
    conn: &mut AsyncPgConnection,
    fabric_id: Uuid,
    keys: &[ResourceKey],
) -> Result<Vec<DriftInput>, DbError> {
    let mut out = Vec::new();
    for chunk in keys.chunks(UPSERT_CHUNK) {
        let part = |f: fn(&ResourceKey) -> &String| {
            let mut values: Vec<&str> = chunk.iter().map(|k| f(k).as_str()).collect();
            values.sort_unstable();
            values.dedup();
            values
        };
        let rows: Vec<DriftInput> = resources::table
            .filter(resources::fabric_id.eq(fabric_id))
            .filter(resources::api_group.eq_any(part(|k| &k.group)))
            .filter(resources::kind.eq_any(part(|k| &k.kind)))
            .filter(resources::namespace.eq_any(part(|k| &k.namespace)))
            .filter(resources::name.eq_any(part(|k| &k.name)))
            .select(DriftInput::as_select())
            .load(conn)
            .await?;
        let wanted: std::collections::HashSet<&ResourceKey> = chunk.iter().collect();
        out.extend(rows.into_iter().filter(|r| wanted.contains(&r.key())));
    }
    Ok(out)
}

diesel::define_sql_function! {
    // The SQL function's own parameter list, one per argument it takes.
    #[allow(clippy::too_many_arguments)]
    /// migrations/2026-11-26-000001_watch_and_apply: drift, events, notice and aggregate at once.
    fn fabricsync_store_drift(
        fabric: diesel::sql_types::Uuid,
        ids: diesel::sql_types::Array<diesel::sql_types::Uuid>,
        statuses: diesel::sql_types::Array<diesel::sql_types::Text>,
        drifts: diesel::sql_types::Array<diesel::sql_types::Jsonb>,
        stream: diesel::sql_types::Text,
        payloads: diesel::sql_types::Array<diesel::sql_types::Bytea>,
        channel: diesel::sql_types::Text,
        watching: diesel::sql_types::Bool,
        set_aggregate: diesel::sql_types::Bool,
    ) -> diesel::sql_types::BigInt;
}

/// Stores computed drift, appends its events to `stream` (with one notice naming the last) and,
/// when `aggregate` says whether the fabric is watched, sets the fabric's aggregate status: one
/// cached statement, so one round trip and one commit per watch event.
pub async fn store_drift(
    conn: &mut AsyncPgConnection,
    fabric_id: Uuid,
    records: &[DriftRecord],
    stream: Stream,
    payloads: &[Vec<u8>],
    aggregate: Option<bool>,
) -> Result<(), DbError> {
    let call = fabricsync_store_drift(
        fabric_id,
        records.iter().map(|r| r.id).collect::<Vec<_>>(),
        records.iter().map(|r| r.status.word()).collect::<Vec<_>>(),
        records.iter().map(|r| Json(&r.drift)).collect::<Vec<_>>(),
        stream.word(),
        payloads.to_vec(),
        super::events::CHANNEL,
        aggregate.unwrap_or(false),
        aggregate.is_some(),
    );
    diesel::select(call).execute(conn).await?;
    Ok(())
}

/// What the watch stored of one live object, for deciding an apply without listing the cluster.
#[derive(Debug, QueryableByName)]
pub struct WatchedLive {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub api_group: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub api_version: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub kind: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub namespace: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub resource_version: String,
    /// Carries `label` = the fabric's name.
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub labelled: bool,
}

/// The fabric's live objects as the watch stored them (without their bodies).
pub async fn watched_live(
    conn: &mut AsyncPgConnection,
    fabric_id: Uuid,
    label: &str,
    fabric: &str,
) -> Result<Vec<WatchedLive>, DbError> {
    Ok(diesel::sql_query(
        "SELECT api_group, api_version, kind, namespace, name, coalesce(live_resource_version, '') AS resource_version, \
                coalesce(live -> 'metadata' -> 'labels' ->> $2 = $3, false) AS labelled \
         FROM resources WHERE fabric_id = $1 AND live IS NOT NULL",
    )
    .bind::<diesel::sql_types::Uuid, _>(fabric_id)
    .bind::<diesel::sql_types::Text, _>(label)
    .bind::<diesel::sql_types::Text, _>(fabric)
    .load(conn)
    .await?)
}

/// Self-heal's stored reverts of a resource (`drift::heal`).
pub async fn self_heal_reverts(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Option<serde_json::Value>, DbError> {
    Ok(resources::table.find(id).select(resources::self_heal_reverts).first(conn).await.optional()?.flatten())
}

pub async fn set_self_heal_reverts(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    reverts: Option<&serde_json::Value>,
) -> Result<(), DbError> {
    diesel::update(resources::table.find(id)).set(resources::self_heal_reverts.eq(reverts)).execute(conn).await?;
    Ok(())
}

/// Per fabric, its resources that count as drift (`DriftStatus::counts_as_drift`); fabrics
/// without any are left out.
pub async fn drifted_counts(
    conn: &mut AsyncPgConnection,
    fabric_ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, i64>, DbError> {
    let rows: Vec<(Uuid, i64)> = resources::table
        .filter(resources::fabric_id.eq_any(fabric_ids))
        .filter(resources::drift_status.eq_any(DriftStatus::drifted_words()))
        .group_by(resources::fabric_id)
        .select((resources::fabric_id, diesel::dsl::count_star()))
        .load(conn)
        .await?;
    Ok(rows.into_iter().collect())
}

/// (group, kind, status, count) of a fabric's resources.
pub async fn drift_counts(
    conn: &mut AsyncPgConnection,
    fabric_id: Uuid,
) -> Result<Vec<(String, String, String, i64)>, DbError> {
    Ok(resources::table
        .filter(resources::fabric_id.eq(fabric_id))
        .group_by((resources::api_group, resources::kind, resources::drift_status))
        .select((resources::api_group, resources::kind, resources::drift_status, diesel::dsl::count_star()))
        .load(conn)
        .await?)
}

/// What a resource's health is told from, with the health stored now.
#[derive(Debug, Clone, Queryable)]
pub struct HealthInput {
    pub id: Uuid,
    pub identity: KeyColumns,
    pub api_version: String,
    pub desired: bool,
    pub live: bool,
    pub apply_status: Stored<ApplyStatus>,
    pub apply_error: Option<String>,
    pub health: Stored<Health>,
    pub health_reason: String,
}

/// Every resource of the fabric, as its health is told (no objects read).
pub async fn health_inputs(conn: &mut AsyncPgConnection, fabric_id: Uuid) -> Result<Vec<HealthInput>, DbError> {
    Ok(resources::table
        .filter(resources::fabric_id.eq(fabric_id))
        .select((
            resources::id,
            KeyColumns::as_select(),
            resources::api_version,
            resources::desired.is_not_null(),
            resources::live.is_not_null(),
            resources::apply_status,
            resources::apply_error,
            resources::health,
            resources::health_reason,
        ))
        .load(conn)
        .await?)
}

/// Stores the health of the resources given (id, health, reason).
pub async fn store_health(conn: &mut AsyncPgConnection, changes: &[(Uuid, Health, String)]) -> Result<(), DbError> {
    use diesel::sql_types::{Array, Text, Uuid as SqlUuid};
    for chunk in changes.chunks(UPSERT_CHUNK) {
        diesel::sql_query(
            "UPDATE resources r SET health = u.h, health_reason = u.reason \
             FROM unnest($1, $2, $3) AS u(id, h, reason) WHERE r.id = u.id",
        )
        .bind::<Array<SqlUuid>, _>(chunk.iter().map(|c| c.0).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(chunk.iter().map(|c| c.1.word()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(chunk.iter().map(|c| c.2.clone()).collect::<Vec<_>>())
        .execute(conn)
        .await?;
    }
    Ok(())
}
