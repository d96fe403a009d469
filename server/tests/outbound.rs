//! What a caller can make the server reach, and stored secrets bound to where they were given:
//! real servers on loopback, hostile listeners that record every byte they receive, an API
//! endpoint that echoes the request's headers back, then the responses, the server log and a
//! pg_dump of the database searched for the secrets.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use fabricsync::proto::repository_auth::Method;
use fabricsync::proto::*;
use support::gitservers::{GitDaemon, GitFixture, HttpGitServer, HTTP_TOKEN};
use support::server::ServerProcess;
use support::sync::{lab_wiring, Clients};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tonic::Code;

const CLUSTER_TOKEN: &str = "cluster-tok-3e9b71c40d5a";

/// A loopback HTTP listener that keeps every byte it receives. `Challenge` answers 401 asking for
/// credentials (basic and bearer), so a client holding any would send them; `Echo` answers 401 on
/// /version and 500 elsewhere with the request's head in the body, plus the bearer token it saw
/// in base64 and hex (a remote may quote in any encoding).
#[derive(Clone, Copy)]
enum Mode {
    Challenge,
    Echo,
    /// 302 to the same path on another loopback port.
    Redirect(u16),
}

struct Recorder {
    port: u16,
    tls: Option<TestCa>,
    received: Arc<Mutex<Vec<u8>>>,
    connections: Arc<Mutex<usize>>,
}

/// A CA and a server certificate it signed for `localhost` and 127.0.0.1 (made with `openssl`).
struct TestCa {
    ca_pem: String,
    acceptor: tokio_rustls::TlsAcceptor,
    _dir: tempfile::TempDir,
}

impl TestCa {
    fn new() -> TestCa {
        use tokio_rustls::rustls::pki_types::pem::PemObject as _;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = |name: &str| dir.path().join(name);
        std::fs::write(path("ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
        let openssl = |args: &[&str]| {
            let out =
                std::process::Command::new("openssl").args(args).current_dir(dir.path()).output().expect("run openssl");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "key.pem",
            "-out",
            "leaf.csr",
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext",
            "-out",
            "cert.pem",
        ]);
        let read = |name: &str| std::fs::read(path(name)).expect("read pem");
        let certs = vec![CertificateDer::from_pem_slice(&read("cert.pem")).expect("cert")];
        let key = PrivateKeyDer::from_pem_slice(&read("key.pem")).expect("key");
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        let ca_pem = String::from_utf8(read("ca.crt")).expect("utf-8");
        TestCa { ca_pem, acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)), _dir: dir }
    }
}

impl Recorder {
    async fn start(mode: Mode) -> Recorder {
        Self::listen(mode, None).await
    }

    /// Over TLS, with a certificate for `localhost` signed by a CA of its own (`ca_pem()`).
    async fn start_tls(mode: Mode) -> Recorder {
        Self::listen(mode, Some(TestCa::new())).await
    }

    async fn listen(mode: Mode, tls: Option<TestCa>) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind recorder");
        let port = listener.local_addr().expect("addr").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (all, count) = (received.clone(), connections.clone());
        let acceptor = tls.as_ref().map(|t| t.acceptor.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                *count.lock().unwrap() += 1;
                let (all, acceptor) = (all.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(Ok(stream)) =
                                tokio::time::timeout(Duration::from_secs(5), acceptor.accept(socket)).await
                            {
                                serve(stream, mode, all).await;
                            }
                        }
                        None => serve(socket, mode, all).await,
                    }
                });
            }
        });
        Recorder { port, tls, received, connections }
    }

    fn url(&self, path: &str) -> String {
        match &self.tls {
            Some(_) => format!("https://localhost:{}{path}", self.port),
            None => format!("http://127.0.0.1:{}{path}", self.port),
        }
    }

    fn ca_pem(&self) -> String {
        self.tls.as_ref().map(|t| t.ca_pem.clone()).unwrap_or_default()
    }

    fn received(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap()).into_owned()
    }

    fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
}

