//! Operating the server: secrets at rest, key rotation, migrations from several replicas at
//! once, reflection and health, graceful shutdown.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use std::process::Command;

use fabricsync::crypto::{self, Keyring, Sealed};
use fabricsync::db::repositories::SecretSlot;
use fabricsync::proto::fabric_service_client::FabricServiceClient;
use fabricsync::proto::inventory_service_client::InventoryServiceClient;
use fabricsync::proto::repository_auth::Method;
use fabricsync::proto::repository_service_client::RepositoryServiceClient;
use fabricsync::proto::*;
use prost::Message;
use support::server::ServerProcess;

const TOKEN: &str = "ghp_TOKEN_PLAINTEXT_4f9a1c";
const PASSWORD: &str = "PASSWORD_PLAINTEXT_77e2b0";
const KEY_MARKER: &str = "KEYMATERIALPLAINTEXT0b1d9e";
const BEARER: &str = "BEARER_PLAINTEXT_eyJhbGciOi";
const WEBHOOK: &str = "WEBHOOK_PLAINTEXT_5c81d2e4";
const INVENTORY_BEARER: &str = "INVENTORY_BEARER_PLAINTEXT_a93f";

fn ssh_key() -> String {
    format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{KEY_MARKER}\n-----END OPENSSH PRIVATE KEY-----\n")
}

fn with_auth(name: &str, url: &str, method: Method) -> CreateRepositoryRequest {
    CreateRepositoryRequest {
        repository: Some(Repository { name: name.into(), url: url.into(), ..Default::default() }),
        auth: Some(RepositoryAuth { method: Some(method) }),
        ..Default::default()
    }
}

