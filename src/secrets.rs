//! The node's two secrets: the HMAC key of guest tokens (`AUTH_SECRET`) and
//! the bearer token of `/admin/*` (`ADMIN_TOKEN`).
//!
//! A secret that is set must be at least [`MIN_SECRET_BYTES`] long, or the
//! node refuses to start. One that is unset is generated: the embedded node
//! (no `REDIS_URL`) keeps it in a file of `DATA_DIR`, mode 0600, and reads it
//! back on the next start, so tokens stay valid across restarts; a node with
//! `REDIS_URL` draws a new one each start, which only works for one node.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context as _, bail};

use crate::config::Settings;

/// The shortest secret a node accepts, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// The file of `DATA_DIR` that keeps a generated `AUTH_SECRET`.
pub const AUTH_SECRET_FILE: &str = "auth_secret";
/// The file of `DATA_DIR` that keeps a generated `ADMIN_TOKEN`.
pub const ADMIN_TOKEN_FILE: &str = "admin_token";

/// The secrets a node runs with.
pub struct Secrets {
    pub auth_secret: String,
    pub admin_token: String,
}

impl Secrets {
    /// The configured secrets, checked, or generated ones (kept in `DATA_DIR`
    /// by the embedded node). An error names the variable or file at fault
    /// and never shows a secret.
    pub fn resolve(settings: &Settings) -> anyhow::Result<Secrets> {
        // Check both before generating anything, so that a refused start
        // leaves no file behind.
        check("AUTH_SECRET", settings.auth_secret.as_deref())?;
        check("ADMIN_TOKEN", settings.admin_token.as_deref())?;
        let kept_in = (!settings.uses_redis()).then_some(settings.data_dir.as_path());
        let auth_secret = match &settings.auth_secret {
            Some(secret) => secret.clone(),
            None => match kept_in {
                Some(dir) => {
                    let path = dir.join(AUTH_SECRET_FILE);
                    let secret = kept_secret(&path)?;
                    tracing::info!(path = %path.display(), "AUTH_SECRET is not set: using the secret kept in DATA_DIR");
                    secret
                }
                None => {
                    tracing::warn!(
                        "AUTH_SECRET is not set: using a random secret; set the same AUTH_SECRET on every node of a cluster"
                    );
                    random_secret()
                }
            },
        };
        let admin_token = match &settings.admin_token {
            Some(token) => token.clone(),
            None => match kept_in {
                Some(dir) => {
                    let path = dir.join(ADMIN_TOKEN_FILE);
                    let token = kept_secret(&path)?;
                    tracing::info!(path = %path.display(), "ADMIN_TOKEN is not set: the token for /admin is kept in this file");
                    token
                }
                None => {
                    let token = random_secret();
                    tracing::warn!(admin_token = %token, "ADMIN_TOKEN is not set: generated one for /admin");
                    token
                }
            },
        };
        Ok(Secrets {
            auth_secret,
            admin_token,
        })
    }
}

/// Refuses a configured secret shorter than [`MIN_SECRET_BYTES`].
fn check(variable: &str, value: Option<&str>) -> anyhow::Result<()> {
    let length = match value {
        Some(value) if value.len() < MIN_SECRET_BYTES => value.len(),
        _ => return Ok(()),
    };
    let what = match length {
        0 => "set but empty".to_owned(),
        _ => format!("only {length} bytes long"),
    };
    bail!(
        "{variable} is {what}; it must be at least {MIN_SECRET_BYTES} bytes \
         (for example `openssl rand -hex 32`), or unset to have one generated"
    )
}

/// The secret kept in `path`, created (with its directory) when missing.
fn kept_secret(path: &Path) -> anyhow::Result<String> {
    match read_secret(path)? {
        Some(secret) => Ok(secret),
        None => {
            let secret = random_secret();
            match write_new(path, &secret) {
                Ok(()) => Ok(secret),
                // Another process sharing DATA_DIR wrote it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_secret(path)?
                    .with_context(|| format!("{} vanished while being read", path.display())),
                Err(e) => {
                    Err(e).with_context(|| format!("writing a new secret to {}", path.display()))
                }
            }
        }
    }
}

/// The secret in `path`, `None` when there is no such file. A file that
/// holds no valid secret is an error, not something to replace silently: the
/// tokens signed with the old secret would stop working without a word.
fn read_secret(path: &Path) -> anyhow::Result<Option<String>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let corrupt = |why: &str| {
        anyhow::anyhow!(
            "{} {why}; fix or delete it (deleting it makes the tokens it signed invalid)",
            path.display()
        )
    };
    let text = String::from_utf8(bytes).map_err(|_| corrupt("is not text"))?;
    // A line end is tolerated, for a file written with `echo`.
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.len() < MIN_SECRET_BYTES {
        return Err(corrupt(&format!(
            "holds {} bytes; a secret needs at least {MIN_SECRET_BYTES}",
            secret.len()
        )));
    }
    if secret.chars().any(char::is_control) {
        return Err(corrupt("holds control characters"));
    }
    warn_if_readable_by_others(path);
    Ok(Some(secret.to_owned()))
}

