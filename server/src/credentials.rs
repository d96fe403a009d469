//! Opening sealed credentials for use by a connection. The opened values go straight into the
//! transport and are never returned, logged or put into errors.

use crate::crypto::{self, CryptoError, Keyring, Sealed, Secret};
use crate::db::fabrics::FabricRow;
use crate::db::repositories::RepositoryRow;
use crate::git::Auth;
use fabricsync_core::vocab::AuthType;

/// A fabric's stored cluster bearer token, opened for a cluster connection; None without one.
pub fn cluster_token(fabric: &FabricRow, keyring: &Keyring) -> Result<Option<Secret>, CryptoError> {
    match (&fabric.cluster_token_sealed, &fabric.cluster_token_key_id) {
        (Some(blob), Some(key_id)) => Ok(Some(keyring.open_secret(
            &Sealed { key_id: key_id.clone(), blob: blob.clone() },
            &crypto::fabric_token_context(fabric.id),
        )?)),
        _ => Ok(None),
    }
}

/// A repository's stored webhook secret, opened to verify a delivery; None without one.
pub fn webhook_secret(row: &RepositoryRow, keyring: &Keyring) -> Result<Option<Secret>, CryptoError> {
    match (&row.webhook_secret_sealed, &row.webhook_secret_key_id) {
        (Some(blob), Some(key_id)) => Ok(Some(keyring.open_secret(
            &Sealed { key_id: key_id.clone(), blob: blob.clone() },
            &crypto::repository_webhook_context(row.id),
        )?)),
        _ => Ok(None),
    }
}

/// The stored credentials of a repository, opened for a git connection.
pub fn git_auth(row: &RepositoryRow, keyring: &Keyring) -> Result<Auth, CryptoError> {
    let secret = match (&row.secret_sealed, &row.secret_key_id) {
        (Some(blob), Some(key_id)) => Some(keyring.open_secret(
            &Sealed { key_id: key_id.clone(), blob: blob.clone() },
            &crypto::repository_secret_context(row.id),
        )?),
        _ => None,
    };
    let secret = || secret.as_ref().map(|s| s.expose().to_string()).unwrap_or_default();
    let username = row.auth_username.clone().unwrap_or_default();
    Ok(match row.auth_type {
        AuthType::Token => Auth::Token { username, token: secret() },
        AuthType::Basic => Auth::Basic { username, password: secret() },
        AuthType::SshKey => Auth::SshKey { private_key: secret(), known_hosts: row.ssh_known_hosts.clone() },
        AuthType::None => Auth::None,
    })
}
