-- What a pull reads of a fabric's directory (include/exclude globs; the layout it found) and the
-- fabric settings HNP users had: pause, whether and what to watch, and the watch's activity;
-- auto_apply: auto-sync applies what it pulls (continuous delivery).
ALTER TABLE fabrics
    ADD COLUMN include_paths       text[] NOT NULL DEFAULT '{}',
    ADD COLUMN exclude_paths       text[] NOT NULL DEFAULT '{}',
    ADD COLUMN layout              text NOT NULL DEFAULT 'unknown' CHECK (layout IN ('unknown', 'plain', 'hnp')),
    ADD COLUMN paused              boolean NOT NULL DEFAULT false,
    ADD COLUMN watch_enabled       boolean NOT NULL DEFAULT true,
    ADD COLUMN watch_kinds         text[] NOT NULL DEFAULT '{}',
    ADD COLUMN watch_started_at    timestamptz,
    ADD COLUMN watch_last_event_at timestamptz,
    ADD COLUMN watch_event_count   bigint NOT NULL DEFAULT 0,
    ADD COLUMN auto_apply          boolean NOT NULL DEFAULT false;
