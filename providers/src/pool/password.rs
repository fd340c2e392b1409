//! `password_file`: a password read from a file (a mounted Kubernetes secret, a file a
//! rotation job rewrites) and read again when the file changes, so a rotated password is
//! used by the next new connection without a reload or a restart.
//!
//! sqlx's pool takes a password as part of its connect options and has no hook before a
//! connect. So the pool looks at the file (its modification time and length, one `stat`)
//! where a new connection is likely (a fast-path borrow when sqlx has no idle connection,
//! the supervisor's reconnect) and every 100 ms in its maintenance task, and when the file
//! changed, reads it and gives sqlx's pool options with the new password.

use secrecy::{ExposeSecret, SecretString};
use sqlx::{Connection, Database};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

type Options<DB> = <<DB as Database>::Connection as Connection>::Options;

/// Reads a password file: its contents less one trailing line break (as `echo` and
/// `kubectl create secret --from-file` leave it).
pub fn read_password_file(path: &Path) -> std::io::Result<SecretString> {
    let text = std::fs::read_to_string(path)?;
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    Ok(SecretString::from(text.to_owned()))
}

/// What the pool last saw of the file.
type Seen = Option<(SystemTime, u64)>;

fn look(path: &Path) -> Seen {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// A connection's password file, and how to put a password into its connect options.
pub struct PasswordFile<DB: Database> {
    path: PathBuf,
    seen: Mutex<Seen>,
    apply: fn(Options<DB>, &str) -> Options<DB>,
}

impl<DB: Database> std::fmt::Debug for PasswordFile<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl<DB: Database> PasswordFile<DB> {
    /// Watches `path`, whose password the connect options were built with just now;
    /// `apply` puts a new one into connect options.
    pub fn new(path: PathBuf, apply: fn(Options<DB>, &str) -> Options<DB>) -> Self {
        let seen = Mutex::new(look(&path));
        PasswordFile { path, seen, apply }
    }

    /// The new password when the file changed since the last look. A file that cannot be
    /// read (mid-rewrite, or gone) keeps the password in use; the next look tries again.
    pub(super) fn changed(&self) -> Option<SecretString> {
        let now = look(&self.path);
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if now.is_none() || now == *seen {
            return None;
        }
        let password = read_password_file(&self.path).ok()?;
        *seen = now;
        Some(password)
    }

    /// `options` with `password`.
    pub(super) fn apply(&self, options: Options<DB>, password: &SecretString) -> Options<DB> {
        (self.apply)(options, password.expose_secret())
    }
}
