//! The event log: every stream (sync progress, cluster watch, drift) is rows ordered by a
//! global sequence; appends notify listeners in every server process (LISTEN/NOTIFY).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Bytea, Int8, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use fabricsync_core::vocab::Stream;
use uuid::Uuid;

use super::typed::Stored;

use super::schema::events;
use super::DbError;

/// The NOTIFY channel; the payload is `<stream> <fabric_id> <run_id or -> <sequence>`.
pub const CHANNEL: &str = "fabricsync_events";

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = events)]
pub struct EventRow {
    pub sequence: i64,
    pub fabric_id: Uuid,
    pub run_id: Option<Uuid>,
    #[diesel(deserialize_as = Stored<Stream>)]
    pub stream: Stream,
    pub payload: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct Appended {
    #[diesel(sql_type = Int8)]
    sequence: i64,
}

/// Appends an event and notifies listeners when the surrounding transaction commits.
pub async fn append(
    conn: &mut AsyncPgConnection,
    fabric_id: Uuid,
    run_id: Option<Uuid>,
    stream: Stream,
    payload: &[u8],
) -> Result<i64, DbError> {
    let row: Appended = diesel::sql_query(
        "WITH e AS (INSERT INTO events (fabric_id, run_id, stream, payload) VALUES ($1, $2, $3, $4)
                    RETURNING sequence)
         SELECT e.sequence FROM e
         CROSS JOIN LATERAL (SELECT pg_notify($5, concat_ws(' ', $3, $1::text, coalesce($2::text, '-'), e.sequence::text))) AS n",
    )
    .bind::<SqlUuid, _>(fabric_id)
    .bind::<Nullable<SqlUuid>, _>(run_id)
    .bind::<Text, _>(stream.word())
    .bind::<Bytea, _>(payload)
    .bind::<Text, _>(CHANNEL)
    .get_result(conn)
    .await?;
    Ok(row.sequence)
}

/// Appends several events of one stream in one statement; one notice names the last.
pub async fn append_many(
    conn: &mut AsyncPgConnection,
    fabric_id: Uuid,
    stream: Stream,
    payloads: &[Vec<u8>],
) -> Result<Option<i64>, DbError> {
    use diesel::sql_types::Array;
    if payloads.is_empty() {
        return Ok(None);
    }
    let row: Appended = diesel::sql_query(
        "WITH e AS (INSERT INTO events (fabric_id, stream, payload) SELECT $1, $2, p FROM unnest($3) WITH ORDINALITY AS u(p, i)                     ORDER BY i RETURNING sequence),               last AS (SELECT max(sequence) AS sequence FROM e)          SELECT last.sequence FROM last          CROSS JOIN LATERAL (SELECT pg_notify($4, concat_ws(' ', $2, $1::text, '-', last.sequence::text))) AS n",
    )
    .bind::<SqlUuid, _>(fabric_id)
    .bind::<Text, _>(stream.word())
    .bind::<Array<Bytea>, _>(payloads)
    .bind::<Text, _>(CHANNEL)
    .get_result(conn)
    .await?;
    Ok(Some(row.sequence))
}

/// Events of one fabric's stream after `after`, oldest first.
pub async fn of_fabric(
    conn: &mut AsyncPgConnection,
    fabric_id: Uuid,
    stream: Stream,
    after: i64,
    limit: i64,
) -> Result<Vec<EventRow>, DbError> {
    Ok(events::table
        .filter(events::fabric_id.eq(fabric_id))
        .filter(events::stream.eq(stream.word()))
        .filter(events::sequence.gt(after))
        .order(events::sequence.asc())
        .limit(limit)
        .select(EventRow::as_select())
        .load(conn)
        .await?)
}

/// Events of one run after `after`, oldest first.
pub async fn of_run(
    conn: &mut AsyncPgConnection,
    run_id: Uuid,
    after: i64,
    limit: i64,
) -> Result<Vec<EventRow>, DbError> {
    Ok(events::table
        .filter(events::run_id.eq(run_id))
        .filter(events::sequence.gt(after))
        .order(events::sequence.asc())
        .limit(limit)
        .select(EventRow::as_select())
        .load(conn)
        .await?)
}

/// The last sequence of a run's events (0 when none).
pub async fn last_of_run(conn: &mut AsyncPgConnection, run_id: Uuid) -> Result<i64, DbError> {
    let last: Option<i64> =
        events::table.filter(events::run_id.eq(run_id)).select(diesel::dsl::max(events::sequence)).first(conn).await?;
    Ok(last.unwrap_or(0))
}

/// A notification parsed from its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub stream: Stream,
    pub fabric_id: Uuid,
    pub run_id: Option<Uuid>,
    pub sequence: i64,
}

impl Notice {
    pub fn parse(payload: &str) -> Option<Notice> {
        let mut parts = payload.split(' ');
        let stream = parts.next()?.parse().ok()?;
        let fabric_id = Uuid::parse_str(parts.next()?).ok()?;
        let run_id = match parts.next()? {
            "-" => None,
            id => Some(Uuid::parse_str(id).ok()?),
        };
        let sequence = parts.next()?.parse().ok()?;
        Some(Notice { stream, fabric_id, run_id, sequence })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_parse() {
        let f = Uuid::new_v4();
        let r = Uuid::new_v4();
        assert_eq!(
            Notice::parse(&format!("progress {f} {r} 42")),
            Some(Notice { stream: Stream::Progress, fabric_id: f, run_id: Some(r), sequence: 42 })
        );
        assert_eq!(Notice::parse(&format!("watch {f} - 7")).and_then(|n| n.run_id), None);
        assert_eq!(Notice::parse("garbage"), None);
        assert_eq!(Notice::parse(&format!("watch {f} - x")), None);
    }
}
