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

-- One watch event's drift write in one call (a cached statement on the client): stores the
-- computed drift of resources, appends their drift events with one notice naming the last, and
-- when set_aggregate, the fabric's aggregate status (counting the new statuses, which the
-- statement itself does not see). The statuses that count as drift are literals (those of
-- db::resources::DRIFTED): with a parameter the function's generic plan scans every resource.
CREATE FUNCTION fabricsync_store_drift(
    fabric uuid, ids uuid[], statuses text[], drifts jsonb[], stream text, payloads bytea[],
    channel text, watching boolean, set_aggregate boolean) RETURNS bigint
LANGUAGE sql AS $$
    WITH d AS (UPDATE resources r SET drift_status = u.status, drift = u.drift
               FROM unnest(ids, statuses, drifts) AS u(id, status, drift)
               WHERE r.id = u.id AND r.fabric_id = fabric RETURNING r.id),
         e AS (INSERT INTO events (fabric_id, stream, payload)
               SELECT fabric, stream, p FROM unnest(payloads) WITH ORDINALITY AS v(p, i) ORDER BY i
               RETURNING sequence),
         n AS (SELECT pg_notify(channel, concat_ws(' ', stream, fabric::text, '-', max(sequence)::text))
               FROM e HAVING count(*) > 0),
         a AS (UPDATE fabrics SET drift_status = CASE WHEN NOT watching THEN 'unknown'
                 WHEN EXISTS (SELECT 1 FROM unnest(statuses) AS s(status)
                              WHERE s.status IN ('drifted', 'missing', 'orphaned', 'contested'))
                   OR EXISTS (SELECT 1 FROM resources
                              WHERE fabric_id = fabric AND drift_status IN ('drifted', 'missing', 'orphaned', 'contested')
                                AND id <> ALL(ids))
                 THEN 'drifted' ELSE 'in_sync' END
               WHERE id = fabric AND set_aggregate)
    SELECT (SELECT count(*) FROM d) + (SELECT count(*) FROM n)
$$;