/// Creates repositories and a fabric holding each kind of secret; returns the repository ids.
async fn store_secrets(server: &ServerProcess) -> Vec<String> {
    let mut repos = RepositoryServiceClient::new(server.channel().await);
    let mut fabrics = FabricServiceClient::new(server.channel().await);
    let requests = [
        CreateRepositoryRequest {
            webhook_secret: WEBHOOK.into(),
            ..with_auth(
                "tok",
                "https://git.example.org/a.git",
                Method::Token(TokenAuth { token: TOKEN.into(), username: String::new() }),
            )
        },
        with_auth(
            "basic",
            "https://git.example.org/b.git",
            Method::Basic(BasicAuth { username: "netops".into(), password: PASSWORD.into() }),
        ),
        with_auth(
            "ssh",
            "ssh://git@127.0.0.1:2222/c.git",
            Method::SshKey(SshKeyAuth { private_key: ssh_key(), known_hosts: String::new() }),
        ),
    ];
    let mut ids = Vec::new();
    for request in requests {
        let response = repos.create_repository(request).await.unwrap().into_inner();
        let encoded = response.encode_to_vec();
        for secret in [TOKEN, PASSWORD, KEY_MARKER, WEBHOOK] {
            assert!(!encoded.windows(secret.len()).any(|w| w == secret.as_bytes()), "response carries a secret");
        }
        let repository = response.repository.unwrap();
        assert!(repository.auth.unwrap().has_secret);
        ids.push(repository.id);
    }
    let fabric = fabrics
        .create_fabric(CreateFabricRequest {
            fabric: Some(Fabric { name: "lab".into(), repository_id: ids[0].clone(), ..Default::default() }),
            cluster: Some(ClusterConnectionInput {
                server_url: "https://127.0.0.1:6443".into(),
                bearer_token: BEARER.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!format!("{fabric:?}").contains(BEARER));
    let mut inventory = InventoryServiceClient::new(server.channel().await);
    let put = inventory
        .put_inventory_cluster(PutInventoryClusterRequest {
            fabric_id: fabric.fabric.unwrap().id,
            name: "edge".into(),
            connection: Some(ClusterConnectionInput {
                server_url: "https://127.0.0.1:7443".into(),
                bearer_token: INVENTORY_BEARER.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(put.cluster.as_ref().unwrap().connection.as_ref().unwrap().has_bearer_token);
    assert!(!format!("{put:?}").contains(INVENTORY_BEARER));
    ids
}

#[tokio::test]
async fn secrets_appear_nowhere_in_the_database_dump_logs_or_responses() {
    let db = support::fresh_database().await;
    let server = ServerProcess::start(&db).await;
    let ids = store_secrets(&server).await;
    // Read them back through every read RPC too.
    let mut repos = RepositoryServiceClient::new(server.channel().await);
    let listed = repos.list_repositories(ListRepositoriesRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.repositories.len(), 3);
    let got = repos.get_repository(GetRepositoryRequest { id: ids[1].clone() }).await.unwrap().into_inner();
    assert_eq!(got.repository.unwrap().auth.unwrap().username, "netops");

    let dump = support::pg_dump(&db);
    assert!(dump.contains("https://git.example.org/a.git"), "the dump has the repositories");
    let log = server.log();
    assert!(log.contains("repository created"), "the log has the requests");
    for secret in [TOKEN, PASSWORD, KEY_MARKER, BEARER, WEBHOOK, INVENTORY_BEARER] {
        assert!(!dump.contains(secret), "pg_dump contains a plaintext secret");
        assert!(!log.contains(secret), "the server log contains a plaintext secret");
    }
}

#[tokio::test]
async fn rotate_keys_reseals_with_the_new_primary_and_old_values_still_open() {
    let db = support::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("keys");
    std::fs::write(&key_file, Keyring::generate_key_line("old")).unwrap();
    let keys = std::fs::read_to_string(&key_file).unwrap();
    let server = ServerProcess::start_with(&db, &keys, &[]).await;
    let ids = store_secrets(&server).await;
    drop(server);

    let status = Command::new(env!("CARGO_BIN_EXE_fabricsync"))
        .args(["rotate-keys", "--add-key", "new", "--log-format", "json"])
        .arg("--key-file")
        .arg(&key_file)
        .env("DATABASE_URL", &db)
        .env_remove("FABRICSYNC_ENCRYPTION_KEYS")
        .status()
        .unwrap();
    assert!(status.success());
    let rotated = Keyring::load(&key_file).unwrap();
    assert_eq!(rotated.primary_key_id(), "new");

    let mut conn = <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&db).await.unwrap();
    let sealed = fabricsync::db::repositories::sealed_secrets(&mut conn).await.unwrap();
    assert_eq!(sealed.len(), 4);
    for (id, slot, blob, key_id) in sealed {
        assert_eq!(key_id, "new");
        let (context, wanted): (String, Vec<String>) = match slot {
            SecretSlot::Credentials => {
                (crypto::repository_secret_context(id), vec![TOKEN.into(), PASSWORD.into(), ssh_key()])
            }
            SecretSlot::Webhook => (crypto::repository_webhook_context(id), vec![WEBHOOK.into()]),
        };
        let opened = rotated.open_secret(&Sealed { key_id, blob }, &context).unwrap();
        assert!(wanted.iter().any(|w| w == opened.expose()), "{slot:?}");
    }
    let tokens = fabricsync::db::fabrics::sealed_tokens(&mut conn).await.unwrap();
    assert_eq!(tokens.len(), 1);
    let (id, blob, key_id) = tokens.into_iter().next().unwrap();
    assert_eq!(
        rotated.open_secret(&Sealed { key_id, blob }, &crypto::fabric_token_context(id)).unwrap().expose(),
        BEARER
    );
    let tokens = fabricsync::db::inventory::sealed_cluster_tokens(&mut conn).await.unwrap();
    assert_eq!(tokens.len(), 1);
    let (fabric_id, name, blob, key_id) = tokens.into_iter().next().unwrap();
    assert_eq!(key_id, "new");
    let context = crypto::inventory_cluster_token_context(fabric_id, &name);
    assert_eq!(rotated.open_secret(&Sealed { key_id, blob }, &context).unwrap().expose(), INVENTORY_BEARER);
    assert_eq!(ids.len(), 3);

    // The server with only the new key serves the re-sealed data.
    let new_only = Keyring::generate_key_line("unrelated") + &std::fs::read_to_string(&key_file).unwrap();
    let server = ServerProcess::start_with(&db, &new_only, &[]).await;
    let mut repos = RepositoryServiceClient::new(server.channel().await);
    assert_eq!(repos.list_repositories(ListRepositoriesRequest::default()).await.unwrap().into_inner().total_size, 3);
}

#[tokio::test]
async fn concurrent_migrations_from_two_replicas_both_succeed() {
    let db = support::empty_database().await;
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_fabricsync"))
            .args(["migrate", "--log-format", "json"])
            .env("DATABASE_URL", &db)
            .output()
            .unwrap()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let logs = format!("{}{}", String::from_utf8_lossy(&a.stderr), String::from_utf8_lossy(&b.stderr));
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations")).unwrap().count();
    assert!(
        logs.contains(&format!("\"applied\":{migrations}")) && logs.contains("\"applied\":0"),
        "exactly one applied the {migrations} migrations: {logs}"
    );
    // And a third start is a no-op.
    assert!(spawn().status.success());
}

#[tokio::test]
async fn health_and_reflection_list_every_service() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut reflection = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let response = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected {response:?}")
    };
    let mut names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    for expected in [
        "fabricsync.v1.DriftService",
        "fabricsync.v1.FabricService",
        "fabricsync.v1.RepositoryService",
        "fabricsync.v1.SyncService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }

    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest { service: "fabricsync.v1.FabricService".into() })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully() {
    let mut server = ServerProcess::start(&support::fresh_database().await).await;
    let mut repos = RepositoryServiceClient::new(server.channel().await);
    repos.list_repositories(ListRepositoriesRequest::default()).await.unwrap();
    let status = server.terminate().await;
    assert!(status.success(), "exit status {status:?}");
    let log = server.log();
    assert!(log.contains("shutting down") && log.contains("fabricsync stopped"), "{log}");
}

#[tokio::test]
async fn the_embedded_database_names_the_directory_postgres_cannot_reach() {
    // As root, PostgreSQL runs as `postgres`, who cannot enter a 0700 directory of root's.
    let dir = tempfile::tempdir().expect("temp dir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let root = std::process::Command::new("id").arg("-u").output().expect("id").stdout == b"0\n";
    let started = fabricsync::embedded_pg::EmbeddedPostgres::start(&dir.path().join("pg")).await;
    if root {
        let message = started.expect_err("postgres cannot reach a 0700 directory of root's").to_string();
        let blocked = dir.path().canonicalize().expect("canonical").display().to_string();
        assert!(message.contains(&format!("{blocked} is not searchable")), "{message}");
        assert!(message.contains(&format!("chmod o+x {blocked}")), "{message}");
        assert!(!dir.path().join("pg/data").exists(), "nothing was initialized");
    } else {
        // Run as its owner, PostgreSQL reaches the directory.
        started.expect("started").stop().await.expect("stopped");
    }
}
