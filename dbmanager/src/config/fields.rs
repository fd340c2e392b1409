//! Every configuration field, declared once. The validator reads values by this table
//! (type, bounds, where the field may sit), inheritance and defaults come from it, unknown
//! fields are matched against it for suggestions, and docs/configuration.md's field tables
//! are generated from it ([`reference`]; a test keeps the two equal).

use std::time::Duration;

/// Where a field may sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Top level only.
    Top,
    /// Top level (a default for every connection) or per connection.
    Both,
    /// Per connection only.
    Connection,
}

/// Which engines read a per-connection field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    /// Every engine.
    All,
    /// Engines with a server endpoint.
    Server,
    /// Engines with a file endpoint (SQLite).
    File,
    /// Engines whose provider lists it in `Rules::extra`.
    Extra,
    /// Engines that serve the ORM views.
    SqlViews,
}

/// A field's type, and how its value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    /// A whole number from `min` to 100000.
    Count { min: u32 },
    /// A duration within bounds.
    Duration(Bounds),
    /// A duration within bounds, or `0`/`none`/`off` for no limit.
    OptDuration(Bounds),
    /// `true`/`false` (also yes/no, on/off, 1/0).
    Bool,
    /// A non-empty string.
    Text,
    /// A secret string: may be empty, never quoted in a message.
    Secret,
    /// A TCP port.
    Port,
    /// One of a set of spellings, each mapped to a canonical value.
    Choice {
        what: &'static str,
        options: &'static [(&'static str, &'static str)],
    },
    /// A mapping of strings to strings.
    Map,
    /// Anything (`type`, `connections`: read by the validator itself).
    Special,
}

/// The range a duration must fall in. Every duration has an upper bound (no deadline the
/// manager computes can overflow) and, where a tiny value is harmful (a probe loop against
/// a down server), a lower one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub(crate) min: Duration,
    pub(crate) max: Duration,
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

const fn within(min: Duration, max: Duration) -> Bounds {
    Bounds { min, max }
}

/// A timeout or wait: 1 ms to 1 day.
const WAIT: Bounds = within(ms(1), secs(DAY));
/// A connection's age or idle time: 1 s to 30 days.
const AGE: Bounds = within(secs(1), secs(30 * DAY));

/// A field's built-in default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Default {
    /// None (the field is optional, or required).
    None,
    Count(u32),
    Duration(Duration),
    OptDuration(Option<Duration>),
    Bool(bool),
    Choice(&'static str),
}

