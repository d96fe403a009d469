//! Sync runs: a queue of rows claimed with `FOR UPDATE SKIP LOCKED` under a heartbeat lease.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Interval, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use fabricsync_core::vocab::{RunStatus, SyncMode, Trigger};
use uuid::Uuid;

use super::schema::sync_runs;
use super::typed::Stored;
use super::{DbError, Listed, Page};

/// At most one active run per fabric and mode class (inventory, or the others).
pub const ACTIVE_RUN_INDEX: &str = "sync_runs_one_active";

#[derive(Debug, Clone, Queryable, Selectable, Insertable, QueryableByName)]
#[diesel(table_name = sync_runs)]
pub struct RunRow {
    pub id: Uuid,
    pub fabric_id: Uuid,
    #[diesel(deserialize_as = Stored<SyncMode>, serialize_as = Stored<SyncMode>)]
    pub mode: SyncMode,
    #[diesel(deserialize_as = Stored<Trigger>, serialize_as = Stored<Trigger>)]
    pub trigger: Trigger,
    pub dry_run: bool,
    pub force: bool,
    pub requested_ref: String,
    pub commit_sha: Option<String>,
    #[diesel(deserialize_as = Stored<RunStatus>, serialize_as = Stored<RunStatus>)]
    pub status: RunStatus,
    pub counters: serde_json::Value,
    pub kind_counts: serde_json::Value,
    pub diagnostics: serde_json::Value,
    pub changes: serde_json::Value,
    pub error: Option<String>,
    pub cancel_requested: bool,
    pub claimed_by: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// A Remediate run's chosen resources (`sync::apply::Targets`); None: the whole fabric.
    pub targets: Option<serde_json::Value>,
    pub requested_by: String,
    /// After the apply, how long to wait for the switches to catch up (0: not at all).
    pub rollout_wait_seconds: i32,
    /// Fetching from its Git server now.
    pub fetching: bool,
    /// The W3C `traceparent` of the call that queued it (`traces::current_traceparent`).
    pub trace_parent: Option<String>,
}

/// What a finished run records.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = sync_runs, treat_none_as_null = true)]
pub struct RunOutcome {
    #[diesel(serialize_as = Stored<RunStatus>)]
    pub status: RunStatus,
    pub commit_sha: Option<String>,
    pub counters: serde_json::Value,
    pub kind_counts: serde_json::Value,
    pub diagnostics: serde_json::Value,
    pub changes: serde_json::Value,
    pub error: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub fabric_id: Option<Uuid>,
    pub status: Option<String>,
    pub mode: Option<String>,
    pub trigger: Option<String>,
    /// A principal's fabric scope as LIKE patterns: only those fabrics' runs.
    pub scope: Vec<String>,
}

/// The fabric (id, name) of a run.
pub async fn fabric_of(conn: &mut AsyncPgConnection, run: Uuid) -> Result<Option<(Uuid, String)>, DbError> {
    use super::schema::fabrics;
    Ok(sync_runs::table
        .inner_join(fabrics::table)
        .filter(sync_runs::id.eq(run))
        .select((fabrics::id, fabrics::name))
        .first(conn)
        .await
        .optional()?)
}

pub async fn insert(conn: &mut AsyncPgConnection, row: &RunRow) -> Result<(), DbError> {
    diesel::insert_into(sync_runs::table).values(row.clone()).execute(conn).await?;
    Ok(())
}

