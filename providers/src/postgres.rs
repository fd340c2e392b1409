//! PostgreSQL provider (feature `postgres`): a [`SqlPool<Postgres>`] built from
//! [`ServerSettings`] with sqlx's option builders, so user names, passwords and database
//! names with `@ : / ? # % ' "` or spaces need no escaping.

use crate::error::ProviderError;
use crate::kind::DbType;
use crate::pool::{PoolContext, SqlPool};
use crate::provider::{EnginePool, OpenFuture, OpenRequest, Provider, Rules};
use crate::settings::Endpoint;
use crate::settings::{PoolSettings, ServerSettings, SslMode};
use secrecy::ExposeSecret;
use sqlx::Postgres;
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use std::str::FromStr;

/// A PostgreSQL pool.
pub type PgSqlPool = SqlPool<Postgres>;

/// Builds the driver's connect options. Pure: does no I/O, so it doubles as validation.
pub fn connect_options(s: &ServerSettings) -> Result<PgConnectOptions, ProviderError> {
    let mut o = match &s.dsn {
        Some(dsn) => {
            let dsn = dsn.expose_secret();
            PgConnectOptions::from_str(dsn).map_err(|e| ProviderError::invalid_dsn(e, dsn))?
        }
        None => {
            // Not `PgConnectOptions::new()`: reading ~/.pgpass would make the password
            // depend on the machine rather than the configuration.
            let mut o = PgConnectOptions::new_without_pgpass();
            if let Some(host) = &s.host {
                o = o.host(host);
            }
            if let Some(port) = s.port {
                o = o.port(port);
            }
            if let Some(user) = &s.user {
                o = o.username(user);
            }
            if let Some(password) = &s.password {
                o = o.password(password.expose_secret());
            }
            if let Some(db) = &s.database {
                o = o.database(db);
            }
            o = o.ssl_mode(ssl_mode(s.tls.mode)?);
            if let Some(p) = &s.tls.root_cert {
                o = o.ssl_root_cert(p);
            }
            if let Some(p) = &s.tls.client_cert {
                o = o.ssl_client_cert(p);
            }
            if let Some(p) = &s.tls.client_key {
                o = o.ssl_client_key(p);
            }
            o
        }
    };
    if let Some(name) = &s.application_name {
        o = o.application_name(name);
    }
    let mut session: Vec<(&str, String)> = Vec::new();
    if let Some(schema) = &s.schema {
        session.push(("search_path", schema.clone()));
    }
    if let Some(t) = s.query_timeout {
        // Enforced by the server for every statement on every pooled connection.
        session.push(("statement_timeout", format!("{}ms", t.as_millis())));
    }
    if !session.is_empty() {
        o = o.options(session);
    }
    Ok(o)
}

fn ssl_mode(mode: SslMode) -> Result<PgSslMode, ProviderError> {
    Ok(match mode {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Allow => PgSslMode::Allow,
        SslMode::Prefer => PgSslMode::Prefer,
        SslMode::Require => PgSslMode::Require,
        SslMode::VerifyCa => PgSslMode::VerifyCa,
        SslMode::VerifyFull => PgSslMode::VerifyFull,
        SslMode::Strict => return Err(ProviderError::strict_is_mssql()),
    })
}

/// Builds the pool; with `eager`, connects before returning (bounded by `connect_timeout`).
pub async fn open(
    server: &ServerSettings,
    pool: PoolSettings,
    eager: bool,
    ctx: PoolContext,
) -> Result<PgSqlPool, ProviderError> {
    let options = connect_options(server)?;
    SqlPool::open(pool, options, None, eager, false, ctx).await
}

/// The PostgreSQL provider, as the manager's registry holds it.
#[derive(Debug, Default, Clone, Copy)]
pub struct PostgresProvider;

impl Provider for PostgresProvider {
    fn kind(&self) -> DbType {
        DbType::Postgres
    }

    fn names(&self) -> &'static [&'static str] {
        &["postgres", "postgresql"]
    }

    fn rules(&self) -> Rules {
        Rules {
            sql_views: true,
            ..Rules::server().with_extra(&["schema"])
        }
    }

    fn check(&self, endpoint: &Endpoint) -> Result<(), ProviderError> {
        if let Some(s) = endpoint.server()
            && s.dsn.is_some()
        {
            connect_options(s)?;
        }
        Ok(())
    }

    fn open<'a>(&'a self, req: OpenRequest<'a>) -> OpenFuture<'a> {
        Box::pin(async move {
            let pool = open(req.server()?, req.pool, req.eager, req.ctx).await?;
            Ok(std::sync::Arc::new(pool) as std::sync::Arc<dyn EnginePool>)
        })
    }
}
