-- Extra clusters an inventory import reads besides the fabric's own (issue 14): a compute
-- cluster whose nodes are the fabric's Servers. Each is read only, with its own bearer token
-- sealed bound to (fabric, name).
CREATE TABLE inventory_clusters (
    fabric_id    uuid NOT NULL REFERENCES fabrics (id) ON DELETE CASCADE,
    name         text NOT NULL CHECK (name ~ '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'),
    server_url   text NOT NULL CHECK (server_url <> ''),
    ca_pem       text NOT NULL DEFAULT '',
    token_sealed bytea,
    token_key_id text,
    PRIMARY KEY (fabric_id, name)
);

-- '' is the fabric's own cluster; an object's identity now includes its cluster.
ALTER TABLE inventory_objects ADD COLUMN cluster text NOT NULL DEFAULT '';
ALTER TABLE inventory_objects DROP CONSTRAINT inventory_objects_pkey;
ALTER TABLE inventory_objects ADD PRIMARY KEY (fabric_id, cluster, kind, namespace, name);
DROP INDEX inventory_objects_node;
CREATE INDEX inventory_objects_node ON inventory_objects (fabric_id, cluster, node) WHERE node IS NOT NULL;
