//! Auto-sync: fabrics with an interval are checked on schedule; a run is queued only when the
//! remote ref moved away from the last synced commit (or the check itself fails, so the run
//! records why): a pull, or with `auto_apply` a FULL run (continuous delivery: what is pulled is
//! applied; a pull that fails applies nothing). Fabrics with an inventory interval get an
//! inventory import queued when it is due.

use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::{debug, info_span, warn, Instrument};
use uuid::Uuid;

use super::queue::{self, Enqueued};
use crate::context::AppState;
use crate::db::{self, fabrics, runs, DbError};
use crate::git::{GitError, Mirror, Wanted};
use fabricsync_core::vocab::SyncMode;

pub fn spawn(state: AppState, tick: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut shutdown = state.shutdown.clone();
        loop {
            loop {
                let claimed = async {
                    let mut conn = db::connect(&state.pool).await?;
                    fabrics::claim_due_auto_sync(&mut conn).await
                };
                match claimed.await {
                    Ok(Some(fabric_id)) => {
                        check(&state, fabric_id).instrument(info_span!("auto_sync", fabric_id = %fabric_id)).await
                    }
                    Ok(None) => break,
                    Err(e) => {
                        warn!(error = %e, "auto-sync: cannot claim due fabrics");
                        break;
                    }
                }
            }
            // Scheduled inventory imports: queued when due (an import already active stays alone).
            loop {
                let claimed = async {
                    let mut conn = db::connect(&state.pool).await?;
                    fabrics::claim_due_inventory(&mut conn).await
                };
                match claimed.await {
                    Ok(Some(fabric_id)) => enqueue(&state, fabric_id, SyncMode::Inventory).await,
                    Ok(None) => break,
                    Err(e) => {
                        warn!(error = %e, "inventory schedule: cannot claim due fabrics");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    })
}

async fn check(state: &AppState, fabric_id: Uuid) {
    match moved(state, fabric_id).await {
        Ok((false, _)) => debug!("ref unchanged; nothing to pull"),
        Ok((true, mode)) => enqueue(state, fabric_id, mode).await,
        Err(CheckError::Busy) => debug!("a run is already active"),
        Err(e @ (CheckError::Db(_) | CheckError::Task(_))) => warn!(error = %e, "auto-sync check failed"),
        // The run reports the failure where users look (the run and the fabric's last error).
        Err(CheckError::Git(e)) => {
            debug!(error = %e, "auto-sync fetch failed; queuing a run to record it");
            enqueue(state, fabric_id, SyncMode::Pull).await
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum CheckError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("a run is active")]
    Busy,
    /// The blocking fetch task panicked or was cancelled (runtime shutdown): a bug or a stop,
    /// not a database or git failure.
    #[error("auto-sync fetch task panicked or was cancelled: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Whether the fabric's ref resolves to another commit than the last synced one, and the mode
/// of the run that would follow.
async fn moved(state: &AppState, fabric_id: Uuid) -> Result<(bool, SyncMode), CheckError> {
    let mut conn = db::connect(&state.pool).await?;
    if runs::active_for_fabric(&mut conn, fabric_id, false).await?.is_some() {
        return Err(CheckError::Busy);
    }
    let Some(fabric) = fabrics::get(&mut conn, fabric_id).await? else { return Ok((false, SyncMode::Pull)) };
    let mode = queue::automatic_mode(&fabric);
    let Some(repository) = db::repositories::get(&mut conn, fabric.repository_id).await? else {
        return Ok((false, mode));
    };
    drop(conn);
    let Ok(auth) = crate::credentials::git_auth(&repository, &state.keyring) else { return Ok((true, SyncMode::Pull)) };
    let cache = state.settings.data_dir.join("git");
    let timeout = state.settings.git_timeout;
    let git_ref = fabric.git_ref.clone();
    let outbound = state.settings.outbound.clone();
    let head = tokio::task::spawn_blocking(move || -> Result<String, GitError> {
        let mirror = Mirror::open_or_init(&cache, &repository.id.to_string())?;
        mirror.fetch(&outbound, &repository.url, &auth, Wanted::Refs(&[&git_ref]), timeout, &mut |_| {})?;
        mirror.resolve(&git_ref)
    })
    .await??;
    Ok((fabric.last_synced_commit.as_deref() != Some(head.as_str()), mode))
}

async fn enqueue(state: &AppState, fabric_id: Uuid, mode: SyncMode) {
    let request = queue::Request {
        fabric_id,
        mode,
        trigger: fabricsync_core::vocab::Trigger::Schedule,
        dry_run: false,
        force: false,
        requested_ref: String::new(),
        targets: None,
        requested_by: "auto-sync".into(),
        rollout_wait_seconds: 0,
    };
    let queued = async {
        let mut conn = db::connect(&state.pool).await?;
        queue::enqueue(&mut conn, &request).await
    };
    match queued.await {
        Ok(Enqueued::New(_)) | Ok(Enqueued::AlreadyActive(_)) => {}
        Err(e) => warn!(error = %e, "auto-sync: cannot queue a run"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_fetch_task_is_a_task_error_not_a_database_error() {
        // Cancelled rather than panicked: the same JoinError, without a panic in the test output.
        let task = tokio::spawn(std::future::pending::<()>());
        task.abort();
        let e = CheckError::from(task.await.expect_err("the task was cancelled"));
        assert!(matches!(e, CheckError::Task(_)), "{e:?}");
        assert!(e.to_string().contains("panicked or was cancelled"), "{e}");
    }
}
