//! Reading the YAML files of a directory at a commit straight from the object database.
//!
//! Symlinks: every symlink met under the directory is checked, and one whose target leaves the
//! repository (absolute, or climbing above the root) is an error. A symlink named `*.yaml`/`*.yml`
//! is followed within the commit's tree (through real directories, at most 8 hops) and its
//! target's content is returned under the link's own path; a target that is not a file there is an
//! error. Other symlinks (to directories, say) are not followed, which also rules out cycles.
//! Submodules are skipped. Which files are read is `fabricsync_core::sources`' decision (hidden
//! entries, an HNP layout, the fabric's globs).

use gix::object::tree::EntryKind;
use gix::ObjectId;

use super::error::GitError;
use fabricsync_core::sources::{Selection, HNP_MARKER};
use fabricsync_core::vocab::Layout;

pub use fabricsync_core::manifest::SourceFile;

/// Bounds on what one read may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    pub max_file_bytes: u64,
    pub max_total_bytes: u64,
    pub max_files: usize,
}

const MAX_SYMLINK_HOPS: usize = 8;

/// The sources of a directory: its selected files, sorted by path, and its layout.
#[derive(Debug)]
pub struct Sources {
    pub files: Vec<SourceFile>,
    pub layout: Layout,
}

/// The components of a directory given relative to the repository root; "" and "." are the root.
fn dir_components(dir: &str) -> Result<Vec<&str>, GitError> {
    let invalid = |reason: &str| GitError::InvalidPath { path: dir.to_owned(), reason: reason.to_owned() };
    if dir.starts_with('/') {
        return Err(invalid("must be relative to the repository root"));
    }
    if dir.chars().any(char::is_control) {
        return Err(invalid("contains control characters"));
    }
    let components: Vec<&str> = dir.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    if components.contains(&"..") {
        return Err(invalid("must not contain '..'"));
    }
    Ok(components)
}

/// The repo-relative path a symlink at `link` with `target` points to, or None if it leaves the
/// repository.
fn link_destination(link: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            name => parts.push(name),
        }
    }
    Some(parts.join("/"))
}

struct Reader<'r> {
    repo: &'r gix::Repository,
    root: ObjectId,
    limits: &'r ReadLimits,
    files: Vec<SourceFile>,
    total: u64,
    dir: String,
}

fn storage(err: impl std::fmt::Display) -> GitError {
    GitError::local("cannot read the repository's objects", err)
}

impl Reader<'_> {
    /// (name, kind, id) of the entries of tree `id`.
    fn entries(&self, id: ObjectId) -> Result<Vec<(String, EntryKind, ObjectId)>, GitError> {
        let tree = self.repo.find_tree(id).map_err(storage)?;
        let decoded = tree.decode().map_err(storage)?;
        Ok(decoded
            .entries
            .iter()
            .map(|e| (String::from_utf8_lossy(e.filename).into_owned(), e.mode.kind(), e.oid.to_owned()))
            .collect())
    }

    /// The entry at the repo-relative `path`, walking real directories only.
    fn lookup(&self, path: &str) -> Result<Option<(EntryKind, ObjectId)>, GitError> {
        let mut current = (EntryKind::Tree, self.root);
        for component in path.split('/').filter(|c| !c.is_empty()) {
            if current.0 != EntryKind::Tree {
                return Ok(None);
            }
            match self.entries(current.1)?.into_iter().find(|(name, ..)| name == component) {
                Some((_, kind, id)) => current = (kind, id),
                None => return Ok(None),
            }
        }
        Ok(Some(current))
    }

    fn link_target(&self, id: ObjectId) -> Result<String, GitError> {
        let blob = self.repo.find_object(id).map_err(storage)?;
        Ok(String::from_utf8_lossy(&blob.data).into_owned())
    }

    /// Where the symlink at `path` (blob `id`) points to, as a repo-relative path.
    fn destination(&self, path: &str, id: ObjectId) -> Result<String, GitError> {
        let target = self.link_target(id)?;
        link_destination(path, &target).ok_or_else(|| GitError::SymlinkEscapes { path: path.to_owned(), target })
    }

    /// The file a yaml-named symlink ends at, following further symlinks.
    fn follow(&self, path: &str, id: ObjectId) -> Result<ObjectId, GitError> {
        let (mut at, mut id) = (path.to_owned(), id);
        for _ in 0..MAX_SYMLINK_HOPS {
            let destination = self.destination(&at, id)?;
            match self.lookup(&destination)? {
                Some((EntryKind::Blob | EntryKind::BlobExecutable, blob)) => return Ok(blob),
                Some((EntryKind::Link, next)) => (at, id) = (destination, next),
                _ => break,
            }
        }
        Err(GitError::BrokenSymlink { path: path.to_owned(), target: self.link_target(id)? })
    }

    fn add(&mut self, path: String, blob: ObjectId) -> Result<(), GitError> {
        let limits = self.limits;
        if self.files.len() >= limits.max_files {
            return Err(GitError::LimitExceeded(format!(
                "more than {} YAML files under {:?}",
                limits.max_files, self.dir
            )));
        }
        let size = self.repo.find_header(blob).map_err(storage)?.size();
        if size > limits.max_file_bytes {
            return Err(GitError::FileTooLarge { path, size, limit: limits.max_file_bytes });
        }
        self.total += size;
        if self.total > limits.max_total_bytes {
            return Err(GitError::LimitExceeded(format!(
                "the YAML files under {:?} total more than {} bytes",
                self.dir, limits.max_total_bytes
            )));
        }
        let bytes = self.repo.find_object(blob).map_err(storage)?.detach().data;
        self.files.push(SourceFile { path, bytes });
        Ok(())
    }
}

