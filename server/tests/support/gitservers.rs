//! Real git servers on loopback for integration tests, each stopped on Drop:
//! a fixture repository (served over file://), `git daemon`, an HTTP server with basic auth in
//! front of `git http-backend` (tests/git-http-server.py), and `sshd` with its own keys.
//! Everything binds 127.0.0.1 on ephemeral ports; nothing contacts another host.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Runs `git` with no system/global configuration and a fixed identity; panics on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", "-c", "core.symlinks=true"])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Fabric Tester")
        .env("GIT_AUTHOR_EMAIL", "tester@example.invalid")
        .env("GIT_COMMITTER_NAME", "Fabric Tester")
        .env("GIT_COMMITTER_EMAIL", "tester@example.invalid")
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A test repository: a working clone where commits are made, pushed to a bare repository
/// `fabric.git` under `srv_root()`, which every server below serves.
pub struct GitFixture {
    dir: TempDir,
}

impl GitFixture {
    /// An empty repository with branch `main` checked out in the working clone.
    pub fn new() -> GitFixture {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("srv/not-a-repo")).expect("mkdir");
        git(dir.path(), &["init", "-q", "--bare", "-b", "main", "srv/fabric.git"]);
        git(dir.path(), &["init", "-q", "-b", "main", "work"]);
        let fixture = GitFixture { dir };
        git(&fixture.work(), &["remote", "add", "origin", fixture.bare_path().to_str().expect("utf-8 path")]);
        fixture
    }

    /// A repository with one commit holding `files` (path, content) on `main`.
    pub fn with_files(files: &[(&str, &str)]) -> GitFixture {
        let fixture = GitFixture::new();
        fixture.commit(files, "initial");
        fixture
    }

    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Directory that the servers export; holds `fabric.git` and a plain directory `not-a-repo`.
    pub fn srv_root(&self) -> PathBuf {
        self.dir.path().join("srv")
    }

    pub fn bare_path(&self) -> PathBuf {
        self.srv_root().join("fabric.git")
    }

    pub fn file_url(&self) -> String {
        format!("file://{}", self.bare_path().display())
    }

    /// Writes `files` into the working tree, commits everything on the current branch and
    /// pushes all branches and tags; returns the new commit id.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, content) in files {
            let path = self.work().join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, content).expect("write file");
        }
        self.commit_all(message)
    }

    /// Adds a symbolic link `link` -> `target` and commits it; returns the new commit id.
    /// As `commit`, for files held as owned strings.
    pub fn commit_files(&self, files: &[(String, String)], message: &str) -> String {
        let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
        self.commit(&files, message)
    }

    pub fn commit_symlink(&self, link: &str, target: &str) -> String {
        let path = self.work().join(link);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::os::unix::fs::symlink(target, path).expect("symlink");
        self.commit_all(&format!("link {link}"))
    }

    /// Removes `paths` and commits; returns the new commit id.
    pub fn remove(&self, paths: &[&str]) -> String {
        let mut args = vec!["rm", "-q", "-r"];
        args.extend_from_slice(paths);
        git(&self.work(), &args);
        self.commit_all("remove")
    }

    fn commit_all(&self, message: &str) -> String {
        git(&self.work(), &["add", "-A"]);
        git(&self.work(), &["commit", "-q", "--allow-empty", "-m", message]);
        self.push();
        self.head()
    }

    pub fn head(&self) -> String {
        git(&self.work(), &["rev-parse", "HEAD"])
    }

    /// Takes what others pushed to `branch` of the bare repository into the working clone.
    pub fn pull(&self, branch: &str) {
        git(&self.work(), &["fetch", "-q", "origin"]);
        git(&self.work(), &["reset", "-q", "--hard", &format!("origin/{branch}")]);
    }

    /// `git <args>` in the bare repository (what the servers serve).
    pub fn bare(&self, args: &[&str]) -> String {
        git(&self.bare_path(), args)
    }

    /// Creates branch `name` at HEAD and switches to it.
    pub fn branch(&self, name: &str) {
        git(&self.work(), &["checkout", "-q", "-b", name]);
        self.push();
    }

    pub fn checkout(&self, name: &str) {
        git(&self.work(), &["checkout", "-q", name]);
    }

    /// Tags HEAD; annotated tags get a tag object of their own.
    pub fn tag(&self, name: &str, annotated: bool) {
        if annotated {
            git(&self.work(), &["tag", "-a", "-m", name, name]);
        } else {
            git(&self.work(), &["tag", name]);
        }
        self.push();
    }

    fn push(&self) {
        git(&self.work(), &["push", "-q", "--force", "--all", "origin"]);
        git(&self.work(), &["push", "-q", "--force", "--tags", "origin"]);
    }
}

