//! Prometheus metrics: the registry and every named metric, as typed fields of `Metrics`, with
//! the small functions the rest of the server calls to record (`run_ended`, `git_fetched`, ...);
//! the tower layer counting gRPC calls; and the HTTP listener of `--metrics-listen` serving
//! `GET /metrics` in the Prometheus text format (prometheus-client's encoder).
//!
//! A leaf of the server's layers: it imports no other module of the server (the database, git
//! and cluster layers record into it). What is read at scrape time (the run queue, the fabrics'
//! watch and drift, the pool, the breakers) is read by the `refresh` function the listener is
//! given (`server::sample_gauges`) and set here with `set_*`.
//!
//! Labels are only the domain's words (`SyncMode::word()` and the like), this module's own
//! words (`Stage`, `CallType`), gRPC method names from the rules table, error codes
//! (`git.timeout`) and fabric names: never text from a request, so the series stay bounded.
//! Fabrics are labelled by name (unique, what people and alerts read, what the cluster's objects
//! are labelled with); a renamed fabric starts new series.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::Full;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;
use tonic::Code;
use tracing::Span;

use fabricsync_core::vocab::{DriftStatus, RunStatus, SyncMode, Trigger, WatchStatus, Word};

/// A gauge of seconds or bytes that need not be whole.
type FloatGauge = Gauge<f64, AtomicU64>;
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Bounds of call latencies (seconds).
const CALL_BUCKETS: [f64; 14] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Bounds of runs and their stages (seconds).
const RUN_BUCKETS: [f64; 15] =
    [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0];
/// Bounds of a wait for a database connection (seconds).
const WAIT_BUCKETS: [f64; 12] = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];

fn call_histogram() -> Histogram {
    Histogram::new(CALL_BUCKETS)
}

fn run_histogram() -> Histogram {
    Histogram::new(RUN_BUCKETS)
}

/// A stage of a run, timed on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Fetching the mirror, resolving the ref and reading the sources at the commit.
    Fetch,
    /// Parsing the files (with each object's schema validation; unchanged files from the cache).
    Parse,
    /// Cross-object validation of the parsed objects (references, duplicates).
    Validate,
    /// What the pull changes against the stored desired state.
    Plan,
    /// Storing the desired state (the run's concluding transaction with it).
    Persist,
    /// One apply wave to the cluster.
    ApplyWave,
    /// Deleting orphans (prune).
    Prune,
    /// Waiting for the switches' agents after an apply.
    Rollout,
    /// Reading the clusters' inventory (storing the diff is the run's end, not timed here).
    Inventory,
}

impl Stage {
    pub const ALL: [Stage; 9] = [
        Stage::Fetch,
        Stage::Parse,
        Stage::Validate,
        Stage::Plan,
        Stage::Persist,
        Stage::ApplyWave,
        Stage::Prune,
        Stage::Rollout,
        Stage::Inventory,
    ];

    pub fn word(self) -> &'static str {
        match self {
            Stage::Fetch => "fetch",
            Stage::Parse => "parse",
            Stage::Validate => "validate",
            Stage::Plan => "plan",
            Stage::Persist => "persist",
            Stage::ApplyWave => "apply_wave",
            Stage::Prune => "prune",
            Stage::Rollout => "rollout",
            Stage::Inventory => "inventory",
        }
    }
}

/// What an apply did to one object (`fabricsync_apply_objects_total`'s `result`): a change
/// action's word, or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyResult {
    Created,
    Updated,
    Unchanged,
    Deleted,
    Failed,
}

impl ApplyResult {
    pub fn word(self) -> &'static str {
        use fabricsync_core::vocab::ChangeAction;
        match self {
            ApplyResult::Created => ChangeAction::Create.word(),
            ApplyResult::Updated => ChangeAction::Update.word(),
            ApplyResult::Unchanged => ChangeAction::Unchanged.word(),
            ApplyResult::Deleted => ChangeAction::Delete.word(),
            ApplyResult::Failed => "failed",
        }
    }
}

