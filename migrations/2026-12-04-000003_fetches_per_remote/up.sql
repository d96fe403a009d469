-- The remote a repository's fetches go to: host[:port], lower case ('' for file://, which waits
-- on no network). runs::claim caps the pulls running against one remote, so that a silent Git
-- server cannot hold every worker (issue 15).
CREATE FUNCTION fabricsync_remote(url text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN url LIKE 'file:%' THEN '' ELSE lower(coalesce(
        substring(url from '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/]*@)?([^/?#]+)'),
        substring(url from '^(?:[^@/]+@)?([^:/]+):'),
        '')) END
$$;
