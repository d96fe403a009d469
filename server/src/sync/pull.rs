//! A pull: fetch the fabric's repository into its mirror, read the gitops directory at a ref,
//! parse and validate every document, and plan the change against the stored desired state.
//! Used by sync runs (which then persist) and by PlanSync (which only reports).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::warn;
use uuid::Uuid;

use super::{encode_progress, Counters, PROGRESS};
use crate::context::AppState;
use crate::crypto::CryptoError;
use crate::db::fabrics::FabricRow;
use crate::db::{self, DbError};
use crate::git::{FetchProgress, GitError, Mirror, SourceFile, Sources, Wanted};
use crate::metrics::Stage;
use crate::proto::sync_progress_event::Payload;
use crate::proto::{FetchingProgress, ParsingProgress, ValidatingProgress};
use fabricsync_core::manifest::cache::ParseCache;
use fabricsync_core::manifest::{self, KindRegistry, Object, ParsedFile, Severity};
use fabricsync_core::plan::{self, Plan};
use fabricsync_core::sources::Selection;
use fabricsync_core::vocab::{Layout, SyncMode};
use fabricsync_core::ResourceKey;

/// Progress events of one kind are sent at most this often.
const THROTTLE: Duration = Duration::from_millis(100);
/// Updates whose changed fields are computed (each needs the stored object).
const MAX_DIFFED_UPDATES: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("stored credentials cannot be opened: {0}")]
    Crypto(#[from] CryptoError),
    #[error("repository {0} no longer exists")]
    RepositoryGone(Uuid),
    #[error("cancelled")]
    Cancelled,
    #[error("the run was taken over by another worker")]
    Lost,
    #[error("the server is shutting down")]
    Released,
    #[error("the fabric's {} are invalid: {}", .0.list, .0.message)]
    Globs(fabricsync_core::sources::GlobError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Where a pull reports: a run's event log, or nowhere (PlanSync).
pub struct Scope {
    state: AppState,
    fabric_id: Uuid,
    run: Option<RunFlags>,
    /// The run's mode, which its stage timings are labelled with; None: not a run (PlanSync).
    mode: Option<SyncMode>,
}

/// Set by the run's heartbeat: a cancel was requested, the lease was lost, the server stops.
#[derive(Clone, Default)]
pub struct RunFlags {
    pub id: Uuid,
    pub cancel: Arc<AtomicBool>,
    pub lost: Arc<AtomicBool>,
    pub stop: Arc<AtomicBool>,
}

impl Scope {
    pub fn for_run(state: AppState, fabric_id: Uuid, flags: RunFlags, mode: SyncMode) -> Scope {
        Scope { state, fabric_id, run: Some(flags), mode: Some(mode) }
    }

    pub fn silent(state: AppState, fabric_id: Uuid) -> Scope {
        Scope { state, fabric_id, run: None, mode: None }
    }

    /// Times a stage of the run until the timer is dropped; nothing outside runs.
    pub fn timer(&self, stage: Stage) -> Option<crate::metrics::StageTimer> {
        self.mode.map(|mode| self.state.metrics.timer(mode, stage))
    }

    /// Appends a progress event of the run; a failure to report is logged, not fatal.
    pub async fn emit(&self, payload: Payload) {
        let Some(run) = &self.run else { return };
        let bytes = encode_progress(run.id, payload);
        let appended = async {
            let mut conn = db::connect(&self.state.pool).await?;
            db::events::append(&mut conn, self.fabric_id, Some(run.id), PROGRESS, &bytes).await
        };
        if let Err(e) = appended.await {
            warn!(run_id = %run.id, error = %e, "could not record a progress event");
        }
    }

    /// Records that the run fetches (or no longer does) from its Git server: the per-server
    /// cap of `runs::claim` counts fetching runs. A failure to record is logged, not fatal.
    async fn fetching(&self, on: bool) {
        let Some(run) = &self.run else { return };
        let recorded = async {
            let mut conn = db::connect(&self.state.pool).await?;
            db::runs::set_fetching(&mut conn, run.id, on).await
        };
        if let Err(e) = recorded.await {
            warn!(run_id = %run.id, error = %e, "could not record the fetch");
        }
    }

    /// A safe point: stop here if the run was cancelled or taken over.
    pub fn checkpoint(&self) -> Result<(), PullError> {
        match &self.run {
            Some(run) if run.lost.load(Ordering::Relaxed) => Err(PullError::Lost),
            Some(run) if run.stop.load(Ordering::Relaxed) => Err(PullError::Released),
            Some(run) if run.cancel.load(Ordering::Relaxed) => Err(PullError::Cancelled),
            _ => Ok(()),
        }
    }
}

/// The parsed and validated sources at one commit.
pub struct Pulled {
    pub commit: String,
    /// What the sources are: commit, directory and parse settings (see `source_key`).
    pub source: String,
    /// The stored desired state was pulled from this very source: nothing was read or parsed.
    pub same_source: bool,
    pub files: Vec<Arc<ParsedFile>>,
    /// How the directory is laid out; None when nothing was read (`same_source`).
    pub layout: Option<Layout>,
    pub diagnostics: Vec<manifest::Diagnostic>,
    pub counters: Counters,
}

impl Pulled {
    pub fn has_errors(&self) -> bool {
        self.counters.errors > 0
    }

    pub fn objects(&self) -> Vec<&Object> {
        self.files.iter().flat_map(|f| f.objects.iter()).collect()
    }
}

/// Everything the desired state of a pull depends on; equal keys give equal desired states.
pub fn source_key(commit: &str, fabric: &FabricRow) -> String {
    format!(
        "{commit} {:?} ns={} strict={} include={:?} exclude={:?} manifest=v{}",
        fabric.gitops_path,
        namespace_of(fabric),
        fabric.strict_references,
        fabric.include_paths,
        fabric.exclude_paths,
        manifest::VERSION
    )
}

pub(crate) fn namespace_of(fabric: &FabricRow) -> &str {
    if fabric.cluster_namespace.is_empty() {
        "default"
    } else {
        &fabric.cluster_namespace
    }
}

/// Fetches, reads, parses and validates `fabric`'s sources at `git_ref`; stops after resolving
/// the ref when the fabric's stored state came from the same source (unless `force`).
pub async fn pull(
    state: &AppState,
    fabric: &FabricRow,
    git_ref: &str,
    force: bool,
    scope: &Scope,
) -> Result<Pulled, PullError> {
    scope.checkpoint()?;
    let mut conn = db::connect(&state.pool).await?;
    let repository = db::repositories::get(&mut conn, fabric.repository_id)
        .await?
        .ok_or(PullError::RepositoryGone(fabric.repository_id))?;
    drop(conn);
    let auth = crate::credentials::git_auth(&repository, &state.keyring)?;

    scope.emit(Payload::Fetching(FetchingProgress::default())).await;
    let cache = state.settings.data_dir.join("git");
    let (url, timeout, limits) = (repository.url.clone(), state.settings.git_timeout, state.settings.read_limits);
    let (dir, git_ref, repository_id) = (fabric.gitops_path.clone(), git_ref.to_string(), repository.id.to_string());
    let known = if force { None } else { fabric.synced_source.clone() };
    let row = fabric.clone();
    let outbound = state.settings.outbound.clone();
    let selection = Selection::new(&fabric.include_paths, &fabric.exclude_paths).map_err(PullError::Globs)?;
    scope.fetching(true).await;
    let timer = scope.timer(Stage::Fetch);
    let fetched = with_progress(
        FetchProgress::default(),
        move |progress| -> Result<(String, String, Option<Sources>), GitError> {
            let mirror = Mirror::open_or_init(&cache, &repository_id)?;
            mirror.fetch(&outbound, &url, &auth, Wanted::Refs(&[&git_ref]), timeout, &mut |p| {
                progress.send_replace(p);
            })?;
            let commit = mirror.resolve(&git_ref)?;
            let source = source_key(&commit, &row);
            if known.as_deref() == Some(source.as_str()) {
                return Ok((commit, source, None));
            }
            let sources = mirror.read_dir(&commit, &dir, &limits, &selection)?;
            Ok((commit, source, Some(sources)))
        },
        scope,
        |p| {
            Payload::Fetching(FetchingProgress {
                bytes: i64::try_from(p.bytes_received).unwrap_or(i64::MAX),
                objects: i64::try_from(p.objects_received).unwrap_or(i64::MAX),
            })
        },
    )
    .await;
    drop(timer);
    scope.fetching(false).await;
    let (commit, source, sources) = fetched??;
    scope.checkpoint()?;
    let Some(Sources { files, layout }) = sources else {
        return Ok(Pulled {
            commit,
            source,
            same_source: true,
            files: Vec::new(),
            layout: None,
            diagnostics: Vec::new(),
            counters: Counters::default(),
        });
    };

    let file_count = files.len();
    let options = manifest::Options { default_namespace: namespace_of(fabric).to_string(), ..Default::default() };
    let parse_cache = state.parse_cache.clone();
    let kinds = state.settings.kinds;
    let timer = scope.timer(Stage::Parse);
    let parsed = with_progress(
        (0usize, String::new()),
        move |progress| parse_all(&files, kinds, &options, &parse_cache, progress),
        scope,
        move |(i, path)| {
            Payload::Parsing(ParsingProgress {
                file_index: clamp(*i),
                file_count: clamp(file_count),
                path: path.clone(),
            })
        },
    )
    .await??;
    drop(timer);
    scope.checkpoint()?;

    let mut counters = Counters { files: file_count as i64, ..Default::default() };
    let mut diagnostics: Vec<manifest::Diagnostic> = Vec::new();
    for file in &parsed {
        counters.ignored += file.ignored as i64;
        counters.documents += (file.objects.len() + file.ignored) as i64;
        diagnostics.extend(file.diagnostics.iter().cloned());
    }
    scope.emit(Payload::Validating(ValidatingProgress { documents: counters.documents })).await;
    let strict = fabric.strict_references;
    let timer = scope.timer(Stage::Validate);
    let (parsed, semantic) = tokio::task::spawn_blocking(move || {
        let objects: Vec<&Object> = parsed.iter().flat_map(|f| f.objects.iter()).collect();
        let found = manifest::fabric_findings(&objects, strict);
        (parsed, found)
    })
    .await
    .map_err(|e| PullError::Internal(e.to_string()))?;
    drop(timer);
    diagnostics.extend(semantic);
    counters.errors = diagnostics.iter().filter(|d| d.severity == Severity::Error).count() as i64;
    counters.warnings = diagnostics.len() as i64 - counters.errors;
    scope.checkpoint()?;
    Ok(Pulled { commit, source, same_source: false, files: parsed, layout: Some(layout), diagnostics, counters })
}

fn clamp(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Parses files on every core (through the cache), in order, publishing (files done, path).
fn parse_all(
    files: &[SourceFile],
    registry: &KindRegistry,
    options: &manifest::Options,
    cache: &ParseCache,
    progress: &watch::Sender<(usize, String)>,
) -> Result<Vec<Arc<ParsedFile>>, PullError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    let chunk = files.len().div_ceil(threads).max(1);
    let done = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                let done = &done;
                scope.spawn(move || {
                    part.iter()
                        .map(|file| {
                            let parsed = cache.parse(file, registry, options);
                            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                            progress.send_replace((n, file.path.clone()));
                            parsed
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut parsed = Vec::with_capacity(files.len());
        for worker in workers {
            // A parser that panicked must fail the run, never store part of the sources.
            parsed.extend(worker.join().map_err(|_| PullError::Internal("a YAML parser thread failed".into()))?);
        }
        Ok(parsed)
    })
}

/// What storing `pulled` would change, with changed fields for (the first) updates.
pub async fn plan_against_store(state: &AppState, fabric_id: Uuid, pulled: &Pulled) -> Result<Plan, PullError> {
    let mut conn = db::connect(&state.pool).await?;
    let index = db::resources::index(&mut conn, fabric_id).await?;
    let objects = pulled.objects();
    let mut plan = plan::plan(&objects, &index);
    let ids: HashMap<&ResourceKey, Uuid> = index.iter().map(|e| (&e.key, e.id)).collect();
    let new_bodies: HashMap<ResourceKey, &serde_json::Value> = objects.iter().map(|o| (o.key(), &o.body)).collect();
    let updates: Vec<usize> = plan
        .changes
        .iter()
        .enumerate()
        .filter(|(_, c)| c.action == plan::Action::Update)
        .map(|(i, _)| i)
        .take(MAX_DIFFED_UPDATES)
        .collect();
    let wanted: Vec<Uuid> = updates.iter().filter_map(|&i| ids.get(&plan.changes[i].key).copied()).collect();
    let old = db::resources::desired_bodies(&mut conn, &wanted).await?;
    for i in updates {
        let change = &mut plan.changes[i];
        if let (Some(old), Some(new)) = (ids.get(&change.key).and_then(|id| old.get(id)), new_bodies.get(&change.key)) {
            let schema = state.settings.kinds.schema_of(&change.key, &change.version);
            change.changed_fields = fabricsync_core::diff::changed_fields(old, new, schema);
        }
    }
    Ok(plan)
}

/// Runs blocking `work` on the blocking pool while reporting what it publishes to `progress`,
/// at most every THROTTLE, and always its last value.
async fn with_progress<T, P>(
    initial: P,
    work: impl FnOnce(&watch::Sender<P>) -> T + Send + 'static,
    scope: &Scope,
    payload: impl Fn(&P) -> Payload,
) -> Result<T, PullError>
where
    T: Send + 'static,
    P: Clone + Send + Sync + 'static,
{
    let (tx, mut rx) = watch::channel(initial);
    let mut task = tokio::task::spawn_blocking(move || work(&tx));
    loop {
        tokio::select! {
            done = &mut task => return finish(done, &mut rx, scope, &payload).await,
            changed = rx.changed() => {
                if changed.is_err() {
                    let done = (&mut task).await;
                    return finish(done, &mut rx, scope, &payload).await;
                }
                let latest = rx.borrow_and_update().clone();
                scope.emit(payload(&latest)).await;
                // Throttle, but never hold back a finished step.
                tokio::select! {
                    done = &mut task => return finish(done, &mut rx, scope, &payload).await,
                    _ = tokio::time::sleep(THROTTLE) => {}
                }
            }
        }
    }
}

/// Reports the last progress value if it was not sent yet, and returns the work's result.
async fn finish<T, P: Clone>(
    done: Result<T, tokio::task::JoinError>,
    rx: &mut watch::Receiver<P>,
    scope: &Scope,
    payload: &impl Fn(&P) -> Payload,
) -> Result<T, PullError> {
    // The sender is gone now: this returns at once, with the last value if unseen.
    if rx.changed().await.is_ok() {
        let latest = rx.borrow_and_update().clone();
        scope.emit(payload(&latest)).await;
    }
    done.map_err(|e| PullError::Internal(e.to_string()))
}
