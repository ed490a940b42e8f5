//! The SQL of people, roles, sessions and API tokens ([`AccessStore`]),
//! shared by SQLite and MySQL like the rest (`sql.rs`). Apart from
//! [`Storage`](super::Storage) because only the access layer uses it.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{
    sql::{decode_err, Dialect, SqlStorage},
    Result, StorageError,
};
use crate::domain::{DeviceId, DeviceScope, Grant, HomeId, Role, TokenName, UnixMs, Username};

/// An API token as listed (its hash stays in the database).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenInfo {
    pub name: TokenName,
    pub grants: Vec<Grant>,
    pub devices: DeviceScope,
    pub created_at: UnixMs,
    pub created_by: String,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub at: UnixMs,
    /// `None`: about no one home (a login).
    pub home: Option<HomeId>,
    /// Who acted: a user's name, `token:<name>`, `api` (open mode), or for
    /// a login the name given.
    pub actor: String,
    /// `login`, `user.create`, `token.revoke`, `rule.update`, …
    pub action: String,
    /// What it acted on: a user, token, home, device or rule.
    pub target: String,
    /// `ok` or `refused`.
    pub outcome: String,
}

/// Persistence of users, memberships, sessions and API tokens. Tokens are
/// looked up by the hex SHA-256 of the secret; the secret is never stored.
#[async_trait]
pub trait AccessStore: Send + Sync + 'static {
    async fn count_users(&self) -> Result<u64>;
    /// `Conflict` if the name is taken.
    async fn create_user(&self, name: &Username, password_hash: &str, at: UnixMs) -> Result<()>;
    async fn password_hash(&self, name: &Username) -> Result<Option<String>>;
    /// Sets (or with `None` removes) `user`'s role in `home`; `NotFound` if
    /// the user does not exist.
    async fn set_membership(
        &self,
        user: &Username,
        home: &HomeId,
        role: Option<Role>,
    ) -> Result<()>;
    async fn user_grants(&self, user: &Username) -> Result<Vec<Grant>>;

    async fn create_session(&self, hash: &str, user: &Username, expires_at: UnixMs) -> Result<()>;
    /// The user of a session that has not expired at `now`, and its expiry.
    async fn session_user(&self, hash: &str, now: UnixMs) -> Result<Option<(Username, UnixMs)>>;
    async fn delete_session(&self, hash: &str) -> Result<()>;
    /// Drops sessions that expired before `now`.
    async fn delete_expired_sessions(&self, now: UnixMs) -> Result<u64>;

    /// `Conflict` if the name is taken.
    async fn create_api_token(&self, hash: &str, token: &ApiTokenInfo) -> Result<()>;
    async fn api_token(&self, hash: &str) -> Result<Option<ApiTokenInfo>>;
    async fn get_api_token(&self, name: &TokenName) -> Result<Option<ApiTokenInfo>>;
    /// Tokens with a grant in `home`, by name.
    async fn list_api_tokens(&self, home: &HomeId) -> Result<Vec<ApiTokenInfo>>;
    /// `NotFound` if there is no such token.
    async fn delete_api_token(&self, name: &TokenName) -> Result<()>;

    /// Sets `device`'s MQTT credential to the one hashed as `hash`,
    /// replacing any it had.
    async fn set_device_credential(&self, device: &DeviceId, hash: &str, at: UnixMs) -> Result<()>;
    /// The hash of `device`'s MQTT credential, if it has one.
    async fn device_credential(&self, device: &DeviceId) -> Result<Option<String>>;
    /// Removes `device`'s MQTT credential; whether it had one.
    async fn delete_device_credential(&self, device: &DeviceId) -> Result<bool>;
    /// The devices that have an MQTT credential, by id.
    async fn devices_with_credentials(&self) -> Result<Vec<DeviceId>>;

    async fn record_audit(&self, event: &AuditEvent) -> Result<()>;
    /// Newest first: the events of `home`, and the logins of its members.
    async fn list_audit(&self, home: &HomeId, limit: u32) -> Result<Vec<AuditEvent>>;
}

fn grant_from_row<R: Row>(row: &R) -> Result<Grant>
where
    for<'a> &'a str: ColumnIndex<R>,
    for<'a> String: Decode<'a, R::Database> + Type<R::Database>,
{
    let home: String = row.try_get("home_id")?;
    let role: String = row.try_get("role")?;
    Ok(Grant {
        home: HomeId::parse(&home, "home_id").map_err(|_| decode_err("membership home"))?,
        role: Role::parse(&role).ok_or_else(|| decode_err("membership role"))?,
    })
}

