-- Git push webhooks: a secret per repository (sealed like its credentials; never returned),
-- and runs they start.
ALTER TABLE repositories
    ADD COLUMN webhook_secret_sealed bytea,
    ADD COLUMN webhook_secret_key_id text,
    ADD CONSTRAINT repositories_webhook_secret_sealed_with_key
        CHECK ((webhook_secret_sealed IS NULL) = (webhook_secret_key_id IS NULL));

ALTER TABLE sync_runs DROP CONSTRAINT sync_runs_trigger_check;
ALTER TABLE sync_runs ADD CONSTRAINT sync_runs_trigger_check
    CHECK (trigger IN ('user', 'schedule', 'self_heal', 'webhook'));
