//! SyncService: queue runs, read and cancel them, stream their progress from the event log,
//! and plan a ref without storing anything.

use fabricsync_core::vocab as v;
use std::future::Future;

use diesel_async::{AsyncConnection, AsyncPgConnection};
use fabricsync_core::vocab::Layout;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};
use tracing::info;
use uuid::Uuid;

use super::{listing, parse_id, validate, ApiError, AppState};
use crate::convert::{opt_timestamp, timestamp, RUN_STATUSES, SYNC_MODES, SYNC_TRIGGERS};
use crate::db::events::{EventRow, Notice};
use crate::db::hub;
use crate::db::runs::{self as store, RunFilter, RunRow};
use crate::db::typed::decode;
use crate::db::{self, events, fabrics, DbError};
use crate::proto::sync_progress_event::Payload;
use crate::proto::sync_service_server::SyncService;
use crate::proto::*;
use crate::sync::pull::{self, Scope};
use crate::sync::queue::Enqueued;
use crate::sync::{self as engine, Counters, StoredChange, StoredDiagnostic, PROGRESS};

const FILTERS: &[&str] = &["fabric_id", "status", "mode", "trigger"];
/// Events read from the log per query while streaming.
pub(super) const STREAM_BATCH: i64 = 500;
/// Events buffered per stream; a slow client only slows its own stream.
pub(super) const STREAM_BUFFER: usize = 64;

pub struct SyncApi {
    state: AppState,
}

impl SyncApi {
    pub fn new(state: AppState) -> Self {
        SyncApi { state }
    }
}

#[tonic::async_trait]
impl SyncService for SyncApi {
    async fn start_sync(&self, request: Request<StartSyncRequest>) -> Result<Response<StartSyncResponse>, Status> {
        let requested_by = super::requester(&request)?;
        let req = request.into_inner();
        let fabric_id = parse_id("fabric_id", &req.fabric_id)?;
        let mode = SyncMode::try_from(req.mode).unwrap_or(SyncMode::Unspecified);
        if mode == SyncMode::Unspecified {
            return Err(ApiError::invalid("mode", "must be PULL, APPLY or FULL").into());
        }
        if mode == SyncMode::Inventory {
            return Err(
                ApiError::invalid("mode", "INVENTORY runs start with InventoryService.StartInventoryImport").into()
            );
        }
        if !req.ref_override.is_empty() {
            validate::git_ref(&req.ref_override).map_err(|e| ApiError::invalid("ref_override", e))?;
        }
        let rollout_wait_seconds = rollout_wait(req.wait_for_rollout.as_ref(), mode)?;
        let mut conn = self.state.conn().await?;
        let fabric = fabrics::get(&mut conn, fabric_id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| fabric_not_found(fabric_id))?;
        if mode != SyncMode::Pull && fabric.cluster_server_url.is_empty() {
            let message =
                "APPLY and FULL need the fabric's cluster connection (cluster.server_url); set it with UpdateFabric";
            return Err(ApiError::FailedPrecondition(message.into()).into());
        }
        let request = engine::queue::Request {
            fabric_id,
            mode: SYNC_MODES.domain(mode).unwrap_or(fabricsync_core::vocab::SyncMode::Pull),
            trigger: fabricsync_core::vocab::Trigger::User,
            dry_run: req.dry_run,
            force: req.force,
            requested_ref: req.ref_override.clone(),
            targets: None,
            requested_by,
            rollout_wait_seconds,
        };
        let (row, already_active) = match engine::queue::enqueue(&mut conn, &request).await.map_err(ApiError::from)? {
            Enqueued::New(row) => (row, false),
            Enqueued::AlreadyActive(Some(row)) => (row, true),
            Enqueued::AlreadyActive(None) => {
                return Err(ApiError::Aborted("the fabric's active run just ended; start again".into()).into())
            }
        };
        let run = to_proto(&row, last_sequence(&mut conn, row.id).await?);
        Ok(Response::new(StartSyncResponse { run: Some(run), already_active }))
    }

    async fn get_sync_run(&self, request: Request<GetSyncRunRequest>) -> Result<Response<GetSyncRunResponse>, Status> {
        let id = parse_id("id", &request.get_ref().id)?;
        let mut conn = self.state.conn().await?;
        let row = load(&mut conn, id).await?;
        Ok(Response::new(GetSyncRunResponse { run: Some(to_proto(&row, last_sequence(&mut conn, id).await?)) }))
    }

