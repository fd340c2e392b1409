//! [`DbType`]: which engine a connection is (`type` in YAML), and the table of the
//! built-in engines.

use crate::rules::{EndpointKind, Rules};

/// The database engine of a connection (`type` in YAML).
///
/// The built-in engines have a variant each; a provider a service registers itself is
/// [`DbType::Custom`] with the `type` name it answers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DbType {
    /// PostgreSQL (`postgres`, `postgresql`).
    Postgres,
    /// MySQL or MariaDB (`mysql`, `mariadb`).
    MySql,
    /// SQLite (`sqlite`).
    Sqlite,
    /// Microsoft SQL Server (`mssql`, `sqlserver`).
    MsSql,
    /// MongoDB (`mongodb`, `mongo`).
    MongoDb,
    /// A provider registered by the application (`type: <name>`).
    Custom(&'static str),
}

/// One built-in engine: every fact about it that is not its driver code. The one list of
/// the built-in engines; `type` spellings, OpenTelemetry names and the configuration
/// rules are read from it, whether or not the engine's provider is compiled in (so a
/// file is validated alike either way, and opening an engine that is not compiled in
/// fails with `Error::NotBuilt`).
struct Engine {
    kind: DbType,
    /// Accepted `type` spellings; the first is the canonical name (and the cargo feature).
    names: &'static [&'static str],
    /// OpenTelemetry's `db.system.name`.
    db_system: &'static str,
    /// What its connections accept in the configuration.
    rules: Rules,
}

/// `extra` fields plus those of a server with standbys and replicas (PostgreSQL and
/// MySQL/MariaDB accept the same ones).
macro_rules! with_high_availability {
    ($($field:literal),* $(,)?) => {
        &[
            $($field,)*
            "hosts",
            "target_session_attrs",
            "load_balance_hosts",
            "replicas",
            "load_balancing",
            "fallback",
            "max_replica_lag",
        ]
    };
}

const ENGINES: &[Engine] = &[
    Engine {
        kind: DbType::Postgres,
        names: &["postgres", "postgresql"],
        db_system: "postgresql",
        rules: Rules {
            sql_views: true,
            ..Rules::server().with_extra(with_high_availability!["schema", "pgbouncer"])
        },
    },
    Engine {
        kind: DbType::MySql,
        names: &["mysql", "mariadb"],
        db_system: "mysql",
        rules: Rules {
            refused: &[("schema", " (a MySQL schema is a database: set `database`)")],
            sql_views: true,
            ..Rules::server()
                .with_extra(with_high_availability![])
                .with_unsupported(&[(
                    "application_name",
                    "sqlx's MySQL driver sends no connection attributes (filter by `user` instead)",
                )])
        },
    },
    Engine {
        kind: DbType::Sqlite,
        names: &["sqlite"],
        db_system: "sqlite",
        rules: Rules {
            endpoint: EndpointKind::File,
            endpoint_hint: " (SQLite is a file: set `filepath`)",
            sql_views: true,
            ..Rules::server().with_unsupported(&[
                (
                    "query_timeout",
                    "SQLite has no statement timeout (busy_timeout bounds lock waits)",
                ),
                ("application_name", "SQLite has no server to report it to"),
            ])
        },
    },
    Engine {
        kind: DbType::MsSql,
        names: &["mssql", "sqlserver"],
        db_system: "microsoft.sql_server",
        rules: Rules {
            refused: &[
                (
                    "schema",
                    " (SQL Server gives each user a default schema: \
                     ALTER USER ... WITH DEFAULT_SCHEMA, or qualify table names)",
                ),
                (
                    "password_file",
                    " (not read for SQL Server yet: set `password`, from the environment with ${VAR})",
                ),
            ],
            strict_tls: true,
            ..Rules::server()
        },
    },
    Engine {
        kind: DbType::MongoDb,
        names: &["mongodb", "mongo"],
        db_system: "mongodb",
        rules: Rules {
            refused: &[(
                "password_file",
                " (the MongoDB driver takes its credentials once, when its client is built: set \
                 `password`, from the environment with ${VAR})",
            )],
            ..Rules::server()
        }
        .with_extra(&["auth_source", "replica_set", "read_preference"])
        .with_unsupported(&[
            (
                "conn_max_lifetime",
                "the MongoDB driver has no connection lifetime (it closes connections after \
                     conn_max_idle_time idle, after errors and when its pool is cleared)",
            ),
            (
                "conn_max_lifetime_jitter",
                "the MongoDB driver has no connection lifetime",
            ),
            (
                "max_idle_conns",
                "the MongoDB driver keeps no cap on idle connections (min_idle_conns sets \
                     its minPoolSize, conn_max_idle_time closes idle ones)",
            ),
            (
                "ping_idle_after",
                "the MongoDB driver checks its servers with its own heartbeats",
            ),
            (
                "query_timeout",
                "set a per-operation max_time on MongoDB operations instead",
            ),
        ]),
    },
];

impl DbType {
    fn engine(self) -> Option<&'static Engine> {
        ENGINES.iter().find(|e| e.kind == self)
    }

    /// Every accepted spelling of a built-in `type`.
    pub fn builtin_names() -> impl Iterator<Item = &'static str> {
        ENGINES.iter().flat_map(|e| e.names.iter().copied())
    }

    /// Parses a built-in `type` value (case-insensitive). Custom types are resolved by the
    /// registry that knows them.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase();
        ENGINES
            .iter()
            .find(|e| e.names.contains(&s.as_str()))
            .map(|e| e.kind)
    }

    /// The `type` spellings a built-in engine answers to (a custom provider's own name).
    pub fn names(self) -> &'static [&'static str] {
        match self.engine() {
            Some(e) => e.names,
            None => &[],
        }
    }

    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            DbType::Custom(name) => name,
            _ => self.engine().map_or("unknown", |e| e.names[0]),
        }
    }

    /// OpenTelemetry's `db.system.name` for the engine (a custom provider's own name).
    pub fn db_system(self) -> &'static str {
        match self {
            DbType::Custom(name) => name,
            _ => self.engine().map_or("unknown", |e| e.db_system),
        }
    }

    /// A built-in engine's configuration rules (a plain server's for a custom provider,
    /// whose own `Provider::rules` the registry applies instead).
    pub fn rules(self) -> Rules {
        self.engine().map_or_else(Rules::server, |e| e.rules)
    }

    /// The cargo feature that compiles this engine's provider (a custom provider's own
    /// name: it is compiled in by the application that registers it).
    pub fn feature(self) -> &'static str {
        self.as_str()
    }

    /// Whether the engine speaks SQL (PostgreSQL, MySQL, SQLite, SQL Server).
    pub fn is_sql(self) -> bool {
        !matches!(self, DbType::MongoDb | DbType::Custom(_))
    }
}

impl std::fmt::Display for DbType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_engine_is_in_the_table_once() {
        for kind in [
            DbType::Postgres,
            DbType::MySql,
            DbType::Sqlite,
            DbType::MsSql,
            DbType::MongoDb,
        ] {
            assert_eq!(
                ENGINES.iter().filter(|e| e.kind == kind).count(),
                1,
                "{kind:?}"
            );
            for name in kind.names() {
                assert_eq!(DbType::parse(name), Some(kind));
            }
        }
        assert_eq!(DbType::parse("MariaDB"), Some(DbType::MySql));
        assert_eq!(DbType::parse("oracle"), None);
    }
}
