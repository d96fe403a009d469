//! Cluster watches: per fabric with a cluster, exactly one server process (the holder of a
//! PostgreSQL advisory lock) watches every installed Hedgehog kind, stores what it sees against
//! the fabric's resources (orphans included) and appends ADDED / MODIFIED / DELETED events to the
//! event log, from which every process serves WatchFabricEvents. Watches spread over the
//! processes sharing the database (core `spread`: each takes its share of the free ones, and
//! lets go of what is beyond it, so a process that joins gets some).

use std::collections::HashMap;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::{stream, StreamExt};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use prost::Message;
use serde_json::Value;
use tokio::task::JoinHandle;
use tracing::{info, info_span, warn, Instrument};
use uuid::Uuid;

use crate::cluster::FIELD_MANAGER;
use crate::cluster::{self, check};
use crate::context::AppState;
use crate::db::fabrics::FabricRow;
use crate::db::resources::{self, LiveRecord};
use crate::db::{self, events, fabrics, runs, DbError};
use crate::drift::{mark_contested, refresh_pooled, DriftChange};
use crate::proto::{FabricEvent, FabricEventType};
use crate::sync::{health, queue};
use fabricsync_core::drift::{heal, FieldManager};
use fabricsync_core::live::{Change, Event, KindId, LiveIndex};
use fabricsync_core::manifest::kinds::KindDef;
use fabricsync_core::spread::spread;
use fabricsync_core::vocab::{DriftStatus, Stream, SyncMode, Trigger, WatchScope, WatchStatus};
use fabricsync_core::ResourceKey;

/// The event log stream of cluster events.
pub const STREAM: Stream = Stream::Watch;
/// How often each process looks for fabrics to watch (and takes over those whose watcher died).
const SCAN: Duration = Duration::from_secs(3);
/// Events written per transaction.
const BATCH: usize = 500;
/// First of the two advisory-lock keys: "fabricsync watch".
const LOCK_CLASS: i32 = 0x6677_6174;

/// Starts the supervisor; it ends with the server.
pub fn spawn(state: AppState, database_url: String) -> JoinHandle<()> {
    tokio::spawn(async move { supervise(state, database_url).await })
}

