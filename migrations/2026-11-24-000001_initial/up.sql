-- Repositories, fabrics, their resources (desired + live state), sync runs and the event log.
-- Kinds are data: one resources table keyed by (group, kind, namespace, name), never a table per kind.
-- Secrets are stored only sealed (AES-256-GCM): *_sealed holds nonce || ciphertext, *_key_id names the key.

CREATE TABLE repositories (
    id                 uuid PRIMARY KEY,
    name               text NOT NULL UNIQUE,
    description        text NOT NULL DEFAULT '',
    url                text NOT NULL,
    provider           text NOT NULL,
    auth_type          text NOT NULL CHECK (auth_type IN ('none', 'token', 'basic', 'ssh_key')),
    auth_username      text,
    ssh_known_hosts    text,
    secret_sealed      bytea,
    secret_key_id      text,
    connection_status  text NOT NULL DEFAULT 'unknown',
    last_validated     timestamptz,
    validation_error   text,
    version            bigint NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK ((secret_sealed IS NULL) = (secret_key_id IS NULL))
);

CREATE TABLE fabrics (
    id                          uuid PRIMARY KEY,
    name                        text NOT NULL UNIQUE,
    description                 text NOT NULL DEFAULT '',
    repository_id               uuid NOT NULL REFERENCES repositories (id) ON DELETE RESTRICT,
    git_ref                     text NOT NULL,
    gitops_path                 text NOT NULL,
    cluster_server_url          text NOT NULL DEFAULT '',
    cluster_ca_pem              text NOT NULL DEFAULT '',
    cluster_namespace           text NOT NULL DEFAULT 'default',
    cluster_token_sealed        bytea,
    cluster_token_key_id        text,
    auto_sync_interval_seconds  bigint NOT NULL DEFAULT 0 CHECK (auto_sync_interval_seconds >= 0),
    self_heal                   boolean NOT NULL DEFAULT false,
    prune                       boolean NOT NULL DEFAULT false,
    allow_empty                 boolean NOT NULL DEFAULT false,
    strict_references           boolean NOT NULL DEFAULT false,
    ignore_differences          jsonb NOT NULL DEFAULT '[]',
    connection_status           text NOT NULL DEFAULT 'unknown',
    sync_status                 text NOT NULL DEFAULT 'never_synced',
    drift_status                text NOT NULL DEFAULT 'unknown',
    watch_status                text NOT NULL DEFAULT 'inactive',
    watch_error                 text,
    resource_counts             jsonb NOT NULL DEFAULT '[]',
    last_synced_commit          text,
    last_sync_time              timestamptz,
    last_error                  text,
    version                     bigint NOT NULL DEFAULT 1,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    CHECK ((cluster_token_sealed IS NULL) = (cluster_token_key_id IS NULL))
);
CREATE INDEX fabrics_repository_id ON fabrics (repository_id);

CREATE TABLE resources (
    id                    uuid PRIMARY KEY,
    fabric_id             uuid NOT NULL REFERENCES fabrics (id) ON DELETE CASCADE,
    api_group             text NOT NULL,
    api_version           text NOT NULL,
    kind                  text NOT NULL,
    namespace             text NOT NULL,
    name                  text NOT NULL,
    -- desired state, from Git (NULL for orphans seen only in the cluster)
    desired               jsonb,
    desired_hash          text,
    source_file           text,
    source_document       integer,
    source_line           integer,
    commit_sha            text,
    -- live state, from the watch
    live                  jsonb,
    live_resource_version text,
    live_uid              text,
    field_managers        jsonb,
    -- apply and drift
    apply_status          text NOT NULL DEFAULT 'pending',
    apply_error           text,
    last_applied_hash     text,
    last_applied_at       timestamptz,
    drift_status          text NOT NULL DEFAULT 'unknown',
    drift                 jsonb,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (fabric_id, api_group, kind, namespace, name)
);

CREATE TABLE sync_runs (
    id                uuid PRIMARY KEY,
    fabric_id         uuid NOT NULL REFERENCES fabrics (id) ON DELETE CASCADE,
    mode              text NOT NULL CHECK (mode IN ('pull', 'apply', 'full')),
    trigger           text NOT NULL CHECK (trigger IN ('user', 'schedule', 'self_heal')),
    dry_run           boolean NOT NULL DEFAULT false,
    force             boolean NOT NULL DEFAULT false,
    requested_ref     text NOT NULL DEFAULT '',
    commit_sha        text,
    status            text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    counters          jsonb NOT NULL DEFAULT '{}',
    kind_counts       jsonb NOT NULL DEFAULT '[]',
    diagnostics       jsonb NOT NULL DEFAULT '[]',
    changes           jsonb NOT NULL DEFAULT '[]',
    error             text,
    cancel_requested  boolean NOT NULL DEFAULT false,
    claimed_by        text,
    lease_expires_at  timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz
);
-- At most one active run per fabric.
CREATE UNIQUE INDEX sync_runs_one_active ON sync_runs (fabric_id) WHERE status IN ('queued', 'running');
CREATE INDEX sync_runs_fabric_created ON sync_runs (fabric_id, created_at DESC);
CREATE INDEX sync_runs_claimable ON sync_runs (created_at) WHERE status IN ('queued', 'running');

-- The event log: every stream (sync progress, cluster watch, drift) replays from here by sequence.
CREATE TABLE events (
    sequence    bigserial PRIMARY KEY,
    fabric_id   uuid NOT NULL REFERENCES fabrics (id) ON DELETE CASCADE,
    run_id      uuid REFERENCES sync_runs (id) ON DELETE CASCADE,
    stream      text NOT NULL CHECK (stream IN ('progress', 'watch', 'drift')),
    payload     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_run ON events (run_id, sequence) WHERE run_id IS NOT NULL;
CREATE INDEX events_fabric_stream ON events (fabric_id, stream, sequence);
