//! A connection type dbmanager does not ship, pooled and supervised by the manager: a
//! line-protocol device API (`examples/line_device/mod.rs`), registered as `type: line`.
//!
//! The example starts the device itself on a free loopback port, then:
//! 1. loads a YAML file that names it, with the provider registered;
//! 2. runs commands on pooled sessions (at most `max_open_conns` at once);
//! 3. kills the device and restarts it: the supervisor notices, reconnects with its
//!    backoff, and a caller waiting meanwhile is served once the device is back;
//! 4. prints the health report and the statistics, and closes.
//!
//! ```text
//! cargo run -p dbmanager --example custom_provider
//! ```

mod line_device;

use dbmanager::config::Config;
use dbmanager::{HealthState, Manager};
use line_device::{Device, LineConnector, LineProvider};
use std::time::{Duration, Instant};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut device = Device::start("admin", "s3cret pw").await?;
    let yaml = format!(
        r#"
connections:
  router-1:
    type: line
    host: 127.0.0.1
    port: {port}
    user: admin
    password: "s3cret pw"
    max_open_conns: 3
    health_check_interval: 200ms
    retry_delay: 50ms
    retry_max_delay: 200ms
    acquire_timeout: 10s
"#,
        port = device.port
    );
    let config = Config::loader().provider(LineProvider).load_str(&yaml)?;
    let mgr = Manager::new(config);
    mgr.connect().await?;
    let router = mgr.get("router-1")?;

    // Ten callers share three sessions.
    let calls = (0..10).map(|i| {
        let router = router.clone();
        async move {
            let mut session = router.managed::<LineConnector>().await?;
            let answer = session.call(&format!("ECHO hello {i}")).await;
            if let Err(e) = &answer {
                router.report_error(e);
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(answer?)
        }
    });
    for answer in futures_util::future::join_all(calls).await {
        println!("device answered: {}", answer.map_err(|e| e.to_string())?);
    }
    println!(
        "device saw at most {} sessions at once",
        device.peak.load(std::sync::atomic::Ordering::SeqCst)
    );

    // Kill the device; a caller who arrives meanwhile waits for it to come back.
    device.kill().await;
    let down = Instant::now();
    while router.health().state == HealthState::Healthy && down.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("after the kill: {}", router.health().state);
    let waiter = {
        let router = router.clone();
        tokio::spawn(async move {
            let mut session = router.managed::<LineConnector>().await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(session.call("ECHO back").await?)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    device.restart().await?;
    let answer = waiter.await?.map_err(|e| e.to_string())?;
    println!(
        "the waiting caller got: {answer} ({:?} after the kill)",
        down.elapsed()
    );

    for (name, result) in mgr.health_check().await {
        println!("check {name}: {:?}", result.map_err(|e| e.to_string()));
    }
    let stats = router.stats();
    println!(
        "health {}, opened {} sessions, closed {} broken / {} cleared",
        stats.health, stats.pool.opened_total, stats.pool.closed_broken, stats.pool.closed_cleared
    );
    mgr.close().await;
    device.kill().await;
    Ok(())
}
