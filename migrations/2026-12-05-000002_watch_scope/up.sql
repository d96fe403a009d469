-- Fabrics sharing a cluster (issue 15): which objects of the watched kinds a fabric's watch
-- sees: all (cluster), the namespaced ones in its namespace only (namespace), or only those
-- carrying its fabricsync.dev/fabric label (labelled).
ALTER TABLE fabrics
    ADD COLUMN watch_scope text NOT NULL DEFAULT 'cluster' CHECK (watch_scope IN ('cluster', 'namespace', 'labelled'));
