//! API keys for `X-Proxbox-API-Key`: only `HMAC-SHA256(pepper, key)` is stored, and a
//! candidate is compared against every active key in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use serde::Serialize;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use super::crypto::{Secret, fill_random};
use super::error::{Entity, StoreError};
use super::{Store, epoch_now, messages};

/// Prefix of keys this host generates.
pub const KEY_PREFIX: &str = "pbx_";
/// Shortest key `POST /auth/register-key` accepts.
pub const MIN_REGISTERED_KEY_LEN: usize = 32;
/// Default cap on simultaneously active keys.
pub const DEFAULT_MAX_ACTIVE_KEYS: usize = 32;
const HASH_PREFIX: &str = "hmac-sha256:";

/// An API key's row id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct KeyId(pub i64);

/// An API key without its secret: what `GET /auth/keys` lists.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ApiKeyInfo {
    /// Row id.
    pub id: KeyId,
    /// Free-text label.
    pub label: String,
    /// Whether it authenticates.
    pub is_active: bool,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: f64,
}

impl ApiKeyInfo {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(ApiKeyInfo {
            id: KeyId(row.get(0)?),
            label: row.get(1)?,
            is_active: row.get(2)?,
            created_at: row.get(3)?,
        })
    }
}

const INFO_COLUMNS: &str = "id, label, is_active, created_at";

fn load(conn: &Connection, id: KeyId) -> Result<Option<ApiKeyInfo>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {INFO_COLUMNS} FROM apikey WHERE id = ?1"),
            [id.0],
            ApiKeyInfo::from_row,
        )
        .optional()?)
}

fn active_count(conn: &Connection) -> Result<usize, StoreError> {
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM apikey WHERE is_active = 1", [], |r| {
        r.get(0)
    })?;
    Ok(usize::try_from(n).unwrap_or_default())
}

fn claimed(conn: &Connection) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM api_key_bootstrap_claim) \
         OR EXISTS (SELECT 1 FROM apikey)",
        [],
        |r| r.get(0),
    )?)
}

fn last_active_error() -> StoreError {
    StoreError::Conflict {
        code: Some(messages::LAST_ACTIVE_KEY_CODE),
        message: messages::LAST_ACTIVE_KEY.into(),
    }
}

fn limit_error(limit: usize) -> StoreError {
    StoreError::Conflict {
        code: Some(messages::ACTIVE_KEY_LIMIT_CODE),
        message: messages::active_key_limit(limit),
    }
}

fn encode_hash(digest: &[u8; 32]) -> String {
    format!("{HASH_PREFIX}{}", hex::encode(digest))
}

fn decode_hash(stored: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(stored.strip_prefix(HASH_PREFIX)?).ok()?;
    bytes.try_into().ok()
}

impl Store {
    fn insert_key(
        &self,
        tx: &Transaction<'_>,
        raw: &str,
        label: &str,
    ) -> Result<ApiKeyInfo, StoreError> {
        let hash = encode_hash(&self.inner.crypto.api_key_digest(raw));
        let now = epoch_now();
        tx.execute(
            "INSERT INTO apikey (label, key_hash, is_active, created_at) VALUES (?1, ?2, 1, ?3)",
            params![label, hash, now],
        )?;
        tx.execute(
            "INSERT OR IGNORE INTO api_key_bootstrap_claim (id, initialized_at) VALUES (1, ?1)",
            [now],
        )?;
        load(tx, KeyId(tx.last_insert_rowid()))?.ok_or(StoreError::NotFound(Entity::ApiKey))
    }

