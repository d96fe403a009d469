//! Fabrics and their clusters end to end: a real kube-apiserver (tests/kube-harness) with the
//! Hedgehog CRDs, a real server, a real PostgreSQL and Git repositories.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use fabricsync::proto::sync_progress_event::Payload;
use fabricsync::proto::*;
use support::gitservers::{free_port, GitFixture};
use support::kube::{KubeCluster, ADMIN_TOKEN, NOBODY_TOKEN};
use support::proxy::{Fault, Proxy};
use support::server::ServerProcess;
use support::sync::{cluster_input, counters, lab_wiring, server_doc, server_files, status, Clients, LAB_OBJECTS};

const LABEL: &str = "fabricsync.dev/fabric";

async fn test_connection(c: &mut Clients, id: &str) -> TestClusterConnectionResponse {
    c.fabrics
        .test_cluster_connection(TestClusterConnectionRequest { id: id.into() })
        .await
        .expect("test connection")
        .into_inner()
}

async fn set_cluster(c: &mut Clients, id: &str, cluster: ClusterConnectionInput) {
    let fabric = Fabric { id: id.into(), ..Default::default() };
    let mask = prost_types::FieldMask { paths: vec!["cluster".into()] };
    c.fabrics
        .update_fabric(UpdateFabricRequest {
            fabric: Some(fabric),
            update_mask: Some(mask),
            cluster: Some(cluster),
            etag: String::new(),
        })
        .await
        .expect("update fabric");
}

/// The stored resource with this key (namespace "default").
async fn resource(c: &mut Clients, fabric_id: &str, group: &str, kind: &str, name: &str) -> Resource {
    let key = ResourceKey { group: group.into(), kind: kind.into(), name: name.into(), ..Default::default() };
    let request =
        GetResourceRequest { fabric_id: fabric_id.into(), resource: Some(get_resource_request::Resource::Key(key)) };
    c.fabrics.get_resource(request).await.expect("get resource").into_inner().resource.expect("resource")
}

/// Waits until the watch has stored a live object for this key; panics after 30 s.
async fn wait_live(c: &mut Clients, fabric_id: &str, group: &str, kind: &str, name: &str) {
    let key = ResourceKey { group: group.into(), kind: kind.into(), name: name.into(), ..Default::default() };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let request = GetResourceRequest {
            fabric_id: fabric_id.into(),
            resource: Some(get_resource_request::Resource::Key(key.clone())),
        };
        let found = c.fabrics.get_resource(request).await.ok().and_then(|r| r.into_inner().resource);
        if found.is_some_and(|r| r.live.is_some()) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the watch did not see {kind} {name}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn failure(r: &TestClusterConnectionResponse) -> ClusterFailure {
    ClusterFailure::try_from(r.failure).unwrap_or_default()
}

#[tokio::test]
async fn connection_checks_and_least_privilege_rbac() {
    let kube = KubeCluster::start();
    let repo = GitFixture::with_files(&[("fabric/wiring.yaml", &lab_wiring())]);
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);
    let id = c
        .fabric_on_cluster(
            "lab",
            &repo.file_url(),
            "fabric",
            SyncPolicy::default(),
            Some(cluster_input(&kube, NOBODY_TOKEN)),
        )
        .await;

    // A token without rights: the server answers, every needed permission is named as missing.
    let r = test_connection(&mut c, &id).await;
    assert!(r.reachable, "{r:?}");
    assert_eq!(r.server_version, "v1.36.3");
    assert_eq!(failure(&r), ClusterFailure::Forbidden, "{r:?}");
    assert!(
        r.message.contains("missing permissions:") && r.message.contains("patch vpcs.vpc.githedgehog.com"),
        "{}",
        r.message
    );
    assert_eq!(r.crds.len(), 18, "{:?}", r.crds);
    assert!(r.crds.iter().any(|crd| crd.kind == "VPC" && crd.versions == ["v1beta1"]));
    assert!(r.permissions.iter().all(|p| !p.allowed));
    let fabric = c
        .fabrics
        .get_fabric(GetFabricRequest { id: id.clone() })
        .await
        .expect("get")
        .into_inner()
        .fabric
        .expect("fabric");
    assert_eq!(fabric.connection_status, ConnectionStatus::Failed as i32);

    // The generated RBAC, applied by an admin, gives a token with exactly what is needed.
    let rbac = c
        .fabrics
        .generate_rbac_manifests(GenerateRbacManifestsRequest {
            fabric_id: id.clone(),
            service_account_name: String::new(),
            namespace: "fabricsync-system".into(),
        })
        .await
        .expect("rbac")
        .into_inner();
    kube.kubectl_ok(&["create", "namespace", "fabricsync-system"]);
    kube.apply_yaml(&rbac.yaml);
    let token = kube.service_account_token(&rbac.token_secret_name);
    set_cluster(&mut c, &id, cluster_input(&kube, &token)).await;
    let r = test_connection(&mut c, &id).await;
    assert_eq!(failure(&r), ClusterFailure::Unspecified, "{}", r.message);
    assert_eq!(r.permissions.len(), 18 * 6);
    assert!(r.permissions.iter().all(|p| p.allowed), "{:?}", r.permissions.iter().find(|p| !p.allowed));
    let fabric = c
        .fabrics
        .get_fabric(GetFabricRequest { id: id.clone() })
        .await
        .expect("get")
        .into_inner()
        .fabric
        .expect("fabric");
    assert_eq!(fabric.connection_status, ConnectionStatus::Reachable as i32);
    // Least privilege: nothing beyond the Hedgehog kinds.
    let can = kube.kubectl_as(&token, &["auth", "can-i", "list", "secrets", "-A"]);
    assert_eq!(String::from_utf8_lossy(&can.stdout).trim(), "no");

    // Failures are classified and never echo the token.
    set_cluster(&mut c, &id, cluster_input(&kube, "not-a-valid-token")).await;
    let r = test_connection(&mut c, &id).await;
    assert_eq!((r.reachable, failure(&r)), (false, ClusterFailure::Unauthenticated), "{r:?}");
    assert!(!r.message.contains("not-a-valid-token"));

    let other_ca = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ca.pem")).expect("ca");
    set_cluster(
        &mut c,
        &id,
        ClusterConnectionInput { ca_certificate_pem: other_ca, ..cluster_input(&kube, ADMIN_TOKEN) },
    )
    .await;
    let r = test_connection(&mut c, &id).await;
    assert_eq!(failure(&r), ClusterFailure::Tls, "{r:?}");

    let closed = format!("https://127.0.0.1:{}", free_port());
    set_cluster(&mut c, &id, ClusterConnectionInput { server_url: closed, ..cluster_input(&kube, ADMIN_TOKEN) }).await;
    let r = test_connection(&mut c, &id).await;
    assert_eq!(failure(&r), ClusterFailure::Unreachable, "{r:?}");

    let log = server.log();
    for secret in [token.as_str(), ADMIN_TOKEN, NOBODY_TOKEN, "not-a-valid-token"] {
        assert!(!log.contains(secret), "a token is in the server log");
    }
}

/// The token the service-account token controller writes into the generated Secret.
fn count(kube: &KubeCluster, resource: &str, selector: Option<&str>) -> usize {
    let mut args = vec!["get", resource, "-A", "-o", "name"];
    if let Some(s) = selector {
        args.extend(["-l", s]);
    }
    kube.kubectl_ok(&args).lines().filter(|l| !l.is_empty()).count()
}

#[tokio::test]
async fn apply_in_waves_skips_unchanged_reports_conflicts_and_prunes() {
    let kube = KubeCluster::start();
    let repo = GitFixture::with_files(&[("fabric/wiring.yaml", &lab_wiring())]);
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);
    let policy = SyncPolicy { prune: true, ..Default::default() };
    let id =
        c.fabric_on_cluster("lab", &repo.file_url(), "fabric", policy, Some(cluster_input(&kube, ADMIN_TOKEN))).await;

    // Dry run: the server validates every object, nothing is created.
    let run = c.sync_mode(&id, SyncMode::Full, true, false).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
    assert_eq!(counters(&run).applied, LAB_OBJECTS);
    assert!(run.changes.iter().all(|ch| ch.action == ChangeAction::Create as i32));
    assert_eq!(count(&kube, "connections.wiring.githedgehog.com", None), 0);

    // FULL: pulled, stored, applied in waves, every object labelled with the fabric.
    let run = c.sync_mode(&id, SyncMode::Full, false, false).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
    let n = counters(&run);
    assert_eq!((n.created, n.applied, n.pruned), (LAB_OBJECTS, LAB_OBJECTS, 0), "{n:?}");
    assert_eq!(count(&kube, "connections.wiring.githedgehog.com", Some(&format!("{LABEL}=lab"))), 24);
    assert_eq!(count(&kube, "switches.wiring.githedgehog.com", Some(&format!("{LABEL}=lab"))), 6);
    let events = c.events(&run.id, 0).await;
    let waves: Vec<i32> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::Applying(a)) => Some(a.wave),
            _ => None,
        })
        .collect();
    assert!(!waves.is_empty() && waves.windows(2).all(|w| w[0] <= w[1]), "{waves:?}");
    let last = events
        .iter()
        .rev()
        .find_map(|e| match &e.payload {
            Some(Payload::Applying(a)) => Some(a.clone()),
            _ => None,
        })
        .expect("applying");
    assert_eq!((last.done, last.total), (LAB_OBJECTS, LAB_OBJECTS));
    let external = resource(&mut c, &id, "vpc.githedgehog.com", "External", "default").await;
    assert_eq!(external.apply_status, ApplyStatus::Applied as i32);
    assert!(!external.uid.is_empty() && !external.live_resource_version.is_empty());
    assert_eq!(external.last_applied_hash, external.content_hash);

    // Nothing changed: nothing is sent, and with the watch active the cluster is not even listed.
    wait_drift(&mut c, &id, "External", "default", ResourceDriftStatus::InSync).await;
    let run = c.sync_mode(&id, SyncMode::Apply, false, false).await;
    let n = counters(&run);
    assert_eq!((status(&run), n.applied, n.unchanged), (SyncRunStatus::Succeeded, 0, LAB_OBJECTS), "{run:?}");
    assert!(
        server.log().contains(r#""source":"watch","listed_kinds":0"#),
        "the apply listed the cluster though the watch is active"
    );

    // Someone edits a field fabricsync applied: that makes them its manager, so the next apply
    // (once the watch has seen it) conflicts and names them; `force` takes the field back and
    // restores the value.
    patch_community(&kube, "65101:9999");
    wait_drift(&mut c, &id, "External", "default", ResourceDriftStatus::Drifted).await;
    let run = c.sync_mode(&id, SyncMode::Apply, false, false).await;
    assert_eq!(status(&run), SyncRunStatus::Failed, "{run:?}");
    let conflict = run.diagnostics.iter().find(|d| d.code == "apply.conflict").expect("conflict diagnostic");
    assert!(
        conflict.message.contains("kubectl-patch") && conflict.message.contains("External default/default"),
        "{}",
        conflict.message
    );
    assert_eq!(counters(&run).applied, 1, "only the moved object is sent");
    assert!(server.log().contains(r#""source":"watch","listed_kinds":1"#), "only the moved object's kind is listed");
    let run = c.sync_mode(&id, SyncMode::Apply, false, true).await;
    assert_eq!((status(&run), counters(&run).applied), (SyncRunStatus::Succeeded, 1), "{run:?}");
    let community = || {
        kube.kubectl_ok(&[
            "get",
            "externals.vpc.githedgehog.com",
            "default",
            "-n",
            "default",
            "-o",
            "jsonpath={.spec.inboundCommunity}",
        ])
    };
    assert_eq!(community(), "65101:3001");
    assert_eq!(run.changes.len(), 1);
    assert_eq!(run.changes[0].changed_fields, ["/spec/inboundCommunity"]);

    // A change in Git: FULL stores it and applies exactly that object.
    let changed = lab_wiring().replace("inboundCommunity: 65101:3001", "inboundCommunity: 65101:3002");
    repo.commit(&[("fabric/wiring.yaml", &changed)], "new community");
    let run = c.sync_mode(&id, SyncMode::Full, false, false).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
    assert_eq!((counters(&run).updated, counters(&run).applied), (1, 1), "{run:?}");
    assert_eq!(community(), "65101:3002");

    // Prune: an object that left Git goes; an object without the fabric's label stays.
    kube.apply_yaml("apiVersion: wiring.githedgehog.com/v1beta1\nkind: Server\nmetadata:\n  name: hand-made\n  namespace: default\n");
    let without_server = changed
        .replace("kind: Server\nmetadata:\n  name: server-1\n", "kind: Server\nmetadata:\n  name: server-1-gone\n");
    repo.commit(&[("fabric/wiring.yaml", &without_server)], "rename a server");
    let run = c.sync_mode(&id, SyncMode::Full, false, false).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
    assert_eq!((counters(&run).pruned, counters(&run).applied), (1, 1), "{run:?}");
    let servers = kube.kubectl_ok(&["get", "servers.wiring.githedgehog.com", "-n", "default", "-o", "name"]);
    assert!(
        !servers.contains("/server-1\n") && servers.contains("/server-1-gone") && servers.contains("/hand-made"),
        "{servers}"
    );
}

#[tokio::test]
async fn invalid_sync_wave_applies_nothing_and_apply_needs_a_cluster() {
    let kube = KubeCluster::start();
    let annotated = lab_wiring().replacen(
        "kind: External\nmetadata:\n  name: default\n  annotations:\n",
        "kind: External\nmetadata:\n  name: default\n  annotations:\n    fabricsync.dev/sync-wave: soon\n",
        1,
    );
    assert_ne!(annotated, lab_wiring());
    let repo = GitFixture::with_files(&[("fabric/wiring.yaml", &annotated)]);
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);
    let id = c
        .fabric_on_cluster(
            "lab",
            &repo.file_url(),
            "fabric",
            SyncPolicy::default(),
            Some(cluster_input(&kube, ADMIN_TOKEN)),
        )
        .await;
    let run = c.sync_mode(&id, SyncMode::Full, false, false).await;
    assert_eq!(status(&run), SyncRunStatus::Failed, "{run:?}");
    let d = run.diagnostics.iter().find(|d| d.code == "apply.sync_wave").expect("sync-wave diagnostic");
    assert!(d.message.contains("External default/default") && d.message.contains("\"soon\""), "{}", d.message);
    assert_eq!(counters(&run).applied, 0);
    assert_eq!(count(&kube, "switches.wiring.githedgehog.com", None), 0);

    // Without a cluster connection APPLY is refused up front.
    let plain = c.fabric("no-cluster", &repo.file_url(), "fabric", SyncPolicy::default()).await;
    let request = StartSyncRequest { fabric_id: plain, mode: SyncMode::Apply as i32, ..Default::default() };
    let err = c.sync.start_sync(request).await.expect_err("refused");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("cluster.server_url"));
}

