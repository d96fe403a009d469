//! The embedded default database: a private PostgreSQL cluster in a local data directory,
//! created with `initdb` and run with `pg_ctl` from the installed PostgreSQL.
//!
//! Layout under `<dir>`: `data/` (PGDATA), `password` (generated, 0600), `port`, `postgres.log`.
//! The cluster listens on 127.0.0.1 only and requires the generated password. PostgreSQL
//! refuses to run as root, so when we are root it runs as the `postgres` system user.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

const SUPERUSER: &str = "fabricsync";

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedPgError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's `postgresql` package \
         or set FABRICSYNC_PG_BINDIR, or give DATABASE_URL"
    )]
    NotInstalled,
    #[error("running as root, but the `postgres` system user to run PostgreSQL as does not exist")]
    NoPostgresUser,
    #[error("{what}: {reason}")]
    Io { what: String, reason: String },
    #[error(
        "PostgreSQL runs as the `{user}` user, who cannot reach {dir}: {blocked} is not searchable by it; \
         run `chmod o+x {blocked}`, or choose a --data-dir it can reach, or give DATABASE_URL"
    )]
    Unreachable { user: String, dir: String, blocked: String },
    #[error("{command} failed ({status}); see {log}")]
    Command { command: String, status: String, log: String },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EmbeddedPgError {
    let what = what.into();
    move |e| EmbeddedPgError::Io { what, reason: e.to_string() }
}

/// How `EmbeddedPostgres::restart` stops the cluster (pg_ctl's modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    Fast,
    Immediate,
}

/// A running private cluster. `stop` stops it only if this process started it.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    dir: PathBuf,
    bindir: PathBuf,
    run_as: Option<String>,
    port: u16,
    password: String,
    started_here: bool,
}

impl EmbeddedPostgres {
    /// Initializes the cluster in `dir` if needed and starts it unless it already runs.
    pub async fn start(dir: &Path) -> Result<EmbeddedPostgres, EmbeddedPgError> {
        let bindir = find_bindir().ok_or(EmbeddedPgError::NotInstalled)?;
        let run_as = if is_root() { Some(postgres_user()?) } else { None };
        std::fs::create_dir_all(dir).map_err(io_error(format!("creating {}", dir.display())))?;
        let dir = dir.canonicalize().map_err(io_error(format!("resolving {}", dir.display())))?;
        if let Some(user) = &run_as {
            reachable_by(user, &dir)?;
        }
        let mut pg = EmbeddedPostgres { dir, bindir, run_as, port: 0, password: String::new(), started_here: false };
        if !pg.data_dir().join("PG_VERSION").exists() {
            pg.init().await?;
        }
        pg.password = read_trimmed(&pg.dir.join("password"))?;
        pg.port = read_trimmed(&pg.dir.join("port"))?.parse().map_err(|_| EmbeddedPgError::Io {
            what: "reading port file".into(),
            reason: "not a port number".into(),
        })?;
        if !pg.is_running().await {
            pg.run_start().await?;
            pg.started_here = true;
        }
        Ok(pg)
    }

    /// The URL of database `db` in this cluster. It holds the password: never log it.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}:{}@127.0.0.1:{}/{db}", self.password, self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Restarts the running cluster with the options it was started with; `Immediate` stops it
    /// as a crash would (crash recovery at start), `Fast` ends every session cleanly.
    pub async fn restart(&self, mode: StopMode) -> Result<(), EmbeddedPgError> {
        let data = self.data_dir();
        let mode = match mode {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        };
        // Its log goes to the file, as at start: the server would hold our output pipe open.
        let log = self.dir.join("postgres.log");
        self.run("pg_ctl", &["-D", path_str(&data), "-l", path_str(&log), "-m", mode, "-w", "-t", "60", "restart"])
            .await
    }

    pub async fn stop(self) -> Result<(), EmbeddedPgError> {
        if !self.started_here {
            return Ok(());
        }
        let data = self.data_dir();
        self.run("pg_ctl", &["-D", path_str(&data), "-m", "fast", "-w", "stop"]).await
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    async fn init(&self) -> Result<(), EmbeddedPgError> {
        let password = hex::encode(random_bytes::<24>());
        let password_file = self.dir.join("password");
        // A half-finished earlier init leaves these behind; start over.
        let _ = std::fs::remove_file(&password_file);
        let _ = std::fs::remove_dir_all(self.data_dir());
        crate::crypto::write_private_file(&password_file, password.as_bytes())
            .map_err(io_error("writing the PostgreSQL password file"))?;
        std::fs::write(self.dir.join("port"), free_loopback_port()?.to_string())
            .map_err(io_error("writing the port file"))?;
        self.chown_to_run_as(&self.dir)?;
        let data = self.data_dir();
        self.run(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                SUPERUSER,
                "--pwfile",
                path_str(&password_file),
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
            ],
        )
        .await
    }

