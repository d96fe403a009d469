//! Who may call the API, against a real server: every RPC of the proto descriptors for each
//! kind of caller, fabric scopes, revocation of open streams, expiry, client networks, the
//! audit log, the command line, limits, and tokens kept out of the database and the log.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use std::str::FromStr;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut};
use fabricsync::proto::access_service_client::AccessServiceClient;
use fabricsync::proto::*;
use prost::Message;
use support::gitservers::GitFixture;
use support::server::{AuthChannel, Bearer, ServerProcess, ADMIN_TOKEN};
use support::sync::{lab_wiring, Clients};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

/// Passes request and response bytes through unchanged: calls any RPC by its path.
#[derive(Clone, Default)]
struct Raw;
struct RawEncoder;
struct RawDecoder;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let bytes = src.chunk().to_vec();
        src.advance(bytes.len());
        Ok(Some(bytes))
    }
}

/// One RPC of the contract, with a request naming real objects where it has an id field.
struct Rpc {
    path: String,
    service: String,
    method: String,
    streaming: bool,
}

fn contract() -> (Vec<Rpc>, prost_types::FileDescriptorSet) {
    let set = prost_types::FileDescriptorSet::decode(fabricsync::proto::FILE_DESCRIPTOR_SET).expect("descriptors");
    let mut rpcs = Vec::new();
    for file in set.file.iter().filter(|f| f.package() == "fabricsync.v1") {
        for service in &file.service {
            for m in &service.method {
                rpcs.push(Rpc {
                    path: format!("/fabricsync.v1.{}/{}", service.name(), m.name()),
                    service: service.name().to_string(),
                    method: m.name().to_string(),
                    streaming: m.server_streaming(),
                });
            }
        }
    }
    // Deletes last, so the objects the other calls name exist while they run.
    rpcs.sort_by_key(|r| r.method.starts_with("Delete"));
    (rpcs, set)
}

struct Ids {
    fabric: String,
    repository: String,
    run: String,
}

/// The request of `rpc` with its top-level id fields set to real objects.
fn request(rpc: &Rpc, set: &prost_types::FileDescriptorSet, ids: &Ids) -> Vec<u8> {
    let input = set
        .file
        .iter()
        .flat_map(|f| f.service.iter())
        .flat_map(|s| s.method.iter().map(move |m| (s, m)))
        .find(|(s, m)| s.name() == rpc.service && m.name() == rpc.method)
        .map(|(_, m)| m.input_type().trim_start_matches(".fabricsync.v1.").to_string())
        .expect("method");
    let message =
        set.file.iter().flat_map(|f| f.message_type.iter()).find(|m| m.name() == input).expect("input message");
    let mut bytes = Vec::new();
    for field in &message.field {
        let value = match (field.name(), rpc.service.as_str()) {
            ("fabric_id", _) | ("id", "FabricService") => &ids.fabric,
            ("run_id", _) | ("id", "SyncService") => &ids.run,
            ("id", "RepositoryService") => &ids.repository,
            _ => continue,
        };
        prost::encoding::string::encode(u32::try_from(field.number()).expect("field number"), value, &mut bytes);
    }
    bytes
}

/// The status of calling `rpc` (for streams: of opening it).
async fn call(channel: &AuthChannel, rpc: &Rpc, body: Vec<u8>) -> Status {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("channel ready");
    let path = http::uri::PathAndQuery::from_str(&rpc.path).expect("path");
    let request = tonic::Request::new(body);
    let result = if rpc.streaming {
        grpc.server_streaming(request, path, Raw).await.map(|_| ())
    } else {
        grpc.unary(request, path, Raw).await.map(|_| ())
    };
    result.err().unwrap_or_else(|| Status::ok(""))
}

/// The code a refused call failed with.
fn refused<T>(result: Result<T, Status>) -> Code {
    result.map(|_| ()).expect_err("refused").code()
}