async fn watch_status(c: &mut Clients, id: &str) -> (WatchStatus, String) {
    let f = c
        .fabrics
        .get_fabric(GetFabricRequest { id: id.into() })
        .await
        .expect("get")
        .into_inner()
        .fabric
        .expect("fabric");
    (WatchStatus::try_from(f.watch_status).unwrap_or_default(), f.watch_error)
}

/// Reads the stream until an event matches; panics after 30 s.
async fn next_matching(
    stream: &mut tonic::Streaming<WatchFabricEventsResponse>,
    seen: &mut Vec<FabricEvent>,
    want: impl Fn(&FabricEvent) -> bool,
) -> FabricEvent {
    loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(30), stream.message())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no matching event in 30 s; seen {:?}",
                    seen.iter().map(|e| (e.r#type, e.key.clone())).collect::<Vec<_>>()
                )
            })
            .expect("stream")
            .expect("stream open");
        let event = message.event.expect("event");
        seen.push(event.clone());
        if want(&event) {
            return event;
        }
    }
}

fn is(event: &FabricEvent, kind: FabricEventType, name: &str) -> bool {
    event.r#type == kind as i32 && event.key.as_ref().is_some_and(|k| k.name == name)
}

#[tokio::test]
async fn one_process_watches_every_process_streams_and_a_survivor_takes_over() {
    let kube = KubeCluster::start();
    let repo = GitFixture::with_files(&[("fabric/wiring.yaml", &lab_wiring())]);
    let db = support::fresh_database().await;
    let keys = fabricsync::crypto::Keyring::generate_key_line("shared");
    let mut servers =
        [ServerProcess::start_with(&db, &keys, &[]).await, ServerProcess::start_with(&db, &keys, &[]).await];
    let mut c = Clients::new(servers[0].channel().await);
    let id = c
        .fabric_on_cluster(
            "lab",
            &repo.file_url(),
            "fabric",
            SyncPolicy::default(),
            Some(cluster_input(&kube, ADMIN_TOKEN)),
        )
        .await;
    let run = c.sync_mode(&id, SyncMode::Full, false, false).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");

    wait_active(&mut c, &id, std::time::Duration::from_secs(60)).await;
    // Exactly one process watches.
    let watching: Vec<usize> = (0..2).filter(|&i| servers[i].log().contains("\"watching\"")).collect();
    assert_eq!(watching.len(), 1, "watchers: {watching:?}");
    let (watcher, other) = (watching[0], 1 - watching[0]);

    // The stored objects' live view comes from the watch, with field managers. The watch may
    // have listed the cluster before the run applied anything: wait for its ADDED events.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let switch = loop {
        let switch = resource(&mut c, &id, "wiring.githedgehog.com", "Switch", "ds3000-01").await;
        if switch.live.is_some() || std::time::Instant::now() > deadline {
            break switch;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(switch.live.is_some() && !switch.live_resource_version.is_empty(), "{switch:?}");
    assert!(
        switch
            .field_managers
            .iter()
            .any(|m| m.manager == "fabricsync" && m.fields.iter().any(|f| f.starts_with("/spec/"))),
        "{:?}",
        switch.field_managers
    );

    // The other process serves the stream; kinds filter; ADDED for an object only the cluster has.
    let mut o = Clients::new(servers[other].channel().await);
    let request = WatchFabricEventsRequest { fabric_id: id.clone(), from_sequence: 0, kinds: vec!["Server".into()] };
    let mut stream = o.sync.watch_fabric_events(request).await.expect("watch").into_inner();
    let mut seen = Vec::new();
    kube.apply_yaml("apiVersion: wiring.githedgehog.com/v1beta1\nkind: Server\nmetadata:\n  name: hand-made\n  namespace: default\n");
    let added = next_matching(&mut stream, &mut seen, |e| is(e, FabricEventType::Added, "hand-made")).await;
    assert!(added.object.is_some() && !added.resource_version.is_empty());
    assert!(seen.iter().all(|e| e.key.as_ref().is_some_and(|k| k.kind == "Server")), "kinds filter");
    let orphan = resource(&mut o, &id, "wiring.githedgehog.com", "Server", "hand-made").await;
    assert!(orphan.desired.is_none() && orphan.live.is_some());

    kube.kubectl_ok(&["label", "servers.wiring.githedgehog.com", "server-1", "-n", "default", "rack=r1"]);
    let modified = next_matching(&mut stream, &mut seen, |e| is(e, FabricEventType::Modified, "server-1")).await;
    assert_eq!(modified.field_manager, "kubectl-label");

    // Reconnecting after the last sequence: no duplicate, no gap.
    drop(stream);
    let last = modified.sequence;
    kube.kubectl_ok(&["delete", "servers.wiring.githedgehog.com", "hand-made", "-n", "default"]);
    let request = WatchFabricEventsRequest { fabric_id: id.clone(), from_sequence: last, kinds: vec![] };
    let mut stream = o.sync.watch_fabric_events(request).await.expect("watch").into_inner();
    let mut resumed = Vec::new();
    next_matching(&mut stream, &mut resumed, |e| is(e, FabricEventType::Deleted, "hand-made")).await;
    assert!(resumed.iter().all(|e| e.sequence > last), "replayed an old event");
    assert!(resumed.windows(2).all(|w| w[0].sequence < w[1].sequence));

    // The watching process dies; the survivor takes the watch over and keeps streaming.
    servers[watcher].kill_hard();
    kube.kubectl_ok(&["label", "servers.wiring.githedgehog.com", "server-2", "-n", "default", "rack=r2"]);
    next_matching(&mut stream, &mut resumed, |e| is(e, FabricEventType::Modified, "server-2")).await;
    assert!(servers[other].log().contains("\"watching\""), "the survivor did not take over");
}

async fn activity(c: &mut Clients, id: &str) -> (WatchStatus, WatchActivity) {
    let f = c.get_fabric(id).await;
    (WatchStatus::try_from(f.watch_status).unwrap_or_default(), f.watch_activity.expect("activity"))
}

#[tokio::test]
async fn the_watch_follows_the_chosen_kinds_counts_what_it_sees_and_can_be_disabled() {
    let kube = KubeCluster::start();
    let repo = GitFixture::with_files(&[("fabric/wiring.yaml", &lab_wiring())]);
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);
    let id = c
        .fabric_on_cluster(
            "lab",
            &repo.file_url(),
            "fabric",
            SyncPolicy::default(),
            Some(cluster_input(&kube, ADMIN_TOKEN)),
        )
        .await;
    let fabric = c.get_fabric(&id).await;
    let update = |fabric: Fabric, path: &str, etag: String| UpdateFabricRequest {
        fabric: Some(fabric),
        update_mask: Some(prost_types::FieldMask { paths: vec![path.into()] }),
        cluster: None,
        etag,
    };
    let servers_only = Fabric {
        id: id.clone(),
        watch: Some(WatchSettings { enabled: true, kinds: vec!["Server".into()], ..Default::default() }),
        ..Default::default()
    };
    c.fabrics.update_fabric(update(servers_only, "watch.kinds", fabric.etag)).await.expect("choose kinds");
    let run = c.sync_mode(&id, SyncMode::Full, false, false).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");

    // Every lab Server seen, and nothing else: the watch follows only the chosen kind.
    let servers = lab_wiring().matches("\nkind: Server\n").count() as i64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (state, seen) = loop {
        let (state, seen) = activity(&mut c, &id).await;
        if (state == WatchStatus::Active && seen.event_count >= servers) || std::time::Instant::now() > deadline {
            break (state, seen);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(state, WatchStatus::Active);
    assert_eq!(seen.event_count, servers, "{seen:?}");
    assert!(seen.started_time.is_some() && seen.last_event_time.is_some(), "{seen:?}");
    let request = WatchFabricEventsRequest { fabric_id: id.clone(), from_sequence: 0, kinds: vec![] };
    let mut stream = c.sync.watch_fabric_events(request).await.expect("watch").into_inner();
    let mut events = Vec::new();
    kube.kubectl_ok(&["label", "servers.wiring.githedgehog.com", "server-1", "-n", "default", "rack=r1"]);
    kube.kubectl_ok(&["label", "switches.wiring.githedgehog.com", "ds3000-01", "-n", "default", "rack=r1"]);
    next_matching(&mut stream, &mut events, |e| is(e, FabricEventType::Modified, "server-1")).await;
    assert!(events.iter().all(|e| e.key.as_ref().is_some_and(|k| k.kind == "Server")), "{events:?}");
    // The count is stored beside the event, not before the stream delivers it: wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let after = loop {
        let (_, after) = activity(&mut c, &id).await;
        if after.event_count > servers || std::time::Instant::now() > deadline {
            break after;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(after.event_count, servers + 1, "{after:?}");
    let seconds = |t: Option<prost_types::Timestamp>| t.map(|t| (t.seconds, t.nanos));
    assert!(seconds(after.last_event_time) > seconds(seen.last_event_time), "{after:?}");

    // A burst: objects created and changed at once reach the watch together (one batch may
    // hold an object twice). Each is ADDED then MODIFIED, and the watch never fails.
    let names: Vec<String> = (0..40).map(|i| format!("burst-{i:02}")).collect();
    let yaml: Vec<String> = names.iter().map(|n| server_doc(n)).collect();
    kube.apply_yaml(&yaml.join("---\n"));
    kube.kubectl_ok(&["label", "servers.wiring.githedgehog.com", "-n", "default", "-l", "!rack", "burst=yes"]);
    let last = names.last().cloned().unwrap_or_default();
    next_matching(&mut stream, &mut events, |e| is(e, FabricEventType::Modified, &last)).await;
    // The object's own events (a health change of it may come between them, when the watch's
    // health pass runs in the burst).
    let health = FabricEventType::HealthChanged as i32;
    for name in &names {
        let kinds: Vec<i32> = events
            .iter()
            .filter(|e| e.r#type != health && e.key.as_ref().is_some_and(|k| &k.name == name))
            .map(|e| e.r#type)
            .collect();
        assert_eq!(kinds, [FabricEventType::Added as i32, FabricEventType::Modified as i32], "{name}");
    }
    assert!(!server.log().contains("watch failed"), "the watch failed");
    assert_eq!(watch_status(&mut c, &id).await.0, WatchStatus::Active);

    // Disabled, the watch stops and says so; its activity ends.
    let fabric = c.get_fabric(&id).await;
    let off = Fabric {
        id: id.clone(),
        watch: Some(WatchSettings { enabled: false, ..Default::default() }),
        ..Default::default()
    };
    c.fabrics.update_fabric(update(off, "watch.enabled", fabric.etag)).await.expect("disable");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (state, seen) = activity(&mut c, &id).await;
        if state == WatchStatus::Inactive {
            assert!(seen.started_time.is_none(), "{seen:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {state:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A resource's drift; NOT_FOUND while no side (Git, the watch) has recorded it.
async fn resource_drift(c: &mut Clients, id: &str, kind: &str, name: &str) -> Result<ResourceDrift, tonic::Status> {
    let group = if kind.starts_with("External") { "vpc.githedgehog.com" } else { "wiring.githedgehog.com" };
    let key = ResourceKey { group: group.into(), kind: kind.into(), name: name.into(), ..Default::default() };
    let request = GetResourceDriftRequest {
        fabric_id: id.into(),
        resource: Some(get_resource_drift_request::Resource::Key(key)),
    };
    Ok(c.drift.get_resource_drift(request).await?.into_inner().drift.expect("drift"))
}

/// Polls a resource's drift until it has `status` (an object only the cluster has is not
/// found until the watch has recorded it); panics after 30 s.
async fn wait_drift(c: &mut Clients, id: &str, kind: &str, name: &str, status: ResourceDriftStatus) -> ResourceDrift {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let d = match resource_drift(c, id, kind, name).await {
            Ok(d) if d.status == status as i32 => return d,
            Err(e) if e.code() != tonic::Code::NotFound => panic!("drift of {kind} {name}: {e:?}"),
            seen => seen,
        };
        assert!(std::time::Instant::now() < deadline, "{kind} {name} not {status:?}: {d:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn drift_names_fields_values_and_who_changed_them() {
    let kube = KubeCluster::start();
    // ds3000-01 asks for link-flap protection without its settings: the API server fills in the
    // CRD's defaults, which must not count as drift.
    let wiring =
        lab_wiring().replacen("  name: ds3000-01\nspec:\n", "  name: ds3000-01\nspec:\n  linkFlapErrDisable: {}\n", 1);
    assert_ne!(wiring, lab_wiring());
    let repo = GitFixture::with_files(&[("fabric/wiring.yaml", &wiring)]);
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);
    let id = c
        .fabric_on_cluster(
            "lab",
            &repo.file_url(),
            "fabric",
            SyncPolicy::default(),
            Some(cluster_input(&kube, ADMIN_TOKEN)),
        )
        .await;
    let run = c.sync_mode(&id, SyncMode::Full, false, false).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
    wait_drift(&mut c, &id, "External", "default", ResourceDriftStatus::InSync).await;
    let defaulted = kube.kubectl_ok(&[
        "get",
        "switches.wiring.githedgehog.com",
        "ds3000-01",
        "-n",
        "default",
        "-o",
        "jsonpath={.spec.linkFlapErrDisable.recoveryInterval}",
    ]);
    assert_eq!(defaulted, "300", "the API server defaults the field");
    wait_drift(&mut c, &id, "Switch", "ds3000-01", ResourceDriftStatus::InSync).await;
    let summary = c
        .drift
        .detect_drift(DetectDriftRequest { fabric_id: id.clone() })
        .await
        .expect("detect")
        .into_inner()
        .summary
        .expect("summary");
    assert_eq!((summary.drift_status, summary.drift_count), (DriftStatus::InSync as i32, 0), "{summary:?}");

    // Another manager changes a field: drifted, with the path, both values and who did it.
    patch_community(&kube, "65101:9999");
    let d = wait_drift(&mut c, &id, "External", "default", ResourceDriftStatus::Drifted).await;
    assert_eq!(d.fields.len(), 1, "{d:?}");
    let field = &d.fields[0];
    assert_eq!(field.path, "/spec/inboundCommunity");
    let text = |v: &Option<prost_types::Value>| match v.as_ref().and_then(|v| v.kind.clone()) {
        Some(prost_types::value::Kind::StringValue(s)) => s,
        other => panic!("not a string: {other:?}"),
    };
    assert_eq!((text(&field.desired), text(&field.live)), ("65101:3001".to_string(), "65101:9999".to_string()));
    assert_eq!(field.managers.first().map(|m| m.manager.as_str()), Some("kubectl-patch"), "{:?}", field.managers);
    assert!(
        d.unified_diff.contains("-  inboundCommunity: \"65101:3001\"")
            || d.unified_diff.contains("-  inboundCommunity: 65101:3001"),
        "{}",
        d.unified_diff
    );
    assert!(d.score > 0.0 && d.score <= 1.0);

    // Deleted live object: missing. Labelled extra: orphaned. An unlabelled extra is not ours.
    kube.kubectl_ok(&["delete", "servers.wiring.githedgehog.com", "server-1", "-n", "default"]);
    wait_drift(&mut c, &id, "Server", "server-1", ResourceDriftStatus::Missing).await;
    kube.apply_yaml(&format!("apiVersion: wiring.githedgehog.com/v1beta1\nkind: Server\nmetadata:\n  name: stray\n  namespace: default\n  labels:\n    {LABEL}: lab\n"));
    kube.apply_yaml("apiVersion: wiring.githedgehog.com/v1beta1\nkind: Server\nmetadata:\n  name: someone-elses\n  namespace: default\n");
    wait_drift(&mut c, &id, "Server", "stray", ResourceDriftStatus::Orphaned).await;
    wait_drift(&mut c, &id, "Server", "someone-elses", ResourceDriftStatus::InSync).await;

    let summary = drift_summary(&mut c, &id).await;
    assert_eq!((summary.drift_status, summary.drift_count), (DriftStatus::Drifted as i32, 3), "{summary:?}");
    // The fabric itself carries the same count, in GetFabric and ListFabrics.
    let fabric = c.fabrics.get_fabric(GetFabricRequest { id: id.clone() }).await.expect("get").into_inner().fabric;
    assert_eq!(fabric.map(|f| f.drift_count), Some(3));
    let listed = c.fabrics.list_fabrics(ListFabricsRequest::default()).await.expect("list").into_inner().fabrics;
    assert_eq!(listed.iter().find(|f| f.id == id).map(|f| f.drift_count), Some(3));
    let listed = c
        .drift
        .list_drifted_resources(ListDriftedResourcesRequest {
            fabric_id: id.clone(),
            page_size: 10,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    let mut names: Vec<String> =
        listed.resources.iter().filter_map(|r| r.key.as_ref().map(|k| k.name.clone())).collect();
    names.sort();
    assert_eq!(names, ["default", "server-1", "stray"]);
    let missing = c
        .drift
        .list_drifted_resources(ListDriftedResourcesRequest {
            fabric_id: id.clone(),
            filter: "status=missing".into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(missing.total_size, 1);

    // Remediate a chosen resource: only it is reapplied.
    let key = |group: &str, kind: &str, name: &str| ResourceKey {
        group: group.into(),
        kind: kind.into(),
        namespace: "default".into(),
        name: name.into(),
        ..Default::default()
    };
    let external = key("vpc.githedgehog.com", "External", "default");
    let server_1 = key("wiring.githedgehog.com", "Server", "server-1");
    let stray = key("wiring.githedgehog.com", "Server", "stray");
    let remediate =
        RemediateRequest { fabric_id: id.clone(), keys: vec![external.clone()], force: true, ..Default::default() };
    let run = c.drift.remediate(remediate).await.expect("remediate").into_inner().run.expect("run");
    let run = c.wait(&run.id, std::time::Duration::from_secs(60)).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
    assert_eq!(run.counters.as_ref().map(|n| (n.applied, n.pruned)), Some((1, 0)), "{run:?}");
    wait_drift(&mut c, &id, "External", "default", ResourceDriftStatus::InSync).await;
    wait_drift(&mut c, &id, "Server", "server-1", ResourceDriftStatus::Missing).await;

    // Chosen resources are checked: an orphan is not reapplied, a desired one is not deleted.
    for (keys, orphans, code, names) in [
        (vec![stray.clone()], vec![], tonic::Code::FailedPrecondition, "keys[0]"),
        (vec![], vec![server_1.clone()], tonic::Code::FailedPrecondition, "delete_orphans[0]"),
        (vec![key("wiring.githedgehog.com", "Server", "nowhere")], vec![], tonic::Code::NotFound, "nowhere"),
    ] {
        let request = RemediateRequest { fabric_id: id.clone(), keys, delete_orphans: orphans, ..Default::default() };
        let e = c.drift.remediate(request).await.expect_err("refused");
        assert_eq!(e.code(), code, "{e:?}");
        assert!(e.message().contains(names), "{e:?}");
    }

    // Deleting a chosen orphan, whatever the prune policy (off here); a dry run deletes nothing.
    for dry_run in [true, false] {
        let remediate = RemediateRequest {
            fabric_id: id.clone(),
            delete_orphans: vec![stray.clone()],
            dry_run,
            ..Default::default()
        };
        let run = c.drift.remediate(remediate).await.expect("remediate").into_inner().run.expect("run");
        let run = c.wait(&run.id, std::time::Duration::from_secs(60)).await;
        assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
        assert_eq!(run.counters.as_ref().map(|n| (n.applied, n.pruned)), Some((0, 1)), "{run:?}");
        let exists =
            kube.kubectl(&["get", "servers.wiring.githedgehog.com", "stray", "-n", "default"]).status.success();
        assert_eq!(exists, dry_run);
    }
    kube.kubectl_ok(&["get", "servers.wiring.githedgehog.com", "someone-elses", "-n", "default"]);
    wait_drift(&mut c, &id, "Server", "server-1", ResourceDriftStatus::Missing).await;

    // Re-applying everything brings the deleted object back in sync.
    let run = c.sync_mode(&id, SyncMode::Apply, false, true).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
    wait_drift(&mut c, &id, "External", "default", ResourceDriftStatus::InSync).await;
    wait_drift(&mut c, &id, "Server", "server-1", ResourceDriftStatus::InSync).await;
}

#[tokio::test]
async fn a_map_list_in_another_order_is_not_drift() {
    // The pinned Hedgehog CRDs declare no list types, so this ExternalPeering CRD declares its
    // prefixes a map list keyed by prefix, both in the cluster and to the server (--crds-dir).
    let kube = KubeCluster::start();
    let crd_file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/crds/vpc.githedgehog.com_externalpeerings.yaml");
    let mut crd: serde_json::Value = serde_json::from_str(&kube.kubectl_ok(&[
        "create",
        "--dry-run=client",
        "-o",
        "json",
        "-f",
        &crd_file.display().to_string(),
    ]))
    .expect("crd json");
    let items = crd
        .pointer_mut("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/permit/properties/external/properties/prefixes")
        .expect("prefixes schema");
    items["x-kubernetes-list-type"] = "map".into();
    items["x-kubernetes-list-map-keys"] = serde_json::json!(["prefix"]);
    items["items"]["required"] = serde_json::json!(["prefix"]);
    let crds = tempfile::tempdir().expect("dir");
    let crd_path = crds.path().join("externalpeerings.yaml");
    std::fs::write(&crd_path, crd.to_string()).expect("write crd");
    kube.kubectl_ok(&["apply", "--server-side", "--force-conflicts", "-f", &crd_path.display().to_string()]);

    let demo = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/samples/demo-gitops/demo.yaml"),
    )
    .expect("demo");
    let demo = demo.replacen(
        "        - prefix: 0.0.0.0/0\n",
        "        - prefix: 0.0.0.0/0\n        - prefix: 10.0.0.0/8\n",
        1,
    );
    let repo = GitFixture::with_files(&[("fabric/demo.yaml", &demo)]);
    let keys = fabricsync::crypto::Keyring::generate_key_line("test-key");
    let crds_dir = crds.path().display().to_string();
    let server = ServerProcess::start_with(&support::fresh_database().await, &keys, &["--crds-dir", &crds_dir]).await;
    let mut c = Clients::new(server.channel().await);
    let id = c
        .fabric_on_cluster(
            "demo",
            &repo.file_url(),
            "fabric",
            SyncPolicy::default(),
            Some(cluster_input(&kube, ADMIN_TOKEN)),
        )
        .await;
    let run = c.sync_mode(&id, SyncMode::Full, false, false).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
    wait_drift(&mut c, &id, "ExternalPeering", "demo-vpc-1--default", ResourceDriftStatus::InSync).await;

    // One patch reverses the map list and changes an atomic list: only the latter is drift.
    let patch = r#"{"spec":{"permit":{"external":{"prefixes":[{"prefix":"10.0.0.0/8"},{"prefix":"0.0.0.0/0"}]},"vpc":{"subnets":["default","extra"]}}}}"#;
    kube.kubectl_ok(&[
        "patch",
        "externalpeerings.vpc.githedgehog.com",
        "demo-vpc-1--default",
        "-n",
        "default",
        "--type=merge",
        "-p",
        patch,
    ]);
    let live = kube.kubectl_ok(&[
        "get",
        "externalpeerings.vpc.githedgehog.com",
        "demo-vpc-1--default",
        "-n",
        "default",
        "-o",
        "jsonpath={.spec.permit.external.prefixes[*].prefix}",
    ]);
    assert_eq!(live, "10.0.0.0/8 0.0.0.0/0", "the cluster keeps the new order");
    let d = wait_drift(&mut c, &id, "ExternalPeering", "demo-vpc-1--default", ResourceDriftStatus::Drifted).await;
    let paths: Vec<&str> = d.fields.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["/spec/permit/vpc/subnets"], "{d:?}");
}

/// Sets the External's inboundCommunity in the cluster behind fabricsync's back (kubectl-patch).
fn patch_community(kube: &KubeCluster, value: &str) {
    let body = format!(r#"{{"spec":{{"inboundCommunity":"{value}"}}}}"#);
    kube.kubectl_ok(&[
        "patch",
        "externals.vpc.githedgehog.com",
        "default",
        "-n",
        "default",
        "--type=merge",
        "-p",
        &body,
    ]);
}

/// Polls the External's inboundCommunity in the cluster until it is `want`; panics after 30 s.
fn wait_community(kube: &KubeCluster, want: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let now = kube.kubectl_ok(&[
            "get",
            "externals.vpc.githedgehog.com",
            "default",
            "-n",
            "default",
            "-o",
            "jsonpath={.spec.inboundCommunity}",
        ]);
        if now == want {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "inboundCommunity is {now}, not {want}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[tokio::test]
async fn self_heal_reverts_then_leaves_a_fighting_writer_contested() {
    let kube = KubeCluster::start();
    let repo = GitFixture::with_files(&[("fabric/wiring.yaml", &lab_wiring())]);
    let db = support::fresh_database().await;
    let keys = fabricsync::crypto::Keyring::generate_key_line("k");
    let args = ["--self-heal-max-reverts", "2"];
    let mut servers =
        [ServerProcess::start_with(&db, &keys, &args).await, ServerProcess::start_with(&db, &keys, &args).await];
    let mut c = Clients::new(servers[0].channel().await);
    let policy = SyncPolicy { self_heal: true, ..Default::default() };
    let id =
        c.fabric_on_cluster("lab", &repo.file_url(), "fabric", policy, Some(cluster_input(&kube, ADMIN_TOKEN))).await;
    let run = c.sync_mode(&id, SyncMode::Full, false, false).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
    wait_drift(&mut c, &id, "External", "default", ResourceDriftStatus::InSync).await;
    let watcher = (0..2).find(|&i| servers[i].log().contains("\"watch active\"")).expect("a watcher");
    let survivor = 1 - watcher;
    let mut c = Clients::new(servers[survivor].channel().await);
    let mut stream = c
        .drift
        .stream_drift(StreamDriftRequest { fabric_id: id.clone(), from_sequence: 0 })
        .await
        .expect("stream")
        .into_inner();

    // Reverted once; then the watching process dies and the survivor, taking over, keeps
    // counting (the reverts are stored with the resource)...
    patch_community(&kube, "65101:9001");
    wait_community(&kube, "65101:3001");
    wait_drift(&mut c, &id, "External", "default", ResourceDriftStatus::InSync).await;
    servers[watcher].kill_hard();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !servers[survivor].log().contains("\"watch active\"") {
        assert!(std::time::Instant::now() < deadline, "the survivor did not take the watch over");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    patch_community(&kube, "65101:9002");
    wait_community(&kube, "65101:3001");
    // ...so the third time it is left alone and marked contested by the writer.
    patch_community(&kube, "65101:9003");
    let d = wait_drift(&mut c, &id, "External", "default", ResourceDriftStatus::Contested).await;
    assert_eq!(d.contested_by, "kubectl-patch");
    assert_eq!(d.fields.first().map(|f| f.path.as_str()), Some("/spec/inboundCommunity"));
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    wait_community(&kube, "65101:9003");

    // The drift stream told each step.
    let mut seen = Vec::new();
    while seen.last() != Some(&(ResourceDriftStatus::Contested as i32)) {
        let message = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
            .await
            .expect("drift event")
            .expect("stream")
            .expect("open");
        let event = message.event.expect("event");
        if event
            .drift
            .as_ref()
            .and_then(|d| d.key.as_ref())
            .is_some_and(|k| k.name == "default" && k.kind == "External")
        {
            seen.push(event.drift.expect("drift").status);
        }
    }
    let drifted = seen.iter().filter(|s| **s == ResourceDriftStatus::Drifted as i32).count();
    let healed = seen.iter().filter(|s| **s == ResourceDriftStatus::InSync as i32).count();
    assert!(drifted >= 2 && healed >= 2, "{seen:?}");
    let runs = c
        .sync
        .list_sync_runs(ListSyncRunsRequest { filter: format!("fabric_id={id}"), page_size: 50, ..Default::default() })
        .await
        .expect("runs")
        .into_inner();
    assert!(runs.runs.iter().filter(|r| r.trigger == SyncTrigger::SelfHeal as i32).count() >= 2);

    // Remediate, as a user, takes it back.
    let run = c
        .drift
        .remediate(RemediateRequest { fabric_id: id.clone(), force: true, ..Default::default() })
        .await
        .expect("remediate")
        .into_inner()
        .run
        .expect("run");
    let run = c.wait(&run.id, std::time::Duration::from_secs(60)).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
    wait_community(&kube, "65101:3001");
    wait_drift(&mut c, &id, "External", "default", ResourceDriftStatus::InSync).await;
}

#[tokio::test]
async fn a_paused_fabric_shows_drift_and_does_not_heal_it() {
    let kube = KubeCluster::start();
    let repo = GitFixture::with_files(&[("fabric/wiring.yaml", &lab_wiring())]);
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);
    let policy = SyncPolicy { self_heal: true, ..Default::default() };
    let id =
        c.fabric_on_cluster("lab", &repo.file_url(), "fabric", policy, Some(cluster_input(&kube, ADMIN_TOKEN))).await;
    let fabric = c.get_fabric(&id).await;
    let pause = UpdateFabricRequest {
        fabric: Some(Fabric { id: id.clone(), paused: true, ..Default::default() }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["paused".into()] }),
        cluster: None,
        etag: fabric.etag,
    };
    c.fabrics.update_fabric(pause).await.expect("pause");
    // A client's run still runs while paused.
    let run = c.sync_mode(&id, SyncMode::Full, false, false).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
    wait_drift(&mut c, &id, "External", "default", ResourceDriftStatus::InSync).await;

    patch_community(&kube, "65101:9001");
    wait_drift(&mut c, &id, "External", "default", ResourceDriftStatus::Drifted).await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    wait_community(&kube, "65101:9001");
    let runs = c
        .sync
        .list_sync_runs(ListSyncRunsRequest { filter: format!("fabric_id={id}"), ..Default::default() })
        .await
        .expect("runs")
        .into_inner()
        .runs;
    assert!(runs.iter().all(|r| r.trigger != SyncTrigger::SelfHeal as i32), "self-heal ran while paused: {runs:?}");
}

#[tokio::test]
async fn adopting_drift_writes_the_live_values_to_git_and_the_fabric_is_in_sync_again() {
    let kube = KubeCluster::start();
    let repo = GitFixture::with_files(&[("fabric/wiring.yaml", &lab_wiring())]);
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);
    let id = c
        .fabric_on_cluster(
            "lab",
            &repo.file_url(),
            "fabric",
            SyncPolicy::default(),
            Some(cluster_input(&kube, ADMIN_TOKEN)),
        )
        .await;
    let run = c.sync_mode(&id, SyncMode::Full, false, false).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
    wait_drift(&mut c, &id, "External", "default", ResourceDriftStatus::InSync).await;

    // Someone changes the cluster by hand; adopting writes that value into Git.
    patch_community(&kube, "65101:4242");
    wait_drift(&mut c, &id, "External", "default", ResourceDriftStatus::Drifted).await;
    let commit = || Some(CommitOptions { message: "adopt the cluster's community".into(), ..Default::default() });
    let request = AdoptDriftRequest { fabric_id: id.clone(), keys: vec![], import_orphans: false, commit: commit() };
    let adopted = c.write.adopt_drift(request).await.expect("adopt").into_inner();
    let result = adopted.result.expect("result");
    assert_eq!(result.outcome, WriteOutcome::Committed as i32, "{result:?}");
    assert_eq!(
        adopted.adopted.iter().map(|k| (k.kind.as_str(), k.name.as_str())).collect::<Vec<_>>(),
        [("External", "default")]
    );
    let diff = &result.files[0].diff;
    assert!(diff.contains("-  inboundCommunity: 65101:3001") && diff.contains("65101:4242"), "{diff}");
    assert_eq!(diff.lines().filter(|l| l.starts_with('+') && !l.starts_with("+++")).count(), 1, "{diff}");
    assert!(repo.bare(&["show", "main:fabric/wiring.yaml"]).contains("65101:4242"));
    let run = c.wait(&result.run_id, std::time::Duration::from_secs(60)).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
    c.drift.detect_drift(DetectDriftRequest { fabric_id: id.clone() }).await.expect("detect");
    wait_drift(&mut c, &id, "External", "default", ResourceDriftStatus::InSync).await;
    let again = AdoptDriftRequest { fabric_id: id.clone(), keys: vec![], import_orphans: false, commit: commit() };
    let result = c.write.adopt_drift(again).await.expect("adopt again").into_inner().result.expect("result");
    assert_eq!(result.outcome, WriteOutcome::Unchanged as i32, "{result:?}");

    // An object only the cluster has is imported whole.
    kube.apply_yaml("apiVersion: wiring.githedgehog.com/v1beta1\nkind: Server\nmetadata:\n  name: hand-made\n  namespace: default\nspec:\n  description: racked by hand\n");
    let key = ResourceKey {
        group: "wiring.githedgehog.com".into(),
        kind: "Server".into(),
        namespace: "default".into(),
        name: "hand-made".into(),
        ..Default::default()
    };
    wait_live(&mut c, &id, "wiring.githedgehog.com", "Server", "hand-made").await;
    let import = AdoptDriftRequest { fabric_id: id.clone(), keys: vec![key], import_orphans: true, commit: commit() };
    let result = c.write.adopt_drift(import).await.expect("import").into_inner().result.expect("result");
    assert_eq!(result.outcome, WriteOutcome::Committed as i32, "{result:?}");
    assert_eq!(
        repo.bare(&["show", "main:fabric/servers/hand-made.yaml"]),
        "apiVersion: wiring.githedgehog.com/v1beta1\nkind: Server\nmetadata:\n  name: hand-made\n  namespace: default\nspec:\n  description: racked by hand"
    );

    // A live state this fabric's validation refuses (an attachment naming a connection that
    // does not exist, with strict references) is rejected with diagnostics; nothing is written.
    let fabric = c.get_fabric(&id).await;
    c.fabrics
        .update_fabric(UpdateFabricRequest {
            fabric: Some(Fabric {
                id: id.clone(),
                sync_policy: Some(SyncPolicy { strict_references: true, ..Default::default() }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths: vec!["sync_policy.strict_references".into()] }),
            cluster: None,
            etag: fabric.etag,
        })
        .await
        .expect("strict");
    kube.apply_yaml("apiVersion: vpc.githedgehog.com/v1beta1\nkind: VPCAttachment\nmetadata:\n  name: stray\n  namespace: default\nspec:\n  connection: no-such-connection\n  subnet: no-such-vpc/default\n");
    wait_live(&mut c, &id, "vpc.githedgehog.com", "VPCAttachment", "stray").await;
    let head = repo.bare(&["rev-parse", "main"]);
    let stray = ResourceKey {
        group: "vpc.githedgehog.com".into(),
        kind: "VPCAttachment".into(),
        namespace: "default".into(),
        name: "stray".into(),
        ..Default::default()
    };
    let refused =
        AdoptDriftRequest { fabric_id: id.clone(), keys: vec![stray], import_orphans: true, commit: commit() };
    let result = c.write.adopt_drift(refused).await.expect("refused").into_inner().result.expect("result");
    assert_eq!(result.outcome, WriteOutcome::Rejected as i32, "{result:?}");
    assert!(
        result.diagnostics.iter().any(|d| d.code == "ref.unresolved" && d.message.contains("no-such-connection")),
        "{:?}",
        result.diagnostics
    );
    assert_eq!(repo.bare(&["rev-parse", "main"]), head);
}

#[tokio::test]
async fn with_auto_apply_a_commit_reaches_the_cluster_with_no_client_call() {
    let kube = KubeCluster::start();
    let repo = GitFixture::with_files(&[("fabric/wiring.yaml", &lab_wiring())]);
    let hooks_port = support::gitservers::free_port();
    let hooks_listen = format!("127.0.0.1:{hooks_port}");
    let server = ServerProcess::start_with(
        &support::fresh_database().await,
        &fabricsync::crypto::Keyring::generate_key_line("k"),
        &["--auto-sync-tick-seconds", "1", "--webhook-listen", &hooks_listen],
    )
    .await;
    let mut c = Clients::new(server.channel().await);
    let policy = SyncPolicy {
        auto_sync_interval: Some(prost_types::Duration { seconds: 10, nanos: 0 }),
        auto_apply: true,
        ..Default::default()
    };
    let id =
        c.fabric_on_cluster("lab", &repo.file_url(), "fabric", policy, Some(cluster_input(&kube, ADMIN_TOKEN))).await;
    assert!(c.get_fabric(&id).await.sync_policy.unwrap().auto_apply);
    let in_cluster = |name: &str| {
        let found = kube.kubectl(&["get", "servers.wiring.githedgehog.com", name, "-n", "default", "-o", "name"]);
        found.status.success() && String::from_utf8_lossy(&found.stdout).contains(name)
    };
    let wait_for = |name: &'static str, limit: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(limit);
        while !in_cluster(name) {
            assert!(std::time::Instant::now() < deadline, "{name} not in the cluster after {limit} s");
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    };
    // Never synced: the first check pulls and applies at once.
    wait_for("server-1", 30);
    // A commit is applied at the next check: within the interval and a few seconds.
    repo.commit(
        &[(
            "fabric/more.yaml",
            "apiVersion: wiring.githedgehog.com/v1beta1\nkind: Server\nmetadata:\n  name: delivered\nspec: {}\n",
        )],
        "one more server",
    );
    wait_for("delivered", 20);
    // A commit that fails validation applies nothing.
    repo.commit(
        &[(
            "fabric/broken.yaml",
            "apiVersion: wiring.githedgehog.com/v1beta1\nkind: Server\nmetadata:\n  name: Not_Valid\n",
        )],
        "broken",
    );
    let second =
        "apiVersion: wiring.githedgehog.com/v1beta1\nkind: Server\nmetadata:\n  name: not-delivered\nspec: {}\n";
    repo.commit(&[("fabric/second.yaml", second)], "with a broken file");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let runs = c
            .sync
            .list_sync_runs(ListSyncRunsRequest { filter: format!("fabric_id={id}"), ..Default::default() })
            .await
            .expect("runs")
            .into_inner()
            .runs;
        if runs.iter().any(|r| r.commit == repo.head() && r.status == SyncRunStatus::Failed as i32) {
            assert!(
                runs.iter().all(|r| r.trigger == SyncTrigger::Schedule as i32 && r.mode == SyncMode::Full as i32),
                "{runs:?}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no failed run for the broken commit: {runs:?}");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(!in_cluster("not-delivered"), "a failed pull applied");

    // With the schedule off, a push webhook delivers a fixed commit at once: a FULL run.
    let fabric = c.get_fabric(&id).await;
    let off = Fabric { id: id.clone(), sync_policy: Some(SyncPolicy::default()), ..Default::default() };
    let mask = prost_types::FieldMask { paths: vec!["sync_policy.auto_sync_interval".into()] };
    let request = UpdateFabricRequest { fabric: Some(off), update_mask: Some(mask), cluster: None, etag: fabric.etag };
    c.fabrics.update_fabric(request).await.expect("schedule off");
    let repository = c.repos.get_repository(GetRepositoryRequest { id: fabric.repository_id.clone() }).await;
    let repository = repository.expect("repository").into_inner().repository.expect("repository");
    let secret = UpdateRepositoryRequest {
        repository: Some(Repository { id: repository.id.clone(), ..Default::default() }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["webhook_secret".into()] }),
        webhook_secret: support::webhooks::SECRET.into(),
        etag: repository.etag,
        ..Default::default()
    };
    c.repos.update_repository(secret).await.expect("webhook secret");
    repo.remove(&["fabric/broken.yaml"]);
    let third = "apiVersion: wiring.githedgehog.com/v1beta1\nkind: Server\nmetadata:\n  name: webhooked\nspec: {}\n";
    let head = repo.commit(&[("fabric/third.yaml", third)], "fixed, one more");
    let body = support::webhooks::push("refs/heads/main", &head);
    let path = format!("/webhooks/{}", repository.id);
    let (code, answer) = support::webhooks::deliver(hooks_port, &path, &support::webhooks::github(&body), &body).await;
    assert_eq!(code, 202, "{answer}");
    let run_id = answer["runs"][0]["run_id"].as_str().expect("a run").to_string();
    let run = c.wait(&run_id, std::time::Duration::from_secs(60)).await;
    assert_eq!(
        (status(&run), run.mode, run.trigger),
        (SyncRunStatus::Succeeded, SyncMode::Full as i32, SyncTrigger::Webhook as i32),
        "{run:?}"
    );
    assert!(in_cluster("webhooked") && in_cluster("not-delivered"));
}

/// The switches' Agent kind, as the fabric's controller installs it.
fn install_agent_kind(kube: &KubeCluster) {
    kube.kubectl_ok(&[
        "apply",
        "--server-side",
        "-f",
        &format!("{}/../core/crds-observed", env!("CARGO_MANIFEST_DIR")),
    ]);
    kube.kubectl_ok(&["wait", "--for=condition=Established", "crd/agents.agent.githedgehog.com", "--timeout=60s"]);
}

/// An Agent of `switch` as the fabric's controller makes it, with the status its switch reports.
fn agent(kube: &KubeCluster, switch: &str, applied: i64, heartbeat: chrono::DateTime<chrono::Utc>) {
    kube.apply_yaml(&format!(
        "apiVersion: agent.githedgehog.com/v1beta1\nkind: Agent\nmetadata:\n  name: {switch}\n  namespace: default\nspec: {{}}\n"
    ));
    let status = serde_json::json!({ "status": {
        "lastAppliedGen": applied, "lastHeartbeat": heartbeat.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "rebootRequired": false, "conditions": [], "state": { "nos": { "softwareVersion": "4.5.0-Enterprise_Base" } } } });
    let name = format!("agents.agent.githedgehog.com/{switch}");
    kube.kubectl_ok(&[
        "patch",
        &name,
        "-n",
        "default",
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);
}

#[tokio::test]
async fn rollout_tells_each_switch_from_its_agent() {
    let kube = KubeCluster::start();
    let repo = GitFixture::with_files(&[("fabric/wiring.yaml", &lab_wiring())]);
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);
    let id = c
        .fabric_on_cluster(
            "lab",
            &repo.file_url(),
            "fabric",
            SyncPolicy::default(),
            Some(cluster_input(&kube, ADMIN_TOKEN)),
        )
        .await;
    let run = c.sync_mode(&id, SyncMode::Pull, false, false).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
    let switches: Vec<String> =
        c.stored(&id).await.into_iter().filter(|(kind, ..)| kind == "Switch").map(|(_, _, name, _)| name).collect();
    assert!(switches.len() >= 4, "{switches:?}");
    let rollout = |stale_after: Option<i64>| GetFabricRolloutRequest {
        fabric_id: id.clone(),
        stale_after: stale_after.map(|seconds| prost_types::Duration { seconds, nanos: 0 }),
    };
    let states = |r: &GetFabricRolloutResponse| -> Vec<(String, RolloutState)> {
        r.switches.iter().map(|s| (s.switch.clone(), RolloutState::try_from(s.state).unwrap_or_default())).collect()
    };

    // No Agent kind in the cluster: every switch UNKNOWN, and the answer says why.
    let none = c.fabrics.get_fabric_rollout(rollout(None)).await.expect("rollout").into_inner();
    assert!(!none.agents_installed);
    assert_eq!(states(&none), switches.iter().map(|s| (s.clone(), RolloutState::Unknown)).collect::<Vec<_>>());

    // The status an agent would write: current, behind, silent; one switch has no agent.
    install_agent_kind(&kube);
    let now = chrono::Utc::now();
    agent(&kube, &switches[0], 1, now);
    agent(&kube, &switches[1], 0, now);
    agent(&kube, &switches[2], 1, now - chrono::Duration::hours(1));
    let read = c.fabrics.get_fabric_rollout(rollout(None)).await.expect("rollout").into_inner();
    assert!(read.agents_installed);
    let got = states(&read);
    assert_eq!(
        got[..3],
        [
            (switches[0].clone(), RolloutState::UpToDate),
            (switches[1].clone(), RolloutState::Applying),
            (switches[2].clone(), RolloutState::Stale),
        ]
    );
    assert!(got[3..].iter().all(|(_, s)| *s == RolloutState::Unknown), "{got:?}");
    let applying = &read.switches[1];
    assert_eq!((applying.generation, applying.applied_generation), (1, 0));
    assert_eq!(
        (applying.reason.as_str(), applying.nos_version.as_str()),
        ("applied generation 0 of 1", "4.5.0-Enterprise_Base")
    );
    assert!(read.switches[2].reason.contains("no heartbeat since"), "{:?}", read.switches[2]);
    let count = |r: &GetFabricRolloutResponse, state: RolloutState| {
        r.by_state.iter().find(|c| c.state == state as i32).map_or(-1, |c| c.count)
    };
    assert_eq!(count(&read, RolloutState::UpToDate), 1);
    assert_eq!(count(&read, RolloutState::Unknown), switches.len() as i32 - 3);

    // A generous stale_after keeps the silent switch's last word; the change reaches the switch.
    let lenient = c.fabrics.get_fabric_rollout(rollout(Some(7200))).await.expect("rollout").into_inner();
    assert_eq!(states(&lenient)[2].1, RolloutState::UpToDate);
    agent(&kube, &switches[1], 1, chrono::Utc::now());
    let caught_up = c.fabrics.get_fabric_rollout(rollout(None)).await.expect("rollout").into_inner();
    assert_eq!(states(&caught_up)[1].1, RolloutState::UpToDate);

    // A FULL run that waits for the rollout reports how many switches run what it applied, and
    // ends when the last one catches up (here: when the test writes what the agents would).
    for switch in &switches {
        agent(&kube, switch, 0, chrono::Utc::now());
    }
    let wait = |mode: SyncMode, seconds: i64| StartSyncRequest {
        fabric_id: id.clone(),
        mode: mode as i32,
        wait_for_rollout: Some(prost_types::Duration { seconds, nanos: 0 }),
        ..Default::default()
    };
    let run = c.sync.start_sync(wait(SyncMode::Full, 60)).await.expect("start").into_inner().run.expect("run");
    assert_eq!(run.wait_for_rollout.map(|d| d.seconds), Some(60));
    let request = StreamSyncProgressRequest { run_id: run.id.clone(), from_sequence: 0 };
    let mut stream = c.sync.stream_sync_progress(request).await.expect("stream").into_inner();
    let mut rollouts = Vec::new();
    while let Some(message) = tokio::time::timeout(std::time::Duration::from_secs(90), stream.message())
        .await
        .expect("the run went quiet")
        .expect("stream")
    {
        if let Some(Payload::Rollout(progress)) = message.event.and_then(|e| e.payload) {
            if rollouts.is_empty() {
                for switch in &switches {
                    agent(&kube, switch, 1, chrono::Utc::now());
                }
            }
            rollouts.push((progress.up_to_date, progress.total, progress.waiting_for.len()));
        }
    }
    let n = switches.len() as i64;
    let done = c.run(&run.id).await;
    assert_eq!(status(&done), SyncRunStatus::Succeeded, "{done:?}");
    // The source was pulled before: FULL stores nothing new and still applies.
    assert_eq!(counters(&done).applied, LAB_OBJECTS, "{done:?}");
    assert_eq!(rollouts.first(), Some(&(0, n, switches.len())), "{rollouts:?}");
    assert_eq!(rollouts.last(), Some(&(n, n, 0)), "{rollouts:?}");

    // A switch that does not catch up in time fails the run, named with its reason.
    agent(&kube, &switches[1], 0, chrono::Utc::now());
    let run = c.sync.start_sync(wait(SyncMode::Apply, 3)).await.expect("start").into_inner().run.expect("run");
    let failed = c.wait(&run.id, std::time::Duration::from_secs(60)).await;
    assert_eq!(status(&failed), SyncRunStatus::Failed, "{failed:?}");
    let d = failed.diagnostics.iter().find(|d| d.code == "rollout.incomplete").expect("rollout diagnostic");
    let behind = format!("{} (applied generation 0 of 1)", switches[1]);
    assert!(d.message.contains("1 of") && d.message.contains(&behind), "{}", d.message);
    let pull = c.sync.start_sync(wait(SyncMode::Pull, 3)).await.expect_err("a pull applies nothing");
    assert_eq!(pull.code(), tonic::Code::InvalidArgument);
    assert!(pull.message().contains("wait_for_rollout"), "{}", pull.message());

    // Without a cluster there is nothing to read.
    let plain = c.fabric("no-cluster", &repo.file_url(), "fabric", SyncPolicy::default()).await;
    let request = GetFabricRolloutRequest { fabric_id: plain, stale_after: None };
    let err = c.fabrics.get_fabric_rollout(request).await.expect_err("no cluster");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
}

/// The fabric's resources of `filter`, by name, with their health.
async fn healths(c: &mut Clients, id: &str, filter: &str) -> Vec<(String, ResourceHealth, String)> {
    let request =
        ListResourcesRequest { fabric_id: id.into(), filter: filter.into(), page_size: 500, ..Default::default() };
    let listed = c.fabrics.list_resources(request).await.expect("list resources").into_inner();
    listed
        .resources
        .into_iter()
        .map(|r| {
            let name = r.key.map(|k| k.name).unwrap_or_default();
            (name, ResourceHealth::try_from(r.health).unwrap_or_default(), r.health_reason)
        })
        .collect()
}

/// The fabric's health once it has one matching `want`; panics after 60 s.
async fn wait_health(c: &mut Clients, id: &str, want: impl Fn(&FabricHealth) -> bool) -> FabricHealth {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let fabric = c.fabrics.get_fabric(GetFabricRequest { id: id.into() }).await.expect("get").into_inner().fabric;
        let health = fabric.and_then(|f| f.health);
        if let Some(h) = health.as_ref().filter(|h| want(h)) {
            return h.clone();
        }
        assert!(std::time::Instant::now() < deadline, "the fabric's health stayed {health:?}");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn the_watch_tells_each_resources_health_and_the_fabrics() {
    let kube = KubeCluster::start();
    install_agent_kind(&kube);
    let repo = GitFixture::with_files(&[("fabric/wiring.yaml", &lab_wiring())]);
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);
    let id = c
        .fabric_on_cluster(
            "lab",
            &repo.file_url(),
            "fabric",
            SyncPolicy::default(),
            Some(cluster_input(&kube, ADMIN_TOKEN)),
        )
        .await;
    let run = c.sync_mode(&id, SyncMode::Full, false, false).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
    let switches: Vec<String> = healths(&mut c, &id, "kind=Switch").await.into_iter().map(|(name, ..)| name).collect();
    assert!(switches.len() >= 4, "{switches:?}");
    // As the switches would report: current, behind, silent for an hour; the rest have no agent.
    let now = chrono::Utc::now();
    agent(&kube, &switches[0], 1, now);
    agent(&kube, &switches[1], 0, now);
    agent(&kube, &switches[2], 1, now - chrono::Duration::hours(1));

    let rollout = |h: &FabricHealth, state: RolloutState| {
        h.switches.iter().find(|c| c.state == state as i32).map_or(-1, |c| c.count)
    };
    let n = switches.len() as i32;
    let told = wait_health(&mut c, &id, |h| {
        rollout(h, RolloutState::UpToDate) == 1
            && rollout(h, RolloutState::Applying) == 1
            && rollout(h, RolloutState::Stale) == 1
    })
    .await;
    assert_eq!(rollout(&told, RolloutState::Unknown), n - 3, "{told:?}");
    // The worst resource tells the fabric's health: the silent switch.
    assert_eq!(told.status, ResourceHealth::Degraded as i32, "{told:?}");
    let count = |h: &FabricHealth, health: ResourceHealth| {
        h.resources.iter().find(|c| c.health == health as i32).map_or(-1, |c| c.count)
    };
    assert_eq!(count(&told, ResourceHealth::Healthy) + count(&told, ResourceHealth::Unknown), LAB_OBJECTS as i32 - 2);

    // Per resource, with the reason; ListResources filters by health.
    assert_eq!(
        healths(&mut c, &id, "health=progressing").await,
        [(switches[1].clone(), ResourceHealth::Progressing, "switch agent: applied generation 0 of 1".into())]
    );
    let degraded = healths(&mut c, &id, "health=degraded").await;
    assert_eq!(degraded.len(), 1, "{degraded:?}");
    assert!(degraded[0].0 == switches[2] && degraded[0].2.contains("no heartbeat since"), "{degraded:?}");
    let unknown: Vec<String> =
        healths(&mut c, &id, "kind=Switch health=unknown").await.into_iter().map(|(name, ..)| name).collect();
    assert_eq!(unknown, switches[3..]);
    let servers = healths(&mut c, &id, "kind=Server").await;
    assert!(!servers.is_empty());
    assert!(
        servers.iter().all(|(_, h, reason)| *h == ResourceHealth::Healthy && reason == "in the cluster"),
        "{servers:?}"
    );
    let bad = ListResourcesRequest { fabric_id: id.clone(), filter: "health=sick".into(), ..Default::default() };
    let err = c.fabrics.list_resources(bad).await.expect_err("not a health");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("degraded, missing, progressing, unknown, healthy"), "{}", err.message());

    // Changes of health are events of the watch stream: a switch catching up, a server deleted.
    let request = WatchFabricEventsRequest { fabric_id: id.clone(), from_sequence: 0, ..Default::default() };
    let mut stream = c.sync.watch_fabric_events(request).await.expect("watch").into_inner();
    let mut seen = Vec::new();
    agent(&kube, &switches[1], 1, chrono::Utc::now());
    let caught_up = next_matching(&mut stream, &mut seen, |e| {
        is(e, FabricEventType::HealthChanged, &switches[1]) && e.health == ResourceHealth::Healthy as i32
    })
    .await;
    assert_eq!(caught_up.health_reason, "switch agent: generation 1 applied");
    assert!(caught_up.object.is_none());
    let server = servers[0].0.clone();
    kube.kubectl_ok(&["delete", "servers.wiring.githedgehog.com", &server, "-n", "default"]);
    let missing = next_matching(&mut stream, &mut seen, |e| {
        is(e, FabricEventType::HealthChanged, &server) && e.health == ResourceHealth::Missing as i32
    })
    .await;
    assert_eq!(missing.health_reason, "desired, not in the cluster");
    let after = wait_health(&mut c, &id, |h| count(h, ResourceHealth::Missing) == 1).await;
    assert_eq!(rollout(&after, RolloutState::UpToDate), 2, "{after:?}");
}

/// Waits until the fabric's watch is active and has seen `count` changes; the names it saw.
async fn seen_names(c: &mut Clients, id: &str, count: i64) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (state, seen) = activity(c, id).await;
        if state == WatchStatus::Active && seen.event_count >= count {
            assert_eq!(seen.event_count, count, "{id}: {seen:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{id}: {state:?} {seen:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let request =
        ListResourcesRequest { fabric_id: id.into(), page_size: 500, include_objects: true, ..Default::default() };
    let listed = c.fabrics.list_resources(request).await.expect("resources").into_inner().resources;
    let mut names: Vec<String> = listed
        .into_iter()
        .filter(|r| r.live.is_some())
        .filter_map(|r| r.key.map(|k| format!("{}/{}", k.namespace, k.name)))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn fabrics_sharing_a_cluster_each_watch_only_their_own_objects() {
    let kube = KubeCluster::start();
    // Git holds one Server, in a namespace no fabric's scope is.
    let z = "apiVersion: wiring.githedgehog.com/v1beta1\nkind: Server\nmetadata:\n  name: z-1\n  namespace: team-z\n";
    let repo = GitFixture::with_files(&[("fabric/wiring.yaml", z)]);
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);
    for namespace in ["team-a", "team-b"] {
        kube.kubectl_ok(&["create", "namespace", namespace]);
    }
    let server_yaml = |name: &str, namespace: &str, labels: &str| {
        format!("apiVersion: wiring.githedgehog.com/v1beta1\nkind: Server\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels: {{{labels}}}\n")
    };
    kube.apply_yaml(
        &[
            server_yaml("a-1", "team-a", ""),
            server_yaml("b-1", "team-b", "fabricsync.dev/fabric: b"),
            server_yaml("b-2", "team-b", ""),
            server_yaml("d-1", "default", ""),
        ]
        .join("---\n"),
    );
    let mut fabric = async |name: &str, namespace: &str, scope: WatchScope| {
        let cluster = ClusterConnectionInput { namespace: namespace.into(), ..cluster_input(&kube, ADMIN_TOKEN) };
        let id = c.fabric_on_cluster(name, &repo.file_url(), "fabric", SyncPolicy::default(), Some(cluster)).await;
        let watch = WatchSettings { enabled: true, kinds: vec!["Server".into()], scope: scope as i32 };
        let request = UpdateFabricRequest {
            fabric: Some(Fabric { id: id.clone(), watch: Some(watch), ..Default::default() }),
            update_mask: Some(prost_types::FieldMask { paths: vec!["watch".into()] }),
            ..Default::default()
        };
        let updated = c.fabrics.update_fabric(request).await.expect("watch scope").into_inner().fabric.unwrap();
        let shown = if scope == WatchScope::Unspecified { WatchScope::Cluster } else { scope };
        assert_eq!(updated.watch.unwrap().scope, shown as i32);
        id
    };
    let a = fabric("a", "team-a", WatchScope::Namespace).await;
    let b = fabric("b", "team-b", WatchScope::Labelled).await;
    let all = fabric("all", "default", WatchScope::Unspecified).await;

    assert_eq!(seen_names(&mut c, &a, 1).await, ["team-a/a-1"]);
    assert_eq!(seen_names(&mut c, &b, 1).await, ["team-b/b-1"]);
    assert_eq!(seen_names(&mut c, &all, 4).await, ["default/d-1", "team-a/a-1", "team-b/b-1", "team-b/b-2"]);
    // Labelled later, b-2 enters b's view; a's stays as it was.
    kube.kubectl_ok(&["label", "servers.wiring.githedgehog.com", "b-2", "-n", "team-b", "fabricsync.dev/fabric=b"]);
    assert_eq!(seen_names(&mut c, &b, 2).await, ["team-b/b-1", "team-b/b-2"]);
    assert_eq!(seen_names(&mut c, &a, 1).await, ["team-a/a-1"]);

    // Git's object outside a's namespace is not missing for a (its watch cannot see it), but is
    // for the fabric that watches the whole cluster.
    let z_drift = async |c: &mut Clients, id: &str| {
        let run = c.sync_mode(id, SyncMode::Pull, false, false).await;
        assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
        let key = ResourceKey {
            group: "wiring.githedgehog.com".into(),
            kind: "Server".into(),
            namespace: "team-z".into(),
            name: "z-1".into(),
            ..Default::default()
        };
        let resource = Some(get_resource_drift_request::Resource::Key(key));
        let request = GetResourceDriftRequest { fabric_id: id.into(), resource };
        c.drift.get_resource_drift(request).await.expect("drift").into_inner().drift.expect("drift").status
    };
    assert_eq!(z_drift(&mut c, &a).await, ResourceDriftStatus::Unknown as i32);
    assert_eq!(z_drift(&mut c, &all).await, ResourceDriftStatus::Missing as i32);

    // An unknown scope is refused, naming the field.
    let watch = WatchSettings { enabled: true, kinds: vec![], scope: 42 };
    let request = UpdateFabricRequest {
        fabric: Some(Fabric { id: a.clone(), watch: Some(watch), ..Default::default() }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["watch.scope".into()] }),
        ..Default::default()
    };
    let err = c.fabrics.update_fabric(request).await.expect_err("scope 42");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("fabric.watch.scope"), "{}", err.message());
}

/// The process watching each fabric once every watch is active (waits up to 60 s).
async fn watchers(c: &mut Clients, ids: &[String]) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let mut processes = Vec::new();
        for id in ids {
            let fabric = c.get_fabric(id).await;
            let activity = fabric.watch_activity.unwrap_or_default();
            if fabric.watch_status == WatchStatus::Active as i32 && !activity.process.is_empty() {
                processes.push(activity.process);
            }
        }
        if processes.len() == ids.len() {
            return processes;
        }
        assert!(std::time::Instant::now() < deadline, "not every watch is active: {processes:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Watches per process, by the process's pid (the first part of its name).
fn per_process(processes: &[String]) -> std::collections::BTreeMap<u32, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for p in processes {
        let pid = p.split('-').next().and_then(|pid| pid.parse().ok()).expect("pid-id");
        *counts.entry(pid).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn watches_spread_over_three_replicas_and_move_when_one_dies() {
    let kube = KubeCluster::start();
    let repo = GitFixture::with_files(&[("fabric/wiring.yaml", "")]);
    let db = support::fresh_database().await;
    let keys = fabricsync::crypto::Keyring::generate_key_line("shared");
    let mut first = ServerProcess::start_with(&db, &keys, &[]).await;
    let mut c = Clients::new(first.channel().await);
    let mut ids = Vec::new();
    for i in 0..9 {
        let cluster = cluster_input(&kube, ADMIN_TOKEN);
        ids.push(
            c.fabric_on_cluster(&format!("f{i}"), &repo.file_url(), "fabric", SyncPolicy::default(), Some(cluster))
                .await,
        );
    }
    // Alone, the first replica watches all nine.
    assert_eq!(per_process(&watchers(&mut c, &ids).await), [(first.pid(), 9)].into());

    // Two join: each takes a share, none holds more than ceil(9/3).
    let others = [ServerProcess::start_with(&db, &keys, &[]).await, ServerProcess::start_with(&db, &keys, &[]).await];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let spread = loop {
        let spread = per_process(&watchers(&mut c, &ids).await);
        if spread.len() == 3 && spread.values().all(|&n| n <= 3) {
            break spread;
        }
        assert!(std::time::Instant::now() < deadline, "the watches did not spread: {spread:?}");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    assert_eq!(spread.values().sum::<usize>(), 9, "{spread:?}");

    // One dies: its watches move to the survivors.
    let killed = first.pid();
    let held = spread[&killed];
    first.kill_hard();
    let started = std::time::Instant::now();
    let mut c = Clients::new(others[0].channel().await);
    let deadline = started + std::time::Duration::from_secs(60);
    let moved = loop {
        let moved = per_process(&watchers(&mut c, &ids).await);
        if !moved.contains_key(&killed) {
            break moved;
        }
        assert!(std::time::Instant::now() < deadline, "the dead replica's watches were not taken: {moved:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    println!("{held} watches moved {:.1} s after the kill: {moved:?}", started.elapsed().as_secs_f64());
    // A change after the takeover reaches each fabric's stream once, from whichever replica.
    let request = WatchFabricEventsRequest { fabric_id: ids[0].clone(), from_sequence: 0, kinds: vec![] };
    let mut stream = c.sync.watch_fabric_events(request).await.expect("watch").into_inner();
    kube.apply_yaml("apiVersion: wiring.githedgehog.com/v1beta1\nkind: Server\nmetadata:\n  name: after-kill\n  namespace: default\n");
    let mut events = Vec::new();
    next_matching(&mut stream, &mut events, |e| is(e, FabricEventType::Added, "after-kill")).await;
    while let Ok(Ok(Some(message))) = tokio::time::timeout(std::time::Duration::from_secs(2), stream.message()).await {
        events.extend(message.event);
    }
    let added = events.iter().filter(|e| is(e, FabricEventType::Added, "after-kill")).count();
    assert_eq!(added, 1, "{events:?}");
    assert_eq!(moved.keys().copied().collect::<Vec<_>>(), {
        let mut s: Vec<u32> = others.iter().map(|o| o.pid()).collect();
        s.sort();
        s
    });
    assert!(moved.values().all(|&n| n <= 5), "at most ceil(9/2) each: {moved:?}");
}

#[tokio::test]
async fn the_watch_and_drift_survive_a_kube_apiserver_restart() {
    let mut kube = KubeCluster::start();
    let repo = GitFixture::with_files(&[("fabric/wiring.yaml", &lab_wiring())]);
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);
    let id = c
        .fabric_on_cluster(
            "lab",
            &repo.file_url(),
            "fabric",
            SyncPolicy::default(),
            Some(cluster_input(&kube, ADMIN_TOKEN)),
        )
        .await;
    let run = c.sync_mode(&id, SyncMode::Full, false, false).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
    wait_drift(&mut c, &id, "Server", "server-1", ResourceDriftStatus::InSync).await;
    let request = WatchFabricEventsRequest { fabric_id: id.clone(), from_sequence: 0, kinds: vec![] };
    let mut stream = c.sync.watch_fabric_events(request).await.expect("watch").into_inner();

    // The API server dies and comes back with its state; the watch follows it again by itself.
    let restarted = std::time::Instant::now();
    kube.restart();
    let back = restarted.elapsed();
    patch_community(&kube, "65101:9999");
    let mut events = Vec::new();
    next_matching(&mut stream, &mut events, |e| is(e, FabricEventType::Modified, "default")).await;
    let seen = restarted.elapsed();
    let d = wait_drift(&mut c, &id, "External", "default", ResourceDriftStatus::Drifted).await;
    assert_eq!(d.fields.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["/spec/inboundCommunity"]);
    // Every kind's watcher back (each retries on its own): active again.
    wait_active(&mut c, &id, std::time::Duration::from_secs(30)).await;
    // Nothing else drifted: the rest of the live view is what it was.
    let summary = drift_summary(&mut c, &id).await;
    assert_eq!(summary.drift_count, 1, "{summary:?}");

    // An apply after the restart reaches the cluster and ends in sync.
    let healed = c.sync_mode(&id, SyncMode::Apply, false, true).await;
    assert_eq!(status(&healed), SyncRunStatus::Succeeded, "{healed:?}");
    wait_drift(&mut c, &id, "External", "default", ResourceDriftStatus::InSync).await;
    println!(
        "kube-apiserver restart: ready again {:.1} s after the kill, a change seen by the watch {:.1} s after it",
        back.as_secs_f64(),
        seen.as_secs_f64()
    );
}

async fn drift_summary(c: &mut Clients, id: &str) -> FabricDriftSummary {
    c.drift
        .get_fabric_drift(GetFabricDriftRequest { fabric_id: id.into() })
        .await
        .expect("summary")
        .into_inner()
        .summary
        .expect("summary")
}

/// APPLY until it succeeds (a cluster just back may still be refused by the circuit breaker
/// for a while); panics after `limit`. Returns the run that succeeded and the failed ones.
async fn apply_until_it_succeeds(c: &mut Clients, id: &str, limit: std::time::Duration) -> (SyncRun, Vec<SyncRun>) {
    let deadline = std::time::Instant::now() + limit;
    let mut failed = Vec::new();
    loop {
        let run = c.sync_mode(id, SyncMode::Apply, false, true).await;
        if status(&run) == SyncRunStatus::Succeeded {
            return (run, failed);
        }
        assert!(!run.error.is_empty(), "failed without a reason: {run:?}");
        assert!(std::time::Instant::now() < deadline, "no APPLY succeeded in {limit:?}: {failed:?} {run:?}");
        failed.push(run);
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Waits until the watch is ACTIVE; panics after `limit`.
async fn wait_active(c: &mut Clients, id: &str, limit: std::time::Duration) {
    let deadline = std::time::Instant::now() + limit;
    while watch_status(c, id).await.0 != WatchStatus::Active {
        assert!(std::time::Instant::now() < deadline, "watch not active: {:?}", watch_status(c, id).await);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A fabric on `kube` reached through `proxy`, after a FULL sync, its watch active and in sync.
async fn fabric_through(c: &mut Clients, kube: &KubeCluster, proxy: Option<&Proxy>, repo: &GitFixture) -> String {
    let mut cluster = cluster_input(kube, ADMIN_TOKEN);
    if let Some(proxy) = proxy {
        // The API server's certificate names 127.0.0.1, whatever the port.
        cluster.server_url = format!("https://127.0.0.1:{}", proxy.port);
    }
    let id = c.fabric_on_cluster("lab", &repo.file_url(), "fabric", SyncPolicy::default(), Some(cluster)).await;
    let run = c.sync_mode(&id, SyncMode::Full, false, false).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
    wait_drift(c, &id, "Server", "server-1", ResourceDriftStatus::InSync).await;
    wait_active(c, &id, std::time::Duration::from_secs(30)).await;
    id
}

/// A server whose fabric reaches a kube-apiserver through a proxy, after `fabric_through`:
/// (API server, proxy, repository, server, clients, fabric id).
async fn behind_an_api_server_proxy() -> (KubeCluster, Proxy, GitFixture, ServerProcess, Clients, String) {
    let kube = KubeCluster::start();
    let port: u16 = kube.url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    let proxy = Proxy::start(port);
    let repo = GitFixture::with_files(&[("fabric/wiring.yaml", &lab_wiring())]);
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);
    let id = fabric_through(&mut c, &kube, Some(&proxy), &repo).await;
    (kube, proxy, repo, server, c, id)
}

#[tokio::test]
async fn a_stalled_api_server_fails_the_apply_with_the_reason_and_the_watch_recovers() {
    let (kube, proxy, repo, _server, mut c, id) = behind_an_api_server_proxy().await;
    let servers = count(&kube, "servers.wiring.githedgehog.com", Some(&format!("{LABEL}=lab")));

    // New objects to apply, then the API server's connections stall (open, nothing forwarded).
    repo.commit_files(&server_files("fabric/stalled", "stalled", 40), "more servers");
    proxy.set(Fault::Stall);
    let stalled = std::time::Instant::now();
    let run = c.sync_mode(&id, SyncMode::Full, false, false).await;
    let ended = stalled.elapsed();
    assert_eq!(status(&run), SyncRunStatus::Failed, "an apply to a stalled API server: {run:?}");
    let reason = run.error.to_lowercase();
    assert!(reason.contains("api server") || reason.contains("cluster"), "the reason names the cluster: {run:?}");
    let noticed = watch_status(&mut c, &id).await;

    // Passing again: the watch is back and sees a change, an APPLY brings everything in sync.
    proxy.set(Fault::Pass);
    let passed = std::time::Instant::now();
    patch_community(&kube, "65101:9999");
    wait_drift(&mut c, &id, "External", "default", ResourceDriftStatus::Drifted).await;
    let seen = passed.elapsed();
    wait_active(&mut c, &id, std::time::Duration::from_secs(60)).await;
    let (_, refused) = apply_until_it_succeeds(&mut c, &id, std::time::Duration::from_secs(90)).await;
    wait_drift(&mut c, &id, "External", "default", ResourceDriftStatus::InSync).await;
    wait_drift(&mut c, &id, "Server", "stalled-39", ResourceDriftStatus::InSync).await;
    let in_sync = passed.elapsed();
    assert_eq!(count(&kube, "servers.wiring.githedgehog.com", Some(&format!("{LABEL}=lab"))), servers + 40);
    println!(
        "kube-apiserver stalled (test proxy) under an apply: the run failed {:.1} s after the stall began ({}); watch then {:?}; after the proxy passed again the watch saw a change in {:.1} s, an APPLY succeeded and all was in sync {:.1} s after ({} APPLY refused before, the first: {:?})",
        ended.as_secs_f64(),
        run.error,
        noticed,
        seen.as_secs_f64(),
        in_sync.as_secs_f64(),
        refused.len(),
        refused.first().map_or("", |r| r.error.as_str())
    );
}

#[tokio::test]
async fn the_watch_resumes_after_its_connections_are_cut_and_drift_is_right() {
    let (kube, proxy, _repo, _server, mut c, id) = behind_an_api_server_proxy().await;
    let request = WatchFabricEventsRequest { fabric_id: id.clone(), from_sequence: 0, kinds: vec![] };
    let mut stream = c.sync.watch_fabric_events(request).await.expect("watch").into_inner();

    // Every connection to the API server cut, new ones refused for a second, then passed.
    let cut = std::time::Instant::now();
    proxy.set(Fault::Refuse);
    let connections = proxy.cut_all();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    proxy.set(Fault::Pass);
    patch_community(&kube, "65101:9999");
    let mut events = Vec::new();
    next_matching(&mut stream, &mut events, |e| is(e, FabricEventType::Modified, "default")).await;
    let seen = cut.elapsed();
    let d = wait_drift(&mut c, &id, "External", "default", ResourceDriftStatus::Drifted).await;
    assert_eq!(d.fields.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["/spec/inboundCommunity"]);
    wait_active(&mut c, &id, std::time::Duration::from_secs(30)).await;
    assert_eq!(drift_summary(&mut c, &id).await.drift_count, 1);
    let healed = c.sync_mode(&id, SyncMode::Apply, false, true).await;
    assert_eq!(status(&healed), SyncRunStatus::Succeeded, "{healed:?}");
    wait_drift(&mut c, &id, "External", "default", ResourceDriftStatus::InSync).await;
    println!(
        "kube-apiserver connections cut ({connections}) and refused for 1 s under a watch: a change seen by the watch {:.1} s after the cut",
        seen.as_secs_f64()
    );
}

#[tokio::test]
async fn an_apply_through_a_kube_apiserver_restart_ends_defined_and_drift_is_right() {
    let mut kube = KubeCluster::start();
    let repo = GitFixture::with_files(&[("fabric/wiring.yaml", &lab_wiring())]);
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);
    let id = fabric_through(&mut c, &kube, None, &repo).await;
    let servers = count(&kube, "servers.wiring.githedgehog.com", Some(&format!("{LABEL}=lab")));

    // A FULL sync of 300 new Servers; the API server is killed once it applies, and started again.
    repo.commit_files(&server_files("fabric/restart", "restart", 300), "more servers");
    let request = StartSyncRequest { fabric_id: id.clone(), mode: SyncMode::Full as i32, ..Default::default() };
    let run = c.sync.start_sync(request).await.expect("start").into_inner().run.expect("run");
    let request = StreamSyncProgressRequest { run_id: run.id.clone(), from_sequence: 0 };
    let mut progress = c.sync.stream_sync_progress(request).await.expect("stream").into_inner();
    let mut applying = false;
    while let Some(message) = progress.message().await.expect("progress") {
        match message.event.and_then(|e| e.payload) {
            Some(Payload::Applying(_)) => {
                applying = true;
                break;
            }
            Some(Payload::Finished(_) | Payload::Failed(_) | Payload::Cancelled(_)) => break,
            _ => {}
        }
    }
    assert!(applying, "the run ended before it applied");
    drop(progress);
    let restarted = std::time::Instant::now();
    kube.restart();
    let back = restarted.elapsed();
    let ended = c.wait(&run.id, std::time::Duration::from_secs(120)).await;
    let run_ended = restarted.elapsed();
    match status(&ended) {
        SyncRunStatus::Succeeded => {}
        SyncRunStatus::Failed => {
            // The objects that failed say why, naming the cluster.
            assert!(!ended.error.is_empty(), "{ended:?}");
            let unreachable = ended.diagnostics.iter().filter(|d| d.code == "cluster.unreachable").count();
            assert!(unreachable > 0, "{:?}", ended.diagnostics.iter().map(|d| &d.message).collect::<Vec<_>>());
            let codes: std::collections::BTreeSet<&str> = ended.diagnostics.iter().map(|d| d.code.as_str()).collect();
            assert_eq!(
                codes.into_iter().collect::<Vec<_>>(),
                ["apply.wave_failed", "cluster.unreachable"],
                "a restart is no TLS failure"
            );
        }
        other => panic!("the run ended {other:?}: {ended:?}"),
    }
    // Every object is stored whatever the apply did (the pull concluded before it).
    let stored = c.stored(&id).await;
    assert_eq!(stored.len() as i64, LAB_OBJECTS + 300);

    // After the restart an APPLY brings the cluster in sync, and drift says so.
    let (_, refused) = apply_until_it_succeeds(&mut c, &id, std::time::Duration::from_secs(90)).await;
    wait_active(&mut c, &id, std::time::Duration::from_secs(60)).await;
    wait_drift(&mut c, &id, "Server", "restart-299", ResourceDriftStatus::InSync).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let summary = drift_summary(&mut c, &id).await;
        if summary.drift_count == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still drifted: {summary:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let in_sync = restarted.elapsed();
    assert_eq!(count(&kube, "servers.wiring.githedgehog.com", Some(&format!("{LABEL}=lab"))), servers + 300);
    println!(
        "kube-apiserver restarted under an apply of 300 objects: ready again {:.1} s after the kill; the run ended {:?} {:.1} s after it ({}, {} object(s) unreachable); in sync after an APPLY {:.1} s after it ({} APPLY refused before, the first: {:?})",
        back.as_secs_f64(),
        status(&ended),
        run_ended.as_secs_f64(),
        ended.error,
        ended.diagnostics.iter().filter(|d| d.code == "cluster.unreachable").count(),
        in_sync.as_secs_f64(),
        refused.len(),
        refused.first().map_or("", |r| r.error.as_str())
    );
}
