//! Queries for the fabrics aggregate.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use fabricsync_core::vocab::{ConnectionStatus, FabricDrift, SyncStatus, WatchStatus};
use uuid::Uuid;

use super::schema::fabrics;
use fabricsync_core::diff::IgnoreRule;

use super::typed::{Json, Stored};
use super::{DbError, Listed, Page};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = fabrics, treat_none_as_null = true)]
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
pub async fn update(conn: &mut AsyncPgConnection, row: &FabricRow, expected_version: i64) -> Result<bool, DbError> {
    let row = FabricRow { version: expected_version + 1, updated_at: super::now(), ..row.clone() };
    let changed =
        diesel::update(fabrics::table.filter(fabrics::id.eq(row.id)).filter(fabrics::version.eq(expected_version)))
            .set(row.clone())
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
}

pub async fn record_sync(conn: &mut AsyncPgConnection, id: Uuid, record: &SyncRecord) -> Result<(), DbError> {
    diesel::update(fabrics::table.find(id)).set(record.clone()).execute(conn).await?;
    Ok(())
}

/// Claims one fabric whose auto-sync check is due and moves its next check one interval ahead;
/// SKIP LOCKED lets every replica's scheduler take different fabrics.
pub async fn claim_due_auto_sync(conn: &mut AsyncPgConnection) -> Result<Option<Uuid>, DbError> {
    #[derive(diesel::QueryableByName)]
    struct Claimed {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
    }
    let rows: Vec<Claimed> = diesel::sql_query(
        "UPDATE fabrics SET next_auto_sync_at = now() + make_interval(secs => auto_sync_interval_seconds)
         WHERE id = (SELECT id FROM fabrics
                     WHERE auto_sync_interval_seconds > 0 AND (next_auto_sync_at IS NULL OR next_auto_sync_at <= now())
                     ORDER BY next_auto_sync_at NULLS FIRST LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING id",
    )
    .load(conn)
    .await?;
    Ok(rows.into_iter().next().map(|c| c.id))
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

/// (id, version) of every fabric with a cluster connection: the fabrics to watch.
pub async fn with_cluster(conn: &mut AsyncPgConnection) -> Result<Vec<(Uuid, i64)>, DbError> {
    Ok(fabrics::table
        .filter(fabrics::cluster_server_url.ne(""))
        .select((fabrics::id, fabrics::version))
        .load(conn)
        .await?)
}

/// Records the state of the fabric's cluster watch.
pub async fn set_watch_status(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    status: WatchStatus,
    error: Option<&str>,
) -> Result<(), DbError> {
    diesel::update(fabrics::table.find(id))
        .set((fabrics::watch_status.eq(status.word()), fabrics::watch_error.eq(error)))
        .execute(conn)
        .await?;
    Ok(())
}
