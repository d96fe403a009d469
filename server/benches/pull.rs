//! Pull benchmark: a generated fabric in a local Git repository, a release `fabricsync serve`
//! on a private PostgreSQL, and the Python plugin's way of doing the same in the same run.
//! Run with `scripts/bench.sh` (it prepares the Python side); prints a Markdown report.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{connect, create_fabric, git, memory, ms, run, start_server, Run};
use fabricsync::proto::*;

struct Args {
    resources: usize,
    repeat: usize,
    python: Option<String>,
}

fn args() -> Args {
    let mut args = Args { resources: 10_000, repeat: 5, python: None };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--resources" => args.resources = it.next().and_then(|v| v.parse().ok()).unwrap_or(args.resources),
            "--repeat" => args.repeat = it.next().and_then(|v| v.parse().ok()).unwrap_or(args.repeat),
            "--python" => args.python = it.next(),
            _ => {} // cargo bench passes --bench
        }
    }
    args
}

fn median(mut runs: Vec<Run>) -> Run {
    runs.sort_by_key(|p| p.total);
    runs.swap_remove(runs.len() / 2)
}

fn stage_line(p: &Run) -> String {
    p.stages.iter().map(|(s, d)| format!("{s} {}", ms(*d))).collect::<Vec<_>>().join(", ")
}

#[tokio::main]
async fn main() {
    let args = args();
    let work = tempfile::tempdir().expect("tempdir");
    let (pg, database_url) = common::database().await;
    let db_name = database_url.rsplit('/').next().expect("database name").to_string();

    // The fabric as a Git repository of many files.
    let repo = work.path().join("repo");
    let files = common::generated_repo(&repo, args.resources);
    let change_file = files.iter().find(|p| p.ends_with("servers.yaml")).cloned().expect("a servers file");

    let data_dir = work.path().join("server");
    std::fs::create_dir_all(&data_dir).expect("data dir");
    let server = start_server(&database_url, &data_dir);
    let mut c = connect(&server.addr).await;
    let (_, idle_rss) = memory(server.child.id());
    let fabric_id = create_fabric(&mut c, "bench", &format!("file://{}", repo.display()), None).await;

    let first = run(&mut c, &fabric_id, SyncMode::Pull).await;
    let (peak_rss, _) = memory(server.child.id());
    let mut noops = Vec::new();
    for _ in 0..args.repeat {
        noops.push(run(&mut c, &fabric_id, SyncMode::Pull).await);
    }
    let mut changes = Vec::new();
    for i in 0..args.repeat {
        let path = repo.join(&change_file);
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::write(&path, text.replacen("  description: server", &format!("  description: edit {i} server"), 1))
            .expect("write");
        git(&repo, &["commit", "-q", "-am", &format!("edit {i}")]);
        changes.push(run(&mut c, &fabric_id, SyncMode::Pull).await);
    }
    let noop = median(noops);
    let change = median(changes);
    drop(server);

    let n = &first.counters;
    println!("## Pull benchmark ({} objects in {} files)\n", n.created, n.files);
    println!("| measurement | fabricsync | goal |");
    println!("|---|---|---|");
    println!("| full first pull (clone + parse + validate + persist) | {} | <= 2000 ms |", ms(first.total));
    println!("| no-op re-pull, same commit (median of {}) | {} | <= 100 ms |", args.repeat, ms(noop.total));
    println!("| re-pull after one changed file (median of {}) | {} | <= 300 ms |", args.repeat, ms(change.total));
    println!(
        "| server peak RSS during the first pull (VmHWM) | {peak_rss:.0} MiB (idle {idle_rss:.0} MiB) | <= 200 MB |"
    );
    println!("\nWhere the time goes (from the run's event times):\n");
    println!("- first pull: {}", stage_line(&first));
    println!("- no-op re-pull: {}", stage_line(&noop));
    println!("- one changed file: {} (updated {})", stage_line(&change), change.counters.updated);

    let Some(python) = &args.python else {
        println!("\n(no --python given: the Python baseline was not run)");
        return;
    };
    let baseline_db = format!("{db_name}_py");
    fabricsync::db::ensure_database(&pg.url("postgres"), &baseline_db).await.expect("baseline database");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/python_baseline.py");
    let output = Command::new(python)
        .arg(script)
        .args([
            "--repo",
            &repo.display().to_string(),
            "--database-url",
            &pg.url(&baseline_db),
            "--change-file",
            &change_file,
        ])
        .args(["--repeat", &args.repeat.to_string()])
        .output()
        .expect("run the Python baseline");
    assert!(output.status.success(), "baseline failed: {}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("baseline JSON");
    let py = |run: &str, field: &str| report[run][field].as_f64().unwrap_or(f64::NAN);
    let ratio = |ours: Duration, theirs: f64| theirs / ours.as_secs_f64();
    println!("\n## The same in Python (PyYAML safe_load_all + per-object psycopg upsert), same run\n");
    println!("| measurement | Python plugin way | fabricsync | fabricsync faster by |");
    println!("|---|---|---|---|");
    for (label, run, ours) in [
        ("full first pull", "first", &first),
        ("no-op re-pull", "noop", &noop),
        ("one changed file", "one_change", &change),
    ] {
        println!(
            "| {label} | {:.0} ms (git {:.0}, parse {:.0}, db {:.0}) | {} | {:.1}x |",
            py(run, "total") * 1000.0,
            py(run, "git") * 1000.0,
            py(run, "parse") * 1000.0,
            py(run, "db") * 1000.0,
            ms(ours.total),
            ratio(ours.total, py(run, "total"))
        );
    }
    println!("\nBaseline objects: {}", report["objects"]);
}
