-- Cluster inventory (issue 14): what runs on a fabric's cluster, imported by runs of mode
-- 'inventory' (one may be active beside a pull or apply), kept per object with a content hash
-- so that each import is a diff against the last one.
CREATE TABLE inventory_objects (
    fabric_id  uuid NOT NULL REFERENCES fabrics (id) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('node', 'namespace', 'deployment', 'statefulset', 'daemonset', 'pod',
                                             'service', 'virtualmachine', 'virtualmachineinstance')),
    namespace  text NOT NULL,
    name       text NOT NULL,
    uid        text NOT NULL,
    workload   text CHECK (workload IN ('container', 'vm')),
    node       text,
    vm         text,
    facts      jsonb NOT NULL,
    hash       text NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (fabric_id, kind, namespace, name)
);
CREATE INDEX inventory_objects_node ON inventory_objects (fabric_id, node) WHERE node IS NOT NULL;

-- What an import keeps (namespace regex, workloads, kinds, the node label naming a Server) and
-- how often the schedule imports (0: on request only).
ALTER TABLE fabrics
    ADD COLUMN inventory                  jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN inventory_interval_seconds bigint NOT NULL DEFAULT 0 CHECK (inventory_interval_seconds >= 0),
    ADD COLUMN next_inventory_at          timestamptz;

ALTER TABLE sync_runs DROP CONSTRAINT sync_runs_mode_check;
ALTER TABLE sync_runs ADD CONSTRAINT sync_runs_mode_check CHECK (mode IN ('pull', 'apply', 'full', 'inventory'));
DROP INDEX sync_runs_one_active;
CREATE UNIQUE INDEX sync_runs_one_active ON sync_runs (fabric_id, (mode = 'inventory')) WHERE status IN ('queued', 'running');
