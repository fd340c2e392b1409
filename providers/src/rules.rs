//! [`Rules`]: what an engine's connections accept in the configuration, applied by
//! dbmanager's validator so every engine's errors read alike and name their YAML path.

/// Which endpoint fields a provider reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointKind {
    /// A network server: `dsn`, `host`, `port`, `user`, `password`, `database`, `sslmode`,
    /// `ssl_root_cert`, `ssl_cert`, `ssl_key`.
    Server,
    /// An embedded database file: `filepath`, `busy_timeout`, `journal_mode`,
    /// `synchronous`, `foreign_keys`.
    File,
}

/// A provider's configuration rules, applied by dbmanager's validator so every engine's
/// errors read alike and name their YAML path.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Rules {
    /// Which endpoint fields it reads; the other kind's fields are refused.
    pub endpoint: EndpointKind,
    /// Engine-specific connection fields it reads (`schema`, `auth_source`, `options`...).
    pub extra: &'static [&'static str],
    /// Why a field it does not read is refused, where there is more to say than "does not
    /// apply" (the text follows the error, e.g. ` (a MySQL schema is a database)`).
    pub refused: &'static [(&'static str, &'static str)],
    /// The same, for every field of the other endpoint kind.
    pub endpoint_hint: &'static str,
    /// Server fields that must be set when there is no `dsn` (`host`, `database`).
    pub required: &'static [&'static str],
    /// Shared settings it cannot apply, with the reason: an error when set on the
    /// connection, a warning when inherited from the top level. A value meaning "none"
    /// (`0`, `off`) is accepted.
    pub unsupported: &'static [(&'static str, &'static str)],
    /// Serves the SeaORM and diesel views (`default_orm`, `diesel_conns`).
    pub sql_views: bool,
    /// Accepts `sslmode: strict` (TDS 8.0).
    pub strict_tls: bool,
}

impl Rules {
    /// A network engine that reads the server fields and nothing else.
    pub const fn server() -> Self {
        Rules {
            endpoint: EndpointKind::Server,
            extra: &[],
            refused: &[],
            endpoint_hint: "",
            required: &["host", "database"],
            unsupported: &[],
            sql_views: false,
            strict_tls: false,
        }
    }

    /// The same rules, also reading these engine-specific fields.
    pub const fn with_extra(mut self, extra: &'static [&'static str]) -> Self {
        self.extra = extra;
        self
    }

    /// The same rules, requiring these server fields when there is no `dsn`.
    pub const fn with_required(mut self, required: &'static [&'static str]) -> Self {
        self.required = required;
        self
    }

    /// The same rules, with these shared settings unsupported.
    pub const fn with_unsupported(
        mut self,
        unsupported: &'static [(&'static str, &'static str)],
    ) -> Self {
        self.unsupported = unsupported;
        self
    }

    /// The hint for a refused `field`, if the provider gives one.
    pub fn hint(&self, field: &str, other_endpoint: bool) -> &'static str {
        self.refused
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, h)| *h)
            .unwrap_or(if other_endpoint {
                self.endpoint_hint
            } else {
                ""
            })
    }

    /// Why `field` cannot be applied, if it cannot.
    pub fn unsupported(&self, field: &str) -> Option<&'static str> {
        self.unsupported
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, why)| *why)
    }
}
