-- The devices an API token is limited to (a gateway's ingest token names
-- the devices behind it); a token without rows here covers every device of
-- its homes (SQLite). No foreign key to devices: a device removed and
-- registered again keeps its gateway.
CREATE TABLE api_token_devices (
    token_name TEXT NOT NULL REFERENCES api_tokens (name) ON DELETE CASCADE,
    device_id  TEXT NOT NULL,
    PRIMARY KEY (token_name, device_id)
) WITHOUT ROWID;
