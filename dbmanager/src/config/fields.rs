//! Every configuration field, declared once. The validator reads values by this table
//! (type, bounds, where the field may sit) through typed keys, inheritance and defaults
//! come from it, replicas take or refuse fields by it, unknown fields and spellings are
//! matched against it for suggestions, a reload reports the fields it finds changed by it,
//! and docs/configuration.md's field tables are generated from it ([`reference`]; a test
//! keeps the two equal).
//!
//! Adding a setting: one row here, plus the [`ConnectionConfig`] field it fills and the
//! line of the validator that fills it (the row's `same` expression reads it back).

use super::{ConnectionConfig, DefaultOrm, Fallback, LoadBalancing, OnUnavailable, Startup};
use dbmanager_providers::settings::{
    Endpoint, LoadBalanceHosts, ServerSettings, SqliteSettings, SslMode, TargetSessionAttrs,
};
use dbmanager_providers::{ExposeSecret, SecretString};
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::time::Duration;

/// A value read as its field's type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Count(u32),
    Duration(Duration),
    OptDuration(Option<Duration>),
    Bool(bool),
    Text(String),
    Map(BTreeMap<String, String>),
    Hosts(Vec<(String, Option<u16>)>),
}

/// Where a field may sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Top level only.
    Top,
    /// Top level (a default for every connection) or per connection.
    Both,
    /// Per connection only.
    Connection,
    /// In an entry of a connection's `replicas` list only.
    Replica,
}

/// What a replica (an entry of `replicas`) does with a connection's field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ForReplica {
    /// Inherits the connection's value and cannot set its own.
    Inherit,
    /// Part of the address: may set its own, else inherits the connection's unless it
    /// sets a `dsn` (which replaces the address).
    Address,
    /// Its own (`name`, `dsn`, `weight`): may set it, never inherits it.
    Own,
    /// How long and whether reads wait for it (`acquire_timeout`, `on_unavailable`): may
    /// set its own, else inherits the connection's.
    Override,
    /// A connection's, not a replica's (`replicas`, how reads pick one): neither.
    Skip,
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
    /// A list of `host` or `host:port` (also one comma-separated string).
    Hosts,
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

impl Default {
    /// The default as a read value (`None` when there is none).
    pub(crate) fn val(self) -> Option<Val> {
        Some(match self {
            Default::None => return None,
            Default::Count(n) => Val::Count(n),
            Default::Duration(d) => Val::Duration(d),
            Default::OptDuration(d) => Val::OptDuration(d),
            Default::Bool(b) => Val::Bool(b),
            Default::Choice(c) => Val::Text(c.to_owned()),
        })
    }
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
    /// What a replica does with it.
    pub(crate) replica: ForReplica,
    /// Whether two connection settings agree on it (what a reload reports as changed).
    pub(crate) same: fn(&ConnectionConfig, &ConnectionConfig) -> bool,
}

/// A field's typed key: its name and the type its value reads as.
pub(crate) struct Key<T> {
    pub(crate) name: &'static str,
    _t: PhantomData<fn() -> T>,
}

impl<T> Key<T> {
    const fn new(name: &'static str) -> Self {
        Key {
            name,
            _t: PhantomData,
        }
    }
}

impl<T: FromVal + std::default::Default> Key<T> {
    /// The value `found` in the file, else the field's default, else none (`T`'s empty
    /// value: `None`, an empty map).
    pub(crate) fn read(self, found: Option<&Val>) -> T {
        let default = || field(self.name).and_then(|f| f.default.val());
        found
            .and_then(T::from_val)
            .or_else(|| default().and_then(|v| T::from_val(&v)))
            .unwrap_or_default()
    }
}

impl<T> Clone for Key<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Key<T> {}

/// A Rust type a field's value reads as.
pub(crate) trait FromVal: Sized {
    /// The value, if `v` is of this type.
    fn from_val(v: &Val) -> Option<Self>;
    /// Whether a field of type `ty` reads as this type (the table's test asks it of
    /// every key).
    #[cfg_attr(not(test), allow(dead_code))]
    fn accepts(ty: &Ty) -> bool;
}

macro_rules! from_val {
    ($($t:ty: $pat:pat => $out:expr, ($accepts:pat);)*) => {$(
        impl FromVal for $t {
            fn from_val(v: &Val) -> Option<Self> {
                #[allow(unreachable_patterns)]
                match v {
                    $pat => Some($out),
                    _ => None,
                }
            }
            fn accepts(ty: &Ty) -> bool {
                matches!(ty, $accepts)
            }
        }
    )*};
}

