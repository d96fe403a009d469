//! Prometheus metrics and OpenTelemetry traces end to end, against a real server, a real
//! PostgreSQL and a real Git repository. Metrics: a few calls (one failing, one refused, one
//! stream), a pull, then `GET /metrics` over HTTP, parsed, and the series checked by value.
//! Traces: a collector stand-in on loopback receives the spans of calls, a run and its stages.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fabricsync::crypto::Keyring;
use fabricsync::proto::fabric_service_client::FabricServiceClient;
use fabricsync::proto::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;
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

    // At most 32 connections at once: one more is closed at once; when they go, scrapes work.
    let mut held = Vec::new();
    for _ in 0..32 {
        held.push(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect to metrics"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect to metrics");
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the 33rd connection stays open: {read:?}");
    drop(held);
    // The server's side of a closed connection ends at once (EOF), giving its slot back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let m = scrape(port).await;
    assert_eq!(m.value(HANDLED, &[("method", GET_FABRIC), ("type", "unary"), ("code", "NotFound")]), 2.0);
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

// --- traces ---

/// An OpenTelemetry collector stand-in on loopback: the OTLP/gRPC trace service, keeping every
/// span it is sent (and the resource's service name with it).
#[derive(Clone, Default)]
struct Collector {
    spans: std::sync::Arc<std::sync::Mutex<Vec<(String, OtlpSpan)>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            let attributes = resource.resource.map(|r| r.attributes).unwrap_or_default();
            let service = attributes
                .iter()
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| text(kv.value.as_ref()?.value.as_ref()?))
                .unwrap_or_default();
            for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.push((service.clone(), span));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

impl Collector {
    async fn start() -> (Collector, u16) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let collector = Collector::default();
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
        });
        (collector, port)
    }

    fn spans(&self) -> Vec<(String, OtlpSpan)> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits (the exporter sends in batches) for a span named `name` in trace `trace_id`.
    async fn wait_for(&self, name: &str, trace_id: &[u8]) -> OtlpSpan {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((_, span)) = self.spans().into_iter().find(|(_, s)| s.name == name && s.trace_id == trace_id) {
                return span;
            }
            let names: Vec<String> = self.spans().into_iter().map(|(_, s)| s.name).collect();
            assert!(Instant::now() < deadline, "no span {name:?} in the trace; spans: {names:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn text(value: &AnyValue) -> Option<String> {
    match value {
        AnyValue::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

/// A span attribute's value, as text.
fn attribute(span: &OtlpSpan, key: &str) -> Option<String> {
    let value = span.attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()?;
    match value {
        AnyValue::IntValue(i) => Some(i.to_string()),
        other => text(other),
    }
}

/// A W3C traceparent of a caller's sampled span.
fn traceparent(trace_id: &[u8; 16], span_id: &[u8; 8]) -> tonic::metadata::MetadataValue<tonic::metadata::Ascii> {
    format!("00-{}-{}-01", hex(trace_id), hex(span_id)).parse().unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// With --otlp-endpoint, spans reach an OTLP collector: one per call, continuing the caller's
/// W3C traceparent, with its gRPC code; a run continues the trace of the call that queued it,
/// and its stages are the run's children. Only our spans, with no credential or URL in them.
#[tokio::test]
async fn traces_continue_the_callers_context_through_calls_runs_and_stages() {
    let (collector, port) = Collector::start().await;
    let repo = GitFixture::with_files(&[("fabric/wiring.yaml", &lab_wiring())]);
    let keys = Keyring::generate_key_line("test-key");
    let endpoint = format!("http://127.0.0.1:{port}");
    let server =
        ServerProcess::start_with(&support::fresh_database().await, &keys, &["--otlp-endpoint", &endpoint]).await;
    let mut c = Clients::new(server.channel().await);
    let fabric_id = c.fabric("lab", &repo.file_url(), "fabric", SyncPolicy::default()).await;

    // A call in the caller's trace.
    let (call_trace, caller_span) = ([0x11u8; 16], [0x22u8; 8]);
    let mut request = tonic::Request::new(GetFabricRequest { id: fabric_id.clone() });
    request.metadata_mut().insert("traceparent", traceparent(&call_trace, &caller_span));
    c.fabrics.get_fabric(request).await.expect("get fabric");
    let get = collector.wait_for(GET_FABRIC, &call_trace).await;
    assert_eq!(get.parent_span_id, caller_span, "the caller's span is the parent");
    assert_eq!(get.kind, opentelemetry_proto::tonic::trace::v1::span::SpanKind::Server as i32);
    assert_eq!(attribute(&get, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(attribute(&get, "rpc.service").as_deref(), Some("fabricsync.v1.FabricService"));
    assert_eq!(attribute(&get, "rpc.method").as_deref(), Some("GetFabric"));
    assert_eq!(attribute(&get, "rpc.grpc.status_code").as_deref(), Some("0"));
    assert!(get.end_time_unix_nano >= get.start_time_unix_nano && get.start_time_unix_nano > 0);

    // A client mistake is not a server error; the code is on the span.
    let (missing_trace, missing_parent) = ([0x33u8; 16], [0x44u8; 8]);
    let mut request = tonic::Request::new(GetFabricRequest { id: uuid::Uuid::new_v4().to_string() });
    request.metadata_mut().insert("traceparent", traceparent(&missing_trace, &missing_parent));
    assert_eq!(c.fabrics.get_fabric(request).await.expect_err("unknown").code(), tonic::Code::NotFound);
    let missing = collector.wait_for(GET_FABRIC, &missing_trace).await;
    assert_eq!(attribute(&missing, "rpc.grpc.status_code").as_deref(), Some("5"));
    let unset = opentelemetry_proto::tonic::trace::v1::status::StatusCode::Unset as i32;
    assert_eq!(missing.status.as_ref().map_or(unset, |s| s.code), unset, "{missing:?}");

    // A pull queued in a trace: the run continues it, and its stages are the run's children.
    let (run_trace, run_caller) = ([0x55u8; 16], [0x66u8; 8]);
    let mut request = tonic::Request::new(StartSyncRequest {
        fabric_id: fabric_id.clone(),
        mode: SyncMode::Pull as i32,
        ..Default::default()
    });
    request.metadata_mut().insert("traceparent", traceparent(&run_trace, &run_caller));
    let started = c.sync.start_sync(request).await.expect("start sync").into_inner();
    let run_id = started.run.expect("run").id;
    let run = c.wait(&run_id, Duration::from_secs(60)).await;
    assert_eq!(status(&run), SyncRunStatus::Succeeded, "{run:?}");
    let start = collector.wait_for("fabricsync.v1.SyncService/StartSync", &run_trace).await;
    assert_eq!(start.parent_span_id, run_caller);
    let run_span = collector.wait_for("sync run pull", &run_trace).await;
    assert_eq!(run_span.parent_span_id, start.span_id, "the run continues the call that queued it");
    assert_eq!(attribute(&run_span, "run_id").as_deref(), Some(run_id.as_str()));
    assert_eq!(attribute(&run_span, "fabric_id").as_deref(), Some(fabric_id.as_str()));
    for stage in ["fetch", "parse", "validate", "plan", "persist"] {
        let span = collector.wait_for(stage, &run_trace).await;
        assert_eq!(span.parent_span_id, run_span.span_id, "stage {stage} is the run's child");
        assert!(span.start_time_unix_nano >= run_span.start_time_unix_nano, "stage {stage} starts in the run");
        assert!(span.end_time_unix_nano <= run_span.end_time_unix_nano, "stage {stage} ends in the run");
    }

    // A call without a traceparent starts a trace of its own.
    c.fabrics.get_fabric(GetFabricRequest { id: fabric_id.clone() }).await.expect("get fabric");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !collector.spans().iter().any(|(_, s)| s.name == GET_FABRIC && s.parent_span_id.is_empty()) {
        assert!(Instant::now() < deadline, "no root span for an untraced call");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Only this service's own spans: calls, runs and stages; nothing a caller sent but ids.
    let spans = collector.spans();
    let stages = ["fetch", "parse", "validate", "plan", "persist", "apply_wave", "prune", "rollout", "inventory"];
    for (service, span) in &spans {
        assert_eq!(service, "fabricsync");
        let ours = span.name.starts_with("fabricsync.v1.")
            || span.name.starts_with("grpc.")
            || span.name.starts_with("sync run ")
            || stages.contains(&span.name.as_str())
            || span.name == "auto_sync";
        assert!(ours, "a span that is not the service's own: {:?}", span.name);
    }
    let all = format!("{spans:?}");
    assert!(!all.contains(ADMIN_TOKEN) && !all.contains("Bearer") && !all.contains("file://"), "{all}");
}
