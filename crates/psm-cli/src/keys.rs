//! The token signing secret: read from its file, or made from the OS CSPRNG and written with mode
//! 0600 the first time (never overwritten).
//!
//! Every psm process that verifies tokens of another must read the same file (or a copy of it).

use std::{
    fs::{self, OpenOptions},
    io::{ErrorKind as IoKind, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use psm::{
    OsRandom, RandomSource,
    jwt::{Algorithm, KeySet, SigningKey},
};

use crate::CliError;

/// Bytes of a generated secret (HS256 needs at least 32).
const SECRET_BYTES: usize = 64;

/// The key id tokens are signed under.
const KID: &str = "psm-hs256-1";

/// The key set of the secret in `path`, creating the file when it does not exist.
///
/// # Errors
/// A configuration error when the file cannot be read or created, is readable by others, or
/// holds no valid secret.
pub fn load_or_create(path: &Path) -> Result<KeySet, CliError> {
    let secret = match fs::read_to_string(path) {
        Ok(text) => {
            check_mode(path)?;
            URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| {
                CliError::config(format!(
                    "{} does not hold a base64url secret",
                    path.display()
                ))
            })?
        }
        Err(e) if e.kind() == IoKind::NotFound => create(path)?,
        Err(e) => {
            return Err(CliError::config(format!(
                "cannot read the signing secret {}: {e}",
                path.display()
            )));
        }
    };
    let key = SigningKey::hmac(KID, Algorithm::HS256, &secret).map_err(|e| {
        CliError::config(format!(
            "the signing secret in {} is unusable: {e}",
            path.display()
        ))
    })?;
    KeySet::new(key).map_err(CliError::from)
}

/// A key set of a fresh random secret kept in memory only, for commands that build an auth
/// service but issue no token.
///
/// # Errors
/// When the OS random source fails.
pub fn ephemeral() -> Result<KeySet, CliError> {
    let mut secret = vec![0u8; SECRET_BYTES];
    OsRandom.fill(&mut secret)?;
    let key = SigningKey::hmac(KID, Algorithm::HS256, &secret)?;
    Ok(KeySet::new(key)?)
}

fn check_mode(path: &Path) -> Result<(), CliError> {
    let mode = fs::metadata(path)
        .map_err(|e| CliError::config(format!("cannot stat {}: {e}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(CliError::config(format!(
            "the signing secret {} is readable by others (mode {:o}): chmod 600 it",
            path.display(),
            mode & 0o777
        )));
    }
    Ok(())
}

fn create(path: &Path) -> Result<Vec<u8>, CliError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)
            .map_err(|e| CliError::config(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut secret = vec![0u8; SECRET_BYTES];
    OsRandom.fill(&mut secret)?;
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f,
        // Another process made it first: use theirs.
        Err(e) if e.kind() == IoKind::AlreadyExists => {
            let text = fs::read_to_string(path)
                .map_err(|e| CliError::config(format!("cannot read {}: {e}", path.display())))?;
            return URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| {
                CliError::config(format!(
                    "{} does not hold a base64url secret",
                    path.display()
                ))
            });
        }
        Err(e) => {
            return Err(CliError::config(format!(
                "cannot create the signing secret {}: {e}",
                path.display()
            )));
        }
    };
    file.write_all(URL_SAFE_NO_PAD.encode(&secret).as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(|e| CliError::config(format!("cannot write {}: {e}", path.display())))?;
    tracing::info!(path = %path.display(), "created a new token signing secret");
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_made_once_with_mode_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/key");
        let first = load_or_create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        let _second = load_or_create(&path).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), text, "rewritten");
        drop(first);
    }

    #[test]
    fn an_open_or_short_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        fs::write(&path, URL_SAFE_NO_PAD.encode([1u8; 64])).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            load_or_create(&path)
                .unwrap_err()
                .to_string()
                .contains("chmod 600")
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load_or_create(&path).is_ok());
        fs::write(&path, URL_SAFE_NO_PAD.encode([1u8; 8])).unwrap();
        assert!(load_or_create(&path).is_err());
        fs::write(&path, "not base64 !!").unwrap();
        assert!(load_or_create(&path).is_err());
    }
}
