//! `server/src/db/schema.rs` is what `diesel print-schema` (with diesel.toml) says of a database
//! migrated with every migration: the diesel tables cannot drift from migrations/.
//! `scripts/print-schema.sh` regenerates the file (this test with FABRICSYNC_WRITE_SCHEMA=1).
#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use std::path::Path;
use std::process::Command;

/// The file without its comment lines, whitespace removed: rustfmt may lay it out differently.
fn tables(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect()
}

#[tokio::test]
async fn the_diesel_schema_is_what_the_migrations_make() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let diesel = root.join(".tools/diesel-cli/bin/diesel");
    assert!(diesel.exists(), "{} is missing: run scripts/setup.sh --test", diesel.display());
    let db = support::fresh_database().await;
    let out = Command::new(&diesel)
        .current_dir(&root)
        .args(["print-schema", "--config-file", "diesel.toml", "--database-url", &*db])
        .output()
        .expect("run diesel print-schema");
    assert!(out.status.success(), "diesel print-schema: {}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).expect("utf-8");
    let path = root.join("server/src/db/schema.rs");
    let committed = std::fs::read_to_string(&path).expect("read schema.rs");
    if std::env::var_os("FABRICSYNC_WRITE_SCHEMA").is_some() {
        let header: String = committed.lines().filter(|l| l.starts_with("//!")).map(|l| format!("{l}\n")).collect();
        let body: String =
            printed.lines().filter(|l| !l.starts_with("// @generated")).map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, format!("{header}\n{}", body.trim_start())).expect("write schema.rs");
        return;
    }
    assert_eq!(
        tables(&committed),
        tables(&printed),
        "server/src/db/schema.rs differs from the migrations; run scripts/print-schema.sh\n--- printed:\n{printed}"
    );
}
