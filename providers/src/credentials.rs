//! Passwords from the service's own code: a cloud IAM token valid for some minutes, a
//! secret fetched from a vault. A [`CredentialProvider`] is asked for a [`Credential`]
//! when the pool opens, again ahead of the credential's expiry, and at every reconnect
//! attempt while the connection is down; every new connection logs in with the latest.
//!
//! sqlx's pool has no hook that runs before a connect, and an IAM call may take longer
//! than a connect should wait. So the pool asks ahead of time: once a quarter of a
//! credential's validity is left, a background refresh (one at a time) asks for the next,
//! and new connections use it as soon as it arrives. A credential without an expiry is
//! asked for again only while the connection is down (after the server refused it, say).

use futures_util::future::BoxFuture;
use secrecy::SecretString;
use std::time::SystemTime;

/// A password for new connections (and, for dynamic database users such as Vault's, a
/// user name), and until when the server accepts it.
#[derive(Clone)]
pub struct Credential {
    /// The user the next connections log in as (`None`: the configured `user`).
    pub user: Option<String>,
    /// The password (or token) the next connections log in with.
    pub password: SecretString,
    /// When it stops being accepted (`None`: until the provider is asked again).
    pub expires_at: Option<SystemTime>,
}

impl Credential {
    /// A credential without an expiry.
    pub fn new(password: impl Into<String>) -> Self {
        Credential {
            user: None,
            password: SecretString::from(password.into()),
            expires_at: None,
        }
    }

    /// This credential, for the user `user` (a dynamic database user).
    #[must_use]
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// This credential, valid until `at`: the next is asked for once a quarter of the
    /// time left is left.
    #[must_use]
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("user", &self.user)
            .field("password", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The error a provider returns: anything, shown in events and errors as the provider
/// wrote it (keep secrets out of it).
pub type CredentialError = Box<dyn std::error::Error + Send + Sync>;

/// A source of passwords for one connection's new sessions (PostgreSQL and MySQL/MariaDB).
/// Register it with `Manager::set_credential_provider` before `connect()`.
///
/// ```
/// use dbmanager_providers::credentials::{Credential, CredentialError, CredentialProvider};
/// use futures_util::future::BoxFuture;
/// use std::time::{Duration, SystemTime};
///
/// struct IamToken;
///
/// impl CredentialProvider for IamToken {
///     fn credential(&self) -> BoxFuture<'_, Result<Credential, CredentialError>> {
///         Box::pin(async {
///             let token = String::from("signed-token"); // ask the cloud's SDK here
///             Ok(Credential::new(token).expires_at(SystemTime::now() + Duration::from_secs(900)))
///         })
///     }
/// }
/// ```
pub trait CredentialProvider: Send + Sync + 'static {
    /// The credential new connections should use now. Called once at a time per pool.
    fn credential(&self) -> BoxFuture<'_, Result<Credential, CredentialError>>;
}

/// A provider shared between connections (or kept by the service to inspect).
impl<T: CredentialProvider + ?Sized> CredentialProvider for std::sync::Arc<T> {
    fn credential(&self) -> BoxFuture<'_, Result<Credential, CredentialError>> {
        (**self).credential()
    }
}
