//! Hardening: one test per defect a review found, each seen failing on
//! the code before its fix. Grouped by theme:
//! - `lifecycle`: hangs, storms, data loss and races around `close()`;
//! - `secrets`: what must never reach an error, a log line or the CLI;
//! - `input`: bad files, names, durations and environment overrides;
//! - `behaviour`: read-only errors, retry safety, counters, empty passwords.

mod behaviour;
mod canary;
mod input;
mod lifecycle;
mod secrets;