    /// `POST /auth/register-key`: store a caller-chosen first key and close bootstrap for
    /// good. 400 [`messages::API_KEY_TOO_SHORT`] under 32 characters; 409
    /// [`messages::API_KEY_ALREADY_CONFIGURED`] once any key was ever stored.
    pub fn register_first_key(&self, raw_key: &str, label: &str) -> Result<ApiKeyInfo, StoreError> {
        if raw_key.chars().count() < MIN_REGISTERED_KEY_LEN {
            return Err(StoreError::Invalid(messages::API_KEY_TOO_SHORT.into()));
        }
        self.with_conn(|conn, _| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if claimed(&tx)? {
                return Err(StoreError::Conflict {
                    code: None,
                    message: messages::API_KEY_ALREADY_CONFIGURED.into(),
                });
            }
            let info = self.insert_key(&tx, raw_key, label)?;
            tx.commit()?;
            Ok(info)
        })
    }

    /// `POST /auth/keys`: generate a key (`pbx_` + 32 random bytes, base64url) and return
    /// it with its record; this is the only time the plaintext exists. 409 when the
    /// active-key cap is reached.
    pub fn create_key(&self, label: &str) -> Result<(ApiKeyInfo, Secret), StoreError> {
        let mut bytes = [0u8; 32];
        fill_random(&mut bytes)?;
        let raw = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
        let limit = self.max_active_keys();
        self.with_conn(|conn, _| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if active_count(&tx)? >= limit {
                return Err(limit_error(limit));
            }
            let info = self.insert_key(&tx, &raw, label)?;
            tx.commit()?;
            Ok((info, Secret::new(raw)))
        })
    }

    /// The active key matching `candidate`, if any. Every active key is compared, in
    /// constant time, whatever matches.
    pub fn verify_key(&self, candidate: &str) -> Result<Option<KeyId>, StoreError> {
        let digest = self.inner.crypto.api_key_digest(candidate);
        self.with_conn(|conn, _| {
            let mut stmt = conn.prepare("SELECT id, key_hash FROM apikey WHERE is_active = 1")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
            let mut found = Choice::from(0);
            let mut id = 0i64;
            for row in rows {
                let (row_id, stored) = row?;
                let Some(stored) = decode_hash(&stored) else {
                    continue;
                };
                let matches = digest.ct_eq(&stored);
                id = i64::conditional_select(&id, &row_id, matches);
                found |= matches;
            }
            Ok(bool::from(found).then_some(KeyId(id)))
        })
    }

    /// `GET /auth/keys`: every key, newest first, without secrets.
    pub fn list_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError> {
        self.with_conn(|conn, _| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {INFO_COLUMNS} FROM apikey ORDER BY created_at DESC, id DESC"
            ))?;
            let rows = stmt.query_map([], ApiKeyInfo::from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// One key, without its secret.
    pub fn get_key(&self, id: KeyId) -> Result<Option<ApiKeyInfo>, StoreError> {
        self.with_conn(|conn, _| load(conn, id))
    }

    /// `POST /auth/keys/{id}/activate`. 409 when the active-key cap is reached.
    pub fn activate_key(&self, id: KeyId) -> Result<ApiKeyInfo, StoreError> {
        let limit = self.max_active_keys();
        self.set_active(id, true, |key, conn| {
            if !key.is_active && active_count(conn)? >= limit {
                return Err(limit_error(limit));
            }
            Ok(())
        })
    }

    /// `POST /auth/keys/{id}/deactivate`. 409 [`messages::LAST_ACTIVE_KEY`] for the last
    /// active key.
    pub fn deactivate_key(&self, id: KeyId) -> Result<ApiKeyInfo, StoreError> {
        self.set_active(id, false, |key, conn| {
            if key.is_active && active_count(conn)? <= 1 {
                return Err(last_active_error());
            }
            Ok(())
        })
    }

    fn set_active(
        &self,
        id: KeyId,
        active: bool,
        allowed: impl FnOnce(&ApiKeyInfo, &Connection) -> Result<(), StoreError>,
    ) -> Result<ApiKeyInfo, StoreError> {
        self.with_conn(|conn, _| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let key = load(&tx, id)?.ok_or(StoreError::NotFound(Entity::ApiKey))?;
            allowed(&key, &tx)?;
            tx.execute(
                "UPDATE apikey SET is_active = ?2 WHERE id = ?1",
                params![id.0, active],
            )?;
            let key = load(&tx, id)?.ok_or(StoreError::NotFound(Entity::ApiKey))?;
            tx.commit()?;
            Ok(key)
        })
    }

    /// `DELETE /auth/keys/{id}`. 409 [`messages::LAST_ACTIVE_KEY`] for the last active
    /// key; inactive keys can always be deleted.
    pub fn delete_key(&self, id: KeyId) -> Result<(), StoreError> {
        self.with_conn(|conn, _| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let key = load(&tx, id)?.ok_or(StoreError::NotFound(Entity::ApiKey))?;
            if key.is_active && active_count(&tx)? <= 1 {
                return Err(last_active_error());
            }
            tx.execute("DELETE FROM apikey WHERE id = ?1", [id.0])?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Whether an active key exists (else the middleware answers
    /// [`messages::NO_API_KEY_CONFIGURED`]).
    pub fn has_any_key(&self) -> Result<bool, StoreError> {
        self.with_conn(|conn, _| Ok(active_count(conn)? > 0))
    }

    /// Whether any key row exists, active or not (`has_db_keys` of `/auth/bootstrap-status`).
    pub fn has_any_key_record(&self) -> Result<bool, StoreError> {
        self.with_conn(|conn, _| {
            Ok(conn.query_row("SELECT EXISTS (SELECT 1 FROM apikey)", [], |r| r.get(0))?)
        })
    }

    /// Whether bootstrap was ever consumed (`needs_bootstrap` is its negation); stays
    /// true after every key is gone.
    pub fn bootstrap_claimed(&self) -> Result<bool, StoreError> {
        self.with_conn(|conn, _| claimed(conn))
    }
}
