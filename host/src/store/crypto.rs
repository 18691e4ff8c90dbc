//! Secrets at rest: the encryption key, its file, and the per-value AEAD.
//!
//! Each secret is sealed with ChaCha20-Poly1305 under a fresh random 96-bit nonce and
//! stored as `enc:v1:` + base64(nonce || ciphertext). The associated data names the
//! table, column and row, so a ciphertext copied into another field or row fails to
//! open. The AEAD key and the API-key pepper are both derived from one 32-byte master
//! key (HMAC-SHA256 with distinct labels).

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::StoreError;

/// Prefix of every stored ciphertext (format version 1).
pub const CIPHERTEXT_PREFIX: &str = "enc:v1:";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Shortest accepted `PROXBOX_ENCRYPTION_KEY` passphrase (when it is not base64 key bytes).
pub const MIN_PASSPHRASE_LEN: usize = 16;

/// A secret string (password, token, API key). `Debug` and `Display` print `***`;
/// equality is constant-time in the contents.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for building a request.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Unwrap the secret.
    pub fn into_inner(self) -> String {
        self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for Secret {}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_string())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

/// Where the encryption key came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// `PROXBOX_ENCRYPTION_KEY`.
    Env,
    /// A key file (from `PROXBOX_ENCRYPTION_KEY_FILE`, or `<db>.key`).
    File(PathBuf),
    /// A key file generated just now.
    Generated(PathBuf),
    /// Passed in by the caller, or random for an in-memory store.
    Explicit,
}

/// The 32-byte master key. `Debug` never shows it.
#[derive(Clone)]
pub struct EncryptionKey([u8; 32]);

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey(***)")
    }
}

impl EncryptionKey {
    /// Environment variable holding the key (base64 of 32 bytes, or a passphrase).
    pub const ENV: &'static str = "PROXBOX_ENCRYPTION_KEY";
    /// Environment variable naming a key file to use instead of `<db>.key`.
    pub const FILE_ENV: &'static str = "PROXBOX_ENCRYPTION_KEY_FILE";

