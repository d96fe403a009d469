//! Writes to a fabric's repository: fetch, read the sources at the head of the fabric's ref, make
//! the edits (core `edit`), validate the result as a pull would, commit in the mirror, push.
//! When the branch moved meanwhile, the write is made again on the new head, unless the files
//! it touches changed there too: then it is refused with the new head (never a lost update).
//! A commit to the fabric's ref is followed by a pull run.

use std::sync::Arc;

use fabricsync_core::edit::{self, Change, EditError, FileEdit, Migration, Placement};
use fabricsync_core::manifest::{self, Diagnostic, Object, Severity, SourceFile};
use fabricsync_core::sources::Selection;
use fabricsync_core::vocab::{SyncMode, Trigger, WriteOutcome};
use tracing::{info, warn};
use uuid::Uuid;

use super::pull::PullError;
use super::queue::{self, Enqueued};
use crate::context::AppState;
use crate::db::fabrics::FabricRow;
use crate::db::{self, DbError};
use crate::git::{Author, GitError, Mirror, Pushed, Wanted};

/// Pushes tried before giving up on a branch that keeps moving.
const MAX_ATTEMPTS: usize = 5;

/// What a write edits.
#[derive(Debug, Clone)]
pub enum Edit {
    Changes(Vec<Change>),
    MigrateVersions,
    IngestRaw { archive: bool },
}

#[derive(Debug, Clone)]
pub struct WriteRequest {
    pub edit: Edit,
    pub message: String,
    pub author: Author,
    /// The commit the caller's view is based on; None: the head now.
    pub base: Option<String>,
    /// A new branch to commit to; None: the fabric's ref.
    pub branch: Option<String>,
    pub dry_run: bool,
    /// Who asked, for the pull run that follows.
    pub requested_by: String,
}

