//! PostgreSQL provider (feature `postgres`): a [`SqlPool<Postgres>`] built from
//! [`ServerSettings`] with sqlx's option builders, so user names, passwords and database
//! names with `@ : / ? # % ' "` or spaces need no escaping.

use crate::error::ProviderError;
use crate::kind::DbType;
use crate::pool::{Listener, PoolContext, SqlPool};
use crate::provider::{EnginePool, OpenFuture, OpenRequest, Provider, Rules};
use crate::settings::Endpoint;
use crate::settings::{
    LoadBalanceHosts, PoolSettings, ServerSettings, SslMode, TargetSessionAttrs,
};
use secrecy::ExposeSecret;
use sqlx::Postgres;
use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// A PostgreSQL pool.
pub type PgSqlPool = SqlPool<Postgres>;

/// Builds the driver's connect options. Pure: does no I/O, so it doubles as validation.
///
/// What it reads besides the configuration: libpq's `PG*` environment variables
/// (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`, `PGSSLROOTCERT`,
/// `PGSSLCERT`, `PGSSLKEY`, `PGAPPNAME`, `PGOPTIONS`) as defaults for what the
/// configuration leaves out, as `psql` does (sqlx reads them). Never a password file
/// (`~/.pgpass`, `PGPASSFILE`): the password comes from the configuration or `PGPASSWORD`.
pub fn connect_options(s: &ServerSettings) -> Result<PgConnectOptions, ProviderError> {
    let mut o = match &s.dsn {
        Some(dsn) => from_url(dsn.expose_secret())?,
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
    if let Some(path) = &s.password_file {
        o = o.password(crate::settings::password_from_file(path)?.expose_secret());
    }
    if let Some(name) = &s.application_name {
        o = o.application_name(name);
    }
    if s.pgbouncer {
        // A statement prepared on one server connection of the bouncer is gone on the
        // next: keep none (see `open`).
        o = o.statement_cache_capacity(0);
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

/// A connection's servers: one set of connect options per host, in the order to try
/// them, and which of them will do.
#[derive(Debug, Clone)]
pub struct Hosts {
    /// Per host, in order (one for a single-host connection).
    pub options: Vec<PgConnectOptions>,
    /// Which servers a session may use.
    pub target: TargetSessionAttrs,
    /// Whether the order was shuffled.
    pub order: LoadBalanceHosts,
}

/// Every server of the connection: `hosts` (with the rest of the settings), or the hosts
/// of a multi-host DSN (`postgres://u@a:5432,b:5433/db?target_session_attrs=read-write`,
/// libpq's form), with `target_session_attrs` and `load_balance_hosts` from the DSN when it
/// has them, else from the settings. Pure, like [`connect_options`].
pub fn hosts_of(s: &ServerSettings) -> Result<Hosts, ProviderError> {
    let mut target = s.target_session_attrs;
    let mut order = s.load_balance_hosts;
    let options = match &s.dsn {
        Some(dsn) => {
            let dsn = dsn.expose_secret();
            let each = split_hosts(dsn);
            if let Ok(url) = url::Url::parse(&each[0]) {
                for (key, value) in url.query_pairs() {
                    match &*key {
                        "target_session_attrs" => {
                            target = TargetSessionAttrs::parse(&value).unwrap_or(target);
                        }
                        "load_balance_hosts" if value == "random" => {
                            order = LoadBalanceHosts::Random
                        }
                        "load_balance_hosts" => order = LoadBalanceHosts::Disable,
                        _ => {}
                    }
                }
            }
            let mut options = Vec::with_capacity(each.len());
            for one in each {
                let mut single = s.clone();
                single.dsn = Some(secrecy::SecretString::from(one));
                options.push(connect_options(&single)?);
            }
            options
        }
        None if s.hosts.is_empty() => vec![connect_options(s)?],
        None => {
            let base = connect_options(s)?;
            s.hosts
                .iter()
                .map(|(host, port)| base.clone().host(host).port(port.unwrap_or(5432)))
                .collect()
        }
    };
    Ok(Hosts {
        options,
        target,
        order,
    })
}

/// The single-host DSNs a multi-host one stands for (itself when it names one host or
/// none): `postgres://u:p@a:1,b:2/db?x` gives `postgres://u:p@a:1/db?x` and
/// `postgres://u:p@b:2/db?x`.
pub(crate) fn split_hosts(dsn: &str) -> Vec<String> {
    let Some((scheme, rest)) = dsn.split_once("://") else {
        return vec![dsn.to_owned()];
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    if !hosts.contains(',') {
        return vec![dsn.to_owned()];
    }
    hosts
        .split(',')
        .map(|host| format!("{scheme}://{userinfo}{host}{tail}"))
        .collect()
}

/// A `postgres://` DSN read with sqlx's own option builders. Not `PgConnectOptions::from_str`:
/// that reads `~/.pgpass` and logs every parameter it does not know, value included, at
/// WARN (`?sslpassword=...`). This reads the same parameters; any other is ignored with a
/// warning that names it but never shows its value.
fn from_url(dsn: &str) -> Result<PgConnectOptions, ProviderError> {
    use percent_encoding::percent_decode_str;
    let bad = |reason: &str| ProviderError::invalid_dsn(reason, dsn);
    let url = url::Url::parse(dsn).map_err(|e| ProviderError::invalid_dsn(e, dsn))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(bad(
            "a PostgreSQL DSN starts with `postgres://` or `postgresql://`",
        ));
    }
    let decode = |s: &str, what: &str| {
        percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| {
                bad(&format!(
                    "the {what} is not valid UTF-8 once percent-decoded"
                ))
            })
    };
    let mut o = PgConnectOptions::new_without_pgpass();
    if let Some(host) = url.host_str() {
        let host = decode(host, "host")?;
        o = if host.starts_with('/') {
            o.socket(&host)
        } else {
            o.host(&host)
        };
    }
    if let Some(port) = url.port() {
        o = o.port(port);
    }
    if !url.username().is_empty() {
        o = o.username(&decode(url.username(), "user name")?);
    }
    if let Some(password) = url.password() {
        o = o.password(&decode(password, "password")?);
    }
    let path = url.path().trim_start_matches('/');
    if !path.is_empty() {
        o = o.database(&decode(path, "database name")?);
    }
    for (key, value) in url.query_pairs() {
        let invalid = |what: &str| bad(&format!("parameter `{key}`: {what}"));
        o = match &*key {
            "sslmode" | "ssl-mode" => {
                o.ssl_mode(value.parse().map_err(|_| invalid("unknown sslmode"))?)
            }
            "sslrootcert" | "ssl-root-cert" | "ssl-ca" => o.ssl_root_cert(&*value),
            "sslcert" | "ssl-cert" => o.ssl_client_cert(&*value),
            "sslkey" | "ssl-key" => o.ssl_client_key(&*value),
            "statement-cache-capacity" => {
                o.statement_cache_capacity(value.parse().map_err(|_| invalid("not a number"))?)
            }
            "host" if value.starts_with('/') => o.socket(&*value),
            "host" => o.host(&value),
            "hostaddr" => {
                value
                    .parse::<std::net::IpAddr>()
                    .map_err(|_| invalid("not an IP address"))?;
                o.host(&value)
            }
            "port" => o.port(value.parse().map_err(|_| invalid("not a port"))?),
            "dbname" => o.database(&value),
            "user" => o.username(&value),
            "password" => o.password(&value),
            "application_name" => o.application_name(&value),
            "options" => {
                // `-c key=value` (or `--key=value`) settings, as libpq passes them.
                let pairs: Vec<(String, String)> = value
                    .split_whitespace()
                    .filter(|w| *w != "-c")
                    .filter_map(|w| {
                        w.strip_prefix("--")
                            .or_else(|| w.strip_prefix("-c"))
                            .unwrap_or(w)
                            .split_once('=')
                    })
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                o.options(pairs)
            }
            k if k.starts_with("options[") && k.ends_with(']') => {
                o.options([(&k["options[".len()..k.len() - 1], &*value)])
            }
            // Read by `hosts_of` (a multi-host connection's, which may list one host).
            "target_session_attrs" => {
                TargetSessionAttrs::parse(&value).ok_or_else(|| {
                    invalid(
                        "expected any, read-write, read-only, primary, standby or prefer-standby",
                    )
                })?;
                o
            }
            "load_balance_hosts" => {
                if !matches!(&*value, "disable" | "random") {
                    return Err(invalid("expected disable or random"));
                }
                o
            }
            other => {
                tracing::warn!(
                    parameter = other,
                    "ignoring an unrecognised PostgreSQL DSN parameter (its value is not logged)"
                );
                o
            }
        };
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
    let hosts = hosts_of(server)?;
    let options = hosts.options[0].clone();
    // A standby (a failover's old primary) is in recovery. Not the session's
    // `default_transaction_read_only`: that is the application's own choice.
    let read_only: crate::pool::ReadOnlyFn<Postgres> = std::sync::Arc::new(|conn| {
        Box::pin(async move {
            sqlx::query_scalar::<_, bool>("select pg_is_in_recovery()")
                .fetch_one(&mut *conn)
                .await
        })
    });
    // Out of recovery, and the last transaction it replayed as a standby committed less
    // than a minute ago: a promotion just happened (a promoted server keeps that time
    // until it restarts; a server never in recovery has none). Patroni promotes some
    // seconds after the old leader's last commit, hence the minute.
    let promoted: crate::pool::ReadOnlyFn<Postgres> = std::sync::Arc::new(|conn| {
        Box::pin(async move {
            sqlx::query_scalar::<_, bool>(
                "select not pg_is_in_recovery() \
                 and coalesce(now() - pg_last_xact_replay_timestamp() < interval '1 minute', false)",
            )
            .fetch_one(&mut *conn)
            .await
        })
    });
    // The socket file sqlx connects to: `<dir>/.s.PGSQL.<port>` for a socket directory
    // (given as `socket` or as a host starting with `/`).
    let listener: crate::pool::ListenerFn<Postgres> = |o| {
        let dir = o
            .get_socket()
            .cloned()
            .or_else(|| o.get_host().starts_with('/').then(|| o.get_host().into()));
        let file = dir.map(|d: std::path::PathBuf| d.join(format!(".s.PGSQL.{}", o.get_port())));
        Some(Listener::socket_or_tcp(file, o.get_host(), o.get_port()))
    };
    // Caught up when everything received is replayed (an idle primary sends nothing, so
    // the last replay's age alone would grow forever).
    let lag: crate::pool::LagFn<Postgres> = std::sync::Arc::new(|pool| {
        Box::pin(async move {
            let (caught_up, applied, secs): (bool, Option<String>, Option<f64>) = sqlx::query_as(
                "select not pg_is_in_recovery() \
                   or pg_last_wal_receive_lsn() is not distinct from pg_last_wal_replay_lsn(), \
                 pg_last_wal_replay_lsn()::text, \
                 extract(epoch from now() - pg_last_xact_replay_timestamp())::float8",
            )
            .fetch_one(pool)
            .await
            .ok()?;
            let server_lag = secs.map(|s| std::time::Duration::from_secs_f64(s.max(0.0)));
            Some(crate::provider::LagSample::new(
                caught_up, applied, server_lag,
            ))
        })
    });
    let checks = crate::pool::ServerChecks {
        read_only: Some(std::sync::Arc::clone(&read_only)),
        promoted: Some(promoted),
        listener: Some(listener),
        lag: Some(lag),
        failover: crate::pool::Failover::new(
            hosts.options,
            hosts.target,
            hosts.order,
            std::sync::Arc::clone(&read_only),
            |o: &PgConnectOptions| format!("{}:{}", o.get_host(), o.get_port()),
        ),
        password_file: server.password_file.clone().map(|path| {
            crate::pool::PasswordFile::new(path, |o: PgConnectOptions, pw| o.password(pw))
        }),
        set_credential: Some(|o: PgConnectOptions, user, pw| match user {
            Some(u) => o.username(u).password(pw),
            None => o.password(pw),
        }),
    };
    SqlPool::open(pool, options, None, checks, eager, false, ctx).await
}

/// The PostgreSQL provider, as the manager's registry holds it.
#[derive(Debug, Default, Clone, Copy)]
pub struct PostgresProvider;

impl Provider for PostgresProvider {
    fn kind(&self) -> DbType {
        DbType::Postgres
    }

    fn names(&self) -> &'static [&'static str] {
        DbType::Postgres.names()
    }

    fn rules(&self) -> Rules {
        DbType::Postgres.rules()
    }

    fn check(&self, endpoint: &Endpoint) -> Result<(), ProviderError> {
        if let Some(s) = endpoint.server()
            && s.dsn.is_some()
        {
            hosts_of(s)?;
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

#[cfg(test)]
mod multi_host_tests {
    use super::*;

    #[test]
    fn a_multi_host_dsn_stands_for_one_dsn_per_host() {
        assert_eq!(
            split_hosts("postgres://u:p%40@a:5432,b:5433/db?target_session_attrs=read-write"),
            [
                "postgres://u:p%40@a:5432/db?target_session_attrs=read-write",
                "postgres://u:p%40@b:5433/db?target_session_attrs=read-write"
            ]
        );
        assert_eq!(split_hosts("postgres://a/db"), ["postgres://a/db"]);
        assert_eq!(
            split_hosts("postgres://a,b"),
            ["postgres://a", "postgres://b"]
        );
    }

    fn addresses(h: &Hosts) -> Vec<(String, u16)> {
        h.options
            .iter()
            .map(|o| (o.get_host().to_owned(), o.get_port()))
            .collect()
    }

    #[test]
    fn hosts_come_from_the_dsn_or_the_list_with_the_dsn_s_target() {
        let s = ServerSettings::from_dsn(
            "postgres://u@a:5432,b:5433/db?target_session_attrs=primary&load_balance_hosts=random",
        );
        let h = hosts_of(&s).unwrap();
        let at = addresses(&h);
        assert_eq!(at, [("a".into(), 5432), ("b".into(), 5433)]);
        assert_eq!(h.target, TargetSessionAttrs::Primary);
        assert_eq!(h.order, LoadBalanceHosts::Random);

        let mut s = ServerSettings::new("ignored");
        s.hosts = vec![("x".into(), Some(6000)), ("y".into(), None)];
        s.target_session_attrs = TargetSessionAttrs::ReadWrite;
        let h = hosts_of(&s).unwrap();
        let at = addresses(&h);
        assert_eq!(at, [("x".into(), 6000), ("y".into(), 5432)]);
        assert_eq!(h.target, TargetSessionAttrs::ReadWrite);

        let bad = ServerSettings::from_dsn("postgres://a,b/db?target_session_attrs=leader");
        assert!(
            hosts_of(&bad)
                .unwrap_err()
                .to_string()
                .contains("target_session_attrs")
        );
    }
}
