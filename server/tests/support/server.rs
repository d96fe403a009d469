//! A real `fabricsync serve` process for tests, with its log captured to a file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fabricsync::crypto::Keyring;
use tonic::transport::Channel;

pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    pub log_path: PathBuf,
    pub database_url: String,
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts a server on a free loopback port against `database_url` and waits until it serves.
    pub async fn start(database_url: &str) -> ServerProcess {
        Self::start_with(database_url, &Keyring::generate_key_line("test-key"), &[]).await
    }

    /// With file:// repositories allowed (the tests' repositories are local); see `start_plain`.
    pub async fn start_with(database_url: &str, keys: &str, extra_args: &[&str]) -> ServerProcess {
        Self::start_plain(database_url, keys, &[&["--allow-file-repositories"], extra_args].concat()).await
    }

    /// With only `extra_args`: the outbound policy's defaults (no file:// repositories).
    pub async fn start_plain(database_url: &str, keys: &str, extra_args: &[&str]) -> ServerProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let log_path = dir.path().join("server.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_fabricsync"))
            .args(["serve", "--listen", &addr.to_string(), "--log-format", "json", "--log", "debug"])
            .args(extra_args)
            .env("DATABASE_URL", database_url)
            .env("FABRICSYNC_ENCRYPTION_KEYS", keys)
            .env("FABRICSYNC_DATA_DIR", dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn fabricsync");
        let server = ServerProcess { child, addr, log_path, database_url: database_url.to_string(), _dir: dir };
        server.wait_serving().await;
        server
    }

    async fn wait_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(channel) = Channel::from_shared(self.url()).unwrap().connect().await {
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
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url()).unwrap().connect().await.expect("connect")
    }

    /// The server's --data-dir (its git mirrors are in `git/`).
    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
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

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
