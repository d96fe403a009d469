-- now() is the transaction's start: an event appended at the end of a long transaction (a run's
-- final event after writing thousands of objects) would carry a time before that work.
ALTER TABLE events ALTER COLUMN created_at SET DEFAULT clock_timestamp();
