//! Embedded configuration store (SQLite): endpoints and API keys, secrets encrypted at rest.
//!
//! - [`Store`]: one SQLite file in WAL mode, schema migrations ([`schema`]), a cheap
//!   cloneable handle. Calls take a mutex and run one short statement or transaction
//!   (microseconds to a few milliseconds); async callers may call them directly for
//!   request-sized work, or wrap them in `tokio::task::spawn_blocking` when contention
//!   with other processes (the 5 s busy timeout) is possible.
//! - Secrets (Proxmox passwords and token values, NetBox tokens and token keys) are
//!   sealed with ChaCha20-Poly1305 bound to their table/column/row ([`EncryptionKey`],
//!   [`Secret`]); API keys are stored as HMAC-SHA256 under a pepper derived from the
//!   same key, never in plaintext.
//! - Records mirror proxbox-api's: [`NetBoxEndpoint`] (singleton), [`ProxmoxEndpoint`],
//!   with `*Public` views for responses and `*Create`/`*Update` bodies that validate
//!   with the reference's exact messages ([`messages`]).
//! - [`Lockout`]: per-client failed-authentication bookkeeping, in memory.

#![warn(missing_docs)]

mod apikeys;
mod crypto;
mod error;
pub mod lockout;
pub mod messages;
mod netbox;
mod proxmox;
pub mod schema;
pub mod template;
mod validate;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};

pub use apikeys::{ApiKeyInfo, DEFAULT_MAX_ACTIVE_KEYS, KEY_PREFIX, KeyId, MIN_REGISTERED_KEY_LEN};
pub use crypto::{CIPHERTEXT_PREFIX, EncryptionKey, KeySource, MIN_PASSPHRASE_LEN, Secret};
pub use error::{Entity, FieldError, StoreError};
pub use lockout::{
    Clock, Failure, Lockout, LockoutPolicy, LockoutStatus, ManualClock, SystemClock,
};
pub use netbox::{
    NetBoxEndpoint, NetBoxEndpointCreate, NetBoxEndpointPublic, NetBoxEndpointUpdate, netbox_url,
};
pub use proxmox::{
    AccessMethod, ProxmoxEndpoint, ProxmoxEndpointCreate, ProxmoxEndpointPublic,
    ProxmoxEndpointUpdate, claims_plugin_pk, plugin_endpoint_name, plugin_pk,
};
pub use validate::{Page, de};

use crypto::{Crypto, Slot};

/// SQLite waits this long for another writer before failing with "database is locked".
pub const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

/// A handle on the configuration store. Cloning is cheap; clones share one connection.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Mutex<Connection>,
    crypto: Crypto,
    path: Option<PathBuf>,
    key_source: KeySource,
    max_active_keys: AtomicUsize,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .field("key_source", &self.inner.key_source)
            .finish_non_exhaustive()
    }
}

const KEY_CHECK_PLAINTEXT: &str = "proxbox-host key check";

