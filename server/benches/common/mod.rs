//! Shared by the benchmarks: a release `fabricsync serve`, its gRPC clients, a generated
//! fabric in a Git repository, process memory.
#![allow(dead_code)] // each bench uses a different part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fabricsync::embedded_pg::EmbeddedPostgres;
use fabricsync::proto::drift_service_client::DriftServiceClient;
use fabricsync::proto::fabric_service_client::FabricServiceClient;
use fabricsync::proto::inventory_service_client::InventoryServiceClient;
use fabricsync::proto::repository_service_client::RepositoryServiceClient;
use fabricsync::proto::sync_progress_event::Payload;
use fabricsync::proto::sync_service_client::SyncServiceClient;
use fabricsync::proto::write_service_client::WriteServiceClient;
use fabricsync::proto::*;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(["-c", "user.name=bench", "-c", "user.email=bench@example.com"])
        .args(args)
        .current_dir(dir)
        .status()
        .expect("git");
    assert!(status.success(), "git {args:?}");
}

/// Peak and current resident memory of a process, in MiB.
pub fn memory(pid: u32) -> (f64, f64) {
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

/// A kube client for the harness's API server (its CA, a bearer token).
pub fn kube_client(url: &str, ca_pem: &str, token: &str) -> kube::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = kube::Config::new(url.parse().expect("url"));
    let (_, pem) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).expect("ca pem");
    config.root_cert = Some(vec![pem.contents]);
    config.auth_info.token = Some(secrecy::SecretString::from(token.to_string()));
    kube::Client::try_from(config).expect("kube client")
}

pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_server(database_url: &str, data_dir: &Path) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(data_dir.join("server.log")).expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_fabricsync"))
        // The generated fabric is a file:// repository outside the data directory.
        .args(["serve", "--listen", &addr, "--log-format", "json", "--log", "warn", "--allow-file-repositories"])
        .env("DATABASE_URL", database_url)
        .env("FABRICSYNC_ENCRYPTION_KEYS", fabricsync::crypto::Keyring::generate_key_line("bench"))
        .env("FABRICSYNC_DATA_DIR", data_dir)
        .env("FABRICSYNC_METRICS_LISTEN", "off")
        .env("FABRICSYNC_BOOTSTRAP_TOKEN", ADMIN_TOKEN)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn server");
    Server { child, addr }
}

/// The benchmark server's admin token (registered on its first start).
pub const ADMIN_TOKEN: &str = "fsk_benchadmin01_YmVuY2htYXJrLWFkbWluLXRva2VuLW9mLWZhYnJpY3N5bmM";

