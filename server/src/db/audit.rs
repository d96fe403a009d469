//! The audit log: who called what, on which target, with which result. Never a secret.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::audit_events;
use super::{DbError, Listed, Page};

/// What an audit event says; `AuditRow` adds what the database assigns.
#[derive(Debug, Clone, Insertable, Queryable, Selectable)]
#[diesel(table_name = audit_events)]
pub struct NewAuditEvent {
    pub principal: String,
    pub actor: String,
    pub rpc: String,
    pub fabric_id: Option<Uuid>,
    pub fabric_name: String,
    pub targets: serde_json::Value,
    pub code: String,
    pub message: String,
    pub peer: String,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_events)]
pub struct AuditRow {
    pub id: i64,
    pub time: DateTime<Utc>,
    #[diesel(embed)]
    pub event: NewAuditEvent,
}

/// Filters of ListAuditEvents; None matches all.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub principal: Option<String>,
    pub actor: Option<String>,
    pub fabric: Option<String>,
    pub rpc: Option<String>,
    pub code: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

pub async fn insert_batch(conn: &mut AsyncPgConnection, events: &[NewAuditEvent]) -> Result<(), DbError> {
    diesel::insert_into(audit_events::table).values(events).execute(conn).await?;
    Ok(())
}

/// Newest first; the page token is the last id of the previous page.
pub async fn list(
    conn: &mut AsyncPgConnection,
    filter: &AuditFilter,
    page: &Page,
) -> Result<Listed<AuditRow>, DbError> {
    let filtered = || {
        let mut query = audit_events::table.into_boxed();
        if let Some(v) = &filter.principal {
            query = query.filter(audit_events::principal.eq(v.clone()));
        }
        if let Some(v) = &filter.actor {
            query = query.filter(audit_events::actor.eq(v.clone()));
        }
        if let Some(v) = &filter.fabric {
            match Uuid::parse_str(v) {
                Ok(id) => query = query.filter(audit_events::fabric_id.eq(id)),
                Err(_) => query = query.filter(audit_events::fabric_name.eq(v.clone())),
            }
        }
        if let Some(v) = &filter.rpc {
            query = query.filter(audit_events::rpc.eq(v.clone()));
        }
        if let Some(v) = &filter.code {
            query = query.filter(audit_events::code.eq(v.clone()));
        }
        if let Some(v) = filter.since {
            query = query.filter(audit_events::time.ge(v));
        }
        if let Some(v) = filter.until {
            query = query.filter(audit_events::time.lt(v));
        }
        query
    };
    let total = filtered().count().get_result(conn).await?;
    let mut query = filtered().select(AuditRow::as_select()).order(audit_events::id.desc());
    if let Some(after) = page.after.as_deref().and_then(|t| t.parse::<i64>().ok()) {
        query = query.filter(audit_events::id.lt(after));
    }
    let items: Vec<AuditRow> = query.limit(page.limit()).load(conn).await?;
    Ok(page.finish(items, total))
}

/// Deletes events older than `before`; returns how many.
pub async fn prune(conn: &mut AsyncPgConnection, before: DateTime<Utc>) -> Result<usize, DbError> {
    Ok(diesel::delete(audit_events::table.filter(audit_events::time.lt(before))).execute(conn).await?)
}
