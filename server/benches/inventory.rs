//! Inventory benchmark: a cluster of 500 nodes, 20,000 pods (2,000 of them VM launchers) and
//! 2,000 KubeVirt VMs with their VMIs, created in a real kube-apiserver (tests/kube-harness);
//! fabricsync's first import, a re-import with nothing changed and one with 1% changed, with the
//! server's peak memory, against `kubectl get -o json` of the same kinds (the read a script
//! would start from) in the same run. Run with `scripts/bench.sh inventory`; prints Markdown.
#![allow(clippy::unwrap_used)] // a panic in a bench is a failed bench

mod common;
#[path = "../tests/support/kube.rs"]
mod kube_harness;

use std::time::{Duration, Instant};

use common::{connect, create_fabric, memory, ms, start_server};
use fabricsync::proto::sync_progress_event::Payload;
use fabricsync::proto::*;
use futures::{stream, StreamExt};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube_harness::{KubeCluster, ADMIN_TOKEN};
use serde_json::json;

const NAMESPACES: usize = 20;
/// Requests in flight while the cluster is filled.
const IN_FLIGHT: usize = 64;
const KINDS: &str = "nodes,namespaces,deployments,statefulsets,daemonsets,pods,services,virtualmachines.kubevirt.io,virtualmachineinstances.kubevirt.io";

fn arg(name: &str, default: usize) -> usize {
    std::env::args().skip_while(|a| a != name).nth(1).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn api(client: &kube::Client, api_version: &str, kind: &str, namespace: Option<&str>) -> kube::Api<DynamicObject> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    match namespace {
        Some(ns) => kube::Api::namespaced_with(client.clone(), ns, &resource),
        None => kube::Api::all_with(client.clone(), &resource),
    }
}

/// Creates `objects` (apiVersion, kind, namespace, body), IN_FLIGHT at a time.
async fn create(client: &kube::Client, objects: Vec<(&'static str, &'static str, Option<String>, serde_json::Value)>) {
    stream::iter(objects)
        .for_each_concurrent(IN_FLIGHT, |(api_version, kind, namespace, body)| async move {
            let object: DynamicObject = serde_json::from_value(body).expect("object");
            api(client, api_version, kind, namespace.as_deref())
                .create(&PostParams::default(), &object)
                .await
                .expect("create");
        })
        .await;
}

/// One import, from StartInventoryImport to the end of its progress stream.
async fn import(c: &mut common::Clients, fabric_id: &str) -> (Duration, SyncCounters) {
    let started = Instant::now();
    let request = StartInventoryImportRequest { fabric_id: fabric_id.into(), dry_run: false };
    let run = c.inventory.start_inventory_import(request).await.expect("start").into_inner().run.expect("run");
    let request = StreamSyncProgressRequest { run_id: run.id.clone(), from_sequence: 0 };
    let mut events = c.sync.stream_sync_progress(request).await.expect("stream").into_inner();
    let mut counters = None;
    while let Some(message) = events.message().await.expect("stream") {
        match message.event.and_then(|e| e.payload) {
            Some(Payload::Finished(f)) => counters = f.counters,
            Some(Payload::Failed(f)) => panic!("import failed: {}", f.message),
            _ => {}
        }
    }
    (started.elapsed(), counters.expect("finished"))
}

