// TEMPORARY compile shim, replaced by the real git module (not committed).
use std::time::Duration;
pub enum Auth { None, Token { username: String, token: String }, Basic { username: String, password: String }, SshKey { private_key: String, known_hosts: Option<String> } }
pub struct ProbeReport { pub default_branch: Option<String>, pub ref_count: usize, pub latency: Duration }
#[derive(Debug, Clone, Copy, PartialEq, Eq)] pub enum FailureKind { Dns, ConnectionRefused, Timeout, Tls, Authentication, NotARepository, Protocol, HostKey, InvalidUrl, UnknownRef, DirectoryNotFound, FileTooLarge, SymlinkEscapes, Other }
#[derive(Debug, thiserror::Error)] #[error("{message}")] pub struct GitError { kind: FailureKind, message: String }
impl GitError { pub fn kind(&self) -> FailureKind { self.kind } }
pub fn probe(_url: &str, _auth: &Auth, _timeout: Duration) -> Result<ProbeReport, GitError> { Err(GitError { kind: FailureKind::Other, message: "shim".into() }) }
