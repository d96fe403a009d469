//! Queries for API tokens. Rows hold only the keyed hash of a token's secret.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::api_tokens;
use super::{DbError, Listed, Page};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_tokens)]
pub struct TokenRow {
    pub id: Uuid,
    pub name: String,
    pub lookup_key: String,
    pub secret_hash: Vec<u8>,
    pub role: String,
    pub fabric_scope: Vec<String>,
    pub allowed_networks: Vec<String>,
    pub description: String,
    pub created_by: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

pub async fn insert(conn: &mut AsyncPgConnection, row: &TokenRow) -> Result<(), DbError> {
    diesel::insert_into(api_tokens::table).values(row).execute(conn).await?;
    Ok(())
}

/// Inserts `row` only when no token exists at all (first start); false when one did. Several
/// replicas starting at once: one wins, under a transaction-scoped advisory lock.
pub async fn insert_first(conn: &mut AsyncPgConnection, row: &TokenRow) -> Result<bool, DbError> {
    use diesel_async::AsyncConnection;
    conn.transaction::<bool, DbError, _>(async |conn| {
        diesel::sql_query("SELECT pg_advisory_xact_lock(7306090335553236068)").execute(conn).await?;
        let any: i64 = api_tokens::table.count().get_result(conn).await?;
        if any > 0 {
            return Ok(false);
        }
        diesel::insert_into(api_tokens::table).values(row).execute(conn).await?;
        Ok(true)
    })
    .await
}

pub async fn by_lookup(conn: &mut AsyncPgConnection, lookup: &str) -> Result<Option<TokenRow>, DbError> {
    Ok(api_tokens::table
        .filter(api_tokens::lookup_key.eq(lookup))
        .select(TokenRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The active (not revoked) token of that name.
pub async fn active_by_name(conn: &mut AsyncPgConnection, name: &str) -> Result<Option<TokenRow>, DbError> {
    Ok(api_tokens::table
        .filter(api_tokens::name.eq(name))
        .filter(api_tokens::revoked_at.is_null())
        .select(TokenRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Ordered by name, then creation (a revoked name may appear more than once).
pub async fn list(
    conn: &mut AsyncPgConnection,
    include_revoked: bool,
    page: &Page,
) -> Result<Listed<TokenRow>, DbError> {
    let filtered = || {
        let mut query = api_tokens::table.into_boxed();
        if !include_revoked {
            query = query.filter(api_tokens::revoked_at.is_null());
        }
        query
    };
    let total = filtered().count().get_result(conn).await?;
    let mut query = filtered().select(TokenRow::as_select()).order((api_tokens::name.asc(), api_tokens::id.asc()));
    if let Some((name, id)) = page.after::<String>() {
        query =
            query.filter(api_tokens::name.gt(name.clone()).or(api_tokens::name.eq(name).and(api_tokens::id.gt(id))));
    }
    let items: Vec<TokenRow> = query.limit(page.limit()).load(conn).await?;
    Ok(page.finish(items, total))
}

/// The page cursor after a token row (tokens are ordered by name, then id).
pub fn cursor(row: &TokenRow) -> String {
    super::cursor(&row.name, row.id)
}

/// Marks the active token `name` revoked; returns it, or None when there is none.
pub async fn revoke(conn: &mut AsyncPgConnection, name: &str) -> Result<Option<TokenRow>, DbError> {
    Ok(diesel::update(api_tokens::table.filter(api_tokens::name.eq(name)).filter(api_tokens::revoked_at.is_null()))
        .set(api_tokens::revoked_at.eq(super::now()))
        .returning(TokenRow::as_returning())
        .get_result(conn)
        .await
        .optional()?)
}

pub async fn touch(conn: &mut AsyncPgConnection, id: Uuid, at: DateTime<Utc>) -> Result<(), DbError> {
    diesel::update(api_tokens::table.find(id)).set(api_tokens::last_used_at.eq(at)).execute(conn).await?;
    Ok(())
}

/// Tokens that stopped being valid: revoked, or expired. Open streams of these end.
pub async fn invalid_ids(conn: &mut AsyncPgConnection) -> Result<Vec<Uuid>, DbError> {
    Ok(api_tokens::table
        .filter(api_tokens::revoked_at.is_not_null().or(api_tokens::expires_at.le(diesel::dsl::now)))
        .select(api_tokens::id)
        .load(conn)
        .await?)
}
