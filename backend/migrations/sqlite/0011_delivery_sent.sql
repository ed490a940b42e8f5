-- A sensor's account of each run (SQLite): the last batch number it said it
-- had sent (its status messages carry it) and when it said so. The numbers
-- above the highest stored up to it are missing from the run's end, where no
-- later batch shows the gap (domain/src/delivery.rs, tail_missing).
ALTER TABLE delivery_runs ADD COLUMN sent_through INTEGER NULL;
ALTER TABLE delivery_runs ADD COLUMN said_at INTEGER NULL;
