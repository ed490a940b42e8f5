-- People, their roles per home, sessions and API tokens (MySQL / MariaDB).
-- Only hashes are kept: argon2 (PHC string) for passwords, SHA-256 (hex) for
-- tokens, which are 256 random bits and need no slow hash.
CREATE TABLE users (
    name          VARCHAR(64) NOT NULL PRIMARY KEY,
    password_hash VARCHAR(255) NOT NULL,
    created_at    BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE memberships (
    username VARCHAR(64) NOT NULL,
    home_id  VARCHAR(64) NOT NULL,
    role     VARCHAR(16) NOT NULL,
    PRIMARY KEY (username, home_id),
    FOREIGN KEY (username) REFERENCES users (name),
    FOREIGN KEY (home_id) REFERENCES homes (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE sessions (
    token_hash CHAR(64) NOT NULL PRIMARY KEY,
    username   VARCHAR(64) NOT NULL,
    expires_at BIGINT NOT NULL,
    INDEX sessions_by_expiry (expires_at),
    FOREIGN KEY (username) REFERENCES users (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE api_tokens (
    name       VARCHAR(64) NOT NULL PRIMARY KEY,
    token_hash CHAR(64) NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    created_by VARCHAR(80) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE api_token_grants (
    token_name VARCHAR(64) NOT NULL,
    home_id    VARCHAR(64) NOT NULL,
    role       VARCHAR(16) NOT NULL,
    PRIMARY KEY (token_name, home_id),
    FOREIGN KEY (token_name) REFERENCES api_tokens (name) ON DELETE CASCADE,
    FOREIGN KEY (home_id) REFERENCES homes (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Who did what: logins (and failed ones), users, roles, tokens, homes,
-- devices and rules. `home_id` is '' for what concerns no one home (a
-- login); admins of a home see those of its members.
CREATE TABLE audit_events (
    id      BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    at      BIGINT NOT NULL,
    home_id VARCHAR(64) NOT NULL DEFAULT '',
    actor   VARCHAR(80) NOT NULL,
    action  VARCHAR(32) NOT NULL,
    target  VARCHAR(128) NOT NULL,
    outcome VARCHAR(16) NOT NULL,
    INDEX audit_by_home (home_id, id),
    INDEX audit_by_target (target, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
