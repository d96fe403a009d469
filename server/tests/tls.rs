//! Transport security of a real `fabricsync serve`: TLS with certificates made by the openssl
//! CLI, mutual TLS, certificate reload, and the plaintext rule for non-loopback addresses.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fabricsync::crypto::Keyring;
use fabricsync::proto::repository_service_client::RepositoryServiceClient;
use fabricsync::proto::{CreateRepositoryRequest, ListRepositoriesRequest, Repository};
use support::server::ServerProcess;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// A CA and certificates it issues, as PEM files in a temporary directory, made with openssl.
struct Pki {
    dir: PathBuf,
    name: String,
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Pki {
        let pki = Pki { dir: dir.to_path_buf(), name: name.into() };
        let (key, crt) = (pki.path("ca.key"), pki.path("ca.crt"));
        openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &key]);
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            &key,
            "-out",
            &crt,
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} CA"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        pki
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(format!("{}-{file}", self.name)).display().to_string()
    }

    /// Issues `<leaf>.crt` + `<leaf>.key` with the given subject, serial and extensions.
    fn issue(&self, leaf: &str, subject: &str, serial: u32, extensions: &str) -> (String, String) {
        let (key, csr, crt, ext) = (
            self.path(&format!("{leaf}.key")),
            self.path(&format!("{leaf}.csr")),
            self.path(&format!("{leaf}.crt")),
            self.path(&format!("{leaf}.ext")),
        );
        std::fs::write(&ext, format!("basicConstraints=CA:FALSE\n{extensions}\n")).unwrap();
        openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &key]);
        openssl(&["req", "-new", "-key", &key, "-out", &csr, "-subj", subject]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &self.path("ca.crt"),
            "-CAkey",
            &self.path("ca.key"),
            "-set_serial",
            &serial.to_string(),
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &crt,
        ]);
        (crt, key)
    }

    fn server(&self, leaf: &str, serial: u32) -> (String, String) {
        self.issue(
            leaf,
            "/CN=localhost",
            serial,
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth",
        )
    }

    fn client(&self, leaf: &str, subject: &str) -> (String, String) {
        self.issue(
            leaf,
            subject,
            7,
            "subjectAltName=DNS:netbox.example.com,URI:spiffe://example/netbox\nextendedKeyUsage=clientAuth",
        )
    }

    fn ca(&self) -> Certificate {
        Certificate::from_pem(std::fs::read(self.path("ca.crt")).unwrap())
    }
}

fn identity(cert: &str, key: &str) -> Identity {
    Identity::from_pem(std::fs::read(cert).unwrap(), std::fs::read(key).unwrap())
}

fn client_tls(ca: Certificate) -> ClientTlsConfig {
    ClientTlsConfig::new().ca_certificate(ca).domain_name("localhost")
}

async fn start_tls(args: &[&str], tls: ClientTlsConfig) -> ServerProcess {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let db = support::fresh_database().await;
    ServerProcess::start_on(
        &db,
        &Keyring::generate_key_line("test-key"),
        format!("127.0.0.1:{port}").parse().unwrap(),
        args,
        Some(tls),
    )
    .await
}

async fn health<T>(channel: T) -> Result<i32, tonic::Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    Ok(HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await?.into_inner().status)
}

