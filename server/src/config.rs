//! Command line and environment configuration. Every flag has an environment variable;
//! values of secret-bearing variables are never shown in `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "fabricsync", version, about = "Keeps a Hedgehog Open Network Fabric in sync with Git, over gRPC")]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args)]
pub struct Common {
    /// PostgreSQL URL. Without it, a private PostgreSQL cluster is started in <data-dir>/postgres
    /// (initdb + pg_ctl of the installed PostgreSQL) and used.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<String>,

    /// Directory for local state: the embedded PostgreSQL, a generated encryption key, git caches.
    #[arg(long, env = "FABRICSYNC_DATA_DIR", default_value = ".fabricsync", global = true)]
    pub data_dir: PathBuf,

    /// File of encryption keys, one `<key-id> <base64 32-byte key>` per line; the first seals,
    /// all open. Without it and without FABRICSYNC_ENCRYPTION_KEYS, a key is generated into
    /// <data-dir>/encryption.keys.
    #[arg(long, env = "FABRICSYNC_KEY_FILE", global = true)]
    pub key_file: Option<PathBuf>,

    /// Encryption keys given directly, in the key file format (takes precedence over --key-file).
    #[arg(long, env = "FABRICSYNC_ENCRYPTION_KEYS", hide_env_values = true, global = true)]
    pub encryption_keys: Option<String>,

