-- Each device's MQTT password, as the hex SHA-256 of its 32 random bytes
-- (SQLite). No row: the device has no credential (never given, or revoked).
CREATE TABLE device_credentials (
    device_id   TEXT PRIMARY KEY NOT NULL REFERENCES devices (id),
    secret_hash TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
