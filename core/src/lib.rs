//! The pure core of fabricsync: no async, no I/O, no database, cluster or gRPC types. Everything
//! here is a function of its inputs, tested and benchmarked directly; the `fabricsync` server
//! crate is the imperative shell around it.
//!
//! - `vocab`: every status, mode, trigger, action and stream word, one spelling each.
//! - `key`: `ResourceKey`, the identity of an object of a fabric.
//! - `manifest`: YAML -> objects, the kind registry (from CRD schemas), schema and fabric
//!   validation, normalization and content hashes; the parse cache by content.
//! - `diff`: the one comparison of two objects (schema-aware), used by plans, apply reports and drift.
//! - `sources`: which files of a GitOps directory a pull reads (hidden entries, HNP layout, globs).
//! - `edit`: changes to a fabric's objects as edits of its source files (in place, minimal diffs).
//! - `plan`: what a pull changes in the stored desired state.
//! - `waves`: the order objects are applied in.
//! - `apply`: an apply run's plan (what is sent in which wave, skipped, pruned).
//! - `drift`: resource drift verdicts and self-heal's memory of reverts.
//! - `rollout`: a switch's rollout state from its Hedgehog Agent (generations, heartbeat).
//! - `live`: the watch's live index, a pure state update per watcher event.
//! - `webhook`: Git push deliveries: the forge, its proof of the secret, the branch it moved.

pub mod apply;
pub mod diff;
pub mod drift;
pub mod edit;
pub mod health;
pub mod inventory;
pub mod key;
pub mod live;
pub mod manifest;
pub mod plan;
pub mod rollout;
pub mod sources;
pub mod spread;
pub mod vocab;
pub mod waves;
pub mod webhook;

pub use key::ResourceKey;
