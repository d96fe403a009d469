//! PostgreSQL persistence: connection pool, embedded migrations, and queries per aggregate.
//! No business rules here: callers decide, this layer stores.

pub mod audit;
pub mod events;
pub mod fabrics;
pub mod hub;
pub mod inventory;
pub mod repositories;
pub mod resources;
pub mod runs;
pub mod schema;
pub mod server_keys;
pub mod tokens;
pub mod typed;

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{self, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::time::Duration;
use uuid::Uuid;

pub type DbPool = Pool<AsyncPgConnection>;
pub type DbConn = deadpool::Object<AsyncPgConnection>;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");
/// Serializes migrations across replicas starting at the same time.
const MIGRATION_LOCK_KEY: i64 = 0x6661_6272_6963_7301;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database connection: {0}")]
    Connect(String),
    #[error("database pool: {0}")]
    Pool(String),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("{0} already exists")]
    UniqueViolation(String),
    #[error("still referenced: {0}")]
    ForeignKeyViolation(String),
    #[error("database query: {0}")]
    Query(DieselError),
}

impl From<DieselError> for DbError {
    fn from(e: DieselError) -> Self {
        match e {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                DbError::UniqueViolation(info.constraint_name().unwrap_or("row").to_string())
            }
            DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info) => {
                DbError::ForeignKeyViolation(info.constraint_name().unwrap_or("row").to_string())
            }
            other => DbError::Query(other),
        }
    }
}

impl DbError {
    /// Whether the database went away (a restart, a broken connection) rather than refused the
    /// statement: doing it again once it is back may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Connect(_) | DbError::Pool(_) => true,
            DbError::Query(DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _)) => true,
            DbError::Query(DieselError::DatabaseError(_, info)) => {
                // 57P01 admin_shutdown and 57P03 cannot_connect_now, as PostgreSQL words them.
                let message = info.message();
                message.contains("terminating connection") || message.contains("the database system is")
            }
            DbError::Query(DieselError::BrokenTransactionManager) => true,
            _ => false,
        }
    }
}

impl From<deadpool::PoolError> for DbError {
    fn from(e: deadpool::PoolError) -> Self {
        DbError::Pool(e.to_string())
    }
}

/// How long a caller waits for a connection: a pooled one (its check included) or a new one
/// (TCP connect and PostgreSQL's startup). A database that accepts connections but answers
/// nothing (a stalled network path, a hung server) would otherwise hold every call and run
/// forever; after this the call fails as the database being unavailable (UNAVAILABLE), and the
/// next call tries again. Far above a healthy connect (milliseconds) or a pool wait under load.
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(10);

/// Session settings of every connection the server opens (sent once, after connecting):
/// - `statement_timeout`: a statement the server runs longer than this is cancelled by
///   PostgreSQL, so that nothing (a lock wait, a runaway query) holds a connection forever. The
///   largest statements (a 10,000-object pull's bulk writes) take well under a second.
/// - `idle_in_transaction_session_timeout`: a session left idle inside a transaction (its client
///   stalled or gone without its socket closing) is ended by PostgreSQL, releasing its row and
///   advisory locks for the other workers and replicas. The engine never waits on anything but
///   the database inside a transaction.
const SESSION_SETTINGS: &str = "SET statement_timeout = '120s'; SET idle_in_transaction_session_timeout = '60s'";

/// TCP settings added to the database URL unless it sets them itself: a peer that vanished
/// without a reset (a host gone, a network partition) is noticed by the kernel, and the
/// connection fails, instead of waiting forever on data that is never acknowledged
/// (`tcp_user_timeout`, seconds) or on an idle connection such as LISTEN's (keepalives: idle
/// 30 s, then probes every 10 s, 3 missed). `connect_timeout` bounds each TCP connect.
const TCP_SETTINGS: [(&str, &str); 5] = [
    ("connect_timeout", "10"),
    ("tcp_user_timeout", "30"),
    ("keepalives_idle", "30"),
    ("keepalives_interval", "10"),
    ("keepalives_retries", "3"),
];

