//! gRPC helpers for sync tests: a fabric over a local repository, runs, their streams.

use std::time::{Duration, Instant};

use super::server::AuthChannel;
use fabricsync::proto::drift_service_client::DriftServiceClient;
use fabricsync::proto::fabric_service_client::FabricServiceClient;
use fabricsync::proto::inventory_service_client::InventoryServiceClient;
use fabricsync::proto::repository_service_client::RepositoryServiceClient;
use fabricsync::proto::sync_progress_event::Payload;
use fabricsync::proto::sync_service_client::SyncServiceClient;
use fabricsync::proto::write_service_client::WriteServiceClient;
use fabricsync::proto::*;

/// The real lab fabric from githedgehog/lab-ci.
const LAB_CI: &str = include_str!("../data/samples/lab-ci/wiring.yaml");
/// Its one document that the pinned CRDs reject (a static ExternalAttachment without the
/// `switch` and `neighbor` they require; see the manifest tests).
const REJECTED_DOCUMENT: &str = "  name: ds3000-03--static-ext";
/// Objects in `lab_wiring()`.
pub const LAB_OBJECTS: i64 = 50;

/// The lab fabric without its rejected document: 50 valid objects.
pub fn lab_wiring() -> String {
    LAB_CI.split("\n---").filter(|doc| !doc.contains(REJECTED_DOCUMENT)).collect::<Vec<_>>().join("\n---")
}

/// Connections in the lab fabric: HNP wrote them in the old `v1alpha2` version.
pub const LAB_CONNECTIONS: usize = 24;
/// Objects of the vpc group in the lab fabric: still in HNP's `raw/`, not yet ingested.
pub const LAB_VPC_OBJECTS: i64 = 8;

/// A Server document of the fabric, in the default namespace.
pub fn server_doc(name: &str) -> String {
    format!(
        "apiVersion: wiring.githedgehog.com/v1beta1\nkind: Server\nmetadata:\n  name: {name}\n  namespace: default\n"
    )
}

/// Files adding the Servers `<prefix>-0..count` under `dir`, one file each.
pub fn server_files(dir: &str, prefix: &str, count: usize) -> Vec<(String, String)> {
    (0..count).map(|i| (format!("{dir}/{prefix}-{i}.yaml"), server_doc(&format!("{prefix}-{i}")))).collect()
}

/// The lab fabric under `dir` as the Hedgehog NetBox Plugin lays a repository out: HNP's
/// metadata in `.hnp/`, one file per wiring object under `managed/<kind-plural>/<name>.yaml`
/// (HNP's header comment on top, Connections in the `v1alpha2` version it once wrote), the vpc
/// objects still in one `raw/` file next to a YAML note that is no Kubernetes object, and an
/// `unmanaged/` file that is not the fabric's (a Secret: reading it would fail the pull).
pub fn hnp_layout(dir: &str) -> Vec<(String, String)> {
    let mut files = vec![
        (format!("{dir}/.hnp/manifest.yaml"), "version: 1\nfabric: lab\nlayout: managed\n".to_string()),
        (format!("{dir}/.hnp/archive-log.yaml"), "archived:\n  - raw/initial-wiring.yaml\n".to_string()),
        (format!("{dir}/raw/notes.yaml"), "owner: netops\nreview: weekly\n".to_string()),
        (
            format!("{dir}/unmanaged/legacy-credentials.yaml"),
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: legacy\n".to_string(),
        ),
    ];
    let mut raw = Vec::new();
    for doc in lab_wiring().split("\n---").map(str::trim).filter(|d| !d.is_empty()) {
        let field = |prefix: &str| doc.lines().find_map(|l| l.strip_prefix(prefix)).map(str::trim).unwrap_or_default();
        let (api_version, kind, name) = (field("apiVersion:"), field("kind:"), field("  name:"));
        if api_version.is_empty() {
            continue; // a commented-out document
        }
        if api_version.starts_with("vpc.") {
            raw.push(doc.to_string());
            continue;
        }
        let body = if kind == "Connection" { doc.replace("/v1beta1", "/v1alpha2") } else { doc.to_string() };
        let path = format!("{dir}/managed/{}s/{name}.yaml", kind.to_lowercase());
        files.push((path, format!("# Managed by the Hedgehog NetBox Plugin. Edit in NetBox.\n{body}\n")));
    }
    files.push((format!("{dir}/raw/vpc-objects.yaml"), raw.join("\n---\n") + "\n"));
    files
}

