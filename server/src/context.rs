//! The application context: what the API services and the engine (runs, watches, schedule)
//! share, built once at start (`server::serve`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{Common, ServeArgs};
use crate::crypto::Keyring;
use crate::db::{DbConn, DbError, DbPool};

/// What every service shares.
#[derive(Clone)]
pub struct AppState {
    pub pool: DbPool,
    pub keyring: Arc<Keyring>,
    /// Keys API token hashes (AccessService creates tokens; the auth layer checks them).
    pub token_pepper: Arc<crate::auth::token::Pepper>,
    /// Becomes true when the server shuts down; open streams end then.
    pub shutdown: watch::Receiver<bool>,
    pub settings: Arc<Settings>,
    /// Wakes streams when events are appended by any process.
    pub hub: crate::db::hub::Hub,
    /// Parsed files by content, so re-pulls parse only what changed.
    pub parse_cache: Arc<fabricsync_core::manifest::cache::ParseCache>,
    /// This process's name in PostgreSQL (`<pid>-<random>`): its presence lock, the prefix of
    /// its workers' run claims, and the `watch_process` of the fabrics it watches.
    pub process: Arc<str>,
    /// The process's Prometheus metrics (`metrics::global()`).
    pub metrics: &'static crate::metrics::Metrics,
}

impl AppState {
    pub async fn conn(&self) -> Result<DbConn, DbError> {
        crate::db::connect(&self.pool).await
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: std::net::SocketAddr,
    pub git_timeout: Duration,
    pub shutdown_grace: Duration,
    pub sync_workers: usize,
    /// Pulls running at once against one Git remote (see `runs::claim`).
    pub fetches_per_remote: i64,
    pub sync_lease: Duration,
    pub auto_sync_tick: Duration,
    pub self_heal_max_reverts: usize,
    pub self_heal_window: Duration,
    /// Seconds without a heartbeat after which a switch's agent is stale.
    pub switch_stale_after_seconds: i64,
    pub read_limits: crate::git::ReadLimits,
    pub data_dir: std::path::PathBuf,
    pub public_reflection: bool,
    pub limits: crate::auth::limits::LimitSettings,
    pub max_message_bytes: usize,
    pub request_timeout: Duration,
    pub audit_retention: Duration,
    pub tls: Option<crate::transport::tls::TlsFiles>,
    pub tls_reload: Duration,
    pub health_listen: Option<std::net::SocketAddr>,
    pub webhook_listen: Option<std::net::SocketAddr>,
    /// Where `GET /metrics` is served (--metrics-listen); None: not served.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The address is the default, not given: a taken port is skipped with a warning.
    pub metrics_listen_defaulted: bool,
    /// Roles of client certificates (--client-cert-identities), for the auth layer.
    pub client_cert_identities: Option<Arc<crate::auth::certs::CertIdentities>>,
    pub outbound: crate::outbound::Outbound,
    /// The kinds this server knows: the embedded Hedgehog CRDs, plus those of --crds-dir.
    pub kinds: &'static fabricsync_core::manifest::kinds::KindRegistry,
}

impl Settings {
    pub fn new(args: &ServeArgs, common: &Common, outbound: crate::outbound::Outbound) -> Settings {
        Settings {
            listen: args.listen,
            git_timeout: Duration::from_secs(args.git_timeout_seconds),
            shutdown_grace: Duration::from_secs(args.shutdown_grace_seconds),
            sync_workers: args.sync_workers,
            fetches_per_remote: i64::from(args.fetches_per_remote.max(1)),
            sync_lease: Duration::from_secs(args.sync_lease_seconds.max(1)),
            auto_sync_tick: Duration::from_secs(args.auto_sync_tick_seconds.max(1)),
            self_heal_max_reverts: args.self_heal_max_reverts.max(1),
            self_heal_window: Duration::from_secs(args.self_heal_window_seconds.max(1)),
            switch_stale_after_seconds: i64::try_from(args.switch_stale_after_seconds.max(1)).unwrap_or(i64::MAX),
            read_limits: crate::git::ReadLimits {
                max_file_bytes: args.max_file_bytes,
                max_total_bytes: args.max_total_bytes,
                max_files: args.max_files,
            },
            data_dir: common.data_dir.clone(),
            public_reflection: args.public_reflection,
            limits: crate::auth::limits::LimitSettings {
                requests_per_second: args.rate_limit_per_second,
                burst: args.rate_limit_burst,
                max_streams: args.max_streams_per_principal.max(1),
            },
            max_message_bytes: args.max_message_bytes.max(1024),
            request_timeout: Duration::from_secs(args.request_timeout_seconds.max(1)),
            audit_retention: Duration::from_secs(args.audit_retention_days.max(1) * 86_400),
            tls: args.tls_files(),
            tls_reload: Duration::from_secs(args.tls_reload_seconds.max(1)),
            health_listen: args.health_listen,
            webhook_listen: args.webhook_listen,
            metrics_listen: args.metrics_listen.map_or(Some(crate::config::DEFAULT_METRICS_LISTEN), |m| m.0),
            metrics_listen_defaulted: args.metrics_listen.is_none(),
            client_cert_identities: None,
            outbound,
            kinds: fabricsync_core::manifest::kinds::KindRegistry::hedgehog(),
        }
    }
}