from_val! {
    (): _ => (), (Ty::Special);
    u32: Val::Count(n) => *n, (Ty::Count { .. });
    Option<u32>: Val::Count(n) => Some(*n), (Ty::Count { .. });
    Option<u16>: Val::Count(n) => u16::try_from(*n).ok(), (Ty::Port);
    bool: Val::Bool(b) => *b, (Ty::Bool);
    Duration: Val::Duration(d) => *d, (Ty::Duration(_));
    Option<Duration>: Val::OptDuration(d) => *d, (Ty::OptDuration(_));
    Option<String>: Val::Text(s) => Some(s.clone()), (Ty::Text | Ty::Secret | Ty::Choice { .. });
    BTreeMap<String, String>: Val::Map(m) => m.clone(), (Ty::Map);
    Vec<(String, Option<u16>)>: Val::Hosts(h) => h.clone(), (Ty::Hosts);
}

/// A setting with a fixed set of values: its YAML spellings are the field's `Ty::Choice`
/// table, whose canonical names are the values' [`as_str`](Choice::as_str).
pub(crate) trait Choice: Copy + 'static {
    /// Every value.
    const ALL: &'static [Self];
    /// The canonical spelling.
    fn as_str(self) -> &'static str;
}

fn choice<C: Choice>(v: &Val) -> Option<C> {
    match v {
        Val::Text(s) => C::ALL.iter().copied().find(|c| c.as_str() == s),
        _ => None,
    }
}

/// Whether every canonical name of a choice table is one of `C`'s values.
#[cfg_attr(not(test), allow(dead_code))]
fn choice_accepts<C: Choice>(ty: &Ty) -> bool {
    match ty {
        Ty::Choice { options, .. } => options
            .iter()
            .all(|(_, canonical)| C::ALL.iter().any(|c| c.as_str() == *canonical)),
        _ => false,
    }
}

macro_rules! choices {
    ($($t:ty),*) => {$(
        impl FromVal for $t {
            fn from_val(v: &Val) -> Option<Self> {
                choice(v)
            }
            fn accepts(ty: &Ty) -> bool {
                choice_accepts::<$t>(ty)
            }
        }
        impl FromVal for Option<$t> {
            fn from_val(v: &Val) -> Option<Self> {
                choice(v).map(Some)
            }
            fn accepts(ty: &Ty) -> bool {
                choice_accepts::<$t>(ty)
            }
        }
    )*};
}

choices!(
    Startup,
    OnUnavailable,
    LoadBalancing,
    Fallback,
    DefaultOrm,
    SslMode,
    TargetSessionAttrs,
    LoadBalanceHosts
);

impl Choice for SslMode {
    const ALL: &'static [Self] = SslMode::ALL;
    fn as_str(self) -> &'static str {
        SslMode::as_str(self)
    }
}

impl Choice for TargetSessionAttrs {
    const ALL: &'static [Self] = TargetSessionAttrs::ALL;
    fn as_str(self) -> &'static str {
        TargetSessionAttrs::as_str(self)
    }
}

impl Choice for LoadBalanceHosts {
    const ALL: &'static [Self] = LoadBalanceHosts::ALL;
    fn as_str(self) -> &'static str {
        LoadBalanceHosts::as_str(self)
    }
}

fn server(c: &ConnectionConfig) -> Option<&ServerSettings> {
    c.endpoint.server()
}

fn secret(s: &Option<SecretString>) -> Option<&str> {
    s.as_ref().map(|s| s.expose_secret())
}

