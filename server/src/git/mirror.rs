//! The mirror cache: one bare repository per configured repository, holding the remote's branches
//! and tags under the same names. A fetch asks only for the refs its caller needs (a fabric's
//! branch, not every branch: another branch's huge file never reaches the server); a commit id
//! cannot be asked for by name, so it fetches every branch and tag. The first fetch is a full
//! clone of what it asks for, later ones are incremental.

use std::collections::HashSet;
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gix::remote::Direction;

use super::error::GitError;
use super::progress::{Counters, Tracker};
use super::remote::{ref_name, with_deadline, Session};
use super::tree::{read_tree, ReadLimits, Sources};
use super::Auth;
use crate::outbound::Outbound;
use fabricsync_core::sources::Selection;

/// Mirror every branch and tag under its own name, moving refs even when history was rewritten.
const ALL_REFSPECS: [&str; 2] = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"];

/// What a fetch asks the remote for.
#[derive(Debug, Clone, Copy)]
pub enum Wanted<'a> {
    /// Every branch and tag.
    Everything,
    /// What these refs (as `Mirror::resolve` takes them) may name.
    Refs(&'a [&'a str]),
}

/// The full ref names a fetch of `wanted` mirrors, or None for every branch and tag: also when
/// a ref may be a commit id (all hex), which only a fetch of everything brings in.
fn wanted_refs(wanted: Wanted<'_>) -> Option<Vec<String>> {
    let Wanted::Refs(git_refs) = wanted else { return None };
    let mut names = Vec::new();
    for git_ref in git_refs {
        let hex = git_ref.len() >= 4 && git_ref.len() <= 40 && git_ref.bytes().all(|b| b.is_ascii_hexdigit());
        if git_ref.is_empty() || hex {
            return None;
        }
        if git_ref.starts_with("refs/heads/") || git_ref.starts_with("refs/tags/") {
            names.push(git_ref.to_string());
        } else if git_ref.starts_with("refs/") {
            // Only branches and tags are mirrored (and pruned): `resolve` finds no other ref.
            return None;
        } else {
            // resolve's order: refs/<name> (heads/x, tags/x), then a tag, then a branch.
            if git_ref.starts_with("heads/") || git_ref.starts_with("tags/") {
                names.push(format!("refs/{git_ref}"));
            }
            names.push(format!("refs/tags/{git_ref}"));
            names.push(format!("refs/heads/{git_ref}"));
        }
    }
    names.sort();
    names.dedup();
    Some(names)
}

/// Bytes and objects received so far by a fetch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchProgress {
    pub bytes_received: u64,
    pub objects_received: u64,
}

/// What a fetch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchReport {
    /// The cache had no refs before: this fetch was a full clone.
    pub initial: bool,
    /// Branches and tags the remote has.
    pub ref_count: usize,
    /// Local branches and tags created, moved or deleted to match the remote.
    pub refs_updated: usize,
    /// Size of the pack received (0 when already up to date).
    pub bytes_received: u64,
    /// Objects in the pack received (0 when already up to date).
    pub objects_received: u64,
    pub duration: Duration,
}

/// A bare repository caching one remote repository under a cache root.
#[derive(Debug, Clone)]
pub struct Mirror {
    git_dir: PathBuf,
    lock_path: PathBuf,
}

impl Mirror {
    /// Opens the cache of `repository_id` under `cache_root`, creating an empty one if needed.
    /// Safe against a concurrent creation by another thread or process.
    pub fn open_or_init(cache_root: &Path, repository_id: &str) -> Result<Mirror, GitError> {
        check_repository_id(repository_id)?;
        std::fs::create_dir_all(cache_root).map_err(|e| GitError::local("cannot create the git cache directory", e))?;
        let mirror = Mirror {
            git_dir: cache_root.join(format!("{repository_id}.git")),
            lock_path: cache_root.join(format!("{repository_id}.lock")),
        };
        if !mirror.git_dir.exists() {
            // Build it aside and rename into place: whoever renames first wins, the other's copy goes.
            let staging = tempfile::Builder::new()
                .prefix(&format!(".{repository_id}.init-"))
                .tempdir_in(cache_root)
                .map_err(|e| GitError::local("cannot create a staging directory", e))?;
            let fresh = staging.path().join("repo.git");
            gix::ThreadSafeRepository::init_opts(
                &fresh,
                gix::create::Kind::Bare,
                gix::create::Options::default(),
                gix::open::Options::isolated(),
            )
            .map_err(|e| GitError::local("cannot create the mirror repository", e))?;
            if let Err(e) = std::fs::rename(&fresh, &mirror.git_dir) {
                if !mirror.git_dir.exists() {
                    return Err(GitError::local("cannot move the new mirror repository into place", e));
                }
            }
        }
        mirror.open(gix::open::Options::isolated())?;
        Ok(mirror)
    }