    /// Log format.
    #[arg(long, env = "FABRICSYNC_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,

    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `fabricsync=debug,info`.
    #[arg(long, env = "FABRICSYNC_LOG", default_value = "info", global = true)]
    pub log: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

// Parsed once at start; the size of `Serve` costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC server (applies pending migrations first).
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Write a synthetic, valid Hedgehog fabric of about N objects as YAML files under a
    /// directory (for tests and benchmarks); needs no database.
    Generate {
        /// How many objects (rounded up to whole pods of about 36).
        #[arg(long, default_value_t = 10_000)]
        resources: usize,
        /// Directory to write into (created; existing files of the same names are replaced).
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Manage API tokens directly in the database (bootstrap and recovery; the AccessService
    /// does the same over the API). Uses the same database and keys as `serve`.
    Token {
        #[command(subcommand)]
        action: TokenCommand,
    },
    /// Re-seal every stored secret with the primary (first) key. With --add-key, first
    /// generates a new primary key at the top of the key file.
    RotateKeys {
        /// Generate a new primary key with this id before re-sealing (needs --key-file or the default key file).
        #[arg(long)]
        add_key: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print its value (only the value, on stdout; it is shown only once).
    Create {
        /// Unique name among active tokens (a-z 0-9 . _ -).
        #[arg(long)]
        name: String,
        /// viewer (reads, plans, streams), operator (+ runs, drift, remediation, connection
        /// tests) or admin (everything).
        #[arg(long)]
        role: crate::auth::Role,
        /// Fabric name globs the token is limited to, comma separated (e.g. `prod-*,lab`).
        #[arg(long, value_delimiter = ',')]
        fabrics: Vec<String>,
        /// Validity, e.g. `90d`, `12h`; without it the token is valid until revoked.
        #[arg(long, value_parser = crate::auth::manage::parse_ttl)]
        expires: Option<std::time::Duration>,
        /// Client networks (CIDRs) the token may be used from, comma separated.
        #[arg(long, value_delimiter = ',')]
        allowed_networks: Vec<String>,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List tokens (never their values).
    List {
        /// Also list revoked tokens.
        #[arg(long)]
        all: bool,
    },
    /// Revoke the active token of that name; its calls and open streams end within 5 s.
    Revoke { name: String },
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on for gRPC.
    #[arg(long, env = "FABRICSYNC_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Maximum database connections in the pool.
    #[arg(long, env = "FABRICSYNC_DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: usize,

    /// Timeout of a repository connection test.
    #[arg(long, env = "FABRICSYNC_GIT_TIMEOUT_SECONDS", default_value_t = 20)]
    pub git_timeout_seconds: u64,

    /// Sync runs this process executes at once.
    #[arg(long, env = "FABRICSYNC_SYNC_WORKERS", default_value_t = 4)]
    pub sync_workers: usize,

    /// Pulls that run at once against one Git server (host and port), across every process:
    /// more wait queued, so that a slow or silent server cannot hold every worker.
    #[arg(long, env = "FABRICSYNC_FETCHES_PER_REMOTE", default_value_t = 2)]
    pub fetches_per_remote: u32,

    /// Lease of a claimed sync run, renewed by heartbeats; when a process dies, another takes its
    /// runs over after this long.
    #[arg(long, env = "FABRICSYNC_SYNC_LEASE_SECONDS", default_value_t = 15)]
    pub sync_lease_seconds: u64,

    /// How often this process looks for fabrics whose auto-sync check is due.
    #[arg(long, env = "FABRICSYNC_AUTO_SYNC_TICK_SECONDS", default_value_t = 5)]
    pub auto_sync_tick_seconds: u64,

    /// Self-heal gives up on a resource (marks it contested) after reverting it this many times
    /// within --self-heal-window-seconds: another controller keeps changing it.
    #[arg(long, env = "FABRICSYNC_SELF_HEAL_MAX_REVERTS", default_value_t = 3)]
    pub self_heal_max_reverts: usize,

    /// The window of --self-heal-max-reverts.
    #[arg(long, env = "FABRICSYNC_SELF_HEAL_WINDOW_SECONDS", default_value_t = 600)]
    pub self_heal_window_seconds: u64,

    /// A switch whose agent sent no heartbeat for this long is STALE (its Switch DEGRADED), in the
    /// health the watch tells and in GetFabricRollout without stale_after.
    #[arg(long, env = "FABRICSYNC_SWITCH_STALE_AFTER_SECONDS", default_value_t = 300)]
    pub switch_stale_after_seconds: u64,

    /// A directory of CRD files (YAML) that add Hedgehog kinds to the embedded ones or replace
    /// them (same group, version and kind): a newer release's CRDs, or list types declared.
    /// They drive validation, apply and drift; install the same CRDs in the fabric's cluster.
    #[arg(long, env = "FABRICSYNC_CRDS_DIR")]
    pub crds_dir: Option<std::path::PathBuf>,

    /// Largest YAML file a sync reads from Git; larger files fail the run.
    #[arg(long, env = "FABRICSYNC_MAX_FILE_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_file_bytes: u64,

    /// Most bytes of YAML one sync reads in all.
    #[arg(long, env = "FABRICSYNC_MAX_TOTAL_BYTES", default_value_t = 512 * 1024 * 1024)]
    pub max_total_bytes: u64,

    /// Most YAML files one sync reads.
    #[arg(long, env = "FABRICSYNC_MAX_FILES", default_value_t = 50_000)]
    pub max_files: usize,

    /// Serve gRPC reflection without credentials (it lists the API, no data).
    #[arg(long, env = "FABRICSYNC_PUBLIC_REFLECTION")]
    pub public_reflection: bool,

    /// Value of the first admin token, registered on a database without tokens instead of
    /// generating one into <data-dir>/admin-token (the Helm chart's Secret).
    #[arg(long, env = "FABRICSYNC_BOOTSTRAP_TOKEN", hide_env_values = true)]
    pub bootstrap_token: Option<String>,

    /// Requests per second one principal may sustain (0: no limit); beyond it, calls fail
    /// with RESOURCE_EXHAUSTED and a retry delay.
    #[arg(long, env = "FABRICSYNC_RATE_LIMIT_PER_SECOND", default_value_t = 100)]
    pub rate_limit_per_second: u32,

    /// Requests one principal may send at once above the sustained rate.
    #[arg(long, env = "FABRICSYNC_RATE_LIMIT_BURST", default_value_t = 200)]
    pub rate_limit_burst: u32,

    /// Server streams (progress, watch, drift) one principal may hold open at once.
    #[arg(long, env = "FABRICSYNC_MAX_STREAMS_PER_PRINCIPAL", default_value_t = 64)]
    pub max_streams_per_principal: usize,

    /// Largest request message accepted, in bytes (larger: RESOURCE_EXHAUSTED / INVALID_ARGUMENT).
    #[arg(long, env = "FABRICSYNC_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,

    /// Deadline of a unary call on the server (a client's shorter grpc-timeout wins); streams
    /// are not bounded by it.
    #[arg(long, env = "FABRICSYNC_REQUEST_TIMEOUT_SECONDS", default_value_t = 60)]
    pub request_timeout_seconds: u64,

    /// How long audit events are kept.
    #[arg(long, env = "FABRICSYNC_AUDIT_RETENTION_DAYS", default_value_t = 90)]
    pub audit_retention_days: u64,

    /// After SIGTERM/SIGINT, how long in-flight calls may take before the server exits anyway.
    #[arg(long, env = "FABRICSYNC_SHUTDOWN_GRACE_SECONDS", default_value_t = 20)]
    pub shutdown_grace_seconds: u64,

    /// Serve gRPC over TLS with this PEM certificate chain (server certificate first). Re-read
    /// when it changes (see --tls-reload-seconds), as when cert-manager rotates it.
    #[arg(long, env = "FABRICSYNC_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "FABRICSYNC_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificate(s) for mutual TLS: a client that presents a certificate must present
    /// one issued by them (else the handshake fails); clients without one are still accepted and
    /// authenticate with an API token.
    #[arg(long, env = "FABRICSYNC_CLIENT_CA", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,

    /// How often the TLS files are checked for new content. New files that do not load (half
    /// written, key not matching) leave the previous certificate serving, with a warning.
    #[arg(long, env = "FABRICSYNC_TLS_RELOAD_SECONDS", default_value_t = 5)]
    pub tls_reload_seconds: u64,

    /// Roles for client certificates, a YAML (or JSON) file:
    /// `identities: [{subject: "CN=netbox,O=example", role: operator, fabrics: ["prod-*"]}, {san: "*.ops.example.com", role: viewer}]`.
    /// Each entry matches the certificate's subject (RFC 4514, as `openssl x509 -noout -subject
    /// -nameopt RFC2253` prints it) or any of its DNS/URI/e-mail SANs, exactly or as a glob
    /// (`*`, `?`); the first matching entry gives the role (viewer, operator, admin) and the
    /// fabrics (globs; none: all). Needs --client-ca.
    #[arg(long, env = "FABRICSYNC_CLIENT_CERT_IDENTITIES", requires = "client_ca")]
    pub client_cert_identities: Option<PathBuf>,

    /// Allow plaintext gRPC on a non-loopback --listen address: only where something else
    /// protects the traffic (a service mesh's mTLS). Without TLS the server otherwise refuses
    /// to listen anywhere but on loopback.
    #[arg(long, env = "FABRICSYNC_INSECURE_PLAINTEXT", conflicts_with = "tls_cert")]
    pub insecure_plaintext: bool,

    /// Also serve the gRPC health service (grpc.health.v1 only) in plaintext on this address,
    /// for probes that cannot speak TLS (Kubernetes' native gRPC probes). It tells whether the
    /// server is serving, nothing else.
    #[arg(long, env = "FABRICSYNC_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,

    /// Receive Git push webhooks (GitHub, GitLab, Gitea) on this address, at
    /// `POST /webhooks/<repository id>`, for repositories given a webhook secret: each push
    /// queues the runs of the fabrics on that repository and ref at once. HTTPS with
    /// --tls-cert's certificate; without it plaintext, only on loopback unless
    /// --insecure-plaintext (a TLS-terminating ingress in front).
    #[arg(long, env = "FABRICSYNC_WEBHOOK_LISTEN")]
    pub webhook_listen: Option<SocketAddr>,

    /// Serve Prometheus metrics at `GET /metrics` on this address, plaintext HTTP without
    /// authentication: keep it on loopback or inside the cluster network. Empty or `off` turns
    /// it off. Not given: 127.0.0.1:9464, skipped with a warning when that port is taken (a
    /// given address that cannot be bound stops the start).
    #[arg(long, env = "FABRICSYNC_METRICS_LISTEN", value_parser = parse_metrics_listen)]
    pub metrics_listen: Option<MetricsListen>,

    /// Export traces (a span per call, run and run stage) to this OpenTelemetry collector over
    /// OTLP/gRPC, e.g. `http://otel-collector:4317`. Off when not given. The operator's own
    /// address, so the outbound policy (for addresses callers give) does not apply to it.
    #[arg(long, env = "FABRICSYNC_OTLP_ENDPOINT", value_parser = parse_otlp_endpoint)]
    pub otlp_endpoint: Option<url::Url>,

    /// PEM CA certificates an https --otlp-endpoint is verified with (default: the web PKI roots).
    #[arg(long, env = "FABRICSYNC_OTLP_CA_FILE")]
    pub otlp_ca_file: Option<std::path::PathBuf>,

    /// Share of the traces started here that are exported, 0 to 1; a caller's sampled
    /// `traceparent` is always followed.
    #[arg(long, env = "FABRICSYNC_TRACE_SAMPLE_RATIO", default_value_t = 1.0, value_parser = parse_ratio)]
    pub trace_sample_ratio: f64,

    /// Accept file:// repository URLs (paths on this server; never inside --data-dir). Without
    /// DATABASE_URL and with a loopback --listen (the embedded default) they are accepted anyway.
    #[arg(long, env = "FABRICSYNC_ALLOW_FILE_REPOSITORIES")]
    pub allow_file_repositories: bool,

    /// What git and cluster connections may reach. The deny list (169.254.0.0/16, fe80::/10,
    /// fd00:ec2::254 and --deny-hosts) always applies, and so does the refusal of 0.0.0.0 and ::;
    /// loopback is allowed; when --allow-hosts is given, it is the only other set permitted.
    /// Checked on the addresses a name resolves to, when connecting. CIDRs or addresses, comma-separated.
    #[arg(long, env = "FABRICSYNC_ALLOW_HOSTS", value_delimiter = ',', value_parser = crate::outbound::parse_net)]
    pub allow_hosts: Vec<ipnet::IpNet>,

    /// More address ranges git and cluster connections may never reach (see --allow-hosts).
    #[arg(long, env = "FABRICSYNC_DENY_HOSTS", value_delimiter = ',', value_parser = crate::outbound::parse_net)]
    pub deny_hosts: Vec<ipnet::IpNet>,
}

impl ServeArgs {
    pub fn otlp(&self) -> Option<Otlp> {
        self.otlp_endpoint.clone().map(|endpoint| Otlp {
            endpoint,
            ca_file: self.otlp_ca_file.clone(),
            sample_ratio: self.trace_sample_ratio,
        })
    }

    pub fn tls_files(&self) -> Option<crate::transport::tls::TlsFiles> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(crate::transport::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.client_ca.clone(),
            }),
            _ => None,
        }
    }
}

/// Where and how traces are exported (`serve --otlp-endpoint`).
#[derive(Debug, Clone)]
pub struct Otlp {
    /// `http://` or `https://` URL of an OTLP/gRPC collector.
    pub endpoint: url::Url,
    /// PEM CA certificates an https collector is verified with (else the web PKI roots).
    pub ca_file: Option<std::path::PathBuf>,
    /// Share of traces started here (not continued from a caller) that are recorded, 0 to 1.
    pub sample_ratio: f64,
}

/// Where metrics are served when --metrics-listen is not given.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 9464));

/// `--metrics-listen`: an address, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsListen(pub Option<SocketAddr>);

/// An http:// or https:// URL with a host.
pub fn parse_otlp_endpoint(value: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(value.trim()).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err("expected http://host:port or https://host:port of an OTLP/gRPC collector".to_string());
    }
    Ok(url)
}