/// Reads one request head (keeping every byte), answers it and closes.
async fn serve(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    mode: Mode,
    all: Arc<Mutex<Vec<u8>>>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                head.extend_from_slice(&buf[..n]);
                all.lock().unwrap().extend_from_slice(&buf[..n]);
            }
            _ => break,
        }
    }
    let _ = stream.write_all(answer(mode, &String::from_utf8_lossy(&head)).as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn answer(mode: Mode, head: &str) -> String {
    match mode {
        Mode::Challenge => {
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nWWW-Authenticate: Bearer\r\n\
                            Content-Length: 0\r\nConnection: close\r\n\r\n"
                .to_string()
        }
        Mode::Redirect(port) => {
            let path = head.split_whitespace().nth(1).unwrap_or("/");
            format!("HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        }
        Mode::Echo => {
            let token = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("authorization: Bearer ").or_else(|| l.strip_prefix("Authorization: Bearer "))
                })
                .unwrap_or_default()
                .trim();
            let body = format!(
                "you sent: {head} (base64 {}, hex {})",
                base64::engine::general_purpose::STANDARD.encode(token),
                hex::encode(token)
            );
            let (status, body, content_type) = if head.starts_with("GET /version") {
                ("401 Unauthorized", body, "text/plain")
            } else {
                let status = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": body, "code": 500});
                ("500 Internal Server Error", status.to_string(), "application/json")
            };
            format!("HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
        }
    }
}

/// The forms a secret could leak in: plain, base64 (padded or not, URL-safe), hex, and for a git
/// token the basic-auth header value of its default user.
fn leaked_forms(secret: &str) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    vec![
        secret.to_string(),
        STANDARD.encode(secret),
        STANDARD_NO_PAD.encode(secret),
        URL_SAFE_NO_PAD.encode(secret),
        hex::encode(secret),
        hex::encode_upper(secret),
        STANDARD_NO_PAD.encode(format!("x-access-token:{secret}")),
    ]
}

fn assert_no_secret(what: &str, text: &str, secret: &str) {
    for form in leaked_forms(secret) {
        assert!(!text.contains(&form), "{what} holds the secret (as {form:?}):\n{text}");
    }
}

fn violation_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt as _;
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

async fn expect_invalid(result: Result<impl std::fmt::Debug, tonic::Status>, field: &str, words: &[&str]) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(violation_fields(&status).contains(&field.to_string()), "{status:?}");
    for word in words {
        assert!(status.message().contains(word), "{word:?} not in {status:?}");
    }
}

fn create_repository(name: &str, url: &str, auth: Option<Method>) -> CreateRepositoryRequest {
    CreateRepositoryRequest {
        repository: Some(Repository { name: name.into(), url: url.into(), ..Default::default() }),
        auth: auth.map(|method| RepositoryAuth { method: Some(method) }),
        ..Default::default()
    }
}

fn cluster(url: &str, token: &str) -> ClusterConnectionInput {
    ClusterConnectionInput { server_url: url.into(), bearer_token: token.into(), ..Default::default() }
}

async fn test_repository(c: &mut Clients, id: &str) -> TestRepositoryConnectionResponse {
    c.repos
        .test_repository_connection(TestRepositoryConnectionRequest { id: id.into() })
        .await
        .expect("test connection")
        .into_inner()
}

async fn test_cluster(c: &mut Clients, id: &str) -> TestClusterConnectionResponse {
    c.fabrics
        .test_cluster_connection(TestClusterConnectionRequest { id: id.into() })
        .await
        .expect("test cluster")
        .into_inner()
}