    async fn is_running(&self) -> bool {
        let data = self.data_dir();
        self.run("pg_ctl", &["-D", path_str(&data), "status"]).await.is_ok()
    }

    async fn run_start(&self) -> Result<(), EmbeddedPgError> {
        let data = self.data_dir();
        let log = self.dir.join("postgres.log");
        // Several server processes (replicas, tests) may share it, each with its pool.
        let options =
            format!("-c listen_addresses=127.0.0.1 -c max_connections=300 -p {} -k {}", self.port, path_str(&self.dir));
        self.run("pg_ctl", &["-D", path_str(&data), "-l", path_str(&log), "-o", &options, "-w", "-t", "60", "start"])
            .await
    }

    async fn run(&self, program: &str, args: &[&str]) -> Result<(), EmbeddedPgError> {
        let binary = self.bindir.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        let output = command
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(io_error(format!("running {}", binary.display())))?;
        if output.status.success() {
            return Ok(());
        }
        let log = self.dir.join(format!("{program}.err"));
        let _ = std::fs::write(&log, [output.stdout, output.stderr].concat());
        Err(EmbeddedPgError::Command {
            command: program.to_string(),
            status: output.status.to_string(),
            log: log.display().to_string(),
        })
    }

    fn chown_to_run_as(&self, dir: &Path) -> Result<(), EmbeddedPgError> {
        let Some(user) = &self.run_as else { return Ok(()) };
        let status = std::process::Command::new("chown")
            .args(["-R", user, path_str(dir)])
            .status()
            .map_err(io_error("running chown"))?;
        if status.success() {
            Ok(())
        } else {
            Err(EmbeddedPgError::Io { what: format!("chown {}", dir.display()), reason: status.to_string() })
        }
    }
}

/// Fails, naming the first directory in the way, unless `user` can search every directory down
/// to `dir` (initdb and the server would fail later with a bare "Permission denied").
fn reachable_by(user: &str, dir: &Path) -> Result<(), EmbeddedPgError> {
    let mut ancestors: Vec<&Path> = dir.ancestors().collect();
    ancestors.reverse();
    for path in ancestors {
        let searchable = std::process::Command::new("runuser")
            .args(["-u", user, "--", "test", "-x", path_str(path)])
            .status()
            .map_err(io_error("running runuser"))?
            .success();
        if !searchable {
            return Err(EmbeddedPgError::Unreachable {
                user: user.to_string(),
                dir: dir.display().to_string(),
                blocked: path.display().to_string(),
            });
        }
    }
    Ok(())
}

/// FABRICSYNC_PG_BINDIR, else the directory of `initdb` on PATH, else the newest
/// /usr/lib/postgresql/<version>/bin (Debian keeps initdb off PATH).
fn find_bindir() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("FABRICSYNC_PG_BINDIR").map(PathBuf::from) {
        return has_tools(&dir).then_some(dir);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|dir| has_tools(dir))
        .and_then(|dir| dir.join("initdb").canonicalize().ok())
        .and_then(|initdb| initdb.parent().map(Path::to_path_buf));
    on_path.or_else(|| {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok())
            .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
            .filter(|(_, bin)| has_tools(bin))
            .collect();
        versions.sort();
        versions.pop().map(|(_, bin)| bin)
    })
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn postgres_user() -> Result<String, EmbeddedPgError> {
    let exists = std::process::Command::new("id")
        .args(["-u", "postgres"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if exists {
        Ok("postgres".into())
    } else {
        Err(EmbeddedPgError::NoPostgresUser)
    }
}

fn free_loopback_port() -> Result<u16, EmbeddedPgError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io_error("finding a free loopback port"))?;
    listener.local_addr().map(|a| a.port()).map_err(io_error("finding a free loopback port"))
}

fn read_trimmed(path: &Path) -> Result<String, EmbeddedPgError> {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).map_err(io_error(format!("reading {}", path.display())))
}

fn path_str(path: &Path) -> &str {
    // Our own directories; a non-UTF-8 path would have failed earlier at canonicalize/create.
    path.to_str().unwrap_or_default()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    use aes_gcm::aead::rand_core::RngCore;
    let mut bytes = [0u8; N];
    aes_gcm::aead::OsRng.fill_bytes(&mut bytes);
    bytes
}
