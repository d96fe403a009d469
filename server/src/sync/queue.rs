//! Queuing a run: the row and its `queued` event commit together, and the partial unique index
//! keeps at most one active run per fabric (and one inventory import beside it).

use diesel_async::{AsyncConnection, AsyncPgConnection};
use fabricsync_core::vocab::{RunStatus, SyncMode, Trigger};
use tracing::info;
use uuid::Uuid;

use super::{encode_progress, PROGRESS};
use crate::db::runs::{self, RunRow};
use crate::db::{self, events, DbError};
use crate::proto::sync_progress_event::Payload;
use crate::proto::QueuedProgress;

pub struct Request {
    pub fabric_id: Uuid,
    pub mode: SyncMode,
    pub trigger: Trigger,
    pub dry_run: bool,
    pub force: bool,
    pub requested_ref: String,
    /// Limits an APPLY run to chosen resources (`apply::Targets`).
    pub targets: Option<serde_json::Value>,
    /// Who asked (`Principal::requester`, or the server's own `auto-sync` / `self-heal`).
    pub requested_by: String,
    /// APPLY and FULL: seconds to wait for the rollout to the switches after the apply.
    pub rollout_wait_seconds: i32,
}

pub enum Enqueued {
    New(RunRow),
    /// The fabric already has a queued or running run (None if it ended in between).
    AlreadyActive(Option<RunRow>),
}

/// What a run nobody asked for (auto-sync, a push webhook) does: FULL with auto_apply and a
/// cluster (continuous delivery), else a pull.
pub fn automatic_mode(fabric: &crate::db::fabrics::FabricRow) -> SyncMode {
    if fabric.auto_apply && !fabric.cluster_server_url.is_empty() {
        SyncMode::Full
    } else {
        SyncMode::Pull
    }
}

pub async fn enqueue(conn: &mut AsyncPgConnection, request: &Request) -> Result<Enqueued, DbError> {
    let row = RunRow {
        id: Uuid::new_v4(),
        fabric_id: request.fabric_id,
        mode: request.mode,
        trigger: request.trigger,
        dry_run: request.dry_run,
        force: request.force,
        requested_ref: request.requested_ref.clone(),
        commit_sha: None,
        status: RunStatus::Queued,
        counters: serde_json::json!({}),
        kind_counts: serde_json::json!([]),
        diagnostics: serde_json::json!([]),
        changes: serde_json::json!([]),
        error: None,
        cancel_requested: false,
        claimed_by: None,
        lease_expires_at: None,
        created_at: db::now(),
        started_at: None,
        finished_at: None,
        targets: request.targets.clone(),
        requested_by: request.requested_by.clone(),
        rollout_wait_seconds: request.rollout_wait_seconds,
        fetching: false,
        trace_parent: crate::traces::current_traceparent(),
    };
    let queued = encode_progress(row.id, Payload::Queued(QueuedProgress {}));
    let inserted = conn
        .transaction::<_, DbError, _>(async |conn| {
            runs::insert(conn, &row).await?;
            events::append(conn, row.fabric_id, Some(row.id), PROGRESS, &queued).await?;
            Ok(())
        })
        .await;
    match inserted {
        Ok(()) => {
            info!(fabric_id = %row.fabric_id, run_id = %row.id, trigger = %row.trigger, dry_run = row.dry_run, "sync run queued");
            Ok(Enqueued::New(row))
        }
        Err(DbError::UniqueViolation(index)) if index == runs::ACTIVE_RUN_INDEX => {
            let inventory = request.mode == SyncMode::Inventory;
            Ok(Enqueued::AlreadyActive(runs::active_for_fabric(conn, request.fabric_id, inventory).await?))
        }
        Err(e) => Err(e),
    }
}
