//! Rollout after an apply: how far the switches' agents caught up with what was applied, as
//! progress events; with the run's `wait_for_rollout`, the run waits (polling the agents) until
//! every switch is up to date, and fails naming those that did not catch up in time.

use std::time::{Duration, Instant};

use fabricsync_core::rollout::SwitchRollout;
use fabricsync_core::vocab::RolloutState;

use super::pull::{PullError, Scope};
use crate::cluster::agents;
use crate::context::AppState;
use crate::db::fabrics::FabricRow;
use crate::db::runs::RunRow;
use crate::db::{self, resources};
use crate::proto::sync_progress_event::Payload;
use crate::proto::RolloutProgress;
use crate::redact::Redactor;

/// How often the agents are read while waiting.
const POLL: Duration = Duration::from_secs(2);
/// Switches named in an event or a failure, at most.
const NAMED: usize = 20;

/// Reports the rollout and, when the run waits for it, waits; Some(message) when the wait ended
/// with switches behind (or the agents could not be read while waiting).
pub async fn follow(
    state: &AppState,
    fabric: &FabricRow,
    run: &RunRow,
    client: &kube::Client,
    redactor: &Redactor,
    scope: &Scope,
) -> Result<Option<String>, PullError> {
    let switches = {
        let mut conn = db::connect(&state.pool).await?;
        resources::switch_names(&mut conn, fabric.id).await?
    };
    let wait = Duration::from_secs(u64::try_from(run.rollout_wait_seconds).unwrap_or(0));
    if switches.is_empty() {
        return Ok(None);
    }
    let deadline = Instant::now() + wait;
    let mut reported = None;
    loop {
        let read = agents::list(client, &fabric.cluster_namespace).await;
        let agents = match read {
            Ok(Some(agents)) => agents,
            // Without agents there is no rollout to see; only a run that waits for it fails.
            Ok(None) if wait.is_zero() => return Ok(None),
            Ok(None) => {
                return Ok(Some(
                    "the cluster has no Agent kind (agent.githedgehog.com): the rollout cannot be seen".into(),
                ))
            }
            Err(e) if wait.is_zero() => {
                tracing::debug!(error = %redactor.clean(&e.to_string()), "rollout not read");
                return Ok(None);
            }
            Err(e) => {
                return Ok(Some(format!("the switches' agents cannot be read: {}", redactor.clean(&e.to_string()))))
            }
        };
        let rollouts = agents::rollouts(&switches, Some(&agents), db::now(), state.settings.switch_stale_after_seconds);
        let behind: Vec<&SwitchRollout> = rollouts.iter().filter(|r| r.state != RolloutState::UpToDate).collect();
        let progress = RolloutProgress {
            up_to_date: (rollouts.len() - behind.len()) as i64,
            total: rollouts.len() as i64,
            waiting_for: behind.iter().take(NAMED).map(|r| r.switch.clone()).collect(),
        };
        if reported.as_ref() != Some(&progress) {
            scope.emit(Payload::Rollout(progress.clone())).await;
            reported = Some(progress);
        }
        if behind.is_empty() || wait.is_zero() {
            return Ok(None);
        }
        if Instant::now() >= deadline {
            let named: Vec<String> =
                behind.iter().take(NAMED).map(|r| format!("{} ({})", r.switch, r.reason)).collect();
            return Ok(Some(format!(
                "{} of {} switches did not catch up within {} s: {}",
                behind.len(),
                rollouts.len(),
                wait.as_secs(),
                named.join(", ")
            )));
        }
        scope.checkpoint()?;
        tokio::time::sleep(
            POLL.min(deadline.saturating_duration_since(Instant::now())).max(Duration::from_millis(100)),
        )
        .await;
    }
}
