//! Workers: claim queued runs (or runs whose worker died) with SKIP LOCKED, keep the lease
//! alive with heartbeats, execute the pull and conclude it in one fenced transaction.

use fabricsync_core::vocab::{Layout, RunStatus, SyncMode, SyncStatus};
use std::sync::atomic::Ordering;

use diesel_async::AsyncConnection;
use tokio::task::JoinHandle;
use tracing::{info, info_span, warn, Instrument};
use uuid::Uuid;

use super::apply::{self, ApplyReport};
use super::pull::{self, PullError, Pulled, RunFlags, Scope};
use fabricsync_core::plan::Plan;

use crate::db::resources::KeyColumns;
use crate::db::typed::{Json, Stored};

use super::{encode_progress, run_diagnostic, Counters, StoredChange, StoredDiagnostic};
use super::{MAX_STORED_CHANGES, MAX_STORED_DIAGNOSTICS, PROGRESS};
use crate::context::AppState;
use crate::db::fabrics::{self, FabricRow, SyncRecord};
use crate::db::hub;
use crate::db::resources::{self, DesiredInput};
use crate::db::runs::{self, RunOutcome, RunRow};
use crate::db::{self, events, DbError};
use crate::metrics::Stage;
use crate::proto::sync_progress_event::Payload;
use crate::proto::{CancelledProgress, FailedProgress, FinishedProgress, PersistingProgress};

/// Starts the configured number of workers, once this process holds its presence lock (see
/// `runs::claim`: another process takes a run over once its holder's lock is gone and its
/// heartbeats stopped, not only when the lease ran out); they end when the server shuts down.
pub async fn spawn(state: AppState, database_url: &str) -> Result<Vec<JoinHandle<()>>, DbError> {
    let process = state.process.to_string();
    let presence = runs::hold_presence(database_url, &process).await?;
    let mut tasks =
        vec![tokio::spawn(keep_presence(state.clone(), database_url.to_string(), process.clone(), presence))];
    tasks.extend((0..state.settings.sync_workers).map(|n| {
        let state = state.clone();
        let worker = format!("{process}/{n}");
        tokio::spawn(async move { work(state, worker).await })
    }));
    Ok(tasks)
}

