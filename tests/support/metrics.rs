//! Reading a Prometheus registry back in the tests: the exposition as (series, value)
//! pairs, and the value of one series by name and labels.

use dbmanager::prometheus_client::encoding::text::encode;
use dbmanager::prometheus_client::registry::Registry;

/// The exposition text.
pub fn text(registry: &Registry) -> String {
    let mut text = String::new();
    encode(&mut text, registry).unwrap();
    text
}

/// The exposition as (series, value) pairs.
pub fn scrape(registry: &Registry) -> Vec<(String, f64)> {
    text(registry)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The value of the one series named `name` with every `labels` pair, or `None`.
pub fn value(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = scrape(registry)
        .into_iter()
        .filter(|(s, _)| {
            s.split('{').next() == Some(name)
                && labels
                    .iter()
                    .all(|(k, v)| s.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| v)
        .collect();
    assert!(
        found.len() <= 1,
        "{name} {labels:?} matches {} series",
        found.len()
    );
    found.first().copied()
}
