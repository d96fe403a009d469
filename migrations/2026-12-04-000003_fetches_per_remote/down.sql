DROP FUNCTION fabricsync_remote(text);
