//! Keeps stored drift current: recomputes resources (all of a fabric, or the keys a watch batch
//! touched), writes what changed, appends a drift event per status change, and updates the
//! fabric's aggregate status.

use fabricsync_core::diff::ignored;
use fabricsync_core::drift::{resource_drift, Context, FieldDrift, StoredDrift};
use fabricsync_core::manifest::kinds::KindRegistry;
use fabricsync_core::vocab::{DriftStatus, Stream, WatchStatus};
use fabricsync_core::ResourceKey;
use prost::Message;
use serde_json::Value;
use uuid::Uuid;

use crate::cluster::FABRIC_LABEL;
use crate::db::fabrics::FabricRow;
use crate::db::resources::{self, DriftInput, DriftRecord};
use crate::db::{self, fabrics, DbConn, DbError};
use crate::proto::DriftEvent;

/// The event log stream of drift changes.
pub const STREAM: Stream = Stream::Drift;

/// A resource whose drift status changed.
#[derive(Debug, Clone)]
pub struct DriftChange {
    pub id: Uuid,
    pub key: ResourceKey,
    pub previous: DriftStatus,
    pub status: DriftStatus,
    /// The live owners of the drifted fields, latest first (for self-heal's contested mark).
    pub managers: Vec<String>,
    /// The drifted fields' JSON pointers; "" (the whole object) when it is missing.
    pub fields: Vec<String>,
}

/// Leaf fields of a desired object's spec, for the score.
fn leaves(v: &Value) -> usize {
    match v {
        Value::Object(m) => m.values().map(leaves).sum::<usize>().max(1),
        Value::Array(a) => a.iter().map(leaves).sum::<usize>().max(1),
        _ => 1,
    }
}

/// Pure: the drift of one stored resource as it will be stored. A contested resource stays
/// contested until it is back in sync.
pub fn compute(
    registry: &KindRegistry,
    fabric: &FabricRow,
    row: &DriftInput,
    watching: bool,
) -> (DriftRecord, Vec<FieldDrift>) {
    let schema = registry.schema_of(&row.key(), &row.api_version);
    let ignore = ignored(&fabric.ignore_differences.0, &row.identity.api_group, &row.identity.kind);
    let ctx = Context { schema, ignore: &ignore, own_labels: &[FABRIC_LABEL] };
    let label = format!("/metadata/labels/{}", FABRIC_LABEL.replace('/', "~1"));
    let labelled =
        row.live.as_ref().and_then(|l| l.pointer(&label)).and_then(Value::as_str) == Some(fabric.name.as_str());
    // An object outside what the watch follows has no live view: unknown, never missing.
    let watching = watching && fabric.watches(&row.key());
    let (status, fields) =
        resource_drift(row.desired.as_ref(), row.live.as_ref(), labelled, watching, &row.field_managers.0, &ctx);
    let score = match status {
        DriftStatus::InSync | DriftStatus::Unknown => 0.0,
        DriftStatus::Missing | DriftStatus::Orphaned | DriftStatus::Contested => 1.0,
        DriftStatus::Drifted => {
            let total = row.desired.as_ref().and_then(|d| d.get("spec")).map_or(1, leaves);
            (fields.len() as f64 / total as f64).min(1.0)
        }
    };
    let contested = row.drift_status == DriftStatus::Contested && status.counts_as_drift();
    let drift = StoredDrift {
        score,
        fields: fields.clone(),
        contested_by: if contested { row.drift.0.contested_by.clone() } else { None },
    };
    (DriftRecord { id: row.id, status: if contested { DriftStatus::Contested } else { status }, drift }, fields)
}

/// Resources per page of a full recompute.
const PAGE: i64 = 1000;

/// Recomputes the drift of `keys` (None: every resource, page by page) and the fabric's
/// aggregate; returns the resources whose status changed.
pub async fn refresh(
    conn: &mut DbConn,
    registry: &KindRegistry,
    fabric_id: Uuid,
    keys: Option<&[ResourceKey]>,
) -> Result<Vec<DriftChange>, DbError> {
    let Some(fabric) = fabrics::get(conn, fabric_id).await? else { return Ok(Vec::new()) };
    let watching = fabric.watch_status == WatchStatus::Active;
    let Some(keys) = keys else {
        let mut changes = Vec::new();
        let mut after = None;
        loop {
            let rows = resources::drift_inputs_page(conn, fabric_id, after, PAGE).await?;
            let Some(last) = rows.last() else { break };
            after = Some(last.id);
            let page = assess(registry, &fabric, &rows, watching);
            write(conn, fabric_id, &page, None).await?;
            changes.extend(page.changes);
        }
        write(conn, fabric_id, &Assessed::default(), Some(watching)).await?;
        return Ok(changes);
    };
    let rows = resources::drift_inputs(conn, fabric_id, keys).await?;
    let assessed = assess(registry, &fabric, &rows, watching);
    // The aggregate moves only with a status; a watch event that changed none skips the count.
    let aggregate = (!assessed.changes.is_empty()).then_some(watching);
    write(conn, fabric_id, &assessed, aggregate).await?;
    Ok(assessed.changes)
}

