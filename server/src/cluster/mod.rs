//! The Kubernetes layer: a client per fabric from its stored connection, connection checks,
//! least-privilege RBAC manifests, server-side apply in waves, the switches' agents and the
//! cluster's inventory (both read only).

pub mod agents;
pub mod apply;
pub mod breaker;
pub mod check;
pub mod inventory;
pub mod rbac;

use std::time::Duration;

use kube::Client;
use secrecy::SecretString;

use crate::crypto::{Keyring, Secret};
use crate::db::fabrics::FabricRow;
use crate::db::inventory::ClusterRow;
use crate::outbound::{Outbound, Refused};
use crate::redact::Redactor;

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "fabricsync";
/// Label on every applied object: the name of the fabric that manages it (prune looks for it).
pub const FABRIC_LABEL: &str = "fabricsync.dev/fabric";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why talking to a cluster failed, classified for users. Messages never hold the token.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("the fabric has no cluster connection (set cluster.server_url)")]
    NotConfigured,
    #[error("cannot reach the API server: {0}")]
    Unreachable(String),
    #[error("the API server did not answer in time: {0}")]
    Timeout(String),
    #[error("TLS with the API server failed (is cluster.ca_certificate_pem the cluster's CA?): {0}")]
    Tls(String),
    #[error("the API server rejected the bearer token (401): {0}")]
    Unauthenticated(String),
    #[error("permission denied (403): {0}")]
    Forbidden(String),
    #[error("not found (404): {0}")]
    NotFound(String),
    #[error("conflict (409): {0}")]
    Conflict(String),
    #[error("the API server is busy or failing ({code}): {message}")]
    Busy { code: u16, message: String, retry_after: Option<u32> },
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Other(String),
}

impl ClusterError {
    /// Whether trying again later may succeed (429, 5xx, timeouts, unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(self, ClusterError::Unreachable(_) | ClusterError::Timeout(_) | ClusterError::Busy { .. })
    }

    /// A short code for diagnostics, e.g. `cluster.forbidden`.
    pub fn code(&self) -> &'static str {
        match self {
            ClusterError::NotConfigured => "cluster.not_configured",
            ClusterError::Unreachable(_) => "cluster.unreachable",
            ClusterError::Timeout(_) => "cluster.timeout",
            ClusterError::Tls(_) => "cluster.tls",
            ClusterError::Unauthenticated(_) => "cluster.unauthenticated",
            ClusterError::Forbidden(_) => "cluster.forbidden",
            ClusterError::NotFound(_) => "cluster.not_found",
            ClusterError::Conflict(_) => "apply.conflict",
            ClusterError::Busy { .. } => "cluster.busy",
            ClusterError::Refused(_) => "cluster.refused",
            ClusterError::Other(_) => "cluster.error",
        }
    }
}

impl From<kube::Error> for ClusterError {
    fn from(e: kube::Error) -> Self {
        if let kube::Error::Api(status) = &e {
            let message = status.message.clone();
            return match status.code {
                401 => ClusterError::Unauthenticated(message),
                403 => ClusterError::Forbidden(message),
                404 => ClusterError::NotFound(message),
                409 => ClusterError::Conflict(message),
                code @ (429 | 500..=599) => {
                    // The API server's Retry-After, also carried in the Status body.
                    let retry_after = status.details.as_ref().map(|d| d.retry_after_seconds).filter(|s| *s > 0);
                    ClusterError::Busy { code, message, retry_after }
                }
                _ => ClusterError::Other(message),
            };
        }
        let chain = error_chain(&e);
        let lower = chain.to_lowercase();
        // A connection the API server dropped (killed, restarted, a proxy cut it) is no TLS or
        // configuration problem, and trying again may succeed: rustls reports a dropped TLS
        // connection as a missing close_notify.
        let dropped = [
            "connection reset",
            "broken pipe",
            "connection closed",
            "close_notify",
            "connection aborted",
            "unexpected eof",
        ];
        if dropped.iter().any(|d| lower.contains(d)) {
            ClusterError::Unreachable(chain)
        } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
            ClusterError::Tls(chain)
        } else if lower.contains("timed out") || lower.contains("elapsed") || lower.contains("deadline") {
            ClusterError::Timeout(chain)
        } else if lower.contains("refused")
            || lower.contains("dns")
            || lower.contains("lookup")
            || lower.contains("unreachable")
        {
            ClusterError::Unreachable(chain)
        } else {
            ClusterError::Other(chain)
        }
    }
}

/// The error and its causes on one line; kube's top-level messages alone are vague.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

impl From<Refused> for ClusterError {
    fn from(refused: Refused) -> ClusterError {
        match refused {
            Refused::Unresolved { .. } => ClusterError::Unreachable(refused.to_string()),
            _ => ClusterError::Refused(refused.to_string()),
        }
    }
}

/// A client of a fabric's cluster, and the redactor of the secrets it sends: every message built
/// from the cluster's answers goes through it (an endpoint may echo the request's headers).
pub struct Connection {
    pub client: Client,
    pub redactor: Redactor,
}

