//! A real Kubernetes control plane on loopback: kube-apiserver with embedded etcd and the
//! service-account token controller (tests/kube-harness, built by scripts/kube-harness.sh),
//! with the Hedgehog CRDs installed. One per test; it ends with the test (or its process).
//! Self-contained: the cluster benchmark includes it too.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A system:masters token.
pub const ADMIN_TOKEN: &str = "admin-5b1e0d77c2a94f3e";
/// A token of a user with no RBAC bindings at all.
pub const NOBODY_TOKEN: &str = "nobody-8c3f2a1e9d7b4c60";
const CONTROLLER_TOKEN: &str = "controller-2d9e4b6a1f0c8e37";

pub struct KubeCluster {
    child: Child,
    dir: tempfile::TempDir,
    pub url: String,
    pub ca_pem: String,
}

fn harness() -> PathBuf {
    if let Ok(path) = std::env::var("FABRICSYNC_KUBEHARNESS") {
        return PathBuf::from(path);
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/bin/kubeharness");
    assert!(path.exists(), "{} is missing: run scripts/kube-harness.sh (scripts/test.sh does)", path.display());
    path
}

/// The harness serving the state under `dir` on `port`, logging to `dir/apiserver.log`.
fn spawn_harness(dir: &Path, port: u16) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("apiserver.log")).expect("log file");
    Command::new(harness())
        .arg("serve")
        .arg(format!("--dir={}", dir.join("state").display()))
        .arg(format!("--port={port}"))
        .arg(format!("--token-file={}", dir.join("tokens.csv").display()))
        .arg(format!("--controller-token={CONTROLLER_TOKEN}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start kubeharness")
}

impl KubeCluster {
    /// Starts the control plane and installs the Hedgehog CRDs; panics with its log if it
    /// does not come up. A port taken between choosing and binding it is tried again.
    pub fn start() -> KubeCluster {
        for _ in 0..5 {
            if let Some(cluster) = Self::start_once() {
                return cluster;
            }
        }
        panic!("kube-apiserver found its port taken five times");
    }

    /// None when another process took the chosen port first.
    fn start_once() -> Option<KubeCluster> {
        let dir = tempfile::tempdir().expect("temp dir");
        let tokens = dir.path().join("tokens.csv");
        std::fs::write(
            &tokens,
            format!(
                "{ADMIN_TOKEN},admin,1,\"system:masters\"\n{CONTROLLER_TOKEN},controller,2,\"system:masters\"\n{NOBODY_TOKEN},nobody,3\n"
            ),
        )
        .expect("write tokens");
        // A free loopback port (the harness binds it a moment later).
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let child = spawn_harness(dir.path(), port);
        let url = format!("https://127.0.0.1:{port}");
        let mut cluster = KubeCluster { child, dir, url, ca_pem: String::new() };
        if !cluster.wait_ready() {
            return None;
        }
        cluster.install_crds();
        Some(cluster)
    }

    /// Kills the API server (as a crash would) and starts it again on its port and state:
    /// etcd keeps every object, as a real control plane's does.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let port = self.url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port of the URL");
        self.child = spawn_harness(self.dir.path(), port);
        assert!(self.wait_ready(), "kube-apiserver found its port taken after a restart");
    }

    /// Waits until the API server is ready; false when it exited because its port was taken.
    fn wait_ready(&mut self) -> bool {
        let ca = self.dir.path().join("state/ca.crt");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = self.log();
                if log.contains("address already in use") {
                    return false;
                }
                panic!("kube-apiserver exited ({status}): {log}");
            }
            if ca.exists() {
                let ready = self.kubectl(&["get", "--raw", "/readyz"]);
                if ready.status.success() {
                    self.ca_pem = std::fs::read_to_string(&ca).expect("read ca");
                    return true;
                }
            }
            assert!(Instant::now() < deadline, "kube-apiserver not ready in 90 s: {}", self.log());
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn install_crds(&self) {
        let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/crds");
        let out = self.kubectl(&["apply", "--server-side", "-f", &crds.display().to_string()]);
        assert!(out.status.success(), "install CRDs: {}", String::from_utf8_lossy(&out.stderr));
        let out = self.kubectl(&["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"]);
        assert!(out.status.success(), "CRDs established: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// kubectl as the admin.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_as(ADMIN_TOKEN, args)
    }

    pub fn kubectl_as(&self, token: &str, args: &[&str]) -> Output {
        Command::new(harness()).args(self.kubectl_flags_as(token)).args(args).output().expect("run kubectl")
    }

    /// The harness binary (for running kubectl under other tools).
    pub fn harness_path(&self) -> PathBuf {
        harness()
    }

    /// `kubectl` and its connection flags as the admin, to follow the harness binary.
    pub fn kubectl_flags(&self) -> Vec<String> {
        self.kubectl_flags_as(ADMIN_TOKEN)
    }

    fn kubectl_flags_as(&self, token: &str) -> Vec<String> {
        vec![
            "kubectl".into(),
            format!("--server={}", self.url),
            format!("--certificate-authority={}", self.dir.path().join("state/ca.crt").display()),
            format!("--token={token}"),
        ]
    }

    /// kubectl that must succeed; its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Applies YAML from a string as the admin.
    /// The token the token controller put into Secret fabricsync-system/`secret`.
    pub fn service_account_token(&self, secret: &str) -> String {
        for _ in 0..100 {
            let out =
                self.kubectl(&["get", "secret", secret, "-n", "fabricsync-system", "-o", "jsonpath={.data.token}"]);
            let encoded = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !encoded.is_empty() {
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).expect("base64 token");
                return String::from_utf8(bytes).expect("utf-8 token");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the token controller did not fill Secret {secret}: {}", self.log());
    }

    pub fn apply_yaml(&self, yaml: &str) -> String {
        let file = self.dir.path().join(format!("apply-{}.yaml", uuid::Uuid::new_v4().simple()));
        std::fs::write(&file, yaml).expect("write yaml");
        self.kubectl_ok(&["apply", "-f", &file.display().to_string()])
    }

    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("apiserver.log")).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for KubeCluster {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}
