//! Engine providers for [dbmanager](https://docs.rs/dbmanager).
//!
//! A provider turns *typed* settings into a live pool for one engine. It knows nothing of
//! YAML, environment variables or connection names: the `dbmanager` crate parses and
//! validates the configuration, then hands each provider a [`settings::ServerSettings`] or
//! [`settings::SqliteSettings`] plus a [`settings::PoolSettings`].
//!
//! Each engine sits behind a cargo feature (`postgres`, `mysql`, `sqlite`) so a service
//! compiles only the drivers it uses.
//!
//! Each engine implements [`Provider`] (the engine seam, see [`provider`]); dbmanager
//! keeps the registry of them and sees only `dyn EnginePool`.
//!
//! The SQL engines share one pool implementation, [`pool::SqlPool`]: a [`sqlx::Pool`] with
//! hooks that enforce the limits sqlx lacks (`max_idle_conns`), replace sqlx's ping on every
//! acquire with a ping only after a connection sat idle for a while, and count *why*
//! connections were closed.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod classify;
pub mod context;
pub mod credentials;
#[cfg(feature = "diesel")]
pub mod diesel;
pub mod error;
pub mod fast;
pub mod kind;
pub mod managed;
// Without an engine feature nothing builds a pool; the type still documents the API.
#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql", feature = "sqlite")),
    allow(dead_code)
)]
pub mod pool;
pub mod provider;
pub mod redact;
pub mod rules;
pub mod settings;
pub mod stats;
pub mod time;

#[cfg(feature = "mongodb")]
pub mod mongo;
#[cfg(feature = "mssql")]
pub mod mssql;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use classify::{Classify, ErrorClass, classify};
pub use error::{Phase, ProviderError, TimeoutPhase};
pub use kind::DbType;
pub use provider::{EndpointKind, EnginePool, LagSample, OpenRequest, Provider, Rules};
pub use redact::{Secrets, dsn_secrets};
pub use secrecy::{ExposeSecret, SecretString};

/// Installs rustls's `ring` crypto provider as the process default, unless one is
/// installed already. The MongoDB and SQL Server drivers build rustls configurations with
/// `ClientConfig::builder()`, which panics when the dependency graph compiles in two
/// providers (ring and aws-lc-rs, as it does here) and none was chosen. An application that
/// prefers aws-lc-rs installs it before opening connections and this does nothing.
#[cfg(any(feature = "mongodb", feature = "mssql", feature = "diesel"))]
#[cfg_attr(
    not(any(
        feature = "mongodb",
        feature = "mssql",
        feature = "postgres",
        feature = "mysql"
    )),
    allow(dead_code)
)]
pub(crate) fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Losing a race with another installer is fine: a provider is installed.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
    });
}

/// Decodes `%XX` escapes (DSN parts). Hand-written (not `percent-encoding`, which only the
/// `postgres` feature pulls in) because it must fail on a malformed escape rather than pass
/// it through, and redaction needs it with every feature set.
pub(crate) fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a `%` is not followed by two hex digits")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a percent-encoded value is not UTF-8".to_owned())
}
