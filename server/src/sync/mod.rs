//! The sync engine, the imperative shell around `fabricsync_core`'s plans: runs queued in
//! PostgreSQL (`queue`), executed by workers in any server process (`worker`: `pull`, then
//! `apply`, then `rollout`: the switches catching up), the auto-sync schedule (`schedule`), the
//! cluster watches (`watch`), all reporting to the event log, and writes to the fabric's
//! repository (`write`).

pub mod apply;
pub mod health;
pub mod inventory;
pub mod pull;
pub mod queue;
pub mod rollout;
pub mod schedule;
pub mod watch;
pub mod worker;
pub mod write;

use fabricsync_core::vocab::Stream;
use prost::Message;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::convert::timestamp;
use crate::db::events::EventRow;
use crate::proto::sync_progress_event::Payload;
use crate::proto::{Diagnostic, ResourceChange, ResourceKey, Severity, SyncProgressEvent};
use fabricsync_core::manifest;

/// Stream name of sync progress in the event log.
pub const PROGRESS: Stream = Stream::Progress;
/// At most this many diagnostics and changes are stored on a run; counters stay exact.
pub const MAX_STORED_DIAGNOSTICS: usize = 1000;
pub const MAX_STORED_CHANGES: usize = 10_000;

/// Counts a run this process concluded with `status` (`fabricsync_sync_runs_ended_total` and
/// its duration since the run started).
pub(crate) fn run_ended(
    state: &crate::context::AppState,
    run: &crate::db::runs::RunRow,
    status: fabricsync_core::vocab::RunStatus,
) {
    let since = run.started_at.unwrap_or(run.created_at);
    let elapsed = (crate::db::now() - since).to_std().unwrap_or_default();
    state.metrics.run_ended(run.mode, run.trigger, status, elapsed);
}

/// A progress event as stored (sequence and time come from the log row).
pub fn encode_progress(run_id: Uuid, payload: Payload) -> Vec<u8> {
    SyncProgressEvent { sequence: 0, run_id: run_id.to_string(), time: None, payload: Some(payload) }.encode_to_vec()
}

/// A stored progress event with its sequence and time; None if the payload does not decode.
pub fn decode_progress(row: &EventRow) -> Option<SyncProgressEvent> {
    let mut event = SyncProgressEvent::decode(row.payload.as_slice()).ok()?;
    event.sequence = row.sequence;
    event.time = Some(timestamp(row.created_at));
    Some(event)
}

/// Finished, failed and cancelled end a run's stream.
pub fn is_terminal(event: &SyncProgressEvent) -> bool {
    matches!(event.payload, Some(Payload::Finished(_) | Payload::Failed(_) | Payload::Cancelled(_)))
}

/// A diagnostic as stored in a run's JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredDiagnostic {
    pub error: bool,
    pub code: String,
    pub file: String,
    pub document: i32,
    pub field_path: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl From<&manifest::Diagnostic> for StoredDiagnostic {
    fn from(d: &manifest::Diagnostic) -> Self {
        StoredDiagnostic {
            error: d.severity == manifest::Severity::Error,
            code: d.code.clone(),
            file: d.file.clone(),
            document: d.document.map_or(-1, |i| i32::try_from(i).unwrap_or(i32::MAX)),
            field_path: d.field_path.clone(),
            line: d.line,
            column: d.column,
            message: d.message.clone(),
        }
    }
}

impl From<&StoredDiagnostic> for Diagnostic {
    fn from(d: &StoredDiagnostic) -> Self {
        Diagnostic {
            severity: if d.error { Severity::Error } else { Severity::Warning } as i32,
            code: d.code.clone(),
            file: d.file.clone(),
            document_index: d.document,
            field_path: d.field_path.clone(),
            line: i32::try_from(d.line).unwrap_or(0),
            column: i32::try_from(d.column).unwrap_or(0),
            message: d.message.clone(),
        }
    }
}

/// A diagnostic about the run as a whole (not a place in a file).
pub fn run_diagnostic(code: &str, message: String) -> StoredDiagnostic {
    StoredDiagnostic {
        error: true,
        code: code.into(),
        file: String::new(),
        document: -1,
        field_path: String::new(),
        line: 0,
        column: 0,
        message,
    }
}

/// A change as stored in a run's JSON: (group, version, kind, namespace, name, action, fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredChange {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub action: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed_fields: Vec<String>,
    /// Inventory runs: the inventory cluster of the object (empty: the fabric's own).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster: String,
}

impl From<&fabricsync_core::plan::Change> for StoredChange {
    fn from(c: &fabricsync_core::plan::Change) -> Self {
        let fabricsync_core::ResourceKey { group, kind, namespace, name } = c.key.clone();
        let action = c.action.word();
        StoredChange {
            group,
            version: c.version.clone(),
            kind,
            namespace,
            name,
            action: action.into(),
            changed_fields: c.changed_fields.clone(),
            cluster: String::new(),
        }
    }
}

impl From<&StoredChange> for ResourceChange {
    fn from(c: &StoredChange) -> Self {
        let action = crate::convert::CHANGE_ACTIONS.of(&c.action);
        ResourceChange {
            key: Some(ResourceKey {
                group: c.group.clone(),
                version: c.version.clone(),
                kind: c.kind.clone(),
                namespace: c.namespace.clone(),
                name: c.name.clone(),
            }),
            action: action as i32,
            changed_fields: c.changed_fields.clone(),
            cluster: c.cluster.clone(),
        }
    }
}

/// Counters of a run as stored in its JSON; field names as in the proto's SyncCounters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    pub files: i64,
    pub documents: i64,
    pub created: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub deleted: i64,
    pub ignored: i64,
    pub warnings: i64,
    pub errors: i64,
    pub applied: i64,
    pub pruned: i64,
}

impl From<&Counters> for crate::proto::SyncCounters {
    fn from(c: &Counters) -> Self {
        crate::proto::SyncCounters {
            files: c.files,
            documents: c.documents,
            created: c.created,
            updated: c.updated,
            unchanged: c.unchanged,
            deleted: c.deleted,
            ignored: c.ignored,
            warnings: c.warnings,
            errors: c.errors,
            applied: c.applied,
            pruned: c.pruned,
        }
    }
}