/// Where a client connects: the fabric's own cluster, or one of its inventory clusters.
pub struct Target<'a> {
    pub server_url: &'a str,
    pub ca_pem: &'a str,
    /// The namespace of requests that name none.
    pub namespace: &'a str,
    pub token: Option<Secret>,
}

/// A client for the fabric's cluster from its stored URL, CA and sealed bearer token.
pub async fn connect(fabric: &FabricRow, keyring: &Keyring, outbound: &Outbound) -> Result<Connection, ClusterError> {
    let token = crate::credentials::cluster_token(fabric, keyring).map_err(unopened)?;
    let target = Target {
        server_url: &fabric.cluster_server_url,
        ca_pem: &fabric.cluster_ca_pem,
        namespace: &fabric.cluster_namespace,
        token,
    };
    connect_to(target, outbound).await
}

/// A client for one of a fabric's inventory clusters (read only; its requests name their
/// namespaces, so "default" is only a placeholder).
pub async fn connect_inventory_cluster(
    row: &ClusterRow,
    keyring: &Keyring,
    outbound: &Outbound,
) -> Result<Connection, ClusterError> {
    let token = crate::credentials::inventory_cluster_token(row, keyring).map_err(unopened)?;
    let target = Target { server_url: &row.server_url, ca_pem: &row.ca_pem, namespace: "default", token };
    connect_to(target, outbound).await
}

/// A stored bearer token that could not be opened (a key missing from the keyring).
fn unopened(e: crate::crypto::CryptoError) -> ClusterError {
    ClusterError::Other(format!("cannot open the stored bearer token: {e}"))
}

/// A client for `target`, connected only to addresses the outbound policy permits.
pub async fn connect_to(target: Target<'_>, outbound: &Outbound) -> Result<Connection, ClusterError> {
    // Two TLS providers are linked (gix's HTTP client brings aws-lc-rs, kube uses ring), so
    // rustls needs to be told; the first call wins and later ones are no-ops.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if target.server_url.is_empty() {
        return Err(ClusterError::NotConfigured);
    }
    let uri: http::Uri = target
        .server_url
        .parse()
        .map_err(|e| ClusterError::Other(format!("cluster.server_url {:?} is not a URL: {e}", target.server_url)))?;
    let (uri, server_name) = pin(uri, outbound).await?;
    let mut config = kube::Config::new(uri);
    config.tls_server_name = server_name;
    config.default_namespace = target.namespace.to_string();
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(REQUEST_TIMEOUT);
    config.write_timeout = Some(REQUEST_TIMEOUT);
    if !target.ca_pem.is_empty() {
        config.root_cert = Some(pem_certificates(target.ca_pem)?);
    }
    let mut secrets = Vec::new();
    if let Some(token) = target.token {
        config.auth_info.token = Some(SecretString::from(token.expose().to_string()));
        secrets.push(token.expose().to_string());
    }
    let client = Client::try_from(config).map_err(ClusterError::from)?;
    Ok(Connection { client, redactor: Redactor::new(secrets) })
}

/// Whether the cluster serves `plural` in `api_version` (API discovery; a group it does not
/// serve is no error).
pub async fn serves(client: &Client, api_version: &str, plural: &str) -> Result<bool, ClusterError> {
    let listed = if api_version.contains('/') {
        client.list_api_group_resources(api_version).await
    } else {
        client.list_core_api_resources(api_version).await
    };
    match listed.map_err(ClusterError::from) {
        Ok(listed) => Ok(listed.resources.iter().any(|r| r.name == plural)),
        Err(ClusterError::NotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `uri` with its host replaced by the address the outbound policy checked, so that the client
/// cannot resolve the name again to somewhere else; TLS still verifies (and sends) the name.
async fn pin(uri: http::Uri, outbound: &Outbound) -> Result<(http::Uri, Option<String>), ClusterError> {
    let host = uri.host().unwrap_or_default().to_owned();
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let address = outbound.resolve(&host, port).await?[0];
    if host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().is_ok() {
        return Ok((uri, None));
    }
    let mut parts = uri.into_parts();
    parts.authority = Some(
        address
            .to_string()
            .parse()
            .map_err(|e| ClusterError::Other(format!("cluster.server_url: cannot use the address {address}: {e}")))?,
    );
    let pinned = http::Uri::from_parts(parts).map_err(|e| ClusterError::Other(format!("cluster.server_url: {e}")))?;
    Ok((pinned, Some(host)))
}

/// The DER bytes of each PEM certificate (validated when the fabric was stored).
fn pem_certificates(pem: &str) -> Result<Vec<Vec<u8>>, ClusterError> {
    let mut rest = pem.as_bytes();
    let mut ders = Vec::new();
    while rest.windows(11).any(|w| w == b"-----BEGIN ") {
        let (remaining, block) = x509_parser::pem::parse_x509_pem(rest)
            .map_err(|_| ClusterError::Other("cluster.ca_certificate_pem is not valid PEM".into()))?;
        ders.push(block.contents);
        rest = remaining;
    }
    Ok(ders)
}
