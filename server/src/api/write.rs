//! WriteService: changes and version migrations committed to a fabric's repository
//! (the engine's `sync::write`).

use fabricsync_core::drift as core_drift;
use fabricsync_core::edit::{Change, EditError};
use fabricsync_core::vocab::DriftStatus;
use tonic::{Request, Response, Status};

use super::error::{ApiError, Violations};
use super::{fabrics, parse_id, requester, validate, AppState};
use crate::convert::{self, WRITE_OUTCOMES};
use crate::db::fabrics::FabricRow;
use crate::db::resources::{self, ResourceRow};
use crate::git::Author;
use crate::proto::write_service_server::WriteService;
use crate::proto::*;
use crate::sync::write::{self as engine, Edit, WriteError, WriteRequest, Written};
use crate::sync::StoredDiagnostic;

pub struct WriteApi {
    state: AppState,
}

impl WriteApi {
    pub fn new(state: AppState) -> Self {
        WriteApi { state }
    }
}

const MAX_CHANGES: usize = 1000;
const MAX_MESSAGE: usize = 4096;

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> ApiError {
        match e {
            WriteError::Pull(e) => e.into(),
            WriteError::Edit(EditError::Invalid { index, message }) => {
                ApiError::invalid(format!("changes[{index}]"), message)
            }
            WriteError::Edit(EditError::NotFound(key)) => ApiError::NotFound { kind: "object", id: key.to_string() },
            WriteError::Edit(e @ EditError::Repeated(_)) => ApiError::invalid("changes", e.to_string()),
            WriteError::Edit(e @ EditError::Unsupported { .. }) => ApiError::FailedPrecondition(e.to_string()),
            e @ (WriteError::Moved { .. } | WriteError::Busy(_)) => ApiError::Aborted(e.to_string()),
            e @ WriteError::BranchExists(_) => ApiError::AlreadyExists(e.to_string()),
            e @ WriteError::NotABranch(_) => ApiError::FailedPrecondition(e.to_string()),
        }
    }
}

/// The commit options, checked, as the engine's request (without its edit).
fn commit_options(
    commit: Option<&CommitOptions>,
    v: &mut Violations,
) -> (String, Option<String>, Option<String>, bool) {
    let Some(c) = commit else {
        v.add("commit", "is required (at least commit.message)");
        return (String::new(), None, None, false);
    };
    if c.message.trim().is_empty() {
        v.add("commit.message", "is required");
    }
    v.check(validate::max_len(&c.message, MAX_MESSAGE), "commit.message");
    v.check(crate::text::no_nul(&c.message), "commit.message");
    let base = (!c.base_commit.is_empty()).then(|| c.base_commit.clone());
    if base.as_deref().is_some_and(|b| b.len() != 40 || !b.bytes().all(|x| x.is_ascii_hexdigit())) {
        v.add("commit.base_commit", "must be a full commit id (40 hex digits)");
    }
    let branch = (!c.branch.is_empty()).then(|| c.branch.clone());
    if let Some(branch) = &branch {
        v.check(validate::git_ref(branch), "commit.branch");
        if branch.starts_with("refs/") {
            v.add("commit.branch", "a branch name, without refs/heads/");
        }
    }
    (c.message.clone(), base, branch, c.dry_run)
}

fn change(index: usize, change: &ObjectChange, v: &mut Violations) -> Option<Change> {
    match &change.change {
        Some(object_change::Change::Upsert(object)) => Some(Change::Upsert(convert::struct_json(object))),
        Some(object_change::Change::Delete(key)) => {
            Some(Change::Delete(fabrics::requested_key(&format!("changes[{index}].delete"), key, v)))
        }
        None => {
            v.add(format!("changes[{index}]"), "needs upsert or delete");
            None
        }
    }
}

/// What adopting a resource's live state writes to Git, if anything: the live values of its
/// drifted fields, an orphan whole (`import`), or the delete of one the cluster lacks (only
/// when `named`).
fn adoption(row: &ResourceRow, import: bool, named: bool) -> Option<Change> {
    match (&row.desired, &row.live, row.drift_status) {
        (Some(desired), Some(_), DriftStatus::Drifted | DriftStatus::Contested) => {
            Some(Change::Upsert(core_drift::adopted(desired, &row.drift.0.fields)))
        }
        (None, Some(live), _) if import || named => {
            Some(Change::Upsert(core_drift::comparable_live(live, &[crate::cluster::FABRIC_LABEL])))
        }
        (Some(_), None, DriftStatus::Missing) if named => Some(Change::Delete(row.key())),
        _ => None,
    }
}

