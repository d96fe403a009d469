//! The cluster inventory end to end: a real kube-apiserver with KubeVirt's CRDs (nodes, pods and
//! VMs created through the API as a kubelet and KubeVirt would report them; no kubelet runs),
//! imports as runs with their diff, and the join to the fabric's Servers and Connections.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use fabricsync::proto::sync_progress_event::Payload;
use fabricsync::proto::*;
use support::gitservers::GitFixture;
use support::kube::{KubeCluster, ADMIN_TOKEN};
use support::server::ServerProcess;
use support::sync::{cluster_input, counters, lab_wiring, status, Clients};

const SERVER_LABEL: &str = "fabricsync.githedgehog.com/server";
const KUBEVIRT: &str = "tests/data/kubevirt";

fn data(path: &str) -> String {
    format!("{}/{KUBEVIRT}/{path}", env!("CARGO_MANIFEST_DIR"))
}

/// A node as a kubelet would register and report it.
fn node(kube: &KubeCluster, name: &str, labels: &str) {
    kube.apply_yaml(&format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels:\n    node-role.kubernetes.io/worker: \"\"\n{labels}"
    ));
    let status = serde_json::json!({"status": {
        "capacity": {"cpu": "16", "memory": "65536Mi", "pods": "110"},
        "allocatable": {"cpu": "15", "memory": "63000Mi", "pods": "110"},
        "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": name}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        "nodeInfo": {"kubeletVersion": "v1.31.2", "machineID": "", "systemUUID": "", "bootID": "",
                     "kernelVersion": "", "osImage": "", "containerRuntimeVersion": "", "kubeProxyVersion": "",
                     "operatingSystem": "linux", "architecture": "amd64"}}});
    kube.kubectl_ok(&["patch", "node", name, "--subresource=status", "--type=merge", "-p", &status.to_string()]);
}

/// A pod bound to `node`; `extra` adds metadata lines (labels) and the container's name.
fn pod(kube: &KubeCluster, namespace: &str, name: &str, node: &str, labels: &str, container: &str) {
    kube.apply_yaml(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels:\n    app: {name}\n{labels}\
         spec:\n  nodeName: {node}\n  automountServiceAccountToken: false\n  containers:\n  - name: {container}\n    image: quay.io/example/{container}:1\n"
    ));
}

fn namespace(kube: &KubeCluster, name: &str) {
    kube.kubectl_ok(&["create", "namespace", name]);
    // Pods need the namespace's default ServiceAccount, which a controller makes.
    for _ in 0..100 {
        if kube.kubectl(&["get", "serviceaccount", "default", "-n", name]).status.success() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("no default ServiceAccount in {name}");
}

async fn import(c: &mut Clients, fabric_id: &str, dry_run: bool) -> (SyncRun, Vec<InventoryProgress>) {
    let request = StartInventoryImportRequest { fabric_id: fabric_id.into(), dry_run };
    let started = c.inventory.start_inventory_import(request).await.expect("start import").into_inner();
    assert!(!started.already_active);
    let run = started.run.expect("run");
    assert_eq!(run.mode, SyncMode::Inventory as i32);
    let request = StreamSyncProgressRequest { run_id: run.id.clone(), from_sequence: 0 };
    let mut stream = c.sync.stream_sync_progress(request).await.expect("stream").into_inner();
    let mut kinds = Vec::new();
    while let Some(message) = tokio::time::timeout(std::time::Duration::from_secs(60), stream.message())
        .await
        .expect("the import went quiet")
        .expect("stream")
    {
        if let Some(Payload::Inventory(progress)) = message.event.and_then(|e| e.payload) {
            kinds.push(progress);
        }
    }
    (c.run(&run.id).await, kinds)
}

async fn objects(c: &mut Clients, fabric_id: &str, filter: &str) -> Vec<InventoryObject> {
    let request = ListInventoryObjectsRequest {
        fabric_id: fabric_id.into(),
        filter: filter.into(),
        page_size: 500,
        ..Default::default()
    };
    c.inventory.list_inventory_objects(request).await.expect("list").into_inner().objects
}

fn names(objects: &[InventoryObject]) -> Vec<String> {
    objects.iter().map(|o| o.name.clone()).collect()
}

fn fact<'a>(object: &'a InventoryObject, field: &str) -> Option<&'a prost_types::value::Kind> {
    object.facts.as_ref()?.fields.get(field)?.kind.as_ref()
}

