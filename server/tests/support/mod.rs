//! Test harness: a real PostgreSQL (a private cluster in target/test-pg, a fresh database per
//! test) and real `fabricsync serve` processes on loopback.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod gitservers;
pub mod kube;
pub mod server;
pub mod sync;

use std::path::PathBuf;

use fabricsync::embedded_pg::EmbeddedPostgres;
use tokio::sync::OnceCell;

static CLUSTER: OnceCell<String> = OnceCell::const_new();

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

/// A new empty database for one test; returns its URL.
pub async fn fresh_database() -> String {
    let admin = admin_url().await;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    fabricsync::db::ensure_database(&admin, &name).await.expect("create test database");
    let (base, _) = admin.rsplit_once('/').expect("admin url has a database");
    format!("{base}/{name}")
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