pub async fn get(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Option<RunRow>, DbError> {
    Ok(sync_runs::table.find(id).select(RunRow::as_select()).first(conn).await.optional()?)
}

/// The fabric's queued or running run: of mode INVENTORY (`inventory`), or of the other modes
/// (one of each may be active, see `ACTIVE_RUN_INDEX`).
pub async fn active_for_fabric(
    conn: &mut AsyncPgConnection,
    fabric_id: Uuid,
    inventory: bool,
) -> Result<Option<RunRow>, DbError> {
    let mode = SyncMode::Inventory.word();
    let mut query = sync_runs::table.filter(sync_runs::fabric_id.eq(fabric_id)).into_boxed();
    query = if inventory { query.filter(sync_runs::mode.eq(mode)) } else { query.filter(sync_runs::mode.ne(mode)) };
    Ok(query
        .filter(sync_runs::status.eq_any([RunStatus::Queued.word(), RunStatus::Running.word()]))
        .select(RunRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Newest first; the page token carries the last (created_at, id) of the previous page.
pub async fn list(conn: &mut AsyncPgConnection, filter: &RunFilter, page: &Page) -> Result<Listed<RunRow>, DbError> {
    let filtered = || {
        let mut query = sync_runs::table.into_boxed();
        if let Some(v) = filter.fabric_id {
            query = query.filter(sync_runs::fabric_id.eq(v));
        }
        if let Some(v) = &filter.status {
            query = query.filter(sync_runs::status.eq(v.clone()));
        }
        if let Some(v) = &filter.mode {
            query = query.filter(sync_runs::mode.eq(v.clone()));
        }
        if let Some(v) = &filter.trigger {
            query = query.filter(sync_runs::trigger.eq(v.clone()));
        }
        if !filter.scope.is_empty() {
            query = query.filter(super::scope_condition(
                "sync_runs.fabric_id IN (SELECT id FROM fabrics WHERE name LIKE ANY(",
                &filter.scope,
                "))",
            ));
        }
        query
    };
    let total = filtered().count().get_result(conn).await?;
    let mut query = filtered();
    if let Some((time, id)) = page.after::<DateTime<Utc>>() {
        query =
            query.filter(sync_runs::created_at.lt(time).or(sync_runs::created_at.eq(time).and(sync_runs::id.lt(id))));
    }
    let items: Vec<RunRow> = query
        .order((sync_runs::created_at.desc(), sync_runs::id.desc()))
        .limit(page.limit())
        .select(RunRow::as_select())
        .load(conn)
        .await?;
    Ok(page.finish(items, total))
}

/// The page cursor after `row` (runs are ordered by creation, newest first).
pub fn cursor(row: &RunRow) -> String {
    super::cursor(&row.created_at, row.id)
}

/// First of the two advisory-lock keys of a server process's presence: "fabricsync worker".
/// The second is `hashtext(<process>)`, the part of `claimed_by` before the `/`.
const PRESENCE_CLASS: i32 = 0x6677_726b;
/// Serializes claims (a transaction lock), so that the per-remote cap counts every claim made
/// before: "fabricsync claim".
const CLAIM_LOCK: i64 = 0x6663_6c61_696d;
/// A holder gone from PostgreSQL (its presence lock) loses a run only once its heartbeats
/// stopped too: a live process whose presence connection broke keeps beating through its pool.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(2);
const MISSED_BEATS: std::time::Duration = std::time::Duration::from_secs(8);

/// A connection of its own holding `process`'s presence lock (None: another session holds it).
pub async fn hold_presence(database_url: &str, process: &str) -> Result<Option<AsyncPgConnection>, DbError> {
    super::try_advisory_lock(database_url, PRESENCE_CLASS, process).await
}

/// How many server processes hold their presence lock now: the live processes sharing this
/// database (a dead one's sessions, and so its lock, end with its sockets).
pub async fn live_processes(conn: &mut AsyncPgConnection) -> Result<usize, DbError> {
    #[derive(diesel::QueryableByName)]
    struct Live {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        count: i64,
    }
    let live: Live = diesel::sql_query(format!(
        "SELECT count(*) AS count FROM pg_locks WHERE {} AND locktype = 'advisory' AND granted \
         AND objsubid = 2 AND classid = ($1)::oid",
        super::THIS_DATABASE
    ))
    .bind::<diesel::sql_types::Int4, _>(PRESENCE_CLASS)
    .get_result(conn)
    .await?;
    Ok(usize::try_from(live.count).unwrap_or(0))
}

/// Whether the connection still answers.
pub async fn ping(conn: &mut AsyncPgConnection) -> Result<(), DbError> {
    diesel::sql_query("SELECT 1").execute(conn).await?;
    Ok(())
}

/// Claims the oldest queued run, or a running one whose holder is gone: its lease ran out, or
/// its process no longer holds its presence lock (it died: PostgreSQL ended its sessions when
/// its sockets closed) and missed its heartbeats. A queued pull (PULL, FULL) waits while
/// `fetches_per_remote` runs fetch from its repository's Git server (the SQL function
/// `fabricsync_remote`): a silent server holds at most that many workers of all processes.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    worker: &str,
    lease: std::time::Duration,
    fetches_per_remote: i64,
) -> Result<Option<RunRow>, DbError> {
    use diesel_async::AsyncConnection;
    use fabricsync_core::vocab::Word;
    let pulls: Vec<&str> = SyncMode::ALL.iter().filter(|m| m.pulls()).map(|m| m.word()).collect();
    let gone = super::advisory_lock_held("$3", "split_part(r.claimed_by, '/', 1)");
    let query = format!(
        "UPDATE sync_runs SET status = 'running', claimed_by = $1, lease_expires_at = now() + $2,
                started_at = coalesce(started_at, now())
         WHERE id = (SELECT r.id FROM sync_runs r
                       JOIN fabrics f ON f.id = r.fabric_id JOIN repositories p ON p.id = f.repository_id
                     WHERE (r.status = 'queued' AND (r.mode <> ALL($5)
                             OR fabricsync_remote(p.url) = ''
                             OR (SELECT count(*) FROM sync_runs r2
                                   JOIN fabrics f2 ON f2.id = r2.fabric_id JOIN repositories p2 ON p2.id = f2.repository_id
                                 WHERE r2.fetching AND fabricsync_remote(p2.url) = fabricsync_remote(p.url)) < $4))
                        OR (r.status = 'running' AND (r.lease_expires_at < now()
                             OR (NOT {gone} AND r.lease_expires_at < now() + $2 - $6)))
                     ORDER BY r.created_at LIMIT 1 FOR UPDATE OF r SKIP LOCKED)
         RETURNING *"
    );
    let rows: Vec<RunRow> = conn
        .transaction::<_, DbError, _>(async |conn| {
            diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
                .bind::<diesel::sql_types::BigInt, _>(CLAIM_LOCK)
                .execute(conn)
                .await?;
            Ok(diesel::sql_query(&query)
                .bind::<Text, _>(worker)
                .bind::<Interval, _>(interval(lease))
                .bind::<diesel::sql_types::Int4, _>(PRESENCE_CLASS)
                .bind::<diesel::sql_types::BigInt, _>(fetches_per_remote)
                .bind::<diesel::sql_types::Array<Text>, _>(&pulls)
                .bind::<Interval, _>(interval(MISSED_BEATS))
                .load(conn)
                .await?)
        })
        .await?;
    Ok(rows.into_iter().next())
}

/// Marks whether the run is fetching from its Git server now (see `claim`'s cap).
pub async fn set_fetching(conn: &mut AsyncPgConnection, id: Uuid, fetching: bool) -> Result<(), DbError> {
    diesel::update(sync_runs::table.find(id)).set(sync_runs::fetching.eq(fetching)).execute(conn).await?;
    Ok(())
}

/// Extends the lease while `worker` still holds the run. Returns None when the run was taken
/// over or ended, else whether a cancel was requested.
pub async fn heartbeat(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    worker: &str,
    lease: std::time::Duration,
) -> Result<Option<bool>, DbError> {
    let rows: Vec<RunRow> = diesel::sql_query(
        "UPDATE sync_runs SET lease_expires_at = now() + $3
         WHERE id = $1 AND claimed_by = $2 AND status = 'running' RETURNING *",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(worker)
    .bind::<Interval, _>(interval(lease))
    .load(conn)
    .await?;
    Ok(rows.into_iter().next().map(|r| r.cancel_requested))
}

/// Locks the run for the finishing transaction if `worker` still holds it (fencing a worker
/// whose lease was taken over); returns whether a cancel was requested.
pub async fn lock_if_held(conn: &mut AsyncPgConnection, id: Uuid, worker: &str) -> Result<Option<bool>, DbError> {
    Ok(sync_runs::table
        .filter(sync_runs::id.eq(id))
        .filter(sync_runs::claimed_by.eq(worker))
        .filter(sync_runs::status.eq(RunStatus::Running.word()))
        .select(sync_runs::cancel_requested)
        .for_update()
        .first(conn)
        .await
        .optional()?)
}

/// Records the outcome; the finish time is the moment of this write.
pub async fn finish(conn: &mut AsyncPgConnection, id: Uuid, outcome: &RunOutcome) -> Result<(), DbError> {
    diesel::update(sync_runs::table.find(id))
        .set((outcome.clone(), sync_runs::finished_at.eq(Some(super::now())), sync_runs::fetching.eq(false)))
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks a cancel request; a queued run is cancelled at once (returns true then).
pub async fn request_cancel(conn: &mut AsyncPgConnection, id: Uuid) -> Result<bool, DbError> {
    let cancelled_queued =
        diesel::update(sync_runs::table.find(id).filter(sync_runs::status.eq(RunStatus::Queued.word())))
            .set((
                sync_runs::status.eq(RunStatus::Cancelled.word()),
                sync_runs::cancel_requested.eq(true),
                sync_runs::finished_at.eq(Some(super::now())),
            ))
            .execute(conn)
            .await?;
    if cancelled_queued > 0 {
        return Ok(true);
    }
    diesel::update(sync_runs::table.find(id).filter(sync_runs::status.eq(RunStatus::Running.word())))
        .set(sync_runs::cancel_requested.eq(true))
        .execute(conn)
        .await?;
    Ok(false)
}

fn interval(d: std::time::Duration) -> diesel::pg::data_types::PgInterval {
    diesel::pg::data_types::PgInterval::from_microseconds(d.as_micros().min(i64::MAX as u128) as i64)
}

/// Hands a run back to the queue (its worker is shutting down) so another takes it at once.
pub async fn release(conn: &mut AsyncPgConnection, id: Uuid, worker: &str) -> Result<(), DbError> {
    diesel::update(
        sync_runs::table
            .find(id)
            .filter(sync_runs::claimed_by.eq(worker))
            .filter(sync_runs::status.eq(RunStatus::Running.word())),
    )
    .set((
        sync_runs::status.eq(RunStatus::Queued.word()),
        sync_runs::claimed_by.eq(None::<String>),
        sync_runs::lease_expires_at.eq(None::<DateTime<Utc>>),
        sync_runs::fetching.eq(false),
    ))
    .execute(conn)
    .await?;
    Ok(())
}

/// The queue across every process, for the metrics: queued and running runs and the wait of
/// the oldest queued one (one scan of the claimable index).
pub async fn queue_gauges(conn: &mut AsyncPgConnection) -> Result<crate::metrics::QueueGauges, DbError> {
    use diesel::sql_types::{Double, Int8};
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Int8)]
        queued: i64,
        #[diesel(sql_type = Int8)]
        running: i64,
        #[diesel(sql_type = Double)]
        oldest: f64,
    }
    let row: Row = diesel::sql_query(
        "SELECT count(*) FILTER (WHERE status = 'queued') AS queued, \
                count(*) FILTER (WHERE status = 'running') AS running, \
                COALESCE(EXTRACT(EPOCH FROM now() - min(created_at) FILTER (WHERE status = 'queued')), 0)::float8 AS oldest \
         FROM sync_runs WHERE status IN ('queued', 'running')",
    )
    .get_result(conn)
    .await?;
    Ok(crate::metrics::QueueGauges { queued: row.queued, running: row.running, oldest_queued_seconds: row.oldest })
}
