DROP FUNCTION fabricsync_store_drift;
ALTER TABLE resources DROP COLUMN self_heal_reverts;
ALTER TABLE sync_runs DROP COLUMN targets;
DROP INDEX resources_fabric_drift;
ALTER TABLE resources DROP COLUMN applied_resource_version;
ALTER TABLE events ALTER COLUMN created_at SET DEFAULT now();
