-- Health (issue 14): each resource's, with the reason, kept by the fabric's watch; the fabric's
-- summary (its worst resource's health, resources per health, switches per rollout state).
ALTER TABLE resources
    ADD COLUMN health        text NOT NULL DEFAULT 'unknown'
        CHECK (health IN ('degraded', 'missing', 'progressing', 'unknown', 'healthy')),
    ADD COLUMN health_reason text NOT NULL DEFAULT '';
CREATE INDEX resources_fabric_health ON resources (fabric_id, health);
ALTER TABLE fabrics ADD COLUMN health jsonb;
