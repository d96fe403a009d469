//! RepositoryService.TestConnection end to end: a real server process and real git servers on
//! loopback (file://, git daemon, HTTP with token/basic auth in front of git http-backend, sshd).
#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use fabricsync::proto::repository_auth::Method;
use fabricsync::proto::repository_service_client::RepositoryServiceClient;
use fabricsync::proto::*;
use support::gitservers::{GitDaemon, GitFixture, HttpGitServer, SshServer, HTTP_PASSWORD, HTTP_TOKEN, HTTP_USER};
use support::server::ServerProcess;

type Client = RepositoryServiceClient<support::server::AuthChannel>;

async fn create(client: &mut Client, name: &str, url: &str, auth: Option<Method>) -> Repository {
    let request = CreateRepositoryRequest {
        repository: Some(Repository { name: name.into(), url: url.into(), ..Default::default() }),
        auth: auth.map(|method| RepositoryAuth { method: Some(method) }),
        ..Default::default()
    };
    client.create_repository(request).await.expect("create repository").into_inner().repository.expect("repository")
}

async fn test_connection(client: &mut Client, id: &str) -> TestRepositoryConnectionResponse {
    client
        .test_repository_connection(TestRepositoryConnectionRequest { id: id.into() })
        .await
        .expect("TestConnection answers; failures are in the result")
        .into_inner()
}

/// A reachable result: default branch `main`, the fixture's refs, a latency; status stored.
fn assert_reachable(result: &TestRepositoryConnectionResponse, refs: i32) {
    assert!(result.reachable, "{result:?}");
    assert_eq!(result.default_branch, "main");
    assert_eq!(result.ref_count, refs);
    assert!(result.latency.is_some());
    assert_eq!(result.failure, ConnectionFailure::Unspecified as i32);
    let stored = result.repository.as_ref().expect("repository");
    assert_eq!(stored.connection_status, ConnectionStatus::Reachable as i32);
    assert!(stored.last_validated.is_some() && stored.validation_error.is_empty());
}

fn assert_failed(result: &TestRepositoryConnectionResponse, failure: ConnectionFailure, secrets: &[&str]) {
    assert!(!result.reachable, "{result:?}");
    assert_eq!(result.failure, failure as i32, "{result:?}");
    let stored = result.repository.as_ref().expect("repository");
    assert_eq!(stored.connection_status, ConnectionStatus::Failed as i32);
    assert_eq!(stored.validation_error, result.message);
    for secret in secrets {
        assert!(!result.message.contains(secret), "secret in message: {}", result.message);
    }
}

fn fixture() -> GitFixture {
    let repo = GitFixture::with_files(&[("fabric/switches.yaml", "kind: Switch\n")]);
    repo.tag("v1", false);
    repo
}

#[tokio::test]
async fn file_and_git_daemon_remotes() {
    let repo = fixture();
    let daemon = GitDaemon::start(&repo.srv_root());
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut client = RepositoryServiceClient::new(server.channel().await);

    let file = create(&mut client, "over-file", &repo.file_url(), None).await;
    assert_reachable(&test_connection(&mut client, &file.id).await, 2);

    let git = create(&mut client, "over-git", &daemon.url("fabric.git"), None).await;
    assert_reachable(&test_connection(&mut client, &git.id).await, 2);

    let missing = create(&mut client, "not-a-repo", &daemon.url("not-a-repo"), None).await;
    assert_failed(&test_connection(&mut client, &missing.id).await, ConnectionFailure::NotARepository, &[]);

    // Nothing listens on a freed port: refused, immediately.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let refused = create(&mut client, "refused", &format!("git://127.0.0.1:{port}/fabric.git"), None).await;
    assert_failed(&test_connection(&mut client, &refused.id).await, ConnectionFailure::ConnectionRefused, &[]);
}

#[tokio::test]
async fn http_with_token_and_basic_credentials() {
    let repo = fixture();
    let http = HttpGitServer::start(&repo.srv_root());
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut client = RepositoryServiceClient::new(server.channel().await);
    let url = http.url("fabric.git");

    let token = Method::Token(TokenAuth { token: HTTP_TOKEN.into(), username: String::new() });
    let with_token = create(&mut client, "http-token", &url, Some(token)).await;
    assert_reachable(&test_connection(&mut client, &with_token.id).await, 2);

    let basic = Method::Basic(BasicAuth { username: HTTP_USER.into(), password: HTTP_PASSWORD.into() });
    let with_basic = create(&mut client, "http-basic", &url, Some(basic)).await;
    assert_reachable(&test_connection(&mut client, &with_basic.id).await, 2);

    let wrong = Method::Basic(BasicAuth { username: HTTP_USER.into(), password: "wrong-Secret-0042".into() });
    let with_wrong = create(&mut client, "http-wrong", &url, Some(wrong)).await;
    assert_failed(
        &test_connection(&mut client, &with_wrong.id).await,
        ConnectionFailure::Authentication,
        &["wrong-Secret-0042"],
    );

    let anonymous = create(&mut client, "http-anonymous", &url, None).await;
    assert_failed(&test_connection(&mut client, &anonymous.id).await, ConnectionFailure::Authentication, &[]);

    // A correct password set later by Update turns the same repository reachable.
    let fix = UpdateRepositoryRequest {
        repository: Some(Repository { id: with_wrong.id.clone(), ..Default::default() }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["auth".into()] }),
        auth: Some(RepositoryAuth {
            method: Some(Method::Basic(BasicAuth { username: HTTP_USER.into(), password: HTTP_PASSWORD.into() })),
        }),
        etag: String::new(),
        ..Default::default()
    };
    client.update_repository(fix).await.expect("update auth");
    assert_reachable(&test_connection(&mut client, &with_wrong.id).await, 2);
}

#[tokio::test]
async fn ssh_with_key_and_known_hosts() {
    let Some(sshd) = SshServer::start() else { return };
    let repo = fixture();
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut client = RepositoryServiceClient::new(server.channel().await);
    let url = sshd.url(&repo.bare_path());

    let key = Method::SshKey(SshKeyAuth {
        private_key: sshd.client.private_key.clone(),
        known_hosts: sshd.known_hosts.clone(),
    });
    let with_key = create(&mut client, "ssh-key", &url, Some(key)).await;
    assert_reachable(&test_connection(&mut client, &with_key.id).await, 2);

    let other = sshd.other_key();
    let wrong =
        Method::SshKey(SshKeyAuth { private_key: other.private_key.clone(), known_hosts: sshd.known_hosts.clone() });
    let with_wrong = create(&mut client, "ssh-wrong-key", &url, Some(wrong)).await;
    let result = test_connection(&mut client, &with_wrong.id).await;
    let key_body = other.private_key.lines().nth(1).expect("key body");
    assert_failed(&result, ConnectionFailure::Authentication, &[key_body]);

    // A known_hosts entry for some other key: the host key does not match.
    let stranger = other.public_key.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    let bad_hosts = format!("[127.0.0.1]:{} {stranger}\n", sshd.port);
    let pinned = Method::SshKey(SshKeyAuth { private_key: sshd.client.private_key.clone(), known_hosts: bad_hosts });
    let with_bad_hosts = create(&mut client, "ssh-host-mismatch", &url, Some(pinned)).await;
    assert_failed(&test_connection(&mut client, &with_bad_hosts.id).await, ConnectionFailure::HostKey, &[]);

    assert!(!server.log().contains(key_body), "private key in the server log");
}