/// `url` with the `TCP_SETTINGS` it does not set (URL or key=value form).
pub fn session_url(url: &str) -> String {
    let uri = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let mut out = url.to_string();
    for (key, value) in TCP_SETTINGS {
        let set = if uri {
            url.split_once('?').is_some_and(|(_, query)| query.split('&').any(|p| p.split('=').next() == Some(key)))
        } else {
            url.split_whitespace().any(|p| p.split('=').next() == Some(key))
        };
        if set {
            continue;
        }
        if uri {
            out.push(if out.contains('?') { '&' } else { '?' });
        } else {
            out.push(' ');
        }
        out.push_str(&format!("{key}={value}"));
    }
    out
}

/// A new connection with the TCP and session settings: the pool's and every other.
async fn open(url: &str) -> Result<AsyncPgConnection, diesel::ConnectionError> {
    use diesel_async::SimpleAsyncConnection;
    let mut conn = AsyncPgConnection::establish(&session_url(url)).await?;
    conn.batch_execute(SESSION_SETTINGS).await.map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}

/// A new connection outside the pool (LISTEN, advisory locks), within `CONNECT_DEADLINE`.
pub async fn establish(url: &str) -> Result<AsyncPgConnection, DbError> {
    match tokio::time::timeout(CONNECT_DEADLINE, open(url)).await {
        Ok(result) => result.map_err(connect_error),
        Err(_) => Err(DbError::Connect(no_answer())),
    }
}

fn no_answer() -> String {
    format!("the database did not answer within {} s", CONNECT_DEADLINE.as_secs())
}

pub fn pool(url: &str, max_size: usize) -> Result<DbPool, DbError> {
    let mut config = ManagerConfig::default();
    config.custom_setup = Box::new(|url| {
        let url = url.to_string();
        Box::pin(async move { open(&url).await })
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
    Pool::builder(manager).max_size(max_size).build().map_err(|e| DbError::Pool(e.to_string()))
}

/// A connection of its own holding the session advisory lock (`class`, hashtext(`key`)); None
/// when another session holds it. The lock lives as long as the connection: a killed process's
/// goes with its socket.
pub async fn try_advisory_lock(url: &str, class: i32, key: &str) -> Result<Option<AsyncPgConnection>, DbError> {
    #[derive(diesel::QueryableByName)]
    struct Locked {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        locked: bool,
    }
    let mut conn = establish(url).await?;
    let locked: Locked = diesel::sql_query("SELECT pg_try_advisory_lock($1, hashtext($2)) AS locked")
        .bind::<diesel::sql_types::Int4, _>(class)
        .bind::<diesel::sql_types::Text, _>(key)
        .get_result(&mut conn)
        .await?;
    Ok(locked.locked.then_some(conn))
}

/// SQL that is true while a session holds the advisory lock (`$class`, hashtext(`key`)), where
/// `class` and `key` are SQL expressions (see `try_advisory_lock`). Advisory locks belong to a
/// database, and pg_locks shows every database's: only this one's count.
pub fn advisory_lock_held(class: &str, key: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_locks WHERE {THIS_DATABASE} AND locktype = 'advisory' AND granted \
         AND objsubid = 2 AND classid = ({class})::oid AND objid = hashtext({key})::oid)"
    )
}

/// pg_locks rows of the connection's database.
pub const THIS_DATABASE: &str = "database = (SELECT oid FROM pg_database WHERE datname = current_database())";

/// A connection of the pool; the wait for it is measured (`fabricsync_db_pool_wait_seconds`).
pub async fn connect(pool: &DbPool) -> Result<DbConn, DbError> {
    let started = std::time::Instant::now();
    // The pool checks a connection it hands out with a round trip, so one whose database
    // stopped answering is found here; the deadline covers that check and a new connection.
    let conn = tokio::time::timeout(CONNECT_DEADLINE, pool.get()).await;
    crate::metrics::global().pool_waited(started.elapsed());
    match conn {
        Ok(conn) => Ok(conn?),
        Err(_) => Err(DbError::Pool(no_answer())),
    }
}

