//! The apply step of APPLY and FULL runs: the stored (or just pulled) desired state to the
//! cluster in waves, per-object results recorded, progress streamed, then prune.

use std::collections::{HashMap, HashSet};

use futures::StreamExt;
use tracing::info;

use super::pull::{PullError, Scope};
use super::{run_diagnostic, Counters, StoredChange, StoredDiagnostic, MAX_STORED_CHANGES};
use crate::cluster::apply::{Applied, Applier};
use crate::cluster::{self, FABRIC_LABEL};
use crate::context::AppState;
use crate::db::fabrics::FabricRow;
use crate::db::resources::{self, ApplyEntry, ApplyRecord, WatchedLive};
use crate::db::{self, runs::RunRow};
use crate::metrics::{ApplyResult, Stage};
use crate::proto::sync_progress_event::Payload;
use crate::proto::ApplyingProgress;
use crate::sync::watch;
pub use fabricsync_core::apply::Targets;
use fabricsync_core::apply::{self as core_apply, decide, plan_apply, plan_waves, Decision, Desired, Live};
use fabricsync_core::manifest::kinds::KindRegistry;
use fabricsync_core::manifest::Object;
use fabricsync_core::vocab::{ApplyStatus, ChangeAction, DriftStatus};
use fabricsync_core::waves::WavePlan;
use fabricsync_core::ResourceKey;

/// Emit an Applying event every this many objects (and at each wave's end).
const PROGRESS_EVERY: usize = 100;

#[derive(Debug, Default)]
pub struct ApplyReport {
    pub counters: Counters,
    pub changes: Vec<StoredChange>,
    pub diagnostics: Vec<StoredDiagnostic>,
    /// The first error, as the run's message; None when every object was applied.
    pub error: Option<String>,
}

impl ApplyReport {
    fn failed(code: &str, message: String) -> ApplyReport {
        ApplyReport {
            diagnostics: vec![run_diagnostic(code, message.clone())],
            error: Some(message),
            ..Default::default()
        }
    }
}

/// Stored desired objects as the applier takes them.
pub fn desired_from_store(entries: Vec<ApplyEntry>) -> Vec<Desired> {
    entries
        .into_iter()
        .filter_map(|e| {
            Some(Desired {
                id: e.id,
                key: e.identity.key(),
                version: e.api_version,
                body: e.desired?,
                hash: e.desired_hash.unwrap_or_default(),
                last_applied_hash: e.last_applied_hash,
                applied_resource_version: e.applied_resource_version,
                contested: e.drift_status == DriftStatus::Contested,
            })
        })
        .collect()
}

fn change(desired_key: &ResourceKey, version: &str, action: ChangeAction, fields: Vec<String>) -> StoredChange {
    let ResourceKey { group, kind, namespace, name } = desired_key.clone();
    StoredChange {
        group,
        version: version.into(),
        kind,
        namespace,
        name,
        action: action.word().into(),
        changed_fields: fields,
        cluster: String::new(),
    }
}

fn describe(key: &ResourceKey) -> String {
    let ResourceKey { kind, namespace, name, .. } = key;
    if namespace.is_empty() {
        format!("{kind} {name}")
    } else {
        format!("{kind} {namespace}/{name}")
    }
}

