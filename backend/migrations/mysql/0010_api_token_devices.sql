-- The devices an API token is limited to (a gateway's ingest token names
-- the devices behind it); a token without rows here covers every device of
-- its homes (MySQL). No foreign key to devices: a device removed and
-- registered again keeps its gateway.
CREATE TABLE api_token_devices (
    token_name VARCHAR(64) NOT NULL,
    device_id  VARCHAR(64) NOT NULL,
    PRIMARY KEY (token_name, device_id),
    FOREIGN KEY (token_name) REFERENCES api_tokens (name) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