/// Applies pending migrations; idempotent, and safe when several replicas start at once
/// (they queue on an advisory lock, the later ones find nothing pending).
pub async fn migrate(url: &str) -> Result<usize, DbError> {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || {
        use diesel::connection::SimpleConnection;
        use diesel::Connection;
        let mut conn =
            <AsyncConnectionWrapper<AsyncPgConnection> as Connection>::establish(&url).map_err(connect_error)?;
        conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))?;
        let applied =
            conn.run_pending_migrations(MIGRATIONS).map(|v| v.len()).map_err(|e| DbError::Migration(e.to_string()));
        conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))?;
        applied
    })
    .await
    .map_err(|e| DbError::Migration(e.to_string()))?
}

/// Creates database `name` through `admin_url` unless it exists (embedded default, tests).
pub async fn ensure_database(admin_url: &str, name: &str) -> Result<(), DbError> {
    use diesel::sql_types::{Bool, Text};
    #[derive(diesel::QueryableByName)]
    struct Exists {
        #[diesel(sql_type = Bool)]
        exists: bool,
    }
    let mut conn = AsyncPgConnection::establish(admin_url).await.map_err(connect_error)?;
    let found: Exists = diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
        .bind::<Text, _>(name)
        .get_result(&mut conn)
        .await?;
    if !found.exists {
        // Identifiers cannot be bound; quote the name.
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        match diesel::sql_query(format!("CREATE DATABASE {quoted}")).execute(&mut conn).await {
            Ok(_) | Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Connection errors from the driver may quote the URL; keep only the reason.
fn connect_error(e: diesel::ConnectionError) -> DbError {
    let text = e.to_string();
    let reason = if text.contains("://") { "could not connect (check DATABASE_URL)".to_string() } else { text };
    DbError::Connect(reason)
}

/// The current time at the database's precision (microseconds), so what a handler returns
/// equals what a later read returns.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::{SubsecRound, Utc};
    Utc::now().trunc_subsecs(6)
}

/// `<before> $patterns <after>`: a principal's fabric scope (SQL LIKE patterns of fabric names)
/// as a condition of a list query, in raw SQL because it reads the fabrics table from any list.
pub(crate) fn scope_condition<QS>(
    before: &'static str,
    patterns: &[String],
    after: &'static str,
) -> Box<dyn diesel::BoxableExpression<QS, diesel::pg::Pg, SqlType = diesel::sql_types::Bool>> {
    use diesel::sql_types::{Array, Bool, Text};
    Box::new(diesel::dsl::sql::<Bool>(before).bind::<Array<Text>, _>(patterns.to_vec()).sql(after))
}

/// Keyset pagination: pages ordered by name, the token is the last name of the page.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub size: i64,
    /// The cursor of the last row of the previous page (a name, or `cursor`'s form).
    pub after: Option<String>,
}

impl Page {
    /// Rows to load: one more than the page tells whether another page follows.
    pub fn limit(&self) -> i64 {
        self.size + 1
    }

    /// The page of `rows` loaded with `limit()`.
    pub fn finish<T>(&self, mut rows: Vec<T>, total: i64) -> Listed<T> {
        let has_more = rows.len() as i64 > self.size;
        rows.truncate(usize::try_from(self.size).unwrap_or(0));
        Listed { items: rows, total, has_more }
    }

    /// The keyset cursor of a page ordered by (`A`, id): where the previous page ended.
    pub fn after<A: CursorKey>(&self) -> Option<(A, Uuid)> {
        let (id, first) = self.after.as_deref()?.split_once(' ')?;
        Some((A::decode(first)?, Uuid::parse_str(id).ok()?))
    }
}

/// The first column of a keyset cursor (a name, a time), written into and read from a page token.
pub trait CursorKey: Sized {
    fn encode(&self) -> String;
    fn decode(text: &str) -> Option<Self>;
}

impl CursorKey for String {
    fn encode(&self) -> String {
        self.clone()
    }
    fn decode(text: &str) -> Option<Self> {
        Some(text.to_string())
    }
}

impl CursorKey for chrono::DateTime<chrono::Utc> {
    fn encode(&self) -> String {
        self.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }
    fn decode(text: &str) -> Option<Self> {
        Some(chrono::DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&chrono::Utc))
    }
}

/// The page cursor after a row ordered by (`first`, `id`): `<id> <first>` (ids have no spaces).
pub fn cursor<A: CursorKey>(first: &A, id: Uuid) -> String {
    format!("{id} {}", first.encode())
}

#[derive(Debug)]
pub struct Listed<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub has_more: bool,
}
