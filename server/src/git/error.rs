//! Typed git errors and the classification of gix/ssh failures into them; every message is
//! scrubbed of the credentials in use by `crate::redact`.

use std::io;

use crate::outbound::Refused;
use crate::redact::Redactor;

/// The class of a [`GitError`], for mapping to API statuses without matching on messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    Dns,
    ConnectionRefused,
    Timeout,
    Tls,
    Authentication,
    HostKey,
    NotARepository,
    Protocol,
    /// The remote broke the connection off or answered with a server error (HTTP 5xx).
    RemoteFailed,
    InvalidUrl,
    UnknownRef,
    DirectoryNotFound,
    InvalidPath,
    FileTooLarge,
    LimitExceeded,
    SymlinkEscapes,
    BrokenSymlink,
    /// The server's outbound policy refused the address or path.
    Refused,
    /// The file system of the git mirrors has no space left.
    DiskFull,
    Other,
}

/// A git failure. Messages never contain credentials: remote details are scrubbed of URL
/// userinfo and of the secrets in use before they are stored here.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("host name could not be resolved: {0}")]
    Dns(String),
    #[error("connection refused: {0}")]
    ConnectionRefused(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("TLS failure: {0}")]
    Tls(String),
    #[error("authentication failed: {0}")]
    Authentication(String),
    #[error("ssh host key verification failed: {0}")]
    HostKey(String),
    #[error("not a git repository, or not found: {0}")]
    NotARepository(String),
    #[error("git protocol error: {0}")]
    Protocol(String),
    #[error("the Git server failed: {0}")]
    RemoteFailed(String),
    #[error("invalid repository URL: {0}")]
    InvalidUrl(String),
    #[error("unknown ref {0:?}: no such branch, tag or commit")]
    UnknownRef(String),
    #[error("directory {0:?} does not exist at that commit")]
    DirectoryNotFound(String),
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error("file {path:?} is {size} bytes, over the limit of {limit} bytes")]
    FileTooLarge { path: String, size: u64, limit: u64 },
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    #[error("symlink {path:?} points outside the repository (target {target:?})")]
    SymlinkEscapes { path: String, target: String },
    #[error("symlink {path:?} -> {target:?} does not resolve to a file in the repository")]
    BrokenSymlink { path: String, target: String },
    #[error("refused: {0}")]
    Refused(String),
    /// Names the mirror (see `Mirror::fetch`); nothing of the failed fetch is kept.
    #[error("no space left on the disk: {0}")]
    DiskFull(String),
    #[error("git: {0}")]
    Other(String),
}

impl FailureKind {
    /// The diagnostic code of runs that failed this way, e.g. `git.directory_not_found`.
    pub fn code(self) -> &'static str {
        match self {
            FailureKind::Dns => "git.dns",
            FailureKind::ConnectionRefused => "git.connection_refused",
            FailureKind::Timeout => "git.timeout",
            FailureKind::Tls => "git.tls",
            FailureKind::Authentication => "git.authentication",
            FailureKind::HostKey => "git.host_key",
            FailureKind::NotARepository => "git.not_a_repository",
            FailureKind::Protocol => "git.protocol",
            FailureKind::RemoteFailed => "git.remote_failed",
            FailureKind::InvalidUrl => "git.invalid_url",
            FailureKind::UnknownRef => "git.unknown_ref",
            FailureKind::DirectoryNotFound => "git.directory_not_found",
            FailureKind::InvalidPath => "git.invalid_path",
            FailureKind::FileTooLarge => "git.file_too_large",
            FailureKind::LimitExceeded => "git.limit_exceeded",
            FailureKind::SymlinkEscapes => "git.symlink_escapes",
            FailureKind::BrokenSymlink => "git.broken_symlink",
            FailureKind::Refused => "git.refused",
            FailureKind::DiskFull => "git.disk_full",
            FailureKind::Other => "git.other",
        }
    }
}