/// The connection to `kube` with `token`, in the fabric's default namespace.
pub fn cluster_input(kube: &super::kube::KubeCluster, token: &str) -> ClusterConnectionInput {
    ClusterConnectionInput {
        server_url: kube.url.clone(),
        ca_certificate_pem: kube.ca_pem.clone(),
        bearer_token: token.into(),
        namespace: String::new(),
    }
}

pub struct Clients {
    pub repos: RepositoryServiceClient<AuthChannel>,
    pub fabrics: FabricServiceClient<AuthChannel>,
    pub sync: SyncServiceClient<AuthChannel>,
    pub drift: DriftServiceClient<AuthChannel>,
    pub write: WriteServiceClient<AuthChannel>,
    pub inventory: InventoryServiceClient<AuthChannel>,
}

impl Clients {
    pub fn new(channel: AuthChannel) -> Clients {
        Clients {
            repos: RepositoryServiceClient::new(channel.clone()),
            fabrics: FabricServiceClient::new(channel.clone()),
            drift: DriftServiceClient::new(channel.clone()),
            write: WriteServiceClient::new(channel.clone()),
            inventory: InventoryServiceClient::new(channel.clone()),
            sync: SyncServiceClient::new(channel),
        }
    }

    /// A repository at `url` and a fabric reading `gitops_path` on `main`; returns the fabric id.
    pub async fn fabric(&mut self, name: &str, url: &str, gitops_path: &str, policy: SyncPolicy) -> String {
        self.fabric_on_cluster(name, url, gitops_path, policy, None).await
    }

    /// As `fabric`, with a cluster connection.
    pub async fn fabric_on_cluster(
        &mut self,
        name: &str,
        url: &str,
        gitops_path: &str,
        policy: SyncPolicy,
        cluster: Option<ClusterConnectionInput>,
    ) -> String {
        self.fabric_with(name, url, None, gitops_path, policy, cluster).await
    }

    /// As `fabric`, with the repository's credentials and a cluster connection.
    pub async fn fabric_with(
        &mut self,
        name: &str,
        url: &str,
        auth: Option<RepositoryAuth>,
        gitops_path: &str,
        policy: SyncPolicy,
        cluster: Option<ClusterConnectionInput>,
    ) -> String {
        let repository = self
            .repos
            .create_repository(CreateRepositoryRequest {
                repository: Some(Repository { name: name.into(), url: url.into(), ..Default::default() }),
                auth,
                ..Default::default()
            })
            .await
            .expect("create repository")
            .into_inner()
            .repository
            .expect("repository");
        let fabric = Fabric {
            name: name.into(),
            repository_id: repository.id,
            git_ref: "main".into(),
            gitops_path: gitops_path.into(),
            sync_policy: Some(policy),
            ..Default::default()
        };
        self.fabrics
            .create_fabric(CreateFabricRequest { fabric: Some(fabric), cluster })
            .await
            .expect("create fabric")
            .into_inner()
            .fabric
            .expect("fabric")
            .id
    }

    pub async fn start(&mut self, fabric_id: &str, ref_override: &str, dry_run: bool) -> StartSyncResponse {
        let request = StartSyncRequest {
            fabric_id: fabric_id.into(),
            mode: SyncMode::Pull as i32,
            dry_run,
            ref_override: ref_override.into(),
            force: false,
            ..Default::default()
        };
        self.sync.start_sync(request).await.expect("start sync").into_inner()
    }

