//! fabricsync: keeps a Hedgehog Open Network Fabric in sync with Git, over gRPC.
//!
//! This crate is the imperative shell; the pure core (manifests, the one diff, plans, drift
//! verdicts, the live index, the domain's words) is the `fabricsync-core` crate. Layers (see
//! docs/ARCHITECTURE.md, checked by scripts/check-layers.py): `transport` and `auth` in front
//! (and `webhook`, the HTTP receiver of Git push deliveries),
//! `api` (tonic services, error mapping), `sync` (the engine and its watches), `drift` (drift's
//! I/O shell), `git` (gix), `cluster` (kube), `db` (diesel), `crypto` (secrets at rest), with
//! `context` (what they share) and `convert` (the domain as proto); `metrics` (Prometheus), a
//! leaf the others record into.

pub mod api;
pub mod app;
pub mod auth;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod context;
pub mod convert;
pub mod credentials;
pub mod crypto;
pub mod db;
pub mod drift;
pub mod embedded_pg;
pub mod git;
pub mod memory;
pub mod metrics;
pub mod outbound;
pub mod redact;
pub mod server;
pub mod sync;
pub mod telemetry;
pub mod text;
pub mod traces;
pub mod transport;
pub mod webhook;

/// Generated gRPC code of the `fabricsync.v1` package.
#[allow(clippy::doc_lazy_continuation)] // generated from the proto comments
pub mod proto {
    tonic::include_proto!("fabricsync.v1");

    /// Encoded descriptors of the package, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("fabricsync_descriptor");
}
