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
    /// Re-seal every stored secret with the primary (first) key. With --add-key, first
    /// generates a new primary key at the top of the key file.
    RotateKeys {
        /// Generate a new primary key with this id before re-sealing (needs --key-file or the default key file).
        #[arg(long)]
        add_key: Option<String>,
    },
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
    #[arg(long, env = "FABRICSYNC_SYNC_WORKERS", default_value_t = 2)]
    pub sync_workers: usize,

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

    /// After SIGTERM/SIGINT, how long in-flight calls may take before the server exits anyway.
    #[arg(long, env = "FABRICSYNC_SHUTDOWN_GRACE_SECONDS", default_value_t = 20)]
    pub shutdown_grace_seconds: u64,

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
