//! gRPC services. Handlers validate requests, call the db/git layers and map errors to
//! `tonic::Status` through `ApiError` only.

mod access;
mod drift;
pub mod error;
mod fabrics;
mod inventory;
pub mod listing;
mod repositories;
mod sync;
pub mod validate;
mod write;

use uuid::Uuid;

pub use access::AccessApi;
pub use drift::DriftApi;
pub use error::ApiError;
pub use fabrics::FabricApi;
pub use inventory::InventoryApi;
pub use repositories::RepositoryApi;
pub use sync::SyncApi;
pub use write::WriteApi;

use crate::auth::{Actor, Principal};
pub use crate::context::AppState;

/// The caller, as the auth layer let it through (every service sits behind that layer).
pub fn principal<T>(request: &tonic::Request<T>) -> Result<&Principal, ApiError> {
    request
        .extensions()
        .get::<Principal>()
        .ok_or_else(|| ApiError::Internal("the request has no principal (auth layer missing)".into()))
}

/// Who asked, as runs record it.
pub fn requester<T>(request: &tonic::Request<T>) -> Result<String, ApiError> {
    Ok(principal(request)?.requester(request.extensions().get::<Actor>()))
}

/// The caller's fabric scope as LIKE patterns for list queries (empty: every fabric).
pub fn scope_patterns<T>(request: &tonic::Request<T>) -> Result<Vec<String>, ApiError> {
    Ok(principal(request)?.scope.like_patterns())
}

pub fn parse_id(field: &str, value: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(value).map_err(|_| ApiError::invalid(field, "must be a UUID"))
}

pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// An empty etag skips the check; anything but the current one is stale.
pub fn check_etag(given: &str, version: i64, kind: &str) -> Result<(), ApiError> {
    if given.is_empty() || given == etag(version) {
        Ok(())
    } else {
        Err(ApiError::stale_etag(kind))
    }
}

/// Update masks must name at least one path, each from `allowed`.
pub fn mask_paths(mask: Option<&prost_types::FieldMask>, allowed: &[&str]) -> Result<Vec<String>, ApiError> {
    let paths = mask.map(|m| m.paths.clone()).unwrap_or_default();
    if paths.is_empty() {
        return Err(ApiError::invalid(
            "update_mask",
            format!("must name the fields to change: {}", allowed.join(", ")),
        ));
    }
    if let Some(bad) = paths.iter().find(|p| !allowed.contains(&p.as_str())) {
        return Err(ApiError::invalid(
            "update_mask",
            format!("unknown or read-only path {}; allowed: {}", crate::text::quote(bad), allowed.join(", ")),
        ));
    }
    Ok(paths)
}
