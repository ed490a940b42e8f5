-- Rollups of readings per minute, hour and day (resolution = bucket width in
-- ms), kept up to date by the backend so long-range charts never read raw rows.
CREATE TABLE rollups (
    device_id  VARCHAR(64) NOT NULL,
    metric     SMALLINT NOT NULL,
    resolution BIGINT NOT NULL,
    bucket     BIGINT NOT NULL,
    vmin       DOUBLE NOT NULL,
    vmax       DOUBLE NOT NULL,
    vsum       DOUBLE NOT NULL,
    n          BIGINT NOT NULL,
    PRIMARY KEY (device_id, metric, resolution, bucket)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