    /// Path of the bare repository.
    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }

    pub(super) fn open(&self, options: gix::open::Options) -> Result<gix::Repository, GitError> {
        gix::open_opts(&self.git_dir, options)
            .map_err(|e| GitError::local(&format!("cannot open the mirror {}", self.git_dir.display()), e))
    }

    /// Fetches the branches and tags of `url` that are `wanted` (see `wanted_refs`; a full
    /// clone of them the first time, incremental after), removes those of them the remote no
    /// longer has, and reports progress as it goes. Fetches of the same mirror are serialized by
    /// a lock file (across processes too); waiting for it counts against `timeout`.
    pub fn fetch(
        &self,
        outbound: &Outbound,
        url: &str,
        auth: &Auth,
        wanted: Wanted<'_>,
        timeout: Duration,
        progress: &mut dyn FnMut(FetchProgress),
    ) -> Result<FetchReport, GitError> {
        let wanted = wanted_refs(wanted);
        let started = Instant::now();
        // Measured whole: a refused address or a wait for the lock that times out count too.
        let fetched = self.fetch_timed(outbound, url, auth, wanted, timeout, progress);
        let metrics = crate::metrics::global();
        match fetched {
            Ok(mut report) => {
                report.duration = started.elapsed();
                metrics.git_fetched(Ok(report.bytes_received), report.duration);
                Ok(report)
            }
            Err(e) => {
                let e = e.in_mirror(&self.git_dir);
                metrics.git_fetched(Err(e.code()), started.elapsed());
                Err(e)
            }
        }
    }

    fn fetch_timed(
        &self,
        outbound: &Outbound,
        url: &str,
        auth: &Auth,
        wanted: Option<Vec<String>>,
        timeout: Duration,
        progress: &mut dyn FnMut(FetchProgress),
    ) -> Result<FetchReport, GitError> {
        let started = Instant::now();
        let session = Session::new(outbound, url, auth, timeout)?;
        let lock = self.lock(started + timeout)?;
        let counters = Counters::default();
        let worker_counters = counters.clone();
        let mirror = self.clone();
        let mut last = FetchProgress::default();
        let tick = || {
            let (bytes_received, objects_received) = counters.read();
            let now = FetchProgress { bytes_received, objects_received };
            if now != last {
                last = now;
                progress(now);
            }
        };
        let left = timeout.saturating_sub(started.elapsed());
        with_deadline(left, "fetching", tick, move |cancel| {
            // Held until the worker ends, even when the caller has given up waiting.
            let _lock = lock;
            mirror.fetch_locked(&session, wanted.as_deref(), worker_counters, cancel)
        })
    }

    /// Takes the fetch lock of this mirror, waiting until `deadline`. The OS releases it when the
    /// holder dies, so a killed process never leaves the mirror locked.
    fn lock(&self, deadline: Instant) -> Result<File, GitError> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .map_err(|e| GitError::local("cannot open the mirror lock file", e))?;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(25))
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(GitError::Timeout("another fetch of this repository is still running".into()))
                }
                Err(TryLockError::Error(e)) => return Err(GitError::local("cannot lock the mirror", e)),
            }
        }
    }

    /// `wanted`: the full ref names to mirror; None mirrors every branch and tag.
    fn fetch_locked(
        &self,
        session: &Session,
        wanted: Option<&[String]>,
        counters: Counters,
        cancel: &std::sync::atomic::AtomicBool,
    ) -> Result<FetchReport, GitError> {
        let repo = self.open(session.open_options())?;
        let initial = local_refs(&repo)?.is_empty();
        let specs: Vec<String> = match wanted {
            Some(names) => names.iter().map(|name| format!("+{name}:{name}")).collect(),
            None => ALL_REFSPECS.iter().map(|s| s.to_string()).collect(),
        };
        let remote = session
            .remote(&repo)?
            .with_refspecs(specs.iter().map(String::as_str), Direction::Fetch)
            .map_err(|e| session.fail(&e))?
            .with_fetch_tags(gix::remote::fetch::Tags::None);
        let prepare = session
            .connect(&remote)?
            .prepare_fetch(Tracker::new(counters.clone()), gix::remote::ref_map::Options::default())
            .map_err(|e| session.fail(&e))?;
        let remote_refs: HashSet<String> = prepare
            .ref_map()
            .remote_refs
            .iter()
            .map(|r| ref_name(r).to_string())
            .filter(|name| name.starts_with("refs/heads/") || name.starts_with("refs/tags/"))
            .collect();
        let (refs_updated, objects_received) = if prepare.ref_map().mappings.is_empty() {
            // An empty remote: nothing to receive (gix refuses a fetch without matches).
            (0, 0)
        } else {
            let outcome = prepare.receive(Tracker::new(counters.clone()), cancel).map_err(|e| session.fail(&e))?;
            match outcome.status {
                gix::remote::fetch::Status::Change { write_pack_bundle, update_refs, .. } => {
                    (changed_refs(&update_refs)?, u64::from(write_pack_bundle.index.num_objects))
                }
                gix::remote::fetch::Status::NoPackReceived { update_refs, .. } => (changed_refs(&update_refs)?, 0),
            }
        };
        // A narrowed fetch learns only of the refs it asked for: only those may be stale.
        let pruned = prune(&repo, &remote_refs, wanted)?;
        let (bytes_received, _) = counters.read();
        Ok(FetchReport {
            initial,
            ref_count: remote_refs.len(),
            refs_updated: refs_updated + pruned,
            bytes_received,
            objects_received,
            duration: Duration::ZERO,
        })
    }

    /// Resolves a branch name, tag name, full ref name, or full or abbreviated (at least 4 hex
    /// digits) commit id to a full commit id. Names are tried in git's order: `refs/<name>`,
    /// `refs/tags/<name>`, `refs/heads/<name>`; a full 40-digit id wins over names, an abbreviated
    /// one comes after them. Tags are peeled to their commit.
    pub fn resolve(&self, git_ref: &str) -> Result<String, GitError> {
        let unknown = || GitError::UnknownRef(git_ref.to_owned());
        if git_ref.is_empty() || git_ref.len() > 1024 || git_ref.chars().any(|c| c.is_control()) {
            return Err(unknown());
        }
        let repo = self.open(gix::open::Options::isolated())?;
        let commit_of = |id| find_commit(&repo, id).map(|c| c.id.to_string()).ok_or_else(unknown);
        let is_hex = git_ref.len() >= 4 && git_ref.len() <= 40 && git_ref.bytes().all(|b| b.is_ascii_hexdigit());
        if git_ref.len() == 40 && is_hex {
            let id = gix::ObjectId::from_hex(git_ref.as_bytes()).map_err(|_| unknown())?;
            return commit_of(id);
        }
        let candidates = if git_ref.starts_with("refs/") {
            vec![git_ref.to_owned()]
        } else {
            vec![format!("refs/{git_ref}"), format!("refs/tags/{git_ref}"), format!("refs/heads/{git_ref}")]
        };
        for name in candidates {
            // Names that are not valid ref names simply do not match.
            if let Ok(Some(mut reference)) = repo.try_find_reference(name.as_str()) {
                let id = reference.peel_to_id().map_err(|e| GitError::local("cannot peel the ref", e))?;
                return commit_of(id.detach());
            }
        }
        if is_hex {
            let prefix = gix::hash::Prefix::from_hex(git_ref).map_err(|_| unknown())?;
            if let Ok(Some(Ok(id))) = repo.objects.lookup_prefix(prefix, None) {
                return commit_of(id);
            }
        }
        Err(unknown())
    }

    /// Reads the source files under `dir` at `commit` (a full commit id) from the object database,
    /// sorted by path, and the directory's layout. See [`read_tree`] for what is read, symlinks
    /// and limits.
    pub fn read_dir(
        &self,
        commit: &str,
        dir: &str,
        limits: &ReadLimits,
        selection: &Selection,
    ) -> Result<Sources, GitError> {
        let repo = self.open(gix::open::Options::isolated())?;
        let id = gix::ObjectId::from_hex(commit.as_bytes()).map_err(|_| GitError::UnknownRef(commit.to_owned()))?;
        let tree = find_commit(&repo, id)
            .ok_or_else(|| GitError::UnknownRef(commit.to_owned()))?
            .tree_id()
            .map_err(|e| GitError::local("cannot read the commit", e))?
            .detach();
        read_tree(&repo, tree, dir, limits, selection)
    }
}