/// A port that was free a moment ago (servers that cannot be told to use port 0).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

/// Waits until something accepts TCP connections on `port`, or the child exits.
fn wait_listening(child: &mut Child, port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on port {port}");
}

fn stop(child: &mut Child) {
    child.kill().ok();
    child.wait().ok();
}

/// `git daemon` exporting every repository under a root directory, pushes allowed.
pub struct GitDaemon {
    child: Child,
    pub port: u16,
}

impl GitDaemon {
    pub fn start(root: &Path) -> GitDaemon {
        let port = free_port();
        let mut child = Command::new("git")
            .args(["daemon", "--reuseaddr", "--export-all", "--enable=receive-pack", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", root.display()))
            .arg(root)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn git daemon");
        wait_listening(&mut child, port, "git daemon");
        GitDaemon { child, port }
    }

    /// URL of `name` (relative to the root), e.g. `fabric.git`.
    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Credentials the HTTP server accepts: `username`+`password`, or `token` as any user's password.
pub const HTTP_USER: &str = "fabric-admin";
pub const HTTP_PASSWORD: &str = "pw-Correct-Horse-7731";
pub const HTTP_TOKEN: &str = "tok-5f0c9e2d4b7a41c8";

/// `git http-backend` behind HTTP basic auth (tests/git-http-server.py), optionally over TLS
/// with a self-signed certificate that no client trusts.
pub struct HttpGitServer {
    child: Child,
    pub port: u16,
    tls: bool,
    _cert_dir: Option<TempDir>,
}

impl HttpGitServer {
    pub fn start(root: &Path) -> HttpGitServer {
        Self::spawn(root, None)
    }

    /// HTTPS with a fresh self-signed certificate (needs the `openssl` command).
    pub fn start_tls(root: &Path) -> HttpGitServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1"])
            .arg("-keyout")
            .arg(dir.path().join("key.pem"))
            .arg("-out")
            .arg(dir.path().join("cert.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run openssl");
        assert!(status.success(), "openssl could not create a certificate");
        Self::spawn(root, Some(dir))
    }

    fn spawn(root: &Path, cert_dir: Option<TempDir>) -> HttpGitServer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/git-http-server.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script).arg("--root").arg(root).args([
            "--user",
            HTTP_USER,
            "--password",
            HTTP_PASSWORD,
            "--token",
            HTTP_TOKEN,
        ]);
        if let Some(dir) = &cert_dir {
            cmd.arg("--tls-cert").arg(dir.path().join("cert.pem")).arg("--tls-key").arg(dir.path().join("key.pem"));
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn python3 git-http-server.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read port");
        let port = line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("git-http-server.py did not report its port: {line:?}"));
        HttpGitServer { child, port, tls: cert_dir.is_some(), _cert_dir: cert_dir }
    }

    pub fn url(&self, name: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for HttpGitServer {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// An OpenSSH key pair made with ssh-keygen.
pub struct SshKeyPair {
    pub private_key: String,
    pub public_key: String,
}

pub fn ssh_keygen(dir: &Path, name: &str) -> SshKeyPair {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .stdin(Stdio::null())
        .status()
        .expect("run ssh-keygen");
    assert!(status.success(), "ssh-keygen failed");
    SshKeyPair {
        private_key: std::fs::read_to_string(&path).expect("private key"),
        public_key: std::fs::read_to_string(path.with_extension("pub")).expect("public key"),
    }
}

const SSHD: &str = "/usr/sbin/sshd";

/// `sshd` on a loopback port with its own host key, config and authorized_keys, running as the
/// current user; `client` is the only key it accepts.
pub struct SshServer {
    child: Child,
    pub port: u16,
    pub user: String,
    pub client: SshKeyPair,
    /// A known_hosts line for this server's host key.
    pub known_hosts: String,
    dir: TempDir,
}

impl SshServer {
    /// None (after a loud message) when sshd is not installed; scripts/setup.sh --test installs it.
    pub fn start() -> Option<SshServer> {
        if !Path::new(SSHD).exists() {
            eprintln!(
                "\n!!!!!!!! SKIPPED: {SSHD} is missing; install Debian's openssh-server \
                 (scripts/setup.sh --test does) to run the ssh tests !!!!!!!!\n"
            );
            return None;
        }
        // sshd refuses to start without its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").ok();
        let dir = tempfile::tempdir().expect("tempdir");
        let host = ssh_keygen(dir.path(), "host_key");
        let client = ssh_keygen(dir.path(), "client_key");
        std::fs::write(dir.path().join("authorized_keys"), &client.public_key).expect("authorized_keys");
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\nPidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\nPermitRootLogin prohibit-password\nStrictModes no\n\
             UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             AcceptEnv GIT_PROTOCOL\nLogLevel VERBOSE\n",
            dir = dir.path().display()
        );
        std::fs::write(dir.path().join("sshd_config"), config).expect("sshd_config");
        let log = std::fs::File::create(dir.path().join("sshd.log")).expect("sshd.log");
        let mut child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(dir.path().join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn sshd");
        wait_listening(&mut child, port, "sshd");
        let user =
            String::from_utf8_lossy(&Command::new("id").arg("-un").output().expect("id -un").stdout).trim().to_string();
        let host_key = host.public_key.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        let known_hosts = format!("[127.0.0.1]:{port} {host_key}\n");
        Some(SshServer { child, port, user, client, known_hosts, dir })
    }

    /// ssh:// URL of an absolute path on this machine.
    pub fn url(&self, path: &Path) -> String {
        format!("ssh://{}@127.0.0.1:{}{}", self.user, self.port, path.display())
    }

    /// A key this server does not accept.
    pub fn other_key(&self) -> SshKeyPair {
        ssh_keygen(self.dir.path(), &format!("other_key_{}", std::process::id()))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// What a `SilentServer` does with the connections it accepts.
#[derive(Clone, Copy)]
pub enum Answer {
    /// Holds them open and never answers: for timeouts.
    Nothing,
    /// Resets them (RST) at once: a server that dies or a middlebox that cuts.
    Reset,
    /// Answers every request with HTTP 500: a failing Git server.
    Status500,
}

/// Accepts TCP connections and answers as told (by default: never).
pub struct SilentServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SilentServer {
    pub fn start() -> SilentServer {
        SilentServer::answering(Answer::Nothing)
    }

    pub fn answering(answer: Answer) -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                use std::io::{Read, Write};
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                match answer {
                    Answer::Nothing => held.push(stream),
                    // Closing a socket with unread data sends RST instead of FIN.
                    Answer::Reset => {
                        let _ = stream.read(&mut [0u8; 1]);
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Answer::Status500 => {
                        let mut request = [0u8; 4096];
                        let _ = stream.read(&mut request);
                        let _ = stream.write_all(
                            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                    }
                }
            }
        });
        SilentServer { port, stop, thread: Some(thread) }
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().ok();
        }
    }
}
