DROP TABLE events;
DROP TABLE sync_runs;
DROP TABLE resources;
DROP TABLE fabrics;
DROP TABLE repositories;