impl GitError {
    /// The diagnostic code of its class (see [`FailureKind::code`]).
    pub fn code(&self) -> &'static str {
        self.kind().code()
    }

    pub fn kind(&self) -> FailureKind {
        match self {
            GitError::Dns(_) => FailureKind::Dns,
            GitError::ConnectionRefused(_) => FailureKind::ConnectionRefused,
            GitError::Timeout(_) => FailureKind::Timeout,
            GitError::Tls(_) => FailureKind::Tls,
            GitError::Authentication(_) => FailureKind::Authentication,
            GitError::HostKey(_) => FailureKind::HostKey,
            GitError::NotARepository(_) => FailureKind::NotARepository,
            GitError::Protocol(_) => FailureKind::Protocol,
            GitError::RemoteFailed(_) => FailureKind::RemoteFailed,
            GitError::InvalidUrl(_) => FailureKind::InvalidUrl,
            GitError::UnknownRef(_) => FailureKind::UnknownRef,
            GitError::DirectoryNotFound(_) => FailureKind::DirectoryNotFound,
            GitError::InvalidPath { .. } => FailureKind::InvalidPath,
            GitError::FileTooLarge { .. } => FailureKind::FileTooLarge,
            GitError::LimitExceeded(_) => FailureKind::LimitExceeded,
            GitError::SymlinkEscapes { .. } => FailureKind::SymlinkEscapes,
            GitError::BrokenSymlink { .. } => FailureKind::BrokenSymlink,
            GitError::Refused(_) => FailureKind::Refused,
            GitError::DiskFull(_) => FailureKind::DiskFull,
            GitError::Other(_) => FailureKind::Other,
        }
    }

    /// The message every failure of a file:// repository gets, whatever the file-system fact.
    pub(crate) fn unreadable() -> GitError {
        GitError::NotARepository(Refused::Unreadable.to_string())
    }

    /// A local failure (object database, file system) of the mirror; no credentials involved.
    pub(crate) fn local(context: &str, err: impl std::fmt::Display) -> GitError {
        let detail = format!("{context}: {err}");
        if says_disk_full(&detail) {
            GitError::DiskFull(detail)
        } else {
            GitError::Other(detail)
        }
    }

    /// This failure of the mirror at `git_dir`, as a full disk naming that mirror when it was
    /// one (whatever layer, gix's or ours, reported it).
    pub(crate) fn in_mirror(self, git_dir: &std::path::Path) -> GitError {
        let detail = match self {
            GitError::DiskFull(detail) => detail,
            GitError::Other(detail) if says_disk_full(&detail) => detail,
            other => return other,
        };
        GitError::DiskFull(format!("git mirror {}: {detail}", git_dir.display()))
    }
}

/// ENOSPC (and EDQUOT) as the OS words them.
fn says_disk_full(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    text.contains("no space left on device") || text.contains("disk quota exceeded")
}

impl From<Refused> for GitError {
    fn from(refused: Refused) -> GitError {
        match refused {
            Refused::Unresolved { .. } => GitError::Dns(refused.to_string()),
            Refused::Unreadable => GitError::unreadable(),
            _ => GitError::Refused(refused.to_string()),
        }
    }
}

/// What a failed remote operation left to look at.
#[derive(Debug, Default)]
pub(crate) struct Evidence {
    /// Messages of the error and its causes, outermost first, and lines ssh or the remote side printed.
    pub texts: Vec<String>,
    pub io_kinds: Vec<io::ErrorKind>,
    /// gix classified the failure as missing or rejected credentials.
    pub unauthenticated: bool,
}

impl Evidence {
    pub(crate) fn from_gix(err: &gix::Error) -> Evidence {
        let mut evidence = Evidence { unauthenticated: err.is_unauthenticated(), ..Evidence::default() };
        for cause in err.iter_errors() {
            if let Some(io) = cause.downcast_ref::<io::Error>() {
                evidence.io_kinds.push(io.kind());
            }
            let text = cause.to_string();
            if !text.is_empty() && !evidence.texts.contains(&text) {
                evidence.texts.push(text);
            }
        }
        evidence
    }

    fn io(&self, kind: io::ErrorKind) -> bool {
        self.io_kinds.contains(&kind)
    }

