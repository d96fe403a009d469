//! The API layer's error type and its single mapping to `tonic::Status`.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::crypto::CryptoError;
use crate::db::DbError;
use crate::sync::pull::PullError;

/// One invalid request field, reported as a google.rpc.BadRequest field violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub description: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid request: {}", summary(.0))]
    InvalidArgument(Vec<Violation>),
    /// `id` is client input as often as not: the message quotes only its start.
    #[error("{kind} {} not found", crate::text::quote(.id))]
    NotFound { kind: &'static str, id: String },
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("{0}")]
    Internal(String),
}

fn summary(violations: &[Violation]) -> String {
    violations.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; ")
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> ApiError {
        ApiError::InvalidArgument(vec![Violation { field: field.into(), description: description.into() }])
    }

    pub fn stale_etag(kind: &str) -> ApiError {
        ApiError::Aborted(format!("the {kind} was changed since the given etag; read it again and retry"))
    }
}

impl From<PullError> for ApiError {
    fn from(e: PullError) -> ApiError {
        use crate::git::FailureKind as K;
        match e {
            PullError::Git(git) => match git.kind() {
                K::Dns
                | K::ConnectionRefused
                | K::Timeout
                | K::Tls
                | K::Authentication
                | K::HostKey
                | K::NotARepository
                | K::Protocol
                | K::RemoteFailed => ApiError::Unavailable(format!("repository unreachable: {git}")),
                // The server's own disk: retrying once space is freed succeeds.
                K::DiskFull => ApiError::Unavailable(git.to_string()),
                K::Other => ApiError::Internal(git.to_string()),
                _ => ApiError::FailedPrecondition(git.to_string()),
            },
            PullError::Db(e) => ApiError::Db(e),
            PullError::Crypto(e) => ApiError::Crypto(e),
            PullError::RepositoryGone(_) | PullError::Globs(_) => ApiError::FailedPrecondition(e.to_string()),
            PullError::Cancelled | PullError::Lost | PullError::Released => ApiError::Aborted(e.to_string()),
            PullError::Internal(m) => ApiError::Internal(m),
        }
    }
}

/// Handlers `?` database errors straight into a status, through `ApiError`'s mapping.
impl From<DbError> for Status {
    fn from(e: DbError) -> Status {
        ApiError::from(e).into()
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        match e {
            ApiError::InvalidArgument(violations) => {
                let mut details = ErrorDetails::new();
                for v in &violations {
                    details.add_bad_request_violation(v.field.clone(), v.description.clone());
                }
                Status::with_error_details(
                    Code::InvalidArgument,
                    format!("invalid request: {}", summary(&violations)),
                    details,
                )
            }
            ApiError::NotFound { .. } => Status::not_found(e.to_string()),
            ApiError::AlreadyExists(m) => Status::already_exists(m),
            ApiError::FailedPrecondition(m) => Status::failed_precondition(m),
            ApiError::Aborted(m) => Status::aborted(m),
            ApiError::Unavailable(m) => Status::unavailable(m),
            ApiError::Db(DbError::Connect(_) | DbError::Pool(_)) => {
                tracing::error!(error = %e, "database unavailable");
                Status::unavailable("the database is unavailable; retry later")
            }
            // Details of internal failures go to the log, not to the client.
            ApiError::Db(_) | ApiError::Crypto(_) | ApiError::Internal(_) => {
                tracing::error!(error = %e, "internal error");
                Status::internal("internal error; see the server log")
            }
        }
    }
}

/// Collects violations so a request reports all its bad fields at once.
#[derive(Debug, Default)]
pub struct Violations(Vec<Violation>);

impl Violations {
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(Violation { field: field.into(), description: description.into() });
    }

    pub fn check(&mut self, result: Result<(), String>, field: &str) {
        if let Err(description) = result {
            self.add(field, description);
        }
    }

    pub fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::InvalidArgument(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_bad_request_details() {
        let mut v = Violations::default();
        v.add("name", "must be a DNS-1123 label");
        v.add("url", "unsupported scheme");
        let status: Status = v.into_result().unwrap_err().into();
        assert_eq!(status.code(), Code::InvalidArgument);
        let fields: Vec<_> =
            status.get_details_bad_request().unwrap().field_violations.into_iter().map(|f| f.field).collect();
        assert_eq!(fields, ["name", "url"]);
        assert!(status.message().contains("name: must be a DNS-1123 label"));
    }

    #[test]
    fn quoted_input_is_bounded() {
        assert_eq!(crate::text::quote("lab"), "\"lab\"");
        let long = "é".repeat(1 << 20);
        let quoted = crate::text::quote(&long);
        assert_eq!(quoted, format!("{:?}…", "é".repeat(crate::text::QUOTED_CHARS)));
        let status: Status = ApiError::NotFound { kind: "resource", id: "k".repeat(1 << 20) }.into();
        assert_eq!(status.code(), Code::NotFound);
        assert!(status.message().len() < 100, "{}", status.message());
        assert_eq!(crate::text::quote("a\0b"), "\"a\\0b\"");
    }

    #[test]
    fn internal_errors_hide_their_details() {
        let status: Status = ApiError::Internal("secret detail".into()).into();
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret detail"));
    }
}
