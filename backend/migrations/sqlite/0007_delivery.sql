-- Where each run of a sensor's agent began (SQLite). A restart starts a new
-- run further up, and the numbers it skips were never sent, so they do not
-- count as missing (domain/src/delivery.rs). One row per agent start.
CREATE TABLE delivery_runs (
    device_id TEXT NOT NULL,
    run_start INTEGER NOT NULL,
    seen_at   INTEGER NOT NULL,
    PRIMARY KEY (device_id, run_start)
) WITHOUT ROWID;
