//! A fabric's cluster inventory: one row per imported object with its facts and content hash
//! (core `inventory`), replaced by each import's diff; and the extra clusters its imports read.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use fabricsync_core::inventory::{InventoryKey, InventoryObject, NodeRef};
use fabricsync_core::vocab::{InventoryKind, WorkloadType};

use super::schema::{inventory_clusters, inventory_objects};
use super::typed::Stored;
use super::{DbError, Listed, Page};

/// Rows per statement; keeps bind parameters far below PostgreSQL's 65535.
const CHUNK: usize = 1000;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = inventory_objects)]
pub struct InventoryRow {
    pub fabric_id: Uuid,
    pub kind: Stored<InventoryKind>,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub workload: Option<Stored<WorkloadType>>,
    pub node: Option<String>,
    pub vm: Option<String>,
    pub facts: serde_json::Value,
    pub hash: String,
    pub updated_at: DateTime<Utc>,
    pub cluster: String,
}

impl InventoryRow {
    /// The core's object, for the cross-layer view.
    pub fn object(&self) -> InventoryObject {
        InventoryObject {
            cluster: self.cluster.clone(),
            kind: self.kind.0,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            workload: self.workload.map(|w| w.0),
            node: self.node.clone(),
            vm: self.vm.clone(),
            facts: self.facts.clone(),
            hash: self.hash.clone(),
        }
    }
}

/// Equality filters of ListInventoryObjects (stored words); None matches all.
#[derive(Debug, Clone, Default)]
pub struct InventoryFilter {
    pub cluster: Option<String>,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub node: Option<String>,
    pub workload: Option<String>,
}

/// (key, hash) of every stored object of the fabric: what the next import diffs against.
pub async fn hashes(conn: &mut AsyncPgConnection, fabric_id: Uuid) -> Result<Vec<(InventoryKey, String)>, DbError> {
    let rows: Vec<(String, Stored<InventoryKind>, String, String, String)> = inventory_objects::table
        .filter(inventory_objects::fabric_id.eq(fabric_id))
        .select((
            inventory_objects::cluster,
            inventory_objects::kind,
            inventory_objects::namespace,
            inventory_objects::name,
            inventory_objects::hash,
        ))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(cluster, kind, namespace, name, hash)| (InventoryKey { cluster, kind: kind.0, namespace, name }, hash))
        .collect())
}

