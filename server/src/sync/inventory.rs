//! An inventory import: a run of mode INVENTORY reads every kind the fabric's inventory settings
//! keep from its cluster and then from each of its inventory clusters (read only; KubeVirt's
//! kinds where a cluster serves them), diffs what it read against the last import (core
//! `inventory`), and stores the diff with the run's end in one transaction fenced on still
//! holding the run. A dry run stores only the run; a cluster that cannot be read fails the run
//! (naming it) and nothing is stored, so an object is never deleted for being unread.

use std::collections::BTreeMap;

use diesel_async::AsyncConnection;
use tracing::info;

use fabricsync_core::inventory::{self, InventoryFilter, InventoryObject, OWN_CLUSTER};
use fabricsync_core::vocab::{ChangeAction, InventoryKind, RunStatus, Word, WorkloadFilter};

use super::pull::{PullError, RunFlags, Scope};
use super::{encode_progress, run_diagnostic, Counters, StoredChange, StoredDiagnostic};
use super::{MAX_STORED_CHANGES, MAX_STORED_DIAGNOSTICS, PROGRESS};
use crate::cluster;
use crate::context::AppState;
use crate::db::fabrics::{self, FabricRow, InventorySettings};
use crate::db::runs::{self, RunOutcome, RunRow};
use crate::db::{self, events, DbError};
use crate::proto::sync_progress_event::Payload;
use crate::proto::{CancelledProgress, FailedProgress, FinishedProgress, InventoryProgress};

/// The core's filter of a fabric's stored settings (validated when they were stored: a word
/// that no longer parses is skipped, an empty list means every kind).
pub fn filter_of(settings: &InventorySettings) -> Result<InventoryFilter, inventory::InventoryError> {
    let workloads = WorkloadFilter::parse(&settings.workloads).unwrap_or(WorkloadFilter::All);
    let kinds: Vec<InventoryKind> = if settings.kinds.is_empty() {
        InventoryKind::ALL.to_vec()
    } else {
        settings.kinds.iter().filter_map(|k| InventoryKind::parse(k)).collect()
    };
    let regex = (!settings.namespace_regex.is_empty()).then_some(settings.namespace_regex.as_str());
    InventoryFilter::new(regex, workloads, kinds)
}

/// What an import read: the kept objects and the objects it could not read.
#[derive(Default)]
struct Read {
    objects: Vec<InventoryObject>,
    warnings: Vec<StoredDiagnostic>,
}

pub async fn execute(state: &AppState, worker: &str, run: &RunRow, flags: &RunFlags) -> Result<(), PullError> {
    let mut conn = db::connect(&state.pool).await?;
    // A deleted fabric takes its runs with it.
    let Some(fabric) = fabrics::get(&mut conn, run.fabric_id).await? else { return Ok(()) };
    drop(conn);
    let scope = Scope::for_run(state.clone(), fabric.id, flags.clone(), run.mode);
    let timer = state.metrics.timer(run.mode, crate::metrics::Stage::Inventory);
    let read = read(state, &fabric, &scope).await;
    drop(timer);
    let ending = match read {
        Ok(read) => Ending::Read(read),
        Err(Failure::Run(PullError::Cancelled)) => Ending::Cancelled,
        Err(Failure::Run(e)) => return Err(e),
        Err(Failure::Cluster(code, message)) => Ending::Failed(code, message),
    };
    conclude(state, worker, run, ending).await
}