/// A repository id names a directory in the cache: keep it to a plain file name.
fn check_repository_id(id: &str) -> Result<(), GitError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(GitError::InvalidPath {
            path: id.to_owned(),
            reason: "a repository id must be 1-128 of [A-Za-z0-9._-], not starting with '.'".into(),
        })
    }
}

/// The commit `id` is or (through tags) points to; None if absent or not a commit.
fn find_commit(repo: &gix::Repository, id: gix::ObjectId) -> Option<gix::Commit<'_>> {
    repo.try_find_object(id).ok().flatten()?.peel_to_commit().ok()
}

/// Full names of the local branches and tags.
fn local_refs(repo: &gix::Repository) -> Result<Vec<String>, GitError> {
    let fail = |e: &dyn std::fmt::Display| GitError::local("cannot list the mirror's refs", e);
    let platform = repo.references().map_err(|e| fail(&e))?;
    let mut names = Vec::new();
    for prefix in ["refs/heads/", "refs/tags/"] {
        for reference in platform.prefixed(prefix).map_err(|e| fail(&e))? {
            let reference = reference.map_err(|e| fail(&e))?;
            names.push(reference.name().as_bstr().to_string());
        }
    }
    Ok(names)
}

/// How many refs a fetch moved; a refused update would leave the mirror stale, so it is an error.
fn changed_refs(outcome: &gix::remote::fetch::refs::update::Outcome) -> Result<usize, GitError> {
    use gix::remote::fetch::refs::update::Mode;
    let mut changed = 0;
    for update in &outcome.updates {
        match &update.mode {
            Mode::NoChangeNeeded | Mode::ImplicitTagNotSentByRemote => {}
            Mode::FastForward | Mode::Forced | Mode::New => changed += 1,
            refused => return Err(GitError::Other(format!("the mirror refused a ref update: {refused}"))),
        }
    }
    Ok(changed)
}