async fn supervise(state: AppState, database_url: String) {
    let mut running: HashMap<Uuid, (i64, JoinHandle<()>)> = HashMap::new();
    let mut shutdown = state.shutdown.clone();
    loop {
        let wanted = async {
            let mut conn = db::connect(&state.pool).await?;
            let processes = runs::live_processes(&mut conn).await?;
            Ok::<_, DbError>((fabrics::to_watch(&mut conn, LOCK_CLASS).await?, processes))
        };
        match wanted.await {
            Ok((listed, processes)) => {
                let wanted: HashMap<Uuid, i64> = listed.iter().map(|f| (f.id, f.version)).collect();
                // A changed fabric (new URL, token, kinds) restarts its watch; a deleted one, or
                // one whose watch was disabled, stops it.
                let mut stopped = Vec::new();
                // Restarted here: their locks were ours when the fabrics were listed.
                let mut restarting = std::collections::HashSet::new();
                running.retain(|id, (version, task)| {
                    let keep = wanted.get(id) == Some(version) && !task.is_finished();
                    if !keep {
                        task.abort();
                        if wanted.contains_key(id) {
                            restarting.insert(*id);
                        } else {
                            stopped.push(*id);
                        }
                    }
                    keep
                });
                for id in &restarting {
                    // Until it runs again, what the old watch saw is not current.
                    set_status(&state, *id, WatchStatus::Starting, None).await;
                }
                for id in stopped {
                    set_status(&state, id, WatchStatus::Inactive, None).await;
                }
                let plan = spread(wanted.len(), processes, running.len());
                if plan.release > 0 {
                    // Another process takes them on its next scan.
                    let mut held: Vec<Uuid> = running.keys().copied().collect();
                    held.sort();
                    for id in held.into_iter().rev().take(plan.release) {
                        if let Some((_, task)) = running.remove(&id) {
                            task.abort();
                            let released = async {
                                let mut conn = db::connect(&state.pool).await?;
                                fabrics::watch_released(&mut conn, id, &state.process).await
                            };
                            if let Err(e) = released.await {
                                warn!(error = %e, "could not record a released watch");
                            }
                        }
                    }
                    info!(released = plan.release, processes, "letting other processes take watches");
                }
                let free: Vec<&fabrics::ToWatch> = listed
                    .iter()
                    .filter(|f| (!f.held || restarting.contains(&f.id)) && !running.contains_key(&f.id))
                    .collect();
                let mut taken = 0;
                for fabric in free {
                    if taken >= plan.take {
                        break;
                    }
                    match try_lock(&database_url, fabric.id).await {
                        Ok(Some(lock)) => {
                            let span = info_span!("watch", fabric_id = %fabric.id);
                            let task = tokio::spawn(watch_fabric(state.clone(), fabric.id, lock).instrument(span));
                            running.insert(fabric.id, (fabric.version, task));
                            taken += 1;
                        }
                        Ok(None) => {} // another process took it first
                        Err(e) => warn!(error = %e, "advisory lock for a watch failed"),
                    }
                }
            }
            Err(e) => warn!(error = %e, "could not list fabrics to watch"),
        }
        tokio::select! {
            _ = tokio::time::sleep(SCAN) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    for (_, (_, task)) in running {
        task.abort();
    }
}

/// A connection of its own holding the fabric's watch lock; the lock goes with the connection
/// (or the process).
async fn try_lock(database_url: &str, fabric_id: Uuid) -> Result<Option<AsyncPgConnection>, DbError> {
    db::try_advisory_lock(database_url, LOCK_CLASS, &fabric_id.to_string()).await
}

/// Whether a live process watches the fabric with a complete view (the lock's holder is still
/// connected and the watch is active): then the stored live objects are current.
pub async fn watched(conn: &mut AsyncPgConnection, fabric_id: Uuid) -> Result<bool, DbError> {
    #[derive(diesel::QueryableByName)]
    struct Watched {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        watched: bool,
    }
    let held = db::advisory_lock_held("$1", "$2");
    let row: Watched = diesel::sql_query(format!(
        "SELECT {held} AND EXISTS (SELECT 1 FROM fabrics WHERE id = $3 AND watch_status = 'active') AS watched"
    ))
    .bind::<diesel::sql_types::Int4, _>(LOCK_CLASS)
    .bind::<diesel::sql_types::Text, _>(fabric_id.to_string())
    .bind::<diesel::sql_types::Uuid, _>(fabric_id)
    .get_result(conn)
    .await?;
    Ok(row.watched)
}

async fn set_status(state: &AppState, fabric_id: Uuid, status: WatchStatus, error: Option<String>) {
    let set = async {
        let mut conn = db::connect(&state.pool).await?;
        fabrics::set_watch_status(&mut conn, fabric_id, status, error.as_deref(), &state.process).await
    };
    if let Err(e) = set.await {
        warn!(error = %e, "could not record the watch status");
    }
}

/// Watches one fabric until aborted; reconnects with backoff after failures.
async fn watch_fabric(state: AppState, fabric_id: Uuid, _lock: AsyncPgConnection) {
    let mut delay = Duration::from_secs(1);
    loop {
        set_status(&state, fabric_id, WatchStatus::Starting, None).await;
        let error = match follow(&state, fabric_id).await {
            Ok(()) => return,
            Err(e) => e,
        };
        warn!(error = %error, "watch failed; retrying");
        set_status(&state, fabric_id, WatchStatus::Error, Some(error)).await;
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(60));
    }
}

/// A watcher's delays between attempts after a failure: 0.5 s doubling to 5 s with jitter, from
/// the start again after any success. kube's default waits up to 30 s and starts over only after
/// two minutes without a failure: a watch then stayed away half a minute after an API server
/// restart.
fn retry() -> watcher::ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .into()
}