/// Stores an import: `upserts` written (created or updated), `deletes` removed.
pub async fn store(
    conn: &mut AsyncPgConnection,
    fabric_id: Uuid,
    upserts: &[&InventoryObject],
    deletes: &[InventoryKey],
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    use diesel::sql_types::{Array, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
    for chunk in upserts.chunks(CHUNK) {
        let text = |f: fn(&InventoryObject) -> String| chunk.iter().map(|o| f(o)).collect::<Vec<_>>();
        let opt = |f: fn(&InventoryObject) -> Option<String>| chunk.iter().map(|o| f(o)).collect::<Vec<_>>();
        diesel::sql_query(
            "INSERT INTO inventory_objects (fabric_id, cluster, kind, namespace, name, uid, workload, node, vm, facts, hash, updated_at) \
             SELECT $1, u.c, u.k, u.ns, u.n, u.uid, u.w, u.node, u.vm, u.facts, u.hash, $11 \
             FROM unnest($12, $2, $3, $4, $5, $6, $7, $8, $9, $10) AS u(c, k, ns, n, uid, w, node, vm, facts, hash) \
             ON CONFLICT (fabric_id, cluster, kind, namespace, name) DO UPDATE SET \
               uid = excluded.uid, workload = excluded.workload, node = excluded.node, vm = excluded.vm, \
               facts = excluded.facts, hash = excluded.hash, updated_at = excluded.updated_at",
        )
        .bind::<SqlUuid, _>(fabric_id)
        .bind::<Array<Text>, _>(text(|o| o.kind.word().to_string()))
        .bind::<Array<Text>, _>(text(|o| o.namespace.clone()))
        .bind::<Array<Text>, _>(text(|o| o.name.clone()))
        .bind::<Array<Text>, _>(text(|o| o.uid.clone()))
        .bind::<Array<Nullable<Text>>, _>(opt(|o| o.workload.map(|w| w.word().to_string())))
        .bind::<Array<Nullable<Text>>, _>(opt(|o| o.node.clone()))
        .bind::<Array<Nullable<Text>>, _>(opt(|o| o.vm.clone()))
        .bind::<Array<Jsonb>, _>(chunk.iter().map(|o| o.facts.clone()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(text(|o| o.hash.clone()))
        .bind::<Timestamptz, _>(now)
        .bind::<Array<Text>, _>(text(|o| o.cluster.clone()))
        .execute(conn)
        .await?;
    }
    for chunk in deletes.chunks(CHUNK) {
        let text = |f: fn(&InventoryKey) -> String| chunk.iter().map(f).collect::<Vec<_>>();
        diesel::sql_query(
            "DELETE FROM inventory_objects o USING unnest($2, $3, $4, $5) AS u(c, k, ns, n) \
             WHERE o.fabric_id = $1 AND o.cluster = u.c AND o.kind = u.k AND o.namespace = u.ns AND o.name = u.n",
        )
        .bind::<SqlUuid, _>(fabric_id)
        .bind::<Array<Text>, _>(text(|k| k.cluster.clone()))
        .bind::<Array<Text>, _>(text(|k| k.kind.word().to_string()))
        .bind::<Array<Text>, _>(text(|k| k.namespace.clone()))
        .bind::<Array<Text>, _>(text(|k| k.name.clone()))
        .execute(conn)
        .await?;
    }
    Ok(())
}

fn filtered(fabric_id: Uuid, filter: &InventoryFilter) -> inventory_objects::BoxedQuery<'static, diesel::pg::Pg> {
    use inventory_objects::dsl as o;
    let mut query = o::inventory_objects.filter(o::fabric_id.eq(fabric_id)).into_boxed();
    if let Some(v) = &filter.cluster {
        query = query.filter(o::cluster.eq(v.clone()));
    }
    if let Some(v) = &filter.kind {
        query = query.filter(o::kind.eq(v.clone()));
    }
    if let Some(v) = &filter.namespace {
        query = query.filter(o::namespace.eq(v.clone()));
    }
    if let Some(v) = &filter.name {
        query = query.filter(o::name.eq(v.clone()));
    }
    if let Some(v) = &filter.node {
        query = query.filter(o::node.eq(v.clone()));
    }
    if let Some(v) = &filter.workload {
        query = query.filter(o::workload.eq(v.clone()));
    }
    query
}

/// Ordered by (cluster, kind, namespace, name); a page starts after the key `page_key` made of
/// the previous page's last row.
pub async fn list(
    conn: &mut AsyncPgConnection,
    fabric_id: Uuid,
    filter: &InventoryFilter,
    page: &Page,
) -> Result<Listed<InventoryRow>, DbError> {
    use diesel::sql_types::{Bool, Text};
    use inventory_objects::dsl as o;
    let total = filtered(fabric_id, filter).count().get_result(conn).await?;
    let mut query = filtered(fabric_id, filter);
    if let Some((cluster, kind, namespace, name)) =
        page.after.as_deref().and_then(|t| serde_json::from_str::<(String, String, String, String)>(t).ok())
    {
        let after = diesel::dsl::sql::<Bool>("(cluster, kind, namespace, name) > (")
            .bind::<Text, _>(cluster)
            .sql(", ")
            .bind::<Text, _>(kind)
            .sql(", ")
            .bind::<Text, _>(namespace)
            .sql(", ")
            .bind::<Text, _>(name)
            .sql(")");
        query = query.filter(after);
    }
    let items = query
        .order((o::cluster.asc(), o::kind.asc(), o::namespace.asc(), o::name.asc()))
        .limit(page.limit())
        .select(InventoryRow::as_select())
        .load(conn)
        .await?;
    Ok(page.finish(items, total))
}

/// Where the page after `row` starts (see `list`).
pub fn page_key(row: &InventoryRow) -> String {
    serde_json::to_string(&(&row.cluster, row.kind.0.word(), &row.namespace, &row.name)).unwrap_or_default()
}

pub async fn get(
    conn: &mut AsyncPgConnection,
    fabric_id: Uuid,
    key: &InventoryKey,
) -> Result<Option<InventoryRow>, DbError> {
    use inventory_objects::dsl as o;
    Ok(o::inventory_objects
        .filter(o::fabric_id.eq(fabric_id))
        .filter(o::cluster.eq(&key.cluster))
        .filter(o::kind.eq(key.kind.word()))
        .filter(o::namespace.eq(&key.namespace))
        .filter(o::name.eq(&key.name))
        .select(InventoryRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The fabric's imported nodes, of all its clusters.
pub async fn nodes(conn: &mut AsyncPgConnection, fabric_id: Uuid) -> Result<Vec<InventoryObject>, DbError> {
    use inventory_objects::dsl as o;
    let rows: Vec<InventoryRow> = o::inventory_objects
        .filter(o::fabric_id.eq(fabric_id))
        .filter(o::kind.eq(InventoryKind::Node.word()))
        .select(InventoryRow::as_select())
        .load(conn)
        .await?;
    Ok(rows.iter().map(InventoryRow::object).collect())
}

/// The pods and VMIs that run on `nodes` (the index on (fabric, cluster, node) finds them).
pub async fn on_nodes(
    conn: &mut AsyncPgConnection,
    fabric_id: Uuid,
    nodes: &[NodeRef],
) -> Result<Vec<InventoryObject>, DbError> {
    use diesel::sql_types::{Array, Text};
    let clusters: Vec<&str> = nodes.iter().map(|n| n.cluster.as_str()).collect();
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    let on = diesel::dsl::sql::<diesel::sql_types::Bool>("(cluster, node) IN (SELECT * FROM unnest(")
        .bind::<Array<Text>, _>(clusters)
        .sql(", ")
        .bind::<Array<Text>, _>(names)
        .sql("))");
    use inventory_objects::dsl as o;
    let rows: Vec<InventoryRow> = o::inventory_objects
        .filter(o::fabric_id.eq(fabric_id))
        .filter(on)
        .select(InventoryRow::as_select())
        .load(conn)
        .await?;
    Ok(rows.iter().map(InventoryRow::object).collect())
}

/// An extra cluster a fabric's imports read (`cluster` of its objects is `name`).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = inventory_clusters, treat_none_as_null = true)]
pub struct ClusterRow {
    pub fabric_id: Uuid,
    pub name: String,
    pub server_url: String,
    pub ca_pem: String,
    pub token_sealed: Option<Vec<u8>>,
    pub token_key_id: Option<String>,
}

/// The fabric's inventory clusters, by name.
pub async fn clusters(conn: &mut AsyncPgConnection, fabric_id: Uuid) -> Result<Vec<ClusterRow>, DbError> {
    use inventory_clusters::dsl as c;
    Ok(c::inventory_clusters
        .filter(c::fabric_id.eq(fabric_id))
        .order(c::name.asc())
        .select(ClusterRow::as_select())
        .load(conn)
        .await?)
}

/// The names of the fabric's inventory clusters, locked against removal until the transaction
/// ends: an import does not store objects of a cluster removed while it read them.
pub async fn cluster_names_locked(conn: &mut AsyncPgConnection, fabric_id: Uuid) -> Result<Vec<String>, DbError> {
    use inventory_clusters::dsl as c;
    Ok(c::inventory_clusters.filter(c::fabric_id.eq(fabric_id)).select(c::name).for_share().load(conn).await?)
}

/// Stores the cluster, replacing the one of its name; false (nothing stored) when it is new and
/// the fabric has `max` already. The fabric's row is locked meanwhile, so concurrent puts count
/// each other.
pub async fn put_cluster(conn: &mut AsyncPgConnection, row: &ClusterRow, max: usize) -> Result<bool, DbError> {
    use diesel_async::AsyncConnection;
    use inventory_clusters::dsl as c;
    conn.transaction::<_, DbError, _>(async |conn| {
        super::schema::fabrics::table
            .find(row.fabric_id)
            .select(super::schema::fabrics::id)
            .for_update()
            .first::<Uuid>(conn)
            .await?;
        let names: Vec<String> =
            c::inventory_clusters.filter(c::fabric_id.eq(row.fabric_id)).select(c::name).load(conn).await?;
        if !names.contains(&row.name) && names.len() >= max {
            return Ok(false);
        }
        diesel::insert_into(c::inventory_clusters)
            .values(row)
            .on_conflict((c::fabric_id, c::name))
            .do_update()
            .set(row)
            .execute(conn)
            .await?;
        Ok(true)
    })
    .await
}

/// Removes the cluster and the objects imported from it; false when there was none.
pub async fn delete_cluster(conn: &mut AsyncPgConnection, fabric_id: Uuid, name: &str) -> Result<bool, DbError> {
    use diesel_async::AsyncConnection;
    use inventory_clusters::dsl as c;
    use inventory_objects::dsl as o;
    conn.transaction::<_, DbError, _>(async |conn| {
        let removed = diesel::delete(c::inventory_clusters.filter(c::fabric_id.eq(fabric_id)).filter(c::name.eq(name)))
            .execute(conn)
            .await?;
        diesel::delete(o::inventory_objects.filter(o::fabric_id.eq(fabric_id)).filter(o::cluster.eq(name)))
            .execute(conn)
            .await?;
        Ok(removed == 1)
    })
    .await
}

/// Every sealed inventory cluster token, for key rotation: (fabric, name, blob, key id).
pub async fn sealed_cluster_tokens(
    conn: &mut AsyncPgConnection,
) -> Result<Vec<(Uuid, String, Vec<u8>, String)>, DbError> {
    use inventory_clusters::dsl as c;
    let rows: Vec<ClusterRow> =
        c::inventory_clusters.filter(c::token_sealed.is_not_null()).select(ClusterRow::as_select()).load(conn).await?;
    Ok(rows.into_iter().filter_map(|r| Some((r.fabric_id, r.name, r.token_sealed?, r.token_key_id?))).collect())
}

pub async fn store_sealed_cluster_token(
    conn: &mut AsyncPgConnection,
    fabric_id: Uuid,
    name: &str,
    blob: &[u8],
    key_id: &str,
) -> Result<(), DbError> {
    use inventory_clusters::dsl as c;
    diesel::update(c::inventory_clusters.filter(c::fabric_id.eq(fabric_id)).filter(c::name.eq(name)))
        .set((c::token_sealed.eq(blob), c::token_key_id.eq(key_id)))
        .execute(conn)
        .await?;
    Ok(())
}
