-- Readings that arrived late (numbered below one of their metric stored
-- before them) or again (duplicates), per device, metric and the hour they
-- were taken in (SQLite). The ingest writer adds each commit's to them
-- (domain/src/delivery.rs): a row per hour that had some, never one per
-- reading.
CREATE TABLE delivery_arrivals (
    device_id  TEXT NOT NULL,
    hour_start INTEGER NOT NULL,
    metric     SMALLINT NOT NULL,
    late       INTEGER NOT NULL,
    duplicates INTEGER NOT NULL,
    PRIMARY KEY (device_id, hour_start, metric)
) WITHOUT ROWID;
