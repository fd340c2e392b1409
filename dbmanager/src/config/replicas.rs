//! A connection's `replicas:` list. A child of `validate`: each replica is the
//! connection's own section with the replica's address (and, optionally, credentials)
//! put in, validated as a connection, so it inherits every pool and health setting.

use super::{Layer, Validator, check_name};
use crate::config::fields::{FIELDS, ForReplica, field, key};
use crate::config::tree::{Node, Value};
use crate::config::value::join;
use crate::config::{ConnectionConfig, Startup};

/// The names of the fields a replica treats as `what`.
fn treated_as(what: &[ForReplica]) -> Vec<&'static str> {
    FIELDS
        .iter()
        .filter(|f| what.contains(&f.replica))
        .map(|f| f.name)
        .collect()
}

/// One read replica of a connection, validated.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ReplicaConfig {
    /// Its name (`name`, default `replica-<n>` counting from 1): the `replica` label in
    /// metrics and events.
    pub name: String,
    /// Its share of reads under `round_robin` and `random`, and the divisor of its
    /// in-use count under `least_connections` (`weight`, default 1).
    pub weight: u32,
    /// Its settings: the connection's, with the replica's address. Always
    /// `startup: lazy` (a replica that is down at startup does not fail `connect()`), and
    /// `max_replica_lag` copied from the connection.
    pub config: ConnectionConfig,
}

impl Validator<'_> {
    /// The `replicas` list of the connection `name` (its section `node` at `path`).
    pub(crate) fn replicas(
        &mut self,
        name: &str,
        node: &Node,
        path: &str,
        global: &Layer,
    ) -> Vec<ReplicaConfig> {
        let Some(list) = node.get("replicas") else {
            return Vec::new();
        };
        let lpath = join(path, "replicas");
        let items = match &list.value {
            Value::Seq(items) => items,
            Value::Null => return Vec::new(),
            _ => {
                self.err(
                    &lpath,
                    &list.origin,
                    format!("expected a list of replicas, found {}", list.kind_name()),
                );
                return Vec::new();
            }
        };
        let Value::Map(base) = &node.value else {
            return Vec::new();
        };
        // What a replica may set, what it never inherits, and what its own `dsn` replaces.
        let settable = treated_as(&[ForReplica::Address, ForReplica::Own, ForReplica::Override]);
        let not_inherited = treated_as(&[ForReplica::Own, ForReplica::Skip]);
        let address = treated_as(&[ForReplica::Address]);
        let mut out: Vec<ReplicaConfig> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ipath = format!("{lpath}[{i}]");
            let fields = self.entries(item, &ipath, &settable);
            let get = |k: &str| fields.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
            let rname = match get("name") {
                Some(n) => self.nonempty_string(n, &join(&ipath, "name")),
                None => Some(format!("replica-{}", i + 1)),
            };
            let Some(rname) = rname else { continue };
            if let Err(why) = check_name(&rname) {
                self.err(
                    &ipath,
                    &item.origin,
                    why.replace("connection name", "replica name"),
                );
                continue;
            }
            if out.iter().any(|r| r.name == rname) {
                self.err(
                    &ipath,
                    &item.origin,
                    format!("a second replica named `{rname}`"),
                );
                continue;
            }
            let weight = match get(key::weight.name) {
                Some(w) => match field(key::weight.name)
                    .and_then(|f| self.read(f, w, &join(&ipath, key::weight.name)))
                {
                    Some(v) => key::weight.read(Some(&v)),
                    None => continue,
                },
                None => key::weight.read(None),
            };
            if get("host").is_none() && get("hosts").is_none() && get("dsn").is_none() {
                self.err(
                    &ipath,
                    &item.origin,
                    "a replica needs `host`, `hosts` or `dsn`",
                );
                continue;
            }
            // The connection's section, its address replaced by the replica's: its own
            // `host` replaces the connection's `hosts`, its own `hosts` the connection's
            // `host` and `port`.
            let own_dsn = get("dsn").is_some();
            let replaced: &[&str] = match (get("host").is_some(), get("hosts").is_some()) {
                (true, false) => &["hosts"],
                (false, true) => &["host", "port"],
                _ => &[],
            };
            let mut entries: Vec<(String, Node)> = base
                .iter()
                .filter(|(k, _)| !not_inherited.contains(&k.as_str()))
                .filter(|(k, _)| !(own_dsn && address.contains(&k.as_str())))
                .filter(|(k, _)| !replaced.contains(&k.as_str()))
                .cloned()
                .collect();
            for (k, v) in &fields {
                // The replica's identity, not a connection setting.
                if [key::name.name, key::weight.name].contains(k) {
                    continue;
                }
                match entries.iter_mut().find(|(e, _)| e == k) {
                    Some((_, old)) => *old = (*v).clone(),
                    None => entries.push(((*k).to_owned(), (*v).clone())),
                }
            }
            let rnode = Node {
                value: Value::Map(entries),
                origin: item.origin.clone(),
            };
            if let Some(mut config) = self.connection(name, &rnode, &ipath, global) {
                config.startup = Startup::Lazy;
                out.push(ReplicaConfig {
                    name: rname,
                    weight,
                    config,
                });
            }
        }
        out
    }
}
