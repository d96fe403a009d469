-- API tokens and the audit log (who may call the API, and who did what).
-- A token is `fsk_<lookup_key>_<secret>`: lookup_key finds the row, the secret is stored only as
-- HMAC-SHA256 under the server's token pepper, so a database dump lets nobody call the API.

-- Keys the server makes for itself, sealed like every secret (rotate-keys re-seals them), so
-- they outlive a rotation of the encryption keys: `token-pepper` keys the token hashes.
CREATE TABLE server_keys (
    name           text PRIMARY KEY,
    secret_sealed  bytea NOT NULL,
    secret_key_id  text NOT NULL
);

CREATE TABLE api_tokens (
    id                uuid PRIMARY KEY,
    name              text NOT NULL,
    lookup_key        text NOT NULL UNIQUE,
    secret_hash       bytea NOT NULL,
    role              text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    fabric_scope      text[] NOT NULL DEFAULT '{}',
    allowed_networks  text[] NOT NULL DEFAULT '{}',
    description       text NOT NULL DEFAULT '',
    created_by        text NOT NULL,
    expires_at        timestamptz,
    revoked_at        timestamptz,
    last_used_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now()
);
-- A name is taken while its token is not revoked; a revoked name may be reused.
CREATE UNIQUE INDEX api_tokens_active_name ON api_tokens (name) WHERE revoked_at IS NULL;

CREATE TABLE audit_events (
    id           bigserial PRIMARY KEY,
    time         timestamptz NOT NULL DEFAULT clock_timestamp(),
    principal    text NOT NULL,
    actor        text NOT NULL DEFAULT '',
    rpc          text NOT NULL,
    fabric_id    uuid,
    fabric_name  text NOT NULL DEFAULT '',
    targets      jsonb NOT NULL DEFAULT '{}',
    code         text NOT NULL,
    message      text NOT NULL DEFAULT '',
    peer         text NOT NULL DEFAULT ''
);
CREATE INDEX audit_events_time ON audit_events (time);
CREATE INDEX audit_events_principal ON audit_events (principal, id);
CREATE INDEX audit_events_fabric ON audit_events (fabric_name, id);

-- Who asked for a run: a principal (and the person it acted for), or the scheduler.
ALTER TABLE sync_runs ADD COLUMN requested_by text NOT NULL DEFAULT '';
