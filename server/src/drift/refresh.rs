//! Keeps stored drift current: recomputes resources (all of a fabric, or the keys a watch batch
//! touched), writes what changed, and the fabric's aggregate status.

use serde_json::{json, Value};
use uuid::Uuid;

use super::{resource_drift, Context, FieldDrift, Status};
use crate::cluster::FABRIC_LABEL;
use crate::db::fabrics::FabricRow;
use crate::db::resources::{self, DriftInput, DriftRecord};
use crate::db::{self, fabrics, DbConn, DbError};
use crate::manifest::kinds::KindRegistry;
use crate::sync::plan::Key;

/// The fabric's ignore-differences pointers for one kind.
fn ignored(fabric: &FabricRow, group: &str, kind: &str) -> Vec<String> {
    fabric
        .ignore_differences
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|r| r.get("kind").and_then(Value::as_str) == Some(kind))
        .filter(|r| r.get("group").and_then(Value::as_str).is_none_or(|g| g.is_empty() || g == group))
        .flat_map(|r| r.get("json_pointers").and_then(Value::as_array).cloned().unwrap_or_default())
        .filter_map(|p| p.as_str().map(String::from))
        .collect()
}

/// Leaf fields of a desired object's spec, for the score.
fn leaves(v: &Value) -> usize {
    match v {
        Value::Object(m) => m.values().map(leaves).sum::<usize>().max(1),
        Value::Array(a) => a.iter().map(leaves).sum::<usize>().max(1),
        _ => 1,
    }
}

/// Pure: the drift of one stored resource as it will be stored.
pub fn compute(fabric: &FabricRow, row: &DriftInput, watching: bool) -> DriftRecord {
    let registry = KindRegistry::hedgehog();
    let api_version = if row.api_group.is_empty() { row.api_version.clone() } else { format!("{}/{}", row.api_group, row.api_version) };
    let schema = registry.lookup(&api_version, &row.kind).map(|k| k.schema.clone()).unwrap_or(Value::Null);
    let ignore = ignored(fabric, &row.api_group, &row.kind);
    let ctx = Context { schema: &schema, ignore: &ignore, own_labels: &[FABRIC_LABEL] };
    let labelled = row.live.as_ref().and_then(|l| l.pointer(&format!("/metadata/labels/{}", FABRIC_LABEL.replace('/', "~1")))).and_then(Value::as_str)
        == Some(fabric.name.as_str());
    let (status, fields) = resource_drift(row.desired.as_ref(), row.live.as_ref(), labelled, watching, row.field_managers.as_ref(), &ctx);
    let score = match status {
        Status::InSync | Status::Unknown => 0.0,
        Status::Missing | Status::Orphaned => 1.0,
        Status::Drifted => {
            let total = row.desired.as_ref().and_then(|d| d.get("spec")).map_or(1, leaves);
            (fields.len() as f64 / total as f64).min(1.0)
        }
    };
    DriftRecord { id: row.id, status: status.word(), drift: json!({ "score": score, "fields": fields.iter().map(field_json).collect::<Vec<_>>() }) }
}

fn field_json(f: &FieldDrift) -> Value {
    json!({ "path": f.pointer, "desired": f.desired, "live": f.live, "managers": f.managers })
}

/// Recomputes the drift of `keys` (None: every resource) and the fabric's aggregate.
pub async fn refresh(conn: &mut DbConn, fabric_id: Uuid, keys: Option<&[Key]>) -> Result<(), DbError> {
    let Some(fabric) = fabrics::get(conn, fabric_id).await? else { return Ok(()) };
    let watching = fabric.watch_status == "active";
    let rows = resources::drift_inputs(conn, fabric_id, keys).await?;
    let records: Vec<DriftRecord> = rows.iter().map(|r| compute(&fabric, r, watching)).collect();
    resources::record_drift(conn, &records).await?;
    let aggregate = if !watching {
        "unknown"
    } else if resources::drifted_count(conn, fabric_id).await? > 0 {
        "drifted"
    } else {
        "in_sync"
    };
    fabrics::set_drift_status(conn, fabric_id, aggregate).await
}

/// `refresh` on a pooled connection, for callers outside a transaction.
pub async fn refresh_pooled(pool: &db::DbPool, fabric_id: Uuid, keys: Option<&[Key]>) -> Result<(), DbError> {
    let mut conn = db::connect(pool).await?;
    refresh(&mut conn, fabric_id, keys).await
}