/// One watcher event of a kind, as it arrives.
enum Seen {
    ListStarted(&'static KindDef),
    Applied(&'static KindDef, DynamicObject),
    Deleted(&'static KindDef, DynamicObject),
    ListDone(&'static KindDef),
    Error(String),
}

fn kind_id(def: &KindDef) -> KindId {
    (def.group.clone(), def.kind.clone())
}

/// The API and watcher settings of one kind, as the fabric's watch scope keeps its objects.
fn scoped(
    client: &kube::Client,
    fabric: &FabricRow,
    def: &KindDef,
    resource: &ApiResource,
) -> (Api<DynamicObject>, watcher::Config) {
    let all = || Api::all_with(client.clone(), resource);
    match fabric.watch_scope {
        WatchScope::Cluster => (all(), watcher::Config::default()),
        WatchScope::Namespace if def.namespaced => {
            (Api::namespaced_with(client.clone(), &fabric.cluster_namespace, resource), watcher::Config::default())
        }
        WatchScope::Namespace => (all(), watcher::Config::default()),
        WatchScope::Labelled => {
            (all(), watcher::Config::default().labels(&format!("{}={}", cluster::FABRIC_LABEL, fabric.name)))
        }
    }
}

async fn follow(state: &AppState, fabric_id: Uuid) -> Result<(), String> {
    let fabric = {
        let mut conn = db::connect(&state.pool).await.map_err(|e| e.to_string())?;
        fabrics::get(&mut conn, fabric_id).await.map_err(|e| e.to_string())?.ok_or("the fabric is gone")?
    };
    let cluster::Connection { client, redactor } =
        cluster::connect(&fabric, &state.keyring, &state.settings.outbound).await.map_err(|e| e.to_string())?;
    let registry = state.settings.kinds;
    let installed = check::installed_crds(&client, registry).await.map_err(|e| redactor.clean(&e.to_string()))?;
    let chosen = |k: &KindDef| fabric.watch_kinds.is_empty() || fabric.watch_kinds.contains(&k.kind);
    let kinds: Vec<&'static KindDef> = registry
        .kinds()
        .filter(|k| chosen(k))
        .filter(|k| installed.iter().any(|c| c.group == k.group && c.kind == k.kind && c.versions.contains(&k.version)))
        .collect();
    if kinds.is_empty() {
        return Err(if fabric.watch_kinds.is_empty() {
            "no Hedgehog CRDs are installed in the cluster".into()
        } else {
            format!("none of the kinds to watch ({}) is installed in the cluster", fabric.watch_kinds.join(", "))
        });
    }
    let streams = kinds.iter().map(|&def| {
        let resource =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(&def.group, &def.version, &def.kind), &def.plural);
        let (api, config) = scoped(&client, &fabric, def, &resource);
        watcher(api, config)
            .backoff(retry())
            .map(move |event| match event {
                Ok(watcher::Event::Init) => Seen::ListStarted(def),
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => Seen::Applied(def, o),
                Ok(watcher::Event::Delete(o)) => Seen::Deleted(def, o),
                Ok(watcher::Event::InitDone) => Seen::ListDone(def),
                Err(e) => Seen::Error(e.to_string()),
            })
            .boxed()
    });
    let mut merged = stream::select_all(streams).ready_chunks(BATCH);

    let mut index = {
        let mut conn = db::connect(&state.pool).await.map_err(|e| e.to_string())?;
        let stored = resources::live_versions(&mut conn, fabric_id).await.map_err(|e| e.to_string())?;
        LiveIndex::new(kinds.iter().map(|k| kind_id(k)), stored)
    };
    let mut status = WatchStatus::Starting;
    let mut agents = health::AgentWatch::new(client.clone(), &fabric.cluster_namespace);
    let mut teller = health::Teller::default();
    let mut tick = tokio::time::interval(health::TICK);
    info!(kinds = kinds.len(), "watching");
    loop {
        let batch = tokio::select! {
            batch = merged.next() => match batch {
                Some(batch) => batch,
                None => break,
            },
            () = agents.changed() => {
                teller.dirty = true;
                continue;
            }
            _ = tick.tick() => {
                // Health needs the complete live view.
                if status == WatchStatus::Active {
                    agents.start_when_installed().await;
                    if teller.due() {
                        teller.tell(state, fabric_id, &agents.agents()).await.map_err(|e| e.to_string())?;
                    }
                }
                continue;
            }
        };
        let mut changes = Changes::default();
        let mut error = None;
        for seen in batch {
            match seen {
                Seen::ListStarted(def) => changes.extend(index.apply(Event::ListStarted(kind_id(def))), def, None),
                Seen::Applied(def, object) => {
                    let record = live_record(def, &object, false);
                    let event = Event::Applied(record.key(), record.resource_version.clone().unwrap_or_default());
                    changes.extend(index.apply(event), def, Some(record));
                }
                Seen::Deleted(def, object) => {
                    let record = live_record(def, &object, true);
                    changes.extend(index.apply(Event::Deleted(record.key())), def, Some(record));
                }
                Seen::ListDone(def) => changes.extend(index.apply(Event::ListDone(kind_id(def))), def, None),
                // The cluster's answer may echo the request's token.
                Seen::Error(e) => error = Some(redactor.clean(&e)),
            }
        }
        let touched: Vec<ResourceKey> = changes.records.iter().map(LiveRecord::key).collect();
        state.metrics.watch_events(&fabric.name, changes.events.len() as u64);
        teller.dirty |= !touched.is_empty();
        changes.write(state, fabric_id).await.map_err(|e| e.to_string())?;
        if !touched.is_empty() && status == WatchStatus::Active {
            let drifted =
                refresh_pooled(&state.pool, registry, fabric_id, Some(&touched)).await.map_err(|e| e.to_string())?;
            if fabric.self_heal && !fabric.paused {
                self_heal(state, fabric_id, &drifted).await.map_err(|e| e.to_string())?;
            }
        }
        let now = if error.is_some() { WatchStatus::Error } else { index.status() };
        if now != status || error.is_some() {
            status = now;
            set_status(state, fabric_id, now, error).await;
            if now == WatchStatus::Active {
                info!("watch active");
                // Everything is listed: the live view is complete, drift can be told.
                refresh_pooled(&state.pool, registry, fabric_id, None).await.map_err(|e| e.to_string())?;
            }
        }
    }
    Err("the watch streams ended".into())
}

/// Self-heal: reverts drift by queueing an APPLY run; a field reverted too often in the window
/// makes the resource contested instead (another controller keeps changing it).
async fn self_heal(state: &AppState, fabric_id: Uuid, changes: &[DriftChange]) -> Result<(), DbError> {
    let max = state.settings.self_heal_max_reverts;
    let window = i64::try_from(state.settings.self_heal_window.as_millis()).unwrap_or(i64::MAX);
    let now = chrono::Utc::now().timestamp_millis();
    let mut revert = false;
    let mut conn = db::connect(&state.pool).await?;
    for change in changes.iter().filter(|c| matches!(c.status, DriftStatus::Drifted | DriftStatus::Missing)) {
        let stored = resources::self_heal_reverts(&mut conn, change.id).await?;
        match heal::verdict(stored.as_ref(), &change.fields, now, max, window) {
            heal::Verdict::Revert(reverts) => {
                resources::set_self_heal_reverts(&mut conn, change.id, Some(&reverts)).await?;
                revert = true;
            }
            heal::Verdict::Contested { field } => {
                let other = change
                    .managers
                    .iter()
                    .find(|m| m.as_str() != FIELD_MANAGER)
                    .cloned()
                    .unwrap_or_else(|| "another writer".into());
                warn!(resource = ?change.key, field = %field, manager = %other, "self-heal gave up: contested");
                mark_contested(&state.pool, state.settings.kinds, fabric_id, &change.key, &other).await?;
                resources::set_self_heal_reverts(&mut conn, change.id, None).await?;
            }
        }
    }
    if revert {
        let request = queue::Request {
            fabric_id,
            mode: SyncMode::Apply,
            trigger: Trigger::SelfHeal,
            dry_run: false,
            force: true,
            requested_ref: String::new(),
            targets: None,
            requested_by: "self-heal".into(),
            rollout_wait_seconds: 0,
        };
        queue::enqueue(&mut conn, &request).await?;
        info!("self-heal: apply queued");
    }
    Ok(())
}

/// Live records and their events, written together: every event, and the last record of each
/// object (an object created and changed within one batch is one row of one upsert).
#[derive(Default)]
struct Changes {
    records: Vec<LiveRecord>,
    positions: HashMap<ResourceKey, usize>,
    events: Vec<Vec<u8>>,
}

impl Changes {
    fn push(&mut self, kind: FabricEventType, record: LiveRecord) {
        self.events.push(event_payload(kind, &record));
        match self.positions.get(&record.key()) {
            Some(&at) => self.records[at] = record,
            None => {
                self.positions.insert(record.key(), self.records.len());
                self.records.push(record);
            }
        }
    }

    /// Records the index's changes: `record` is the object the event carried (for a relist's
    /// deletions there is none: only the key is known).
    fn extend(&mut self, changes: Vec<Change>, def: &KindDef, record: Option<LiveRecord>) {
        let mut record = record;
        for change in changes {
            let (kind, key) = match change {
                Change::Added(key) => (FabricEventType::Added, key),
                Change::Modified(key) => (FabricEventType::Modified, key),
                Change::Deleted(key) => (FabricEventType::Deleted, key),
            };
            let live = record.take().unwrap_or_else(|| deleted_record(def, &key));
            self.push(kind, live);
        }
    }

    async fn write(self, state: &AppState, fabric_id: Uuid) -> Result<(), DbError> {
        if self.records.is_empty() {
            return Ok(());
        }
        let mut conn = db::connect(&state.pool).await?;
        let now = db::now();
        conn.transaction::<_, DbError, _>(async |conn| {
            resources::record_live(conn, fabric_id, &self.records, now).await?;
            events::append_many(conn, fabric_id, STREAM, &self.events).await?;
            Ok(())
        })
        .await?;
        // Counted once the events are stored, outside their transaction: the fabric's row is
        // written by runs, drift stores and UpdateFabric too, and must not hold the events back.
        fabrics::record_watch_events(&mut conn, fabric_id, self.events.len() as i64, now).await
    }
}

/// The stored form of a live object: without managedFields (kept apart, summarized).
pub fn live_record(def: &KindDef, object: &DynamicObject, deleted: bool) -> LiveRecord {
    let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
    let managed = value.pointer_mut("/metadata").and_then(Value::as_object_mut).and_then(|m| m.remove("managedFields"));
    LiveRecord {
        api_group: def.group.clone(),
        api_version: def.version.clone(),
        kind: def.kind.clone(),
        namespace: object.metadata.namespace.clone().unwrap_or_default(),
        name: object.metadata.name.clone().unwrap_or_default(),
        object: (!deleted).then_some(value),
        resource_version: object.metadata.resource_version.clone(),
        uid: object.metadata.uid.clone(),
        field_managers: if deleted { None } else { managed.map(|m| field_managers(&m)) },
    }
}

fn deleted_record(def: &KindDef, key: &ResourceKey) -> LiveRecord {
    LiveRecord {
        api_group: def.group.clone(),
        api_version: def.version.clone(),
        kind: def.kind.clone(),
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        object: None,
        resource_version: None,
        uid: None,
        field_managers: None,
    }
}

/// managedFields summarized: manager, operation, time and the JSON pointers of its fields.
pub fn field_managers(managed: &Value) -> Vec<FieldManager> {
    let text = |e: &Value, k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let entries = managed.as_array().map(Vec::as_slice).unwrap_or_default();
    entries
        .iter()
        .map(|e| {
            let mut fields = Vec::new();
            if let Some(v1) = e.get("fieldsV1") {
                collect_fields(v1, String::new(), &mut fields);
            }
            FieldManager { manager: text(e, "manager"), operation: text(e, "operation"), time: text(e, "time"), fields }
        })
        .collect()
}

/// Leaf paths of a fieldsV1 tree ("f:spec" -> {"f:vlan": {}}) as JSON pointers ("/spec/vlan").
fn collect_fields(node: &Value, prefix: String, out: &mut Vec<String>) {
    let Some(map) = node.as_object() else { return };
    let children: Vec<(&String, &Value)> = map.iter().filter(|(k, _)| k.starts_with("f:")).collect();
    if children.is_empty() && !prefix.is_empty() {
        out.push(prefix);
        return;
    }
    for (k, v) in children {
        let name = k.trim_start_matches("f:").replace('~', "~0").replace('/', "~1");
        collect_fields(v, format!("{prefix}/{name}"), out);
    }
}

/// The most recent writer among the field managers.
fn latest_manager(managers: &[FieldManager]) -> String {
    managers.iter().max_by(|a, b| a.time.cmp(&b.time)).map(|m| m.manager.clone()).unwrap_or_default()
}

/// A stored cluster event (sequence and time come from the log row).
pub fn event_payload(kind: FabricEventType, r: &LiveRecord) -> Vec<u8> {
    FabricEvent {
        sequence: 0,
        fabric_id: String::new(),
        time: None,
        r#type: kind as i32,
        key: Some(crate::convert::resource_key(&r.key(), &r.api_version)),
        object: r.object.as_ref().and_then(crate::convert::json_struct),
        resource_version: r.resource_version.clone().unwrap_or_default(),
        field_manager: r.field_managers.as_deref().map(latest_manager).unwrap_or_default(),
        ..Default::default()
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn managed_fields_become_pointers_and_the_latest_writer_wins() {
        let managed = json!([
            {"manager": "fabricsync", "operation": "Apply", "time": "2026-11-25T10:00:00Z",
             "fieldsV1": {"f:metadata": {"f:labels": {"f:fabricsync.dev/fabric": {}}}, "f:spec": {"f:vlan": {}, "f:subnets": {"f:a/b": {}}}}},
            {"manager": "kubectl-patch", "operation": "Update", "time": "2026-11-25T11:00:00Z",
             "fieldsV1": {"f:spec": {"f:ipv4Namespace": {}}}}
        ]);
        let summary = field_managers(&managed);
        assert_eq!(summary[0].fields, ["/metadata/labels/fabricsync.dev~1fabric", "/spec/subnets/a~1b", "/spec/vlan"]);
        assert_eq!(summary[1].fields, ["/spec/ipv4Namespace"]);
        assert_eq!((summary[1].manager.as_str(), summary[1].operation.as_str()), ("kubectl-patch", "Update"));
        assert_eq!(latest_manager(&summary), "kubectl-patch");
        assert_eq!(latest_manager(&[]), "");
    }

    fn vpc(name: &str, resource_version: &str, vlan: u64) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "vpc.githedgehog.com/v1beta1", "kind": "VPC",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": resource_version},
            "spec": {"vlan": vlan}
        }))
        .expect("a VPC")
    }

    #[test]
    fn an_object_seen_twice_in_a_batch_is_one_record_with_both_events() {
        let registry = fabricsync_core::manifest::kinds::KindRegistry::hedgehog();
        let def = registry.kinds().find(|k| k.kind == "VPC").expect("the VPC kind");
        let mut changes = Changes::default();
        changes.push(FabricEventType::Added, live_record(def, &vpc("a", "1", 1), false));
        changes.push(FabricEventType::Added, live_record(def, &vpc("b", "2", 1), false));
        changes.push(FabricEventType::Modified, live_record(def, &vpc("a", "3", 2), false));
        changes.push(FabricEventType::Deleted, live_record(def, &vpc("b", "4", 1), true));
        assert_eq!(changes.events.len(), 4);
        let rows: Vec<(String, Option<String>, bool)> =
            changes.records.iter().map(|r| (r.name.clone(), r.resource_version.clone(), r.object.is_some())).collect();
        assert_eq!(rows, [("a".into(), Some("3".into()), true), ("b".into(), Some("4".into()), false)]);
    }
}
