ALTER TABLE fabrics DROP COLUMN synced_source;
DROP INDEX fabrics_auto_sync_due;
ALTER TABLE fabrics DROP COLUMN next_auto_sync_at;
