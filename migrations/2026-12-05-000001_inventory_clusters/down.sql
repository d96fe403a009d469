DROP INDEX inventory_objects_node;
DELETE FROM inventory_objects WHERE cluster <> '';
ALTER TABLE inventory_objects DROP CONSTRAINT inventory_objects_pkey;
ALTER TABLE inventory_objects ADD PRIMARY KEY (fabric_id, kind, namespace, name);
ALTER TABLE inventory_objects DROP COLUMN cluster;
CREATE INDEX inventory_objects_node ON inventory_objects (fabric_id, node) WHERE node IS NOT NULL;
DROP TABLE inventory_clusters;