fn with_token(mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    let value = format!("Bearer {ADMIN_TOKEN}").parse().map_err(|_| tonic::Status::internal("token"))?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

pub type AuthChannel = InterceptedService<Channel, fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>>;

pub fn authenticated(channel: Channel) -> AuthChannel {
    InterceptedService::new(channel, with_token)
}

pub struct Clients {
    pub repos: RepositoryServiceClient<AuthChannel>,
    pub fabrics: FabricServiceClient<AuthChannel>,
    pub sync: SyncServiceClient<AuthChannel>,
    pub drift: DriftServiceClient<AuthChannel>,
    pub write: WriteServiceClient<AuthChannel>,
    pub inventory: InventoryServiceClient<AuthChannel>,
}

pub async fn connect(addr: &str) -> Clients {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(channel) = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await {
            let channel = authenticated(channel);
            let mut repos = RepositoryServiceClient::new(channel.clone());
            if repos.list_repositories(ListRepositoriesRequest::default()).await.is_ok() {
                return Clients {
                    repos,
                    fabrics: FabricServiceClient::new(channel.clone()),
                    drift: DriftServiceClient::new(channel.clone()),
                    write: WriteServiceClient::new(channel.clone()),
                    inventory: InventoryServiceClient::new(channel.clone()),
                    sync: SyncServiceClient::new(channel),
                };
            }
        }
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// A private PostgreSQL under target/bench-pg and a fresh database on it.
pub async fn database() -> (EmbeddedPostgres, String) {
    let target = PathBuf::from(env!("CARGO_BIN_EXE_fabricsync"))
        .parent()
        .and_then(Path::parent)
        .map(PathBuf::from)
        .expect("target");
    let pg = EmbeddedPostgres::start(&target.join("bench-pg")).await.expect("PostgreSQL");
    drop_earlier_databases(&pg.url("postgres")).await;
    let name = format!("bench_{}_{}", std::process::id(), uuid::Uuid::new_v4().simple());
    fabricsync::db::ensure_database(&pg.url("postgres"), &name).await.expect("database");
    let url = pg.url(&name);
    (pg, url)
}

/// Earlier runs' databases: a run keeps its own for inspection until the next one starts.
async fn drop_earlier_databases(admin_url: &str) {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        datname: String,
    }
    let mut conn = AsyncPgConnection::establish(admin_url).await.expect("connect to postgres");
    let names: Vec<Name> = diesel::sql_query("SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_%'")
        .load(&mut conn)
        .await
        .expect("list databases");
    for Name { datname } in names {
        diesel::sql_query(format!("DROP DATABASE \"{datname}\" WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .expect("drop database");
    }
}

/// `fabricsync generate`'s fabric of about `resources` objects, committed to a new repository
/// at `repo` (objects under `fabric/`); returns the generated file paths.
pub fn generated_repo(repo: &Path, resources: usize) -> Vec<String> {
    std::fs::create_dir_all(repo).expect("repo dir");
    let files = fabricsync_core::manifest::generate::fabric(resources);
    for f in &files {
        let path = repo.join(&f.path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, &f.bytes).expect("write");
    }
    git(repo, &["init", "-q", "-b", "main"]);
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "generated fabric"]);
    files.into_iter().map(|f| f.path).collect()
}

/// A repository at `url` and a fabric reading `fabric/` on main; returns the fabric id.
pub async fn create_fabric(c: &mut Clients, name: &str, url: &str, cluster: Option<ClusterConnectionInput>) -> String {
    create_fabric_with(c, name, url, None, cluster).await
}

/// As `create_fabric`, with the repository's credentials.
pub async fn create_fabric_with(
    c: &mut Clients,
    name: &str,
    url: &str,
    auth: Option<RepositoryAuth>,
    cluster: Option<ClusterConnectionInput>,
) -> String {
    create_fabric_on(c, name, url, auth, Fabric { name: name.into(), ..Default::default() }, cluster).await
}

/// A repository named `repository` at `url` and `fabric` on it (reading `fabric/` on main);
/// returns the fabric id.
pub async fn create_fabric_on(
    c: &mut Clients,
    repository: &str,
    url: &str,
    auth: Option<RepositoryAuth>,
    fabric: Fabric,
    cluster: Option<ClusterConnectionInput>,
) -> String {
    let repository = c
        .repos
        .create_repository(CreateRepositoryRequest {
            repository: Some(Repository { name: repository.into(), url: url.into(), ..Default::default() }),
            auth,
            ..Default::default()
        })
        .await
        .expect("repository")
        .into_inner()
        .repository
        .expect("repository");
    let fabric =
        Fabric { repository_id: repository.id, git_ref: "main".into(), gitops_path: "fabric".into(), ..fabric };
    c.fabrics
        .create_fabric(CreateFabricRequest { fabric: Some(fabric), cluster })
        .await
        .expect("fabric")
        .into_inner()
        .fabric
        .expect("fabric")
        .id
}

/// One measured run: wall time from StartSync to the end of its progress stream, and stage
/// durations from the run's event times.
pub struct Run {
    pub total: Duration,
    pub stages: Vec<(&'static str, Duration)>,
    pub counters: SyncCounters,
}

pub async fn run(c: &mut Clients, fabric_id: &str, mode: SyncMode) -> Run {
    let started = Instant::now();
    let request = StartSyncRequest { fabric_id: fabric_id.into(), mode: mode as i32, ..Default::default() };
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
            Some(Payload::Applying(_)) => "apply",
            Some(Payload::Finished(f)) => {
                counters = f.counters;
                "end"
            }
            Some(Payload::Failed(f)) => panic!("run failed: {} {:?}", f.message, f.diagnostics.first()),
            _ => continue,
        };
        if marks.last().map(|(s, _)| *s) != Some(stage) {
            marks.push((stage, event.time.expect("time")));
        }
    }
    let total = started.elapsed();
    let run = c.sync.get_sync_run(GetSyncRunRequest { id: run.id }).await.expect("run").into_inner().run.expect("run");
    let secs = |t: &prost_types::Timestamp| t.seconds as f64 + f64::from(t.nanos) / 1e9;
    let between =
        |a: &prost_types::Timestamp, b: &prost_types::Timestamp| Duration::from_secs_f64((secs(b) - secs(a)).max(0.0));
    let (created, claimed, finished) =
        (run.create_time.expect("created"), run.start_time.expect("started"), run.finish_time.expect("finished"));
    let mut stages = vec![("queued until claimed", between(&created, &claimed))];
    if let Some((_, first)) = marks.first() {
        stages.push(("claim to first step", between(&claimed, first)));
    }
    stages.extend(marks.windows(2).map(|w| (w[0].0, between(&w[0].1, &w[1].1))));
    stages.push(("outside the run (RPCs, stream)", total.saturating_sub(between(&created, &finished))));
    Run { total, stages, counters: counters.expect("finished") }
}
