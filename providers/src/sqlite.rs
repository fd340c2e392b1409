//! SQLite provider (feature `sqlite`).
//!
//! Every PRAGMA is applied by sqlx to each pooled connection as it opens, not once.
//! Defaults avoid `SQLITE_BUSY` under concurrent writers: WAL for files (readers never
//! block the writer), `busy_timeout` 5 s (a writer waits for the lock instead of failing),
//! `synchronous = NORMAL` (safe with WAL). Write transactions that read first should use
//! `BEGIN IMMEDIATE` so they take the write lock up front.
//!
//! `:memory:` is one database shared by all of the pool's connections: it is opened with
//! SQLite's `memdb` VFS under a process-unique name, and one extra connection held outside
//! the pool keeps it alive while pooled connections come and go.

use crate::error::ProviderError;
use crate::kind::DbType;
use crate::pool::{PoolContext, SqlPool};
use crate::provider::{EnginePool, OpenFuture, OpenRequest, Provider, Rules};
use crate::settings::{PoolSettings, SqliteSettings, SqliteTarget};
use sqlx::Sqlite;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use std::str::FromStr;

/// A SQLite pool.
pub type SqliteSqlPool = SqlPool<Sqlite>;

/// Builds the driver's connect options. Pure: does no I/O, so it doubles as validation.
pub fn connect_options(s: &SqliteSettings) -> Result<SqliteConnectOptions, ProviderError> {
    let (o, default_journal) = match &s.target {
        SqliteTarget::File(path) => (
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true),
            SqliteJournalMode::Wal,
        ),
        SqliteTarget::Memory { name } => (
            // A leading '/' makes memdb share the database between connections.
            SqliteConnectOptions::new()
                .filename(format!("/{name}"))
                .vfs("memdb"),
            SqliteJournalMode::Memory,
        ),
    };
    let journal = match &s.journal_mode {
        None => default_journal,
        Some(m) => {
            SqliteJournalMode::from_str(m).map_err(|_| ProviderError::InvalidSetting {
                field: "journal_mode",
                reason: format!(
                    "unknown journal mode `{m}` (expected one of: delete, truncate, persist, memory, wal, off)"
                ),
            })?
        }
    };
    let sync = match &s.synchronous {
        None => SqliteSynchronous::Normal,
        Some(m) => SqliteSynchronous::from_str(m).map_err(|_| ProviderError::InvalidSetting {
            field: "synchronous",
            reason: format!(
                "unknown synchronous mode `{m}` (expected one of: off, normal, full, extra)"
            ),
        })?,
    };
    Ok(o.journal_mode(journal)
        .synchronous(sync)
        .busy_timeout(s.busy_timeout)
        .foreign_keys(s.foreign_keys))
}

/// Builds the pool; with `eager`, connects before returning (bounded by `connect_timeout`).
pub async fn open(
    sqlite: &SqliteSettings,
    pool: PoolSettings,
    eager: bool,
    ctx: PoolContext,
) -> Result<SqliteSqlPool, ProviderError> {
    let options = connect_options(sqlite)?;
    let anchored = matches!(sqlite.target, SqliteTarget::Memory { .. });
    SqlPool::open(
        pool,
        options,
        None,
        crate::pool::ServerChecks::none(),
        eager,
        anchored,
        ctx,
    )
    .await
}

/// The SQLite provider, as the manager's registry holds it.
#[derive(Debug, Default, Clone, Copy)]
pub struct SqliteProvider;

impl Provider for SqliteProvider {
    fn kind(&self) -> DbType {
        DbType::Sqlite
    }

    fn names(&self) -> &'static [&'static str] {
        DbType::Sqlite.names()
    }

    fn rules(&self) -> Rules {
        DbType::Sqlite.rules()
    }

    fn open<'a>(&'a self, req: OpenRequest<'a>) -> OpenFuture<'a> {
        Box::pin(async move {
            let pool = open(req.sqlite()?, req.pool, req.eager, req.ctx).await?;
            Ok(std::sync::Arc::new(pool) as std::sync::Arc<dyn EnginePool>)
        })
    }
}
