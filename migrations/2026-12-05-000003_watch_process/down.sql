ALTER TABLE fabrics DROP COLUMN watch_process;
