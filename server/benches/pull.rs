//! Pull benchmark: a generated fabric in a local Git repository, a release `fabricsync serve`
//! on a private PostgreSQL, and the Python plugin's way of doing the same in the same run.
//! Run with `scripts/bench.sh` (it prepares the Python side); prints a Markdown report.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fabricsync::embedded_pg::EmbeddedPostgres;
use fabricsync::proto::fabric_service_client::FabricServiceClient;
use fabricsync::proto::repository_service_client::RepositoryServiceClient;
use fabricsync::proto::sync_progress_event::Payload;
use fabricsync::proto::sync_service_client::SyncServiceClient;
use fabricsync::proto::*;
use tonic::transport::Channel;

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

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(["-c", "user.name=bench", "-c", "user.email=bench@example.com"])
        .args(args)
        .current_dir(dir)
        .status()
        .expect("git");
    assert!(status.success(), "git {args:?}");
}

/// Peak and current resident memory of a process, in MiB.
fn memory(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(database_url: &str, data_dir: &Path) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(data_dir.join("server.log")).expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_fabricsync"))
        .args(["serve", "--listen", &addr, "--log-format", "json", "--log", "warn"])
        .env("DATABASE_URL", database_url)
        .env("FABRICSYNC_ENCRYPTION_KEYS", fabricsync::crypto::Keyring::generate_key_line("bench"))
        .env("FABRICSYNC_DATA_DIR", data_dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn server");
    Server { child, addr }
}

struct Clients {
    repos: RepositoryServiceClient<Channel>,
    fabrics: FabricServiceClient<Channel>,
    sync: SyncServiceClient<Channel>,
}

async fn connect(addr: &str) -> Clients {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(channel) = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await {
            let mut repos = RepositoryServiceClient::new(channel.clone());
            if repos.list_repositories(ListRepositoriesRequest::default()).await.is_ok() {
                return Clients { repos, fabrics: FabricServiceClient::new(channel.clone()), sync: SyncServiceClient::new(channel) };
            }
        }
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One measured pull: wall time from StartSync to the finished event, and stage durations.
struct Pull {
    total: Duration,
    stages: Vec<(&'static str, Duration)>,
    counters: SyncCounters,
}

async fn pull(c: &mut Clients, fabric_id: &str) -> Pull {
    let started = Instant::now();
    let request = StartSyncRequest { fabric_id: fabric_id.into(), mode: SyncMode::Pull as i32, ..Default::default() };
    let run = c.sync.start_sync(request).await.expect("start").into_inner().run.expect("run");
    let mut stream = c
        .sync
        .stream_sync_progress(StreamSyncProgressRequest { run_id: run.id.clone(), from_sequence: 0 })
        .await
        .expect("stream")
        .into_inner();
    let mut marks: Vec<(&'static str, prost_types::Timestamp)> = Vec::new();
    let mut counters = None;
    while let Some(message) = stream.message().await.expect("stream") {
        let event = message.event.expect("event");
        let stage = match &event.payload {
            Some(Payload::Fetching(_)) => "git",
            Some(Payload::Parsing(_)) => "parse",
            Some(Payload::Validating(_)) => "validate + plan",
            Some(Payload::Persisting(_)) => "persist",
            Some(Payload::Finished(f)) => {
                counters = f.counters;
                "end"
            }
            Some(Payload::Failed(f)) => panic!("pull failed: {} {:?}", f.message, f.diagnostics.first()),
            _ => continue,
        };
        if marks.last().map(|(s, _)| *s) != Some(stage) {
            marks.push((stage, event.time.expect("time")));
        }
    }
    let total = started.elapsed();
    let run = c.sync.get_sync_run(GetSyncRunRequest { id: run.id }).await.expect("run").into_inner().run.expect("run");
    let secs = |t: &prost_types::Timestamp| t.seconds as f64 + f64::from(t.nanos) / 1e9;
    let between = |a: &prost_types::Timestamp, b: &prost_types::Timestamp| Duration::from_secs_f64((secs(b) - secs(a)).max(0.0));
    let (created, claimed, finished) = (run.create_time.expect("created"), run.start_time.expect("started"), run.finish_time.expect("finished"));
    let mut stages = vec![("queued until claimed", between(&created, &claimed))];
    if let Some((_, first)) = marks.first() {
        stages.push(("claim to first step", between(&claimed, first)));
    }
    stages.extend(marks.windows(2).map(|w| (w[0].0, between(&w[0].1, &w[1].1))));
    stages.push(("outside the run (RPCs, stream)", total.saturating_sub(between(&created, &finished))));
    Pull { total, stages, counters: counters.expect("finished") }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn median(mut runs: Vec<Pull>) -> Pull {
    runs.sort_by_key(|p| p.total);
    runs.swap_remove(runs.len() / 2)
}

fn stage_line(p: &Pull) -> String {
    p.stages.iter().map(|(s, d)| format!("{s} {}", ms(*d))).collect::<Vec<_>>().join(", ")
}

#[tokio::main]
async fn main() {
    let args = args();
    let target = PathBuf::from(env!("CARGO_BIN_EXE_fabricsync")).parent().and_then(Path::parent).map(PathBuf::from).expect("target");
    let work = tempfile::tempdir().expect("tempdir");
    let pg = EmbeddedPostgres::start(&target.join("bench-pg")).await.expect("PostgreSQL");
    let db_name = format!("bench_{}", std::process::id());
    fabricsync::db::ensure_database(&pg.url("postgres"), &db_name).await.expect("database");
    let database_url = pg.url(&db_name);

    // The fabric as a Git repository of many files.
    let repo = work.path().join("repo");
    std::fs::create_dir_all(&repo).expect("repo dir");
    let files = fabricsync::manifest::generate::fabric(args.resources);
    for f in &files {
        let path = repo.join(&f.path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, &f.bytes).expect("write");
    }
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "generated fabric"]);
    let change_file = files.iter().map(|f| f.path.clone()).find(|p| p.ends_with("servers.yaml")).expect("a servers file");

    let data_dir = work.path().join("server");
    std::fs::create_dir_all(&data_dir).expect("data dir");
    let server = start_server(&database_url, &data_dir);
    let mut c = connect(&server.addr).await;
    let (_, idle_rss) = memory(server.child.id());
    let repository = c
        .repos
        .create_repository(CreateRepositoryRequest {
            repository: Some(Repository { name: "bench".into(), url: format!("file://{}", repo.display()), ..Default::default() }),
            auth: None,
        })
        .await
        .expect("repository")
        .into_inner()
        .repository
        .expect("repository");
    let fabric = Fabric {
        name: "bench".into(),
        repository_id: repository.id,
        git_ref: "main".into(),
        gitops_path: "fabric".into(),
        ..Default::default()
    };
    let fabric_id = c
        .fabrics
        .create_fabric(CreateFabricRequest { fabric: Some(fabric), cluster: None })
        .await
        .expect("fabric")
        .into_inner()
        .fabric
        .expect("fabric")
        .id;

    let first = pull(&mut c, &fabric_id).await;
    let (peak_rss, _) = memory(server.child.id());
    let mut noops = Vec::new();
    for _ in 0..args.repeat {
        noops.push(pull(&mut c, &fabric_id).await);
    }
    let mut changes = Vec::new();
    for i in 0..args.repeat {
        let path = repo.join(&change_file);
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::write(&path, text.replacen("  description: server", &format!("  description: edit {i} server"), 1)).expect("write");
        git(&repo, &["commit", "-q", "-am", &format!("edit {i}")]);
        changes.push(pull(&mut c, &fabric_id).await);
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
    println!("| server peak RSS during the first pull (VmHWM) | {peak_rss:.0} MiB (idle {idle_rss:.0} MiB) | <= 200 MB |");
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
        .args(["--repo", &repo.display().to_string(), "--database-url", &pg.url(&baseline_db), "--change-file", &change_file])
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
    for (label, run, ours) in [("full first pull", "first", &first), ("no-op re-pull", "noop", &noop), ("one changed file", "one_change", &change)] {
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
