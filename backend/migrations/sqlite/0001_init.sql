-- Homes, devices with their actuator state, readings, rules (SQLite).
CREATE TABLE homes (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE devices (
    id               TEXT PRIMARY KEY NOT NULL,
    home_id          TEXT NOT NULL REFERENCES homes (id),
    kind             TEXT NOT NULL,
    name             TEXT NOT NULL,
    mode             TEXT NOT NULL DEFAULT 'off',
    desired_version  INTEGER NOT NULL DEFAULT 0,
    desired_on       BOOLEAN,
    desired_at       INTEGER,
    desired_reason   TEXT,
    reported_version INTEGER,
    reported_on      BOOLEAN,
    reported_at      INTEGER,
    online           BOOLEAN NOT NULL DEFAULT 0,
    last_seen        INTEGER
);
CREATE INDEX devices_by_home ON devices (home_id);

-- (device_id, metric, seq) is the idempotency key: a replayed reading is ignored.
CREATE TABLE readings (
    device_id TEXT NOT NULL,
    metric    SMALLINT NOT NULL,
    seq       INTEGER NOT NULL,
    ts        INTEGER NOT NULL,
    value     REAL NOT NULL,
    PRIMARY KEY (device_id, metric, seq)
) WITHOUT ROWID;
CREATE INDEX readings_by_time ON readings (device_id, ts, metric);

CREATE TABLE rules (
    id               TEXT PRIMARY KEY NOT NULL,
    home_id          TEXT NOT NULL REFERENCES homes (id),
    name             TEXT NOT NULL,
    source_device_id TEXT NOT NULL REFERENCES devices (id),
    metric           SMALLINT NOT NULL,
    target_device_id TEXT NOT NULL REFERENCES devices (id),
    on_above         REAL NOT NULL,
    off_below        REAL NOT NULL,
    enabled          BOOLEAN NOT NULL
);