/// Connects with `tls` and makes a health check; the error of whichever step fails.
async fn call_with(server: &ServerProcess, tls: ClientTlsConfig) -> Result<i32, String> {
    let endpoint = Channel::from_shared(format!("https://{}", server.addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(5));
    let channel = endpoint.connect().await.map_err(|e| format!("connect: {e:?}"))?;
    health(channel).await.map_err(|e| format!("call: {e:?}"))
}

/// The serial number of the certificate the server presents to a new connection.
async fn served_serial(server: &ServerProcess, ca: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("TLS handshake");
    let der = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (_, cert) =
        <x509_parser::certificate::X509Certificate as x509_parser::prelude::FromDer<_>>::from_der(&der).unwrap();
    cert.raw_serial_as_string()
}

#[tokio::test]
async fn tls_serves_rpcs_and_refuses_plaintext_clients() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "main");
    let (crt, key) = pki.server("server", 1);
    let health_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let health_addr = format!("127.0.0.1:{health_port}");
    let mut server =
        start_tls(&["--tls-cert", &crt, "--tls-key", &key, "--health-listen", &health_addr], client_tls(pki.ca()))
            .await;

    // The health-only listener answers plaintext probes, and serves nothing else.
    let probe = Channel::from_shared(format!("http://{health_addr}")).unwrap().connect().await.unwrap();
    assert_eq!(health(probe.clone()).await.unwrap(), 1);
    let other =
        RepositoryServiceClient::new(probe).list_repositories(ListRepositoriesRequest::default()).await.unwrap_err();
    assert_eq!(other.code(), tonic::Code::Unimplemented, "{other:?}");

    // Health and a RepositoryService call over TLS, the server verified with the CA.
    let channel = server.channel().await;
    assert_eq!(health(channel.clone()).await.unwrap(), 1, "SERVING");
    let mut repos = RepositoryServiceClient::new(channel);
    for i in 0..8 {
        let repository = Repository {
            name: format!("repo-{i}"),
            url: format!("file:///srv/git/repo-{i}.git"),
            description: "a repository with a description long enough to fill the response".into(),
            ..Default::default()
        };
        repos
            .create_repository(CreateRepositoryRequest { repository: Some(repository), ..Default::default() })
            .await
            .unwrap();
    }
    // Responses of a few KB over TLS come back without Nagle's ~40 ms wait (TCP_NODELAY on the TLS path too).
    let mut times = Vec::new();
    for _ in 0..30 {
        let started = Instant::now();
        let listed = repos
            .list_repositories(ListRepositoriesRequest { page_size: 10, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        times.push(started.elapsed());
        assert_eq!(listed.repositories.len(), 8);
    }
    times.sort();
    println!("ListRepositories over TLS (8 repositories): median {:?}, max {:?}", times[15], times[29]);
    assert!(times[15] < Duration::from_millis(25), "median {:?}", times[15]);

    // A plaintext (h2c) client gets no answer from the TLS listener.
    let plain =
        Channel::from_shared(format!("http://{}", server.addr)).unwrap().connect_timeout(Duration::from_secs(5));
    let plain = match plain.connect().await {
        Ok(channel) => health(channel).await.map(|_| ()).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    assert!(plain.is_err(), "a plaintext client was served");

    // A client that does not trust the server's CA fails its handshake.
    let other = Pki::new(dir.path(), "other");
    assert!(call_with(&server, client_tls(other.ca())).await.is_err());

    // A connection that never sends its ClientHello holds nobody else up.
    let _stalled = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    assert_eq!(call_with(&server, client_tls(pki.ca())).await.unwrap(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a stalled handshake delayed another connection: {:?}",
        started.elapsed()
    );
    assert!(server.log().contains("TLS handshake failed"), "handshake failures are logged at debug:\n{}", server.log());

    // SIGTERM stops a TLS server as cleanly as a plaintext one.
    assert!(server.terminate().await.success(), "{}", server.log());
}

#[tokio::test]
async fn mtls_accepts_trusted_client_certificates_only() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "main");
    let other = Pki::new(dir.path(), "other");
    let (crt, key) = pki.server("server", 1);
    let (client_crt, client_key) = pki.client("netbox", "/O=example/CN=netbox");
    let (rogue_crt, rogue_key) = other.client("rogue", "/O=example/CN=netbox");
    let ids = dir.path().join("identities.yaml");
    std::fs::write(&ids, "identities:\n  - {subject: \"CN=netbox,O=example\", role: operator}\n").unwrap();
    let server = start_tls(
        &[
            "--tls-cert",
            &crt,
            "--tls-key",
            &key,
            "--client-ca",
            &pki.path("ca.crt"),
            "--client-cert-identities",
            ids.to_str().unwrap(),
        ],
        client_tls(pki.ca()),
    )
    .await;

    // A certificate of the client CA: served; the server saw its subject as openssl prints it.
    assert_eq!(call_with(&server, client_tls(pki.ca()).identity(identity(&client_crt, &client_key))).await.unwrap(), 1);
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in", &client_crt])
        .output()
        .unwrap();
    let subject = String::from_utf8(out.stdout).unwrap().trim().trim_start_matches("subject=").to_string();
    assert_eq!(subject, "CN=netbox,O=example");
    assert!(
        server.log().contains(&format!("\"client_subject\":\"{subject}\"")),
        "no client subject in the log:\n{}",
        server.log()
    );

    // The same subject from another CA: refused at the handshake.
    let refused = call_with(&server, client_tls(pki.ca()).identity(identity(&rogue_crt, &rogue_key))).await;
    assert!(refused.is_err(), "an untrusted client certificate was accepted");
    // Without a certificate: accepted (such clients authenticate with tokens).
    assert_eq!(call_with(&server, client_tls(pki.ca())).await.unwrap(), 1);
    assert!(server.log().contains("TLS handshake failed"));
}

#[tokio::test]
async fn client_ca_is_reloaded_too() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "main");
    let next = Pki::new(dir.path(), "next");
    let (crt, key) = pki.server("server", 1);
    let (old_crt, old_key) = pki.client("old", "/CN=old");
    let (new_crt, new_key) = next.client("new", "/CN=new");
    let client_ca = dir.path().join("client-ca.crt");
    std::fs::copy(pki.path("ca.crt"), &client_ca).unwrap();
    let server = start_tls(
        &[
            "--tls-cert",
            &crt,
            "--tls-key",
            &key,
            "--client-ca",
            client_ca.to_str().unwrap(),
            "--tls-reload-seconds",
            "1",
        ],
        client_tls(pki.ca()),
    )
    .await;
    let with = |crt: &str, key: &str| client_tls(pki.ca()).identity(identity(crt, key));
    assert!(call_with(&server, with(&old_crt, &old_key)).await.is_ok());
    assert!(call_with(&server, with(&new_crt, &new_key)).await.is_err());

    // The client CA file now names the next CA: its certificates get in, the old ones no more.
    let tmp = dir.path().join("client-ca.tmp");
    std::fs::copy(next.path("ca.crt"), &tmp).unwrap();
    std::fs::rename(&tmp, &client_ca).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while call_with(&server, with(&new_crt, &new_key)).await.is_err() {
        assert!(Instant::now() < deadline, "the new client CA is not used:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(call_with(&server, with(&old_crt, &old_key)).await.is_err());
}

#[tokio::test]
async fn certificate_files_are_reloaded_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "main");
    let (crt1, key1) = pki.server("server1", 1);
    let (crt2, key2) = pki.server("server2", 2);
    // As Kubernetes mounts a Secret: cert and key are symlinks into a directory that a new
    // version replaces by swapping one symlink.
    let live = dir.path().join("live");
    std::fs::create_dir(&live).unwrap();
    let version = |n: u32, crt: &str, key: &str| {
        let d = live.join(format!("v{n}"));
        std::fs::create_dir(&d).unwrap();
        std::fs::copy(crt, d.join("tls.crt")).unwrap();
        std::fs::copy(key, d.join("tls.key")).unwrap();
        let tmp = live.join("data.tmp");
        std::os::unix::fs::symlink(format!("v{n}"), &tmp).unwrap();
        std::fs::rename(&tmp, live.join("data")).unwrap();
    };
    version(1, &crt1, &key1);
    std::os::unix::fs::symlink("data/tls.crt", live.join("tls.crt")).unwrap();
    std::os::unix::fs::symlink("data/tls.key", live.join("tls.key")).unwrap();
    let (crt, key) = (live.join("tls.crt").display().to_string(), live.join("tls.key").display().to_string());
    let server =
        start_tls(&["--tls-cert", &crt, "--tls-key", &key, "--tls-reload-seconds", "1"], client_tls(pki.ca())).await;
    let ca = pki.path("ca.crt");
    assert_eq!(served_serial(&server, &ca).await, "01");

    // An open connection with a server stream (health Watch) in flight.
    let channel = server.channel().await;
    let mut watch = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest { service: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(watch.message().await.unwrap().unwrap().status, 1);

    // A key that does not match the certificate: the old pair keeps serving, with a warning.
    version(2, &crt2, &key1);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !server.log().contains("TLS files changed but are not usable") {
        assert!(Instant::now() < deadline, "no warning about the mismatched key:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(server.log().contains("does not belong to the certificate"));
    assert_eq!(served_serial(&server, &ca).await, "01");

    // The right pair: new connections get the new certificate.
    version(3, &crt2, &key2);
    let deadline = Instant::now() + Duration::from_secs(15);
    while served_serial(&server, &ca).await != "02" {
        assert!(Instant::now() < deadline, "the new certificate is not served:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(server.log().matches("TLS files changed but are not usable").count(), 1, "one warning per change");

    // The connection opened before both changes is still up: its stream has not ended and it
    // still answers calls.
    let pending = tokio::time::timeout(Duration::from_millis(500), watch.message()).await;
    assert!(pending.is_err(), "the open stream ended: {pending:?}");
    assert_eq!(health(channel).await.unwrap(), 1);
}

fn run_serve(listen: &str, envs: &[(&str, &str)], db: &str, keys: &str, data: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_fabricsync"))
        .args(["serve", "--listen", listen, "--log-format", "json"])
        .envs(envs.iter().copied())
        .env("DATABASE_URL", db)
        .env("FABRICSYNC_ENCRYPTION_KEYS", keys)
        .env("FABRICSYNC_DATA_DIR", data)
        .env("FABRICSYNC_METRICS_LISTEN", "off")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn plaintext_only_on_loopback_unless_insecure_plaintext() {
    let db = support::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("0.0.0.0:{port}");
    // One set of keys: the database's token pepper is sealed with the first that serves it.
    let keys = Keyring::generate_key_line("test-key");

    let started = Instant::now();
    let out = run_serve(&listen, &[], &db, &keys, dir.path()).wait_with_output().unwrap();
    assert!(!out.status.success());
    let output = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = output.lines().filter(|l| l.contains("refusing to serve plaintext gRPC")).collect();
    assert_eq!(lines.len(), 1, "{output}");
    assert!(
        lines[0].contains(&listen) && lines[0].contains("--insecure-plaintext") && lines[0].contains("--tls-cert"),
        "{output}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "refused only after {:?}", started.elapsed());

    // With --insecure-plaintext it serves on all interfaces (reached here on 127.0.0.1).
    let server = ServerProcess::start_on(&db, &keys, listen.parse().unwrap(), &["--insecure-plaintext"], None).await;
    assert_eq!(health(server.channel().await).await.unwrap(), 1);
    drop(server);

    // The same through the environment, as the Helm chart sets it.
    let mut child = run_serve(&listen, &[("FABRICSYNC_INSECURE_PLAINTEXT", "true")], &db, &keys, dir.path());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(channel) = Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await {
            if health(channel).await.is_ok() {
                break;
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "exited with FABRICSYNC_INSECURE_PLAINTEXT=true");
        assert!(Instant::now() < deadline, "not serving with FABRICSYNC_INSECURE_PLAINTEXT=true");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}
