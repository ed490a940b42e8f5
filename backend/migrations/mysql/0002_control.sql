-- Command lifecycle, manual overrides, rule timing and persisted rule state,
-- the decisions log, and the automation lease (MySQL / MariaDB).
ALTER TABLE devices ADD COLUMN override_until BIGINT NULL;

ALTER TABLE rules
    ADD COLUMN min_on_s      INT NOT NULL DEFAULT 0,
    ADD COLUMN min_off_s     INT NOT NULL DEFAULT 0,
    ADD COLUMN sustain_s     INT NOT NULL DEFAULT 0,
    ADD COLUMN stale_after_s INT NOT NULL DEFAULT 0,
    ADD COLUMN stale_action  VARCHAR(8) NOT NULL DEFAULT 'none';

-- One row per desired version sent to a device: (device_id, version) is the command.
CREATE TABLE commands (
    device_id     VARCHAR(64) NOT NULL,
    version       BIGINT NOT NULL,
    on_state      BOOLEAN NOT NULL,
    requested_by  VARCHAR(255) NOT NULL,
    reason        VARCHAR(255) NOT NULL,
    state         VARCHAR(12) NOT NULL,
    requested_at  BIGINT NOT NULL,
    published_at  BIGINT NULL,
    applied_at    BIGINT NULL,
    expires_at    BIGINT NOT NULL,
    round_trip_us BIGINT NULL,
    PRIMARY KEY (device_id, version),
    INDEX commands_open (state, expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- What a rule remembers between readings, so a restart resumes its timers.
CREATE TABLE rule_state (
    rule_id         VARCHAR(64) NOT NULL PRIMARY KEY,
    output          BOOLEAN NULL,
    switched_at     BIGINT NULL,
    pending_on      BOOLEAN NULL,
    pending_since   BIGINT NULL,
    pending_value   DOUBLE NULL,
    last_reading_at BIGINT NULL,
    last_value      DOUBLE NULL,
    stale           BOOLEAN NOT NULL DEFAULT FALSE,
    started_at      BIGINT NOT NULL,
    cursor_ts       BIGINT NOT NULL,
    cursor_seq      BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE decisions (
    id               BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    rule_id          VARCHAR(64) NOT NULL,
    home_id          VARCHAR(64) NOT NULL,
    target_device_id VARCHAR(64) NOT NULL,
    action           VARCHAR(20) NOT NULL,
    at               BIGINT NOT NULL,
    value            DOUBLE NULL,
    reason           VARCHAR(255) NOT NULL,
    command_version  BIGINT NOT NULL,
    INDEX decisions_by_rule (rule_id, id),
    INDEX decisions_by_home (home_id, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Who acts for the whole cluster (the automation engine), until when.
CREATE TABLE leases (
    name       VARCHAR(64) NOT NULL PRIMARY KEY,
    holder     VARCHAR(128) NOT NULL,
    expires_at BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
