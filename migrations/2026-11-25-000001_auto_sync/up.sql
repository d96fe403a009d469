-- When a fabric with an auto-sync interval is next checked for a moved ref; a scheduler in any
-- replica claims due fabrics by moving this forward.
ALTER TABLE fabrics ADD COLUMN next_auto_sync_at timestamptz;
CREATE INDEX fabrics_auto_sync_due ON fabrics (next_auto_sync_at) WHERE auto_sync_interval_seconds > 0;