/// Unary calls and server streams (and reflection's bidirectional stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallType {
    Unary,
    Stream,
}

impl CallType {
    pub fn word(self) -> &'static str {
        match self {
            CallType::Unary => "unary",
            CallType::Stream => "stream",
        }
    }
}

/// A gRPC code as the grpc-ecosystem's interceptors and Go's `codes.Code` spell it
/// (`NotFound`), so existing dashboards and alerts read it.
pub fn code_word(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The method label of a path the rules table does not know (scanners, typos).
pub const UNKNOWN_METHOD: &str = "unknown";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: &'static str,
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandledLabels {
    method: &'static str,
    r#type: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    mode: &'static str,
    trigger: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunDurationLabels {
    mode: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    mode: &'static str,
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabels {
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FabricLabels {
    fabric: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FabricStateLabels {
    fabric: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FabricStatusLabels {
    fabric: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: &'static str,
}

/// What the scrape reads of one fabric (`server::sample_gauges`).
#[derive(Debug, Clone)]
pub struct FabricGauges {
    pub name: String,
    pub watch: WatchStatus,
    /// Resources per drift status; statuses not listed have none.
    pub drift: Vec<(DriftStatus, i64)>,
    pub last_watch_event: Option<chrono::DateTime<chrono::Utc>>,
}

/// The run queue across every process, as the scrape reads it.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueGauges {
    pub queued: i64,
    pub running: i64,
    /// How long the oldest queued run has waited; zero without queued runs.
    pub oldest_queued_seconds: f64,
}

/// The database pool, as the scrape reads it.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolGauges {
    pub max: usize,
    pub in_use: usize,
    pub idle: usize,
    pub waiting: usize,
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    grpc_started: Family<CallLabels, Counter>,
    grpc_handled: Family<HandledLabels, Counter>,
    grpc_handling: Histograms<CallLabels>,
    runs_ended: Family<RunLabels, Counter>,
    run_duration: Histograms<RunDurationLabels>,
    stage_duration: Histograms<StageLabels>,
    runs_active: Family<ModeLabels, Gauge>,
    queue_queued: Gauge,
    queue_running: Gauge,
    queue_oldest: FloatGauge,
    watch_state: Family<FabricStateLabels, Gauge>,
    watch_events: Family<FabricLabels, Counter>,
    watch_last_event: Family<FabricLabels, FloatGauge>,
    drift_resources: Family<FabricStatusLabels, Gauge>,
    apply_objects: Family<ResultLabels, Counter>,
    apply_retries: Family<ReasonLabels, Counter>,
    circuit_opened: Counter,
    circuits_open: Gauge,
    git_fetch: Histograms<ResultLabels>,
    git_fetch_bytes: Counter,
    pool_connections: Family<PoolLabels, Gauge>,
    pool_max: Gauge,
    pool_waiting: Gauge,
    pool_wait: Histogram,
    resident_memory: Gauge,
    virtual_memory: Gauge,
    open_fds: Gauge,
    start_time: FloatGauge,
}

/// The process's metrics (the layers that hold no `AppState` record through this; `AppState`
/// carries the same handle).
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Metrics {
        let mut root = Registry::default();
        let r = root.sub_registry_with_prefix("fabricsync");
        let m = Metrics {
            registry: Registry::default(),
            grpc_started: Family::default(),
            grpc_handled: Family::default(),
            grpc_handling: Family::new_with_constructor(call_histogram),
            runs_ended: Family::default(),
            run_duration: Family::new_with_constructor(run_histogram),
            stage_duration: Family::new_with_constructor(run_histogram),
            runs_active: Family::default(),
            queue_queued: Gauge::default(),
            queue_running: Gauge::default(),
            queue_oldest: FloatGauge::default(),
            watch_state: Family::default(),
            watch_events: Family::default(),
            watch_last_event: Family::default(),
            drift_resources: Family::default(),
            apply_objects: Family::default(),
            apply_retries: Family::default(),
            circuit_opened: Counter::default(),
            circuits_open: Gauge::default(),
            git_fetch: Family::new_with_constructor(run_histogram),
            git_fetch_bytes: Counter::default(),
            pool_connections: Family::default(),
            pool_max: Gauge::default(),
            pool_waiting: Gauge::default(),
            pool_wait: Histogram::new(WAIT_BUCKETS),
            resident_memory: Gauge::default(),
            virtual_memory: Gauge::default(),
            open_fds: Gauge::default(),
            start_time: FloatGauge::default(),
        };
        r.register(
            "grpc_server_started",
            "gRPC calls started, by full method name and type (unary, stream)",
            m.grpc_started.clone(),
        );
        r.register(
            "grpc_server_handled",
            "gRPC calls ended, by method, type and status code (a stream counts when it ends)",
            m.grpc_handled.clone(),
        );
        r.register_with_unit(
            "grpc_server_handling",
            "Latency of unary gRPC calls, from the request to the status, by method",
            Unit::Seconds,
            m.grpc_handling.clone(),
        );
        r.register(
            "sync_runs_ended",
            "Sync runs this process concluded, by mode, trigger and outcome (run status)",
            m.runs_ended.clone(),
        );
        r.register_with_unit(
            "sync_run_duration",
            "Duration of concluded sync runs, from their start to their end, by mode and outcome",
            Unit::Seconds,
            m.run_duration.clone(),
        );
        r.register_with_unit(
            "sync_stage_duration",
            "Duration of the stages of sync runs (fetch, parse, validate, plan, persist, apply_wave, prune, rollout, inventory), by mode",
            Unit::Seconds,
            m.stage_duration.clone(),
        );
        r.register("sync_runs_active", "Runs this process executes now, by mode", m.runs_active.clone());
        r.register("sync_queue_runs", "Queued runs, across every process", m.queue_queued.clone());
        r.register("sync_running_runs", "Running runs, across every process", m.queue_running.clone());
        r.register_with_unit(
            "sync_queue_oldest_age",
            "How long the oldest queued run has waited (0 without queued runs)",
            Unit::Seconds,
            m.queue_oldest.clone(),
        );
        r.register(
            "watch_state",
            "The cluster watch's state per fabric: 1 for its state, 0 for the others",
            m.watch_state.clone(),
        );
        r.register(
            "watch_events",
            "Cluster events (objects added, changed, deleted) this process's watches saw, per fabric",
            m.watch_events.clone(),
        );
        r.register_with_unit(
            "watch_last_event_timestamp",
            "When the fabric's watch last saw an event (Unix time); absent before the first",
            Unit::Seconds,
            m.watch_last_event.clone(),
        );
        r.register("drift_resources", "A fabric's resources per drift status", m.drift_resources.clone());
        r.register(
            "apply_objects",
            "Objects sent to clusters by apply runs (and pruned), by result (create, update, unchanged, delete, failed)",
            m.apply_objects.clone(),
        );
        r.register(
            "apply_retries",
            "Cluster requests retried (429, 5xx, timeouts), by the failure's code",
            m.apply_retries.clone(),
        );
        r.register(
            "apply_circuit_opened",
            "Times a cluster's circuit breaker opened after consecutive transient failures",
            m.circuit_opened.clone(),
        );
        r.register(
            "apply_circuits_open",
            "Clusters whose circuit breaker is open now (requests fail at once)",
            m.circuits_open.clone(),
        );
        r.register_with_unit(
            "git_fetch_duration",
            "Duration of Git fetches into the mirrors, by result (ok or the failure's code)",
            Unit::Seconds,
            m.git_fetch.clone(),
        );
        r.register_with_unit(
            "git_fetch_received",
            "Bytes of packs received by Git fetches",
            Unit::Bytes,
            m.git_fetch_bytes.clone(),
        );
        r.register(
            "db_pool_connections",
            "Database connections of the pool, by state (in_use, idle)",
            m.pool_connections.clone(),
        );
        r.register("db_pool_max_connections", "The pool's maximum size", m.pool_max.clone());
        r.register("db_pool_waiting", "Tasks waiting for a connection of the pool now", m.pool_waiting.clone());
        r.register_with_unit(
            "db_pool_wait",
            "Time taken to get a connection from the pool",
            Unit::Seconds,
            m.pool_wait.clone(),
        );
        // The process collector's names of every Prometheus client, without the prefix.
        root.register_with_unit(
            "process_resident_memory",
            "Resident memory size",
            Unit::Bytes,
            m.resident_memory.clone(),
        );
        root.register_with_unit("process_virtual_memory", "Virtual memory size", Unit::Bytes, m.virtual_memory.clone());
        root.register("process_open_fds", "Open file descriptors", m.open_fds.clone());
        root.register_with_unit(
            "process_start_time",
            "Start time of the process (Unix time)",
            Unit::Seconds,
            m.start_time.clone(),
        );
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        m.start_time.set(started.as_secs_f64());
        Metrics { registry: root, ..m }
    }

    /// The registry in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry) {
            tracing::warn!(error = %e, "could not encode the metrics");
        }
        text
    }

    // --- gRPC (see `GrpcLayer`) ---

    fn call_started(&self, method: &'static str, kind: CallType) {
        self.grpc_started.get_or_create(&CallLabels { method, r#type: kind.word() }).inc();
    }

    fn call_handled(&self, method: &'static str, kind: CallType, code: Code, elapsed: Duration) {
        let labels = HandledLabels { method, r#type: kind.word(), code: code_word(code) };
        self.grpc_handled.get_or_create(&labels).inc();
        if kind == CallType::Unary {
            self.grpc_handling
                .get_or_create(&CallLabels { method, r#type: kind.word() })
                .observe(elapsed.as_secs_f64());
        }
    }

    // --- sync runs ---

    /// A run this process concluded, `elapsed` after it started.
    pub fn run_ended(&self, mode: SyncMode, trigger: Trigger, outcome: RunStatus, elapsed: Duration) {
        let labels = RunLabels { mode: mode.word(), trigger: trigger.word(), outcome: outcome.word() };
        self.runs_ended.get_or_create(&labels).inc();
        self.run_duration
            .get_or_create(&RunDurationLabels { mode: mode.word(), outcome: outcome.word() })
            .observe(elapsed.as_secs_f64());
    }

    pub fn stage(&self, mode: SyncMode, stage: Stage, elapsed: Duration) {
        self.stage_duration
            .get_or_create(&StageLabels { mode: mode.word(), stage: stage.word() })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a run as executing until the guard is dropped.
    pub fn run_active(&'static self, mode: SyncMode) -> ActiveRun {
        let labels = ModeLabels { mode: mode.word() };
        self.runs_active.get_or_create(&labels).inc();
        ActiveRun { metrics: self, labels }
    }

    // --- watch, drift ---

    pub fn watch_events(&self, fabric: &str, events: u64) {
        if events > 0 {
            self.watch_events.get_or_create(&FabricLabels { fabric: fabric.to_string() }).inc_by(events);
        }
    }

    // --- apply ---

    pub fn applied(&self, result: ApplyResult) {
        self.apply_objects.get_or_create(&ResultLabels { result: result.word() }).inc();
    }

    /// A cluster request retried after a failure of this code (`cluster.busy`).
    pub fn apply_retried(&self, code: &'static str) {
        self.apply_retries.get_or_create(&ReasonLabels { reason: code }).inc();
    }

    pub fn circuit_opened(&self) {
        self.circuit_opened.inc();
    }

    // --- git ---

    /// A fetch ended: `Ok(bytes received)` or the failure's code.
    pub fn git_fetched(&self, result: Result<u64, &'static str>, elapsed: Duration) {
        let label = match result {
            Ok(bytes) => {
                self.git_fetch_bytes.inc_by(bytes);
                "ok"
            }
            Err(code) => code,
        };
        self.git_fetch.get_or_create(&ResultLabels { result: label }).observe(elapsed.as_secs_f64());
    }

    // --- database ---

    pub fn pool_waited(&self, elapsed: Duration) {
        self.pool_wait.observe(elapsed.as_secs_f64());
    }

    // --- read at scrape time ---

    pub fn set_queue(&self, queue: QueueGauges) {
        self.queue_queued.set(queue.queued);
        self.queue_running.set(queue.running);
        self.queue_oldest.set(queue.oldest_queued_seconds.max(0.0));
    }

    /// Replaces the per-fabric gauges (deleted fabrics drop out): the watch's state one-hot,
    /// resources per drift status (every status, zeros too), the last watch event.
    pub fn set_fabrics(&self, fabrics: &[FabricGauges]) {
        self.watch_state.clear();
        self.drift_resources.clear();
        self.watch_last_event.clear();
        for fabric in fabrics {
            for state in WatchStatus::ALL {
                let labels = FabricStateLabels { fabric: fabric.name.clone(), state: state.word() };
                self.watch_state.get_or_create(&labels).set(i64::from(*state == fabric.watch));
            }
            for status in DriftStatus::ALL {
                let count = fabric.drift.iter().filter(|(s, _)| s == status).map(|(_, n)| n).sum();
                let labels = FabricStatusLabels { fabric: fabric.name.clone(), status: status.word() };
                self.drift_resources.get_or_create(&labels).set(count);
            }
            if let Some(at) = fabric.last_watch_event {
                let seconds = at.timestamp_micros() as f64 / 1e6;
                self.watch_last_event.get_or_create(&FabricLabels { fabric: fabric.name.clone() }).set(seconds);
            }
        }
    }

    pub fn set_circuits_open(&self, open: usize) {
        self.circuits_open.set(i64::try_from(open).unwrap_or(i64::MAX));
    }

    pub fn set_pool(&self, pool: PoolGauges) {
        let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        self.pool_connections.get_or_create(&PoolLabels { state: "in_use" }).set(n(pool.in_use));
        self.pool_connections.get_or_create(&PoolLabels { state: "idle" }).set(n(pool.idle));
        self.pool_max.set(n(pool.max));
        self.pool_waiting.set(n(pool.waiting));
    }

    /// Reads the process's memory and descriptors from /proc (Linux; elsewhere they stay 0).
    pub fn sample_process(&self) {
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            if let Some(bytes) = status_kib(&status, "VmRSS:") {
                self.resident_memory.set(bytes);
            }
            if let Some(bytes) = status_kib(&status, "VmSize:") {
                self.virtual_memory.set(bytes);
            }
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(i64::try_from(fds.count()).unwrap_or(i64::MAX));
        }
    }
}

/// A `/proc/self/status` line such as `VmRSS:  1234 kB`, in bytes.
fn status_kib(status: &str, field: &str) -> Option<i64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: i64 = line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// An executing run (`Metrics::run_active`).
pub struct ActiveRun {
    metrics: &'static Metrics,
    labels: ModeLabels,
}

impl Drop for ActiveRun {
    fn drop(&mut self) {
        self.metrics.runs_active.get_or_create(&self.labels).dec();
    }
}

/// Times a stage: `let _t = metrics.timer(mode, Stage::Parse);` records when dropped. Its trace
/// span (a child of the run's) lasts as long.
pub struct StageTimer {
    metrics: &'static Metrics,
    mode: SyncMode,
    stage: Stage,
    started: Instant,
    _span: Span,
}

impl Metrics {
    pub fn timer(&'static self, mode: SyncMode, stage: Stage) -> StageTimer {
        let span = tracing::info_span!("stage", otel.name = stage.word(), stage = stage.word());
        StageTimer { metrics: self, mode, stage, started: Instant::now(), _span: span }
    }
}

impl Drop for StageTimer {
    fn drop(&mut self) {
        self.metrics.stage(self.mode, self.stage, self.started.elapsed());
    }
}

// --- the gRPC layer ---

/// The method label and call type of a request path; None for paths no rule names.
pub type MethodOf = fn(&str) -> Option<(&'static str, CallType)>;

/// Counts every gRPC call: started, ended by code, unary latency. Outermost of the server's
/// layers, so refusals of the auth layer count too.
#[derive(Clone)]
pub struct GrpcLayer {
    metrics: &'static Metrics,
    method_of: MethodOf,
}

impl GrpcLayer {
    pub fn new(metrics: &'static Metrics, method_of: MethodOf) -> GrpcLayer {
        GrpcLayer { metrics, method_of }
    }
}

impl<S> tower::Layer<S> for GrpcLayer {
    type Service = GrpcService<S>;
    fn layer(&self, inner: S) -> GrpcService<S> {
        GrpcService { inner, metrics: self.metrics, method_of: self.method_of }
    }
}

#[derive(Clone)]
pub struct GrpcService<S> {
    inner: S,
    metrics: &'static Metrics,
    method_of: MethodOf,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for GrpcService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: HttpBody,
{
    type Response = http::Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let (method, kind) = (self.method_of)(req.uri().path()).unwrap_or((UNKNOWN_METHOD, CallType::Unary));
        self.metrics.call_started(method, kind);
        let mut call = Some(Call {
            metrics: self.metrics,
            method,
            kind,
            started: Instant::now(),
            ended: false,
            span: Span::none(),
        });
        let future = self.inner.call(req);
        Box::pin(async move {
            // The call's span (`traces::rpc_span`) is entered only when this runs.
            if let Some(call) = call.as_mut() {
                call.span = Span::current();
            }
            match future.await {
                Ok(response) => {
                    // A trailers-only answer (an error before any message) has its status here.
                    if let Some(code) = status_of(response.headers()) {
                        if let Some(call) = call.take() {
                            call.end(code);
                        }
                    }
                    Ok(response.map(|inner| MeteredBody { inner, call }))
                }
                Err(e) => {
                    if let Some(call) = call.take() {
                        call.end(Code::Unknown);
                    }
                    Err(e)
                }
            }
        })
    }
}

/// A call not yet counted as ended; one dropped before its status (the client went away, the
/// call's future or its response body dropped) ends as Canceled. It holds the call's trace span
/// open until then, so a stream's span lasts as long as the stream.
struct Call {
    metrics: &'static Metrics,
    method: &'static str,
    kind: CallType,
    started: Instant,
    ended: bool,
    span: Span,
}

impl Call {
    fn end(mut self, code: Code) {
        self.record(code);
    }

    fn record(&mut self, code: Code) {
        if !self.ended {
            self.ended = true;
            self.metrics.call_handled(self.method, self.kind, code, self.started.elapsed());
            crate::traces::rpc_ended(&self.span, code);
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.record(Code::Cancelled);
    }
}

/// The `grpc-status` of headers or trailers.
fn status_of(headers: &http::HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    Some(Code::from_i32(value))
}

/// A response body that counts its call as ended at its trailers; one dropped before them
/// (the client went away) ends as Canceled (see `Call`).
pub struct MeteredBody<B> {
    inner: B,
    call: Option<Call>,
}

impl<B: HttpBody + Unpin> HttpBody for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(status_of) {
                    if let Some(call) = self.call.take() {
                        call.end(code);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(call) = self.call.take() {
                    call.end(Code::Unknown);
                }
            }
            // Ended without a status: not a gRPC answer.
            Poll::Ready(None) => {
                if let Some(call) = self.call.take() {
                    call.end(Code::Unknown);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// --- the HTTP listener ---

/// Scrapes closer together than this reuse what the last one read (several Prometheus
/// servers, or a client looping on the endpoint, cost the database nothing more).
const MIN_REFRESH: Duration = Duration::from_secs(1);
/// A refresh that takes longer is abandoned; the scrape answers with the values it has.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(5);
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed at accept (scrapers need one or two each).
pub const MAX_CONNECTIONS: usize = 32;
/// How long one connection may stay open, kept alive or not (Prometheus reconnects).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);

/// Reads what is sampled at scrape time (the database, the pool, the breakers) into `Metrics`.
pub type Refresh = std::sync::Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// Serves `GET /metrics` on `listener` (plaintext HTTP/1.1) until `shutdown`.
pub async fn serve(
    metrics: &'static Metrics,
    listener: TcpListener,
    refresh: Refresh,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let last: std::sync::Arc<tokio::sync::Mutex<Option<Instant>>> = Default::default();
    let open = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "metrics connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::debug!("metrics connection refused: {MAX_CONNECTIONS} open");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (refresh, last) = (refresh.clone(), last.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |request| {
                let (refresh, last) = (refresh.clone(), last.clone());
                async move { Ok::<_, Infallible>(answer(metrics, &refresh, &last, &request).await) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_LIFETIME, served).await {
                Ok(Err(e)) => tracing::debug!(error = %e, "metrics connection ended"),
                Err(_) => tracing::debug!("metrics connection closed after {CONNECTION_LIFETIME:?}"),
                Ok(Ok(())) => {}
            }
        });
    }
}

async fn answer<B>(
    metrics: &'static Metrics,
    refresh: &Refresh,
    last: &tokio::sync::Mutex<Option<Instant>>,
    request: &http::Request<B>,
) -> http::Response<Full<Bytes>> {
    let plain = |status: http::StatusCode, text: &'static str| {
        let mut response = http::Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *response.status_mut() = status;
        response
    };
    if request.uri().path() != "/metrics" {
        return plain(http::StatusCode::NOT_FOUND, "metrics are at /metrics\n");
    }
    if request.method() != http::Method::GET && request.method() != http::Method::HEAD {
        return plain(http::StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n");
    }
    // One refresh at a time; the encoding waits for it, so a scrape never sees half a refresh.
    let text = {
        let mut last = last.lock().await;
        if last.is_none_or(|at| at.elapsed() >= MIN_REFRESH) {
            metrics.sample_process();
            if tokio::time::timeout(REFRESH_TIMEOUT, refresh()).await.is_err() {
                tracing::warn!("reading the metrics' gauges timed out; serving the last values");
            }
            *last = Some(Instant::now());
        }
        metrics.encode()
    };
    let mut response = http::Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(prometheus_client::encoding::prometheus_text::CONTENT_TYPE),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_spelled_as_grpc_ecosystem_does() {
        assert_eq!(code_word(Code::Ok), "OK");
        assert_eq!(code_word(Code::NotFound), "NotFound");
        assert_eq!(code_word(Code::Cancelled), "Canceled");
        assert_eq!(code_word(Code::Unauthenticated), "Unauthenticated");
        // Every code has its own word.
        let all: std::collections::HashSet<&str> = (0..17).map(|n| code_word(Code::from_i32(n))).collect();
        assert_eq!(all.len(), 17);
    }

    #[test]
    fn stage_and_result_words_are_distinct() {
        let stages: std::collections::HashSet<&str> = Stage::ALL.iter().map(|s| s.word()).collect();
        assert_eq!(stages.len(), Stage::ALL.len());
        assert_eq!(ApplyResult::Created.word(), "create");
        assert_eq!(ApplyResult::Failed.word(), "failed");
        assert_eq!(CallType::Stream.word(), "stream");
    }

    #[test]
    fn status_lines_in_bytes() {
        let status = "Name:\tfabricsync\nVmSize:\t  204800 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(10240 * 1024));
        assert_eq!(status_kib(status, "VmSize:"), Some(204800 * 1024));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn a_call_dropped_before_its_status_is_canceled() {
        let m: &'static Metrics = Box::leak(Box::new(Metrics::new()));
        let call = || Call {
            metrics: m,
            method: "m",
            kind: CallType::Unary,
            started: Instant::now(),
            ended: false,
            span: Span::none(),
        };
        call().end(Code::NotFound);
        drop(call());
        let text = m.encode();
        assert!(
            text.contains(r#"fabricsync_grpc_server_handled_total{method="m",type="unary",code="NotFound"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"fabricsync_grpc_server_handled_total{method="m",type="unary",code="Canceled"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"fabricsync_grpc_server_handling_seconds_count{method="m",type="unary"} 2"#), "{text}");
    }

    #[test]
    fn grpc_status_from_headers() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(status_of(&headers), None);
        headers.insert("grpc-status", http::HeaderValue::from_static("5"));
        assert_eq!(status_of(&headers), Some(Code::NotFound));
    }

    #[test]
    fn fabric_gauges_are_one_hot_and_replaced() {
        let m = Metrics::new();
        let fabric = |name: &str, watch| FabricGauges {
            name: name.into(),
            watch,
            drift: vec![(DriftStatus::Drifted, 2), (DriftStatus::InSync, 5)],
            last_watch_event: None,
        };
        m.set_fabrics(&[fabric("a", WatchStatus::Active), fabric("b", WatchStatus::Error)]);
        let text = m.encode();
        assert!(text.contains(r#"fabricsync_watch_state{fabric="a",state="active"} 1"#), "{text}");
        assert!(text.contains(r#"fabricsync_watch_state{fabric="a",state="error"} 0"#), "{text}");
        assert!(text.contains(r#"fabricsync_drift_resources{fabric="b",status="drifted"} 2"#), "{text}");
        assert!(text.contains(r#"fabricsync_drift_resources{fabric="b",status="missing"} 0"#), "{text}");
        m.set_fabrics(&[fabric("a", WatchStatus::Active)]);
        assert!(!m.encode().contains(r#"fabric="b""#), "a deleted fabric's gauges go");
    }

    /// Every metric, once recorded, is in the README's table.
    #[test]
    fn every_metric_is_documented() {
        let m = Metrics::new();
        m.call_started("x", CallType::Unary);
        m.call_handled("x", CallType::Unary, Code::Ok, Duration::ZERO);
        m.run_ended(SyncMode::Pull, Trigger::User, RunStatus::Succeeded, Duration::ZERO);
        m.stage(SyncMode::Pull, Stage::Fetch, Duration::ZERO);
        m.runs_active.get_or_create(&ModeLabels { mode: "pull" }).set(0);
        m.set_queue(QueueGauges::default());
        let fabric = FabricGauges {
            name: "a".into(),
            watch: WatchStatus::Active,
            drift: Vec::new(),
            last_watch_event: Some(chrono::Utc::now()),
        };
        m.set_fabrics(&[fabric]);
        m.watch_events("a", 1);
        m.applied(ApplyResult::Created);
        m.apply_retried("cluster.busy");
        m.git_fetched(Ok(1), Duration::ZERO);
        m.set_pool(PoolGauges::default());
        m.pool_waited(Duration::ZERO);
        let readme = include_str!("../../README.md");
        let text = m.encode();
        let names: Vec<&str> =
            text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
        assert_eq!(names.len(), 28, "{names:?}");
        for name in names {
            assert!(readme.contains(&format!("| `{name}` |")), "README's Metrics table lacks {name}");
        }
    }

    #[test]
    fn counters_and_histograms_are_named_by_convention() {
        let m = Metrics::new();
        m.run_ended(SyncMode::Pull, Trigger::User, RunStatus::Succeeded, Duration::from_millis(300));
        m.git_fetched(Ok(2048), Duration::from_millis(20));
        let text = m.encode();
        assert!(
            text.contains(r#"fabricsync_sync_runs_ended_total{mode="pull",trigger="user",outcome="succeeded"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"fabricsync_sync_run_duration_seconds_bucket{mode="pull",outcome="succeeded",le="0.5"} 1"#),
            "{text}"
        );
        assert!(text.contains("fabricsync_git_fetch_received_bytes_total 2048"), "{text}");
        assert!(text.contains("# TYPE process_resident_memory_bytes gauge"), "{text}");
    }
}