#[derive(Debug, Clone)]
pub struct Written {
    pub outcome: WriteOutcome,
    pub base: String,
    pub commit: Option<String>,
    pub branch: String,
    pub edits: Vec<FileEdit>,
    pub diagnostics: Vec<Diagnostic>,
    pub migrations: Vec<Migration>,
    pub run_id: Option<Uuid>,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Pull(#[from] PullError),
    #[error(transparent)]
    Edit(EditError),
    #[error("{branch} moved to {head} and the files this write touches changed there too ({}); read again and retry", files.join(", "))]
    Moved { branch: String, head: String, files: Vec<String> },
    #[error("branch {0} already exists")]
    BranchExists(String),
    #[error("{0} kept moving while pushing; try again")]
    Busy(String),
    #[error("the fabric follows {0}, which is not a branch: commit to a new branch with commit.branch")]
    NotABranch(String),
}

impl From<GitError> for WriteError {
    fn from(e: GitError) -> WriteError {
        WriteError::Pull(PullError::Git(e))
    }
}

impl From<DbError> for WriteError {
    fn from(e: DbError) -> WriteError {
        WriteError::Pull(PullError::Db(e))
    }
}

/// The planned write at one head: the edits, the result's findings, the migrations.
struct Planned {
    edits: Vec<FileEdit>,
    diagnostics: Vec<Diagnostic>,
    migrations: Vec<Migration>,
    rejected: bool,
}

/// Everything the blocking part needs, owned.
struct Job {
    fabric: FabricRow,
    request: WriteRequest,
    mirror: Mirror,
    url: String,
    auth: crate::git::Auth,
    state: AppState,
}

pub async fn write(state: &AppState, fabric: &FabricRow, request: WriteRequest) -> Result<Written, WriteError> {
    let mut conn = db::connect(&state.pool).await?;
    let repository = db::repositories::get(&mut conn, fabric.repository_id)
        .await?
        .ok_or(PullError::RepositoryGone(fabric.repository_id))?;
    drop(conn);
    let auth = crate::credentials::git_auth(&repository, &state.keyring).map_err(PullError::from)?;
    let mirror = Mirror::open_or_init(&state.settings.data_dir.join("git"), &repository.id.to_string())?;
    let job = Job { fabric: fabric.clone(), request, mirror, url: repository.url.clone(), auth, state: state.clone() };
    let requested_by = job.request.requested_by.clone();
    let mut written = tokio::task::spawn_blocking(move || job.run())
        .await
        .map_err(|e| PullError::Internal(format!("the write failed: {e}")))??;
    if written.outcome == WriteOutcome::Committed && written.branch == branch_name(&fabric.git_ref) {
        // The commit is pushed: from here on a failure is the pull's to report, not the write's.
        written.run_id = match follow_with_pull(state, fabric.id, requested_by).await {
            Ok(id) => Some(id),
            Err(e) => {
                warn!(fabric_id = %fabric.id, error = %e, "pushed, but the pull that follows could not be queued");
                None
            }
        };
    }
    info!(fabric_id = %fabric.id, outcome = %written.outcome, commit = ?written.commit, files = written.edits.len(), "write");
    Ok(written)
}

/// Queues the pull of the new commit (or finds the run already queued, which will read it).
async fn follow_with_pull(state: &AppState, fabric_id: Uuid, requested_by: String) -> Result<Uuid, WriteError> {
    let mut conn = db::connect(&state.pool).await?;
    let request = queue::Request {
        fabric_id,
        mode: SyncMode::Pull,
        trigger: Trigger::User,
        dry_run: false,
        force: false,
        requested_ref: String::new(),
        targets: None,
        requested_by,
        rollout_wait_seconds: 0,
    };
    match queue::enqueue(&mut conn, &request).await? {
        Enqueued::New(row) | Enqueued::AlreadyActive(Some(row)) => Ok(row.id),
        Enqueued::AlreadyActive(None) => Err(WriteError::Busy("the fabric's run queue".into())),
    }
}

impl Job {
    fn run(mut self) -> Result<Written, WriteError> {
        let settings = &self.state.settings;
        let fabric_branch = branch_name(&self.fabric.git_ref).to_owned();
        let branch = self.request.branch.clone().unwrap_or_else(|| fabric_branch.clone());
        for _ in 0..MAX_ATTEMPTS {
            let review = self.request.branch.as_ref().map(|b| format!("refs/heads/{b}"));
            let wanted: Vec<&str> =
                [Some(self.fabric.git_ref.as_str()), review.as_deref()].into_iter().flatten().collect();
            let wanted = Wanted::Refs(&wanted);
            self.mirror.fetch(&settings.outbound, &self.url, &self.auth, wanted, settings.git_timeout, &mut |_| {})?;
            // A review branch starts from whatever the fabric follows; the fabric's own ref is
            // written only when it is a branch (a tag or commit cannot move).
            let head = match &self.request.branch {
                Some(review) => {
                    if self.mirror.resolve(&format!("refs/heads/{review}")).is_ok() {
                        return Err(WriteError::BranchExists(review.clone()));
                    }
                    self.mirror.resolve(&self.fabric.git_ref)?
                }
                None => self
                    .mirror
                    .resolve(&format!("refs/heads/{fabric_branch}"))
                    .map_err(|_| WriteError::NotABranch(self.fabric.git_ref.clone()))?,
            };
            let planned = self.plan(&head)?;
            if let Some(base) = self.request.base.as_deref().filter(|b| *b != head) {
                let touched: Vec<String> = planned.edits.iter().map(|e| e.path.clone()).collect();
                let changed = self.mirror.changed_between(base, &head, &touched)?;
                if !changed.is_empty() {
                    return Err(WriteError::Moved { branch, head, files: changed });
                }
            }
            let outcome = if planned.rejected {
                WriteOutcome::Rejected
            } else if planned.edits.is_empty() {
                WriteOutcome::Unchanged
            } else if self.request.dry_run {
                WriteOutcome::DryRun
            } else {
                WriteOutcome::Committed
            };
            let mut written = Written {
                outcome,
                base: head.clone(),
                commit: None,
                branch: branch.clone(),
                edits: planned.edits,
                diagnostics: planned.diagnostics,
                migrations: planned.migrations,
                run_id: None,
            };
            if outcome != WriteOutcome::Committed {
                return Ok(written);
            }
            let paths: Vec<(String, bool)> =
                written.edits.iter().map(|e| (e.path.clone(), e.before.is_some())).collect();
            if let Some((path, message)) = self.mirror.unwritable(&head, &paths)? {
                return Err(WriteError::Edit(EditError::Unsupported { path, message }));
            }
            let changes: Vec<crate::git::FileChange> =
                written.edits.iter().map(|e| (e.path.clone(), e.after.clone().map(String::into_bytes))).collect();
            let commit = self.mirror.commit(&head, &changes, &self.request.message, &self.request.author)?;
            let pushed =
                self.mirror.push(&settings.outbound, &self.url, &self.auth, settings.git_timeout, &commit, &branch)?;
            if pushed == Pushed::Done {
                written.commit = Some(commit);
                return Ok(written);
            }
            // Moved meanwhile: plan again on the new head, checked against the one planned on.
            self.request.base = Some(head);
        }
        Err(WriteError::Busy(branch))
    }