/// One field.
#[derive(Debug)]
pub(crate) struct Field {
    pub(crate) name: &'static str,
    pub(crate) scope: Scope,
    pub(crate) group: Group,
    pub(crate) ty: Ty,
    pub(crate) default: Default,
    /// Marked *new* in the docs: not in ResolveSpec's Go `dbmanager`.
    pub(crate) new: bool,
    /// The docs' type column.
    pub(crate) ty_doc: &'static str,
    /// The docs' default (or, per connection, engines) column.
    pub(crate) default_doc: &'static str,
    /// The docs' meaning column.
    pub(crate) doc: &'static str,
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

macro_rules! field {
    ($name:literal, $scope:ident, $group:ident, $ty:expr, $default:expr, $new:literal, $ty_doc:literal, $default_doc:literal, $doc:literal) => {
        Field {
            name: $name,
            scope: Scope::$scope,
            group: Group::$group,
            ty: $ty,
            default: $default,
            new: $new,
            ty_doc: $ty_doc,
            default_doc: $default_doc,
            doc: $doc,
        }
    };
}

/// Every field, in the docs' order.
#[rustfmt::skip]
pub(crate) const FIELDS: &[Field] = &[
    field!("default_connection", Top, All, Ty::Text, Default::None, false, "string", "the only connection, if there is one", "returned by `Manager::default()`; must be one of `connections`"),
    field!("monitor_interval", Top, All, Ty::OptDuration(within(ms(100), secs(DAY))), Default::OptDuration(None), true, "duration, optional", "none", "log every connection's pool statistics through `tracing` at this interval (a connection monitor); `none`: off"),
    field!("keyed", Top, All, Ty::Special, Default::None, true, "mapping group → {template, idle_evict_after, max_keys, keys}", "none", "groups of connections created on first use per key (a tenant, a device) from `template` plus per-key overrides: see [scaling.md](scaling.md#keyed-pools)"),
    field!("connections", Top, All, Ty::Special, Default::None, false, "mapping name → connection", "(required, non-empty)", "the named connections"),
    field!("max_open_conns", Both, All, Ty::Count { min: 1 }, Default::Count(25), false, "integer ≥ 1", "25", "hard cap on connections this pool opens to the server"),
    field!("max_idle_conns", Both, All, Ty::Count { min: 1 }, Default::Count(5), false, "integer ≥ 1, ≤ `max_open_conns`", "min(5, `max_open_conns`)", "idle connections kept; a released connection beyond this closes"),
    field!("min_idle_conns", Both, All, Ty::Count { min: 0 }, Default::Count(0), true, "integer ≥ 0, ≤ `max_idle_conns` (MongoDB: ≤ `max_open_conns`)", "0", "opened at start and kept open (pool warming), counted as a minimum pool size (idle or in use). After a refill fails to connect, refills wait until a connect succeeds (the supervisor's, on its backoff)"),
    field!("conn_max_lifetime", Both, All, Ty::OptDuration(AGE), Default::OptDuration(Some(secs(30 * 60))), false, "duration, optional, ≥ `conn_max_idle_time`", "30m", "a connection older than this closes at its next acquire or release"),
    field!("conn_max_idle_time", Both, All, Ty::OptDuration(AGE), Default::OptDuration(Some(secs(5 * 60))), false, "duration, optional", "5m", "an idle connection older than this closes (background reaper, and on acquire)"),
    field!("acquire_timeout", Both, All, Ty::Duration(WAIT), Default::Duration(secs(30)), true, "duration > 0", "30s", "how long `acquire` waits for a free connection before `Error::AcquireTimeout`"),
    field!("connect_timeout", Both, All, Ty::Duration(within(ms(10), secs(10 * 60))), Default::Duration(secs(10)), false, "duration > 0", "10s", "bound on connection attempts the manager makes itself (`startup: strict`). Connections the pool opens on demand are bounded by `acquire_timeout`: sqlx has no separate connect timeout"),
    field!("query_timeout", Both, All, Ty::OptDuration(within(ms(1), secs(DAY))), Default::OptDuration(None), false, "duration, optional", "none", "server-side statement timeout: PostgreSQL `statement_timeout`; MariaDB `max_statement_time`, MySQL `max_execution_time` (SELECT only); SQL Server: tiberius's client-side command timeout. Rejected for SQLite and MongoDB"),
    field!("ping_idle_after", Both, All, Ty::OptDuration(within(ms(1), secs(DAY))), Default::OptDuration(Some(secs(30))), true, "duration, optional", "30s", "ping a connection before handing it out if it sat idle this long; `none`: never"),
    field!("startup", Both, All, Ty::Choice { what: "startup mode", options: &[("strict", "strict"), ("lazy", "lazy")] }, Default::Choice("strict"), true, "`strict` \\| `lazy`", "`strict`", "strict: `connect()` fails naming the connection if it cannot connect; lazy: `connect()` builds the pool without connecting and the supervisor brings it up in the background with the reconnect backoff"),
    field!("close_timeout", Both, All, Ty::Duration(WAIT), Default::Duration(secs(30)), true, "duration > 0", "30s", "how long `close()` lets in-flight work finish"),
    field!("retry_attempts", Both, All, Ty::Count { min: 1 }, Default::Count(3), false, "integer ≥ 1", "3", "reconnect attempts per round; also the tries `Connection::retry` makes in all"),
    field!("retry_delay", Both, All, Ty::Duration(within(ms(10), secs(HOUR))), Default::Duration(secs(1)), false, "duration > 0, ≤ `retry_max_delay`", "1s", "first reconnect delay; doubles each attempt of the first round (jittered to between half and all of it)"),
    field!("retry_max_delay", Both, All, Ty::Duration(within(ms(100), secs(HOUR))), Default::Duration(secs(10)), false, "duration > 0", "10s", "longest reconnect delay; rounds after the first run at it; authentication and configuration errors are retried only this often"),
    field!("health_check_interval", Both, All, Ty::Duration(within(ms(100), secs(DAY))), Default::Duration(secs(30)), false, "duration > 0", "30s", "period of the supervisor's health check (one real round trip) while healthy"),
    field!("health_check_timeout", Both, All, Ty::Duration(within(ms(10), secs(10 * 60))), Default::Duration(secs(5)), true, "duration > 0", "5s", "bound on one health check; a check that does not answer counts as a lost connection"),
    field!("enable_auto_reconnect", Both, All, Ty::Bool, Default::Bool(true), false, "bool", "true", "after a failure, probe with the backoff above; `false`: probe only every `health_check_interval`"),
    field!("failure_threshold", Both, All, Ty::Count { min: 1 }, Default::Count(1), true, "integer ≥ 1", "1", "failed health checks in a row that mark the connection unhealthy (an authentication or configuration error does at once)"),
    field!("on_unavailable", Both, All, Ty::Choice { what: "outage policy", options: &[ ("wait", "wait"), ("fail_fast", "fail_fast"), ("failfast", "fail_fast"), ("fail-fast", "fail_fast") ] }, Default::Choice("wait"), true, "`wait` \\| `fail_fast`", "`wait`", "while the connection is down, an acquire waits for it to come back (up to `acquire_timeout`) or fails at once; both fail with `Error::Unavailable`. See [resilience.md](resilience.md)"),
    field!("drain_timeout", Both, All, Ty::Duration(WAIT), Default::Duration(secs(30)), true, "duration > 0", "30s", "`Connection::reconnect()`: how long the replaced pool may finish its in-flight work before it is closed"),
    field!("enable_logging", Both, All, Ty::Bool, Default::Bool(true), false, "bool", "true", "log this connection's lifecycle events through `tracing` (a subscriber of its event stream)"),
    field!("required", Both, All, Ty::Bool, Default::Bool(true), true, "bool", "true", "the service needs this connection: `/readyz` (feature `http`) answers 503 while a required connection is not healthy"),
    field!("enable_metrics", Both, All, Ty::Bool, Default::Bool(true), false, "bool", "true", "include the connection in `Manager::register_metrics` (feature `metrics`; see [metrics.md](metrics.md))"),
    field!("enable_tracing", Both, All, Ty::Bool, Default::Bool(false), false, "bool", "false", "make `tracing` spans with OpenTelemetry attribute names for what the manager does (connect, acquire, health check, reconnect attempt, clear, swap, drain, begin, retry): see [tracing.md](tracing.md)"),
    field!("default_orm", Both, All, Ty::Choice { what: "ORM", options: &[ ("sqlx", "sqlx"), ("native", "sqlx"), ("sea_orm", "sea_orm"), ("seaorm", "sea_orm"), ("sea-orm", "sea_orm"), ("diesel", "diesel") ] }, Default::Choice("sqlx"), false, "`sqlx` (alias `native`) \\| `sea_orm` \\| `diesel`", "`sqlx`", "the view created at connect (the others on first use); with `diesel` the diesel pool also carries the health checks and gets all but one connection. Only `sqlx` on engines without the views. See [views.md](views.md)"),
    field!("application_name", Both, All, Ty::Text, Default::None, true, "string", "none", "PostgreSQL `application_name` (visible in `pg_stat_activity`). Rejected per connection for MySQL (sqlx's MySQL driver sends no connection attributes) and SQLite; a top-level value is not applied to them, with a warning"),
    field!("type", Connection, All, Ty::Special, Default::None, false, "see below", "all", "required"),
    field!("name", Connection, All, Ty::Text, Default::None, false, "string", "all", "optional; must equal the key"),
    field!("dsn", Connection, Server, Ty::Secret, Default::None, false, "string (secret)", "server engines", "a complete URL; parsed by the driver. When set, `host`, `port`, `user`, `password`, `database`, `sslmode` are ignored (with a warning if present); session settings (`application_name`, `schema`, `query_timeout`) still apply"),
    field!("host", Connection, Server, Ty::Text, Default::None, false, "string", "server engines", "required without `dsn`"),
    field!("port", Connection, Server, Ty::Port, Default::None, false, "1–65535", "server engines", "engine default (5432, 3306, 1433, 27017)"),
    field!("user", Connection, Server, Ty::Text, Default::None, false, "string", "server engines", ""),
    field!("password", Connection, Server, Ty::Secret, Default::None, false, "string (secret)", "server engines", "passed to the driver's options builder, never formatted into a URL: any character works. Empty (`\"\"`, or `${VAR:-}` with VAR unset) means no password, on every engine"),
    field!("database", Connection, Server, Ty::Text, Default::None, false, "string", "server engines", "required without `dsn`"),
    field!("sslmode", Connection, Server, Ty::Text, Default::None, false, "`disable` `allow` `prefer` `require` `verify-ca` `verify-full` `strict` (MySQL names `disabled` `preferred` `required` `verify_ca` `verify_identity` also accepted)", "server engines", "default `prefer`. MySQL: `allow`/`prefer` → PREFERRED, `require` → REQUIRED, `verify-ca` → VERIFY_CA, `verify-full` → VERIFY_IDENTITY. MongoDB and SQL Server mappings: [providers.md](providers.md). `strict` (TDS 8.0) is for mssql only"),
    field!("ssl_root_cert", Connection, Server, Ty::Text, Default::None, true, "path", "server engines", "CA certificate (for `verify-ca`/`verify-full`)"),
    field!("ssl_cert", Connection, Server, Ty::Text, Default::None, true, "path", "server engines", "client certificate"),
    field!("ssl_key", Connection, Server, Ty::Text, Default::None, true, "path", "server engines", "client key"),
    field!("schema", Connection, Extra, Ty::Text, Default::None, false, "string", "postgres", "PostgreSQL `search_path`. Rejected for MySQL (a schema is a database there), SQL Server (a default schema belongs to the user), MongoDB and SQLite"),
    field!("replicas", Connection, Extra, Ty::Special, Default::None, true, "list of {name, host, port, dsn, user, password, database, sslmode, weight}", "postgres, mysql", "read replicas: each inherits this connection's settings with its own address (`host` or `dsn`), optional `name` (default `replica-<n>`) and `weight` (default 1); reached through `Connection::reader()`. See [scaling.md](scaling.md#read-replicas)"),
    field!("load_balancing", Connection, Extra, Ty::Choice { what: "load balancing strategy", options: &[("round_robin", "round_robin"), ("round-robin", "round_robin"), ("least_connections", "least_connections"), ("least-connections", "least_connections"), ("random", "random")] }, Default::Choice("round_robin"), true, "`round_robin` \\| `least_connections` \\| `random`", "postgres, mysql", "how `reader()` picks among the healthy replicas (weighted)"),
    field!("fallback", Connection, Extra, Ty::Choice { what: "replica fallback", options: &[("primary", "primary"), ("error", "error")] }, Default::Choice("primary"), true, "`primary` \\| `error`", "postgres, mysql", "what `reader()` returns when no replica is healthy and caught up: the connection itself, or `Error::NoReplica`"),
    field!("max_replica_lag", Connection, Extra, Ty::OptDuration(within(ms(1), secs(DAY))), Default::OptDuration(None), true, "duration, optional", "postgres, mysql", "a replica further behind than this is skipped until it catches up; checked with every health check (PostgreSQL: time since the last replayed transaction while WAL awaits replay; MariaDB/MySQL: `Seconds_Behind_Master`). `none`: lag is not checked"),
    field!("pgbouncer", Connection, Extra, Ty::Bool, Default::Bool(false), true, "bool", "postgres", "the server is a PgBouncer: statement caches off (sqlx `statement_cache_capacity` 0, diesel's cache disabled), and `schema`/`query_timeout` refused (PgBouncer refuses them at login; set them on the database role). What this makes work in transaction pooling mode, and what no client setting can on PgBouncer before 1.21: [scaling.md](scaling.md#pgbouncer)"),
    field!("filepath", Connection, File, Ty::Text, Default::None, false, "path or `:memory:`", "sqlite", "required. A file is created if missing; `:memory:` is one database shared by the pool's connections"),
    field!("busy_timeout", Connection, File, Ty::Duration(within(ms(1), secs(HOUR))), Default::Duration(secs(5)), true, "duration", "sqlite", "default 5s: how long a statement waits for another connection's lock"),
    field!("journal_mode", Connection, File, Ty::Text, Default::None, true, "`delete` `truncate` `persist` `memory` `wal` `off`", "sqlite", "default `wal` for files, `memory` for `:memory:`"),
    field!("synchronous", Connection, File, Ty::Text, Default::None, true, "`off` `normal` `full` `extra`", "sqlite", "default `normal`"),
    field!("foreign_keys", Connection, File, Ty::Bool, Default::Bool(true), true, "bool", "sqlite", "default true"),
    field!("auth_source", Connection, Extra, Ty::Text, Default::None, false, "string", "mongodb", "the database holding the user's credentials; needs a user"),
    field!("replica_set", Connection, Extra, Ty::Text, Default::None, false, "string", "mongodb", "the replica set's name"),
    field!("read_preference", Connection, Extra, Ty::Choice { what: "read_preference", options: &[ ("primary", "primary"), ("primarypreferred", "primaryPreferred"), ("secondary", "secondary"), ("secondarypreferred", "secondaryPreferred"), ("nearest", "nearest") ] }, Default::None, false, "`primary` `primaryPreferred` `secondary` `secondaryPreferred` `nearest`", "mongodb", "where reads and the health check's `ping` go"),
    field!("diesel_conns", Connection, SqlViews, Ty::Count { min: 0 }, Default::None, true, "integer ≥ 0, < `max_open_conns`", "postgres, mysql, sqlite", "how many of `max_open_conns` the diesel-async view may open; the sqlx pool (sqlx and SeaORM views) gets the rest. Default 0 (diesel view off), or `max_open_conns - 1` with `default_orm: diesel`. See [views.md](views.md)"),
    field!("options", Connection, Extra, Ty::Map, Default::None, true, "mapping string → string", "custom providers", "free-form settings a service's own provider reads (see [adding-an-engine.md](adding-an-engine.md)); not for secrets"),
    field!("tags", Connection, All, Ty::Map, Default::None, false, "mapping string → string", "all", "free-form labels"),
];

/// The field called `name`.
pub(crate) fn field(name: &str) -> Option<&'static Field> {
    FIELDS.iter().find(|f| f.name == name)
}