fn result(written: &Written) -> WriteResult {
    WriteResult {
        outcome: convert::proto_of(&WRITE_OUTCOMES, written.outcome) as i32,
        base_commit: written.base.clone(),
        commit: written.commit.clone().unwrap_or_default(),
        branch: written.branch.clone(),
        files: written
            .edits
            .iter()
            .map(|e| FileDiff {
                path: e.path.clone(),
                action: match (&e.before, &e.after) {
                    (None, _) => ChangeAction::Create,
                    (_, None) => ChangeAction::Delete,
                    _ => ChangeAction::Update,
                } as i32,
                diff: e.unified(),
            })
            .collect(),
        diagnostics: written.diagnostics.iter().map(|d| Diagnostic::from(&StoredDiagnostic::from(d))).collect(),
        run_id: written.run_id.map(|id| id.to_string()).unwrap_or_default(),
    }
}

/// A REJECTED result for an adopted live state that fails validation.
fn refused(key: &fabricsync_core::ResourceKey, message: &str) -> WriteResult {
    let diagnostic = Diagnostic {
        severity: Severity::Error as i32,
        code: "adopt.invalid".into(),
        message: format!("the live state of {key} does not validate: {message}"),
        document_index: -1,
        ..Default::default()
    };
    WriteResult { outcome: WriteOutcome::Rejected as i32, diagnostics: vec![diagnostic], ..Default::default() }
}

impl WriteApi {
    /// The fabric and the engine's request: the commit options checked along with the
    /// handler's own violations `v`, the caller as author.
    async fn prepare<T>(
        &self,
        request: &Request<T>,
        fabric_id: &str,
        edit: Edit,
        commit: Option<&CommitOptions>,
        mut v: Violations,
    ) -> Result<(FabricRow, WriteRequest), ApiError> {
        let fabric_id = parse_id("fabric_id", fabric_id)?;
        let (message, base, branch, dry_run) = commit_options(commit, &mut v);
        v.into_result()?;
        let fabric = fabrics::load(&self.state, fabric_id).await?;
        let requested_by = requester(request)?;
        let request = WriteRequest {
            edit,
            message,
            author: Author { name: requested_by.clone(), email: String::new() },
            base,
            branch,
            dry_run,
            requested_by,
        };
        Ok((fabric, request))
    }

    async fn write<T>(
        &self,
        request: &Request<T>,
        fabric_id: &str,
        edit: Edit,
        commit: Option<&CommitOptions>,
        v: Violations,
    ) -> Result<Written, ApiError> {
        let (fabric, request) = self.prepare(request, fabric_id, edit, commit, v).await?;
        Ok(engine::write(&self.state, &fabric, request).await?)
    }
}

#[tonic::async_trait]
impl WriteService for WriteApi {
    async fn change_objects(
        &self,
        request: Request<ChangeObjectsRequest>,
    ) -> Result<Response<ChangeObjectsResponse>, Status> {
        let req = request.get_ref();
        let mut v = Violations::default();
        if req.changes.is_empty() || req.changes.len() > MAX_CHANGES {
            v.add("changes", format!("1 to {MAX_CHANGES} changes"));
        }
        let changes: Vec<Change> = req.changes.iter().enumerate().filter_map(|(i, c)| change(i, c, &mut v)).collect();
        let written = self.write(&request, &req.fabric_id, Edit::Changes(changes), req.commit.as_ref(), v).await?;
        Ok(Response::new(ChangeObjectsResponse { result: Some(result(&written)) }))
    }

