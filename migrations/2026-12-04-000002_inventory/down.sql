DROP INDEX sync_runs_one_active;
DELETE FROM sync_runs WHERE mode = 'inventory';
CREATE UNIQUE INDEX sync_runs_one_active ON sync_runs (fabric_id) WHERE status IN ('queued', 'running');
ALTER TABLE sync_runs DROP CONSTRAINT sync_runs_mode_check;
ALTER TABLE sync_runs ADD CONSTRAINT sync_runs_mode_check CHECK (mode IN ('pull', 'apply', 'full'));
ALTER TABLE fabrics DROP COLUMN next_inventory_at, DROP COLUMN inventory_interval_seconds, DROP COLUMN inventory;
DROP TABLE inventory_objects;