/// Deletes local branches and tags (of `wanted`, when given) the remote no longer has; returns
/// how many.
fn prune(repo: &gix::Repository, remote_refs: &HashSet<String>, wanted: Option<&[String]>) -> Result<usize, GitError> {
    let mut pruned = 0;
    for name in local_refs(repo)? {
        if !remote_refs.contains(&name) && wanted.is_none_or(|w| w.contains(&name)) {
            let reference =
                repo.find_reference(name.as_str()).map_err(|e| GitError::local("cannot find a stale ref", e))?;
            reference.delete().map_err(|e| GitError::local(&format!("cannot delete the stale ref {name}"), e))?;
            pruned += 1;
        }
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetch_asks_for_the_refs_a_name_may_be_and_for_everything_for_a_commit_id() {
        let refs = |names: &[&str]| wanted_refs(Wanted::Refs(names));
        assert_eq!(refs(&["main"]).unwrap(), ["refs/heads/main", "refs/tags/main"]);
        assert_eq!(
            refs(&["tags/v1", "refs/heads/review-1", "main"]).unwrap(),
            [
                "refs/heads/main",
                "refs/heads/review-1",
                "refs/heads/tags/v1",
                "refs/tags/main",
                "refs/tags/tags/v1",
                "refs/tags/v1"
            ]
        );
        for commit in ["0123abcd", "3f1c0e5a9b7d2e4f6a8c0b1d3e5f7a9b0c2d4e6f", ""] {
            assert_eq!(refs(&["main", commit]), None, "{commit:?}");
        }
        assert_eq!(wanted_refs(Wanted::Everything), None);
        // Only branches and tags are mirrored.
        assert_eq!(refs(&["refs/pull/12/head"]), None);
        // Not all hex, or too short to be an abbreviated id: a name.
        assert!(refs(&["abc"]).is_some() && refs(&["release-2024"]).is_some());
    }

    #[test]
    fn repository_ids_are_plain_names() {
        for id in ["0b6c-42", "repo_1", "a.b"] {
            assert!(check_repository_id(id).is_ok(), "{id}");
        }
        for id in ["", ".", "..", ".hidden", "a/b", "../x", "a b", &"x".repeat(129)] {
            assert!(check_repository_id(id).is_err(), "{id}");
        }
    }
}