// The role table, written out independently of the server's rules.
fn least_role(rpc: &Rpc) -> &'static str {
    let m = rpc.method.as_str();
    let operator = [
        "StartSync",
        "CancelSyncRun",
        "DetectDrift",
        "Remediate",
        "TestRepositoryConnection",
        "TestClusterConnection",
        "ChangeObjects",
        "MigrateVersions",
        "AdoptDrift",
        "IngestRaw",
        "StartInventoryImport",
    ];
    if rpc.service == "AccessService" {
        return if m == "WhoAmI" { "viewer" } else { "admin" };
    }
    if operator.contains(&m) {
        "operator"
    } else if m.starts_with("Get")
        || m.starts_with("List")
        || m.starts_with("Stream")
        || m.starts_with("Watch")
        || m == "PlanSync"
    {
        "viewer"
    } else {
        "admin"
    }
}

fn rank(role: &str) -> u8 {
    ["viewer", "operator", "admin"].iter().position(|r| *r == role).map_or(0, |i| i as u8 + 1)
}

async fn create_token(access: &mut AccessServiceClient<AuthChannel>, request: CreateTokenRequest) -> String {
    access.create_token(request).await.expect("create token").into_inner().value
}

fn token_request(name: &str, role: Role) -> CreateTokenRequest {
    CreateTokenRequest { name: name.into(), role: role as i32, ..Default::default() }
}

/// A server with two fabrics (lab-a, prod-b) on their own repositories, each pulled once.
struct World {
    server: ServerProcess,
    lab: Ids,
    prod: Ids,
    _repos: (GitFixture, GitFixture),
}

async fn world() -> World {
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);
    let wiring = lab_wiring();
    let (lab_repo, prod_repo) = (
        GitFixture::with_files(&[("fabric/wiring.yaml", &wiring)]),
        GitFixture::with_files(&[("fabric/wiring.yaml", &wiring)]),
    );
    let mut ids = Vec::new();
    for (name, repo) in [("lab-a", &lab_repo), ("prod-b", &prod_repo)] {
        let fabric = c.fabric(name, &repo.file_url(), "fabric", SyncPolicy::default()).await;
        let run = c.sync(&fabric, "", false).await;
        let repository = c
            .fabrics
            .get_fabric(GetFabricRequest { id: fabric.clone() })
            .await
            .unwrap()
            .into_inner()
            .fabric
            .unwrap()
            .repository_id;
        ids.push(Ids { fabric, repository, run: run.id });
    }
    let prod = ids.pop().unwrap();
    let lab = ids.pop().unwrap();
    World { server, lab, prod, _repos: (lab_repo, prod_repo) }
}

