-- Where each run of a sensor's agent began (MySQL / MariaDB). A restart starts
-- a new run further up, and the numbers it skips were never sent, so they do
-- not count as missing (domain/src/delivery.rs). One row per agent start.
CREATE TABLE delivery_runs (
    device_id VARCHAR(64) NOT NULL,
    run_start BIGINT NOT NULL,
    seen_at   BIGINT NOT NULL,
    PRIMARY KEY (device_id, run_start)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