/// Applies `desired` to the fabric's cluster. Cluster failures end in a report with an error;
/// Err is for the run itself (database, cancel, lease).
pub async fn apply(
    state: &AppState,
    fabric: &FabricRow,
    run: &RunRow,
    desired: Vec<Desired>,
    scope: &Scope,
) -> Result<ApplyReport, PullError> {
    let kinds = state.settings.kinds;
    let targets: Option<Targets> = match run.targets.clone().map(serde_json::from_value).transpose() {
        Ok(targets) => targets,
        Err(e) => return Ok(ApplyReport::failed("apply.targets", format!("the run's targets cannot be read: {e}"))),
    };
    let WavePlan { waves, invalid } = plan_waves(&desired);
    if !invalid.is_empty() {
        // Validation before apply: nothing is sent while any object is unplaceable.
        let diagnostics: Vec<StoredDiagnostic> = invalid
            .iter()
            .map(|(i, reason)| run_diagnostic("apply.sync_wave", format!("{}: {reason}", describe(&desired[*i].key))))
            .collect();
        let message = format!("{} object(s) have an invalid sync-wave annotation; nothing was applied", invalid.len());
        return Ok(ApplyReport { diagnostics, error: Some(message), ..Default::default() });
    }
    let cluster::Connection { client, redactor } =
        match cluster::connect(fabric, &state.keyring, &state.settings.outbound).await {
            Ok(connection) => connection,
            Err(e) => return Ok(ApplyReport::failed(e.code(), e.to_string())),
        };
    // Every message from here on may quote the cluster's answers.
    let say = |e: &cluster::ClusterError| redactor.clean(&e.to_string());
    let applier = Applier::new(client.clone(), &fabric.cluster_server_url, &fabric.name, run.dry_run, run.force);
    let in_run = |d: &Desired| core_apply::in_run(d, run.trigger, targets.as_ref());
    let live = match live_view(state, fabric, &applier, kinds, &desired, &in_run).await? {
        Ok(live) => live,
        Err(e) => return Ok(ApplyReport::failed(e.code(), format!("cannot list the cluster's objects: {}", say(&e)))),
    };
    scope.checkpoint()?;
    let plan = plan_apply(&desired, &waves, &live, targets.as_ref(), run.trigger, fabric.prune);
    let live_by_key: HashMap<ResourceKey, &Live> = live.iter().map(|l| (l.key.clone(), l)).collect();

    let mut report = ApplyReport::default();
    let mut records = Vec::new();
    for &i in &plan.skipped {
        report.counters.unchanged += 1;
        records.push(record(&desired[i], ApplyStatus::Unchanged, None, None));
    }
    let send = plan.send;
    let total: usize = send.iter().map(|(_, v)| v.len()).sum();
    let mut done = 0usize;
    for (n, (wave, indexes)) in send.iter().enumerate() {
        scope.checkpoint()?;
        let wave_number = i32::try_from(n).unwrap_or(i32::MAX);
        let wave_timer = scope.timer(Stage::ApplyWave);
        let mut results = applier.apply_wave(&desired, indexes, &live_by_key, kinds).await;
        let mut failed = 0usize;
        while let Some((i, outcome)) = results.next().await {
            let d = &desired[i];
            done += 1;
            report.counters.applied += 1;
            // A dry run's server-side dry-run applies change nothing: not counted.
            if !run.dry_run {
                state.metrics.applied(match &outcome {
                    Applied::Created { .. } => ApplyResult::Created,
                    Applied::Updated { .. } => ApplyResult::Updated,
                    Applied::Unchanged { .. } => ApplyResult::Unchanged,
                    Applied::Failed(_) => ApplyResult::Failed,
                });
            }
            match outcome {
                Applied::Created { uid, resource_version } => {
                    report.counters.created += 1;
                    report.changes.push(change(&d.key, &d.version, ChangeAction::Create, Vec::new()));
                    records.push(record(d, ApplyStatus::Applied, Some((uid, resource_version)), None));
                }
                Applied::Updated { uid, resource_version, fields } => {
                    report.counters.updated += 1;
                    report.changes.push(change(&d.key, &d.version, ChangeAction::Update, fields));
                    records.push(record(d, ApplyStatus::Applied, Some((uid, resource_version)), None));
                }
                Applied::Unchanged { uid, resource_version } => {
                    report.counters.unchanged += 1;
                    records.push(record(d, ApplyStatus::Applied, Some((uid, resource_version)), None));
                }
                Applied::Failed(e) => {
                    failed += 1;
                    report.diagnostics.push(run_diagnostic(e.code(), format!("{}: {}", describe(&d.key), say(&e))));
                    records.push(record(d, ApplyStatus::Failed, None, Some(say(&e))));
                }
            }
            if done.is_multiple_of(PROGRESS_EVERY) || done == total {
                let key = Some(crate::convert::resource_key(&d.key, &d.version));
                let total = total as i64;
                scope
                    .emit(Payload::Applying(ApplyingProgress { wave: wave_number, done: done as i64, total, key }))
                    .await;
            }
        }
        drop(results);
        drop(wave_timer);
        if !run.dry_run {
            save(state, &records).await?;
            records.clear();
        }
        if failed > 0 {
            let later: usize = send[n + 1..].iter().map(|(_, v)| v.len()).sum();
            let message =
                format!("{failed} object(s) of wave {wave} failed; {later} object(s) of later waves were not applied");
            report.diagnostics.push(run_diagnostic("apply.wave_failed", message.clone()));
            report.error = Some(message);
            report.changes.truncate(MAX_STORED_CHANGES);
            return Ok(report);
        }
    }
    if !run.dry_run {
        save(state, &records).await?;
    }
    // Orphans go with the fabric's prune policy, or when a Remediate run names them.
    let prune_timer = (!plan.prune.is_empty()).then(|| scope.timer(Stage::Prune));
    for gone in plan.prune.iter().map(|&i| &live[i]) {
        scope.checkpoint()?;
        match applier.delete(gone, kinds).await {
            Ok(()) => {
                state.metrics.applied(ApplyResult::Deleted);
                report.counters.pruned += 1;
                report.changes.push(change(&gone.key, &gone.version, ChangeAction::Delete, Vec::new()));
            }
            Err(e) => {
                state.metrics.applied(ApplyResult::Failed);
                let message = format!("prune of {} failed: {}", describe(&gone.key), say(&e));
                report.diagnostics.push(run_diagnostic(e.code(), message.clone()));
                report.error.get_or_insert(message);
            }
        }
    }
    drop(prune_timer);
    // What was applied is only accepted by the API server: see it reach the switches.
    if !run.dry_run && report.error.is_none() {
        let _rollout = scope.timer(Stage::Rollout);
        if let Some(message) = super::rollout::follow(state, fabric, run, &client, &redactor, scope).await? {
            report.diagnostics.push(run_diagnostic("rollout.incomplete", message.clone()));
            report.error = Some(message);
        }
    }
    report.changes.truncate(MAX_STORED_CHANGES);
    Ok(report)
}

