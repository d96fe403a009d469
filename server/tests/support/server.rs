//! A real `fabricsync serve` process for tests, with its log captured to a file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fabricsync::crypto::Keyring;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// The admin token of every test server (registered on first start of a database through
/// FABRICSYNC_BOOTSTRAP_TOKEN, so servers sharing a database share it).
pub const ADMIN_TOKEN: &str = "fsk_testadmin001_c2VjcmV0LW9mLXRoZS10ZXN0LWFkbWluLXRva2VuLTAwMQ";

/// Sends `authorization: Bearer <token>` (and an actor, when set) with every call.
#[derive(Clone)]
pub struct Bearer {
    header: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    actor: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl Bearer {
    pub fn new(token: &str) -> Bearer {
        Bearer { header: Some(format!("Bearer {token}").parse().expect("ascii token")), actor: None }
    }

    /// Sends no credentials.
    pub fn none() -> Bearer {
        Bearer { header: None, actor: None }
    }

    pub fn acting_for(mut self, actor: &str) -> Bearer {
        self.actor = Some(actor.parse().expect("ascii actor"));
        self
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(header) = &self.header {
            request.metadata_mut().insert("authorization", header.clone());
        }
        if let Some(actor) = &self.actor {
            request.metadata_mut().insert("x-fabricsync-actor", actor.clone());
        }
        Ok(request)
    }
}

/// A channel that authenticates as the test admin (or another token).
pub type AuthChannel = InterceptedService<Channel, Bearer>;

pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    pub log_path: PathBuf,
    pub database_url: String,
    /// Its encryption keys (FABRICSYNC_ENCRYPTION_KEYS): the command line needs the same.
    pub keys: String,
    /// How the harness's clients connect when the server runs TLS.
    pub tls: Option<ClientTlsConfig>,
    dir: tempfile::TempDir,
    /// Keeps a test database alive while the server runs on it (tests may pass a temporary).
    _database: Option<std::sync::Arc<super::Dropper>>,
}

impl ServerProcess {
    /// Starts a server on a free loopback port against `database_url` and waits until it serves.
    pub async fn start(database_url: &str) -> ServerProcess {
        Self::start_with(database_url, &Keyring::generate_key_line("test-key"), &[]).await
    }

    /// With file:// repositories allowed (the tests' repositories are local); see `start_plain`.
    pub async fn start_with(database_url: &str, keys: &str, extra_args: &[&str]) -> ServerProcess {
        Self::spawn(database_url, keys, free_loopback(), &with_file_repositories(extra_args), None, Some(ADMIN_TOKEN))
            .await
    }

    /// With only `extra_args`: the outbound policy's defaults (no file:// repositories).
    pub async fn start_plain(database_url: &str, keys: &str, extra_args: &[&str]) -> ServerProcess {
        Self::spawn(database_url, keys, free_loopback(), extra_args, None, Some(ADMIN_TOKEN)).await
    }

    /// Starts a server listening on `listen` (connected to on 127.0.0.1 when it is 0.0.0.0),
    /// with TLS for the harness's clients when `tls` is given (pass --tls-cert etc. in `extra_args`).
    pub async fn start_on(
        database_url: &str,
        keys: &str,
        listen: SocketAddr,
        extra_args: &[&str],
        tls: Option<ClientTlsConfig>,
    ) -> ServerProcess {
        Self::spawn(database_url, keys, listen, &with_file_repositories(extra_args), tls, Some(ADMIN_TOKEN)).await
    }

    /// As a user's first start: no bootstrap token given, so the server writes its admin
    /// token to `<data dir>/admin-token`.
    pub async fn start_first_run(database_url: &str, keys: &str) -> ServerProcess {
        Self::spawn(database_url, keys, free_loopback(), &with_file_repositories(&[]), None, None).await
    }

    async fn spawn(
        database_url: &str,
        keys: &str,
        listen: SocketAddr,
        extra_args: &[&str],
        tls: Option<ClientTlsConfig>,
        bootstrap_token: Option<&str>,
    ) -> ServerProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let log_path = dir.path().join("server.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let addr =
            if listen.ip().is_unspecified() { SocketAddr::from(([127, 0, 0, 1], listen.port())) } else { listen };
        let mut command = Command::new(env!("CARGO_BIN_EXE_fabricsync"));
        command
            .args(["serve", "--listen", &listen.to_string(), "--log-format", "json", "--log", "debug"])
            .args(extra_args)
            .env("DATABASE_URL", database_url)
            .env("FABRICSYNC_ENCRYPTION_KEYS", keys)
            .env("FABRICSYNC_DATA_DIR", dir.path())
            // Parallel servers would share the default port; a test that scrapes passes
            // --metrics-listen (the flag wins over the variable).
            .env("FABRICSYNC_METRICS_LISTEN", "off")
            // A test that exports traces (--otlp-endpoint) sees them within a fraction of a second.
            .env("OTEL_BSP_SCHEDULE_DELAY", "100");
        if let Some(token) = bootstrap_token {
            command.env("FABRICSYNC_BOOTSTRAP_TOKEN", token);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn fabricsync");
        let server = ServerProcess {
            child,
            addr,
            log_path,
            database_url: database_url.to_string(),
            keys: keys.to_string(),
            tls,
            dir,
            _database: super::hold_database(database_url),
        };
        server.wait_serving().await;
        server
    }

    async fn wait_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(channel) = self.endpoint().connect().await {
                let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
                let req = tonic_health::pb::HealthCheckRequest { service: String::new() };
                if health.check(req).await.is_ok() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "server did not start; log:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls.is_some() { "https" } else { "http" }, self.addr)
    }

    pub fn endpoint(&self) -> Endpoint {
        let endpoint = Channel::from_shared(self.url()).unwrap();
        match &self.tls {
            Some(tls) => endpoint.tls_config(tls.clone()).expect("client TLS config"),
            None => endpoint,
        }
    }

    /// A channel authenticated as the test admin.
    pub async fn channel(&self) -> AuthChannel {
        self.channel_as(Bearer::new(ADMIN_TOKEN)).await
    }

    pub async fn channel_as(&self, bearer: Bearer) -> AuthChannel {
        InterceptedService::new(self.plain_channel().await, bearer)
    }

    /// A channel without credentials.
    pub async fn plain_channel(&self) -> Channel {
        self.endpoint().connect().await.expect("connect")
    }

    /// Runs `fabricsync <args>` against this server's database and keys: (success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_fabricsync"))
            .args(args)
            .env("DATABASE_URL", &self.database_url)
            .env("FABRICSYNC_ENCRYPTION_KEYS", &self.keys)
            .output()
            .expect("run fabricsync");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    /// The server's --data-dir (its git mirrors are in `git/`).
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process dies mid-work, as in a crash.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (without blocking the runtime, so open client connections can
    /// still answer the server's GOAWAY) for the process to exit; returns its exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for server") {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The tests' repositories are local: file:// URLs allowed.
fn with_file_repositories<'a>(extra_args: &[&'a str]) -> Vec<&'a str> {
    [&["--allow-file-repositories"][..], extra_args].concat()
}

fn free_loopback() -> SocketAddr {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