/// Polls the fabric until `done` holds; panics after 30 s.
async fn wait_fabric(c: &mut Clients, id: &str, what: &str, done: impl Fn(&Fabric) -> bool) -> Fabric {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let fabric = c.get_fabric(id).await;
        if done(&fabric) {
            return fabric;
        }
        assert!(Instant::now() < deadline, "{what}: {fabric:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn pg_dump(database_url: &str) -> String {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|dirs| dirs.filter_map(|d| d.ok()).map(|d| d.path().join("bin/pg_dump")).find(|p| p.exists()))
        .unwrap_or_else(|| "pg_dump".into());
    let output =
        std::process::Command::new(bin).args(["--data-only", "--dbname", database_url]).output().expect("run pg_dump");
    assert!(output.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn repointing_a_repository_drops_its_token_before_anything_connects() {
    let repo = GitFixture::with_files(&[("fabric/switches.yaml", "kind: Switch\n")]);
    let http = HttpGitServer::start(&repo.srv_root());
    let recorder = Recorder::start(Mode::Challenge).await;
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);

    // An allowed loopback git server with a token still works.
    let token = Method::Token(TokenAuth { token: HTTP_TOKEN.into(), username: String::new() });
    let created = c
        .repos
        .create_repository(create_repository("guarded", &http.url("fabric.git"), Some(token)))
        .await
        .expect("create")
        .into_inner();
    let id = created.repository.expect("repository").id;
    assert!(test_repository(&mut c, &id).await.reachable);

    // The attack: only the URL changes, to a listener the caller controls.
    let update = UpdateRepositoryRequest {
        repository: Some(Repository { id: id.clone(), url: recorder.url("/fabric.git"), ..Default::default() }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["url".into()] }),
        ..Default::default()
    };
    let updated = c.repos.update_repository(update).await.expect("update").into_inner();
    assert!(updated.credentials_cleared, "{updated:?}");
    let auth = updated.repository.expect("repository").auth.expect("auth");
    assert_eq!((auth.r#type, auth.has_secret), (AuthType::None as i32, false));

    let tested = test_repository(&mut c, &id).await;
    assert!(!tested.reachable, "{tested:?}");
    assert!(recorder.connections() > 0, "the probe never reached the listener");
    assert_no_secret("what the listener received", &recorder.received(), HTTP_TOKEN);

    // The same URL again keeps new credentials given with it, and says nothing was cleared.
    let back = UpdateRepositoryRequest {
        repository: Some(Repository { id: id.clone(), url: http.url("fabric.git"), ..Default::default() }),
        auth: Some(RepositoryAuth {
            method: Some(Method::Token(TokenAuth { token: HTTP_TOKEN.into(), username: String::new() })),
        }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["url".into(), "auth".into()] }),
        ..Default::default()
    };
    let restored = c.repos.update_repository(back).await.expect("update").into_inner();
    assert!(!restored.credentials_cleared);
    assert!(test_repository(&mut c, &id).await.reachable);
    let description = UpdateRepositoryRequest {
        repository: Some(Repository { id: id.clone(), description: "same place".into(), ..Default::default() }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["description".into()] }),
        ..Default::default()
    };
    let kept = c.repos.update_repository(description).await.expect("update").into_inner();
    assert!(!kept.credentials_cleared && kept.repository.expect("repository").auth.expect("auth").has_secret);
    assert_no_secret("the server log", &server.log(), HTTP_TOKEN);
}

#[tokio::test]
async fn git_redirects_are_not_followed() {
    let elsewhere = Recorder::start(Mode::Challenge).await;
    let redirector = Recorder::start(Mode::Redirect(elsewhere.port)).await;
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);
    let token = Method::Token(TokenAuth { token: HTTP_TOKEN.into(), username: String::new() });
    let created = c
        .repos
        .create_repository(create_repository("redirected", &redirector.url("/fabric.git"), Some(token)))
        .await
        .expect("create");
    let tested = test_repository(&mut c, &created.into_inner().repository.expect("repository").id).await;
    assert!(!tested.reachable, "{tested:?}");
    assert!(redirector.connections() > 0, "never asked");
    assert_eq!(elsewhere.connections(), 0, "followed the redirect");
}

#[tokio::test]
async fn repointing_a_cluster_drops_its_bearer_token() {
    let recorder = Recorder::start(Mode::Challenge).await;
    let repo = GitFixture::with_files(&[("fabric/switches.yaml", "kind: Switch\n")]);
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);
    // First pointed at a closed port: nothing to leak to.
    let closed = format!("http://127.0.0.1:{}", support::gitservers::free_port());
    let id = c
        .fabric_on_cluster(
            "repointed",
            &repo.file_url(),
            "fabric",
            SyncPolicy::default(),
            Some(cluster(&closed, CLUSTER_TOKEN)),
        )
        .await;

    let update = UpdateFabricRequest {
        fabric: Some(Fabric { id: id.clone(), ..Default::default() }),
        cluster: Some(cluster(&recorder.url(""), "")),
        update_mask: Some(prost_types::FieldMask { paths: vec!["cluster.server_url".into()] }),
        ..Default::default()
    };
    let updated = c.fabrics.update_fabric(update).await.expect("update").into_inner();
    assert!(updated.credentials_cleared, "{updated:?}");
    assert!(!updated.fabric.expect("fabric").cluster.expect("cluster").has_bearer_token);

    let tested = test_cluster(&mut c, &id).await;
    assert!(!tested.reachable, "{tested:?}");
    // The watch restarts on the new URL too; wait until it has connected there.
    let first = recorder.connections();
    let deadline = Instant::now() + Duration::from_secs(30);
    while recorder.connections() <= first && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recorder.connections() > first, "the watch never reached the listener");
    assert_no_secret("what the listener received", &recorder.received(), CLUSTER_TOKEN);
    assert_no_secret("the server log", &server.log(), CLUSTER_TOKEN);
}

