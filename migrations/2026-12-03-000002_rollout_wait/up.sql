-- A run's wait for the rollout to the switches after its apply (StartSyncRequest.wait_for_rollout).
ALTER TABLE sync_runs
    ADD COLUMN rollout_wait_seconds integer NOT NULL DEFAULT 0 CHECK (rollout_wait_seconds BETWEEN 0 AND 3600);
