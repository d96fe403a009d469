-- now() is the transaction's start: an event appended at the end of a long transaction (a run's
-- final event after writing thousands of objects) would carry a time before that work.
ALTER TABLE events ALTER COLUMN created_at SET DEFAULT clock_timestamp();

-- The resourceVersion the cluster returned to fabricsync's last apply. The watch moves
-- live_resource_version; an apply is skipped only while the two are equal.
ALTER TABLE resources ADD COLUMN applied_resource_version text;

-- Whether a fabric has drift is asked after every watch batch that changes a status.
CREATE INDEX resources_fabric_drift ON resources (fabric_id, drift_status);

-- The resources a Remediate run is limited to: {"apply": [key...], "delete": [key...]} with a
-- key as [group, kind, namespace, name]; NULL for a run over the whole fabric.
ALTER TABLE sync_runs ADD COLUMN targets jsonb;

-- Self-heal's reverts per drifted field ({"<JSON pointer>": [unix ms, ...]}): kept with the
-- resource so a process taking the watch over keeps counting towards `contested`.
ALTER TABLE resources ADD COLUMN self_heal_reverts jsonb;
