-- Which server process watches the fabric (its presence name, `<pid>-<id>`): watches spread
-- over the processes sharing this database (issue 15).
ALTER TABLE fabrics ADD COLUMN watch_process text;