    /// The write at `head`: the edits and the findings of the resulting fabric.
    fn plan(&self, head: &str) -> Result<Planned, WriteError> {
        let (settings, fabric) = (&self.state.settings, &self.fabric);
        let selection = Selection::new(&fabric.include_paths, &fabric.exclude_paths).map_err(PullError::Globs)?;
        let sources = self.mirror.read_dir(head, &fabric.gitops_path, &settings.read_limits, &selection)?;
        let options =
            manifest::Options { default_namespace: super::pull::namespace_of(fabric).into(), ..Default::default() };
        let cache = &self.state.parse_cache;
        let inputs = edit::Inputs {
            files: &sources.files,
            placement: Placement { dir: &fabric.gitops_path, layout: sources.layout },
            registry: settings.kinds,
            options: &options,
            cache,
        };
        let (edits, migrations) = match &self.request.edit {
            Edit::Changes(changes) => (edit::apply_changes(&inputs, changes).map_err(WriteError::Edit)?, Vec::new()),
            Edit::MigrateVersions => edit::migrate_versions(&inputs),
            Edit::IngestRaw { archive } => (edit::ingest_raw(&inputs, *archive).map_err(WriteError::Edit)?, Vec::new()),
        };
        let selection = selection.with_layout(sources.layout);
        let prefix = if fabric.gitops_path.is_empty() { String::new() } else { format!("{}/", fabric.gitops_path) };
        let reads = |path: &str| path.strip_prefix(&prefix).is_some_and(|relative| selection.reads(relative));
        // Only a migration compares with the errors there were before (see `rejected`).
        let before = match self.request.edit {
            Edit::MigrateVersions => findings(&sources.files, &options, &self.state, fabric.strict_references),
            Edit::Changes(_) | Edit::IngestRaw { .. } => Vec::new(),
        };
        let after_files = with_edits(&sources.files, &edits, &reads);
        let mut diagnostics = findings(&after_files, &options, &self.state, fabric.strict_references);
        // A new file the fabric's globs do not read would lose its objects on the next pull
        // (archived originals are meant not to be read).
        let archived = format!("{prefix}{}/", edit::ARCHIVE_DIR);
        for e in edits.iter().filter(|e| e.before.is_none() && !reads(&e.path) && !e.path.starts_with(&archived)) {
            diagnostics.push(Diagnostic {
                severity: Severity::Error,
                code: "write.not_read".into(),
                file: e.path.clone(),
                document: None,
                field_path: String::new(),
                line: 0,
                column: 0,
                message: "a pull does not read this file (the fabric's include_paths / exclude_paths)".into(),
            });
        }
        let is_error = |d: &Diagnostic| d.severity == Severity::Error;
        let rejected = match self.request.edit {
            // The result must be a fabric a pull accepts.
            Edit::Changes(_) | Edit::IngestRaw { .. } => diagnostics.iter().any(is_error),
            // Objects that validate under no served version stay as they were: a migration may
            // leave their errors, never add one.
            Edit::MigrateVersions => {
                let known = |d: &Diagnostic| before.iter().any(|b| is_error(b) && same_place(b, d));
                diagnostics.iter().filter(|d| is_error(d) && d.code != "version.unserved").any(|d| !known(d))
            }
        };
        Ok(Planned { edits, diagnostics, migrations, rejected })
    }
}

/// The branch a fabric's ref names (`main` for `refs/heads/main`).
fn branch_name(git_ref: &str) -> &str {
    git_ref.strip_prefix("refs/heads/").unwrap_or(git_ref)
}

fn same_place(a: &Diagnostic, b: &Diagnostic) -> bool {
    (a.code.as_str(), a.file.as_str(), a.document, a.field_path.as_str())
        == (b.code.as_str(), b.file.as_str(), b.document, b.field_path.as_str())
}

/// The files with `edits` made: changed and new ones that a pull reads, removed ones gone.
fn with_edits(files: &[SourceFile], edits: &[FileEdit], reads: &dyn Fn(&str) -> bool) -> Vec<SourceFile> {
    let mut out: Vec<SourceFile> = files.iter().filter(|f| !edits.iter().any(|e| e.path == f.path)).cloned().collect();
    out.extend(edits.iter().filter(|e| reads(&e.path)).filter_map(|e| {
        e.after.as_ref().map(|text| SourceFile { path: e.path.clone(), bytes: text.clone().into_bytes() })
    }));
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Every finding a pull of `files` would report.
fn findings(files: &[SourceFile], options: &manifest::Options, state: &AppState, strict: bool) -> Vec<Diagnostic> {
    let parsed: Vec<Arc<manifest::ParsedFile>> =
        files.iter().map(|f| state.parse_cache.parse(f, state.settings.kinds, options)).collect();
    let objects: Vec<&Object> = parsed.iter().flat_map(|p| p.objects.iter()).collect();
    let mut diagnostics: Vec<Diagnostic> = parsed.iter().flat_map(|p| p.diagnostics.iter().cloned()).collect();
    diagnostics.extend(manifest::fabric_findings(&objects, strict));
    diagnostics
}
