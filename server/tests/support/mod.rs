//! Test harness: a real PostgreSQL (a private cluster in target/test-pg, a database per test
//! copied from a migrated template and dropped afterwards) and real `fabricsync serve`
//! processes on loopback.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod gitservers;
pub mod kube;
pub mod proxy;
pub mod server;
pub mod sync;
pub mod webhooks;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use anyhow::Context;
use diesel::sql_types::{BigInt, Bool, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use fabricsync::embedded_pg::EmbeddedPostgres;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

static CLUSTER: OnceCell<String> = OnceCell::const_new();
static TEMPLATE: OnceCell<String> = OnceCell::const_new();

/// Serializes building the template across test binaries sharing the cluster (an advisory
/// lock in the admin database, which every binary connects to).
const TEMPLATE_LOCK_KEY: i64 = 0x6661_6272_6963_7402;

/// Admin URL of the test cluster: FABRICSYNC_TEST_DATABASE_URL, else the private cluster
/// in target/test-pg (started once, left running for the next test binary; scripts/test.sh stops it).
async fn admin_url() -> String {
    CLUSTER
        .get_or_init(|| async {
            if let Ok(url) = std::env::var("FABRICSYNC_TEST_DATABASE_URL") {
                return url;
            }
            let dir = target_dir().join("test-pg");
            let pg = EmbeddedPostgres::start(&dir).await.expect("start the test PostgreSQL");
            pg.url("postgres")
        })
        .await
        .clone()
}

/// A new database for one test, with every migration applied (a copy of the template);
/// dropped when the returned handle and every server started on it are dropped.
pub async fn fresh_database() -> TestDatabase {
    let template = TEMPLATE
        .get_or_init(|| async { ensure_template(&admin_url().await).await.expect("build the template database") })
        .await;
    create_database(Some(template)).await
}

/// A new database without any migration (for the tests of migrating itself).
pub async fn empty_database() -> TestDatabase {
    create_database(None).await
}

async fn create_database(template: Option<&str>) -> TestDatabase {
    let admin = admin_url().await;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let from = template.map(|t| format!(" TEMPLATE {}", quote(t))).unwrap_or_default();
    let mut conn = AsyncPgConnection::establish(&admin).await.expect("connect to the test cluster");
    diesel::sql_query(format!("CREATE DATABASE {}{from}", quote(&name)))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let url = database_url(&admin, &name);
    let dropper = Arc::new(Dropper { admin, name, url: url.clone() });
    live_databases().insert(url.clone(), Arc::downgrade(&dropper));
    TestDatabase { url, _dropper: dropper }
}

/// The template `fabricsync_template_<hash of migrations/>`: a changed migration set gets a
/// new template rather than a stale one. Built once per cluster, under an advisory lock so that
/// test binaries starting together wait for one build instead of racing.
async fn ensure_template(admin: &str) -> anyhow::Result<String> {
    let name = format!("fabricsync_template_{}", migrations_hash()?);
    let mut conn = AsyncPgConnection::establish(admin).await.context("connect to the test cluster")?;
    // A session lock: it ends with `conn` on every path, including errors.
    diesel::sql_query("SELECT pg_advisory_lock($1)").bind::<BigInt, _>(TEMPLATE_LOCK_KEY).execute(&mut conn).await?;
    if database_exists(&mut conn, &name).await? {
        return Ok(name);
    }
    // Built under another name and renamed when complete, so a build that failed or was killed
    // half-way never passes for the template.
    let building = format!("{name}_building");
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote(&building))).execute(&mut conn).await?;
    diesel::sql_query(format!("CREATE DATABASE {}", quote(&building))).execute(&mut conn).await?;
    fabricsync::db::migrate(&database_url(admin, &building)).await.context("migrate the template database")?;
    diesel::sql_query(format!("ALTER DATABASE {} RENAME TO {}", quote(&building), quote(&name)))
        .execute(&mut conn)
        .await?;
    Ok(name)
}