#[tokio::test]
async fn the_inventory_imports_what_runs_and_tells_what_is_behind_each_switch_port() {
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
    let pulled = c.sync_mode(&id, SyncMode::Pull, false, false).await;
    assert_eq!(status(&pulled), SyncRunStatus::Succeeded, "{pulled:?}");

    // What a cluster runs: server-1 by name, server-2 by label, a node that is no Server; a
    // container pod, a VM with its VMI and launcher pod, a pod outside the kept namespaces.
    node(&kube, "server-1", "");
    node(&kube, "worker-b", &format!("    {SERVER_LABEL}: server-2\n"));
    node(&kube, "spare", "");
    namespace(&kube, "tenant-a");
    namespace(&kube, "infra");
    pod(&kube, "tenant-a", "web-1", "server-1", "", "web");
    pod(&kube, "tenant-a", "batch-1", "spare", "", "batch");
    pod(&kube, "infra", "agent-1", "server-1", "", "agent");
    let vm_labels = "    kubevirt.io/domain: vm-cirros\n    vm.kubevirt.io/name: vm-cirros\n";
    pod(&kube, "tenant-a", "virt-launcher-vm-cirros-x7k2p", "worker-b", vm_labels, "compute");
    kube.apply_yaml(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: tenant-a\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: quay.io/example/web:1\n",
    );
    kube.apply_yaml(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: tenant-a\nspec:\n  selector: {app: web}\n  ports:\n  - port: 80\n",
    );

    // Without KubeVirt its kinds read as none: no error.
    let settings = |regex: &str| InventorySettings {
        namespace_regex: regex.into(),
        server_label: SERVER_LABEL.into(),
        ..Default::default()
    };
    let update = |settings: InventorySettings| UpdateFabricRequest {
        fabric: Some(Fabric { id: id.clone(), inventory: Some(settings), ..Default::default() }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["inventory".into()] }),
        ..Default::default()
    };
    c.fabrics.update_fabric(update(settings("^tenant-"))).await.expect("inventory settings");
    let (dry, kinds) = import(&mut c, &id, true).await;
    assert_eq!(status(&dry), SyncRunStatus::Succeeded, "{dry:?}");
    let vm_kind = kinds.iter().find(|k| k.kind == "VirtualMachine").expect("VirtualMachine progress");
    assert!(!vm_kind.served && vm_kind.listed == 0, "{vm_kind:?}");
    assert_eq!(kinds.len(), 9, "{kinds:?}");
    let pods = kinds.iter().find(|k| k.kind == "Pod").expect("Pod progress");
    assert_eq!((pods.listed, pods.kept), (4, 3), "{pods:?}");
    assert!(counters(&dry).created > 0);
    assert!(objects(&mut c, &id, "").await.is_empty(), "a dry run stores nothing");

    // KubeVirt installed, a VM (KubeVirt's example) with its VMI running on worker-b.
    kube.kubectl_ok(&["apply", "-f", &data("kubevirt-crds-minimal.yaml")]);
    for crd in ["virtualmachines.kubevirt.io", "virtualmachineinstances.kubevirt.io"] {
        kube.kubectl_ok(&["wait", "--for=condition=Established", &format!("crd/{crd}"), "--timeout=60s"]);
    }
    kube.kubectl_ok(&["apply", "-n", "tenant-a", "-f", &data("vm-cirros.yaml")]);
    kube.apply_yaml(
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata:\n  name: vm-cirros\n  namespace: tenant-a\n  labels:\n    vm.kubevirt.io/name: vm-cirros\nspec: {}\n",
    );
    let vmi_status = r#"{"status": {"phase": "Running", "nodeName": "worker-b", "interfaces": [{"name": "default", "ipAddress": "10.244.1.7"}]}}"#;
    kube.kubectl_ok(&[
        "patch",
        "virtualmachineinstances.kubevirt.io",
        "vm-cirros",
        "-n",
        "tenant-a",
        "--subresource=status",
        "--type=merge",
        "-p",
        vmi_status,
    ]);

    let (first, kinds) = import(&mut c, &id, false).await;
    assert_eq!(status(&first), SyncRunStatus::Succeeded, "{first:?}");
    assert!(kinds.iter().all(|k| k.served), "{kinds:?}");
    // 3 nodes, tenant-a, a deployment, 3 pods, a service, a VM and its VMI.
    assert_eq!((counters(&first).created, counters(&first).deleted), (11, 0), "{first:?}");
    assert_eq!(first.changes.len(), 11);
    assert!(first.changes.iter().all(|ch| ch.action == ChangeAction::Create as i32));

    let pods = objects(&mut c, &id, "kind=pod").await;
    assert_eq!(names(&pods), ["batch-1", "virt-launcher-vm-cirros-x7k2p", "web-1"]);
    let launcher = &pods[1];
    assert_eq!(
        (launcher.workload, launcher.vm.as_str(), launcher.node.as_str()),
        (WorkloadType::Vm as i32, "vm-cirros", "worker-b")
    );
    assert_eq!(pods[2].workload, WorkloadType::Container as i32);
    let vms = objects(&mut c, &id, "workload=vm").await;
    assert_eq!(names(&vms), ["virt-launcher-vm-cirros-x7k2p", "vm-cirros", "vm-cirros"]);
    let nodes = objects(&mut c, &id, "kind=node").await;
    assert_eq!(names(&nodes), ["server-1", "spare", "worker-b"]);
    assert!(
        matches!(fact(&nodes[0], "kubeletVersion"), Some(prost_types::value::Kind::StringValue(v)) if v == "v1.31.2"),
        "{:?}",
        nodes[0]
    );
    assert!(matches!(fact(&nodes[0], "ready"), Some(prost_types::value::Kind::BoolValue(true))), "{:?}", nodes[0]);

    // Across the layers: a switch port, the Server linked to it, its node, what runs there.
    let behind = c
        .inventory
        .list_behind_switch_port(ListBehindSwitchPortRequest {
            fabric_id: id.clone(),
            switch_port: "ds3000-01/E1/1/3".into(),
        })
        .await
        .expect("behind port")
        .into_inner()
        .servers;
    assert_eq!(behind.len(), 1, "{behind:?}");
    let nodes: Vec<(&str, &str)> = behind[0].node_refs.iter().map(|n| (n.cluster.as_str(), n.name.as_str())).collect();
    assert_eq!((behind[0].server.as_str(), nodes.as_slice()), ("server-2", [("", "worker-b")].as_slice()));
    let ports: Vec<String> = behind[0].links.iter().map(|l| format!("{}/{}", l.switch, l.switch_port)).collect();
    assert_eq!(ports, ["ds3000-01/E1/1/3", "ds3000-02/E1/1/3"]);
    let hosted: Vec<(String, String, i32)> =
        behind[0].workloads.iter().map(|w| (w.kind.clone(), w.name.clone(), w.workload)).collect();
    // The VM once, as its VMI; its launcher pod is not listed again.
    assert_eq!(hosted, [("virtualmachineinstance".to_string(), "vm-cirros".to_string(), WorkloadType::Vm as i32)]);

    let web = c
        .inventory
        .get_inventory_object(GetInventoryObjectRequest {
            fabric_id: id.clone(),
            kind: "pod".into(),
            namespace: "tenant-a".into(),
            name: "web-1".into(),
            ..Default::default()
        })
        .await
        .expect("get pod")
        .into_inner();
    let on = web.server.expect("web-1's server");
    assert_eq!(on.server, "server-1");
    assert!(on.links.iter().any(|l| l.switch == "ds3000-01" && l.switch_port == "E1/1/2"), "{on:?}");
    // A VM is where its VMI runs.
    let vm = c
        .inventory
        .get_inventory_object(GetInventoryObjectRequest {
            fabric_id: id.clone(),
            kind: "virtualmachine".into(),
            namespace: "tenant-a".into(),
            name: "vm-cirros".into(),
            ..Default::default()
        })
        .await
        .expect("get vm")
        .into_inner();
    assert_eq!(vm.server.map(|s| s.server).as_deref(), Some("server-2"));
    let spare = c
        .inventory
        .get_inventory_object(GetInventoryObjectRequest {
            fabric_id: id.clone(),
            kind: "node".into(),
            name: "spare".into(),
            ..Default::default()
        })
        .await
        .expect("get node")
        .into_inner();
    assert!(spare.server.is_none(), "a node that is no Server: {spare:?}");
    let server_1 = c
        .inventory
        .get_server_inventory(GetServerInventoryRequest { fabric_id: id.clone(), server: "server-1".into() })
        .await
        .expect("server inventory")
        .into_inner()
        .server
        .expect("server");
    assert_eq!(server_1.workloads.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(), ["web-1"]);

    // Re-import: one pod changed, one gone; the rest unchanged.
    kube.kubectl_ok(&["label", "pod", "web-1", "-n", "tenant-a", "tier=front"]);
    kube.kubectl_ok(&["delete", "pod", "batch-1", "-n", "tenant-a", "--grace-period=0", "--force"]);
    let (again, _) = import(&mut c, &id, false).await;
    let n = counters(&again);
    assert_eq!((n.created, n.updated, n.deleted, n.unchanged), (0, 1, 1, 9), "{again:?}");
    let changed: Vec<(String, i32)> =
        again.changes.iter().map(|ch| (ch.key.clone().unwrap().name, ch.action)).collect();
    assert_eq!(
        changed,
        [("batch-1".into(), ChangeAction::Delete as i32), ("web-1".into(), ChangeAction::Update as i32)]
    );
    assert_eq!(names(&objects(&mut c, &id, "kind=pod").await), ["virt-launcher-vm-cirros-x7k2p", "web-1"]);

    // Bad input names the field; nothing changes.
    let bad = c.fabrics.update_fabric(update(settings("(unclosed"))).await.expect_err("a bad regex");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("fabric.inventory.namespace_regex"), "{}", bad.message());
    let kinds = InventorySettings { kinds: vec!["pods".into()], ..Default::default() };
    let bad = c.fabrics.update_fabric(update(kinds)).await.expect_err("a bad kind");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("fabric.inventory.kinds[0]"), "{}", bad.message());
    let err = c
        .inventory
        .list_behind_switch_port(ListBehindSwitchPortRequest { fabric_id: id.clone(), switch_port: "no-port".into() })
        .await
        .expect_err("not switch/port");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = c
        .inventory
        .get_server_inventory(GetServerInventoryRequest { fabric_id: id.clone(), server: "server-99".into() })
        .await
        .expect_err("no such server");
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = c
        .inventory
        .list_inventory_objects(ListInventoryObjectsRequest {
            fabric_id: id.clone(),
            filter: "kind=pods".into(),
            ..Default::default()
        })
        .await
        .expect_err("not a kind");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("virtualmachineinstance"), "{}", err.message());
    let sync = c
        .sync
        .start_sync(StartSyncRequest { fabric_id: id.clone(), mode: SyncMode::Inventory as i32, ..Default::default() })
        .await
        .expect_err("inventory runs start elsewhere");
    assert_eq!(sync.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn the_least_privilege_account_reads_the_inventory_and_the_schedule_keeps_it_current() {
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
    let manifests = c
        .fabrics
        .generate_rbac_manifests(GenerateRbacManifestsRequest {
            fabric_id: id.clone(),
            namespace: "fabricsync-system".into(),
            ..Default::default()
        })
        .await
        .expect("rbac")
        .into_inner();
    kube.kubectl_ok(&["create", "namespace", "fabricsync-system"]);
    kube.apply_yaml(&manifests.yaml);
    let token = kube.service_account_token(&manifests.token_secret_name);
    node(&kube, "server-1", "");
    let settings = InventorySettings {
        kinds: vec!["node".into(), "pod".into()],
        interval: Some(prost_types::Duration { seconds: 10, nanos: 0 }),
        ..Default::default()
    };
    let request = UpdateFabricRequest {
        fabric: Some(Fabric { id: id.clone(), inventory: Some(settings), ..Default::default() }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["inventory".into(), "cluster".into()] }),
        cluster: Some(cluster_input(&kube, &token)),
        ..Default::default()
    };
    let fabric = c.fabrics.update_fabric(request).await.expect("update").into_inner().fabric.expect("fabric");
    let shown = fabric.inventory.expect("settings");
    assert_eq!((shown.kinds, shown.interval.map(|d| d.seconds)), (vec!["node".to_string(), "pod".into()], Some(10)));

    // No client call: the schedule imports with the generated account's token, which may read.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let nodes = loop {
        let nodes = objects(&mut c, &id, "kind=node").await;
        if !nodes.is_empty() {
            break nodes;
        }
        assert!(std::time::Instant::now() < deadline, "no scheduled import stored the node");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    assert_eq!(names(&nodes), ["server-1"]);
    let runs = c
        .sync
        .list_sync_runs(ListSyncRunsRequest { filter: format!("fabric_id={id}"), ..Default::default() })
        .await
        .expect("runs")
        .into_inner()
        .runs;
    let scheduled = runs.iter().find(|r| r.mode == SyncMode::Inventory as i32).expect("an inventory run");
    assert_eq!(scheduled.trigger, SyncTrigger::Schedule as i32);
    assert_eq!(status(scheduled), SyncRunStatus::Succeeded, "{scheduled:?}");
    // Kinds left out are not imported.
    assert!(objects(&mut c, &id, "kind=namespace").await.is_empty());
}

