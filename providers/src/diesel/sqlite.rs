//! The diesel view's SQLite connector.

use super::*;

/// diesel's SQLite connection run on a blocking thread, as diesel-async offers it.
pub type AsyncSqliteConnection = SyncConnectionWrapper<diesel::SqliteConnection>;

/// Opens [`AsyncSqliteConnection`]s on the same file (or `:memory:` database) as the sqlx
/// pool, with the same PRAGMAs.
#[derive(Debug)]
pub struct SqliteConnector {
    url: String,
    pragmas: String,
}

impl SqliteConnector {
    /// Builds the connector. `settings.target` must be the one the sqlx pool was opened
    /// with (for `:memory:`, the same unique name).
    pub fn new(settings: &crate::settings::SqliteSettings) -> Result<Self, ProviderError> {
        use crate::settings::SqliteTarget;
        let (url, journal) = match &settings.target {
            SqliteTarget::File(path) => {
                let path = path.to_str().ok_or_else(|| ProviderError::InvalidSetting {
                    field: "filepath",
                    reason: "diesel view: the path is not UTF-8".into(),
                })?;
                (path.to_owned(), "wal")
            }
            SqliteTarget::Memory { name } => (format!("file:/{name}?vfs=memdb"), "memory"),
        };
        let word = |v: &str, field: &'static str| {
            if v.chars().all(|c| c.is_ascii_alphabetic()) {
                Ok(v.to_owned())
            } else {
                Err(ProviderError::InvalidSetting {
                    field,
                    reason: format!("`{v}` is not a mode name"),
                })
            }
        };
        let journal = word(
            settings.journal_mode.as_deref().unwrap_or(journal),
            "journal_mode",
        )?;
        let sync = word(
            settings.synchronous.as_deref().unwrap_or("normal"),
            "synchronous",
        )?;
        let pragmas = format!(
            "PRAGMA busy_timeout = {}; PRAGMA foreign_keys = {}; PRAGMA journal_mode = {journal}; PRAGMA synchronous = {sync};",
            settings.busy_timeout.as_millis(),
            if settings.foreign_keys { "ON" } else { "OFF" },
        );
        Ok(SqliteConnector { url, pragmas })
    }
}

impl Connector for SqliteConnector {
    type Conn = AsyncSqliteConnection;

    async fn connect(&self) -> Result<AsyncSqliteConnection, ProviderError> {
        use diesel_async::AsyncConnection;
        let mut conn = AsyncSqliteConnection::establish(&self.url)
            .await
            .map_err(|e| ProviderError::driver_connect(e, ErrorClass::Config))?;
        conn.batch_execute(&self.pragmas)
            .await
            .map_err(|e| ProviderError::driver_connect(e, ErrorClass::Config))?;
        Ok(conn)
    }

    async fn ping<'c>(&'c self, conn: &'c mut AsyncSqliteConnection) -> Result<(), ProviderError> {
        ping(conn).await
    }

    fn is_broken(&self, conn: &mut AsyncSqliteConnection) -> bool {
        PoolableConnection::is_broken(conn)
    }
}

/// Builds the SQLite diesel pool (see [`ManagedPool::open`]).
pub async fn open_sqlite(
    sqlite: &crate::settings::SqliteSettings,
    settings: PoolSettings,
    eager: bool,
    ctx: PoolContext,
) -> Result<ManagedPool<SqliteConnector>, ProviderError> {
    let connector = SqliteConnector::new(sqlite)?;
    ManagedPool::open(connector, settings, eager, ctx).await
}
