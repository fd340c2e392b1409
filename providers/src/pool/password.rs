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

/// Puts a credential's user (when it names one) and password into connect options.
pub type SetCredential<DB> = fn(Options<DB>, Option<&str>, &str) -> Options<DB>;

/// A connection's [`CredentialProvider`](crate::credentials::CredentialProvider), and when
/// to ask it again.
pub(crate) struct Provided<DB: Database> {
    provider: std::sync::Arc<dyn crate::credentials::CredentialProvider>,
    apply: SetCredential<DB>,
    /// When the credential in use should be replaced (`None`: it does not expire).
    refresh_at: Mutex<Option<std::time::Instant>>,
    /// A fetch is under way (one at a time).
    busy: std::sync::atomic::AtomicBool,
}

/// A credential provider's failure, as a connect error.
#[derive(Debug)]
struct ProviderFailed(crate::credentials::CredentialError);

impl std::fmt::Display for ProviderFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the credential provider failed: {}", self.0)
    }
}

impl std::error::Error for ProviderFailed {}

impl<DB: Database> Provided<DB> {
    pub(crate) fn new(
        provider: std::sync::Arc<dyn crate::credentials::CredentialProvider>,
        apply: SetCredential<DB>,
    ) -> Self {
        Provided {
            provider,
            apply,
            refresh_at: Mutex::new(None),
            busy: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether the credential in use should be replaced now (and no ask is under way).
    pub(super) fn due(&self) -> bool {
        !self.busy.load(std::sync::atomic::Ordering::Acquire)
            && self
                .refresh_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .is_some_and(|at| std::time::Instant::now() >= at)
    }

    /// `options` with the credential's user (when it names one) and password.
    pub(super) fn apply(
        &self,
        options: Options<DB>,
        credential: &crate::credentials::Credential,
    ) -> Options<DB> {
        (self.apply)(
            options,
            credential.user.as_deref(),
            credential.password.expose_secret(),
        )
    }

    /// Asks the provider (within `limit`) and schedules the next ask: once a quarter of
    /// the new credential's validity is left, or in a second after a failure. `None`
    /// when a fetch is already under way.
    pub(super) async fn fetch(
        &self,
        limit: std::time::Duration,
    ) -> Option<Result<crate::credentials::Credential, crate::error::ProviderError>> {
        use std::sync::atomic::Ordering;
        /// Ends the ask however it ends (answered, timed out, or its caller dropped).
        struct Asking<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Asking<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        if self.busy.swap(true, Ordering::AcqRel) {
            return None;
        }
        let asking = Asking(&self.busy);
        let asked = tokio::time::timeout(limit, self.provider.credential()).await;
        drop(asking);
        let now = std::time::Instant::now();
        let (next, result) = match asked {
            Ok(Ok(c)) => {
                let next = c.expires_at.map(|at| {
                    let left = at.duration_since(SystemTime::now()).unwrap_or_default();
                    // Not in a loop for one that is (nearly) expired already.
                    now + (left * 3 / 4).max(std::time::Duration::from_millis(250))
                });
                (next, Ok(c))
            }
            Ok(Err(e)) => (Some(now + std::time::Duration::from_secs(1)), Err(e)),
            Err(_) => (
                Some(now + std::time::Duration::from_secs(1)),
                Err(format!("no answer within {limit:?}").into()),
            ),
        };
        *self
            .refresh_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = next;
        Some(result.map_err(|e| crate::error::ProviderError::Driver {
            phase: crate::error::Phase::Connect,
            class: crate::classify::ErrorClass::Transient,
            source: Box::new(ProviderFailed(e)),
        }))
    }
}
