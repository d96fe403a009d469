ALTER TABLE sync_runs DROP COLUMN requested_by;
DROP TABLE audit_events;
DROP TABLE api_tokens;
DROP TABLE server_keys;
