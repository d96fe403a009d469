-- The W3C traceparent of the call that queued the run, so the run's trace spans continue the
-- caller's trace (issue 15; null when traces are off or the call was not sampled).
ALTER TABLE sync_runs ADD COLUMN trace_parent text;