    async fn list_sync_runs(
        &self,
        request: Request<ListSyncRunsRequest>,
    ) -> Result<Response<ListSyncRunsResponse>, Status> {
        let scope = super::scope_patterns(&request)?;
        let req = request.into_inner();
        let page = listing::page(req.page_size, &req.page_token)?;
        let terms = listing::filter(&req.filter, FILTERS)?;
        let filter = RunFilter {
            fabric_id: terms.get("fabric_id").map(|id| parse_id("filter", id)).transpose()?,
            status: terms.get("status").map(|w| listing::word_filter::<v::RunStatus>("status", w)).transpose()?,
            mode: terms.get("mode").map(|w| listing::word_filter::<v::SyncMode>("mode", w)).transpose()?,
            trigger: terms.get("trigger").map(|w| listing::word_filter::<v::Trigger>("trigger", w)).transpose()?,
            scope,
        };
        let mut conn = self.state.conn().await?;
        let listed = store::list(&mut conn, &filter, &page).await.map_err(ApiError::from)?;
        let mut runs = Vec::with_capacity(listed.items.len());
        for row in &listed.items {
            runs.push(to_proto(row, last_sequence(&mut conn, row.id).await?));
        }
        let cursor = listed.items.last().map(store::cursor);
        Ok(Response::new(ListSyncRunsResponse {
            runs,
            next_page_token: listing::next_page_token(listed.has_more, cursor.as_deref()),
            total_size: i32::try_from(listed.total).unwrap_or(i32::MAX),
        }))
    }

    async fn cancel_sync_run(
        &self,
        request: Request<CancelSyncRunRequest>,
    ) -> Result<Response<CancelSyncRunResponse>, Status> {
        let id = parse_id("id", &request.get_ref().id)?;
        let mut conn = self.state.conn().await?;
        let row = load(&mut conn, id).await?;
        if row.status.is_finished() {
            return Err(ApiError::FailedPrecondition(format!("run {id} already ended ({})", row.status)).into());
        }
        let cancelled = conn
            .transaction::<_, DbError, _>(async |conn| {
                let cancelled_now = store::request_cancel(conn, id).await?;
                if cancelled_now {
                    let event = engine::encode_progress(id, Payload::Cancelled(CancelledProgress {}));
                    events::append(conn, row.fabric_id, Some(id), PROGRESS, &event).await?;
                }
                Ok(cancelled_now)
            })
            .await
            .map_err(ApiError::from)?;
        info!(run_id = %id, cancelled_now = cancelled, "sync run cancel requested");
        let row = load(&mut conn, id).await?;
        Ok(Response::new(CancelSyncRunResponse { run: Some(to_proto(&row, last_sequence(&mut conn, id).await?)) }))
    }