enum Failure {
    Run(PullError),
    /// The cluster could not be read: (code, message without secrets).
    Cluster(&'static str, String),
}

impl From<PullError> for Failure {
    fn from(e: PullError) -> Failure {
        Failure::Run(e)
    }
}

async fn read(state: &AppState, fabric: &FabricRow, scope: &Scope) -> Result<Read, Failure> {
    let filter = filter_of(&fabric.inventory.0).map_err(|e| Failure::Cluster("inventory.filter", e.to_string()))?;
    let extra = {
        let mut conn = db::connect(&state.pool).await.map_err(PullError::from)?;
        db::inventory::clusters(&mut conn, fabric.id).await.map_err(PullError::from)?
    };
    let outbound = &state.settings.outbound;
    let mut read = Read::default();
    if !fabric.cluster_server_url.is_empty() {
        let connection = cluster::connect(fabric, &state.keyring, outbound).await;
        read_from(OWN_CLUSTER, connection, &filter, scope, &mut read).await?;
    }
    for extra in &extra {
        let connection = cluster::connect_inventory_cluster(extra, &state.keyring, outbound).await;
        read_from(&extra.name, connection, &filter, scope, &mut read).await?;
    }
    Ok(read)
}

/// `read_cluster` over a connection that may have failed; a failure names the cluster.
async fn read_from(
    name: &str,
    connection: Result<cluster::Connection, cluster::ClusterError>,
    filter: &InventoryFilter,
    scope: &Scope,
    read: &mut Read,
) -> Result<(), Failure> {
    let result = match connection {
        Ok(connection) => read_cluster(name, &connection, filter, scope, read).await,
        Err(e) => Err(Failure::Cluster(e.code(), e.to_string())),
    };
    result.map_err(|e| match e {
        Failure::Cluster(code, message) => Failure::Cluster(code, cluster_prefixed(name, message)),
        other => other,
    })
}

/// Reads every kind the filter keeps from one cluster into `read`, a progress event per kind.
async fn read_cluster(
    name: &str,
    connection: &cluster::Connection,
    filter: &InventoryFilter,
    scope: &Scope,
    read: &mut Read,
) -> Result<(), Failure> {
    let failed = |e: cluster::ClusterError| Failure::Cluster(e.code(), connection.redactor.clean(&e.to_string()));
    for &kind in InventoryKind::ALL.iter().filter(|k| filter.kinds.contains(k)) {
        scope.checkpoint()?;
        let served = cluster::inventory::served(&connection.client, kind).await.map_err(failed)?;
        let before = read.objects.len();
        let mut keep = |value: &serde_json::Value| match inventory::read(name, kind, value) {
            Ok(object) if filter.keeps(&object) => read.objects.push(object),
            Ok(_) => {}
            Err(e) => read.warnings.push(StoredDiagnostic {
                error: false,
                ..run_diagnostic("inventory.unreadable", cluster_prefixed(name, e.to_string()))
            }),
        };
        let listed = match served {
            true => cluster::inventory::list(&connection.client, kind, &mut keep).await.map_err(failed)?,
            false => 0,
        };
        let progress = InventoryProgress {
            kind: kind.kind().into(),
            listed: listed as i64,
            kept: (read.objects.len() - before) as i64,
            served,
            cluster: name.into(),
        };
        scope.emit(Payload::Inventory(progress)).await;
    }
    Ok(())
}

/// A message about an inventory cluster's object, naming the cluster (the own one is unnamed).
fn cluster_prefixed(cluster: &str, message: String) -> String {
    if cluster == OWN_CLUSTER {
        message
    } else {
        format!("inventory cluster {cluster:?}: {message}")
    }
}

enum Ending {
    Read(Read),
    Failed(&'static str, String),
    Cancelled,
}

/// The run's change of one object, as its changes list shows it.
fn stored_change(key: &inventory::InventoryKey, action: ChangeAction) -> StoredChange {
    let (group, version) = key.kind.group_version();
    StoredChange {
        group: group.into(),
        version: version.into(),
        kind: key.kind.kind().into(),
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        action: action.word().into(),
        changed_fields: Vec::new(),
        cluster: key.cluster.clone(),
    }
}

async fn conclude(state: &AppState, worker: &str, run: &RunRow, ending: Ending) -> Result<(), PullError> {
    let now = db::now();
    let mut conn = db::connect(&state.pool).await?;
    let previous = match &ending {
        Ending::Read(_) => db::inventory::hashes(&mut conn, run.fabric_id).await?,
        _ => Vec::new(),
    };
    let to_json = |v: serde_json::Result<serde_json::Value>| v.map_err(|e| PullError::Internal(e.to_string()));
    let (outcome, payload, store) = match &ending {
        Ending::Read(read) => {
            let changes = inventory::diff(&previous, &read.objects);
            let counted = inventory::counts(&changes);
            let count = |action: ChangeAction| counted.iter().find(|(a, _)| *a == action).map_or(0, |(_, n)| *n as i64);
            let counters = Counters {
                documents: read.objects.len() as i64,
                created: count(ChangeAction::Create),
                updated: count(ChangeAction::Update),
                deleted: count(ChangeAction::Delete),
                unchanged: count(ChangeAction::Unchanged),
                warnings: read.warnings.len() as i64,
                ..Default::default()
            };
            let stored: Vec<StoredChange> = changes
                .iter()
                .filter(|(_, a)| *a != ChangeAction::Unchanged)
                .take(MAX_STORED_CHANGES)
                .map(|(key, action)| stored_change(key, *action))
                .collect();
            let mut per_kind: BTreeMap<(String, String), i64> = BTreeMap::new();
            for o in &read.objects {
                let (group, _) = o.kind.group_version();
                *per_kind.entry((group.to_string(), o.kind.kind().to_string())).or_default() += 1;
            }
            let kind_counts: Vec<(String, String, i64)> = per_kind.into_iter().map(|((g, k), n)| (g, k, n)).collect();
            let diagnostics: Vec<&StoredDiagnostic> = read.warnings.iter().take(MAX_STORED_DIAGNOSTICS).collect();
            let outcome = RunOutcome {
                counters: to_json(serde_json::to_value(&counters))?,
                kind_counts: to_json(serde_json::to_value(&kind_counts))?,
                diagnostics: to_json(serde_json::to_value(&diagnostics))?,
                changes: to_json(serde_json::to_value(&stored))?,
                ..ended(RunStatus::Succeeded, None)
            };
            let finished =
                Payload::Finished(FinishedProgress { counters: Some((&counters).into()), commit: String::new() });
            let store = (!run.dry_run).then_some((changes, read));
            (outcome, finished, store)
        }
        Ending::Failed(code, message) => {
            let diagnostic = run_diagnostic(code, message.clone());
            let outcome = RunOutcome {
                diagnostics: to_json(serde_json::to_value([&diagnostic]))?,
                ..ended(RunStatus::Failed, Some(message.clone()))
            };
            let failed =
                Payload::Failed(FailedProgress { diagnostics: vec![(&diagnostic).into()], message: message.clone() });
            (outcome, failed, None)
        }
        Ending::Cancelled => (ended(RunStatus::Cancelled, None), Payload::Cancelled(CancelledProgress {}), None),
    };
    let status = outcome.status;
    let result = conn
        .transaction::<_, DbError, _>(async |conn| {
            let Some(cancel) = runs::lock_if_held(conn, run.id, worker).await? else { return Ok(Held::Lost) };
            if cancel && store.is_some() {
                return Ok(Held::Cancelled);
            }
            if let Some((changes, read)) = &store {
                let written: std::collections::BTreeSet<&inventory::InventoryKey> = changes
                    .iter()
                    .filter(|(_, a)| matches!(a, ChangeAction::Create | ChangeAction::Update))
                    .map(|(k, _)| k)
                    .collect();
                let present = db::inventory::cluster_names_locked(conn, run.fabric_id).await?;
                let kept = |o: &InventoryObject| o.cluster == OWN_CLUSTER || present.contains(&o.cluster);
                let upserts: Vec<&InventoryObject> =
                    read.objects.iter().filter(|o| kept(o) && written.contains(&o.key())).collect();
                let deletes: Vec<inventory::InventoryKey> =
                    changes.iter().filter(|(_, a)| *a == ChangeAction::Delete).map(|(k, _)| k.clone()).collect();
                db::inventory::store(conn, run.fabric_id, &upserts, &deletes, now).await?;
            }
            runs::finish(conn, run.id, &outcome).await?;
            events::append(conn, run.fabric_id, Some(run.id), PROGRESS, &encode_progress(run.id, payload.clone()))
                .await?;
            Ok(Held::Done)
        })
        .await?;
    match result {
        Held::Done => {
            info!(status = %status, "inventory import ended");
            super::run_ended(state, run, status);
            Ok(())
        }
        Held::Lost => Err(PullError::Lost),
        Held::Cancelled => Box::pin(conclude(state, worker, run, Ending::Cancelled)).await,
    }
}

enum Held {
    Done,
    Lost,
    Cancelled,
}

/// A run's end with nothing counted, listed or changed yet.
fn ended(status: RunStatus, error: Option<String>) -> RunOutcome {
    RunOutcome {
        status,
        commit_sha: None,
        counters: serde_json::json!({}),
        kind_counts: serde_json::json!([]),
        diagnostics: serde_json::json!([]),
        changes: serde_json::json!([]),
        error,
        lease_expires_at: None,
    }
}
