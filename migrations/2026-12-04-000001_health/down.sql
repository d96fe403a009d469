ALTER TABLE fabrics DROP COLUMN health;
DROP INDEX resources_fabric_health;
ALTER TABLE resources DROP COLUMN health_reason, DROP COLUMN health;