    /// A key from raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        EncryptionKey(bytes)
    }

    /// A fresh random key from the OS.
    pub fn generate() -> Result<Self, StoreError> {
        let mut bytes = [0u8; 32];
        fill_random(&mut bytes)?;
        Ok(EncryptionKey(bytes))
    }

    /// Exactly 32 bytes in base64 (standard or URL-safe, padded or not).
    pub fn from_base64(text: &str) -> Result<Self, StoreError> {
        decode_key(text.trim()).ok_or_else(|| {
            StoreError::Key("expected 32 bytes encoded in base64 (44 characters)".into())
        })
    }

    /// The value of `PROXBOX_ENCRYPTION_KEY`: base64 of 32 bytes, or else a passphrase of
    /// at least [`MIN_PASSPHRASE_LEN`] characters, hashed with SHA-256 (as the reference
    /// derives its Fernet key from an arbitrary string).
    pub fn from_env_value(value: &str) -> Result<Self, StoreError> {
        let value = value.trim();
        if let Some(key) = decode_key(value) {
            return Ok(key);
        }
        if value.chars().count() < MIN_PASSPHRASE_LEN {
            return Err(StoreError::Key(format!(
                "{} must be 32 bytes in base64 or a passphrase of at least {MIN_PASSPHRASE_LEN} \
                 characters",
                Self::ENV
            )));
        }
        Ok(EncryptionKey(Sha256::digest(value.as_bytes()).into()))
    }

    /// The key as standard base64 (the key-file format).
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// The default key file for a database: `<db>.key` next to it.
    pub fn key_file_path(db_path: &Path) -> PathBuf {
        let mut name = db_path.as_os_str().to_owned();
        name.push(".key");
        PathBuf::from(name)
    }

    /// The key for a database: `PROXBOX_ENCRYPTION_KEY` if set, else the file named by
    /// `PROXBOX_ENCRYPTION_KEY_FILE`, else `<db>.key` (generated on first use).
    pub fn resolve(db_path: &Path) -> Result<(Self, KeySource), StoreError> {
        if let Some(value) = std::env::var_os(Self::ENV).filter(|v| !v.is_empty()) {
            let value = value
                .into_string()
                .map_err(|_| StoreError::Key(format!("{} is not valid UTF-8", Self::ENV)))?;
            return Ok((Self::from_env_value(&value)?, KeySource::Env));
        }
        let path = std::env::var_os(Self::FILE_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| Self::key_file_path(db_path));
        Self::load_or_create_file(&path)
    }

    /// Read the key file, or create it (mode 0600, atomically) if it does not exist.
    ///
    /// Refuses a key file that group or others can access, and anything but a regular file.
    pub fn load_or_create_file(path: &Path) -> Result<(Self, KeySource), StoreError> {
        match Self::load_file(path) {
            Ok(key) => return Ok((key, KeySource::File(path.to_path_buf()))),
            Err(StoreError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        let key = Self::generate()?;
        if create_key_file(path, &key)? {
            tracing::info!(path = %path.display(), "generated a new encryption key file");
            Ok((key, KeySource::Generated(path.to_path_buf())))
        } else {
            // Another process created it first: use theirs.
            Ok((Self::load_file(path)?, KeySource::File(path.to_path_buf())))
        }
    }

    /// Read an existing key file, checking its permissions first.
    pub fn load_file(path: &Path) -> Result<Self, StoreError> {
        let meta = fs::metadata(path)
            .map_err(|e| StoreError::io(format!("key file {}", path.display()), e))?;
        if !meta.is_file() {
            return Err(StoreError::Key(format!(
                "key file {} is not a regular file",
                path.display()
            )));
        }
        check_private(path, &meta)?;
        let text = fs::read_to_string(path)
            .map_err(|e| StoreError::io(format!("reading key file {}", path.display()), e))?;
        decode_key(text.trim()).ok_or_else(|| {
            StoreError::Key(format!(
                "key file {} does not hold 32 bytes in base64",
                path.display()
            ))
        })
    }
}

#[cfg(unix)]
fn check_private(path: &Path, meta: &fs::Metadata) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(StoreError::Key(format!(
            "key file {} has mode {mode:04o}: group or others can access it; \
             run `chmod 600` on it (or set {})",
            path.display(),
            EncryptionKey::ENV
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _meta: &fs::Metadata) -> Result<(), StoreError> {
    Ok(())
}

fn private_file(path: &Path) -> std::io::Result<fs::File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Write the key to `path` without ever exposing a partial file: write a private temp
/// file, then hard-link it into place (fails if `path` exists). Returns false if another
/// process won the race.
fn create_key_file(path: &Path, key: &EncryptionKey) -> Result<bool, StoreError> {
    let context = |what: &str| format!("{what} key file {}", path.display());
    let mut suffix = [0u8; 8];
    fill_random(&mut suffix)?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".tmp-{}", hex::encode(suffix)));
    let tmp = PathBuf::from(tmp_name);
    let written = (|| {
        let mut file = private_file(&tmp)?;
        file.write_all(format!("{}\n", key.to_base64()).as_bytes())?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::io(context("creating"), e));
    }
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(_) => {
            // No hard links on this filesystem: create the file in place instead.
            match private_file(path) {
                Ok(mut file) => {
                    file.write_all(format!("{}\n", key.to_base64()).as_bytes())
                        .and_then(|()| file.sync_all())
                        .map_err(|e| StoreError::io(context("writing"), e))?;
                    Ok(true)
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(StoreError::io(context("creating"), e)),
            }
        }
    }
}

fn decode_key(text: &str) -> Option<EncryptionKey> {
    [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
        .into_iter()
        .find_map(|engine| engine.decode(text).ok())
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .map(EncryptionKey)
}

pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), StoreError> {
    getrandom::fill(buf).map_err(|e| StoreError::Key(format!("OS random source failed: {e}")))
}

/// The place a secret lives; bound into the ciphertext as associated data.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot<'a> {
    pub table: &'a str,
    pub column: &'a str,
    pub row: i64,
}

impl Slot<'_> {
    fn aad(&self) -> String {
        format!(
            "proxbox-host/v1/{}/{}/{}",
            self.table, self.column, self.row
        )
    }

    fn describe(&self) -> String {
        format!("{}.{} (id {})", self.table, self.column, self.row)
    }
}

/// The AEAD and the API-key pepper, derived from one master key.
pub(crate) struct Crypto {
    aead: ChaCha20Poly1305,
    pepper: [u8; 32],
}

