ALTER TABLE sync_runs DROP COLUMN fetching;
DROP FUNCTION fabricsync_remote(text);