/// Creates `path` holding `secret`, readable by the owner only; fails with
/// `AlreadyExists` when the file exists.
fn write_new(path: &Path, secret: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    let written = file
        .write_all(secret.as_bytes())
        .and_then(|()| file.sync_all());
    if written.is_err() {
        // Half a secret would be refused on the next start; leave none.
        let _ = std::fs::remove_file(path);
    }
    written
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(metadata) = std::fs::metadata(path)
        && metadata.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "a secret file is readable by other users; chmod 600 it");
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

/// A new random secret: 32 random bytes, as 64 hexadecimal characters.
pub fn random_secret() -> String {
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn settings(dir: &Path) -> Settings {
        let mut settings = Settings::defaults();
        settings.redis_url = None;
        settings.auth_secret = None;
        settings.admin_token = None;
        settings.data_dir = dir.to_owned();
        settings
    }

    fn temp_dir() -> PathBuf {
        std::env::temp_dir()
            .join("chatstream-secrets-tests")
            .join(uuid::Uuid::new_v4().simple().to_string())
    }

    #[test]
    fn refuses_short_and_empty_secrets_naming_the_variable() {
        let dir = temp_dir();
        for (auth, admin, variable) in [
            (Some(""), None, "AUTH_SECRET"),
            (Some("short"), None, "AUTH_SECRET"),
            (None, Some(""), "ADMIN_TOKEN"),
            (None, Some(&"x".repeat(31)[..]), "ADMIN_TOKEN"),
        ] {
            let mut settings = settings(&dir);
            settings.auth_secret = auth.map(str::to_owned);
            settings.admin_token = admin.map(str::to_owned);
            let error = Secrets::resolve(&settings).err().expect("refused");
            assert!(error.to_string().contains(variable), "{error}");
        }
        assert!(!dir.exists(), "a refused start writes nothing");
    }

    #[test]
    fn accepts_configured_secrets_of_32_bytes() {
        let dir = temp_dir();
        let mut settings = settings(&dir);
        settings.auth_secret = Some("a".repeat(32));
        settings.admin_token = Some("b".repeat(40));
        let secrets = Secrets::resolve(&settings).unwrap();
        assert_eq!(secrets.auth_secret, "a".repeat(32));
        assert_eq!(secrets.admin_token, "b".repeat(40));
        assert!(!dir.exists(), "configured secrets are not written");
    }

    #[test]
    fn keeps_generated_secrets_in_the_data_dir() {
        let dir = temp_dir().join("nested");
        let first = Secrets::resolve(&settings(&dir)).unwrap();
        assert!(first.auth_secret.len() >= MIN_SECRET_BYTES);
        assert!(first.admin_token.len() >= MIN_SECRET_BYTES);
        assert_ne!(first.auth_secret, first.admin_token);
        let second = Secrets::resolve(&settings(&dir)).unwrap();
        assert_eq!(second.auth_secret, first.auth_secret);
        assert_eq!(second.admin_token, first.admin_token);
        for path in [dir.join(AUTH_SECRET_FILE), dir.join(ADMIN_TOKEN_FILE)] {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = std::fs::metadata(&path).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{}", path.display());
            }
            assert!(path.exists());
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_configured_secret_wins_over_a_kept_one() {
        let dir = temp_dir();
        let kept = Secrets::resolve(&settings(&dir)).unwrap();
        let mut settings = settings(&dir);
        settings.admin_token = Some("c".repeat(32));
        let secrets = Secrets::resolve(&settings).unwrap();
        assert_eq!(secrets.admin_token, "c".repeat(32));
        assert_eq!(secrets.auth_secret, kept.auth_secret);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_corrupt_or_short_file_is_an_error_naming_it() {
        for content in [&b"too short"[..], &b""[..], &[0xff; 40][..]] {
            let dir = temp_dir();
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(AUTH_SECRET_FILE);
            std::fs::write(&path, content).unwrap();
            let error = Secrets::resolve(&settings(&dir)).err().expect("refused");
            assert!(
                error.to_string().contains(&path.display().to_string()),
                "{error}"
            );
            assert_eq!(std::fs::read(&path).unwrap(), content, "left as it was");
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    #[test]
    fn a_file_written_with_echo_is_read_without_its_line_end() {
        let dir = temp_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let secret = "d".repeat(32);
        std::fs::write(dir.join(ADMIN_TOKEN_FILE), format!("{secret}\n")).unwrap();
        assert_eq!(
            Secrets::resolve(&settings(&dir)).unwrap().admin_token,
            secret
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_node_with_redis_keeps_no_file() {
        let dir = temp_dir();
        let mut settings = settings(&dir);
        settings.redis_url = Some("redis://127.0.0.1:1".into());
        let one = Secrets::resolve(&settings).unwrap();
        let two = Secrets::resolve(&settings).unwrap();
        assert_ne!(one.auth_secret, two.auth_secret);
        assert!(one.auth_secret.len() >= MIN_SECRET_BYTES);
        assert!(!dir.exists());
    }
}