    /// Runs a sync of any mode to its end.
    pub async fn sync_mode(&mut self, fabric_id: &str, mode: SyncMode, dry_run: bool, force: bool) -> SyncRun {
        let request = StartSyncRequest {
            fabric_id: fabric_id.into(),
            mode: mode as i32,
            dry_run,
            ref_override: String::new(),
            force,
            ..Default::default()
        };
        let run = self.sync.start_sync(request).await.expect("start sync").into_inner().run.expect("run");
        self.wait(&run.id, Duration::from_secs(120)).await
    }

    pub async fn run(&mut self, id: &str) -> SyncRun {
        self.sync
            .get_sync_run(GetSyncRunRequest { id: id.into() })
            .await
            .expect("get run")
            .into_inner()
            .run
            .expect("run")
    }

    /// Polls until the run ended; panics after `limit`.
    pub async fn wait(&mut self, id: &str, limit: Duration) -> SyncRun {
        let deadline = Instant::now() + limit;
        loop {
            let run = self.run(id).await;
            let status = SyncRunStatus::try_from(run.status).unwrap_or_default();
            if !matches!(status, SyncRunStatus::Queued | SyncRunStatus::Running) {
                return run;
            }
            assert!(Instant::now() < deadline, "run {id} did not end: {run:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts a pull and waits for it to end.
    pub async fn sync(&mut self, fabric_id: &str, ref_override: &str, dry_run: bool) -> SyncRun {
        let started = self.start(fabric_id, ref_override, dry_run).await;
        let id = started.run.expect("run").id;
        self.wait(&id, Duration::from_secs(60)).await
    }

    /// Every event of the stream from `from` until the server ends it.
    pub async fn events(&mut self, run_id: &str, from: i64) -> Vec<SyncProgressEvent> {
        let request = StreamSyncProgressRequest { run_id: run_id.into(), from_sequence: from };
        let mut stream = self.sync.stream_sync_progress(request).await.expect("stream").into_inner();
        let mut events = Vec::new();
        while let Some(message) = tokio::time::timeout(Duration::from_secs(60), stream.message())
            .await
            .expect("stream went quiet")
            .expect("stream error")
        {
            events.push(message.event.expect("event"));
        }
        events
    }

    /// (kind, namespace, name, content hash) of every stored resource, sorted.
    pub async fn stored(&mut self, fabric_id: &str) -> Vec<(String, String, String, String)> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .fabrics
                .list_resources(ListResourcesRequest {
                    fabric_id: fabric_id.into(),
                    page_size: 500,
                    page_token: token.clone(),
                    filter: String::new(),
                    include_objects: false,
                })
                .await
                .expect("list resources")
                .into_inner();
            for r in page.resources {
                let key = r.key.expect("key");
                out.push((key.kind, key.namespace, key.name, r.content_hash));
            }
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        out.sort();
        out
    }

    pub async fn get_fabric(&mut self, id: &str) -> Fabric {
        self.fabrics
            .get_fabric(GetFabricRequest { id: id.into() })
            .await
            .expect("get fabric")
            .into_inner()
            .fabric
            .expect("fabric")
    }
}

/// The kind of each event, e.g. "queued", "fetching", "finished".
pub fn stages(events: &[SyncProgressEvent]) -> Vec<&'static str> {
    events
        .iter()
        .map(|e| match e.payload {
            Some(Payload::Queued(_)) => "queued",
            Some(Payload::Fetching(_)) => "fetching",
            Some(Payload::Parsing(_)) => "parsing",
            Some(Payload::Validating(_)) => "validating",
            Some(Payload::Persisting(_)) => "persisting",
            Some(Payload::Applying(_)) => "applying",
            Some(Payload::Rollout(_)) => "rollout",
            Some(Payload::Inventory(_)) => "inventory",
            Some(Payload::Finished(_)) => "finished",
            Some(Payload::Failed(_)) => "failed",
            Some(Payload::Cancelled(_)) => "cancelled",
            Some(Payload::Warning(_)) => "warning",
            None => "none",
        })
        .collect()
}

pub fn status(run: &SyncRun) -> SyncRunStatus {
    SyncRunStatus::try_from(run.status).unwrap_or_default()
}

pub fn counters(run: &SyncRun) -> SyncCounters {
    run.counters.unwrap_or_default()
}