async fn database_exists(conn: &mut AsyncPgConnection, name: &str) -> anyhow::Result<bool> {
    #[derive(diesel::QueryableByName)]
    struct Exists {
        #[diesel(sql_type = Bool)]
        exists: bool,
    }
    let found: Exists = diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
        .bind::<Text, _>(name)
        .get_result(conn)
        .await?;
    Ok(found.exists)
}

/// First 16 hex digits of SHA-256 over every file of migrations/ (relative path and contents,
/// in path order): what the server binary embeds.
fn migrations_hash() -> anyhow::Result<String> {
    fn files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                files(&path, out)?;
            } else {
                out.push(path);
            }
        }
        Ok(())
    }
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"));
    let mut paths = Vec::new();
    files(root, &mut paths).context("read migrations/")?;
    paths.sort();
    let mut hash = Sha256::new();
    for path in paths {
        hash.update(path.strip_prefix(root)?.to_string_lossy().as_bytes());
        hash.update([0]);
        hash.update(std::fs::read(&path).with_context(|| format!("read {}", path.display()))?);
        hash.update([0]);
    }
    Ok(hex::encode(&hash.finalize()[..8]))
}

fn database_url(admin: &str, name: &str) -> String {
    let (base, _) = admin.rsplit_once('/').expect("admin url has a database");
    format!("{base}/{name}")
}

/// Identifiers cannot be bound; quote them.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A test's database: its URL (`&db` is a `&str`), and its share of keeping the database alive.
pub struct TestDatabase {
    url: String,
    _dropper: Arc<Dropper>,
}

impl std::ops::Deref for TestDatabase {
    type Target = str;
    fn deref(&self) -> &str {
        &self.url
    }
}

impl AsRef<str> for TestDatabase {
    fn as_ref(&self) -> &str {
        &self.url
    }
}

impl AsRef<OsStr> for TestDatabase {
    fn as_ref(&self) -> &OsStr {
        self.url.as_ref()
    }
}

/// The databases alive by URL. Tests hand servers only the URL, often of a temporary
/// (`ServerProcess::start(&fresh_database().await)`), so a server takes its own share here.
fn live_databases() -> std::sync::MutexGuard<'static, BTreeMap<String, Weak<Dropper>>> {
    static LIVE: Mutex<BTreeMap<String, Weak<Dropper>>> = Mutex::new(BTreeMap::new());
    // A test that panicked while holding the lock left the map intact: keep using it.
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Another share of the database at `url`, if it is a live test database (for a server on it).
pub(crate) fn hold_database(url: &str) -> Option<Arc<Dropper>> {
    live_databases().get(url).and_then(Weak::upgrade)
}

/// Drops its database when the last share goes: after the test and every server on it.
pub(crate) struct Dropper {
    admin: String,
    name: String,
    url: String,
}

impl Drop for Dropper {
    fn drop(&mut self) {
        live_databases().remove(&self.url);
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop may run on the test's runtime thread, which cannot block on async work: drop the
        // database from a thread with a runtime of its own, and wait for it. FORCE ends sessions
        // a killed server or a test's own connection left behind.
        let dropped = std::thread::spawn(move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let mut conn = AsyncPgConnection::establish(&admin).await?;
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote(&name)))
                    .execute(&mut conn)
                    .await?;
                Ok(())
            })
        })
        .join();
        // Never panic here (it may run while a failed test unwinds): a leftover database is harmless.
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!("warning: dropping test database {} panicked", self.name),
        }
    }
}

/// The whole database as SQL text (to search it for secrets).
pub fn pg_dump(database_url: &str) -> String {
    let bindir = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .find(|p| p.join("pg_dump").exists())
        .expect("pg_dump");
    let out = std::process::Command::new(bindir.join("pg_dump"))
        .arg("--dbname")
        .arg(database_url)
        .output()
        .expect("run pg_dump");
    assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 dump")
}

pub fn target_dir() -> PathBuf {
    // CARGO_BIN_EXE_* points into target/<profile>/; its grandparent is the target dir.
    PathBuf::from(env!("CARGO_BIN_EXE_fabricsync"))
        .parent()
        .and_then(|p| p.parent())
        .map(PathBuf::from)
        .expect("target dir")
}
