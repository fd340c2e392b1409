//! MySQL and MariaDB provider (feature `mysql`): a [`SqlPool<MySql>`] built from
//! [`ServerSettings`] with sqlx's option builders.
//!
//! `sslmode` takes PostgreSQL's names and maps them: `disable` → DISABLED, `prefer`/`allow`
//! → PREFERRED, `require` → REQUIRED, `verify-ca` → VERIFY_CA, `verify-full` →
//! VERIFY_IDENTITY. `query_timeout` becomes the session's `max_statement_time` on MariaDB
//! and `max_execution_time` on MySQL (which applies to `SELECT` only).

use crate::error::ProviderError;
use crate::kind::DbType;
use crate::pool::{InitFn, Listener, PoolContext, SqlPool};
use crate::provider::{EnginePool, OpenFuture, OpenRequest, Provider, Rules};
use crate::settings::Endpoint;
use crate::settings::{PoolSettings, ServerSettings, SslMode};
use secrecy::ExposeSecret;
use sqlx::mysql::{MySqlConnectOptions, MySqlSslMode};
use sqlx::{Executor, MySql};
use std::str::FromStr;
use std::sync::Arc;

/// A MySQL/MariaDB pool.
pub type MySqlSqlPool = SqlPool<MySql>;

/// Builds the driver's connect options. Pure: does no I/O, so it doubles as validation.
pub fn connect_options(s: &ServerSettings) -> Result<MySqlConnectOptions, ProviderError> {
    let o = match &s.dsn {
        Some(dsn) => {
            let dsn = dsn.expose_secret();
            MySqlConnectOptions::from_str(dsn).map_err(|e| ProviderError::invalid_dsn(e, dsn))?
        }
        None => {
            let mut o = MySqlConnectOptions::new();
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
                o = o.ssl_ca(p);
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
    Ok(o)
}

fn ssl_mode(mode: SslMode) -> Result<MySqlSslMode, ProviderError> {
    Ok(match mode {
        SslMode::Disable => MySqlSslMode::Disabled,
        SslMode::Allow | SslMode::Prefer => MySqlSslMode::Preferred,
        SslMode::Require => MySqlSslMode::Required,
        SslMode::VerifyCa => MySqlSslMode::VerifyCa,
        SslMode::VerifyFull => MySqlSslMode::VerifyIdentity,
        SslMode::Strict => return Err(ProviderError::strict_is_mssql()),
    })
}

/// Builds the pool; with `eager`, connects before returning (bounded by `connect_timeout`).
pub async fn open(
    server: &ServerSettings,
    pool: PoolSettings,
    eager: bool,
    ctx: PoolContext,
) -> Result<MySqlSqlPool, ProviderError> {
    let options = connect_options(server)?;
    let init: Option<InitFn<MySql>> = server.query_timeout.map(|t| {
        let f: InitFn<MySql> = Arc::new(move |conn| {
            Box::pin(async move {
                let version: String = sqlx::query_scalar("SELECT VERSION()")
                    .fetch_one(&mut *conn)
                    .await?;
                let stmt = if version.contains("MariaDB") {
                    format!("SET SESSION max_statement_time = {}", t.as_secs_f64())
                } else {
                    format!("SET SESSION max_execution_time = {}", t.as_millis())
                };
                conn.execute(sqlx::AssertSqlSafe(stmt)).await?;
                Ok(())
            })
        });
        f
    });
    // `read_only` (MySQL and MariaDB; MySQL's `super_read_only` implies it).
    let read_only: crate::pool::ReadOnlyFn<MySql> = std::sync::Arc::new(|conn| {
        Box::pin(async move {
            sqlx::query_scalar::<_, i64>("SELECT CAST(@@global.read_only AS SIGNED)")
                .fetch_one(&mut *conn)
                .await
                .map(|v| v != 0)
        })
    });
    let listener: crate::pool::ListenerFn<MySql> = |o| {
        Some(match o.get_socket() {
            Some(path) => Listener::Unix(path.clone()),
            None => Listener::Tcp {
                host: o.get_host().to_owned(),
                port: o.get_port(),
            },
        })
    };
    let checks = crate::pool::ServerChecks {
        read_only: Some(read_only),
        listener: Some(listener),
    };
    SqlPool::open(pool, options, init, checks, eager, false, ctx).await
}

/// The MySQL and MariaDB provider, as the manager's registry holds it.
#[derive(Debug, Default, Clone, Copy)]
pub struct MySqlProvider;

impl Provider for MySqlProvider {
    fn kind(&self) -> DbType {
        DbType::MySql
    }

    fn names(&self) -> &'static [&'static str] {
        &["mysql", "mariadb"]
    }

    fn rules(&self) -> Rules {
        Rules {
            refused: &[("schema", " (a MySQL schema is a database: set `database`)")],
            sql_views: true,
            ..Rules::server()
                .with_extra(&["replicas", "load_balancing", "fallback", "max_replica_lag"])
                .with_unsupported(&[(
                    "application_name",
                    "sqlx's MySQL driver sends no connection attributes (filter by `user` instead)",
                )])
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