/// Reads the source files under `dir` (relative; "" or "." is the root) in the tree `root`,
/// recursively: those `selection` reads, once the directory's layout is known.
pub(crate) fn read_tree(
    repo: &gix::Repository,
    root: ObjectId,
    dir: &str,
    limits: &ReadLimits,
    selection: &Selection,
) -> Result<Sources, GitError> {
    let components = dir_components(dir)?;
    let prefix = components.join("/");
    let mut reader = Reader { repo, root, limits, files: Vec::new(), total: 0, dir: prefix.clone() };
    let start = match reader.lookup(&prefix)? {
        Some((EntryKind::Tree, id)) => id,
        _ => return Err(GitError::DirectoryNotFound(dir.to_owned())),
    };
    let marker = if prefix.is_empty() { HNP_MARKER.to_owned() } else { format!("{prefix}/{HNP_MARKER}") };
    let layout = match reader.lookup(&marker)? {
        Some((EntryKind::Blob | EntryKind::BlobExecutable, _)) => Layout::Hnp,
        _ => Layout::Plain,
    };
    let selection = selection.clone().with_layout(layout);
    // (path relative to `dir`, tree)
    let mut pending = vec![(String::new(), start)];
    while let Some((path, tree)) = pending.pop() {
        for (name, kind, id) in reader.entries(tree)? {
            let relative = if path.is_empty() { name.clone() } else { format!("{path}/{name}") };
            let entry_path = if prefix.is_empty() { relative.clone() } else { format!("{prefix}/{relative}") };
            match kind {
                EntryKind::Tree if selection.enters(&relative) => pending.push((relative, id)),
                EntryKind::Blob | EntryKind::BlobExecutable if selection.reads(&relative) => {
                    reader.add(entry_path, id)?
                }
                EntryKind::Link if selection.reads(&relative) => {
                    let blob = reader.follow(&entry_path, id)?;
                    reader.add(entry_path, blob)?;
                }
                EntryKind::Link => {
                    reader.destination(&entry_path, id)?;
                }
                EntryKind::Tree | EntryKind::Blob | EntryKind::BlobExecutable | EntryKind::Commit => {}
            }
        }
    }
    let mut files = reader.files;
    files.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    Ok(Sources { files, layout })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_relative_without_parent_steps() {
        assert_eq!(dir_components("").ok(), Some(vec![]));
        assert_eq!(dir_components(".").ok(), Some(vec![]));
        assert_eq!(dir_components("./fabric//vpcs/").ok(), Some(vec!["fabric", "vpcs"]));
        for bad in ["/etc", "a/../b", "..", "a\0b"] {
            assert!(matches!(dir_components(bad), Err(GitError::InvalidPath { .. })), "{bad}");
        }
    }

    #[test]
    fn symlink_destinations_stay_inside() {
        assert_eq!(link_destination("a/b/link.yaml", "../c.yaml").as_deref(), Some("a/c.yaml"));
        assert_eq!(link_destination("link.yaml", "./x/./y.yaml").as_deref(), Some("x/y.yaml"));
        assert_eq!(link_destination("a/link.yaml", "../../etc/passwd"), None);
        assert_eq!(link_destination("link.yaml", "/etc/passwd"), None);
        assert_eq!(link_destination("a/b/link", "../../x").as_deref(), Some("x"));
    }
}
