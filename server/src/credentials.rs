//! Opening sealed credentials for use by a connection. The opened values go straight into the
//! transport and are never returned, logged or put into errors.

use crate::crypto::{self, CryptoError, Keyring, Sealed, Secret};
use crate::db::fabrics::FabricRow;
use crate::db::inventory::ClusterRow;
use crate::db::repositories::RepositoryRow;
use crate::git::Auth;
use fabricsync_core::vocab::AuthType;

/// A secret stored in a (sealed blob, key id) column pair, opened; None when the row has none.
fn opened(
    keyring: &Keyring,
    blob: &Option<Vec<u8>>,
    key_id: &Option<String>,
    context: &str,
) -> Result<Option<Secret>, CryptoError> {
    match (blob, key_id) {
        (Some(blob), Some(key_id)) => {
            Ok(Some(keyring.open_secret(&Sealed { key_id: key_id.clone(), blob: blob.clone() }, context)?))
        }
        _ => Ok(None),
    }
}

/// A fabric's stored cluster bearer token, opened for a cluster connection; None without one.
pub fn cluster_token(fabric: &FabricRow, keyring: &Keyring) -> Result<Option<Secret>, CryptoError> {
    let context = crypto::fabric_token_context(fabric.id);
    opened(keyring, &fabric.cluster_token_sealed, &fabric.cluster_token_key_id, &context)
}

/// An inventory cluster's stored bearer token, opened for its connection; None without one.
pub fn inventory_cluster_token(row: &ClusterRow, keyring: &Keyring) -> Result<Option<Secret>, CryptoError> {
    let context = crypto::inventory_cluster_token_context(row.fabric_id, &row.name);
    opened(keyring, &row.token_sealed, &row.token_key_id, &context)
}

/// A repository's stored webhook secret, opened to verify a delivery; None without one.
pub fn webhook_secret(row: &RepositoryRow, keyring: &Keyring) -> Result<Option<Secret>, CryptoError> {
    let context = crypto::repository_webhook_context(row.id);
    opened(keyring, &row.webhook_secret_sealed, &row.webhook_secret_key_id, &context)
}

/// The stored credentials of a repository, opened for a git connection.
pub fn git_auth(row: &RepositoryRow, keyring: &Keyring) -> Result<Auth, CryptoError> {
    let context = crypto::repository_secret_context(row.id);
    let secret = opened(keyring, &row.secret_sealed, &row.secret_key_id, &context)?;
    let secret = || secret.as_ref().map(|s| s.expose().to_string()).unwrap_or_default();
    let username = row.auth_username.clone().unwrap_or_default();
    Ok(match row.auth_type {
        AuthType::Token => Auth::Token { username, token: secret() },
        AuthType::Basic => Auth::Basic { username, password: secret() },
        AuthType::SshKey => Auth::SshKey { private_key: secret(), known_hosts: row.ssh_known_hosts.clone() },
        AuthType::None => Auth::None,
    })
}
