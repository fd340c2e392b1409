//! [`DbType`]: which engine a connection is (`type` in YAML).

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

impl DbType {
    /// Every accepted spelling of a built-in `type`.
    pub const NAMES: &'static [&'static str] = &[
        "postgres",
        "postgresql",
        "mysql",
        "mariadb",
        "sqlite",
        "mssql",
        "sqlserver",
        "mongodb",
        "mongo",
    ];

    /// Parses a built-in `type` value (case-insensitive). Custom types are resolved by the
    /// registry that knows them.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => DbType::Postgres,
            "mysql" | "mariadb" => DbType::MySql,
            "sqlite" => DbType::Sqlite,
            "mssql" | "sqlserver" => DbType::MsSql,
            "mongodb" | "mongo" => DbType::MongoDb,
            _ => return None,
        })
    }

    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            DbType::Postgres => "postgres",
            DbType::MySql => "mysql",
            DbType::Sqlite => "sqlite",
            DbType::MsSql => "mssql",
            DbType::MongoDb => "mongodb",
            DbType::Custom(name) => name,
        }
    }

    /// OpenTelemetry's `db.system.name` for the engine (a custom provider's own name).
    pub fn db_system(self) -> &'static str {
        match self {
            DbType::Postgres => "postgresql",
            DbType::MySql => "mysql",
            DbType::Sqlite => "sqlite",
            DbType::MsSql => "microsoft.sql_server",
            DbType::MongoDb => "mongodb",
            DbType::Custom(name) => name,
        }
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