/// Holds the presence lock's connection; when it breaks (a database restart), takes it again.
async fn keep_presence(
    state: AppState,
    database_url: String,
    process: String,
    mut presence: Option<diesel_async::AsyncPgConnection>,
) {
    let mut shutdown = state.shutdown.clone();
    loop {
        let alive = match presence.as_mut() {
            Some(conn) => runs::ping(conn).await.is_ok(),
            None => false,
        };
        if !alive {
            match runs::hold_presence(&database_url, &process).await {
                Ok(held) => presence = held,
                Err(e) => {
                    warn!(error = %e, "cannot take the presence lock; trying again")
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

async fn work(state: AppState, worker: String) {
    let mut notices = state.hub.subscribe();
    let mut shutdown = state.shutdown.clone();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let claimed = async {
            let mut conn = db::connect(&state.pool).await?;
            runs::claim(&mut conn, &worker, state.settings.sync_lease, state.settings.fetches_per_remote).await
        };
        match claimed.await {
            Ok(Some(run)) => {
                let span = info_span!(
                    "sync_run",
                    otel.name = %format_args!("sync run {}", run.mode),
                    fabric_id = %run.fabric_id,
                    run_id = %run.id,
                    worker = %worker,
                    mode = %run.mode,
                    trigger = %run.trigger,
                );
                crate::traces::continue_trace(&span, run.trace_parent.as_deref());
                execute(&state, &worker, run).instrument(span).await;
                continue;
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "could not claim sync runs"),
        }
        // Woken by any progress notice (a new run announces itself as queued) or by the poll.
        tokio::select! {
            _ = hub::wait_for(&mut notices, |n| n.stream == PROGRESS) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

async fn execute(state: &AppState, worker: &str, run: RunRow) {
    info!(mode = %run.mode, dry_run = run.dry_run, "sync run claimed");
    let flags = RunFlags { id: run.id, ..Default::default() };
    let heartbeat = tokio::spawn(heartbeat(state.clone(), worker.to_string(), flags.clone()));
    let _active = state.metrics.run_active(run.mode);
    let inventory = run.mode == SyncMode::Inventory;
    let result = if inventory {
        super::inventory::execute(state, worker, &run, &flags).await
    } else {
        execute_pull(state, worker, &run, &flags).await
    };
    heartbeat.abort();
    // A run's objects are dropped by now; the heap they took need not stay resident.
    tokio::task::spawn_blocking(crate::memory::release_free_heap);
    match result {
        Ok(()) if !run.dry_run && !inventory => {
            // The desired state or the cluster changed: drift follows.
            if let Err(e) = crate::drift::refresh_pooled(&state.pool, state.settings.kinds, run.fabric_id, None).await {
                warn!(error = %e, "could not recompute drift after the run");
            }
        }
        Ok(()) => {}
        Err(PullError::Lost) => warn!("lease lost: another worker took this run over"),
        Err(PullError::Released) => {
            let released = async {
                let mut conn = db::connect(&state.pool).await?;
                runs::release(&mut conn, run.id, worker).await
            };
            match released.await {
                Ok(()) => info!("shutting down: run handed back to the queue"),
                Err(e) => warn!(error = %e, "could not hand the run back; it is taken over after its lease"),
            }
        }
        Err(PullError::Db(e)) if e.is_transient() => hand_back(state, worker, &run, &e).await,
        Err(e) => warn!(error = %e, "could not conclude the run; it is taken over after its lease"),
    }
}

/// After the database went away under a run, hands the run back to the queue as soon as the
/// database is back (within `HAND_BACK`), so that it runs again at once (every mode is safe to
/// run again) instead of after its lease.
async fn hand_back(state: &AppState, worker: &str, run: &RunRow, error: &DbError) {
    const HAND_BACK: std::time::Duration = std::time::Duration::from_secs(10);
    let deadline = tokio::time::Instant::now() + HAND_BACK;
    while tokio::time::Instant::now() < deadline {
        let released = async {
            let mut conn = db::connect(&state.pool).await?;
            runs::release(&mut conn, run.id, worker).await
        };
        if released.await.is_ok() {
            info!(error = %error, "the database went away under the run: handed back to the queue");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    warn!(error = %error, "the database went away under the run; it is taken over after its lease");
}

/// Renews the lease every `runs::HEARTBEAT` (or third of the lease, if shorter); flags a lost
/// lease, a cancel request and shutdown.
async fn heartbeat(state: AppState, worker: String, flags: RunFlags) {
    let lease = state.settings.sync_lease;
    let mut shutdown = state.shutdown.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(runs::HEARTBEAT.min(lease / 3)) => {}
            _ = shutdown.wait_for(|stop| *stop) => {
                flags.stop.store(true, Ordering::Relaxed);
                return;
            }
        }
        let beat = async {
            let mut conn = db::connect(&state.pool).await?;
            runs::heartbeat(&mut conn, flags.id, &worker, lease).await
        };
        match beat.await {
            Ok(Some(cancel)) => flags.cancel.store(cancel, Ordering::Relaxed),
            Ok(None) => {
                flags.lost.store(true, Ordering::Relaxed);
                return;
            }
            // A missed beat is retried; the lease covers two more.
            Err(e) => warn!(error = %e, "heartbeat failed"),
        }
    }
}

async fn execute_pull(state: &AppState, worker: &str, run: &RunRow, flags: &RunFlags) -> Result<(), PullError> {
    let mut conn = db::connect(&state.pool).await?;
    // A deleted fabric takes its runs with it (ON DELETE CASCADE): nothing to do.
    let Some(fabric) = fabrics::get(&mut conn, run.fabric_id).await? else { return Ok(()) };
    if !run.dry_run {
        fabrics::record_sync(&mut conn, fabric.id, &SyncRecord::status(SyncStatus::Syncing)).await?;
    }
    drop(conn);
    let git_ref = if run.requested_ref.is_empty() { fabric.git_ref.clone() } else { run.requested_ref.clone() };
    let scope = Scope::for_run(state.clone(), fabric.id, flags.clone(), run.mode);
    let outcome = if !run.mode.pulls() {
        apply_stored(state, worker, run, &fabric, &scope).await
    } else {
        match pull::pull(state, &fabric, &git_ref, run.force, &scope).await {
            Ok(pulled) => conclude_pulled(state, worker, run, &fabric, &pulled, &scope).await,
            Err(e) => Err(e),
        }
    };
    match outcome {
        Ok(()) => Ok(()),
        // A step that failed while a cancel was pending (e.g. a fetch cut short) ends as cancelled.
        Err(PullError::Cancelled) => conclude(state, worker, run, &fabric, Conclusion::cancelled(), None).await,
        Err(PullError::Git(_)) if flags.cancel.load(Ordering::Relaxed) => {
            conclude(state, worker, run, &fabric, Conclusion::cancelled(), None).await
        }
        Err(e @ (PullError::Lost | PullError::Released)) => Err(e),
        Err(e) => {
            let code = match &e {
                PullError::Git(g) => g.code(),
                _ => "sync.internal",
            };
            let message = e.to_string();
            let failed =
                Conclusion::failed(vec![run_diagnostic(code, message.clone())], message, Counters::default(), None);
            conclude(state, worker, run, &fabric, failed, None).await
        }
    }
}

async fn conclude_pulled(
    state: &AppState,
    worker: &str,
    run: &RunRow,
    fabric: &FabricRow,
    pulled: &Pulled,
    scope: &Scope,
) -> Result<(), PullError> {
    if pulled.same_source {
        // The stored state came from this very source: all of it is unchanged.
        let stored = fabric.resource_counts.0.clone();
        let counters = Counters { unchanged: stored.iter().map(|(_, _, n)| n).sum(), ..Default::default() };
        let done =
            Conclusion { kind_counts: stored, ..Conclusion::succeeded(counters, pulled, &Plan::default(), Vec::new()) };
        if !run.mode.applies() {
            return conclude(state, worker, run, fabric, done, None).await;
        }
        // FULL: nothing new to store, and still applied (the cluster may have moved).
        let report = apply::apply(state, fabric, run, apply::stored_desired(state, fabric.id).await?, scope).await?;
        return conclude(state, worker, run, fabric, done.with_apply(report, true), None).await;
    }
    let diagnostics: Vec<StoredDiagnostic> = pulled.diagnostics.iter().map(StoredDiagnostic::from).collect();
    let objects = pulled.objects();
    if pulled.has_errors() {
        let message = format!(
            "the sources at {} have {} error(s); nothing was stored",
            short(&pulled.commit),
            pulled.counters.errors
        );
        let failed = Conclusion {
            layout: pulled.layout,
            ..Conclusion::failed(diagnostics, message, pulled.counters.clone(), Some(pulled.commit.clone()))
        };
        return conclude(state, worker, run, fabric, failed, None).await;
    }
    if objects.is_empty() && !fabric.allow_empty {
        let message = format!(
            "no Hedgehog objects under {:?} at {}; refusing to empty the fabric (set sync_policy.allow_empty to allow it)",
            if fabric.gitops_path.is_empty() { "/" } else { &fabric.gitops_path },
            short(&pulled.commit)
        );
        let mut all = diagnostics;
        all.push(run_diagnostic("sync.empty", message.clone()));
        let failed = Conclusion::failed(all, message, pulled.counters.clone(), Some(pulled.commit.clone()));
        return conclude(state, worker, run, fabric, failed, None).await;
    }
    let timer = state.metrics.timer(run.mode, Stage::Plan);
    let plan = pull::plan_against_store(state, fabric.id, pulled).await?;
    drop(timer);
    scope.checkpoint()?;
    let mut counters = pulled.counters.clone();
    (counters.created, counters.updated, counters.unchanged, counters.deleted) =
        (plan.created, plan.updated, plan.unchanged, plan.deleted);
    let writes = (!run.dry_run).then_some((pulled, &plan));
    if writes.is_some() {
        let total = (plan.writes.len() + plan.removals.len()) as i64;
        scope.emit(Payload::Persisting(PersistingProgress { done: 0, total })).await;
    }
    let mut done = Conclusion::succeeded(counters, pulled, &plan, diagnostics);
    done.kind_counts = fabricsync_core::plan::kind_counts(&objects);
    if !run.mode.applies() {
        return conclude(state, worker, run, fabric, done, writes).await;
    }
    // FULL: the pulled state is stored first (validated, all-or-nothing), then applied.
    let desired = match writes {
        Some(writes) => {
            store(state, worker, run, fabric, writes).await?;
            apply::stored_desired(state, fabric.id).await?
        }
        None => apply::desired_from_pulled(state, fabric.id, &objects).await?,
    };
    let report = apply::apply(state, fabric, run, desired, scope).await?;
    conclude(state, worker, run, fabric, done.with_apply(report, true), None).await
}

/// APPLY: the stored desired state to the cluster.
async fn apply_stored(
    state: &AppState,
    worker: &str,
    run: &RunRow,
    fabric: &FabricRow,
    scope: &Scope,
) -> Result<(), PullError> {
    let desired = apply::stored_desired(state, fabric.id).await?;
    let report = apply::apply(state, fabric, run, desired, scope).await?;
    let stored = fabric.resource_counts.0.clone();
    let base = Conclusion {
        status: RunStatus::Succeeded,
        commit: fabric.last_synced_commit.clone(),
        source: fabric.synced_source.clone(),
        kind_counts: stored,
        ..Conclusion::cancelled()
    };
    conclude(state, worker, run, fabric, base.with_apply(report, false), None).await
}

/// How a run ends.
struct Conclusion {
    status: RunStatus,
    counters: Counters,
    commit: Option<String>,
    diagnostics: Vec<StoredDiagnostic>,
    changes: Vec<StoredChange>,
    kind_counts: Vec<(String, String, i64)>,
    error: Option<String>,
    /// The source a succeeded pull stored (see `pull::source_key`).
    source: Option<String>,
    /// The layout the pull found (recorded on failure too: it explains what was read).
    layout: Option<Layout>,
}

impl Conclusion {
    fn cancelled() -> Conclusion {
        Conclusion {
            status: RunStatus::Cancelled,
            counters: Counters::default(),
            commit: None,
            diagnostics: Vec::new(),
            changes: Vec::new(),
            kind_counts: Vec::new(),
            error: None,
            source: None,
            layout: None,
        }
    }

    fn failed(
        diagnostics: Vec<StoredDiagnostic>,
        message: String,
        counters: Counters,
        commit: Option<String>,
    ) -> Conclusion {
        Conclusion {
            status: RunStatus::Failed,
            error: Some(message),
            diagnostics,
            counters,
            commit,
            ..Conclusion::cancelled()
        }
    }

    fn succeeded(counters: Counters, pulled: &Pulled, plan: &Plan, diagnostics: Vec<StoredDiagnostic>) -> Conclusion {
        Conclusion {
            status: RunStatus::Succeeded,
            counters,
            commit: Some(pulled.commit.clone()),
            diagnostics,
            changes: plan.changes.iter().take(MAX_STORED_CHANGES).map(StoredChange::from).collect(),
            source: Some(pulled.source.clone()),
            layout: pulled.layout,
            ..Conclusion::cancelled()
        }
    }

    /// Adds an apply's outcome. After a pull (`after_pull`) the pull's counters stay and the
    /// apply adds applied/pruned; an APPLY run counts what happened in the cluster.
    fn with_apply(mut self, report: ApplyReport, after_pull: bool) -> Conclusion {
        if after_pull {
            self.counters.applied = report.counters.applied;
            self.counters.pruned = report.counters.pruned;
        } else {
            self.counters = report.counters;
        }
        self.changes = report.changes;
        self.diagnostics.extend(report.diagnostics);
        if let Some(error) = report.error {
            self.status = RunStatus::Failed;
            self.error = Some(error);
        }
        self
    }

    fn payload(&self) -> Payload {
        match self.status {
            RunStatus::Succeeded => Payload::Finished(FinishedProgress {
                counters: Some((&self.counters).into()),
                commit: self.commit.clone().unwrap_or_default(),
            }),
            RunStatus::Failed => Payload::Failed(FailedProgress {
                diagnostics: self
                    .diagnostics
                    .iter()
                    .filter(|d| d.error)
                    .take(MAX_STORED_DIAGNOSTICS)
                    .map(Into::into)
                    .collect(),
                message: self.error.clone().unwrap_or_default(),
            }),
            _ => Payload::Cancelled(CancelledProgress {}),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum TxError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("lease lost")]
    Lost,
    #[error("cancelled")]
    Cancelled,
}

impl From<diesel::result::Error> for TxError {
    fn from(e: diesel::result::Error) -> Self {
        TxError::Db(e.into())
    }
}

/// Ends the run in one transaction, fenced on still holding it: the desired state (if
/// `writes`), the fabric's status, the run row and its final event commit together or not at all.
async fn conclude(
    state: &AppState,
    worker: &str,
    run: &RunRow,
    fabric: &FabricRow,
    conclusion: Conclusion,
    writes: Option<(&Pulled, &Plan)>,
) -> Result<(), PullError> {
    let now = db::now();
    let mut diagnostics = conclusion.diagnostics.clone();
    if diagnostics.len() > MAX_STORED_DIAGNOSTICS {
        let more = diagnostics.len() - MAX_STORED_DIAGNOSTICS;
        diagnostics.truncate(MAX_STORED_DIAGNOSTICS);
        diagnostics.push(run_diagnostic("sync.truncated", format!("{more} more diagnostics not stored")));
    }
    let to_json = |v: serde_json::Result<serde_json::Value>| v.map_err(|e| PullError::Internal(e.to_string()));
    let outcome = RunOutcome {
        status: conclusion.status,
        commit_sha: conclusion.commit.clone(),
        counters: to_json(serde_json::to_value(&conclusion.counters))?,
        kind_counts: to_json(serde_json::to_value(&conclusion.kind_counts))?,
        diagnostics: to_json(serde_json::to_value(&diagnostics))?,
        changes: to_json(serde_json::to_value(&conclusion.changes))?,
        error: conclusion.error.clone(),
        lease_expires_at: None,
    };
    let record = (!run.dry_run).then(|| fabric_record(fabric, &conclusion, now)).transpose()?;
    let rows = writes.map(|(pulled, plan)| desired_rows(fabric.id, pulled, plan, now));
    let removals = writes.map(|(_, plan)| plan.removals.clone()).unwrap_or_default();
    let commit = conclusion.commit.clone().unwrap_or_default();

    let persist = rows.is_some().then(|| state.metrics.timer(run.mode, Stage::Persist));
    let mut conn = db::connect(&state.pool).await?;
    let result = conn
        .transaction::<_, TxError, _>(async |conn| {
            {
                let cancel = runs::lock_if_held(conn, run.id, worker).await?.ok_or(TxError::Lost)?;
                if let Some(rows) = &rows {
                    if cancel {
                        return Err(TxError::Cancelled);
                    }
                    write_desired(conn, run.fabric_id, rows, &removals, &commit, now).await?;
                }
                if let Some(record) = &record {
                    fabrics::record_sync(conn, run.fabric_id, record).await?;
                }
                // Stamped after the writes so the run's times include them.
                runs::finish(conn, run.id, &outcome).await?;
                let event = encode_progress(run.id, conclusion.payload());
                events::append(conn, run.fabric_id, Some(run.id), PROGRESS, &event).await?;
                Ok(())
            }
        })
        .await;
    drop(persist);
    match result {
        Ok(()) => {
            info!(status = %conclusion.status, commit = %commit, "sync run ended");
            super::run_ended(state, run, conclusion.status);
            Ok(())
        }
        Err(TxError::Lost) => Err(PullError::Lost),
        Err(TxError::Cancelled) => Box::pin(conclude(state, worker, run, fabric, Conclusion::cancelled(), None)).await,
        Err(TxError::Db(e)) => Err(e.into()),
    }
}

/// The fabric's status after a (non dry) run: success records commit and counts; failure keeps
/// the last good state and records the error; cancel restores the status before the run.
fn fabric_record(
    fabric: &FabricRow,
    c: &Conclusion,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<SyncRecord, PullError> {
    let previous = if fabric.last_synced_commit.is_some() { SyncStatus::Synced } else { SyncStatus::NeverSynced };
    Ok(match c.status {
        RunStatus::Succeeded => SyncRecord {
            sync_status: SyncStatus::Synced,
            last_error: Some(None),
            resource_counts: Some(Json(c.kind_counts.clone())),
            last_synced_commit: Some(c.commit.clone()),
            last_sync_time: Some(Some(now)),
            synced_source: Some(c.source.clone()),
            layout: c.layout.map(Stored),
        },
        RunStatus::Failed => SyncRecord {
            sync_status: SyncStatus::Failed,
            last_error: Some(c.error.clone()),
            layout: c.layout.map(Stored),
            ..SyncRecord::status(SyncStatus::Failed)
        },
        _ => SyncRecord::status(previous),
    })
}

async fn write_desired(
    conn: &mut diesel_async::AsyncPgConnection,
    fabric_id: Uuid,
    rows: &[DesiredInput],
    removals: &[Uuid],
    commit: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), DbError> {
    resources::upsert_desired(conn, rows).await?;
    resources::remove_desired(conn, removals, now).await?;
    resources::touch_commit(conn, fabric_id, commit).await
}

/// Stores a pull's desired state without ending the run (FULL runs apply it next), fenced
/// like `conclude`.
async fn store(
    state: &AppState,
    worker: &str,
    run: &RunRow,
    fabric: &FabricRow,
    (pulled, plan): (&Pulled, &Plan),
) -> Result<(), PullError> {
    let now = db::now();
    let rows = desired_rows(fabric.id, pulled, plan, now);
    let _persist = state.metrics.timer(run.mode, Stage::Persist);
    let mut conn = db::connect(&state.pool).await?;
    let result = conn
        .transaction::<_, TxError, _>(async |conn| {
            let cancel = runs::lock_if_held(conn, run.id, worker).await?.ok_or(TxError::Lost)?;
            if cancel {
                return Err(TxError::Cancelled);
            }
            write_desired(conn, fabric.id, &rows, &plan.removals, &pulled.commit, now).await?;
            Ok(())
        })
        .await;
    match result {
        Ok(()) => Ok(()),
        Err(TxError::Lost) => Err(PullError::Lost),
        Err(TxError::Cancelled) => Err(PullError::Cancelled),
        Err(TxError::Db(e)) => Err(e.into()),
    }
}

fn desired_rows(
    fabric_id: Uuid,
    pulled: &Pulled,
    plan: &Plan,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<DesiredInput> {
    let objects = pulled.objects();
    plan.writes
        .iter()
        .filter_map(|&i| objects.get(i))
        .map(|o| DesiredInput {
            id: Uuid::new_v4(),
            fabric_id,
            identity: KeyColumns::from(&o.key()),
            api_version: o.version.clone(),
            desired: Some(o.body.clone()),
            desired_hash: Some(o.hash.clone()),
            source_file: Some(o.file.clone()),
            source_document: Some(i32::try_from(o.document).unwrap_or(i32::MAX)),
            source_line: i32::try_from(o.line).ok(),
            commit_sha: Some(pulled.commit.clone()),
            updated_at: now,
        })
        .collect()
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}
