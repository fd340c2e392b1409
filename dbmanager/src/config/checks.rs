//! The per-connection checks of validation: which fields the engine accepts (from its
//! provider's rules), the pool limits and backoff, the endpoint, and the views' budget.

use super::fields::Val;
use super::fields::{self, ForReplica, Group, key};
use super::tree::Node;
use super::validate::{Merged, Validator, inherited};
use super::value::join;
use super::{DbType, DefaultOrm, Endpoint, RetrySettings};
use dbmanager_providers::settings::{PoolSettings, SqliteSettings, SqliteTarget};
use dbmanager_providers::{EndpointKind, Rules};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

type Own<'a> = BTreeMap<&'a str, (&'a Node, String)>;

impl Validator<'_> {
    /// Fields the engine cannot use are errors, never silently dropped; shared settings
    /// it cannot apply are errors on the connection and warnings when inherited.
    pub(crate) fn applicability(
        &mut self,
        kind: DbType,
        rules: &Rules,
        own: &Own<'_>,
        m: &Merged<'_>,
        path: &str,
    ) {
        for (key, (n, p)) in own {
            let Some(field) = fields::field(key) else {
                continue;
            };
            let (applies, other_endpoint) = match field.group {
                Group::All => (true, false),
                Group::Server => (rules.endpoint == EndpointKind::Server, true),
                Group::File => (rules.endpoint == EndpointKind::File, true),
                Group::Extra => (rules.extra.contains(key), false),
                Group::SqlViews => (rules.sql_views, false),
            };
            if applies {
                continue;
            }
            let why = match field.group {
                Group::SqlViews => " (the diesel view serves postgres, mysql and sqlite)",
                _ => rules.hint(key, other_endpoint),
            };
            self.err(
                p,
                &n.origin,
                format!("`{key}` does not apply to {kind} connections{why}"),
            );
        }
        for (field, why) in rules.unsupported {
            let Some(s) = m.src(field) else { continue };
            if s.value == Val::OptDuration(None) {
                continue;
            }
            // A top-level value is a default for the connections that can use it: the
            // others leave it out, quietly (`dbmanager check` shows what each applies).
            if s.path.starts_with(path) {
                let (p, o) = (s.path.clone(), s.origin.clone());
                self.err(
                    &p,
                    &o,
                    format!("`{field}` is not supported for {kind} connections: {why}"),
                );
            }
        }
    }

    /// Pool limits, with the rules between them.
    /// The pool settings and their cross-checks. `idle_cap`: whether the engine honours
    /// `max_idle_conns` (MongoDB's driver does not: there `min_idle_conns` is bounded by
    /// `max_open_conns` alone).
    pub(crate) fn pool(&mut self, m: &Merged<'_>, path: &str, idle_cap: bool) -> PoolSettings {
        let max_open = m.get(key::max_open_conns);
        let explicit_idle = m
            .set(key::max_idle_conns)
            .filter(|s| inherited(&s.path, path).is_empty());
        let max_idle = match m.set(key::max_idle_conns) {
            // Inherited from the top level: lowered to this connection's `max_open_conns`,
            // as Go's database/sql does (ResolveSpec's own sample configuration relies on it).
            Some(s) if explicit_idle.is_none() && m.get(key::max_idle_conns) > max_open => {
                let from = m.get(key::max_idle_conns);
                let top = s.path.clone();
                self.warn(
                    &join(path, "max_idle_conns"),
                    format!(
                        "the top-level max_idle_conns ({from}, `{top}`) is lowered to this \
                         connection's max_open_conns ({max_open})"
                    ),
                );
                max_open
            }
            Some(_) => m.get(key::max_idle_conns),
            None => m.get(key::max_idle_conns).min(max_open),
        };
        let min_idle = m.get(key::min_idle_conns);
        if let Some(s) = m.set(key::max_idle_conns)
            && max_idle > max_open
        {
            let (p, o) = (s.path.clone(), s.origin.clone());
            self.err(
                &p,
                &o,
                format!(
                    "max_idle_conns ({max_idle}) must not exceed max_open_conns ({max_open}){}",
                    inherited(&p, path)
                ),
            );
        }
        let (bound, bound_name) = if idle_cap {
            (max_idle, "max_idle_conns")
        } else {
            (max_open, "max_open_conns")
        };
        if let Some(s) = m.set(key::min_idle_conns)
            && min_idle > bound
        {
            let (p, o) = (s.path.clone(), s.origin.clone());
            self.err(
                &p,
                &o,
                format!(
                    "min_idle_conns ({min_idle}) must not exceed {bound_name} ({bound}){}",
                    inherited(&p, path)
                ),
            );
        }
        let lifetime = m.get(key::conn_max_lifetime);
        let idle_time = m.get(key::conn_max_idle_time);
        if let (Some(l), Some(i)) = (lifetime, idle_time)
            && l < i
        {
            let (p, o) = if m.set(key::conn_max_lifetime).is_some() {
                m.at(key::conn_max_lifetime, path)
            } else {
                m.at(key::conn_max_idle_time, path)
            };
            self.err(
                &p,
                &o,
                format!(
                    "conn_max_lifetime ({}) must not be shorter than conn_max_idle_time ({}){}",
                    humantime::format_duration(l),
                    humantime::format_duration(i),
                    inherited(&p, path)
                ),
            );
        }
        // `0s`, `none` and `off` read as no value: set so, it is off; left out, the default.
        let jitter_set = m.set(key::conn_max_lifetime_jitter).is_some();
        let jitter = match (lifetime, m.get(key::conn_max_lifetime_jitter)) {
            (None, _) => Duration::ZERO,
            (Some(_), None) if jitter_set => Duration::ZERO,
            (Some(l), None) => l / 10,
            (Some(l), Some(j)) => {
                if j > l && m.set(key::conn_max_lifetime_jitter).is_some() {
                    let (p, o) = m.at(key::conn_max_lifetime_jitter, path);
                    self.err(
                        &p,
                        &o,
                        format!(
                            "conn_max_lifetime_jitter ({}) must not exceed conn_max_lifetime ({}){}",
                            humantime::format_duration(j),
                            humantime::format_duration(l),
                            inherited(&p, path)
                        ),
                    );
                }
                j.min(l)
            }
        };
        let mut pool = PoolSettings::with_max_open(max_open);
        pool.max_lifetime_jitter = jitter;
        pool.max_idle = max_idle;
        pool.min_idle = min_idle;
        pool.max_lifetime = lifetime;
        pool.max_idle_time = idle_time;
        pool.acquire_timeout = m.get(key::acquire_timeout);
        pool.connect_timeout = m.get(key::connect_timeout);
        pool.ping_idle_after = m.get(key::ping_idle_after);
        pool
    }

    /// The reconnect backoff.
    pub(crate) fn retry(&mut self, m: &Merged<'_>, path: &str) -> RetrySettings {
        let delay = m.get(key::retry_delay);
        let max_delay = m.get(key::retry_max_delay);
        if delay > max_delay {
            let (p, o) = m.at(key::retry_max_delay, path);
            self.err(
                &p,
                &o,
                format!(
                    "retry_max_delay ({}) must not be shorter than retry_delay ({}){}",
                    humantime::format_duration(max_delay),
                    humantime::format_duration(delay),
                    inherited(&p, path)
                ),
            );
        }
        RetrySettings {
            attempts: m.get(key::retry_attempts),
            delay,
            max_delay,
        }
    }

    /// A SQLite endpoint.
    pub(crate) fn file_endpoint(
        &mut self,
        m: &Merged<'_>,
        own: &Own<'_>,
        node: &Node,
        path: &str,
        name: &str,
    ) -> Option<Endpoint> {
        let target = match m.get(key::filepath).as_deref() {
            None => {
                if !own.contains_key(key::filepath.name) {
                    self.err(
                        &join(path, key::filepath.name),
                        &node.origin,
                        "missing `filepath` for a sqlite connection (a file path, or `:memory:`)",
                    );
                }
                return None;
            }
            Some(":memory:") => SqliteTarget::Memory {
                name: name.to_owned(),
            },
            Some(p) => SqliteTarget::File(PathBuf::from(p)),
        };
        let mut s = SqliteSettings::new(target);
        s.busy_timeout = m.get(key::busy_timeout);
        s.foreign_keys = m.get(key::foreign_keys);
        s.journal_mode = m.get(key::journal_mode);
        s.synchronous = m.get(key::synchronous);
        Some(Endpoint::Sqlite(s))
    }

    /// A server endpoint's required fields, and the fields a DSN overrides.
    pub(crate) fn server_endpoint(
        &mut self,
        rules: &Rules,
        own: &Own<'_>,
        node: &Node,
        path: &str,
    ) {
        if !own.contains_key("dsn") {
            for key in rules.required {
                // `hosts` names the servers in place of `host`.
                let given = own.contains_key(key) || (*key == "host" && own.contains_key("hosts"));
                if !given {
                    self.err(
                        &join(path, key),
                        &node.origin,
                        format!("missing `{key}` (set `{key}`, or give a complete `dsn`)"),
                    );
                }
            }
            return;
        }
        // The address fields: what a replica's own `dsn` replaces too.
        let overridden: Vec<&str> = fields::FIELDS
            .iter()
            .filter(|f| f.replica == ForReplica::Address && own.contains_key(f.name))
            .map(|f| f.name)
            .collect();
        if !overridden.is_empty() {
            self.warn(
                &join(path, "dsn"),
                format!(
                    "`dsn` is set, so {} {} ignored",
                    overridden.join(", "),
                    if overridden.len() == 1 { "is" } else { "are" }
                ),
            );
        }
    }

    /// `default_orm` and the diesel view's part of the budget (docs/views.md).
    pub(crate) fn views(
        &mut self,
        kind: DbType,
        rules: &Rules,
        m: &Merged<'_>,
        path: &str,
        max_open: u32,
    ) -> (DefaultOrm, u32) {
        let default_orm: DefaultOrm = m.get(key::default_orm);
        if !rules.sql_views {
            if let Some(s) = m.set(key::default_orm)
                && default_orm != DefaultOrm::Sqlx
                && s.path.starts_with(path)
            {
                let (p, o) = (s.path.clone(), s.origin.clone());
                self.err(
                    &p,
                    &o,
                    format!(
                        "default_orm must be `sqlx` (or left out) on {kind} connections: \
                         SeaORM and diesel serve postgres, mysql and sqlite"
                    ),
                );
            }
            return (DefaultOrm::Sqlx, 0);
        }
        let diesel_conns = match m.get(key::diesel_conns) {
            Some(c) => {
                let (p, o) = m.at(key::diesel_conns, path);
                if c >= max_open {
                    self.err(
                        &p,
                        &o,
                        format!(
                            "diesel_conns ({c}) must be less than max_open_conns ({max_open}): \
                             the sqlx pool (sqlx and SeaORM views) keeps at least one"
                        ),
                    );
                } else if c == 0 && default_orm == DefaultOrm::Diesel {
                    self.err(
                        &p,
                        &o,
                        "diesel_conns must be at least 1 with default_orm: diesel",
                    );
                }
                c
            }
            _ if default_orm == DefaultOrm::Diesel => {
                if max_open < 2 {
                    let (p, o) = m.at(key::max_open_conns, path);
                    self.err(
                        &p,
                        &o,
                        format!(
                            "max_open_conns must be at least 2 with default_orm: diesel (the \
                             diesel view gets all but one; the sqlx pool keeps one){}",
                            inherited(&p, path)
                        ),
                    );
                }
                max_open.saturating_sub(1)
            }
            _ => 0,
        };
        (default_orm, diesel_conns)
    }
}
