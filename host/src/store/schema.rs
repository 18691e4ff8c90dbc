//! Numbered schema migrations, recorded in `PRAGMA user_version`.
//!
//! Migration `n` takes the schema from version `n - 1` to `n`. Each runs in its own
//! `BEGIN IMMEDIATE` transaction together with the version bump, so a crash leaves the
//! database at a whole version, and concurrent openers serialize. Append new migrations;
//! never edit a released one.

use rusqlite::{Connection, TransactionBehavior};

use super::error::StoreError;

/// `(version, SQL)`, in order, starting at 1.
const MIGRATIONS: &[(u32, &str)] = &[
    (
        1,
        r#"
CREATE TABLE store_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- The NetBox endpoint (a singleton: the `singleton` column can only hold 1, once).
CREATE TABLE netboxendpoint (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    singleton     INTEGER NOT NULL DEFAULT 1 UNIQUE CHECK (singleton = 1),
    name          TEXT NOT NULL,
    ip_address    TEXT NOT NULL,
    domain        TEXT NOT NULL DEFAULT '',
    port          INTEGER NOT NULL DEFAULT 443 CHECK (port BETWEEN 1 AND 65535),
    token_version TEXT NOT NULL DEFAULT 'v1' CHECK (token_version IN ('v1', 'v2')),
    token_key     TEXT CHECK (token_key IS NULL OR token_key LIKE 'enc:%'),
    token         TEXT NOT NULL CHECK (token LIKE 'enc:%'),
    verify_ssl    INTEGER NOT NULL DEFAULT 1,
    enabled       INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE proxmoxendpoint (
    id                           INTEGER PRIMARY KEY AUTOINCREMENT,
    name                         TEXT NOT NULL UNIQUE,
    node_device_name_template    TEXT NOT NULL DEFAULT '',
    ip_address                   TEXT NOT NULL,
    domain                       TEXT,
    port                         INTEGER NOT NULL DEFAULT 8006 CHECK (port BETWEEN 1 AND 65535),
    username                     TEXT NOT NULL,
    password                     TEXT CHECK (password IS NULL OR password LIKE 'enc:%'),
    verify_ssl                   INTEGER NOT NULL DEFAULT 1,
    allow_writes                 INTEGER NOT NULL DEFAULT 0,
    allow_packer_template_builds INTEGER NOT NULL DEFAULT 0,
    access_methods               TEXT NOT NULL DEFAULT 'api'
                                 CHECK (access_methods IN ('api', 'api_ssh')),
    enabled                      INTEGER NOT NULL DEFAULT 1,
    token_name                   TEXT,
    token_value                  TEXT CHECK (token_value IS NULL OR token_value LIKE 'enc:%'),
    timeout                      INTEGER,
    max_retries                  INTEGER,
    retry_backoff                REAL,
    site_id                      INTEGER,
    site_slug                    TEXT,
    site_name                    TEXT,
    tenant_id                    INTEGER,
    tenant_slug                  TEXT,
    tenant_name                  TEXT
);
"#,
    ),
    (
        2,
        r#"
-- API keys: only HMAC-SHA256(pepper, key) is stored.
CREATE TABLE apikey (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    label      TEXT NOT NULL DEFAULT '',
    key_hash   TEXT NOT NULL UNIQUE,
    is_active  INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL
);
CREATE INDEX apikey_active ON apikey (is_active);

-- Set once by the first key registration; `/auth/register-key` is closed forever after.
CREATE TABLE api_key_bootstrap_claim (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    initialized_at REAL NOT NULL
);
"#,
    ),
];

/// The schema version this build writes.
pub const LATEST_VERSION: u32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// The version recorded in the database.
pub(crate) fn version(conn: &Connection) -> Result<u32, StoreError> {
    Ok(conn.query_row("PRAGMA user_version", [], |row| row.get(0))?)
}

/// Apply every migration above the recorded version, up to `target`. Returns how many ran.
pub(crate) fn migrate_to(conn: &mut Connection, target: u32) -> Result<usize, StoreError> {
    let mut applied = 0;
    for &(number, sql) in MIGRATIONS.iter().filter(|(n, _)| *n <= target) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current = version(&tx)?;
        if current > LATEST_VERSION {
            return Err(StoreError::Migration(format!(
                "the database is at schema version {current}, newer than this build \
                 supports ({LATEST_VERSION}); upgrade proxbox-host"
            )));
        }
        if current >= number {
            continue;
        }
        if current != number - 1 {
            return Err(StoreError::Migration(format!(
                "cannot apply migration {number} to schema version {current}"
            )));
        }
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Migration(format!("migration {number}: {e}")))?;
        tx.pragma_update(None, "user_version", number)?;
        tx.commit()?;
        tracing::info!(version = number, "applied store schema migration");
        applied += 1;
    }
    Ok(applied)
}

/// Bring the schema to [`LATEST_VERSION`].
pub(crate) fn migrate(conn: &mut Connection) -> Result<usize, StoreError> {
    let current = version(conn)?;
    if current > LATEST_VERSION {
        return Err(StoreError::Migration(format!(
            "the database is at schema version {current}, newer than this build supports \
             ({LATEST_VERSION}); upgrade proxbox-host"
        )));
    }
    migrate_to(conn, LATEST_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn migrations_are_numbered_in_order() {
        for (i, (n, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*n as usize, i + 1);
        }
    }

    #[test]
    fn step_by_step_then_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate_to(&mut conn, 1).unwrap(), 1);
        assert_eq!(version(&conn).unwrap(), 1);
        assert!(!tables(&conn).contains(&"apikey".to_string()));
        conn.execute(
            "INSERT INTO proxmoxendpoint (name, ip_address, username) VALUES ('a', '10.0.0.1', 'root@pam')",
            [],
        )
        .unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), 1);
        assert_eq!(version(&conn).unwrap(), LATEST_VERSION);
        assert!(tables(&conn).contains(&"apikey".to_string()));
        let kept: i64 = conn
            .query_row("SELECT COUNT(*) FROM proxmoxendpoint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, 1);
        assert_eq!(migrate(&mut conn).unwrap(), 0);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", LATEST_VERSION + 1)
            .unwrap();
        assert!(matches!(migrate(&mut conn), Err(StoreError::Migration(_))));
    }

    #[test]
    fn plaintext_secrets_are_rejected_by_the_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let err = conn.execute(
            "INSERT INTO proxmoxendpoint (name, ip_address, username, password) \
             VALUES ('a', '10.0.0.1', 'root@pam', 'plaintext')",
            [],
        );
        assert!(err.is_err());
    }
}
