//! Prometheus metrics end to end: a real server with `--metrics-listen`, a real PostgreSQL, a
//! real Git repository; a few calls (one failing, one refused, one stream), a pull, then
//! `GET /metrics` over HTTP, parsed, and the series checked by value.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fabricsync::crypto::Keyring;
use fabricsync::proto::fabric_service_client::FabricServiceClient;
use fabricsync::proto::*;
use support::gitservers::{free_port, GitFixture};
use support::server::{Bearer, ServerProcess, ADMIN_TOKEN};
use support::sync::{lab_wiring, status, Clients, LAB_OBJECTS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One sample of the exposition: its metric name and labels.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A tiny parser of the Prometheus text format: `name{a="b",c="d"} value` lines, comments
/// skipped. Label values here have no escaped quotes or commas (words, names, numbers).
fn parse(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
                let labels = inner
                    .split(',')
                    .filter(|pair| !pair.is_empty())
                    .map(|pair| {
                        let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("bad label in {line:?}"));
                        (k.to_string(), v.trim_matches('"').to_string())
                    })
                    .collect();
                (name.to_string(), labels)
            }
            None => (series.to_string(), BTreeMap::new()),
        };
        samples.push(Sample { name, labels, value });
    }
    samples
}

struct Scrape {
    content_type: String,
    body: String,
    samples: Vec<Sample>,
}

impl Scrape {
    /// The samples of `name` whose labels include `labels`.
    fn matching(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
            .collect()
    }

    /// The value of the one series of `name` with exactly these labels.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> =
            self.matching(name, labels).into_iter().filter(|s| s.labels.len() == labels.len()).collect();
        assert_eq!(found.len(), 1, "one series {name}{labels:?}; found {found:?}\n{}", self.body);
        found[0].value
    }

    /// The sum of the series of `name` that have these labels (and perhaps more).
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).iter().map(|s| s.value).sum()
    }
}

/// `GET path` over a plain HTTP/1.1 connection: (status code, headers, body).
async fn get(port: u16, path: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect to metrics");
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut raw)).await.expect("metrics answer").unwrap();
    let raw = String::from_utf8(raw).expect("utf-8 answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    let code = head.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("status code");
    (code, head.to_string(), body.to_string())
}

async fn scrape(port: u16) -> Scrape {
    let (code, head, body) = get(port, "/metrics").await;
    assert_eq!(code, 200, "{head}\n{body}");
    let content_type = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-type")))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    Scrape { content_type, samples: parse(&body), body }
}

const HANDLED: &str = "fabricsync_grpc_server_handled_total";
const GET_FABRIC: &str = "fabricsync.v1.FabricService/GetFabric";

