//! The `keyed:` section: groups of connections created on demand, one per key (a tenant,
//! a device), from a template plus per-key overrides. A child of `validate`, whose rules
//! it reuses: a key's connection is validated exactly as a file's connection is.

use super::{Layer, Validator, check_name};
use crate::config::error::{ConfigError, ConfigErrors};
use crate::config::fields::is_secret;
use crate::config::tree::{Node, Value};
use crate::config::value::join;
use crate::config::{ConnectionConfig, fields};
use crate::registry::Registry;
use std::time::Duration;

/// The fields of one `keyed.<group>` mapping.
const GROUP_FIELDS: &[&str] = &["template", "idle_evict_after", "max_keys", "keys"];
/// Default `idle_evict_after`: a per-device pool closes after 10 minutes idle.
const DEFAULT_IDLE_EVICT: Duration = Duration::from_secs(10 * 60);
/// Default `max_keys`.
const DEFAULT_MAX_KEYS: u32 = 1000;

/// One group of keyed connections (`keyed.<name>`), validated. Its `Debug` shows the
/// template and the file's overrides with `password` and `dsn` redacted, as
/// [`ConnectionConfig`]'s does.
#[derive(Clone)]
#[non_exhaustive]
pub struct KeyedConfig {
    /// The group's name (its key under `keyed`).
    pub name: String,
    /// A key not asked for, with no checkout and nothing in use for this long is closed
    /// and forgotten by the background sweeper (`idle_evict_after`, default 10m;
    /// `none`: never).
    pub idle_evict_after: Option<Duration>,
    /// At most this many keys are open or being opened at once (`max_keys`, default
    /// 1000); opening one more first evicts the least recently used open key (one with
    /// nothing in use first; a busy one after its work in flight drains), or waits for a
    /// key being opened to finish when no key is open yet.
    pub max_keys: u32,
    /// The template, validated on its own (top-level defaults merged).
    pub template: ConnectionConfig,
    /// The template as written, to apply a key's overrides to.
    template_node: Node,
    /// `keys.<key>`: overrides written in the file.
    keys: Vec<(String, Node)>,
    /// The file's top-level settings, the defaults every key's connection gets.
    top: Vec<(String, Node)>,
    registry: Registry,
}

impl KeyedConfig {
    /// The settings of `key`'s connection: the template, then the file's overrides for the
    /// key, then `overrides` (field → YAML scalar, such as `("host", "10.0.0.7")` or
    /// `("port", "5433")`), validated as a file's connection. The connection is named
    /// `<group>.<key>`; errors name `keyed.<group>.keys.<key>.<field>`.
    pub fn for_key(
        &self,
        key: &str,
        overrides: &[(String, String)],
    ) -> Result<ConnectionConfig, ConfigErrors> {
        let path = join(&join("keyed", &self.name), &join("keys", key));
        let fail = |errors| ConfigErrors {
            source_name: format!("<keyed {} key {key}>", self.name),
            errors,
        };
        let name = format!("{}.{key}", self.name);
        if let Err(why) = check_name(key).and_then(|()| check_name(&name)) {
            let why = why.replace("connection name", "key");
            return Err(fail(vec![ConfigError::new(
                &path,
                crate::config::Origin::Unknown,
                why,
            )]));
        }
        let mut node = self.template_node.clone();
        let from_file = self.keys.iter().find(|(k, _)| k == key).map(|(_, n)| n);
        if let Some(Value::Map(entries)) = from_file.map(|n| &n.value) {
            for (field, value) in entries {
                set(&mut node, field, value.clone());
            }
        }
        for (field, value) in overrides {
            let parsed = crate::config::tree::parse(value).map_err(|e| fail(vec![e]))?;
            set(&mut node, field, parsed);
        }
        let mut v = Validator::new(&self.registry);
        let mut global = Layer::new();
        for (key, value) in &self.top {
            v.layer_field(&mut global, key, value, key);
        }
        match v.connection(&name, &node, &path, &global) {
            Some(c) if v.errors.is_empty() => Ok(c),
            _ => Err(fail(v.errors)),
        }
    }
}

impl std::fmt::Debug for KeyedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedConfig")
            .field("name", &self.name)
            .field("idle_evict_after", &self.idle_evict_after)
            .field("max_keys", &self.max_keys)
            .field("template", &self.template)
            .field("template_node", &Redacted::new(&self.template_node))
            .field("keys", &RedactedEntries(&self.keys))
            .field("top", &RedactedEntries(&self.top))
            .finish_non_exhaustive()
    }
}

/// A YAML node as `Debug` shows it: the values of secret fields (`password`, `dsn`, at
/// any depth) as `<redacted>`, like `ServerSettings`' `Debug`; positions left out.
struct Redacted<'a> {
    node: &'a Node,
    secret: bool,
}

