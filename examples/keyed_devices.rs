//! One pool per device, created on first use: a per-device API connection pool,
//! with the line-protocol device of `examples/custom_provider.rs` as the connection type.
//!
//! Three devices listen on free loopback ports. The file declares a keyed group
//! `devices` whose template is a `type: line` connection; a resolver gives each device
//! key its port. The example then:
//! 1. sends 20 concurrent commands to each device (each device's pool opens once, at most
//!    `max_open_conns` sessions at a time);
//! 2. kills one device and restarts it: its supervisor reconnects, the others never notice;
//! 3. stops asking: the sweeper closes every device's pool after `idle_evict_after`.
//!
//! ```text
//! cargo run -p dbmanager --example keyed_devices
//! ```

mod line_device;

use dbmanager::Manager;
use dbmanager::config::Config;
use line_device::{Device, LineConnector, LineProvider};
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut devices = Vec::new();
    for _ in 0..3 {
        devices.push(Device::start("admin", "s3cret pw").await?);
    }
    let ports: HashMap<String, u16> = devices
        .iter()
        .enumerate()
        .map(|(i, d)| (format!("router-{i}"), d.port))
        .collect();
    let yaml = r#"
connections:
  audit:
    type: sqlite
    filepath: ":memory:"
keyed:
  devices:
    template:
      type: line
      host: 127.0.0.1
      port: 1
      user: admin
      password: "s3cret pw"
      max_open_conns: 2
      health_check_interval: 200ms
      retry_delay: 50ms
      retry_max_delay: 200ms
    idle_evict_after: 1s
    max_keys: 10
"#;
    let config = Config::loader().provider(LineProvider).load_str(yaml)?;
    let mgr = Manager::new(config);
    mgr.connect().await?;
    let group = mgr.keyed("devices")?;
    group.set_resolver(move |key| match ports.get(key) {
        Some(port) => vec![("port".into(), port.to_string())],
        None => Vec::new(),
    });

    // 1. Twenty concurrent commands per device.
    let calls = (0..60).map(|i| {
        let key = format!("router-{}", i % 3);
        async move {
            let conn = group.get(&key).await?;
            let mut session = conn.managed::<LineConnector>().await?;
            let answer = session.call(&format!("ECHO {key} {i}")).await;
            if let Err(e) = &answer {
                conn.report_error(e);
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(answer?)
        }
    });
    let answers = futures_util::future::join_all(calls).await;
    let ok = answers.iter().filter(|a| a.is_ok()).count();
    println!("{ok} of {} commands answered", answers.len());
    for (i, d) in devices.iter().enumerate() {
        println!(
            "router-{i}: at most {} sessions at once",
            d.peak.load(std::sync::atomic::Ordering::SeqCst)
        );
    }
    if ok != answers.len() {
        return Err("some commands failed".into());
    }

    // 2. One device restarts: only its connection goes down and comes back.
    let flaky = group.get("router-1").await?;
    devices[1].kill().await;
    let down = Instant::now();
    while flaky.health().state == dbmanager::HealthState::Healthy
        && down.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "router-1 after the kill: {}; router-0: {}",
        flaky.health().state,
        group.get("router-0").await?.health().state
    );
    devices[1].restart().await?;
    let mut session = flaky.managed::<LineConnector>().await?;
    println!("router-1 is back: {}", session.call("ECHO back").await?);
    drop(session);

    // 3. Nobody asks any more: the sweeper closes every pool.
    for s in group.stats() {
        println!("{}: idle for {:?}", s.key, s.idle_for);
    }
    let quiet = Instant::now();
    while !group.is_empty() && quiet.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "after {:?} without a request: {} device pools open, {} evicted",
        quiet.elapsed(),
        group.len(),
        group.evicted_total()
    );
    if !group.is_empty() {
        return Err("idle device pools were not closed".into());
    }
    mgr.close().await;
    for mut d in devices {
        d.kill().await;
    }
    Ok(())
}