#[tokio::test]
async fn metrics_count_calls_runs_and_read_the_database_at_scrape_time() {
    let repo = GitFixture::with_files(&[("fabric/wiring.yaml", &lab_wiring())]);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let keys = Keyring::generate_key_line("test-key");
    let server =
        ServerProcess::start_with(&support::fresh_database().await, &keys, &["--metrics-listen", &listen]).await;
    let mut c = Clients::new(server.channel().await);
    let fabric_id = c.fabric("lab", &repo.file_url(), "fabric", SyncPolicy::default()).await;

    // One failing call (an unknown fabric) and one refused by the auth layer (no token).
    let unknown = c
        .fabrics
        .get_fabric(GetFabricRequest { id: uuid::Uuid::new_v4().to_string() })
        .await
        .expect_err("an unknown fabric");
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    let mut anonymous = FabricServiceClient::new(server.channel_as(Bearer::none()).await);
    let refused = anonymous.get_fabric(GetFabricRequest { id: fabric_id.clone() }).await.expect_err("no token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    // A pull, and its progress streamed to its end.
    let run = c.sync(&fabric_id, "", false).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
    let events = c.events(&run.id, 0).await;
    assert!(!events.is_empty());

    let m = scrape(port).await;
    assert_eq!(m.content_type, "text/plain; version=0.0.4; charset=utf-8");

    // gRPC calls by method and code; the refusal counts (the layer sits outside auth).
    assert_eq!(m.value(HANDLED, &[("method", GET_FABRIC), ("type", "unary"), ("code", "NotFound")]), 1.0);
    assert_eq!(m.value(HANDLED, &[("method", GET_FABRIC), ("type", "unary"), ("code", "Unauthenticated")]), 1.0);
    let create = [("method", "fabricsync.v1.FabricService/CreateFabric"), ("type", "unary")];
    assert_eq!(m.value("fabricsync_grpc_server_started_total", &create), 1.0);
    assert_eq!(m.value(HANDLED, &[create[0], create[1], ("code", "OK")]), 1.0);
    assert_eq!(m.value("fabricsync_grpc_server_handling_seconds_count", &create), 1.0);
    assert_eq!(m.value("fabricsync_grpc_server_handling_seconds_bucket", &[create[0], create[1], ("le", "+Inf")]), 1.0);
    let buckets = m.matching("fabricsync_grpc_server_handling_seconds_bucket", &create);
    assert!(buckets.len() > 5, "histogram buckets: {buckets:?}");
    assert!(buckets.windows(2).all(|w| w[0].value <= w[1].value), "buckets are cumulative: {buckets:?}");
    // The stream: counted at its start and by the code it ended with; no latency histogram.
    let stream = [("method", "fabricsync.v1.SyncService/StreamSyncProgress"), ("type", "stream")];
    assert_eq!(m.value("fabricsync_grpc_server_started_total", &stream), 1.0);
    assert_eq!(m.value(HANDLED, &[stream[0], stream[1], ("code", "OK")]), 1.0);
    assert!(m.matching("fabricsync_grpc_server_handling_seconds_count", &stream).is_empty());

    // The run ended, its duration and its stages.
    let pulled = [("mode", "pull"), ("trigger", "user"), ("outcome", "succeeded")];
    assert_eq!(m.value("fabricsync_sync_runs_ended_total", &pulled), 1.0);
    assert_eq!(m.sum("fabricsync_sync_runs_ended_total", &[]), 1.0, "no other run ended");
    assert_eq!(
        m.value("fabricsync_sync_run_duration_seconds_count", &[("mode", "pull"), ("outcome", "succeeded")]),
        1.0
    );
    for stage in ["fetch", "parse", "validate", "plan", "persist"] {
        let labels = [("mode", "pull"), ("stage", stage)];
        assert_eq!(m.value("fabricsync_sync_stage_duration_seconds_count", &labels), 1.0, "stage {stage}");
    }
    assert!(m.matching("fabricsync_sync_stage_duration_seconds_count", &[("stage", "apply_wave")]).is_empty());
    assert_eq!(m.value("fabricsync_sync_runs_active", &[("mode", "pull")]), 0.0);
    assert_eq!(m.value("fabricsync_sync_queue_runs", &[]), 0.0);
    assert_eq!(m.value("fabricsync_sync_running_runs", &[]), 0.0);
    assert_eq!(m.value("fabricsync_sync_queue_oldest_age_seconds", &[]), 0.0);
    assert!(m.value("fabricsync_git_fetch_duration_seconds_count", &[("result", "ok")]) >= 1.0);
    assert!(m.value("fabricsync_git_fetch_received_bytes_total", &[]) > 0.0, "a first fetch receives a pack");

    // Read from the database at scrape time: the fabric's resources by drift status (every
    // status has a series), its watch state one-hot (no cluster: inactive).
    assert_eq!(m.sum("fabricsync_drift_resources", &[("fabric", "lab")]), LAB_OBJECTS as f64);
    assert_eq!(m.matching("fabricsync_drift_resources", &[("fabric", "lab")]).len(), 6);
    assert_eq!(m.value("fabricsync_watch_state", &[("fabric", "lab"), ("state", "inactive")]), 1.0);
    assert_eq!(m.sum("fabricsync_watch_state", &[("fabric", "lab")]), 1.0);
    assert_eq!(m.value("fabricsync_apply_circuits_open", &[]), 0.0);

    // The pool and the process.
    assert_eq!(m.value("fabricsync_db_pool_max_connections", &[]), 16.0);
    let in_use = m.value("fabricsync_db_pool_connections", &[("state", "in_use")]);
    let idle = m.value("fabricsync_db_pool_connections", &[("state", "idle")]);
    assert!(in_use + idle >= 1.0 && in_use + idle <= 16.0, "in use {in_use}, idle {idle}");
    assert!(m.value("fabricsync_db_pool_wait_seconds_count", &[]) > 0.0);
    assert!(m.value("process_resident_memory_bytes", &[]) > 1e6);
    assert!(m.value("process_open_fds", &[]) > 0.0);

    // Nothing of what the calls carried: no token, no repository URL, no request content.
    assert!(!m.body.contains(ADMIN_TOKEN) && !m.body.contains("Bearer"), "{}", m.body);
    assert!(!m.body.contains("file://") && !m.body.contains(&fabric_id), "{}", m.body);

    // Only /metrics is served.
    assert_eq!(get(port, "/").await.0, 404);

    // Counters move: another failing call is seen by the next scrape (a second apart, as
    // gauges are read at most once a second).
    let unknown = c.fabrics.get_fabric(GetFabricRequest { id: uuid::Uuid::new_v4().to_string() }).await;
    assert_eq!(unknown.expect_err("unknown").code(), tonic::Code::NotFound);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = scrape(port).await;
        if m.value(HANDLED, &[("method", GET_FABRIC), ("type", "unary"), ("code", "NotFound")]) == 2.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the second NotFound was not counted:\n{}", m.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn the_parser_reads_labels_and_values() {
    let text =
        "# HELP x_total X.\n# TYPE x_total counter\nx_total{a=\"1\",b=\"two\"} 3\ny 0.5\nz_bucket{le=\"+Inf\"} 2\n";
    let samples = parse(text);
    assert_eq!(samples.len(), 3);
    assert_eq!(samples[0].name, "x_total");
    assert_eq!(samples[0].labels.get("b").map(String::as_str), Some("two"));
    assert_eq!(samples[0].value, 3.0);
    assert_eq!(samples[1].value, 0.5);
    assert_eq!(samples[2].labels.get("le").map(String::as_str), Some("+Inf"));
}

/// A FULL run on a real kube-apiserver, then the fabric's watch: apply objects, waves, the
/// rollout stage, the watch's state and events, drift read from the store.
#[tokio::test]
async fn metrics_of_an_apply_and_a_watch() {
    let kube = support::kube::KubeCluster::start();
    let repo = GitFixture::with_files(&[("fabric/wiring.yaml", &lab_wiring())]);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let keys = Keyring::generate_key_line("test-key");
    let server =
        ServerProcess::start_with(&support::fresh_database().await, &keys, &["--metrics-listen", &listen]).await;
    let mut c = Clients::new(server.channel().await);
    let cluster = support::sync::cluster_input(&kube, support::kube::ADMIN_TOKEN);
    let id = c.fabric_on_cluster("lab", &repo.file_url(), "fabric", SyncPolicy::default(), Some(cluster)).await;
    let run = c.sync_mode(&id, SyncMode::Full, false, false).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");

    // The watch starts within a few seconds of the fabric having a cluster.
    let deadline = Instant::now() + Duration::from_secs(60);
    let m = loop {
        let m = scrape(port).await;
        let active = m.matching("fabricsync_watch_state", &[("fabric", "lab"), ("state", "active")]);
        let events = m.sum("fabricsync_watch_events_total", &[("fabric", "lab")]);
        if active.first().is_some_and(|s| s.value == 1.0) && events > 0.0 {
            break m;
        }
        assert!(Instant::now() < deadline, "the watch is not active in the metrics:\n{}", m.body);
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(m.sum("fabricsync_watch_state", &[("fabric", "lab")]), 1.0, "one-hot");
    assert!(m.value("fabricsync_watch_last_event_timestamp_seconds", &[("fabric", "lab")]) > 1.7e9);

    let full = [("mode", "full"), ("trigger", "user"), ("outcome", "succeeded")];
    assert_eq!(m.value("fabricsync_sync_runs_ended_total", &full), 1.0);
    assert_eq!(m.value("fabricsync_apply_objects_total", &[("result", "create")]), LAB_OBJECTS as f64);
    assert_eq!(m.sum("fabricsync_apply_objects_total", &[]), LAB_OBJECTS as f64, "nothing failed or pruned");
    assert!(
        m.value("fabricsync_sync_stage_duration_seconds_count", &[("mode", "full"), ("stage", "apply_wave")]) >= 2.0
    );
    for stage in ["fetch", "parse", "validate", "plan", "persist", "rollout"] {
        let labels = [("mode", "full"), ("stage", stage)];
        assert_eq!(m.value("fabricsync_sync_stage_duration_seconds_count", &labels), 1.0, "stage {stage}");
    }
    assert!(m.matching("fabricsync_sync_stage_duration_seconds_count", &[("stage", "prune")]).is_empty());
    assert_eq!(m.sum("fabricsync_drift_resources", &[("fabric", "lab")]), LAB_OBJECTS as f64);
    assert_eq!(m.value("fabricsync_apply_circuits_open", &[]), 0.0);
    assert_eq!(m.value("fabricsync_apply_circuit_opened_total", &[]), 0.0);
    // The cluster's URL and token are nowhere.
    assert!(!m.body.contains(&kube.url) && !m.body.contains(support::kube::ADMIN_TOKEN), "{}", m.body);
}
