-- People, their roles per home, sessions and API tokens (SQLite).
-- Only hashes are kept: argon2 (PHC string) for passwords, SHA-256 (hex) for
-- tokens, which are 256 random bits and need no slow hash.
CREATE TABLE users (
    name          TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE memberships (
    username TEXT NOT NULL REFERENCES users (name),
    home_id  TEXT NOT NULL REFERENCES homes (id),
    role     TEXT NOT NULL,
    PRIMARY KEY (username, home_id)
);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY NOT NULL,
    username   TEXT NOT NULL REFERENCES users (name),
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

CREATE TABLE api_tokens (
    name       TEXT PRIMARY KEY NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL
);

CREATE TABLE api_token_grants (
    token_name TEXT NOT NULL REFERENCES api_tokens (name) ON DELETE CASCADE,
    home_id    TEXT NOT NULL REFERENCES homes (id),
    role       TEXT NOT NULL,
    PRIMARY KEY (token_name, home_id)
);

-- Who did what: logins (and failed ones), users, roles, tokens, homes,
-- devices and rules. `home_id` is '' for what concerns no one home (a
-- login); admins of a home see those of its members.
CREATE TABLE audit_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    home_id TEXT NOT NULL DEFAULT '',
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX audit_by_home ON audit_events (home_id, id);
CREATE INDEX audit_by_target ON audit_events (target, id);
