//! Typed columns: the domain's words (`fabricsync_core::vocab`) in text columns and serde
//! structs in jsonb columns. Row structs read them with `#[diesel(deserialize_as = ...)]`;
//! writes bind `word()` or `Json(..)`.

use std::sync::atomic::{AtomicU64, Ordering};

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::{Jsonb, Nullable, Text};
use fabricsync_core::vocab::Word;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A stored word. An unknown one fails the query: the migrations' CHECKs allow only ours.
/// Fields use `#[diesel(serialize_as = Stored<T>, deserialize_as = Stored<T>)]`.
#[derive(Debug, Clone, Copy, FromSqlRow, AsExpression)]
#[diesel(sql_type = Text)]
pub struct Stored<T>(pub T);

impl<T> From<T> for Stored<T> {
    fn from(value: T) -> Stored<T> {
        Stored(value)
    }
}

impl<T: Word + std::fmt::Debug> ToSql<Text, Pg> for Stored<T> {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <str as ToSql<Text, Pg>>::to_sql(self.0.word(), &mut out.reborrow())
    }
}

impl<T: Word + std::fmt::Debug> FromSql<Text, Pg> for Stored<T> {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<Text, Pg>>::from_sql(value)?;
        T::parse(&text)
            .map(Stored)
            .ok_or_else(|| format!("stored {} {text:?} is not one of {}", T::WHAT, T::listing()).into())
    }
}

/// `From<Stored<T>> for T`, which coherence allows only per concrete type.
macro_rules! stored_words {
    ($($t:ty),+) => { $(impl From<Stored<$t>> for $t { fn from(s: Stored<$t>) -> $t { s.0 } })+ };
}
stored_words!(
    fabricsync_core::vocab::RunStatus,
    fabricsync_core::vocab::SyncMode,
    fabricsync_core::vocab::Trigger,
    fabricsync_core::vocab::SyncStatus,
    fabricsync_core::vocab::FabricDrift,
    fabricsync_core::vocab::DriftStatus,
    fabricsync_core::vocab::WatchStatus,
    fabricsync_core::vocab::WatchScope,
    fabricsync_core::vocab::ConnectionStatus,
    fabricsync_core::vocab::ApplyStatus,
    fabricsync_core::vocab::Provider,
    fabricsync_core::vocab::AuthType,
    fabricsync_core::vocab::Stream,
    fabricsync_core::vocab::Layout,
    fabricsync_core::vocab::Health,
    fabricsync_core::vocab::InventoryKind,
    fabricsync_core::vocab::WorkloadType
);

/// A jsonb column as a serde struct. A value that does not decode is logged and counted
/// (`decode_failures`) and read as the default, so one bad row cannot take a listing down.
#[derive(Debug, Clone, Default, PartialEq, FromSqlRow, AsExpression)]
#[diesel(sql_type = Jsonb)]
pub struct Json<T>(pub T);

static DECODE_FAILURES: AtomicU64 = AtomicU64::new(0);

/// jsonb values that did not decode into their struct since the process started.
pub fn decode_failures() -> u64 {
    DECODE_FAILURES.load(Ordering::Relaxed)
}

/// Decodes a stored JSON value, logging and counting a failure.
pub fn decode<T: DeserializeOwned + Default>(value: serde_json::Value, what: &str) -> T {
    match serde_json::from_value(value) {
        Ok(v) => v,
        Err(e) => {
            DECODE_FAILURES.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(column = what, error = %e, "stored JSON does not decode; read as empty");
            T::default()
        }
    }
}

impl<T: DeserializeOwned + Default> FromSql<Jsonb, Pg> for Json<T> {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        let raw = <serde_json::Value as FromSql<Jsonb, Pg>>::from_sql(value)?;
        Ok(Json(decode(raw, std::any::type_name::<T>())))
    }
}

/// A nullable jsonb column: NULL reads as the default.
impl<T: DeserializeOwned + Default> FromSql<Nullable<Jsonb>, Pg> for Json<T> {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        <Json<T> as FromSql<Jsonb, Pg>>::from_sql(value)
    }
    fn from_nullable_sql(value: Option<PgValue<'_>>) -> deserialize::Result<Self> {
        value.map_or_else(|| Ok(Json(T::default())), <Json<T> as FromSql<Jsonb, Pg>>::from_sql)
    }
}

impl<T: Serialize + std::fmt::Debug> ToSql<Jsonb, Pg> for Json<T> {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        let value = serde_json::to_value(&self.0)?;
        <serde_json::Value as ToSql<Jsonb, Pg>>::to_sql(&value, &mut out.reborrow())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fabricsync_core::drift::StoredDrift;

    #[test]
    fn undecodable_json_is_counted_and_read_as_default() {
        let before = decode_failures();
        let drift: StoredDrift = decode(serde_json::json!({"fields": "not a list"}), "drift");
        assert_eq!(drift, StoredDrift::default());
        assert_eq!(decode_failures(), before + 1);
        let drift: StoredDrift = decode(serde_json::json!({"score": 0.5, "fields": []}), "drift");
        assert_eq!(drift.score, 0.5);
    }
}
