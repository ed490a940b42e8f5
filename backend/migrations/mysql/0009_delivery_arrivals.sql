-- Readings that arrived late (numbered below one of their metric stored
-- before them) or again (duplicates), per device, metric and the hour they
-- were taken in (MySQL / MariaDB). The ingest writer adds each commit's to
-- them (domain/src/delivery.rs): a row per hour that had some, never one
-- per reading.
CREATE TABLE delivery_arrivals (
    device_id  VARCHAR(64) NOT NULL,
    hour_start BIGINT NOT NULL,
    metric     SMALLINT NOT NULL,
    late       BIGINT NOT NULL,
    duplicates BIGINT NOT NULL,
    PRIMARY KEY (device_id, hour_start, metric)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
