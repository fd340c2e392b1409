//! What the benchmarks share: where their machine-readable results go, settings from the
//! environment, quantiles. (Each benchmark uses only some of it.)
#![allow(dead_code)]

/// Writes `value` to `target/bench/NAME.json` (pretty-printed) and says where, or why not.
pub fn write_json(name: &str, value: &serde_json::Value) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    let path = dir.join(format!("{name}.json"));
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(value).unwrap_or_default(),
        )
    });
    match written {
        Ok(()) => println!("\nresults: target/bench/{name}.json"),
        Err(e) => println!("\ncould not write {}: {e}", path.display()),
    }
}

/// The environment variable `name` parsed, or `default` when unset or unparsable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p` quantile (0..=1) of `sorted`, in `unit`s per second (1e6: µs), NaN when empty.
pub fn quantile(sorted: &[std::time::Duration], p: f64, unit: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * unit
}
