//! What a driver error means for the pool and for the caller, decided from SQLSTATEs,
//! engine error numbers and I/O error kinds, never from message text.
//!
//! | class | examples | pool action | retry? |
//! |---|---|---|---|
//! | [`ErrorClass::Unreachable`] | connect refused, no route to the host or network (nothing was sent) | clear the pool | yes, any statement |
//! | [`ErrorClass::ConnectionLost`] | connection reset/EOF, a timeout, PG `57P01`/`57P02`/`57P03`, class `08`, MySQL 2006/2013/1053/1927 | clear the pool | yes |
//! | [`ErrorClass::ReadOnly`] | PG `25006`, MySQL 1290/1836 (a failover left us on a replica) | clear the pool once the server confirms it is read-only | yes |
//! | [`ErrorClass::Transient`] | deadlock, serialization failure, lock timeout, too many connections, SQLite busy | none | yes |
//! | [`ErrorClass::Auth`] | PG `28000`/`28P01`, MySQL 1044/1045/1698 | none | slowly (the supervisor) |
//! | [`ErrorClass::Config`] | unknown database (PG `3D000`, MySQL 1049), bad TLS setup, invalid options | none | slowly |
//! | [`ErrorClass::Permanent`] | syntax errors, constraint violations, row not found... | none | no |

use std::io;

/// The meaning of a driver error. See the module documentation for the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The server could not be reached: the connect was refused, or there is no route to
    /// it. Nothing was sent, so any statement may be retried; the pool's idle connections
    /// are suspect.
    Unreachable,
    /// The connection (or the server) is gone: the pool's idle connections are suspect,
    /// and what the server did with the last request is unknown.
    ConnectionLost,
    /// A write reached a read-only server, typically the old primary after a failover.
    ReadOnly,
    /// A retry of the same operation may succeed; the connection itself is fine.
    Transient,
    /// The server refused the credentials.
    Auth,
    /// The configuration cannot work (unknown database, TLS setup, bad option).
    Config,
    /// Retrying will not help.
    Permanent,
}

impl ErrorClass {
    /// Whether retrying the same (idempotent) operation may succeed.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorClass::Unreachable
                | ErrorClass::ConnectionLost
                | ErrorClass::ReadOnly
                | ErrorClass::Transient
        )
    }

    /// Whether every idle connection of the pool should be dropped.
    pub fn clears_pool(self) -> bool {
        matches!(
            self,
            ErrorClass::Unreachable | ErrorClass::ConnectionLost | ErrorClass::ReadOnly
        )
    }

    /// Whether reconnecting cannot help until someone changes the configuration or the
    /// server's accounts (the supervisor then retries slowly, not in a tight loop).
    pub fn is_fatal(self) -> bool {
        matches!(self, ErrorClass::Auth | ErrorClass::Config)
    }

    /// Lower-case name (`connection_lost`, ...), for events and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Unreachable => "unreachable",
            ErrorClass::ConnectionLost => "connection_lost",
            ErrorClass::ReadOnly => "read_only",
            ErrorClass::Transient => "transient",
            ErrorClass::Auth => "auth",
            ErrorClass::Config => "config",
            ErrorClass::Permanent => "permanent",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classifies an I/O error by its kind.
pub fn classify_io(e: &io::Error) -> ErrorClass {
    use io::ErrorKind as K;
    if e.get_ref().is_some_and(|inner| inner.is::<WrongRole>()) {
        // Refused before the session was used: nothing was sent.
        return ErrorClass::Unreachable;
    }
    match e.kind() {
        // Refused or no route: the connect did not happen, nothing was sent.
        K::ConnectionRefused
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::NetworkDown
        | K::AddrNotAvailable => ErrorClass::Unreachable,
        K::ConnectionReset
        | K::ConnectionAborted
        | K::NotConnected
        | K::BrokenPipe
        | K::UnexpectedEof
        | K::TimedOut
        | K::WouldBlock
        | K::Interrupted => ErrorClass::ConnectionLost,
        // DNS failures surface as `Other`/`Uncategorized` with no stable kind; a name that
        // does not resolve now may resolve after a failover, so treat it as transient.
        K::NotFound | K::PermissionDenied => ErrorClass::Config,
        // Any other failure of the socket: the connection is suspect and what the server
        // did with the last request is unknown (a COMMIT may have been applied), so it is
        // a lost connection, which only idempotent work retries.
        _ => ErrorClass::ConnectionLost,
    }
}

/// Classifies a PostgreSQL SQLSTATE.
pub fn classify_sqlstate(code: &str) -> ErrorClass {
    match code {
        "57P01" | "57P02" | "57P03" => ErrorClass::ConnectionLost,
        c if c.starts_with("08") => ErrorClass::ConnectionLost,
        "25006" => ErrorClass::ReadOnly,
        "40001" | "40P01" | "55P03" | "53300" | "53400" | "57014" => ErrorClass::Transient,
        "28000" | "28P01" => ErrorClass::Auth,
        "3D000" => ErrorClass::Config,
        _ => ErrorClass::Permanent,
    }
}

/// Classifies a MySQL/MariaDB error number.
pub fn classify_mysql_number(n: u16) -> ErrorClass {
    match n {
        // server gone / lost / shutting down / connection killed
        2006 | 2013 | 1053 | 1927 | 1152 | 1184 => ErrorClass::ConnectionLost,
        // --read-only / super_read_only / read-only transaction mode
        1290 | 1836 | 1792 => ErrorClass::ReadOnly,
        // deadlock, lock wait timeout, too many connections, query interrupted by timeout
        1213 | 1205 | 1040 | 1203 | 1317 | 3024 | 1969 => ErrorClass::Transient,
        1044 | 1045 | 1698 | 1251 => ErrorClass::Auth,
        1049 => ErrorClass::Config,
        _ => ErrorClass::Permanent,
    }
}