#[tokio::test]
async fn an_echoing_api_server_never_gets_the_token_stored_returned_or_logged() {
    // Over TLS to `localhost`: the client connects to the checked address and still verifies the name.
    let echo = Recorder::start_tls(Mode::Echo).await;
    let repo = GitFixture::with_files(&[("fabric/wiring.yaml", &lab_wiring())]);
    let db = support::fresh_database().await;
    let server = ServerProcess::start(&db).await;
    let mut c = Clients::new(server.channel().await);
    let input = ClusterConnectionInput { ca_certificate_pem: echo.ca_pem(), ..cluster(&echo.url(""), CLUSTER_TOKEN) };
    let id = c.fabric_on_cluster("echoed", &repo.file_url(), "fabric", SyncPolicy::default(), Some(input)).await;
    let mut seen = Vec::new();

    let tested = test_cluster(&mut c, &id).await;
    assert!(!tested.reachable && !tested.message.is_empty(), "{tested:?}");
    seen.push(format!("{tested:?}"));

    let pulled = c.sync_mode(&id, SyncMode::Pull, false, false).await;
    assert_eq!(pulled.status, SyncRunStatus::Succeeded as i32, "{pulled:?}");
    let applied = c.sync_mode(&id, SyncMode::Apply, false, false).await;
    assert_eq!(applied.status, SyncRunStatus::Failed as i32, "{applied:?}");
    assert!(applied.error.contains("500"), "{applied:?}");
    seen.push(format!("{applied:?}"));
    seen.push(format!("{:?}", c.events(&applied.id, 0).await));
    let runs = c
        .sync
        .list_sync_runs(ListSyncRunsRequest { filter: format!("fabric_id={id}"), ..Default::default() })
        .await
        .expect("list runs");
    seen.push(format!("{:?}", runs.into_inner()));

    let fabric = wait_fabric(&mut c, &id, "the watch error", |f| !f.watch_error.is_empty()).await;
    seen.push(format!("{fabric:?}"));
    let mut watch = c
        .sync
        .watch_fabric_events(WatchFabricEventsRequest { fabric_id: id.clone(), ..Default::default() })
        .await
        .expect("watch")
        .into_inner();
    while let Ok(Ok(Some(event))) = tokio::time::timeout(Duration::from_secs(1), watch.message()).await {
        seen.push(format!("{event:?}"));
    }

    // The echo arrived (the endpoint did get the token: it was given for it), so each message
    // came from an answer that quoted it.
    assert!(echo.received().contains(CLUSTER_TOKEN));
    for (i, text) in seen.iter().enumerate() {
        assert_no_secret(&format!("response {i}"), text, CLUSTER_TOKEN);
    }
    assert_no_secret("the server log", &server.log(), CLUSTER_TOKEN);
    let dump = pg_dump(&db);
    assert!(dump.contains("500"), "the dump holds the stored errors");
    assert_no_secret("pg_dump", &dump, CLUSTER_TOKEN);
}

#[tokio::test]
async fn file_repositories_need_the_flag() {
    let repo = GitFixture::with_files(&[("fabric/switches.yaml", "kind: Switch\n")]);
    let server = ServerProcess::start_plain(
        &support::fresh_database().await,
        &fabricsync::crypto::Keyring::generate_key_line("k"),
        &[],
    )
    .await;
    let mut c = Clients::new(server.channel().await);
    expect_invalid(
        c.repos.create_repository(create_repository("local", &repo.file_url(), None)).await,
        "repository.url",
        &["--allow-file-repositories"],
    )
    .await;
}

#[tokio::test]
async fn file_repositories_never_reach_into_the_data_directory_nor_tell_file_system_facts() {
    let repo = GitFixture::with_files(&[("fabric/wiring.yaml", &lab_wiring())]);
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);
    // A fabric pulled once leaves its repository's mirror in <data-dir>/git/<id>.git.
    let fabric = c.fabric("mirrored", &repo.file_url(), "fabric", SyncPolicy::default()).await;
    assert_eq!(c.sync(&fabric, "", false).await.status, SyncRunStatus::Succeeded as i32);
    let repository_id = c.get_fabric(&fabric).await.repository_id;
    let mirror = server.data_dir().join(format!("git/{repository_id}.git"));
    assert!(mirror.exists());

    let relative_to_cwd = format!("/proc/self/cwd/{}{}", "../".repeat(32), mirror.display());
    let root_link = format!("/proc/self/root{}", mirror.display());
    for (i, path) in [
        mirror.display().to_string(),
        relative_to_cwd,
        root_link,
        format!("{}/git/../git/{repository_id}.git", server.data_dir().display()),
    ]
    .iter()
    .enumerate()
    {
        let request = create_repository(&format!("mirror-{i}"), &format!("file://{path}"), None);
        expect_invalid(c.repos.create_repository(request).await, "repository.url", &["data directory"]).await;
    }

    let plain_file = repo.srv_root().join("plain-file");
    std::fs::write(&plain_file, "not a repository").unwrap();
    let mut messages = Vec::new();
    for (name, path) in [
        ("missing", repo.srv_root().join("missing.git")),
        ("below-a-file", plain_file.join("x.git")),
        ("plain-dir", repo.srv_root().join("not-a-repo")),
    ] {
        let created = c
            .repos
            .create_repository(create_repository(name, &format!("file://{}", path.display()), None))
            .await
            .expect("create")
            .into_inner();
        let tested = test_repository(&mut c, &created.repository.expect("repository").id).await;
        assert_eq!(tested.failure, ConnectionFailure::NotARepository as i32, "{tested:?}");
        messages.push(tested.message);
    }
    assert!(messages.iter().all(|m| m == &messages[0]), "{messages:?}");
    assert!(!messages[0].contains("directory") && !messages[0].contains("No such"), "{messages:?}");
}