    async fn stream_sync_progress(
        &self,
        request: Request<StreamSyncProgressRequest>,
    ) -> Result<Response<BoxStream<StreamSyncProgressResponse>>, Status> {
        let req = request.into_inner();
        let run_id = parse_id("run_id", &req.run_id)?;
        if req.from_sequence < 0 {
            return Err(ApiError::invalid("from_sequence", "must not be negative").into());
        }
        let mut conn = self.state.conn().await?;
        load(&mut conn, run_id).await?;
        drop(conn);
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(follow(self.state.clone(), RunEvents { run_id }, req.from_sequence, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn watch_fabric_events(
        &self,
        request: Request<WatchFabricEventsRequest>,
    ) -> Result<Response<BoxStream<WatchFabricEventsResponse>>, Status> {
        let req = request.into_inner();
        let fabric_id = parse_id("fabric_id", &req.fabric_id)?;
        if req.from_sequence < 0 {
            return Err(ApiError::invalid("from_sequence", "must not be negative").into());
        }
        let mut conn = self.state.conn().await?;
        fabrics::get(&mut conn, fabric_id).await.map_err(ApiError::from)?.ok_or_else(|| fabric_not_found(fabric_id))?;
        drop(conn);
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(follow(self.state.clone(), ClusterEvents { fabric_id, kinds: req.kinds }, req.from_sequence, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn plan_sync(&self, request: Request<PlanSyncRequest>) -> Result<Response<PlanSyncResponse>, Status> {
        let req = request.into_inner();
        let fabric_id = parse_id("fabric_id", &req.fabric_id)?;
        if !req.r#ref.is_empty() {
            validate::git_ref(&req.r#ref).map_err(|e| ApiError::invalid("ref", e))?;
        }
        let mut conn = self.state.conn().await?;
        let fabric = fabrics::get(&mut conn, fabric_id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| fabric_not_found(fabric_id))?;
        drop(conn);
        let git_ref = if req.r#ref.is_empty() { fabric.git_ref.clone() } else { req.r#ref.clone() };
        let scope = Scope::silent(self.state.clone(), fabric_id);
        let pulled = pull::pull(&self.state, &fabric, &git_ref, true, &scope).await.map_err(ApiError::from)?;
        let diagnostics: Vec<Diagnostic> =
            pulled.diagnostics.iter().map(|d| Diagnostic::from(&StoredDiagnostic::from(d))).collect();
        let mut counters = pulled.counters.clone();
        let changes = if pulled.has_errors() {
            Vec::new()
        } else {
            let plan = pull::plan_against_store(&self.state, fabric_id, &pulled).await.map_err(ApiError::from)?;
            (counters.created, counters.updated, counters.unchanged, counters.deleted) =
                (plan.created, plan.updated, plan.unchanged, plan.deleted);
            plan.changes.iter().map(|c| ResourceChange::from(&StoredChange::from(c))).collect()
        };
        Ok(Response::new(PlanSyncResponse {
            commit: pulled.commit.clone(),
            changes,
            diagnostics,
            counters: Some((&counters).into()),
            valid: !pulled.has_errors(),
            include_paths: fabric.include_paths.clone(),
            exclude_paths: fabric.exclude_paths.clone(),
            layout: crate::convert::proto_of(&crate::convert::LAYOUTS, pulled.layout.unwrap_or(Layout::Unknown)) as i32,
        }))
    }
}

/// A stream served from the event log: which rows, which notices wake it, what it sends.
pub(super) trait EventStream: Send + 'static {
    type Message: Send + 'static;
    /// Rows after `after`, and whether the stream is over once they are sent.
    fn read(
        &self,
        conn: &mut AsyncPgConnection,
        after: i64,
    ) -> impl Future<Output = Result<(Vec<EventRow>, bool), DbError>> + Send;
    fn wakes(&self, notice: &Notice) -> bool;
    /// The message for a row (None skips it) and whether it ends the stream.
    fn message(&self, row: &EventRow) -> Option<(Self::Message, bool)>;
}

/// A run's progress: ends with the run.
struct RunEvents {
    run_id: Uuid,
}

impl EventStream for RunEvents {
    type Message = StreamSyncProgressResponse;

    async fn read(&self, conn: &mut AsyncPgConnection, after: i64) -> Result<(Vec<EventRow>, bool), DbError> {
        let rows = events::of_run(conn, self.run_id, after, STREAM_BATCH).await?;
        let ended =
            if rows.is_empty() { store::get(conn, self.run_id).await?.is_none_or(|r| is_finished(&r)) } else { false };
        Ok((rows, ended))
    }

    fn wakes(&self, notice: &Notice) -> bool {
        notice.run_id == Some(self.run_id)
    }

    fn message(&self, row: &EventRow) -> Option<(Self::Message, bool)> {
        let event = engine::decode_progress(row)?;
        let terminal = engine::is_terminal(&event);
        Some((StreamSyncProgressResponse { event: Some(event) }, terminal))
    }
}

/// A fabric's cluster events, optionally of some kinds: never ends by itself.
struct ClusterEvents {
    fabric_id: Uuid,
    kinds: Vec<String>,
}

impl EventStream for ClusterEvents {
    type Message = WatchFabricEventsResponse;

    async fn read(&self, conn: &mut AsyncPgConnection, after: i64) -> Result<(Vec<EventRow>, bool), DbError> {
        Ok((events::of_fabric(conn, self.fabric_id, crate::sync::watch::STREAM, after, STREAM_BATCH).await?, false))
    }

    fn wakes(&self, notice: &Notice) -> bool {
        notice.fabric_id == self.fabric_id && notice.stream == crate::sync::watch::STREAM
    }

    fn message(&self, row: &EventRow) -> Option<(Self::Message, bool)> {
        let mut event = FabricEvent::decode(row.payload.as_slice()).ok()?;
        if !self.kinds.is_empty() && !event.key.as_ref().is_some_and(|k| self.kinds.contains(&k.kind)) {
            return None;
        }
        event.sequence = row.sequence;
        event.fabric_id = self.fabric_id.to_string();
        event.time = Some(timestamp(row.created_at));
        Some((WatchFabricEventsResponse { event: Some(event) }, false))
    }
}

/// Sends the stored events after `after`, then follows new ones until the stream ends, the
/// client goes away, or the server shuts down.
pub(super) async fn follow<S: EventStream>(
    state: AppState,
    stream: S,
    mut after: i64,
    tx: mpsc::Sender<Result<S::Message, Status>>,
) {
    // Subscribe before reading so nothing appended in between is missed.
    let mut notices = state.hub.subscribe();
    let mut shutdown = state.shutdown.clone();
    loop {
        let read = async {
            let mut conn = db::connect(&state.pool).await?;
            stream.read(&mut conn, after).await
        };
        let (rows, ended) = match read.await {
            Ok(read) => read,
            Err(e) => {
                let _ = tx.send(Err(ApiError::from(e).into())).await;
                return;
            }
        };
        let full_batch = rows.len() as i64 == STREAM_BATCH;
        for row in &rows {
            after = row.sequence;
            let Some((message, last)) = stream.message(row) else { continue };
            if tx.send(Ok(message)).await.is_err() || last {
                return;
            }
        }
        if ended {
            return;
        }
        if full_batch {
            continue;
        }
        let stopping = tokio::select! {
            _ = hub::wait_for(&mut notices, |n| stream.wakes(n)) => false,
            _ = tx.closed() => return,
            _ = shutdown.wait_for(|stop| *stop) => true,
        };
        if stopping {
            let status = Status::unavailable(format!("server shutting down; reconnect with from_sequence={after}"));
            let _ = tx.send(Err(status)).await;
            return;
        }
    }
}

fn is_finished(row: &RunRow) -> bool {
    row.status.is_finished()
}

fn fabric_not_found(id: Uuid) -> ApiError {
    ApiError::NotFound { kind: "fabric", id: id.to_string() }
}

async fn load(conn: &mut diesel_async::AsyncPgConnection, id: Uuid) -> Result<RunRow, ApiError> {
    store::get(conn, id).await?.ok_or_else(|| ApiError::NotFound { kind: "sync run", id: id.to_string() })
}

pub(super) async fn last_sequence(conn: &mut diesel_async::AsyncPgConnection, run_id: Uuid) -> Result<i64, ApiError> {
    Ok(events::last_of_run(conn, run_id).await?)
}

/// The longest wait for a rollout a run may ask for.
const MAX_ROLLOUT_WAIT_SECONDS: i64 = 3600;

/// StartSync's wait_for_rollout in whole seconds (rounded up), checked.
fn rollout_wait(wait: Option<&prost_types::Duration>, mode: SyncMode) -> Result<i32, ApiError> {
    let Some(wait) = wait.filter(|d| d.seconds != 0 || d.nanos != 0) else { return Ok(0) };
    if wait.seconds < 0 || wait.nanos < 0 {
        return Err(ApiError::invalid("wait_for_rollout", "must not be negative"));
    }
    if mode == SyncMode::Pull {
        return Err(ApiError::invalid("wait_for_rollout", "needs mode APPLY or FULL: a pull applies nothing"));
    }
    let seconds = wait.seconds + i64::from(wait.nanos > 0);
    if seconds > MAX_ROLLOUT_WAIT_SECONDS {
        return Err(ApiError::invalid("wait_for_rollout", format!("must be at most {MAX_ROLLOUT_WAIT_SECONDS} s")));
    }
    Ok(i32::try_from(seconds).unwrap_or(0))
}

pub(super) fn to_proto(row: &RunRow, last_sequence: i64) -> SyncRun {
    // Decode failures are logged and counted (db::typed::decode), never a failed call.
    let counters: Counters = decode(row.counters.clone(), "sync_runs.counters");
    let diagnostics: Vec<StoredDiagnostic> = decode(row.diagnostics.clone(), "sync_runs.diagnostics");
    let changes: Vec<StoredChange> = decode(row.changes.clone(), "sync_runs.changes");
    let kind_counts: Vec<(String, String, i64)> = decode(row.kind_counts.clone(), "sync_runs.kind_counts");
    SyncRun {
        id: row.id.to_string(),
        fabric_id: row.fabric_id.to_string(),
        mode: crate::convert::proto_of(&SYNC_MODES, row.mode) as i32,
        trigger: crate::convert::proto_of(&SYNC_TRIGGERS, row.trigger) as i32,
        dry_run: row.dry_run,
        r#ref: row.requested_ref.clone(),
        commit: row.commit_sha.clone().unwrap_or_default(),
        status: crate::convert::proto_of(&RUN_STATUSES, row.status) as i32,
        counters: Some((&counters).into()),
        kind_counts: kind_counts.into_iter().map(|(group, kind, count)| KindCount { group, kind, count }).collect(),
        diagnostics: diagnostics.iter().map(Diagnostic::from).collect(),
        changes: changes.iter().map(ResourceChange::from).collect(),
        error: row.error.clone().unwrap_or_default(),
        claimed_by: row.claimed_by.clone().unwrap_or_default(),
        create_time: Some(timestamp(row.created_at)),
        start_time: opt_timestamp(row.started_at),
        finish_time: opt_timestamp(row.finished_at),
        last_sequence,
        force: row.force,
        requested_by: row.requested_by.clone(),
        wait_for_rollout: (row.rollout_wait_seconds > 0)
            .then(|| prost_types::Duration { seconds: i64::from(row.rollout_wait_seconds), nanos: 0 }),
    }
}
