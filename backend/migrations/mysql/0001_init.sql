-- Homes, devices with their actuator state, readings, rules (MySQL / MariaDB).
CREATE TABLE homes (
    id         VARCHAR(64) NOT NULL PRIMARY KEY,
    name       VARCHAR(255) NOT NULL,
    created_at BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE devices (
    id               VARCHAR(64) NOT NULL PRIMARY KEY,
    home_id          VARCHAR(64) NOT NULL,
    kind             VARCHAR(16) NOT NULL,
    name             VARCHAR(255) NOT NULL,
    mode             VARCHAR(8) NOT NULL DEFAULT 'off',
    desired_version  BIGINT NOT NULL DEFAULT 0,
    desired_on       BOOLEAN NULL,
    desired_at       BIGINT NULL,
    desired_reason   VARCHAR(255) NULL,
    reported_version BIGINT NULL,
    reported_on      BOOLEAN NULL,
    reported_at      BIGINT NULL,
    online           BOOLEAN NOT NULL DEFAULT FALSE,
    last_seen        BIGINT NULL,
    INDEX devices_by_home (home_id),
    FOREIGN KEY (home_id) REFERENCES homes (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- (device_id, metric, seq) is the idempotency key: a replayed reading is ignored.
CREATE TABLE readings (
    device_id VARCHAR(64) NOT NULL,
    metric    SMALLINT NOT NULL,
    seq       BIGINT NOT NULL,
    ts        BIGINT NOT NULL,
    value     DOUBLE NOT NULL,
    PRIMARY KEY (device_id, metric, seq),
    INDEX readings_by_time (device_id, ts, metric)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE rules (
    id               VARCHAR(64) NOT NULL PRIMARY KEY,
    home_id          VARCHAR(64) NOT NULL,
    name             VARCHAR(255) NOT NULL,
    source_device_id VARCHAR(64) NOT NULL,
    metric           SMALLINT NOT NULL,
    target_device_id VARCHAR(64) NOT NULL,
    on_above         DOUBLE NOT NULL,
    off_below        DOUBLE NOT NULL,
    enabled          BOOLEAN NOT NULL,
    FOREIGN KEY (home_id) REFERENCES homes (id),
    FOREIGN KEY (source_device_id) REFERENCES devices (id),
    FOREIGN KEY (target_device_id) REFERENCES devices (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