impl<'a> Redacted<'a> {
    fn new(node: &'a Node) -> Self {
        Redacted {
            node,
            secret: false,
        }
    }

    fn field(name: &str, node: &'a Node) -> Self {
        Redacted {
            node,
            secret: is_secret(name),
        }
    }
}

impl std::fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.node.value {
            Value::Null => f.write_str("null"),
            _ if self.secret => f.write_str("\"<redacted>\""),
            Value::Bool(b) => write!(f, "{b:?}"),
            Value::Int(i) => write!(f, "{i:?}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Seq(items) => f
                .debug_list()
                .entries(items.iter().map(Redacted::new))
                .finish(),
            Value::Map(entries) => RedactedEntries(entries).fmt(f),
        }
    }
}

/// A mapping's entries, shown as [`Redacted`] does.
struct RedactedEntries<'a>(&'a [(String, Node)]);

impl std::fmt::Debug for RedactedEntries<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, Redacted::field(k, v))))
            .finish()
    }
}

/// Sets `field` of a mapping node (replacing a value already there).
fn set(node: &mut Node, field: &str, value: Node) {
    if let Value::Map(entries) = &mut node.value {
        match entries.iter_mut().find(|(k, _)| k == field) {
            Some((_, v)) => *v = value,
            None => entries.push((field.to_owned(), value)),
        }
    }
}

impl Validator<'_> {
    /// The `keyed` mapping: each group's template validated as a connection (errors at
    /// `keyed.<group>.template.<field>`), its settings, and its file overrides' shape.
    pub(crate) fn keyed(
        &mut self,
        node: &Node,
        path: &str,
        top: &Node,
        global: &Layer,
    ) -> Vec<KeyedConfig> {
        let Value::Map(groups) = &node.value else {
            self.err(
                path,
                &node.origin,
                format!(
                    "expected a mapping of group names, found {}",
                    node.kind_name()
                ),
            );
            return Vec::new();
        };
        let top: Vec<(String, Node)> = match &top.value {
            Value::Map(entries) => entries
                .iter()
                .filter(|(k, _)| fields::field(k).is_some_and(|f| f.scope == fields::Scope::Both))
                .cloned()
                .collect(),
            _ => Vec::new(),
        };
        let mut out = Vec::new();
        for (name, group) in groups {
            let gpath = join(path, name);
            if let Err(why) = check_name(name) {
                self.err(
                    &gpath,
                    &group.origin,
                    why.replace("connection name", "group name"),
                );
                continue;
            }
            let errors_before = self.errors.len();
            let entries = self.entries(group, &gpath, GROUP_FIELDS);
            let get = |k: &str| entries.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
            let idle_evict_after = match get("idle_evict_after") {
                Some(n) => self
                    .duration(n, &join(&gpath, "idle_evict_after"), true)
                    .flatten(),
                None => Some(DEFAULT_IDLE_EVICT),
            };
            let max_keys = match get("max_keys") {
                Some(n) => self
                    .count(n, &join(&gpath, "max_keys"), 1)
                    .unwrap_or(DEFAULT_MAX_KEYS),
                None => DEFAULT_MAX_KEYS,
            };
            let keys = match get("keys") {
                None
                | Some(Node {
                    value: Value::Null, ..
                }) => Vec::new(),
                Some(Node {
                    value: Value::Map(keys),
                    ..
                }) => {
                    for (k, o) in keys {
                        if !matches!(o.value, Value::Map(_)) {
                            self.err(
                                &join(&join(&gpath, "keys"), k),
                                &o.origin,
                                format!("expected a mapping of overrides, found {}", o.kind_name()),
                            );
                        }
                    }
                    keys.clone()
                }
                Some(other) => {
                    self.err(
                        &join(&gpath, "keys"),
                        &other.origin,
                        format!(
                            "expected a mapping of keys to overrides, found {}",
                            other.kind_name()
                        ),
                    );
                    Vec::new()
                }
            };
            let Some(template_node) = get("template") else {
                self.err(
                    &gpath,
                    &group.origin,
                    "missing `template`: the connection settings every key starts from",
                );
                continue;
            };
            let template = self.connection(name, template_node, &join(&gpath, "template"), global);
            if let (Some(template), true) = (template, self.errors.len() == errors_before) {
                out.push(KeyedConfig {
                    name: name.clone(),
                    idle_evict_after,
                    max_keys,
                    template,
                    template_node: template_node.clone(),
                    keys,
                    top: top.clone(),
                    registry: self.registry.clone(),
                });
            }
        }
        out
    }
}