pub fn parse_ratio(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        _ => Err("expected a number from 0 to 1".to_string()),
    }
}

/// An address, or `off` / empty for none.
pub fn parse_metrics_listen(value: &str) -> Result<MetricsListen, String> {
    let value = value.trim();
    if value.is_empty() || value.eq_ignore_ascii_case("off") {
        return Ok(MetricsListen(None));
    }
    value
        .parse::<SocketAddr>()
        .map(|addr| MetricsListen(Some(addr)))
        .map_err(|e| format!("{e}: an address such as 127.0.0.1:9464, or off"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_listen_is_an_address_or_off() {
        assert_eq!(parse_metrics_listen("127.0.0.1:9464"), Ok(MetricsListen(Some(([127, 0, 0, 1], 9464).into()))));
        assert_eq!(parse_metrics_listen("off"), Ok(MetricsListen(None)));
        assert_eq!(parse_metrics_listen("OFF"), Ok(MetricsListen(None)));
        assert_eq!(parse_metrics_listen(""), Ok(MetricsListen(None)));
        assert!(parse_metrics_listen("localhost").is_err());
    }

    #[test]
    fn traces_need_an_http_collector_url_and_a_ratio() {
        assert!(parse_otlp_endpoint("http://127.0.0.1:4317").is_ok());
        assert!(parse_otlp_endpoint("https://collector.example:4317").is_ok());
        assert!(parse_otlp_endpoint("collector:4317").is_err());
        assert!(parse_otlp_endpoint("file:///tmp/x").is_err());
        assert_eq!(parse_ratio("0.25"), Ok(0.25));
        assert!(parse_ratio("1.5").is_err());
        assert!(parse_ratio("-0").is_ok());
        assert!(parse_ratio("NaN").is_err());
        let cli = Cli::try_parse_from(["fabricsync", "serve"]).expect("parses");
        let Command::Serve(args) = cli.command else { panic!("serve") };
        assert!(args.otlp().is_none());
    }

    #[test]
    fn metrics_listen_defaults_to_loopback() {
        let cli = Cli::try_parse_from(["fabricsync", "serve"]).expect("parses");
        let Command::Serve(args) = cli.command else { panic!("serve") };
        assert_eq!(args.metrics_listen, None);
        assert_eq!(DEFAULT_METRICS_LISTEN, ([127, 0, 0, 1], 9464).into());
        let cli = Cli::try_parse_from(["fabricsync", "serve", "--metrics-listen", ""]).expect("parses");
        let Command::Serve(args) = cli.command else { panic!("serve") };
        assert_eq!(args.metrics_listen, Some(MetricsListen(None)));
    }
}