    /// The most specific failure the evidence supports. Typed evidence (I/O kinds, gix's own
    /// classification) wins over words; words are matched as phrases, outside of URLs, as host
    /// names and paths are chosen by users. Order matters: ssh reports DNS failures as refused
    /// connections, and "not found" also appears inside other failures.
    pub(crate) fn classify(&self) -> FailureKind {
        let text = self.texts.iter().map(|t| without_urls(t).to_ascii_lowercase()).collect::<Vec<_>>().join("\n");
        let any = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
        // Our own resolver's refusal, wherever the transport wrapped it (e.g. as a DNS error).
        if any(&["outbound policy:"]) {
            FailureKind::Refused
        } else if self.io(io::ErrorKind::StorageFull) || self.io(io::ErrorKind::QuotaExceeded) || says_disk_full(&text)
        {
            // Local, though met while receiving: the remote is not to blame.
            FailureKind::DiskFull
        } else if self.io(io::ErrorKind::TimedOut) || any(&["timed out"]) {
            FailureKind::Timeout
        } else if any(&[
            "dns error",
            "failed to lookup address",
            "could not resolve hostname",
            "name or service not known",
            "temporary failure in name resolution",
            "no address associated with hostname",
        ]) {
            FailureKind::Dns
        } else if self.io(io::ErrorKind::ConnectionRefused) || any(&["connection refused"]) {
            FailureKind::ConnectionRefused
        } else if any(&["host key verification failed", "host identification has changed", "no matching host key type"])
        {
            FailureKind::HostKey
        } else if any(&[
            "peer certificate",
            "peer sent no certificates",
            "certificate verify failed",
            "ssl certificate problem",
            "received corrupt message",
            "received fatal alert",
            "peer is incompatible",
            "tls handshake",
        ]) {
            FailureKind::Tls
        } else if self.unauthenticated
            || any(&[
                "permission denied (publickey",
                "permission denied, please try again",
                "authentication failed",
                "too many authentication failures",
            ])
        {
            FailureKind::Authentication
        } else if [io::ErrorKind::ConnectionReset, io::ErrorKind::ConnectionAborted, io::ErrorKind::BrokenPipe]
            .iter()
            .any(|&k| self.io(k))
            || any(&["connection reset", "broken pipe", "http status 5", "internal server error", "bad gateway"])
            // The pack ended before it was whole: the remote stopped in the middle of its answer.
            || (any(&["the pack sent by the remote", "the received pack"])
                && (self.io(io::ErrorKind::UnexpectedEof) || any(&["failed to fill whole buffer", "unexpected end"])))
        {
            FailureKind::RemoteFailed
        } else if any(&[
            "does not appear to be a git repository",
            "not a git repository",
            "repository not exported",
            "no such repository",
            "is a valid git directory",
            "status 404",
            "not found",
        ]) {
            FailureKind::NotARepository
        } else if self.io(io::ErrorKind::UnexpectedEof)
            || any(&["packet line", "capabilities", "protocol", "unexpected end"])
        {
            FailureKind::Protocol
        } else {
            FailureKind::Other
        }
    }

    /// A one-line description: the distinct messages, outermost first, scrubbed and bounded.
    pub(crate) fn describe(&self, redactor: &Redactor) -> String {
        let joined = self.texts.iter().map(|t| t.trim()).filter(|t| !t.is_empty()).collect::<Vec<_>>().join(": ");
        redactor.clean(&joined)
    }

    pub(crate) fn into_error(self, redactor: &Redactor) -> GitError {
        let detail = self.describe(redactor);
        remote_error(self.classify(), detail)
    }
}

/// `text` with every `scheme://...` token replaced by `<url>`.
fn without_urls(text: &str) -> String {
    text.split_inclusive(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '(' || c == ')')
        .map(|token| match token.find("://") {
            Some(_) => {
                let end = token
                    .trim_end_matches(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '(' || c == ')');
                format!("<url>{}", &token[end.len()..])
            }
            None => token.to_owned(),
        })
        .collect()
}

