//! Queries for the repositories aggregate.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use fabricsync_core::vocab::{AuthType, ConnectionStatus, Provider};
use uuid::Uuid;

use super::schema::{fabrics, repositories};
use super::typed::Stored;
use super::{DbError, Listed, Page};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = repositories, treat_none_as_null = true)]
pub struct RepositoryRow {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub url: String,
    #[diesel(deserialize_as = Stored<Provider>, serialize_as = Stored<Provider>)]
    pub provider: Provider,
    #[diesel(deserialize_as = Stored<AuthType>, serialize_as = Stored<AuthType>)]
    pub auth_type: AuthType,
    pub auth_username: Option<String>,
    pub ssh_known_hosts: Option<String>,
    pub secret_sealed: Option<Vec<u8>>,
    pub secret_key_id: Option<String>,
    pub webhook_secret_sealed: Option<Vec<u8>>,
    pub webhook_secret_key_id: Option<String>,
    #[diesel(deserialize_as = Stored<ConnectionStatus>, serialize_as = Stored<ConnectionStatus>)]
    pub connection_status: ConnectionStatus,
    pub last_validated: Option<DateTime<Utc>>,
    pub validation_error: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Equality filters of ListRepositories; None matches all.
#[derive(Debug, Clone, Default)]
pub struct RepositoryFilter {
    pub name: Option<String>,
    pub provider: Option<String>,
    pub auth_type: Option<String>,
    pub connection_status: Option<String>,
    /// A principal's fabric scope as LIKE patterns: only repositories those fabrics use.
    pub scope: Vec<String>,
}

pub async fn insert(conn: &mut AsyncPgConnection, row: &RepositoryRow) -> Result<(), DbError> {
    diesel::insert_into(repositories::table).values(row.clone()).execute(conn).await?;
    Ok(())
}

pub async fn get(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Option<RepositoryRow>, DbError> {
    Ok(repositories::table.find(id).select(RepositoryRow::as_select()).first(conn).await.optional()?)
}

fn filtered(filter: &RepositoryFilter) -> repositories::BoxedQuery<'static, diesel::pg::Pg> {
    let mut query = repositories::table.into_boxed();
    if let Some(v) = &filter.name {
        query = query.filter(repositories::name.eq(v.clone()));
    }
    if let Some(v) = &filter.provider {
        query = query.filter(repositories::provider.eq(v.clone()));
    }
    if let Some(v) = &filter.auth_type {
        query = query.filter(repositories::auth_type.eq(v.clone()));
    }
    if let Some(v) = &filter.connection_status {
        query = query.filter(repositories::connection_status.eq(v.clone()));
    }
    if !filter.scope.is_empty() {
        query = query.filter(super::scope_condition(
            "repositories.id IN (SELECT repository_id FROM fabrics WHERE name LIKE ANY(",
            &filter.scope,
            "))",
        ));
    }
    query
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    filter: &RepositoryFilter,
    page: &Page,
) -> Result<Listed<RepositoryRow>, DbError> {
    let total = filtered(filter).count().get_result(conn).await?;
    let mut query = filtered(filter).select(RepositoryRow::as_select()).order(repositories::name.asc());
    if let Some(after) = &page.after {
        query = query.filter(repositories::name.gt(after.clone()));
    }
    let items: Vec<RepositoryRow> = query.limit(page.limit()).load(conn).await?;
    Ok(page.finish(items, total))
}

/// Writes `row` if the stored version is still `expected_version`; bumps the version.
/// Returns false when another writer got there first.
pub async fn update(conn: &mut AsyncPgConnection, row: &RepositoryRow, expected_version: i64) -> Result<bool, DbError> {
    let row = RepositoryRow { version: expected_version + 1, updated_at: super::now(), ..row.clone() };
    let changed = diesel::update(
        repositories::table.filter(repositories::id.eq(row.id)).filter(repositories::version.eq(expected_version)),
    )
    .set(row.clone())
    .execute(conn)
    .await?;
    Ok(changed == 1)
}

pub async fn record_validation(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    status: ConnectionStatus,
    error: Option<&str>,
    at: DateTime<Utc>,
) -> Result<(), DbError> {
    diesel::update(repositories::table.find(id))
        .set((
            repositories::connection_status.eq(status.word()),
            repositories::validation_error.eq(error),
            repositories::last_validated.eq(at),
            repositories::version.eq(repositories::version + 1),
            repositories::updated_at.eq(super::now()),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Names of the fabrics that use repository `id` (a repository in use cannot be deleted).
pub async fn referencing_fabrics(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Vec<String>, DbError> {
    Ok(fabrics::table
        .filter(fabrics::repository_id.eq(id))
        .select(fabrics::name)
        .order(fabrics::name.asc())
        .load(conn)
        .await?)
}

pub async fn delete(conn: &mut AsyncPgConnection, id: Uuid, expected_version: Option<i64>) -> Result<usize, DbError> {
    let mut query = diesel::delete(repositories::table).filter(repositories::id.eq(id)).into_boxed();
    if let Some(v) = expected_version {
        query = query.filter(repositories::version.eq(v));
    }
    Ok(query.execute(conn).await?)
}

/// The two secrets a repository may hold, each sealed in its own columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretSlot {
    /// The credentials git connections use.
    Credentials,
    /// The shared secret of the forge's push webhook.
    Webhook,
}

/// Every sealed secret, for key rotation.
pub async fn sealed_secrets(conn: &mut AsyncPgConnection) -> Result<Vec<(Uuid, SecretSlot, Vec<u8>, String)>, DbError> {
    use repositories::dsl as r;
    type Row = (Uuid, Option<Vec<u8>>, Option<String>, Option<Vec<u8>>, Option<String>);
    let rows: Vec<Row> = r::repositories
        .select((r::id, r::secret_sealed, r::secret_key_id, r::webhook_secret_sealed, r::webhook_secret_key_id))
        .filter(r::secret_sealed.is_not_null().or(r::webhook_secret_sealed.is_not_null()))
        .load(conn)
        .await?;
    let mut sealed = Vec::new();
    for (id, blob, key_id, hook_blob, hook_key_id) in rows {
        for (slot, blob, key_id) in
            [(SecretSlot::Credentials, blob, key_id), (SecretSlot::Webhook, hook_blob, hook_key_id)]
        {
            if let (Some(blob), Some(key_id)) = (blob, key_id) {
                sealed.push((id, slot, blob, key_id));
            }
        }
    }
    Ok(sealed)
}

pub async fn store_sealed_secret(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    slot: SecretSlot,
    blob: &[u8],
    key_id: &str,
) -> Result<(), DbError> {
    use repositories::dsl as r;
    let target = diesel::update(r::repositories.find(id));
    match slot {
        SecretSlot::Credentials => {
            target.set((r::secret_sealed.eq(blob), r::secret_key_id.eq(key_id))).execute(conn).await?
        }
        SecretSlot::Webhook => {
            target.set((r::webhook_secret_sealed.eq(blob), r::webhook_secret_key_id.eq(key_id))).execute(conn).await?
        }
    };
    Ok(())
}
