//! What every benchmark shares: where its machine-readable results go.

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