    async fn adopt_drift(&self, request: Request<AdoptDriftRequest>) -> Result<Response<AdoptDriftResponse>, Status> {
        let req = request.get_ref();
        let fabric_id = parse_id("fabric_id", &req.fabric_id)?;
        let mut v = Violations::default();
        if req.keys.len() > MAX_CHANGES {
            v.add("keys", format!("at most {MAX_CHANGES}"));
        }
        let keys: Vec<_> = req
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| fabrics::requested_key(&format!("keys[{i}]"), k, &mut v))
            .collect();
        v.into_result()?;
        let mut conn = self.state.conn().await?;
        let mut rows = Vec::new();
        for key in &keys {
            let row = resources::get_by_key(&mut conn, fabric_id, &key.group, &key.kind, &key.namespace, &key.name)
                .await
                .map_err(ApiError::from)?
                .ok_or_else(|| ApiError::NotFound { kind: "resource", id: key.to_string() })?;
            rows.push(row);
        }
        if keys.is_empty() {
            let mut statuses = vec![DriftStatus::Drifted, DriftStatus::Contested];
            if req.import_orphans {
                statuses.push(DriftStatus::Orphaned);
            }
            rows = resources::with_drift(&mut conn, fabric_id, &statuses, MAX_CHANGES as i64 + 1)
                .await
                .map_err(ApiError::from)?;
            if rows.len() > MAX_CHANGES {
                let message =
                    format!("more than {MAX_CHANGES} resources to adopt; name them in keys, {MAX_CHANGES} at a time");
                return Err(ApiError::FailedPrecondition(message).into());
            }
        }
        drop(conn);
        let mut adopted = Vec::new();
        let mut changes = Vec::new();
        for row in &rows {
            match adoption(row, req.import_orphans, !keys.is_empty()) {
                Some(change) => {
                    changes.push(change);
                    adopted.push(row.key());
                }
                None if !keys.is_empty() => {
                    let message = format!("{} is {}: nothing to adopt", row.key(), row.drift_status);
                    return Err(ApiError::FailedPrecondition(message).into());
                }
                None => {}
            }
        }
        let (fabric, mut write) = self
            .prepare(&request, &req.fabric_id, Edit::Changes(changes), req.commit.as_ref(), Violations::default())
            .await?;
        // The adopted objects are the stored desired state plus live values: based on the last
        // pull, so a file changed in Git since then aborts instead of being written back over.
        if write.base.is_none() {
            let never = || ApiError::FailedPrecondition("the fabric was never pulled: nothing to adopt against".into());
            write.base = Some(fabric.last_synced_commit.clone().ok_or_else(never)?);
        }
        let written = match engine::write(&self.state, &fabric, write).await {
            // The cluster holds a value this fabric's validation refuses: say which resource.
            Err(WriteError::Edit(EditError::Invalid { index, message })) => {
                let key = adopted.get(index).cloned().unwrap_or_default();
                return Ok(Response::new(AdoptDriftResponse {
                    result: Some(refused(&key, &message)),
                    adopted: vec![],
                }));
            }
            other => other.map_err(ApiError::from)?,
        };
        let adopted = adopted.iter().map(|k| convert::resource_key(k, "")).collect();
        Ok(Response::new(AdoptDriftResponse { result: Some(result(&written)), adopted }))
    }

    async fn ingest_raw(&self, request: Request<IngestRawRequest>) -> Result<Response<IngestRawResponse>, Status> {
        let req = request.get_ref();
        let edit = Edit::IngestRaw { archive: req.archive };
        let written = self.write(&request, &req.fabric_id, edit, req.commit.as_ref(), Violations::default()).await?;
        Ok(Response::new(IngestRawResponse { result: Some(result(&written)) }))
    }

    async fn migrate_versions(
        &self,
        request: Request<MigrateVersionsRequest>,
    ) -> Result<Response<MigrateVersionsResponse>, Status> {
        let req = request.get_ref();
        let written = self
            .write(&request, &req.fabric_id, Edit::MigrateVersions, req.commit.as_ref(), Violations::default())
            .await?;
        let migrations = written
            .migrations
            .iter()
            .map(|m| VersionMigration {
                file: m.file.clone(),
                document_index: i32::try_from(m.document).unwrap_or(i32::MAX),
                from: m.from.clone(),
                to: m.to.clone().unwrap_or_default(),
                reason: m.reason.clone(),
            })
            .collect();
        Ok(Response::new(MigrateVersionsResponse { result: Some(result(&written)), migrations }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_options_are_checked_by_field() {
        let mut v = Violations::default();
        let bad = CommitOptions {
            message: " ".into(),
            base_commit: "abc".into(),
            branch: "refs/heads/x".into(),
            dry_run: false,
        };
        commit_options(Some(&bad), &mut v);
        let Err(ApiError::InvalidArgument(violations)) = v.into_result() else { panic!("expected violations") };
        let fields: Vec<String> = violations.iter().map(|x| x.field.clone()).collect();
        assert_eq!(fields, ["commit.message", "commit.base_commit", "commit.branch"]);
        let mut v = Violations::default();
        let (message, base, branch, dry) = commit_options(
            Some(&CommitOptions {
                message: "m".into(),
                base_commit: "a".repeat(40),
                branch: "review/x".into(),
                dry_run: true,
            }),
            &mut v,
        );
        assert!(v.into_result().is_ok());
        assert_eq!(
            (message.as_str(), base.as_deref(), branch.as_deref(), dry),
            ("m", Some("a".repeat(40).as_str()), Some("review/x"), true)
        );
    }
}
