//! Writing to a repository: a commit made in the mirror from whole-file edits (gix writes the
//! blobs, trees and commit; there is no worktree), then pushed with the `git` command, since gix
//! cannot push. The push is isolated as fetches are (`remote::Session::push`).

use std::time::Duration;

use gix::object::tree::EntryKind;
use gix::ObjectId;

use super::error::GitError;
use super::mirror::Mirror;
use super::remote::Session;
use super::Auth;
use crate::outbound::Outbound;

/// Who a commit is by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub name: String,
    pub email: String,
}

/// The committer of every commit fabricsync makes; the author is the caller.
const COMMITTER: (&str, &str) = ("fabricsync", "fabricsync@localhost");

/// A file's new content at a repository path; None removes it.
pub type FileChange = (String, Option<Vec<u8>>);

/// How a push ended, when the remote answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Done,
    /// The branch moved on the remote since our commit's parent: fetch, and try again on top.
    Moved,
}

fn storage(err: impl std::fmt::Display) -> GitError {
    GitError::local("cannot write to the mirror", err)
}

fn object_id(commit: &str) -> Result<ObjectId, GitError> {
    ObjectId::from_hex(commit.as_bytes()).map_err(|_| GitError::UnknownRef(commit.to_owned()))
}

fn signature(name: &str, email: &str) -> gix::actor::Signature {
    gix::actor::Signature { name: name.into(), email: email.into(), time: gix::date::Time::now_utc() }
}

impl Mirror {
    /// Writes a commit on top of `parent` with `changes` applied to its tree; no ref points to
    /// it until it is pushed (and fetched back).
    pub fn commit(
        &self,
        parent: &str,
        changes: &[FileChange],
        message: &str,
        author: &Author,
    ) -> Result<String, GitError> {
        let repo = self.open(gix::open::Options::isolated())?;
        let parent = object_id(parent)?;
        let tree = repo.find_commit(parent).map_err(storage)?.tree_id().map_err(storage)?.detach();
        let mut editor = repo.edit_tree(tree).map_err(storage)?;
        for (path, content) in changes {
            match content {
                Some(bytes) => {
                    let blob = repo.write_blob(bytes).map_err(storage)?.detach();
                    editor.upsert(path.as_str(), EntryKind::Blob, blob).map_err(storage)?;
                }
                None => {
                    editor.remove(path.as_str()).map_err(storage)?;
                }
            }
        }
        let tree = editor.write().map_err(storage)?.detach();
        let commit = gix::objs::Commit {
            tree,
            parents: [parent].into_iter().collect(),
            author: signature(&author.name, &author.email),
            committer: signature(COMMITTER.0, COMMITTER.1),
            encoding: None,
            message: message.into(),
            extra_headers: Vec::new(),
        };
        Ok(repo.write_object(commit).map_err(storage)?.detach().to_string())
    }

    /// The paths among `paths` whose content differs between commits `a` and `b`.
    pub fn changed_between(&self, a: &str, b: &str, paths: &[String]) -> Result<Vec<String>, GitError> {
        let repo = self.open(gix::open::Options::isolated())?;
        let blob_at = |commit: ObjectId, path: &str| -> Result<Option<ObjectId>, GitError> {
            let tree = repo.find_commit(commit).map_err(storage)?.tree().map_err(storage)?;
            Ok(tree.lookup_entry_by_path(path).map_err(storage)?.map(|e| e.object_id()))
        };
        let (a, b) = (object_id(a)?, object_id(b)?);
        let mut changed = Vec::new();
        for path in paths {
            if blob_at(a, path)? != blob_at(b, path)? {
                changed.push(path.clone());
            }
        }
        Ok(changed)
    }

    /// Checks that each `(path, read)` of an edit can be written at `commit`: a file the edit
    /// read (`read`) must be a regular file there (not a symlink a pull followed, not an
    /// executable whose mode a rewrite would drop); a new one must not exist (hidden, excluded
    /// or unreadable files are not read, so their content is unknown to the edit). The first
    /// path that cannot, with why.
    pub fn unwritable(&self, commit: &str, paths: &[(String, bool)]) -> Result<Option<(String, String)>, GitError> {
        let repo = self.open(gix::open::Options::isolated())?;
        let tree = repo.find_commit(object_id(commit)?).map_err(storage)?.tree().map_err(storage)?;
        for (path, read) in paths {
            let kind = tree.lookup_entry_by_path(path.as_str()).map_err(storage)?.map(|e| e.mode().kind());
            let why = match (read, kind) {
                (true, Some(EntryKind::Blob)) | (false, None) => continue,
                (true, _) => "is a symlink or an executable file: edit the file it stands for",
                (false, Some(_)) => "exists, but a pull does not read it (hidden, excluded or not UTF-8)",
            };
            return Ok(Some((path.clone(), why.into())));
        }
        Ok(None)
    }

    /// Pushes `commit` to `branch` of `url`, without force: a branch that moved meanwhile
    /// answers `Moved`.
    pub fn push(
        &self,
        outbound: &Outbound,
        url: &str,
        auth: &Auth,
        timeout: Duration,
        commit: &str,
        branch: &str,
    ) -> Result<Pushed, GitError> {
        object_id(commit)?;
        let session = Session::new(outbound, url, auth, timeout)?;
        session.push(self.git_dir(), &format!("{commit}:refs/heads/{branch}"))
    }
}
