-- Command lifecycle, manual overrides, rule timing and persisted rule state,
-- the decisions log, and the automation lease (SQLite).
ALTER TABLE devices ADD COLUMN override_until INTEGER;

ALTER TABLE rules ADD COLUMN min_on_s INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rules ADD COLUMN min_off_s INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rules ADD COLUMN sustain_s INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rules ADD COLUMN stale_after_s INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rules ADD COLUMN stale_action TEXT NOT NULL DEFAULT 'none';

-- One row per desired version sent to a device: (device_id, version) is the command.
CREATE TABLE commands (
    device_id     TEXT NOT NULL,
    version       INTEGER NOT NULL,
    on_state      BOOLEAN NOT NULL,
    requested_by  TEXT NOT NULL,
    reason        TEXT NOT NULL,
    state         TEXT NOT NULL,
    requested_at  INTEGER NOT NULL,
    published_at  INTEGER,
    applied_at    INTEGER,
    expires_at    INTEGER NOT NULL,
    round_trip_us INTEGER,
    PRIMARY KEY (device_id, version)
) WITHOUT ROWID;
CREATE INDEX commands_open ON commands (state, expires_at);

-- What a rule remembers between readings, so a restart resumes its timers.
CREATE TABLE rule_state (
    rule_id         TEXT PRIMARY KEY NOT NULL,
    output          BOOLEAN,
    switched_at     INTEGER,
    pending_on      BOOLEAN,
    pending_since   INTEGER,
    pending_value   REAL,
    last_reading_at INTEGER,
    last_value      REAL,
    stale           BOOLEAN NOT NULL DEFAULT 0,
    started_at      INTEGER NOT NULL,
    cursor_ts       INTEGER NOT NULL,
    cursor_seq      INTEGER NOT NULL
);

CREATE TABLE decisions (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    rule_id          TEXT NOT NULL,
    home_id          TEXT NOT NULL,
    target_device_id TEXT NOT NULL,
    action           TEXT NOT NULL,
    at               INTEGER NOT NULL,
    value            REAL,
    reason           TEXT NOT NULL,
    command_version  INTEGER NOT NULL
);
CREATE INDEX decisions_by_rule ON decisions (rule_id, id);
CREATE INDEX decisions_by_home ON decisions (home_id, id);

-- Who acts for the whole cluster (the automation engine), until when.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY NOT NULL,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