type HmacSha256 = Hmac<Sha256>;

fn derive(master: &[u8; 32], label: &str) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(master).expect("HMAC takes any key length");
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().into()
}

impl Crypto {
    pub(crate) fn new(key: &EncryptionKey) -> Self {
        let aead_key = derive(&key.0, "proxbox-host secret encryption v1");
        Crypto {
            aead: ChaCha20Poly1305::new(Key::from_slice(&aead_key)),
            pepper: derive(&key.0, "proxbox-host api-key pepper v1"),
        }
    }

    /// Seal `plaintext` for `slot`.
    pub(crate) fn encrypt(&self, slot: Slot<'_>, plaintext: &str) -> Result<String, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let aad = slot.aad();
        let sealed = self
            .aead
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| StoreError::Key("encryption failed".into()))?;
        let mut blob = Vec::with_capacity(NONCE_LEN + sealed.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        Ok(format!("{CIPHERTEXT_PREFIX}{}", STANDARD.encode(blob)))
    }

    /// Open a value sealed for `slot`.
    pub(crate) fn decrypt(&self, slot: Slot<'_>, stored: &str) -> Result<Secret, StoreError> {
        let fail = || StoreError::Decrypt {
            field: slot.describe(),
        };
        let blob = stored
            .strip_prefix(CIPHERTEXT_PREFIX)
            .and_then(|b64| STANDARD.decode(b64).ok())
            .filter(|blob| blob.len() >= NONCE_LEN + TAG_LEN)
            .ok_or_else(fail)?;
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let aad = slot.aad();
        let plain = self
            .aead
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| fail())?;
        String::from_utf8(plain).map(Secret).map_err(|_| fail())
    }

    /// `HMAC-SHA256(pepper, key)`: what is stored for an API key.
    pub(crate) fn api_key_digest(&self, raw_key: &str) -> [u8; 32] {
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(&self.pepper).expect("HMAC takes any key length");
        mac.update(raw_key.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(row: i64) -> Slot<'static> {
        Slot {
            table: "t",
            column: "c",
            row,
        }
    }

    #[test]
    fn round_trip_and_binding() {
        let crypto = Crypto::new(&EncryptionKey::generate().unwrap());
        let sealed = crypto.encrypt(slot(1), "hunter2").unwrap();
        assert!(sealed.starts_with(CIPHERTEXT_PREFIX));
        assert!(!sealed.contains("hunter2"));
        assert_eq!(
            crypto.decrypt(slot(1), &sealed).unwrap().expose(),
            "hunter2"
        );
        assert!(matches!(
            crypto.decrypt(slot(2), &sealed),
            Err(StoreError::Decrypt { .. })
        ));
        let other = Crypto::new(&EncryptionKey::generate().unwrap());
        assert!(matches!(
            other.decrypt(slot(1), &sealed),
            Err(StoreError::Decrypt { .. })
        ));
        assert!(crypto.decrypt(slot(1), "hunter2").is_err());
    }

    #[test]
    fn nonces_differ() {
        let crypto = Crypto::new(&EncryptionKey::generate().unwrap());
        let a = crypto.encrypt(slot(1), "same").unwrap();
        let b = crypto.encrypt(slot(1), "same").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn env_values() {
        let key = EncryptionKey::generate().unwrap();
        let b64 = key.to_base64();
        assert_eq!(EncryptionKey::from_env_value(&b64).unwrap().0, key.0);
        let url = URL_SAFE_NO_PAD.encode(key.0);
        assert_eq!(EncryptionKey::from_env_value(&url).unwrap().0, key.0);
        let pass = EncryptionKey::from_env_value("correct horse battery staple").unwrap();
        assert_eq!(
            pass.0,
            <[u8; 32]>::from(Sha256::digest(b"correct horse battery staple"))
        );
        assert!(matches!(
            EncryptionKey::from_env_value("short"),
            Err(StoreError::Key(_))
        ));
        assert!(EncryptionKey::from_base64("not a key").is_err());
    }

    #[test]
    fn secret_is_redacted() {
        let s = Secret::new("p@ss");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s, Secret::new("p@ss"));
        assert_ne!(s, Secret::new("p@sS"));
    }
}
