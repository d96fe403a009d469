//! Turns presented credentials into a principal: API tokens checked against the database
//! (rows cached for at most `cache::TTL`, so a revocation takes effect within that bound), and
//! client certificates mapped by the server's configuration.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ipnet::IpNet;
use tokio::sync::watch;
use uuid::Uuid;

use super::cache::Cache;
use super::token::{self, Pepper};
use super::{Credential, FabricScope, Principal, Role};
use crate::db::tokens::TokenRow;
use crate::db::{DbError, DbPool};

/// How often the set of revoked and expired tokens (which ends open streams) is refreshed.
pub const INVALID_REFRESH: Duration = Duration::from_secs(1);
/// last_used_at is written at most this often per token.
const TOUCH_EVERY: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// Why a call was not authenticated. Messages never include the presented value.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "missing credentials: send `authorization: Bearer <token>` (or a client certificate the server maps to a role)"
    )]
    Missing,
    #[error("the authorization header is not `Bearer <fabricsync token>`")]
    Malformed,
    #[error("invalid token")]
    Invalid,
    #[error("token {0:?} was revoked")]
    Revoked(String),
    #[error("token {0:?} has expired")]
    Expired(String),
    #[error("token {name:?} may not be used from {peer}")]
    Network { name: String, peer: String },
    #[error("client certificate {0:?} is not mapped to a role")]
    UnmappedCertificate(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl AuthError {
    /// The token's name, when the failure is about a known token (for the audit log).
    pub fn principal(&self) -> &str {
        match self {
            AuthError::Revoked(n) | AuthError::Expired(n) | AuthError::Network { name: n, .. } => n,
            AuthError::UnmappedCertificate(subject) => subject,
            _ => "",
        }
    }
}

#[derive(Clone)]
struct Cached {
    row: Arc<TokenRow>,
    networks: Arc<Vec<IpNet>>,
}

pub struct Authenticator {
    pool: DbPool,
    pepper: Arc<Pepper>,
    /// Token rows by lookup key; bogus lookups are not cached, real ones are few.
    cache: Cache<String, Cached>,
    invalid: watch::Receiver<Arc<HashSet<Uuid>>>,
    certificates: Option<Arc<super::certs::CertIdentities>>,
}

impl Authenticator {
    pub fn new(
        pool: DbPool,
        pepper: Arc<Pepper>,
        invalid: watch::Receiver<Arc<HashSet<Uuid>>>,
        certificates: Option<Arc<super::certs::CertIdentities>>,
    ) -> Authenticator {
        Authenticator { pool, pepper, cache: Cache::default(), invalid, certificates }
    }

    /// The tokens that are revoked or expired, as last refreshed; streams watch it.
    pub fn invalid_tokens(&self) -> watch::Receiver<Arc<HashSet<Uuid>>> {
        self.invalid.clone()
    }

    /// The principal of a bearer token presented from `peer`.
    pub async fn token(&self, presented: &str, peer: Option<IpAddr>) -> Result<Principal, AuthError> {
        let presented = token::parse(presented).ok_or(AuthError::Malformed)?;
        let cached = match self.cache.get(presented.lookup) {
            Some(c) => c,
            None => self.fetch(presented.lookup).await?.ok_or(AuthError::Invalid)?,
        };
        let row = &cached.row;
        if !token::verify(&self.pepper, &presented, &row.secret_hash) {
            return Err(AuthError::Invalid);
        }
        let now = Utc::now();
        if row.revoked_at.is_some() {
            return Err(AuthError::Revoked(row.name.clone()));
        }
        if row.expires_at.is_some_and(|at| at <= now) {
            return Err(AuthError::Expired(row.name.clone()));
        }
        // Revoked since this row was cached (the refresher's set also holds expired tokens).
        if self.invalid.borrow().contains(&row.id) {
            return Err(AuthError::Revoked(row.name.clone()));
        }
        if !cached.networks.is_empty() && !peer.is_some_and(|ip| cached.networks.iter().any(|n| n.contains(&ip))) {
            let peer = peer.map_or_else(|| "an unknown address".to_string(), |ip| ip.to_string());
            return Err(AuthError::Network { name: row.name.clone(), peer });
        }
        if row.last_used_at.is_none_or(|at| now - at > TOUCH_EVERY) {
            self.touch(row.id, presented.lookup, now);
        }
        let role = row.role.parse::<Role>().map_err(|_| AuthError::Invalid)?;
        Ok(Principal {
            name: row.name.clone(),
            credential: Credential::Token { id: row.id, expires_at: row.expires_at },
            role,
            scope: FabricScope::from_globs(row.fabric_scope.clone()),
        })
    }

    /// The principal of a verified client certificate, when the configuration maps it.
    pub fn certificate(&self, cert: &crate::transport::ClientCert) -> Result<Principal, AuthError> {
        self.certificates
            .as_ref()
            .and_then(|map| map.principal(cert))
            .ok_or_else(|| AuthError::UnmappedCertificate(cert.subject.clone()))
    }

    async fn fetch(&self, lookup: &str) -> Result<Option<Cached>, AuthError> {
        let mut conn = crate::db::connect(&self.pool).await?;
        let Some(row) = crate::db::tokens::by_lookup(&mut conn, lookup).await? else {
            return Ok(None);
        };
        // Networks were checked when the token was made; a row that no longer parses allows nothing.
        let networks = row.allowed_networks.iter().map(|n| n.parse().unwrap_or_else(|_| nowhere())).collect();
        let cached = Cached { row: Arc::new(row), networks: Arc::new(networks) };
        self.cache.put(lookup.to_string(), cached.clone());
        Ok(Some(cached))
    }

    /// Records the use in the background; the cached row is updated so the next calls skip it.
    fn touch(&self, id: Uuid, lookup: &str, now: chrono::DateTime<Utc>) {
        self.cache.update(lookup, |c| {
            let mut row = (*c.row).clone();
            row.last_used_at = Some(now);
            c.row = Arc::new(row);
        });
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let result = async {
                let mut conn = crate::db::connect(&pool).await?;
                crate::db::tokens::touch(&mut conn, id, crate::db::now()).await
            };
            if let Err(e) = result.await {
                tracing::debug!(error = %e, "recording a token's last use failed");
            }
        });
    }
}

/// A network that contains no address (the documentation range, /32).
fn nowhere() -> IpNet {
    IpNet::from(IpAddr::from([192, 0, 2, 255]))
}

/// Refreshes the set of revoked and expired tokens every `INVALID_REFRESH` until shutdown.
pub fn spawn_invalid_refresher(
    pool: DbPool,
    mut shutdown: watch::Receiver<bool>,
) -> watch::Receiver<Arc<HashSet<Uuid>>> {
    let (tx, rx) = watch::channel(Arc::new(HashSet::new()));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(INVALID_REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let read = async {
                let mut conn = crate::db::connect(&pool).await?;
                crate::db::tokens::invalid_ids(&mut conn).await
            };
            match read.await {
                Ok(ids) => {
                    let ids: HashSet<Uuid> = ids.into_iter().collect();
                    tx.send_if_modified(|current| {
                        let changed = **current != ids;
                        if changed {
                            *current = Arc::new(ids);
                        }
                        changed
                    });
                }
                Err(e) => tracing::warn!(error = %e, "reading revoked tokens failed; retrying"),
            }
        }
    });
    rx
}