fn file(c: &ConnectionConfig) -> Option<&SqliteSettings> {
    match &c.endpoint {
        Endpoint::Sqlite(s) => Some(s),
        _ => None,
    }
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The field table: one declaration per field gives its row (type, scope, engines, how a
/// replica treats it, default, docs), its typed key (`key::<field>`, whose value type the
/// table's test checks against the row's type), and how a reload compares it (`same`: the
/// expression that reads the field's setting back out of a [`ConnectionConfig`]).
macro_rules! fields {
    ($( $key:ident : $t:ty = ($name:literal, $scope:ident, $group:ident, $replica:ident, $ty:expr, $default:expr, $new:literal, $ty_doc:literal, $default_doc:literal, $doc:literal) same |$c:ident| $get:expr; )*) => {
        /// Every field, in the docs' order.
        pub(crate) const FIELDS: &[Field] = &[$(
            Field {
                name: $name,
                scope: Scope::$scope,
                group: Group::$group,
                replica: ForReplica::$replica,
                ty: $ty,
                default: $default,
                new: $new,
                ty_doc: $ty_doc,
                default_doc: $default_doc,
                doc: $doc,
                same: |a: &ConnectionConfig, b: &ConnectionConfig| {
                    #[allow(clippy::unused_unit, unused_variables)]
                    let x = { let $c = a; $get };
                    #[allow(clippy::unused_unit, unused_variables)]
                    let y = { let $c = b; $get };
                    x == y
                },
            },
        )*];

        /// Each field's typed key: `key::max_open_conns` reads as a `u32`. A misspelt name
        /// does not compile.
        #[allow(non_upper_case_globals, dead_code)]
        pub(crate) mod key {
            use super::*;
            $( pub(crate) const $key: Key<$t> = Key::new($name); )*
        }

        #[cfg(test)]
        #[test]
        fn every_key_reads_as_its_fields_type() {
            $(
                let f = field($name).expect($name);
                assert!(<$t as FromVal>::accepts(&f.ty), "{}: {} cannot hold {:?}", $name, stringify!($t), f.ty);
                if let Some(v) = f.default.val() {
                    assert!(<$t as FromVal>::from_val(&v).is_some(), "{}: the default {v:?} does not read as {}", $name, stringify!($t));
                }
            )*
        }
    };
}

fields! {
    default_connection: Option<String> = ("default_connection", Top, All, Inherit, Ty::Text, Default::None, false, "string", "the only connection, if there is one", "returned by `Manager::default()`; must be one of `connections`") same |c| ();
    monitor_interval: Option<Duration> = ("monitor_interval", Top, All, Inherit, Ty::OptDuration(within(ms(100), secs(DAY))), Default::OptDuration(None), true, "duration, optional", "none", "log every connection's pool statistics through `tracing` at this interval (a connection monitor); `none`: off") same |c| ();
    keyed: () = ("keyed", Top, All, Inherit, Ty::Special, Default::None, true, "mapping group → {template, idle_evict_after, max_keys, keys}", "none", "groups of connections created on first use per key (a tenant, a device) from `template` plus per-key overrides: see [scaling.md](scaling.md#keyed-pools)") same |c| ();
    connections: () = ("connections", Top, All, Inherit, Ty::Special, Default::None, false, "mapping name → connection", "(required, non-empty)", "the named connections") same |c| ();
    max_open_conns: u32 = ("max_open_conns", Both, All, Inherit, Ty::Count { min: 1 }, Default::Count(25), false, "integer ≥ 1", "25", "hard cap on connections this pool opens to the server") same |c| c.pool.max_open;
    max_idle_conns: u32 = ("max_idle_conns", Both, All, Inherit, Ty::Count { min: 1 }, Default::Count(5), false, "integer ≥ 1, ≤ `max_open_conns`", "min(5, `max_open_conns`)", "idle connections kept; a released connection beyond this closes") same |c| c.pool.max_idle;
    min_idle_conns: u32 = ("min_idle_conns", Both, All, Inherit, Ty::Count { min: 0 }, Default::Count(0), true, "integer ≥ 0, ≤ `max_idle_conns` (MongoDB: ≤ `max_open_conns`)", "0", "opened at start and kept open (pool warming), counted as a minimum pool size (idle or in use). After a refill fails to connect, refills wait until a connect succeeds (the supervisor's, on its backoff)") same |c| c.pool.min_idle;
    conn_max_lifetime: Option<Duration> = ("conn_max_lifetime", Both, All, Inherit, Ty::OptDuration(AGE), Default::OptDuration(Some(secs(30 * 60))), false, "duration, optional, ≥ `conn_max_idle_time`", "30m", "a connection older than this closes at its next acquire or release") same |c| c.pool.max_lifetime;
    conn_max_lifetime_jitter: Option<Duration> = ("conn_max_lifetime_jitter", Both, All, Inherit, Ty::OptDuration(within(ms(0), secs(30 * DAY))), Default::OptDuration(None), true, "duration, optional, ≤ `conn_max_lifetime`", "a tenth of `conn_max_lifetime`", "each connection's lifetime is `conn_max_lifetime` less a random share of this, drawn when it opens, so connections opened together (at start, after an outage) are not all replaced together; `0s` or `none`: off") same |c| c.pool.max_lifetime_jitter;
    conn_max_idle_time: Option<Duration> = ("conn_max_idle_time", Both, All, Inherit, Ty::OptDuration(AGE), Default::OptDuration(Some(secs(5 * 60))), false, "duration, optional", "5m", "an idle connection older than this closes (background reaper, and on acquire)") same |c| c.pool.max_idle_time;
    acquire_timeout: Duration = ("acquire_timeout", Both, All, Override, Ty::Duration(WAIT), Default::Duration(secs(30)), true, "duration > 0", "30s", "how long `acquire` waits for a free connection before `Error::AcquireTimeout`") same |c| c.pool.acquire_timeout;
    connect_timeout: Duration = ("connect_timeout", Both, All, Inherit, Ty::Duration(within(ms(10), secs(10 * 60))), Default::Duration(secs(10)), false, "duration > 0", "10s", "bound on connection attempts the manager makes itself (`startup: strict`). Connections the pool opens on demand are bounded by `acquire_timeout`: sqlx has no separate connect timeout") same |c| c.pool.connect_timeout;
    query_timeout: Option<Duration> = ("query_timeout", Both, All, Inherit, Ty::OptDuration(within(ms(1), secs(DAY))), Default::OptDuration(None), false, "duration, optional", "none", "server-side statement timeout: PostgreSQL `statement_timeout`; MariaDB `max_statement_time`, MySQL `max_execution_time` (SELECT only); SQL Server: tiberius's client-side command timeout. Rejected for SQLite and MongoDB") same |c| server(c).map(|s| s.query_timeout);
    ping_idle_after: Option<Duration> = ("ping_idle_after", Both, All, Inherit, Ty::OptDuration(within(ms(1), secs(DAY))), Default::OptDuration(Some(secs(30))), true, "duration, optional", "30s", "ping a connection before handing it out if it sat idle this long; `none`: never") same |c| c.pool.ping_idle_after;
    startup: Startup = ("startup", Both, All, Inherit, Ty::Choice { what: "startup mode", options: &[("strict", "strict"), ("lazy", "lazy")] }, Default::Choice("strict"), true, "`strict` \\| `lazy`", "`strict`", "strict: `connect()` fails naming the connection if it cannot connect; lazy: `connect()` builds the pool without connecting and the supervisor brings it up in the background with the reconnect backoff") same |c| c.startup;
    leak_detection_threshold: Option<Duration> = ("leak_detection_threshold", Both, All, Inherit, Ty::OptDuration(within(ms(1), secs(DAY))), Default::OptDuration(None), true, "duration, optional", "none (off)", "a checkout (`acquire`, `begin`, on the `Db` handle too) held longer than this logs one WARN naming the connection and the line that checked it out, and counts in `dbmanager_leaks_suspected_total`; diesel, MongoDB and SQL Server checkouts are not watched") same |c| c.leak_detection_threshold;
    close_timeout: Duration = ("close_timeout", Both, All, Inherit, Ty::Duration(WAIT), Default::Duration(secs(30)), true, "duration > 0", "30s", "how long `close()` lets in-flight work finish") same |c| c.close_timeout;
    retry_attempts: u32 = ("retry_attempts", Both, All, Inherit, Ty::Count { min: 1 }, Default::Count(3), false, "integer ≥ 1", "3", "reconnect attempts per round; also the tries `Connection::retry` makes in all") same |c| c.retry.attempts;
    retry_delay: Duration = ("retry_delay", Both, All, Inherit, Ty::Duration(within(ms(10), secs(HOUR))), Default::Duration(secs(1)), false, "duration > 0, ≤ `retry_max_delay`", "1s", "first reconnect delay; doubles each attempt of the first round (jittered to between half and all of it)") same |c| c.retry.delay;
    retry_max_delay: Duration = ("retry_max_delay", Both, All, Inherit, Ty::Duration(within(ms(100), secs(HOUR))), Default::Duration(secs(10)), false, "duration > 0", "10s", "longest reconnect delay; rounds after the first run at it; authentication and configuration errors are retried only this often") same |c| c.retry.max_delay;
    health_check_interval: Duration = ("health_check_interval", Both, All, Inherit, Ty::Duration(within(ms(100), secs(DAY))), Default::Duration(secs(30)), false, "duration > 0", "30s", "period of the supervisor's health check (one real round trip) while healthy") same |c| c.health_check_interval;
    health_check_timeout: Duration = ("health_check_timeout", Both, All, Inherit, Ty::Duration(within(ms(10), secs(10 * 60))), Default::Duration(secs(5)), true, "duration > 0", "5s", "bound on one health check; a check that does not answer counts as a lost connection") same |c| c.health_check_timeout;
    enable_auto_reconnect: bool = ("enable_auto_reconnect", Both, All, Inherit, Ty::Bool, Default::Bool(true), false, "bool", "true", "after a failure, probe with the backoff above; `false`: probe only every `health_check_interval`") same |c| c.enable_auto_reconnect;
    failure_threshold: u32 = ("failure_threshold", Both, All, Inherit, Ty::Count { min: 1 }, Default::Count(1), true, "integer ≥ 1", "1", "failed health checks in a row that mark the connection unhealthy (an authentication or configuration error does at once)") same |c| c.failure_threshold;
    on_unavailable: OnUnavailable = ("on_unavailable", Both, All, Override, Ty::Choice { what: "outage policy", options: &[ ("wait", "wait"), ("fail_fast", "fail_fast"), ("failfast", "fail_fast"), ("fail-fast", "fail_fast") ] }, Default::Choice("wait"), true, "`wait` \\| `fail_fast`", "`wait`", "while the connection is down, an acquire waits for it to come back (up to `acquire_timeout`) or fails at once; both fail with `Error::Unavailable`. See [resilience.md](resilience.md)") same |c| c.on_unavailable;
    drain_timeout: Duration = ("drain_timeout", Both, All, Inherit, Ty::Duration(WAIT), Default::Duration(secs(30)), true, "duration > 0", "30s", "`Connection::reconnect()`: how long the replaced pool may finish its in-flight work before it is closed") same |c| c.drain_timeout;
    enable_logging: bool = ("enable_logging", Both, All, Inherit, Ty::Bool, Default::Bool(true), false, "bool", "true", "log this connection's lifecycle events through `tracing` (a subscriber of its event stream)") same |c| c.enable_logging;
    required: bool = ("required", Both, All, Inherit, Ty::Bool, Default::Bool(true), true, "bool", "true", "the service needs this connection: `/readyz` (feature `http`) answers 503 while a required connection is not healthy") same |c| c.required;
    enable_metrics: bool = ("enable_metrics", Both, All, Inherit, Ty::Bool, Default::Bool(true), false, "bool", "true", "include the connection in `Manager::register_metrics` (feature `metrics`; see [metrics.md](metrics.md))") same |c| c.enable_metrics;
    enable_tracing: bool = ("enable_tracing", Both, All, Inherit, Ty::Bool, Default::Bool(false), false, "bool", "false", "make `tracing` spans with OpenTelemetry attribute names for what the manager does (connect, acquire, health check, reconnect attempt, clear, swap, drain, begin, retry): see [tracing.md](tracing.md)") same |c| c.enable_tracing;
    default_orm: DefaultOrm = ("default_orm", Both, All, Inherit, Ty::Choice { what: "ORM", options: &[ ("sqlx", "sqlx"), ("native", "sqlx"), ("sea_orm", "sea_orm"), ("seaorm", "sea_orm"), ("sea-orm", "sea_orm"), ("diesel", "diesel") ] }, Default::Choice("sqlx"), false, "`sqlx` (alias `native`) \\| `sea_orm` \\| `diesel`", "`sqlx`", "the view created at connect (the others on first use); with `diesel` the diesel pool also carries the health checks and gets all but one connection. Only `sqlx` on engines without the views. See [views.md](views.md)") same |c| c.default_orm;
    application_name: Option<String> = ("application_name", Both, All, Inherit, Ty::Text, Default::None, true, "string", "none", "PostgreSQL `application_name` (visible in `pg_stat_activity`). Rejected per connection for MySQL (sqlx's MySQL driver sends no connection attributes) and SQLite; a top-level value is not applied to them") same |c| &c.application_name;
    kind: () = ("type", Connection, All, Inherit, Ty::Special, Default::None, false, "see below", "all", "required") same |c| c.kind;
    name: Option<String> = ("name", Connection, All, Own, Ty::Text, Default::None, false, "string", "all", "optional; must equal the key") same |c| &c.name;
    dsn: Option<String> = ("dsn", Connection, Server, Own, Ty::Secret, Default::None, false, "string (secret)", "server engines", "a complete URL; parsed by the driver. When set, `host`, `port`, `user`, `password`, `database`, `sslmode` are ignored (with a warning if present); session settings (`application_name`, `schema`, `query_timeout`) still apply") same |c| server(c).map(|s| secret(&s.dsn));
    host: Option<String> = ("host", Connection, Server, Address, Ty::Text, Default::None, false, "string", "server engines", "required without `dsn`") same |c| server(c).map(|s| &s.host);
    port: Option<u16> = ("port", Connection, Server, Address, Ty::Port, Default::None, false, "1–65535", "server engines", "engine default (5432, 3306, 1433, 27017)") same |c| server(c).map(|s| s.port);
    hosts: Vec<(String, Option<u16>)> = ("hosts", Connection, Extra, Address, Ty::Hosts, Default::None, true, "list of `host` or `host:port` (or one comma-separated string)", "postgres, mysql", "several servers of one connection (a primary and its standbys), tried in order for every new session, instead of `host`/`port`; on PostgreSQL a multi-host `dsn` (`postgres://u@a:5432,b:5433/db`) does the same (MySQL/MariaDB: `hosts` only; the port defaults to 3306; not the diesel view). See [scaling.md](scaling.md#high-availability)") same |c| server(c).map(|s| &s.hosts);
    target_session_attrs: TargetSessionAttrs = ("target_session_attrs", Connection, Extra, Own, Ty::Choice { what: "target_session_attrs", options: TargetSessionAttrs::SPELLINGS }, Default::Choice("any"), true, "`any` `read-write` `read-only` `primary` `standby` `prefer-standby`", "postgres, mysql", "libpq's: which server a new session may use, checked with `pg_is_in_recovery()` (MySQL/MariaDB: `@@global.read_only`) on every new connection and every health check; one to the wrong kind is closed and the next host tried. A DSN's `?target_session_attrs=` wins. A replica does not inherit it (it would refuse the standby it points at)") same |c| server(c).map(|s| s.target_session_attrs);
    load_balance_hosts: LoadBalanceHosts = ("load_balance_hosts", Connection, Extra, Address, Ty::Choice { what: "load_balance_hosts", options: LoadBalanceHosts::SPELLINGS }, Default::Choice("disable"), true, "`disable` \\| `random`", "postgres, mysql", "libpq's: `random` shuffles the hosts once per pool, so that processes spread over them") same |c| server(c).map(|s| s.load_balance_hosts);
    user: Option<String> = ("user", Connection, Server, Address, Ty::Text, Default::None, false, "string", "server engines", "") same |c| server(c).map(|s| &s.user);
    password: Option<String> = ("password", Connection, Server, Address, Ty::Secret, Default::None, false, "string (secret)", "server engines", "passed to the driver's options builder, never formatted into a URL: any character works. Empty (`\"\"`, or `${VAR:-}` with VAR unset) means no password, on every engine") same |c| server(c).map(|s| secret(&s.password));
    password_file: Option<String> = ("password_file", Connection, Server, Address, Ty::Text, Default::None, true, "path", "postgres, mysql", "a file holding the password (one trailing line break is dropped), instead of `password`: a mounted Kubernetes secret, a file a rotation job rewrites. Looked at (one `stat`) before new connections and every 100 ms; when it changes, new connections log in with its new password, with no reload. Unreadable at start: an error naming the file") same |c| server(c).map(|s| &s.password_file);
    database: Option<String> = ("database", Connection, Server, Address, Ty::Text, Default::None, false, "string", "server engines", "required without `dsn`") same |c| server(c).map(|s| &s.database);
    sslmode: Option<SslMode> = ("sslmode", Connection, Server, Address, Ty::Choice { what: "sslmode", options: SslMode::SPELLINGS }, Default::None, false, "`disable` `allow` `prefer` `require` `verify-ca` `verify-full` `strict` (MySQL names `disabled` `preferred` `required` `verify_ca` `verify_identity` also accepted)", "server engines", "default `prefer`. MySQL: `allow`/`prefer` → PREFERRED, `require` → REQUIRED, `verify-ca` → VERIFY_CA, `verify-full` → VERIFY_IDENTITY. MongoDB and SQL Server mappings: [providers.md](providers.md). `strict` (TDS 8.0) is for mssql only") same |c| server(c).map(|s| s.tls.mode);
    ssl_root_cert: Option<String> = ("ssl_root_cert", Connection, Server, Inherit, Ty::Text, Default::None, true, "path", "server engines", "CA certificate (for `verify-ca`/`verify-full`)") same |c| server(c).map(|s| &s.tls.root_cert);
    ssl_cert: Option<String> = ("ssl_cert", Connection, Server, Inherit, Ty::Text, Default::None, true, "path", "server engines", "client certificate") same |c| server(c).map(|s| &s.tls.client_cert);
    ssl_key: Option<String> = ("ssl_key", Connection, Server, Inherit, Ty::Text, Default::None, true, "path", "server engines", "client key") same |c| server(c).map(|s| &s.tls.client_key);
    schema: Option<String> = ("schema", Connection, Extra, Inherit, Ty::Text, Default::None, false, "string", "postgres", "PostgreSQL `search_path`. Rejected for MySQL (a schema is a database there), SQL Server (a default schema belongs to the user), MongoDB and SQLite") same |c| server(c).map(|s| &s.schema);
    replicas: () = ("replicas", Connection, Extra, Skip, Ty::Special, Default::None, true, "list of {name, host, hosts, port, dsn, user, password, database, sslmode, weight, acquire_timeout, on_unavailable}", "postgres, mysql", "read replicas: each inherits this connection's settings with its own address (`host` or `dsn`), optional `name` (default `replica-<n>`) and `weight` (default 1), and may set its own `acquire_timeout` and `on_unavailable` (how long, and whether, a read waits for a replica that went away, under `fallback: error`); a replica's own `host` replaces the connection's `hosts` and its own `hosts` the connection's `host` and `port`; reached through `Connection::reader()`. See [scaling.md](scaling.md#read-replicas)") same |c| &c.replicas;
    weight: u32 = ("weight", Replica, Extra, Own, Ty::Count { min: 1 }, Default::Count(1), true, "integer ≥ 1", "postgres, mysql", "default 1: the replica's share of reads under `round_robin` and `random`, and the divisor of its in-use count under `least_connections`") same |_c| ();
    load_balancing: LoadBalancing = ("load_balancing", Connection, Extra, Skip, Ty::Choice { what: "load balancing strategy", options: &[("round_robin", "round_robin"), ("round-robin", "round_robin"), ("least_connections", "least_connections"), ("least-connections", "least_connections"), ("random", "random")] }, Default::Choice("round_robin"), true, "`round_robin` \\| `least_connections` \\| `random`", "postgres, mysql", "how `reader()` picks among the healthy replicas (weighted)") same |c| c.load_balancing;
    fallback: Fallback = ("fallback", Connection, Extra, Skip, Ty::Choice { what: "replica fallback", options: &[("primary", "primary"), ("error", "error")] }, Default::Choice("primary"), true, "`primary` \\| `error`", "postgres, mysql", "what `reader()` returns when no replica is healthy and caught up: the connection itself, or `Error::NoReplica`. With `primary`, a checkout on a replica that is down or goes down (one picked before it vanished) is made on the connection at once, without waiting for the replica") same |c| c.fallback;
    max_replica_lag: Option<Duration> = ("max_replica_lag", Connection, Extra, Skip, Ty::OptDuration(within(ms(1), secs(DAY))), Default::OptDuration(None), true, "duration, optional", "postgres, mysql", "a replica further behind than this is skipped until it catches up; checked with every health check (PostgreSQL: time since the last replayed transaction while WAL awaits replay; MariaDB/MySQL: `Seconds_Behind_Master`). `none`: lag is not checked") same |c| c.max_replica_lag;
    pgbouncer: bool = ("pgbouncer", Connection, Extra, Inherit, Ty::Bool, Default::Bool(false), true, "bool", "postgres", "the server is a PgBouncer: statement caches off (sqlx `statement_cache_capacity` 0, diesel's cache disabled), and `schema`/`query_timeout` refused (PgBouncer refuses them at login; set them on the database role). What this makes work in transaction pooling mode, and what no client setting can on PgBouncer before 1.21: [scaling.md](scaling.md#pgbouncer)") same |c| server(c).map(|s| s.pgbouncer);
    filepath: Option<String> = ("filepath", Connection, File, Inherit, Ty::Text, Default::None, false, "path or `:memory:`", "sqlite", "required. A file is created if missing; `:memory:` is one database shared by the pool's connections") same |c| file(c).map(|s| &s.target);
    busy_timeout: Duration = ("busy_timeout", Connection, File, Inherit, Ty::Duration(within(ms(1), secs(HOUR))), Default::Duration(secs(5)), true, "duration", "sqlite", "default 5s: how long a statement waits for another connection's lock") same |c| file(c).map(|s| s.busy_timeout);
    journal_mode: Option<String> = ("journal_mode", Connection, File, Inherit, Ty::Text, Default::None, true, "`delete` `truncate` `persist` `memory` `wal` `off`", "sqlite", "default `wal` for files, `memory` for `:memory:`") same |c| file(c).map(|s| &s.journal_mode);
    synchronous: Option<String> = ("synchronous", Connection, File, Inherit, Ty::Text, Default::None, true, "`off` `normal` `full` `extra`", "sqlite", "default `normal`") same |c| file(c).map(|s| &s.synchronous);
    foreign_keys: bool = ("foreign_keys", Connection, File, Inherit, Ty::Bool, Default::Bool(true), true, "bool", "sqlite", "default true") same |c| file(c).map(|s| s.foreign_keys);
    auth_source: Option<String> = ("auth_source", Connection, Extra, Inherit, Ty::Text, Default::None, false, "string", "mongodb", "the database holding the user's credentials; needs a user") same |c| &c.mongo.auth_source;
    replica_set: Option<String> = ("replica_set", Connection, Extra, Inherit, Ty::Text, Default::None, false, "string", "mongodb", "the replica set's name") same |c| &c.mongo.replica_set;
    read_preference: Option<String> = ("read_preference", Connection, Extra, Inherit, Ty::Choice { what: "read_preference", options: &[ ("primary", "primary"), ("primarypreferred", "primaryPreferred"), ("secondary", "secondary"), ("secondarypreferred", "secondaryPreferred"), ("nearest", "nearest") ] }, Default::None, false, "`primary` `primaryPreferred` `secondary` `secondaryPreferred` `nearest`", "mongodb", "where reads and the health check's `ping` go") same |c| &c.mongo.read_preference;
    diesel_conns: Option<u32> = ("diesel_conns", Connection, SqlViews, Inherit, Ty::Count { min: 0 }, Default::None, true, "integer ≥ 0, < `max_open_conns`", "postgres, mysql, sqlite", "how many of `max_open_conns` the diesel-async view may open; the sqlx pool (sqlx and SeaORM views) gets the rest. Default 0 (diesel view off), or `max_open_conns - 1` with `default_orm: diesel`. See [views.md](views.md)") same |c| c.diesel_conns;
    options: BTreeMap<String, String> = ("options", Connection, Extra, Inherit, Ty::Map, Default::None, true, "mapping string → string", "custom providers", "free-form settings a service's own provider reads (see [adding-an-engine.md](adding-an-engine.md)); not for secrets") same |c| &c.options;
    tags: BTreeMap<String, String> = ("tags", Connection, All, Inherit, Ty::Map, Default::None, false, "mapping string → string", "all", "free-form labels") same |c| &c.tags;
}

/// The field called `name`.
pub(crate) fn field(name: &str) -> Option<&'static Field> {
    FIELDS.iter().find(|f| f.name == name)
}

/// The fields whose settings differ between `a` and `b`, in the table's order (what a
/// reload reports).
pub(crate) fn changed(a: &ConnectionConfig, b: &ConnectionConfig) -> Vec<&'static str> {
    FIELDS
        .iter()
        .filter(|f| !(f.same)(a, b))
        .map(|f| f.name)
        .collect()
}