/// The names of the fields allowed in `scope`'s place (`Both` fields are allowed in both).
pub(crate) fn names_in(top: bool) -> Vec<&'static str> {
    FIELDS
        .iter()
        .filter(|f| match f.scope {
            Scope::Both => true,
            Scope::Top => top,
            Scope::Connection => !top,
        })
        .map(|f| f.name)
        .collect()
}

/// docs/configuration.md's three field tables, generated from the field table.
pub fn reference() -> String {
    let mut out = String::new();
    let row = |f: &Field| {
        let ty_doc = match f.ty {
            Ty::Duration(b) | Ty::OptDuration(b) => format!(
                "{}; {} to {}",
                f.ty_doc,
                humantime::format_duration(b.min),
                humantime::format_duration(b.max)
            ),
            _ => f.ty_doc.to_owned(),
        };
        format!(
            "| `{}`{} | {} | {} | {} |\n",
            f.name,
            if f.new { " *new*" } else { "" },
            ty_doc,
            f.default_doc,
            f.doc
        )
    };
    for (title, scope, col) in [
        ("Top level only", Scope::Top, "default"),
        ("Top level or per connection", Scope::Both, "default"),
        ("Per connection only", Scope::Connection, "engines"),
    ] {
        out.push_str(&format!(
            "## {title}\n\n| field | type | {col} | meaning |\n|---|---|---|---|\n"
        ));
        for f in FIELDS.iter().filter(|f| f.scope == scope) {
            out.push_str(&row(f));
        }
        out.push('\n');
    }
    out
}