#[tokio::main]
async fn main() {
    let nodes = arg("--nodes", 500);
    let pods = arg("--pods", 20_000);
    let vms = arg("--vms", 2_000);
    let work = tempfile::tempdir().expect("tempdir");
    let (_pg, database_url) = common::database().await;
    let kube = KubeCluster::start();
    let client = common::kube_client(&kube.url, &kube.ca_pem, ADMIN_TOKEN);
    kube.kubectl_ok(&[
        "apply",
        "-f",
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/kubevirt/kubevirt-crds-minimal.yaml"),
    ]);
    for crd in ["virtualmachines.kubevirt.io", "virtualmachineinstances.kubevirt.io"] {
        kube.kubectl_ok(&["wait", "--for=condition=Established", &format!("crd/{crd}"), "--timeout=60s"]);
    }

    // The cluster: nodes, tenant namespaces, pods spread over the nodes (every tenth a VM's
    // launcher), VMs with their VMIs.
    let filling = Instant::now();
    let namespace = |i: usize| format!("tenant-{:02}", i % NAMESPACES);
    let mut objects = Vec::new();
    for n in 0..nodes {
        let body = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": format!("node-{n:04}"),
            "labels": {"node-role.kubernetes.io/worker": "", "topology.kubernetes.io/zone": format!("zone-{}", n % 3)}}});
        objects.push(("v1", "Node", None, body));
    }
    for i in 0..NAMESPACES {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace(i)}});
        objects.push(("v1", "Namespace", None, body));
    }
    create(&client, std::mem::take(&mut objects)).await;
    for i in 0..NAMESPACES {
        // Pods need the namespace's default ServiceAccount, made by a controller.
        while !kube.kubectl(&["get", "serviceaccount", "default", "-n", &namespace(i)]).status.success() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let launchers = vms.min(pods);
    for p in 0..pods {
        let ns = namespace(p);
        let node = format!("node-{:04}", p % nodes.max(1));
        let (name, labels, container) = if p < launchers {
            let vm = format!("vm-{p:05}");
            (
                format!("virt-launcher-{vm}-x7k2p"),
                json!({"kubevirt.io/domain": vm, "vm.kubevirt.io/name": vm}),
                "compute",
            )
        } else {
            (format!("app-{p:05}"), json!({"app": format!("app-{}", p % 50)}), "app")
        };
        let body = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"nodeName": node, "automountServiceAccountToken": false,
                     "containers": [{"name": container, "image": "quay.io/example/app:1"}]}});
        objects.push(("v1", "Pod", Some(ns), body));
    }
    for v in 0..vms {
        let ns = namespace(v);
        let vm = format!("vm-{v:05}");
        let body = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": vm, "namespace": ns},
            "spec": {"runStrategy": "Always", "template": {"spec": {"domain": {"devices": {}}}}}});
        objects.push(("kubevirt.io/v1", "VirtualMachine", Some(ns.clone()), body));
        let body = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": vm, "namespace": ns, "labels": {"vm.kubevirt.io/name": vm}}, "spec": {}});
        objects.push(("kubevirt.io/v1", "VirtualMachineInstance", Some(ns), body));
    }
    let total = objects.len() + nodes + NAMESPACES;
    create(&client, objects).await;
    let filled = filling.elapsed();

    // The peer: the same kinds read with kubectl, as JSON (no diff, no storage).
    let started = Instant::now();
    let out = std::process::Command::new(kube.harness_path())
        .args(kube.kubectl_flags())
        .args(["get", KINDS, "-A", "-o", "json"])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("kubectl");
    assert!(out.success(), "kubectl get");
    let kubectl = started.elapsed();

    let data_dir = work.path().join("server");
    std::fs::create_dir_all(&data_dir).expect("data dir");
    let server = start_server(&database_url, &data_dir);
    let mut c = connect(&server.addr).await;
    let cluster = ClusterConnectionInput {
        server_url: kube.url.clone(),
        ca_certificate_pem: kube.ca_pem.clone(),
        bearer_token: ADMIN_TOKEN.into(),
        namespace: String::new(),
    };
    // An empty repository: the import needs the cluster only (no pull; the watch has nothing).
    let repo = work.path().join("repo");
    common::generated_repo(&repo, 0);
    let fabric_id = create_fabric(&mut c, "bench", &format!("file://{}", repo.display()), Some(cluster)).await;
    let (_, idle_rss) = memory(server.child.id());
    let (first, counted) = import(&mut c, &fabric_id).await;
    let (first_peak, first_rss) = memory(server.child.id());
    let (noop, unchanged) = import(&mut c, &fabric_id).await;
    assert_eq!(unchanged.created + unchanged.updated + unchanged.deleted, 0, "{unchanged:?}");

    // 1% changed: pods relabelled, the rest as it was.
    let changed = total / 100;
    let relabel: Vec<usize> = (0..changed).map(|i| (i * 97) % pods.max(1)).collect();
    stream::iter(relabel)
        .for_each_concurrent(IN_FLIGHT, |p| {
            let client = client.clone();
            async move {
                let name = if p < launchers { format!("virt-launcher-vm-{p:05}-x7k2p") } else { format!("app-{p:05}") };
                let patch = Patch::Merge(json!({"metadata": {"labels": {"bench": "changed"}}}));
                api(&client, "v1", "Pod", Some(&namespace(p)))
                    .patch(&name, &PatchParams::default(), &patch)
                    .await
                    .expect("patch");
            }
        })
        .await;
    let (again, counters) = import(&mut c, &fabric_id).await;
    let (peak, rss) = memory(server.child.id());

    let per_second = |d: Duration| counted.documents as f64 / d.as_secs_f64();
    println!("## Inventory import (`scripts/bench.sh inventory`)\n");
    println!(
        "{nodes} nodes, {pods} pods ({launchers} VM launchers), {vms} VMs and their VMIs, {NAMESPACES} namespaces: {total} objects created in {:.1} s.\n",
        filled.as_secs_f64()
    );
    println!("| measure | fabricsync | peer: `kubectl get {KINDS} -A -o json` | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| first import ({} objects stored) | {} ({:.0} objects/s) | {} (read only) | {:.2}x the read |",
        counted.created,
        ms(first),
        per_second(first),
        ms(kubectl),
        first.as_secs_f64() / kubectl.as_secs_f64()
    );
    println!(
        "| re-import, nothing changed | {} | | {:.2}x the read |",
        ms(noop),
        noop.as_secs_f64() / kubectl.as_secs_f64()
    );
    println!(
        "| re-import, {changed} pods changed (1%): {} updated | {} | | {:.2}x the read |",
        counters.updated,
        ms(again),
        again.as_secs_f64() / kubectl.as_secs_f64()
    );
    println!(
        "\nServer memory: {idle_rss:.0} MiB before; peak {first_peak:.0} MiB after the first import ({first_rss:.0} MiB resident); peak {peak:.0} MiB, {rss:.0} MiB resident at the end."
    );
    assert_eq!(counters.updated as usize, changed, "{counters:?}");
}
