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

/// Every server of the connection, in order: `hosts` (each with the rest of the
/// settings; the port defaults to 3306), or the one server of `host` or `dsn`. Pure, like
/// [`connect_options`].
pub fn hosts_of(s: &ServerSettings) -> Result<Vec<MySqlConnectOptions>, ProviderError> {
    let base = connect_options(s)?;
    if s.hosts.is_empty() || s.dsn.is_some() {
        return Ok(vec![base]);
    }
    Ok(s.hosts
        .iter()
        .map(|(host, port)| base.clone().host(host).port(port.unwrap_or(3306)))
        .collect())
}

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
    Ok(match &s.password_file {
        Some(path) => o.password(crate::settings::password_from_file(path)?.expose_secret()),
        None => o,
    })
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

/// The session statements that set `query_timeout`, in the order to try them: MariaDB's
/// `max_statement_time` (seconds, every statement), then MySQL's `max_execution_time`
/// (milliseconds, SELECT only), which MariaDB does not have. The sqlx pool and the
/// diesel view both use them: one round trip on MariaDB, two on MySQL.
pub(crate) fn query_timeout_statements(t: std::time::Duration) -> [String; 2] {
    [
        format!("SET SESSION max_statement_time = {}", t.as_secs_f64()),
        format!("SET SESSION max_execution_time = {}", t.as_millis()),
    ]
}

/// Builds the pool; with `eager`, connects before returning (bounded by `connect_timeout`).
pub async fn open(
    server: &ServerSettings,
    pool: PoolSettings,
    eager: bool,
    ctx: PoolContext,
) -> Result<MySqlSqlPool, ProviderError> {
    let hosts = hosts_of(server)?;
    let options = hosts[0].clone();
    let init: Option<InitFn<MySql>> = server.query_timeout.map(|t| {
        let f: InitFn<MySql> = Arc::new(move |conn| {
            Box::pin(async move {
                let [mariadb, mysql] = query_timeout_statements(t);
                if conn.execute(sqlx::AssertSqlSafe(mariadb)).await.is_err() {
                    conn.execute(sqlx::AssertSqlSafe(mysql)).await?;
                }
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
        Some(Listener::socket_or_tcp(
            o.get_socket().cloned(),
            o.get_host(),
            o.get_port(),
        ))
    };
    let lag: crate::pool::LagFn<MySql> = Arc::new(|pool| {
        Box::pin(async move {
            use sqlx::Row;
            let Some(row) = sqlx::query("SHOW SLAVE STATUS")
                .fetch_optional(pool)
                .await
                .ok()?
            else {
                // Not a replica at all: nothing to lag behind.
                return Some(crate::provider::LagSample::new(true, None, None));
            };
            // NULL while replication is stopped or broken: as far behind as can be.
            let behind: Option<u64> = row.try_get("Seconds_Behind_Master").ok()?;
            let server_lag =
                behind.map_or(std::time::Duration::MAX, std::time::Duration::from_secs);
            Some(crate::provider::LagSample::new(
                behind == Some(0),
                None,
                Some(server_lag),
            ))
        })
    });
    let checks = crate::pool::ServerChecks {
        read_only: Some(Arc::clone(&read_only)),
        promoted: None,
        listener: Some(listener),
        lag: Some(lag),
        // `read_only` tells a primary from a replica (MariaDB and MySQL have no recovery
        // state): a replica set up as one has it on.
        failover: crate::pool::Failover::new(
            hosts,
            server.target_session_attrs,
            server.load_balance_hosts,
            Arc::clone(&read_only),
            |o: &MySqlConnectOptions| format!("{}:{}", o.get_host(), o.get_port()),
        ),
        password_file: server.password_file.clone().map(|path| {
            crate::pool::PasswordFile::new(path, |o: MySqlConnectOptions, pw| o.password(pw))
        }),
        set_credential: Some(|o: MySqlConnectOptions, user, pw| match user {
            Some(u) => o.username(u).password(pw),
            None => o.password(pw),
        }),
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
        DbType::MySql.names()
    }

    fn rules(&self) -> Rules {
        DbType::MySql.rules()
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