#[tokio::test]
async fn every_rpc_is_allowed_or_refused_by_role() {
    let w = world().await;
    let admin = w.server.channel().await;
    let mut access = AccessServiceClient::new(admin.clone());
    let mut callers: Vec<(&str, AuthChannel)> = Vec::new();
    for (name, role) in [("viewer", Role::Viewer), ("operator", Role::Operator)] {
        let token = create_token(&mut access, token_request(name, role)).await;
        callers.push((name, w.server.channel_as(Bearer::new(&token)).await));
    }
    let revoked = create_token(&mut access, token_request("gone", Role::Admin)).await;
    access.revoke_token(RevokeTokenRequest { name: "gone".into() }).await.expect("revoke");
    let expired = create_token(
        &mut access,
        CreateTokenRequest {
            ttl: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
            ..token_request("brief", Role::Admin)
        },
    )
    .await;
    let elsewhere = create_token(
        &mut access,
        CreateTokenRequest { allowed_networks: vec!["10.0.0.0/8".into()], ..token_request("remote", Role::Admin) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await; // past the expiry and the revocation cache
    let refused: Vec<(&str, AuthChannel)> = vec![
        ("no token", w.server.channel_as(Bearer::none()).await),
        (
            "bogus token",
            w.server
                .channel_as(Bearer::new("fsk_abcdefghijkl_notarealtokennotarealtokennotarealtokennotarealtoken"))
                .await,
        ),
        ("revoked", w.server.channel_as(Bearer::new(&revoked)).await),
        ("expired", w.server.channel_as(Bearer::new(&expired)).await),
        ("wrong network", w.server.channel_as(Bearer::new(&elsewhere)).await),
    ];
    let (rpcs, set) = contract();
    assert!(rpcs.len() >= 30, "{} RPCs", rpcs.len());
    for rpc in &rpcs {
        let body = request(rpc, &set, &w.lab);
        for (who, channel) in &refused {
            let status = call(channel, rpc, body.clone()).await;
            assert_eq!(status.code(), Code::Unauthenticated, "{who} -> {}: {status:?}", rpc.path);
        }
        for (who, channel) in &callers {
            let status = call(channel, rpc, body.clone()).await;
            let allowed = rank(who) >= rank(least_role(rpc));
            let denied = status.code() == Code::PermissionDenied;
            assert_eq!(!denied, allowed, "{who} -> {}: {status:?}", rpc.path);
            if denied {
                assert!(
                    status.message().contains(&format!("needs role {}", least_role(rpc))),
                    "{}: {}",
                    rpc.path,
                    status.message()
                );
            } else {
                assert_ne!(status.code(), Code::Unauthenticated, "{who} -> {}: {status:?}", rpc.path);
            }
        }
        let status = call(&admin, rpc, body).await;
        assert!(
            !matches!(status.code(), Code::PermissionDenied | Code::Unauthenticated),
            "admin -> {}: {status:?}",
            rpc.path
        );
    }
    // The refusals said why, and named the token where it is known.
    let status = call(&refused[3].1, &rpcs[0], Vec::new()).await;
    assert!(status.message().contains("\"brief\" has expired"), "{status:?}");
    let status = call(&refused[4].1, &rpcs[0], Vec::new()).await;
    assert!(status.message().contains("may not be used from 127.0.0.1"), "{status:?}");
    let status = call(&refused[0].1, &rpcs[0], Vec::new()).await;
    assert!(status.message().contains("missing credentials"), "{status:?}");
    // Health stays open for probes.
    let mut health = tonic_health::pb::health_client::HealthClient::new(w.server.plain_channel().await);
    assert!(health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.is_ok());
}

#[tokio::test]
async fn a_fabric_scope_hides_other_fabrics_and_their_repositories_and_runs() {
    let w = world().await;
    let mut access = AccessServiceClient::new(w.server.channel().await);
    let scoped = |role, name: &str| CreateTokenRequest { fabrics: vec!["lab-*".into()], ..token_request(name, role) };
    let viewer = create_token(&mut access, scoped(Role::Viewer, "lab-viewer")).await;
    let admin = create_token(&mut access, scoped(Role::Admin, "lab-admin")).await;
    let mut v = Clients::new(w.server.channel_as(Bearer::new(&viewer)).await);

    let fabrics = v.fabrics.list_fabrics(ListFabricsRequest::default()).await.unwrap().into_inner();
    assert_eq!(fabrics.fabrics.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["lab-a"]);
    assert_eq!(fabrics.total_size, 1);
    let repos = v.repos.list_repositories(ListRepositoriesRequest::default()).await.unwrap().into_inner();
    assert_eq!(repos.repositories.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [w.lab.repository.as_str()]);
    let runs = v.sync.list_sync_runs(ListSyncRunsRequest::default()).await.unwrap().into_inner();
    assert!(!runs.runs.is_empty() && runs.runs.iter().all(|r| r.fabric_id == w.lab.fabric), "{runs:?}");

    // Out of scope reads as absent: NOT_FOUND, like an id that does not exist.
    assert_eq!(refused(v.fabrics.get_fabric(GetFabricRequest { id: w.prod.fabric.clone() }).await), Code::NotFound);
    assert_eq!(
        refused(v.repos.get_repository(GetRepositoryRequest { id: w.prod.repository.clone() }).await),
        Code::NotFound
    );
    assert_eq!(refused(v.sync.get_sync_run(GetSyncRunRequest { id: w.prod.run.clone() }).await), Code::NotFound);
    let watch = WatchFabricEventsRequest { fabric_id: w.prod.fabric.clone(), ..Default::default() };
    assert_eq!(refused(v.sync.watch_fabric_events(watch).await), Code::NotFound);
    // Beyond the role is refused before any lookup, so an existing fabric outside the scope and
    // an id that exists nowhere read alike.
    for fabric_id in [w.prod.fabric.clone(), uuid::Uuid::new_v4().to_string()] {
        let status = v
            .sync
            .start_sync(StartSyncRequest { fabric_id, mode: SyncMode::Pull as i32, ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    }
    // Inside the scope, beyond the role: PERMISSION_DENIED naming what is missing.
    let status = v
        .sync
        .start_sync(StartSyncRequest {
            fabric_id: w.lab.fabric.clone(),
            mode: SyncMode::Pull as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("StartSync needs role operator") && status.message().contains("lab-viewer"),
        "{status:?}"
    );
    assert!(v.fabrics.get_fabric(GetFabricRequest { id: w.lab.fabric.clone() }).await.is_ok());

    // A scoped admin manages its fabrics only, and nothing that reaches beyond them.
    let mut a = Clients::new(w.server.channel_as(Bearer::new(&admin)).await);
    let create = |name: &str, repository: &str| CreateFabricRequest {
        fabric: Some(Fabric { name: name.into(), repository_id: repository.into(), ..Default::default() }),
        cluster: None,
    };
    let status = a.fabrics.create_fabric(create("prod-c", &w.lab.repository)).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("\"prod-c\" is outside the scope"), "{status:?}");
    assert_eq!(
        a.fabrics.create_fabric(create("lab-c", &w.prod.repository)).await.unwrap_err().code(),
        Code::NotFound,
        "another scope's repository"
    );
    assert!(a.fabrics.create_fabric(create("lab-c", &w.lab.repository)).await.is_ok());
    // A repository it shares with a fabric outside its scope: readable, but not its to change.
    let mut full = Clients::new(w.server.channel().await);
    full.fabrics.create_fabric(create("lab-d", &w.prod.repository)).await.expect("a lab fabric on prod's repository");
    assert!(a.repos.get_repository(GetRepositoryRequest { id: w.prod.repository.clone() }).await.is_ok());
    let repoint = UpdateRepositoryRequest {
        repository: Some(Repository {
            id: w.prod.repository.clone(),
            url: "https://git.example.org/evil.git".into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["url".into()] }),
        ..Default::default()
    };
    assert_eq!(refused(a.repos.update_repository(repoint).await), Code::NotFound);
    assert_eq!(
        refused(
            a.repos.test_repository_connection(TestRepositoryConnectionRequest { id: w.prod.repository.clone() }).await
        ),
        Code::NotFound
    );
    let repo = CreateRepositoryRequest {
        repository: Some(Repository {
            name: "mine".into(),
            url: "https://git.example.org/x.git".into(),
            ..Default::default()
        }),
        auth: None,
        ..Default::default()
    };
    let status = a.repos.create_repository(repo).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("without a fabric scope"), "{status:?}");
    let mut scoped_access = AccessServiceClient::new(w.server.channel_as(Bearer::new(&admin)).await);
    assert_eq!(
        scoped_access.create_token(token_request("escalate", Role::Admin)).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let me = scoped_access.who_am_i(WhoAmIRequest {}).await.unwrap().into_inner();
    assert_eq!(
        (me.principal.as_str(), me.fabrics.clone(), me.role),
        ("lab-admin", vec!["lab-*".to_string()], Role::Admin as i32)
    );
}

#[tokio::test]
async fn revoking_a_token_ends_its_open_streams_and_its_next_calls() {
    let w = world().await;
    let mut access = AccessServiceClient::new(w.server.channel().await);
    let token = create_token(&mut access, token_request("watcher", Role::Operator)).await;
    let mut c = Clients::new(w.server.channel_as(Bearer::new(&token)).await);
    let watch = WatchFabricEventsRequest { fabric_id: w.lab.fabric.clone(), ..Default::default() };
    let mut stream = c.sync.watch_fabric_events(watch).await.expect("open watch").into_inner();
    let drift = StreamDriftRequest { fabric_id: w.lab.fabric.clone(), ..Default::default() };
    let mut drift_stream = c.drift.stream_drift(drift).await.expect("open drift stream").into_inner();
    let revoked_at = Instant::now();
    access.revoke_token(RevokeTokenRequest { name: "watcher".into() }).await.expect("revoke");
    for ended in [end_of(&mut stream).await, end_of(&mut drift_stream).await] {
        let status = ended
            .expect("the stream did not end within 5 s of the revocation")
            .expect_err("the stream ended with an error");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    assert!(revoked_at.elapsed() < Duration::from_secs(5));
    let status = c.fabrics.get_fabric(GetFabricRequest { id: w.lab.fabric.clone() }).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("\"watcher\" was revoked"), "{status:?}");
    let listed = access
        .list_tokens(ListTokensRequest { include_revoked: true, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let watcher = listed.tokens.iter().find(|t| t.name == "watcher").expect("listed");
    assert!(watcher.revoke_time.is_some() && watcher.last_use_time.is_some(), "{watcher:?}");
    let active = access.list_tokens(ListTokensRequest::default()).await.unwrap().into_inner();
    assert!(active.tokens.iter().all(|t| t.name != "watcher"));
}

/// Reads a stream until it ends, for at most 5 s.
async fn end_of<T>(stream: &mut tonic::Streaming<T>) -> Result<Result<(), Status>, tokio::time::error::Elapsed> {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                other => return other.map(|_| ()),
            }
        }
    })
    .await
}

#[tokio::test]
async fn mutating_calls_runs_and_refusals_are_audited_with_the_actor() {
    let w = world().await;
    let channel = w.server.channel_as(Bearer::new(ADMIN_TOKEN).acting_for("alice")).await;
    let mut c = Clients::new(channel.clone());
    let run = c.sync(&w.lab.fabric, "", true).await;
    assert_eq!(run.requested_by, "alice via admin");
    let update = UpdateFabricRequest {
        fabric: Some(Fabric { id: w.lab.fabric.clone(), description: "audited".into(), ..Default::default() }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["description".into()] }),
        ..Default::default()
    };
    c.fabrics.update_fabric(update).await.expect("update");
    let mut bogus = Clients::new(
        w.server.channel_as(Bearer::new("fsk_abcdefghijkl_notarealtokennotarealtokennotarealtokennotarealtoken")).await,
    );
    assert!(bogus.fabrics.get_fabric(GetFabricRequest { id: w.lab.fabric.clone() }).await.is_err());
    let mut access = AccessServiceClient::new(channel);
    let viewer = create_token(&mut access, token_request("reader", Role::Viewer)).await;
    let mut reader = Clients::new(w.server.channel_as(Bearer::new(&viewer).acting_for("bob")).await);
    assert!(reader
        .sync
        .start_sync(StartSyncRequest {
            fabric_id: w.prod.fabric.clone(),
            mode: SyncMode::Pull as i32,
            ..Default::default()
        })
        .await
        .is_err());
    // A read is not audited.
    reader.fabrics.get_fabric(GetFabricRequest { id: w.lab.fabric.clone() }).await.expect("read");

    // The writer is asynchronous: poll briefly.
    let deadline = Instant::now() + Duration::from_secs(5);
    let events = loop {
        let listed = access
            .list_audit_events(ListAuditEventsRequest { page_size: 100, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        if listed.events.iter().any(|e| e.principal == "reader") || Instant::now() > deadline {
            break listed.events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let find = |rpc: &str, principal: &str| {
        events
            .iter()
            .find(|e| e.rpc.ends_with(rpc) && e.principal == principal)
            .unwrap_or_else(|| panic!("no {rpc} by {principal} in {events:#?}"))
    };
    let start = find("SyncService/StartSync", "admin");
    assert_eq!((start.actor.as_str(), start.code.as_str(), start.fabric_name.as_str()), ("alice", "OK", "lab-a"));
    assert_eq!(start.targets.get("fabric_id"), Some(&w.lab.fabric));
    assert!(start.peer.starts_with("127.0.0.1:"), "{start:?}");
    let update = find("FabricService/UpdateFabric", "admin");
    assert_eq!((update.code.as_str(), update.fabric_id.as_str()), ("OK", w.lab.fabric.as_str()));
    let denied = find("SyncService/StartSync", "reader");
    assert_eq!((denied.code.as_str(), denied.actor.as_str()), ("PERMISSION_DENIED", "bob"));
    assert_eq!(denied.targets.get("fabric_id"), Some(&w.prod.fabric), "the refused call's target is recorded");
    assert!(
        events.iter().any(|e| e.principal.is_empty() && e.code == "UNAUTHENTICATED" && e.message == "invalid token"),
        "{events:#?}"
    );
    assert!(!events.iter().any(|e| e.rpc.ends_with("GetFabric") && e.code == "OK"), "reads are not audited");
    let created = find("AccessService/CreateToken", "admin");
    assert_eq!(created.targets.get("name").map(String::as_str), Some("reader"));

    // Filters: by principal, by fabric name, by time.
    let by = |filter: &str| ListAuditEventsRequest { filter: filter.into(), ..Default::default() };
    let alice = access.list_audit_events(by("actor=alice")).await.unwrap().into_inner();
    assert!(!alice.events.is_empty() && alice.events.iter().all(|e| e.actor == "alice"));
    let prod = access.list_audit_events(by("fabric=lab-a")).await.unwrap().into_inner();
    assert!(prod.events.iter().all(|e| e.fabric_name == "lab-a") && !prod.events.is_empty());
    let future = ListAuditEventsRequest {
        start_time: Some(prost_types::Timestamp { seconds: 4_000_000_000, nanos: 0 }),
        ..Default::default()
    };
    assert!(access.list_audit_events(future).await.unwrap().into_inner().events.is_empty());
    let bad = access.list_audit_events(by("colour=red")).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    // Bad token requests name the field; nothing is created.
    use tonic_types::StatusExt;
    let fields = |status: Status| {
        status.get_details_bad_request().map(|b| b.field_violations.into_iter().map(|v| v.field).collect::<Vec<_>>())
    };
    let bad_name = access.create_token(token_request("Not A Name", Role::Viewer)).await.unwrap_err();
    assert_eq!(fields(bad_name), Some(vec!["name".to_string()]));
    let no_role = access
        .create_token(CreateTokenRequest { name: "nameless-role".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(fields(no_role), Some(vec!["role".to_string()]));
    let bad_net = access
        .create_token(CreateTokenRequest {
            allowed_networks: vec!["10.0.0.0/99".into()],
            ..token_request("net", Role::Viewer)
        })
        .await
        .unwrap_err();
    assert_eq!(fields(bad_net), Some(vec!["allowed_networks".to_string()]));
    let listed = access.list_tokens(ListTokensRequest::default()).await.unwrap().into_inner();
    assert!(listed.tokens.iter().all(|t| !["nameless-role", "net"].contains(&t.name.as_str())), "{listed:?}");
}

#[tokio::test]
async fn tokens_are_kept_only_as_hashes_and_never_logged() {
    let db = support::fresh_database().await;
    let server = ServerProcess::start_first_run(&db, &fabricsync::crypto::Keyring::generate_key_line("k")).await;
    let path = server.data_dir().join("admin-token");
    let admin = std::fs::read_to_string(&path).expect("the first start writes admin-token");
    let admin = admin.trim();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(server.log().contains("admin-token"), "the log names the file");
    let mut access = AccessServiceClient::new(server.channel_as(Bearer::new(admin)).await);
    let made = access.create_token(token_request("ci", Role::Operator)).await.unwrap().into_inner();
    let mut ci = AccessServiceClient::new(server.channel_as(Bearer::new(&made.value)).await);
    assert_eq!(ci.who_am_i(WhoAmIRequest {}).await.unwrap().into_inner().principal, "ci");
    assert!(made.value.len() >= 4 + 12 + 1 + 43, "256 bits of secret: {}", made.value.len());
    let listed = format!("{:?}", access.list_tokens(ListTokensRequest::default()).await.unwrap().into_inner());
    let dump = support::pg_dump(&db);
    let log = server.log();
    for secret in [admin, made.value.as_str()] {
        // After `fsk_<12-character lookup>_`; base64url may itself contain `_`.
        let secret_part = &secret["fsk_".len() + 12 + 1..];
        for (place, text) in [("pg_dump", &dump), ("log", &log), ("ListTokens", &listed)] {
            assert!(!text.contains(secret_part), "a token's secret is in the {place}");
        }
    }
    assert!(dump.contains("ci") && dump.contains("operator"), "the token's name and role are stored");
    // A second server on the same database does not make another admin token.
    let second = ServerProcess::start_first_run(&db, &server.keys).await;
    assert!(!second.data_dir().join("admin-token").exists());
}

#[tokio::test]
async fn the_command_line_creates_lists_and_revokes_tokens() {
    let db = support::fresh_database().await;
    let server = ServerProcess::start(&db).await;
    let cli = |args: &[&str]| server.cli(args);
    let (ok, _, stderr) = cli(&["token", "create", "--name", "x", "--role", "root"]);
    assert!(!ok && stderr.contains("unknown role"), "{stderr}");
    let (ok, _, stderr) = cli(&["token", "create", "--name", "x", "--role", "viewer", "--expires", "soon"]);
    assert!(!ok && stderr.contains("soon"), "{stderr}");
    let (ok, token, stderr) =
        cli(&["token", "create", "--name", "ops", "--role", "operator", "--fabrics", "lab-*,edge", "--expires", "1h"]);
    assert!(ok, "{stderr}");
    let token = token.trim();
    assert!(token.starts_with("fsk_") && !token.contains('\n'), "stdout is only the token: {token:?}");
    let mut ops = AccessServiceClient::new(server.channel_as(Bearer::new(token)).await);
    let me = ops.who_am_i(WhoAmIRequest {}).await.expect("the CLI's token works").into_inner();
    assert_eq!(
        (me.principal.as_str(), me.role, me.fabrics.clone()),
        ("ops", Role::Operator as i32, vec!["lab-*".to_string(), "edge".to_string()])
    );
    assert!(me.expire_time.is_some());
    let (ok, listed, _) = cli(&["token", "list"]);
    assert!(
        ok && listed.contains("ops")
            && listed.contains("operator")
            && listed.contains("lab-*,edge")
            && !listed.contains(token),
        "{listed}"
    );
    let (ok, _, stderr) = cli(&["token", "revoke", "ops"]);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = cli(&["token", "revoke", "ops"]);
    assert!(!ok && stderr.contains("no active token named \"ops\""), "{stderr}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match ops.who_am_i(WhoAmIRequest {}).await {
            Err(status) if status.code() == Code::Unauthenticated => break,
            _ => assert!(Instant::now() < deadline, "the revoked token still works after 5 s"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn limits_per_principal_answer_resource_exhausted_with_a_retry_hint() {
    let db = support::fresh_database().await;
    let args = ["--rate-limit-per-second", "1", "--rate-limit-burst", "5", "--max-streams-per-principal", "1"];
    let server = ServerProcess::start_with(&db, &fabricsync::crypto::Keyring::generate_key_line("k"), &args).await;
    let mut access = AccessServiceClient::new(server.channel().await);
    let mut codes = Vec::new();
    for _ in 0..8 {
        codes.push(access.who_am_i(WhoAmIRequest {}).await.err().map(|s| s.code()));
    }
    assert!(codes[..4].iter().all(Option::is_none), "the burst is allowed: {codes:?}");
    let exhausted = access.who_am_i(WhoAmIRequest {}).await.unwrap_err();
    assert_eq!(exhausted.code(), Code::ResourceExhausted, "{codes:?}");
    use tonic_types::StatusExt;
    let retry = exhausted.get_details_retry_info().and_then(|r| r.retry_delay).expect("a retry hint");
    assert!(retry > Duration::ZERO && retry <= Duration::from_secs(1), "{retry:?}");
    assert!(exhausted.message().contains("retry in"), "{exhausted:?}");
    // Another principal has its own budget.
    let other = create_token_via_cli(&server, "other");
    let mut other = AccessServiceClient::new(server.channel_as(Bearer::new(&other)).await);
    assert!(other.who_am_i(WhoAmIRequest {}).await.is_ok());
    // One open stream per principal.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut c = Clients::new(server.channel_as(Bearer::new(&create_token_via_cli(&server, "streamer"))).await);
    let fabric = c
        .fabric(
            "lab",
            &GitFixture::with_files(&[("fabric/a.yaml", &lab_wiring())]).file_url(),
            "fabric",
            SyncPolicy::default(),
        )
        .await;
    let watch = || WatchFabricEventsRequest { fabric_id: fabric.clone(), ..Default::default() };
    let first = c.sync.watch_fabric_events(watch()).await.expect("first stream");
    let second = c.sync.watch_fabric_events(watch()).await.unwrap_err();
    assert_eq!(second.code(), Code::ResourceExhausted);
    assert!(second.message().contains("open streams"), "{second:?}");
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.sync.watch_fabric_events(watch()).await.is_err() {
        assert!(Instant::now() < deadline, "a closed stream did not free its slot");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An admin token made with the command line.
fn create_token_via_cli(server: &ServerProcess, name: &str) -> String {
    let (ok, token, stderr) = server.cli(&["token", "create", "--name", name, "--role", "admin"]);
    assert!(ok, "{stderr}");
    token.trim().to_string()
}

#[tokio::test]
async fn reflection_needs_a_token_unless_public() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::{server_reflection_request::MessageRequest, ServerReflectionRequest};
    let list = || ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    for (args, open) in [(&[][..], false), (&["--public-reflection"][..], true)] {
        let server = ServerProcess::start_with(
            &support::fresh_database().await,
            &fabricsync::crypto::Keyring::generate_key_line("k"),
            args,
        )
        .await;
        let mut anonymous = ServerReflectionClient::new(server.plain_channel().await);
        let answer = anonymous.server_reflection_info(tokio_stream::iter([list()])).await;
        assert_eq!(answer.is_ok(), open, "{args:?}: {answer:?}");
        let mut authed = ServerReflectionClient::new(server.channel().await);
        assert!(authed.server_reflection_info(tokio_stream::iter([list()])).await.is_ok());
        // A scoped token too: reflection is a stream of requests, never read ahead by the layer.
        let mut access = AccessServiceClient::new(server.channel().await);
        let scoped = create_token(
            &mut access,
            CreateTokenRequest { fabrics: vec!["lab-*".into()], ..token_request("lab-reader", Role::Viewer) },
        )
        .await;
        let mut reflection = ServerReflectionClient::new(server.channel_as(Bearer::new(&scoped)).await);
        let answer = tokio::time::timeout(Duration::from_secs(10), async {
            let mut stream = reflection.server_reflection_info(tokio_stream::iter([list()])).await?.into_inner();
            stream.message().await
        })
        .await
        .expect("reflection answered a scoped token");
        assert!(answer.expect("reflection").is_some());
    }
}
