ALTER TABLE sync_runs DROP COLUMN rollout_wait_seconds;