#[tokio::test]
async fn metadata_and_link_local_addresses_are_refused_at_create_and_update() {
    let repo = GitFixture::with_files(&[("fabric/switches.yaml", "kind: Switch\n")]);
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);
    for url in ["https://169.254.169.254/x.git", "ssh://git@[fe80::1]/x.git", "https://[::ffff:169.254.169.254]/x.git"]
    {
        expect_invalid(
            c.repos.create_repository(create_repository("metadata", url, None)).await,
            "repository.url",
            &["outbound policy"],
        )
        .await;
    }
    let fabric = Fabric {
        name: "meta".into(),
        repository_id: String::new(),
        git_ref: "main".into(),
        gitops_path: "fabric".into(),
        ..Default::default()
    };
    let id = c.fabric("ok", &repo.file_url(), "fabric", SyncPolicy::default()).await;
    let repository_id = c.get_fabric(&id).await.repository_id;
    let request = CreateFabricRequest {
        fabric: Some(Fabric { repository_id, ..fabric }),
        cluster: Some(cluster("https://[fe80::1]:6443", "t")),
    };
    expect_invalid(c.fabrics.create_fabric(request).await, "cluster.server_url", &["fe80::/10"]).await;
    let update = UpdateFabricRequest {
        fabric: Some(Fabric { id: id.clone(), ..Default::default() }),
        cluster: Some(cluster("https://169.254.169.254:6443", "")),
        update_mask: Some(prost_types::FieldMask { paths: vec!["cluster.server_url".into()] }),
        ..Default::default()
    };
    expect_invalid(c.fabrics.update_fabric(update).await, "cluster.server_url", &["169.254.0.0/16"]).await;
    assert!(c.get_fabric(&id).await.cluster.expect("cluster").server_url.is_empty(), "nothing stored");
}

#[tokio::test]
async fn a_name_resolving_to_a_denied_address_is_refused_when_connecting() {
    let repo = GitFixture::with_files(&[("fabric/switches.yaml", "kind: Switch\n")]);
    let daemon = GitDaemon::start(&repo.srv_root());
    let db = support::fresh_database().await;
    let keys = fabricsync::crypto::Keyring::generate_key_line("k");
    let url = daemon.url("fabric.git").replace("127.0.0.1", "localhost");
    assert!(url.contains("localhost"), "{url}");
    // Stored while the policy allowed it...
    let (repository_id, fabric_id) = {
        let mut first = ServerProcess::start_with(&db, &keys, &[]).await;
        let mut c = Clients::new(first.channel().await);
        let id = c
            .fabric_on_cluster("named", &url, "fabric", SyncPolicy::default(), Some(cluster("http://localhost:1", "")))
            .await;
        let repository_id = c.get_fabric(&id).await.repository_id;
        assert!(test_repository(&mut c, &repository_id).await.reachable, "reachable before");
        first.terminate().await;
        (repository_id, id)
    };
    // ...then the operator denies what `localhost` resolves to: the connection is refused.
    let server = ServerProcess::start_with(&db, &keys, &["--deny-hosts", "127.0.0.1/32"]).await;
    let mut c = Clients::new(server.channel().await);
    let tested = test_repository(&mut c, &repository_id).await;
    assert!(!tested.reachable, "{tested:?}");
    for word in ["localhost", "127.0.0.1/32", "outbound policy"] {
        assert!(tested.message.contains(word), "{word:?} not in {tested:?}");
    }
    let cluster_tested = test_cluster(&mut c, &fabric_id).await;
    assert!(!cluster_tested.reachable && cluster_tested.message.contains("127.0.0.1/32"), "{cluster_tested:?}");
    // A new repository at that name is refused up front.
    expect_invalid(
        c.repos.create_repository(create_repository("named-again", &url, None)).await,
        "repository.url",
        &["127.0.0.1/32"],
    )
    .await;
}
