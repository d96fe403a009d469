//! Diesel table definitions, generated from the migrated database by `diesel print-schema`
//! with diesel.toml (diesel_cli, installed by scripts/setup.sh --test): server/tests/schema.rs
//! fails when they differ. After changing migrations/, regenerate with scripts/print-schema.sh.

diesel::table! {
    api_tokens (id) {
        id -> Uuid,
        name -> Text,
        lookup_key -> Text,
        secret_hash -> Bytea,
        role -> Text,
        fabric_scope -> Array<Text>,
        allowed_networks -> Array<Text>,
        description -> Text,
        created_by -> Text,
        expires_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        last_used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    audit_events (id) {
        id -> Int8,
        time -> Timestamptz,
        principal -> Text,
        actor -> Text,
        rpc -> Text,
        fabric_id -> Nullable<Uuid>,
        fabric_name -> Text,
        targets -> Jsonb,
        code -> Text,
        message -> Text,
        peer -> Text,
    }
}

diesel::table! {
    events (sequence) {
        sequence -> Int8,
        fabric_id -> Uuid,
        run_id -> Nullable<Uuid>,
        stream -> Text,
        payload -> Bytea,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    fabrics (id) {
        id -> Uuid,
        name -> Text,
        description -> Text,
        repository_id -> Uuid,
        git_ref -> Text,
        gitops_path -> Text,
        cluster_server_url -> Text,
        cluster_ca_pem -> Text,
        cluster_namespace -> Text,
        cluster_token_sealed -> Nullable<Bytea>,
        cluster_token_key_id -> Nullable<Text>,
        auto_sync_interval_seconds -> Int8,
        self_heal -> Bool,
        prune -> Bool,
        allow_empty -> Bool,
        strict_references -> Bool,
        ignore_differences -> Jsonb,
        connection_status -> Text,
        sync_status -> Text,
        drift_status -> Text,
        watch_status -> Text,
        watch_error -> Nullable<Text>,
        resource_counts -> Jsonb,
        last_synced_commit -> Nullable<Text>,
        last_sync_time -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
        version -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        next_auto_sync_at -> Nullable<Timestamptz>,
        synced_source -> Nullable<Text>,
        include_paths -> Array<Text>,
        exclude_paths -> Array<Text>,
        layout -> Text,
        paused -> Bool,
        watch_enabled -> Bool,
        watch_kinds -> Array<Text>,
        watch_started_at -> Nullable<Timestamptz>,
        watch_last_event_at -> Nullable<Timestamptz>,
        watch_event_count -> Int8,
        auto_apply -> Bool,
        health -> Nullable<Jsonb>,
        inventory -> Jsonb,
        inventory_interval_seconds -> Int8,
        next_inventory_at -> Nullable<Timestamptz>,
        watch_scope -> Text,
        watch_process -> Nullable<Text>,
    }
}

diesel::table! {
    inventory_clusters (fabric_id, name) {
        fabric_id -> Uuid,
        name -> Text,
        server_url -> Text,
        ca_pem -> Text,
        token_sealed -> Nullable<Bytea>,
        token_key_id -> Nullable<Text>,
    }
}

diesel::table! {
    inventory_objects (fabric_id, cluster, kind, namespace, name) {
        fabric_id -> Uuid,
        kind -> Text,
        namespace -> Text,
        name -> Text,
        uid -> Text,
        workload -> Nullable<Text>,
        node -> Nullable<Text>,
        vm -> Nullable<Text>,
        facts -> Jsonb,
        hash -> Text,
        updated_at -> Timestamptz,
        cluster -> Text,
    }
}

diesel::table! {
    repositories (id) {
        id -> Uuid,
        name -> Text,
        description -> Text,
        url -> Text,
        provider -> Text,
        auth_type -> Text,
        auth_username -> Nullable<Text>,
        ssh_known_hosts -> Nullable<Text>,
        secret_sealed -> Nullable<Bytea>,
        secret_key_id -> Nullable<Text>,
        connection_status -> Text,
        last_validated -> Nullable<Timestamptz>,
        validation_error -> Nullable<Text>,
        version -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        webhook_secret_sealed -> Nullable<Bytea>,
        webhook_secret_key_id -> Nullable<Text>,
    }
}

diesel::table! {
    resources (id) {
        id -> Uuid,
        fabric_id -> Uuid,
        api_group -> Text,
        api_version -> Text,
        kind -> Text,
        namespace -> Text,
        name -> Text,
        desired -> Nullable<Jsonb>,
        desired_hash -> Nullable<Text>,
        source_file -> Nullable<Text>,
        source_document -> Nullable<Int4>,
        source_line -> Nullable<Int4>,
        commit_sha -> Nullable<Text>,
        live -> Nullable<Jsonb>,
        live_resource_version -> Nullable<Text>,
        live_uid -> Nullable<Text>,
        field_managers -> Nullable<Jsonb>,
        apply_status -> Text,
        apply_error -> Nullable<Text>,
        last_applied_hash -> Nullable<Text>,
        last_applied_at -> Nullable<Timestamptz>,
        drift_status -> Text,
        drift -> Nullable<Jsonb>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        applied_resource_version -> Nullable<Text>,
        self_heal_reverts -> Nullable<Jsonb>,
        health -> Text,
        health_reason -> Text,
    }
}

diesel::table! {
    server_keys (name) {
        name -> Text,
        secret_sealed -> Bytea,
        secret_key_id -> Text,
    }
}

diesel::table! {
    sync_runs (id) {
        id -> Uuid,
        fabric_id -> Uuid,
        mode -> Text,
        trigger -> Text,
        dry_run -> Bool,
        force -> Bool,
        requested_ref -> Text,
        commit_sha -> Nullable<Text>,
        status -> Text,
        counters -> Jsonb,
        kind_counts -> Jsonb,
        diagnostics -> Jsonb,
        changes -> Jsonb,
        error -> Nullable<Text>,
        cancel_requested -> Bool,
        claimed_by -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        started_at -> Nullable<Timestamptz>,
        finished_at -> Nullable<Timestamptz>,
        targets -> Nullable<Jsonb>,
        requested_by -> Text,
        rollout_wait_seconds -> Int4,
        fetching -> Bool,
        trace_parent -> Nullable<Text>,
    }
}

diesel::joinable!(events -> fabrics (fabric_id));
diesel::joinable!(events -> sync_runs (run_id));
diesel::joinable!(fabrics -> repositories (repository_id));
diesel::joinable!(inventory_clusters -> fabrics (fabric_id));
diesel::joinable!(inventory_objects -> fabrics (fabric_id));
diesel::joinable!(resources -> fabrics (fabric_id));
diesel::joinable!(sync_runs -> fabrics (fabric_id));

diesel::allow_tables_to_appear_in_same_query!(
    api_tokens,
    audit_events,
    events,
    fabrics,
    inventory_clusters,
    inventory_objects,
    repositories,
    resources,
    server_keys,
    sync_runs,
);
