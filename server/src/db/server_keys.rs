//! Keys the server makes for itself (the token pepper), stored sealed like every secret.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::server_keys;
use super::DbError;

/// A server key's sealed value (blob, key id), if it exists.
pub async fn get(conn: &mut AsyncPgConnection, name: &str) -> Result<Option<(Vec<u8>, String)>, DbError> {
    Ok(server_keys::table
        .find(name)
        .select((server_keys::secret_sealed, server_keys::secret_key_id))
        .first(conn)
        .await
        .optional()?)
}

/// Stores a server key unless one of that name exists (another replica won); then reads it back.
pub async fn insert_if_absent(
    conn: &mut AsyncPgConnection,
    name: &str,
    blob: &[u8],
    key_id: &str,
) -> Result<(Vec<u8>, String), DbError> {
    diesel::insert_into(server_keys::table)
        .values((
            server_keys::name.eq(name),
            server_keys::secret_sealed.eq(blob),
            server_keys::secret_key_id.eq(key_id),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    get(conn, name).await?.ok_or_else(|| DbError::Query(diesel::result::Error::NotFound))
}

/// Every server key (for rotate-keys): (name, blob, key id).
pub async fn all(conn: &mut AsyncPgConnection) -> Result<Vec<(String, Vec<u8>, String)>, DbError> {
    Ok(server_keys::table
        .select((server_keys::name, server_keys::secret_sealed, server_keys::secret_key_id))
        .load(conn)
        .await?)
}

pub async fn store(conn: &mut AsyncPgConnection, name: &str, blob: &[u8], key_id: &str) -> Result<(), DbError> {
    diesel::update(server_keys::table.find(name))
        .set((server_keys::secret_sealed.eq(blob), server_keys::secret_key_id.eq(key_id)))
        .execute(conn)
        .await?;
    Ok(())
}
