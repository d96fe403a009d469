ALTER TABLE sync_runs DROP COLUMN trace_parent;