/// The error of `kind` for a remote operation, with an already scrubbed `detail`.
pub(crate) fn remote_error(kind: FailureKind, detail: String) -> GitError {
    match kind {
        FailureKind::Dns => GitError::Dns(detail),
        FailureKind::ConnectionRefused => GitError::ConnectionRefused(detail),
        FailureKind::Timeout => GitError::Timeout(detail),
        FailureKind::Tls => GitError::Tls(detail),
        FailureKind::Authentication => GitError::Authentication(detail),
        FailureKind::HostKey => GitError::HostKey(detail),
        FailureKind::NotARepository => GitError::NotARepository(detail),
        FailureKind::Protocol => GitError::Protocol(detail),
        FailureKind::RemoteFailed => GitError::RemoteFailed(detail),
        FailureKind::InvalidUrl => GitError::InvalidUrl(detail),
        FailureKind::Refused => GitError::Refused(detail),
        FailureKind::DiskFull => GitError::DiskFull(detail),
        _ => GitError::Other(detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence(texts: &[&str]) -> Evidence {
        Evidence { texts: texts.iter().map(|t| t.to_string()).collect(), ..Evidence::default() }
    }

    #[test]
    fn a_full_disk_names_the_mirror() {
        let mirror = std::path::Path::new("/data/git/r.git");
        let full = GitError::Other("write pack: No space left on device (os error 28)".into()).in_mirror(mirror);
        assert_eq!(full.kind(), FailureKind::DiskFull);
        assert!(full.to_string().starts_with("no space left on the disk: git mirror /data/git/r.git: "), "{full}");
        let local = GitError::local("cannot create a staging directory", "No space left on device (os error 28)");
        assert_eq!(local.kind(), FailureKind::DiskFull);
        assert_eq!(GitError::Other("bad object".into()).in_mirror(mirror).kind(), FailureKind::Other);
        assert_eq!(GitError::Timeout("slow".into()).in_mirror(mirror).kind(), FailureKind::Timeout);
    }

    #[test]
    fn classification_prefers_the_specific_cause() {
        let cases = [
            (&["ssh: Could not resolve hostname nope.invalid: Name or service not known"][..], FailureKind::Dns),
            (
                &[
                    "error sending request",
                    "client error (Connect)",
                    "dns error",
                    "failed to lookup address information",
                ],
                FailureKind::Dns,
            ),
            (&["ssh: connect to host 127.0.0.1 port 1: Connection refused"], FailureKind::ConnectionRefused),
            (&["Failed to write pack", "No space left on device (os error 28)"], FailureKind::DiskFull),
            (&["Host key verification failed."], FailureKind::HostKey),
            (&["invalid peer certificate: UnknownIssuer"], FailureKind::Tls),
            (
                &["Credentials provided for \"https://tls.timed-out.example/not found\" were not accepted: 401"],
                FailureKind::Other,
            ),
            (&["git@127.0.0.1: Permission denied (publickey)."], FailureKind::Authentication),
            (&["fatal: '/x' does not appear to be a git repository"], FailureKind::NotARepository),
            (&["Received HTTP status 404"], FailureKind::NotARepository),
            (&["A packet line could not be decoded"], FailureKind::Protocol),
            (&["Received HTTP status 500"], FailureKind::RemoteFailed),
            (&["io error", "Connection reset by peer (os error 104)"], FailureKind::RemoteFailed),
            (
                &[
                    "Failed to consume the pack sent by the remote",
                    "Failed to write the received pack",
                    "An IO operation failed while streaming an entry: failed to fill whole buffer",
                ],
                FailureKind::RemoteFailed,
            ),
            (&["something else entirely"], FailureKind::Other),
            (
                &["client error (Connect)", "dns error", "outbound policy: meta (169.254.169.254) is denied"],
                FailureKind::Refused,
            ),
        ];
        for (texts, kind) in cases {
            assert_eq!(evidence(texts).classify(), kind, "{texts:?}");
        }
        let e = Evidence { io_kinds: vec![io::ErrorKind::ConnectionRefused], ..Evidence::default() };
        assert_eq!(e.classify(), FailureKind::ConnectionRefused);
        let e = Evidence { unauthenticated: true, ..evidence(&["Credentials provided were not accepted"]) };
        assert_eq!(e.classify(), FailureKind::Authentication);
    }

    #[test]
    fn urls_are_masked_for_matching() {
        assert_eq!(without_urls("for \"https://h/x\" (http://a) end"), "for \"<url>\" (<url>) end");
    }

    #[test]
    fn description_is_scrubbed_and_bounded() {
        let r = Redactor::new(vec!["s3cret".into()]);
        let e = evidence(&["outer https://x:s3cret@h/r", "inner\nline s3cret", &"y".repeat(2000)]);
        let d = e.describe(&r);
        assert!(!d.contains("s3cret"), "{d}");
        assert!(d.starts_with("outer https://h/r: inner line ***"), "{d}");
        assert!(d.len() <= crate::redact::MAX_MESSAGE, "{}", d.len());
    }
}