/// Whether the field called `name` holds a secret (`password`, `dsn`): its value is never
/// quoted in a message or shown by `Debug`.
pub(crate) fn is_secret(name: &str) -> bool {
    field(name).is_some_and(|f| f.ty == Ty::Secret)
}

/// The names of the fields allowed in `scope`'s place (`Both` fields are allowed in both).
pub(crate) fn names_in(top: bool) -> Vec<&'static str> {
    FIELDS
        .iter()
        .filter(|f| match f.scope {
            Scope::Both => true,
            Scope::Top => top,
            Scope::Connection => !top,
            Scope::Replica => false,
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
        ("Per replica only", Scope::Replica, "engines"),
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

#[cfg(test)]
mod tests {
    use super::changed;
    use crate::config::ConnectionConfig;

    fn conn(yaml: &str) -> ConnectionConfig {
        crate::config::Config::loader()
            .env(Vec::<(String, String)>::new())
            .load_connection("c", yaml)
            .unwrap()
    }

    /// A reload names exactly the field that changed, whichever part of the settings
    /// holds it (the pool, the endpoint, the TLS settings, the replicas' policy...).
    #[test]
    fn a_changed_field_is_reported_by_its_own_name() {
        let pg = "type: postgres\nhost: a\ndatabase: d\npassword: p1\n";
        let base = conn(pg);
        for (extra, field) in [
            ("host: b\n", "host"),
            ("password: p2\n", "password"),
            ("sslmode: verify_full\n", "sslmode"),
            ("load_balancing: random\n", "load_balancing"),
            ("retry_delay: 2s\n", "retry_delay"),
            ("on_unavailable: fail-fast\n", "on_unavailable"),
            ("max_open_conns: 30\n", "max_open_conns"),
            ("query_timeout: 3s\n", "query_timeout"),
            ("tags: {team: x}\n", "tags"),
            ("enable_tracing: true\n", "enable_tracing"),
        ] {
            // A later key of the same name replaces the earlier one.
            let yaml = pg
                .lines()
                .filter(|l| !l.starts_with(&extra[..extra.find(':').unwrap() + 1]))
                .map(|l| format!("{l}\n"))
                .collect::<String>()
                + extra;
            assert_eq!(changed(&base, &conn(&yaml)), [field], "{extra}");
        }
        let lite = conn("type: sqlite\nfilepath: ':memory:'\n");
        let slow = conn("type: sqlite\nfilepath: ':memory:'\nbusy_timeout: 9s\n");
        assert_eq!(changed(&lite, &slow), ["busy_timeout"]);
        assert!(changed(&base, &conn(pg)).is_empty());
    }
}