/// Classifies a SQLite extended result code.
pub fn classify_sqlite_code(code: i64) -> ErrorClass {
    match code & 0xff {
        // SQLITE_BUSY, SQLITE_LOCKED
        5 | 6 => ErrorClass::Transient,
        // SQLITE_CANTOPEN, SQLITE_NOTADB, SQLITE_PERM, SQLITE_AUTH
        14 | 26 | 3 | 23 => ErrorClass::Config,
        // SQLITE_IOERR, SQLITE_FULL
        10 | 13 => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

/// A server of the wrong role for a connection's `target_session_attrs`: a standby for
/// a connection that must write, or a primary for one that wants a standby. The session
/// is refused at connect. Not a configuration error: another host, or the failover under
/// way, fixes it, so it is [`ErrorClass::Unreachable`] (the pool is cleared, callers wait,
/// the supervisor searches the hosts at its usual pace).
#[derive(Debug)]
pub struct WrongRole(pub String);

impl std::fmt::Display for WrongRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WrongRole {}

/// Classifies a sqlx error.
pub fn classify(e: &sqlx::Error) -> ErrorClass {
    match e {
        sqlx::Error::Io(io) => classify_io(io),
        sqlx::Error::PoolTimedOut => ErrorClass::Transient,
        sqlx::Error::PoolClosed => ErrorClass::Permanent,
        sqlx::Error::WorkerCrashed => ErrorClass::ConnectionLost,
        sqlx::Error::Tls(_) | sqlx::Error::Configuration(_) => ErrorClass::Config,
        sqlx::Error::Database(db) => classify_database(db.as_ref()),
        _ => ErrorClass::Permanent,
    }
}

#[allow(unused_variables)]
fn classify_database(db: &dyn sqlx::error::DatabaseError) -> ErrorClass {
    #[cfg(feature = "mysql")]
    if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return classify_mysql_number(my.number());
    }
    #[cfg(feature = "postgres")]
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        return classify_sqlstate(pg.code());
    }
    #[cfg(feature = "sqlite")]
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // `code()` is the extended result code, as a decimal string.
        return db
            .code()
            .and_then(|c| c.parse::<i64>().ok())
            .map_or(ErrorClass::Permanent, classify_sqlite_code);
    }
    match db.code() {
        Some(code) if code.len() == 5 => classify_sqlstate(&code),
        _ => ErrorClass::Permanent,
    }
}

/// An error dbmanager can classify: the drivers' errors (sqlx, MongoDB, tiberius, diesel),
/// [`ProviderError`](crate::ProviderError), and the errors of a service's own providers.
/// `Connection::report_error` takes any of them.
pub trait Classify {
    /// What the error means for the pool and for a retry.
    fn class(&self) -> ErrorClass;
}

impl Classify for sqlx::Error {
    fn class(&self) -> ErrorClass {
        classify(self)
    }
}

impl Classify for ErrorClass {
    fn class(&self) -> ErrorClass {
        *self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_kinds() {
        let lost = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(classify_io(&lost), ErrorClass::ConnectionLost);
        assert!(classify(&sqlx::Error::Io(lost)).clears_pool());
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert_eq!(classify_io(&eof), ErrorClass::ConnectionLost);
    }

    /// An I/O failure of a kind not listed (say, during COMMIT) leaves the outcome unknown:
    /// it must not be a class that a non-idempotent retry runs again.
    #[test]
    fn unlisted_io_kinds_are_a_lost_connection_not_transient() {
        for kind in [
            io::ErrorKind::Other,
            io::ErrorKind::InvalidData,
            io::ErrorKind::WriteZero,
        ] {
            let e = io::Error::from(kind);
            assert_eq!(classify_io(&e), ErrorClass::ConnectionLost, "{kind:?}");
            assert_ne!(
                classify(&sqlx::Error::Io(e)),
                ErrorClass::Transient,
                "{kind:?}"
            );
        }
    }

    #[test]
    fn sqlstates() {
        assert_eq!(classify_sqlstate("57P01"), ErrorClass::ConnectionLost);
        assert_eq!(classify_sqlstate("08006"), ErrorClass::ConnectionLost);
        assert_eq!(classify_sqlstate("25006"), ErrorClass::ReadOnly);
        assert_eq!(classify_sqlstate("28P01"), ErrorClass::Auth);
        assert_eq!(classify_sqlstate("40001"), ErrorClass::Transient);
        assert_eq!(classify_sqlstate("42601"), ErrorClass::Permanent);
        assert!(ErrorClass::Auth.is_fatal());
        assert!(!ErrorClass::Auth.is_transient());
    }

    #[test]
    fn mysql_numbers() {
        assert_eq!(classify_mysql_number(2006), ErrorClass::ConnectionLost);
        assert_eq!(classify_mysql_number(1290), ErrorClass::ReadOnly);
        assert_eq!(classify_mysql_number(1045), ErrorClass::Auth);
        assert_eq!(classify_mysql_number(1064), ErrorClass::Permanent);
    }

    #[test]
    fn sqlite_codes() {
        assert_eq!(classify_sqlite_code(5), ErrorClass::Transient);
        assert_eq!(classify_sqlite_code(261), ErrorClass::Transient); // SQLITE_BUSY_RECOVERY
        assert_eq!(classify_sqlite_code(19), ErrorClass::Permanent); // constraint
    }
}
