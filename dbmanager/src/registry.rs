//! The registry of providers: which engine answers to which `type` in YAML.
//!
//! The built-in engines are listed once, here, each behind its cargo feature; a service
//! adds its own with [`Registry::register`] (or `Config::loader().provider(...)`). Adding
//! a built-in engine is one line in [`Registry::builtin`] (docs/adding-an-engine.md).

use dbmanager_providers::{DbType, Provider};
use std::sync::Arc;

/// The providers a configuration is validated and opened with. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Registry {
    providers: Vec<Arc<dyn Provider>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::builtin()
    }
}

impl Registry {
    /// The engines compiled into this build.
    pub fn builtin() -> Self {
        let providers: Vec<Arc<dyn Provider>> = vec![
            #[cfg(feature = "postgres")]
            Arc::new(dbmanager_providers::postgres::PostgresProvider),
            #[cfg(feature = "mysql")]
            Arc::new(dbmanager_providers::mysql::MySqlProvider),
            #[cfg(feature = "sqlite")]
            Arc::new(dbmanager_providers::sqlite::SqliteProvider),
            #[cfg(feature = "mongodb")]
            Arc::new(dbmanager_providers::mongo::MongoProvider),
            #[cfg(feature = "mssql")]
            Arc::new(dbmanager_providers::mssql::MssqlProvider),
        ];
        Registry { providers }
    }

    /// Adds a provider. One registered later answers first, so a service may replace a
    /// built-in engine's provider by registering one of the same names.
    pub fn register(&mut self, provider: Arc<dyn Provider>) -> &mut Self {
        self.providers.insert(0, provider);
        self
    }

    /// The provider that answers to `type_name` (case-insensitive).
    pub fn find(&self, type_name: &str) -> Option<&Arc<dyn Provider>> {
        let wanted = type_name.trim();
        self.providers
            .iter()
            .find(|p| p.names().iter().any(|n| n.eq_ignore_ascii_case(wanted)))
    }

    /// The provider of a built-in engine, if it was compiled in.
    pub fn of(&self, kind: DbType) -> Option<&Arc<dyn Provider>> {
        self.providers.iter().find(|p| p.kind() == kind)
    }

    /// Every `type` spelling accepted: the built-in engines' (compiled in or not, so a
    /// missing feature is reported as such) and the registered ones'.
    pub fn names(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = DbType::builtin_names().collect();
        for p in &self.providers {
            for n in p.names() {
                if !out.contains(n) {
                    out.push(n);
                }
            }
        }
        out
    }
}
