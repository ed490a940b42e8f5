-- Each device's MQTT password, as the hex SHA-256 of its 32 random bytes
-- (MySQL / MariaDB). No row: the device has no credential (never given, or
-- revoked).
CREATE TABLE device_credentials (
    device_id   VARCHAR(64) NOT NULL PRIMARY KEY,
    secret_hash CHAR(64) NOT NULL,
    created_at  BIGINT NOT NULL,
    FOREIGN KEY (device_id) REFERENCES devices (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
