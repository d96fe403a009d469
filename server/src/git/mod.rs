//! Git access with gix: probing remotes, a bare mirror cache per repository, reading the YAML
//! files of a directory at a commit straight from the object database, and writing commits
//! (pushed with the git command, under the same isolation).
//!
//! The API is blocking; async callers run it inside `tokio::task::spawn_blocking`. Every network
//! operation runs in a throwaway worker thread under a deadline, with configuration isolated from
//! the machine (no system/global git config, no credential helpers, no prompts, no ssh agent or
//! ~/.ssh/config), and every error message is scrubbed of the credentials in use.

mod error;
mod mirror;
mod progress;
mod remote;
mod tree;
mod write;

use std::fmt;

use base64::Engine as _;

pub use error::{FailureKind, GitError};
pub use mirror::{FetchProgress, FetchReport, Mirror, Wanted};
pub use remote::{endpoint, probe, same_repository, Endpoint, ProbeReport};
pub use tree::{ReadLimits, SourceFile, Sources};
pub use write::{Author, FileChange, Pushed};

/// Username sent with a token when none is configured; GitHub, GitLab and Gitea all accept a
/// token as the password of any username.
pub const DEFAULT_TOKEN_USERNAME: &str = "x-access-token";

/// Credentials for a remote. Debug never shows the secrets.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    /// HTTPS token, sent as the password of HTTP basic auth (`username` empty: [`DEFAULT_TOKEN_USERNAME`]).
    Token {
        username: String,
        token: String,
    },
    /// HTTPS username and password (HTTP basic auth).
    Basic {
        username: String,
        password: String,
    },
    /// SSH private key (OpenSSH or PEM, no passphrase) and optionally the server's known_hosts lines.
    /// Without known_hosts the host key is accepted as presented (trust on first use, not remembered).
    SshKey {
        private_key: String,
        known_hosts: Option<String>,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("Auth::None"),
            Auth::Token { username, .. } => write!(f, "Auth::Token {{ username: {username:?}, token: *** }}"),
            Auth::Basic { username, .. } => write!(f, "Auth::Basic {{ username: {username:?}, password: *** }}"),
            Auth::SshKey { known_hosts, .. } => {
                write!(f, "Auth::SshKey {{ private_key: ***, known_hosts: {} }}", known_hosts.is_some())
            }
        }
    }
}

impl Auth {
    /// The (username, password) of HTTP basic auth, if these credentials are for HTTP.
    fn http_identity(&self) -> Option<(&str, &str)> {
        match self {
            Auth::Token { username, token } if username.is_empty() => Some((DEFAULT_TOKEN_USERNAME, token)),
            Auth::Token { username, token } => Some((username, token)),
            Auth::Basic { username, password } => Some((username, password)),
            Auth::None | Auth::SshKey { .. } => None,
        }
    }

    /// Strings that must never appear in an error message.
    fn secrets(&self) -> Vec<String> {
        match self {
            Auth::None => Vec::new(),
            Auth::Token { token: secret, .. } | Auth::Basic { password: secret, .. } => {
                let (username, _) = self.http_identity().unwrap_or_default();
                // The basic-auth header value too, in case a transport ever echoes it.
                let header = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{secret}"));
                vec![secret.clone(), header]
            }
            Auth::SshKey { private_key, .. } => {
                // The whole key and each of its base64 lines, should any line ever be quoted.
                let mut secrets = vec![private_key.clone()];
                secrets.extend(
                    private_key.lines().filter(|l| l.len() >= 16 && !l.starts_with("-----")).map(str::to_owned),
                );
                secrets
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let auths = [
            Auth::Token { username: String::new(), token: "s3cr3t-token".into() },
            Auth::Basic { username: "u".into(), password: "s3cr3t-pass".into() },
            Auth::SshKey { private_key: "s3cr3t-key".into(), known_hosts: None },
        ];
        for auth in auths {
            let shown = format!("{auth:?}");
            assert!(!shown.contains("s3cr3t"), "{shown}");
        }
    }

    #[test]
    fn token_uses_default_username_and_header_is_a_secret() {
        let auth = Auth::Token { username: String::new(), token: "t".into() };
        assert_eq!(auth.http_identity(), Some((DEFAULT_TOKEN_USERNAME, "t")));
        assert!(auth.secrets().contains(&"eC1hY2Nlc3MtdG9rZW46dA==".to_string()));
    }
}
