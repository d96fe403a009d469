-- When a fabric with an auto-sync interval is next checked for a moved ref; a scheduler in any
-- replica claims due fabrics by moving this forward.
ALTER TABLE fabrics ADD COLUMN next_auto_sync_at timestamptz;
CREATE INDEX fabrics_auto_sync_due ON fabrics (next_auto_sync_at) WHERE auto_sync_interval_seconds > 0;
-- What the stored desired state was pulled from (commit, directory and parse settings): a pull
-- of the very same source has nothing to do.
ALTER TABLE fabrics ADD COLUMN synced_source text;