impl<DB> SqlStorage<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB> + ColumnIndex<DB::Row>,
    for<'a> i64: Encode<'a, DB> + Decode<'a, DB> + Type<DB>,
    for<'a> String: Decode<'a, DB> + Type<DB>,
{
    async fn token_grants(&self, name: &str) -> Result<Vec<Grant>> {
        let rows = sqlx::query(
            "SELECT home_id, role FROM api_token_grants WHERE token_name = ? ORDER BY home_id",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(grant_from_row).collect()
    }

    async fn token_devices(&self, name: &str) -> Result<DeviceScope> {
        let rows = sqlx::query(
            "SELECT device_id FROM api_token_devices WHERE token_name = ? ORDER BY device_id",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        let devices = rows
            .iter()
            .map(|row| {
                let id: String = row.try_get("device_id")?;
                DeviceId::parse(&id, "device_id").map_err(|_| decode_err("token device"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DeviceScope::from_list(devices))
    }

    async fn token_by(&self, column: &str, key: &str) -> Result<Option<ApiTokenInfo>> {
        // Why format!: `column` is one of two names fixed in this file.
        let row = sqlx::query(&format!(
            "SELECT name, created_at, created_by FROM api_tokens WHERE {column} = ?"
        ))
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let name: String = row.try_get("name")?;
        Ok(Some(ApiTokenInfo {
            grants: self.token_grants(&name).await?,
            devices: self.token_devices(&name).await?,
            name: TokenName::parse(&name, "name").map_err(|_| decode_err("token name"))?,
            created_at: row.try_get("created_at")?,
            created_by: row.try_get("created_by")?,
        }))
    }
}

#[async_trait]
impl<DB> AccessStore for SqlStorage<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB> + ColumnIndex<DB::Row>,
    for<'a> i64: Encode<'a, DB> + Decode<'a, DB> + Type<DB>,
    for<'a> String: Decode<'a, DB> + Type<DB>,
{
    async fn count_users(&self) -> Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await?;
        let n: i64 = row.try_get("n")?;
        Ok(n as u64)
    }

    async fn create_user(&self, name: &Username, password_hash: &str, at: UnixMs) -> Result<()> {
        sqlx::query("INSERT INTO users (name, password_hash, created_at) VALUES (?, ?, ?)")
            .bind(name.as_str())
            .bind(password_hash)
            .bind(at)
            .execute(&self.pool)
            .await
            .map_err(|e| match StorageError::from(e) {
                StorageError::Conflict(_) => StorageError::Conflict(format!("user {name}")),
                other => other,
            })?;
        Ok(())
    }

    async fn password_hash(&self, name: &Username) -> Result<Option<String>> {
        let row = sqlx::query("SELECT password_hash FROM users WHERE name = ?")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.try_get("password_hash").map_err(StorageError::from))
            .transpose()
    }

    async fn set_membership(
        &self,
        user: &Username,
        home: &HomeId,
        role: Option<Role>,
    ) -> Result<()> {
        if self.password_hash(user).await?.is_none() {
            return Err(StorageError::NotFound(format!("user {user}")));
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM memberships WHERE username = ? AND home_id = ?")
            .bind(user.as_str())
            .bind(home.as_str())
            .execute(&mut *tx)
            .await?;
        if let Some(role) = role {
            sqlx::query("INSERT INTO memberships (username, home_id, role) VALUES (?, ?, ?)")
                .bind(user.as_str())
                .bind(home.as_str())
                .bind(role.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn user_grants(&self, user: &Username) -> Result<Vec<Grant>> {
        let rows = sqlx::query(
            "SELECT home_id, role FROM memberships WHERE username = ? ORDER BY home_id",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(grant_from_row).collect()
    }

    async fn create_session(&self, hash: &str, user: &Username, expires_at: UnixMs) -> Result<()> {
        sqlx::query("INSERT INTO sessions (token_hash, username, expires_at) VALUES (?, ?, ?)")
            .bind(hash)
            .bind(user.as_str())
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn session_user(&self, hash: &str, now: UnixMs) -> Result<Option<(Username, UnixMs)>> {
        let row = sqlx::query(
            "SELECT username, expires_at FROM sessions WHERE token_hash = ? AND expires_at > ?",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let name: String = row.try_get("username")?;
        Ok(Some((
            Username::parse(&name, "username").map_err(|_| decode_err("session user"))?,
            row.try_get("expires_at")?,
        )))
    }

    async fn delete_session(&self, hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
            .bind(hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_expired_sessions(&self, now: UnixMs) -> Result<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= ?")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(DB::rows_affected(&done))
    }

    async fn create_api_token(&self, hash: &str, token: &ApiTokenInfo) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO api_tokens (name, token_hash, created_at, created_by) VALUES (?, ?, ?, ?)",
        )
        .bind(token.name.as_str())
        .bind(hash)
        .bind(token.created_at)
        .bind(token.created_by.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| match StorageError::from(e) {
            StorageError::Conflict(_) => StorageError::Conflict(format!("token {}", token.name)),
            other => other,
        })?;
        for g in &token.grants {
            sqlx::query(
                "INSERT INTO api_token_grants (token_name, home_id, role) VALUES (?, ?, ?)",
            )
            .bind(token.name.as_str())
            .bind(g.home.as_str())
            .bind(g.role.as_str())
            .execute(&mut *tx)
            .await?;
        }
        for d in token.devices.as_list() {
            sqlx::query("INSERT INTO api_token_devices (token_name, device_id) VALUES (?, ?)")
                .bind(token.name.as_str())
                .bind(d.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn api_token(&self, hash: &str) -> Result<Option<ApiTokenInfo>> {
        self.token_by("token_hash", hash).await
    }

    async fn get_api_token(&self, name: &TokenName) -> Result<Option<ApiTokenInfo>> {
        self.token_by("name", name.as_str()).await
    }

    async fn list_api_tokens(&self, home: &HomeId) -> Result<Vec<ApiTokenInfo>> {
        let rows = sqlx::query(
            "SELECT token_name FROM api_token_grants WHERE home_id = ? ORDER BY token_name",
        )
        .bind(home.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut tokens = Vec::with_capacity(rows.len());
        for row in rows {
            let name: String = row.try_get("token_name")?;
            if let Some(t) = self.token_by("name", &name).await? {
                tokens.push(t);
            }
        }
        Ok(tokens)
    }

    async fn delete_api_token(&self, name: &TokenName) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // Why explicitly and not only by ON DELETE CASCADE: SQLite enforces
        // it only with foreign keys on, which a hand-opened file may lack.
        for table in ["api_token_grants", "api_token_devices"] {
            // Why format!: `table` is one of two names fixed here.
            sqlx::query(&format!("DELETE FROM {table} WHERE token_name = ?"))
                .bind(name.as_str())
                .execute(&mut *tx)
                .await?;
        }
        let done = sqlx::query("DELETE FROM api_tokens WHERE name = ?")
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        if DB::rows_affected(&done) == 0 {
            tx.rollback().await?;
            return Err(StorageError::NotFound(format!("token {name}")));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn set_device_credential(&self, device: &DeviceId, hash: &str, at: UnixMs) -> Result<()> {
        // Why delete and insert: both dialects run it, where an upsert is
        // spelled differently in each.
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM device_credentials WHERE device_id = ?")
            .bind(device.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO device_credentials (device_id, secret_hash, created_at) VALUES (?, ?, ?)",
        )
        .bind(device.as_str())
        .bind(hash)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn device_credential(&self, device: &DeviceId) -> Result<Option<String>> {
        let row = sqlx::query("SELECT secret_hash FROM device_credentials WHERE device_id = ?")
            .bind(device.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.try_get("secret_hash").map_err(StorageError::from))
            .transpose()
    }

    async fn delete_device_credential(&self, device: &DeviceId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM device_credentials WHERE device_id = ?")
            .bind(device.as_str())
            .execute(&self.pool)
            .await?;
        Ok(DB::rows_affected(&done) > 0)
    }

    async fn devices_with_credentials(&self) -> Result<Vec<DeviceId>> {
        let rows = sqlx::query("SELECT device_id FROM device_credentials ORDER BY device_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("device_id")?;
                DeviceId::parse(&id, "device_id").map_err(|_| decode_err("credential device"))
            })
            .collect()
    }

    async fn record_audit(&self, e: &AuditEvent) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_events (at, home_id, actor, action, target, outcome) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(e.at)
        .bind(e.home.as_ref().map_or("", |h| h.as_str()))
        .bind(truncated(&e.actor, 80))
        .bind(truncated(&e.action, 32))
        .bind(truncated(&e.target, 128))
        .bind(e.outcome.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_audit(&self, home: &HomeId, limit: u32) -> Result<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT at, home_id, actor, action, target, outcome FROM audit_events \
             WHERE home_id = ? OR (home_id = '' AND target IN \
             (SELECT username FROM memberships WHERE home_id = ?)) \
             ORDER BY id DESC LIMIT ?",
        )
        .bind(home.as_str())
        .bind(home.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let home: String = row.try_get("home_id")?;
                Ok(AuditEvent {
                    at: row.try_get("at")?,
                    home: match home.as_str() {
                        "" => None,
                        h => Some(
                            HomeId::parse(h, "home_id").map_err(|_| decode_err("audit home"))?,
                        ),
                    },
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    target: row.try_get("target")?,
                    outcome: row.try_get("outcome")?,
                })
            })
            .collect()
    }
}

/// At most `max` bytes of `s`, cut at a character boundary. Why: a login
/// attempt's name is whatever was sent.
fn truncated(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
