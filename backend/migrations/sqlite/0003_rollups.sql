-- Rollups of readings per minute, hour and day (resolution = bucket width in
-- ms), kept up to date by the backend so long-range charts never read raw rows.
CREATE TABLE rollups (
    device_id  TEXT NOT NULL,
    metric     SMALLINT NOT NULL,
    resolution INTEGER NOT NULL,
    bucket     INTEGER NOT NULL,
    vmin       REAL NOT NULL,
    vmax       REAL NOT NULL,
    vsum       REAL NOT NULL,
    n          INTEGER NOT NULL,
    PRIMARY KEY (device_id, metric, resolution, bucket)
) WITHOUT ROWID;
