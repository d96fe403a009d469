//! Mapping between stored text values and proto enums, and time conversions.
//! Stored values are lower-case words (readable in SQL); each table here is the one place a
//! word and its enum meet.

use chrono::{DateTime, Utc};

use crate::proto::{
    ApplyStatus, AuthType, ConnectionStatus, DriftStatus, Provider, ResourceDriftStatus, Role, SyncMode, SyncRunStatus,
    SyncStatus, SyncTrigger, WatchStatus,
};

pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }
}

pub fn opt_timestamp(t: Option<DateTime<Utc>>) -> Option<prost_types::Timestamp> {
    t.map(timestamp)
}

/// A JSON object as a protobuf Struct; None for anything but an object.
pub fn json_struct(value: &serde_json::Value) -> Option<prost_types::Struct> {
    match value {
        serde_json::Value::Object(map) => {
            Some(prost_types::Struct { fields: map.iter().map(|(k, v)| (k.clone(), json_value(v))).collect() })
        }
        _ => None,
    }
}

pub fn json_value(value: &serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    use serde_json::Value as J;
    let kind = match value {
        J::Null => Kind::NullValue(0),
        J::Bool(b) => Kind::BoolValue(*b),
        J::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        J::String(s) => Kind::StringValue(s.clone()),
        J::Array(items) => Kind::ListValue(prost_types::ListValue { values: items.iter().map(json_value).collect() }),
        J::Object(_) => Kind::StructValue(json_struct(value).unwrap_or_default()),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A two-way table between stored words and enum values.
pub struct Words<E: 'static>(&'static [(E, &'static str)]);

impl<E: Copy + PartialEq> Words<E> {
    pub fn word(&self, value: E) -> Option<&'static str> {
        self.0.iter().find(|(e, _)| *e == value).map(|(_, w)| *w)
    }
    pub fn value(&self, word: &str) -> Option<E> {
        self.0.iter().find(|(_, w)| *w == word).map(|(e, _)| *e)
    }
    pub fn words(&self) -> Vec<&'static str> {
        self.0.iter().map(|(_, w)| *w).collect()
    }
    /// The enum of a stored word; stored words are ours, so an unknown one maps to the zero value.
    pub fn of(&self, word: &str) -> E
    where
        E: Default,
    {
        self.value(word).unwrap_or_default()
    }
}

pub const PROVIDERS: Words<Provider> = Words(&[
    (Provider::Generic, "generic"),
    (Provider::Github, "github"),
    (Provider::Gitlab, "gitlab"),
    (Provider::Gitea, "gitea"),
    (Provider::Bitbucket, "bitbucket"),
]);

pub const AUTH_TYPES: Words<AuthType> = Words(&[
    (AuthType::None, "none"),
    (AuthType::Token, "token"),
    (AuthType::Basic, "basic"),
    (AuthType::SshKey, "ssh_key"),
]);

pub const CONNECTION_STATUSES: Words<ConnectionStatus> = Words(&[
    (ConnectionStatus::Unknown, "unknown"),
    (ConnectionStatus::Reachable, "reachable"),
    (ConnectionStatus::Failed, "failed"),
]);

pub const SYNC_STATUSES: Words<SyncStatus> = Words(&[
    (SyncStatus::NeverSynced, "never_synced"),
    (SyncStatus::Syncing, "syncing"),
    (SyncStatus::Synced, "synced"),
    (SyncStatus::Failed, "failed"),
]);

pub const DRIFT_STATUSES: Words<DriftStatus> =
    Words(&[(DriftStatus::Unknown, "unknown"), (DriftStatus::InSync, "in_sync"), (DriftStatus::Drifted, "drifted")]);

pub const WATCH_STATUSES: Words<WatchStatus> = Words(&[
    (WatchStatus::Inactive, "inactive"),
    (WatchStatus::Starting, "starting"),
    (WatchStatus::Active, "active"),
    (WatchStatus::Error, "error"),
]);

pub const SYNC_MODES: Words<SyncMode> =
    Words(&[(SyncMode::Pull, "pull"), (SyncMode::Apply, "apply"), (SyncMode::Full, "full")]);

pub const SYNC_TRIGGERS: Words<SyncTrigger> =
    Words(&[(SyncTrigger::User, "user"), (SyncTrigger::Schedule, "schedule"), (SyncTrigger::SelfHeal, "self_heal")]);

pub const RUN_STATUSES: Words<SyncRunStatus> = Words(&[
    (SyncRunStatus::Queued, "queued"),
    (SyncRunStatus::Running, "running"),
    (SyncRunStatus::Succeeded, "succeeded"),
    (SyncRunStatus::Failed, "failed"),
    (SyncRunStatus::Cancelled, "cancelled"),
]);

pub const APPLY_STATUSES: Words<ApplyStatus> = Words(&[
    (ApplyStatus::Pending, "pending"),
    (ApplyStatus::Applied, "applied"),
    (ApplyStatus::Failed, "failed"),
    (ApplyStatus::Unchanged, "unchanged"),
]);

pub const RESOURCE_DRIFT_STATUSES: Words<ResourceDriftStatus> = Words(&[
    (ResourceDriftStatus::Unknown, "unknown"),
    (ResourceDriftStatus::InSync, "in_sync"),
    (ResourceDriftStatus::Drifted, "drifted"),
    (ResourceDriftStatus::Missing, "missing"),
    (ResourceDriftStatus::Orphaned, "orphaned"),
    (ResourceDriftStatus::Contested, "contested"),
]);

/// API token roles; the words are `auth::Role`'s.
pub const ROLES: Words<Role> = Words(&[(Role::Viewer, "viewer"), (Role::Operator, "operator"), (Role::Admin, "admin")]);

/// Checks a filter value against a table; the error names the filter field and the allowed words.
pub fn filter_word<E: Copy + PartialEq>(words: &Words<E>, field: &str, value: &str) -> Result<String, super::ApiError> {
    match words.value(value) {
        Some(_) => Ok(value.to_string()),
        None => Err(super::ApiError::invalid("filter", format!("{field} must be one of {}", words.words().join(", ")))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for p in [Provider::Generic, Provider::Github, Provider::Bitbucket] {
            assert_eq!(PROVIDERS.value(PROVIDERS.word(p).unwrap()), Some(p));
        }
        assert_eq!(PROVIDERS.word(Provider::Unspecified), None);
        assert_eq!(SYNC_STATUSES.of("bogus"), SyncStatus::Unspecified);
        assert!(filter_word(&AUTH_TYPES, "auth_type", "ssh_key").is_ok());
        assert!(filter_word(&AUTH_TYPES, "auth_type", "kerberos").is_err());
    }
}