/// What a recomputation changed: drift to store, an event per status change, the changes.
#[derive(Default)]
struct Assessed {
    records: Vec<DriftRecord>,
    payloads: Vec<Vec<u8>>,
    changes: Vec<DriftChange>,
}

/// Pure: computes `rows` and keeps what differs from the stored drift.
fn assess(registry: &KindRegistry, fabric: &FabricRow, rows: &[DriftInput], watching: bool) -> Assessed {
    let mut out = Assessed::default();
    for row in rows {
        let (record, fields) = compute(registry, fabric, row, watching);
        if record.status == row.drift_status && record.drift == row.drift.0 {
            continue;
        }
        if record.status != row.drift_status {
            let key = row.key();
            out.payloads.push(event_payload(row, &record));
            let managers = fields.iter().flat_map(|f| f.managers.iter().map(|m| m.0.clone())).collect();
            let mut pointers: Vec<String> = fields.iter().map(|f| f.pointer.clone()).collect();
            if pointers.is_empty() {
                pointers.push(String::new());
            }
            let previous = row.drift_status;
            out.changes.push(DriftChange {
                id: row.id,
                key,
                previous,
                status: record.status,
                managers,
                fields: pointers,
            });
        }
        out.records.push(record);
    }
    out
}

/// Stores assessed drift, its events and (when given whether the fabric is watched) the
/// aggregate.
async fn write(
    conn: &mut DbConn,
    fabric_id: Uuid,
    assessed: &Assessed,
    aggregate: Option<bool>,
) -> Result<(), DbError> {
    if assessed.records.is_empty() && aggregate.is_none() {
        return Ok(());
    }
    resources::store_drift(conn, fabric_id, &assessed.records, STREAM, &assessed.payloads, aggregate).await
}

fn event_payload(row: &DriftInput, record: &DriftRecord) -> Vec<u8> {
    let key = crate::convert::resource_key(&row.key(), &row.api_version);
    DriftEvent {
        sequence: 0,
        fabric_id: String::new(),
        time: None,
        previous_status: crate::convert::drift_status(row.drift_status) as i32,
        drift: Some(crate::convert::resource_drift(row.id, key, record.status, &record.drift, None)),
    }
    .encode_to_vec()
}

/// `refresh` on a pooled connection, for callers outside a transaction.
pub async fn refresh_pooled(
    pool: &db::DbPool,
    registry: &KindRegistry,
    fabric_id: Uuid,
    keys: Option<&[ResourceKey]>,
) -> Result<Vec<DriftChange>, DbError> {
    let mut conn = db::connect(pool).await?;
    refresh(&mut conn, registry, fabric_id, keys).await
}

/// Marks a resource contested by `manager`: self-heal stops fighting over it until it is back
/// in sync.
pub async fn mark_contested(
    pool: &db::DbPool,
    registry: &KindRegistry,
    fabric_id: Uuid,
    key: &ResourceKey,
    manager: &str,
) -> Result<(), DbError> {
    let mut conn = db::connect(pool).await?;
    let Some(fabric) = fabrics::get(&mut conn, fabric_id).await? else { return Ok(()) };
    let rows = resources::drift_inputs(&mut conn, fabric_id, std::slice::from_ref(key)).await?;
    let Some(row) = rows.first() else { return Ok(()) };
    let (mut record, _) = compute(registry, &fabric, row, true);
    record.status = DriftStatus::Contested;
    record.drift.contested_by = Some(manager.to_string());
    let payloads = vec![event_payload(row, &record)];
    // Contested counts as drift, as drifted and missing did: the aggregate stays.
    write(&mut conn, fabric_id, &Assessed { records: vec![record], payloads, changes: Vec::new() }, None).await
}