async fn put_cluster(
    c: &mut Clients,
    fabric_id: &str,
    name: &str,
    connection: ClusterConnectionInput,
) -> Result<PutInventoryClusterResponse, tonic::Status> {
    let request =
        PutInventoryClusterRequest { fabric_id: fabric_id.into(), name: name.into(), connection: Some(connection) };
    c.inventory.put_inventory_cluster(request).await.map(|r| r.into_inner())
}

#[tokio::test]
async fn an_import_reads_the_extra_clusters_a_fabric_lists_beside_its_own() {
    let (own, edge) = (KubeCluster::start(), KubeCluster::start());
    let repo = GitFixture::with_files(&[("fabric/wiring.yaml", &lab_wiring())]);
    let server = ServerProcess::start(&support::fresh_database().await).await;
    let mut c = Clients::new(server.channel().await);
    let id = c
        .fabric_on_cluster(
            "lab",
            &repo.file_url(),
            "fabric",
            SyncPolicy::default(),
            Some(cluster_input(&own, ADMIN_TOKEN)),
        )
        .await;
    let pulled = c.sync_mode(&id, SyncMode::Pull, false, false).await;
    assert_eq!(status(&pulled), SyncRunStatus::Succeeded, "{pulled:?}");
    // The fabric's own cluster runs web-1 on server-1; the edge cluster's node server-2 runs a
    // cache and a pod of the same name as the own cluster's.
    node(&own, "server-1", "");
    namespace(&own, "shop");
    pod(&own, "shop", "web-1", "server-1", "", "web");
    node(&edge, "server-2", "");
    namespace(&edge, "shop");
    pod(&edge, "shop", "web-1", "server-2", "", "web");
    pod(&edge, "shop", "cache-1", "server-2", "", "cache");
    let settings = InventorySettings { kinds: vec!["node".into(), "pod".into()], ..Default::default() };
    let request = UpdateFabricRequest {
        fabric: Some(Fabric { id: id.clone(), inventory: Some(settings), ..Default::default() }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["inventory".into()] }),
        ..Default::default()
    };
    c.fabrics.update_fabric(request).await.expect("inventory settings");

    // The edge cluster with its own token, which no answer carries.
    let put = put_cluster(&mut c, &id, "edge", cluster_input(&edge, ADMIN_TOKEN)).await.expect("put edge");
    let shown = put.cluster.expect("cluster");
    assert_eq!(shown.name, "edge");
    let connection = shown.connection.expect("connection");
    assert_eq!((connection.server_url.as_str(), connection.has_bearer_token), (edge.url.as_str(), true));
    let listed = c
        .inventory
        .list_inventory_clusters(ListInventoryClustersRequest { fabric_id: id.clone() })
        .await
        .expect("list clusters")
        .into_inner();
    assert_eq!(listed.clusters.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["edge"]);
    assert!(!format!("{listed:?}").contains(ADMIN_TOKEN));

    let (first, progress) = import(&mut c, &id, false).await;
    assert_eq!(status(&first), SyncRunStatus::Succeeded, "{first:?}");
    let read: Vec<(&str, &str, i64)> = progress.iter().map(|p| (p.cluster.as_str(), p.kind.as_str(), p.kept)).collect();
    assert_eq!(read, [("", "Node", 1), ("", "Pod", 1), ("edge", "Node", 1), ("edge", "Pod", 2)]);
    assert_eq!(counters(&first).created, 5, "{first:?}");
    let at_edge = objects(&mut c, &id, "cluster=edge").await;
    assert_eq!(names(&at_edge), ["server-2", "cache-1", "web-1"]);
    let all = objects(&mut c, &id, "kind=pod").await;
    let pods: Vec<(&str, &str)> = all.iter().map(|o| (o.cluster.as_str(), o.name.as_str())).collect();
    assert_eq!(pods, [("", "web-1"), ("edge", "cache-1"), ("edge", "web-1")]);
    assert_eq!(names(&objects(&mut c, &id, r#"cluster="""#).await), ["server-1", "web-1"]);

    // Across the layers: server-2 is the edge cluster's node, and hosts what that cluster runs.
    let server_2 = c
        .inventory
        .get_server_inventory(GetServerInventoryRequest { fabric_id: id.clone(), server: "server-2".into() })
        .await
        .expect("server-2")
        .into_inner()
        .server
        .expect("server");
    let nodes: Vec<(&str, &str)> = server_2.node_refs.iter().map(|n| (n.cluster.as_str(), n.name.as_str())).collect();
    assert_eq!(nodes, [("edge", "server-2")]);
    let hosted: Vec<(&str, &str)> = server_2.workloads.iter().map(|w| (w.cluster.as_str(), w.name.as_str())).collect();
    assert_eq!(hosted, [("edge", "cache-1"), ("edge", "web-1")]);
    let edge_web = c
        .inventory
        .get_inventory_object(GetInventoryObjectRequest {
            fabric_id: id.clone(),
            cluster: "edge".into(),
            kind: "pod".into(),
            namespace: "shop".into(),
            name: "web-1".into(),
        })
        .await
        .expect("edge's web-1")
        .into_inner();
    assert_eq!(edge_web.object.expect("object").node, "server-2");
    assert_eq!(edge_web.server.map(|s| s.server).as_deref(), Some("server-2"));

    // Put again without the token: kept while the URL stays, dropped when it moves.
    let again = ClusterConnectionInput { bearer_token: String::new(), ..cluster_input(&edge, ADMIN_TOKEN) };
    let kept = put_cluster(&mut c, &id, "edge", again.clone()).await.expect("put again");
    assert!(!kept.credentials_cleared && kept.cluster.unwrap().connection.unwrap().has_bearer_token);
    let moved = ClusterConnectionInput { server_url: own.url.clone(), ..again };
    let cleared = put_cluster(&mut c, &id, "edge", moved).await.expect("put moved");
    assert!(cleared.credentials_cleared && !cleared.cluster.unwrap().connection.unwrap().has_bearer_token);
    put_cluster(&mut c, &id, "edge", cluster_input(&edge, ADMIN_TOKEN)).await.expect("put back");

    // Bad input names the field; nothing is stored.
    let bad = |name: &str, connection: ClusterConnectionInput| (name.to_string(), connection);
    for ((name, connection), field) in [
        (bad("Edge_1", cluster_input(&edge, ADMIN_TOKEN)), "name"),
        (
            bad("meta", ClusterConnectionInput { server_url: "http://169.254.169.254/".into(), ..Default::default() }),
            "connection.server_url",
        ),
        (bad("nourl", ClusterConnectionInput::default()), "connection.server_url"),
        (
            bad("ns", ClusterConnectionInput { namespace: "x".into(), ..cluster_input(&edge, ADMIN_TOKEN) }),
            "connection.namespace",
        ),
    ] {
        let err = put_cluster(&mut c, &id, &name, connection).await.expect_err(&name);
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{name}: {err:?}");
        assert!(err.message().contains(field), "{name}: {}", err.message());
    }

    // A cluster that cannot be read fails the import, naming it; nothing stored is lost.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let gone = ClusterConnectionInput { server_url: format!("http://{closed}"), ..Default::default() };
    put_cluster(&mut c, &id, "gone", gone).await.expect("put gone");
    let (failed, _) = import(&mut c, &id, false).await;
    assert_eq!(status(&failed), SyncRunStatus::Failed, "{failed:?}");
    assert!(failed.error.contains("inventory cluster \"gone\""), "{}", failed.error);
    assert_eq!(objects(&mut c, &id, "").await.len(), 5);
    // 16 at most.
    for i in 0..14 {
        let extra = ClusterConnectionInput { server_url: format!("http://{closed}"), ..Default::default() };
        put_cluster(&mut c, &id, &format!("c{i}"), extra).await.expect("put one of 16");
    }
    let extra = ClusterConnectionInput { server_url: format!("http://{closed}"), ..Default::default() };
    let err = put_cluster(&mut c, &id, "c14", extra).await.expect_err("a 17th");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");

    // Removing a cluster removes what was imported from it.
    for name in ["gone", "edge"] {
        c.inventory
            .delete_inventory_cluster(DeleteInventoryClusterRequest { fabric_id: id.clone(), name: name.into() })
            .await
            .expect("delete");
    }
    let left = objects(&mut c, &id, "").await;
    assert_eq!(
        left.iter().map(|o| (o.cluster.as_str(), o.name.as_str())).collect::<Vec<_>>(),
        [("", "server-1"), ("", "web-1")]
    );
    let err = c
        .inventory
        .delete_inventory_cluster(DeleteInventoryClusterRequest { fabric_id: id.clone(), name: "edge".into() })
        .await
        .expect_err("deleted already");
    assert_eq!(err.code(), tonic::Code::NotFound);
}