impl Store {
    /// Open (creating if needed) the store at `path`, with the key from
    /// `PROXBOX_ENCRYPTION_KEY`, else `PROXBOX_ENCRYPTION_KEY_FILE`, else `<path>.key`
    /// (generated with mode 0600 on first use; an existing one readable by group or
    /// others is refused).
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref();
        let (key, source) = EncryptionKey::resolve(path)?;
        Self::open_file(path, &key, source)
    }

    /// Open the store at `path` with an explicit key (ignores the environment).
    pub fn open_with_key(path: impl AsRef<Path>, key: &EncryptionKey) -> Result<Store, StoreError> {
        Self::open_file(path.as_ref(), key, KeySource::Explicit)
    }

    /// A private in-memory store with a random key (for tests).
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Self::open_in_memory_with_key(&EncryptionKey::generate()?)
    }

    /// A private in-memory store with the given key.
    pub fn open_in_memory_with_key(key: &EncryptionKey) -> Result<Store, StoreError> {
        let conn = Connection::open_in_memory()?;
        Self::init(conn, key, None, KeySource::Explicit)
    }

    fn open_file(path: &Path, key: &EncryptionKey, source: KeySource) -> Result<Store, StoreError> {
        create_private_file(path)?;
        let conn = Connection::open(path)?;
        Self::init(conn, key, Some(path.to_path_buf()), source)
    }

    fn init(
        mut conn: Connection,
        key: &EncryptionKey,
        path: Option<PathBuf>,
        key_source: KeySource,
    ) -> Result<Store, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        schema::migrate(&mut conn)?;
        let crypto = Crypto::new(key);
        check_key(&conn, &crypto)?;
        Ok(Store {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                crypto,
                path,
                key_source,
                max_active_keys: AtomicUsize::new(DEFAULT_MAX_ACTIVE_KEYS),
            }),
        })
    }

    /// The database file, or `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// Where the encryption key came from.
    pub fn key_source(&self) -> &KeySource {
        &self.inner.key_source
    }

    /// The schema version recorded in the database (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        self.with_conn(|conn, _| schema::version(conn))
    }

    /// Whether this store's key is the one the database's secrets were written with.
    /// A mismatch means every secret fails with [`StoreError::Decrypt`] and no API key
    /// verifies.
    pub fn key_matches(&self) -> Result<bool, StoreError> {
        self.with_conn(|conn, crypto| {
            let stored: Option<String> = conn
                .query_row(
                    "SELECT value FROM store_meta WHERE key = 'key_check'",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(stored.is_none_or(|c| crypto.decrypt(key_check_slot(), &c).is_ok()))
        })
    }

    /// Cap on simultaneously active API keys (default 32, as the reference's
    /// `PROXBOX_AUTH_MAX_ACTIVE_KEYS`); values below 1 count as 1.
    pub fn set_max_active_keys(&self, limit: usize) {
        self.inner
            .max_active_keys
            .store(limit.max(1), Ordering::Relaxed);
    }

    pub(crate) fn max_active_keys(&self) -> usize {
        self.inner.max_active_keys.load(Ordering::Relaxed)
    }

    /// Run `f` on the connection. A poisoned mutex is recovered: SQLite rolls back any
    /// transaction the panicking holder left open when it was dropped.
    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection, &Crypto) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self
            .inner
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut conn, &self.inner.crypto)
    }
}

fn key_check_slot() -> Slot<'static> {
    Slot {
        table: "store_meta",
        column: "key_check",
        row: 0,
    }
}

/// Record a key-check value on first open; warn when a later open uses another key.
fn check_key(conn: &Connection, crypto: &Crypto) -> Result<(), StoreError> {
    let stored: Option<String> = conn
        .query_row(
            "SELECT value FROM store_meta WHERE key = 'key_check'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    match stored {
        None => {
            let sealed = crypto.encrypt(key_check_slot(), KEY_CHECK_PLAINTEXT)?;
            conn.execute(
                "INSERT OR IGNORE INTO store_meta (key, value) VALUES ('key_check', ?1)",
                [sealed],
            )?;
        }
        Some(sealed) => {
            if crypto.decrypt(key_check_slot(), &sealed).is_err() {
                tracing::warn!(
                    "the store's secrets were written with another encryption key: they cannot \
                     be read and API keys will not verify until the original key is restored"
                );
            }
        }
    }
    Ok(())
}

/// Create the database file with mode 0600 if it does not exist (SQLite then creates
/// its `-wal`/`-shm` files with the same mode).
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::io(
            format!("creating database {}", path.display()),
            e,
        )),
    }
}

/// The id the next row of an AUTOINCREMENT `table` gets (call inside a write transaction):
/// known before the insert so secrets can be bound to it.
fn next_id(conn: &Connection, table: &str) -> Result<i64, StoreError> {
    let seq: Option<i64> = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = ?1",
            [table],
            |r| r.get(0),
        )
        .optional()?;
    let max: Option<i64> =
        conn.query_row(&format!("SELECT MAX(id) FROM {table}"), [], |r| r.get(0))?;
    Ok(seq.unwrap_or(0).max(max.unwrap_or(0)) + 1)
}

/// Seconds since the Unix epoch, as the reference's `time.time()`.
fn epoch_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}