/// The cluster's objects as the apply decides from. While a live process watches the fabric,
/// its stored view (without bodies); only the kinds in which something looks moved are listed
/// from the cluster, since the watch may not have caught up yet (right after an apply) and a
/// sent object needs its body. Otherwise the whole cluster is listed.
async fn live_view(
    state: &AppState,
    fabric: &FabricRow,
    applier: &Applier,
    kinds: &KindRegistry,
    desired: &[Desired],
    in_run: &(dyn Fn(&Desired) -> bool + Sync),
) -> Result<Result<Vec<Live>, cluster::ClusterError>, PullError> {
    let watched = {
        let mut conn = db::connect(&state.pool).await?;
        if watch::watched(&mut conn, fabric.id).await? {
            Some(resources::watched_live(&mut conn, fabric.id, FABRIC_LABEL, &fabric.name).await?)
        } else {
            None
        }
    };
    let Some(rows) = watched else {
        info!(source = "cluster list", "live view");
        return Ok(applier.list_live(kinds.kinds()).await);
    };
    let mut live: Vec<Live> = rows.iter().map(live_of).collect();
    let moved: HashSet<(String, String)> = {
        let by_key: HashMap<&ResourceKey, &Live> = live.iter().map(|l| (&l.key, l)).collect();
        desired
            .iter()
            .filter(|d| in_run(d) && decide(d, by_key.get(&d.key).copied()) != Decision::Skip)
            .map(|d| (d.key.group.clone(), d.key.kind.clone()))
            .collect()
    };
    info!(source = "watch", listed_kinds = moved.len(), "live view");
    if !moved.is_empty() {
        let listed =
            match applier.list_live(kinds.kinds().filter(|k| moved.contains(&(k.group.clone(), k.kind.clone())))).await
            {
                Ok(listed) => listed,
                Err(e) => return Ok(Err(e)),
            };
        live.retain(|l| !moved.contains(&(l.key.group.clone(), l.key.kind.clone())));
        live.extend(listed);
    }
    Ok(Ok(live))
}

/// A live object as the watch stored it (without its body).
fn live_of(row: &WatchedLive) -> Live {
    Live {
        key: ResourceKey::new(&row.api_group, &row.kind, &row.namespace, &row.name),
        version: row.api_version.clone(),
        resource_version: row.resource_version.clone(),
        managed_by_fabric: row.labelled,
        object: serde_json::Value::Null,
    }
}

fn record(d: &Desired, status: ApplyStatus, applied: Option<(String, String)>, error: Option<String>) -> ApplyRecord {
    let applied_hash = applied.as_ref().map(|_| d.hash.clone());
    let (uid, resource_version) = applied.map_or((None, None), |(u, r)| (Some(u), Some(r)));
    ApplyRecord { id: d.id, status, error, uid, resource_version, applied_hash }
}

async fn save(state: &AppState, records: &[ApplyRecord]) -> Result<(), PullError> {
    if records.is_empty() {
        return Ok(());
    }
    let mut conn = db::connect(&state.pool).await?;
    resources::record_apply(&mut conn, records, db::now()).await?;
    Ok(())
}

/// Loads the fabric's stored desired state for an apply.
pub async fn stored_desired(state: &AppState, fabric_id: uuid::Uuid) -> Result<Vec<Desired>, PullError> {
    let mut conn = db::connect(&state.pool).await?;
    Ok(desired_from_store(resources::for_apply(&mut conn, fabric_id).await?))
}

/// Just-pulled objects (a FULL dry run stores nothing), with what the store knows of their
/// last apply so unchanged ones are still skipped.
pub async fn desired_from_pulled(
    state: &AppState,
    fabric_id: uuid::Uuid,
    objects: &[&Object],
) -> Result<Vec<Desired>, PullError> {
    let stored: HashMap<ResourceKey, Desired> =
        stored_desired(state, fabric_id).await?.into_iter().map(|d| (d.key.clone(), d)).collect();
    Ok(objects
        .iter()
        .map(|o| {
            let key = o.key();
            let previous = stored.get(&key);
            Desired {
                id: previous.map_or(uuid::Uuid::nil(), |p| p.id),
                version: o.version.clone(),
                body: o.body.clone(),
                hash: o.hash.clone(),
                last_applied_hash: previous.and_then(|p| p.last_applied_hash.clone()),
                applied_resource_version: previous.and_then(|p| p.applied_resource_version.clone()),
                contested: previous.is_some_and(|p| p.contested),
                key,
            }
        })
        .collect())
}
