DELETE FROM sync_runs WHERE trigger = 'webhook';
ALTER TABLE sync_runs DROP CONSTRAINT sync_runs_trigger_check;
ALTER TABLE sync_runs ADD CONSTRAINT sync_runs_trigger_check
    CHECK (trigger IN ('user', 'schedule', 'self_heal'));

ALTER TABLE repositories
    DROP CONSTRAINT repositories_webhook_secret_sealed_with_key,
    DROP COLUMN webhook_secret_sealed,
    DROP COLUMN webhook_secret_key_id;
