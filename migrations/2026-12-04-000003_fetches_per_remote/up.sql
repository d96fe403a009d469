-- The Git server a repository's fetches go to: its host, lower case ('' for file://, which
-- waits on no network). runs::claim caps the runs fetching from one server at once, so that a
-- silent Git server cannot hold every worker (issue 15); `fetching` is set around a run's fetch.
CREATE FUNCTION fabricsync_remote(url text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN url LIKE 'file:%' THEN '' ELSE lower(coalesce(
        substring(url from '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/]*@)?(\[[^]/]*\]|[^/:?#]+)'),
        substring(url from '^(?:[^@/]+@)?([^:/]+):'),
        '')) END
$$;
ALTER TABLE sync_runs ADD COLUMN fetching boolean NOT NULL DEFAULT false;
