//! One attempt to open a key: a task of its own whose outcome every caller waiting on
//! the key shares.

use super::{KeyedPools, Outcome, Slot, lock};
use crate::connection::Connection;
use crate::error::Result;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::watch;

/// The task that opens one key, spawned so that it finishes (and publishes its outcome
/// to every caller waiting on it) even if the caller that started it goes away.
pub(super) struct Attempt {
    pub(super) group: Arc<KeyedPools>,
    pub(super) key: String,
    pub(super) slot: Arc<Slot>,
    pub(super) publish: watch::Sender<Outcome>,
    /// Set once the outcome is published; until then `Drop` cleans up (a panic).
    pub(super) finished: bool,
}

impl Attempt {
    pub(super) async fn run(mut self) -> Result<Option<Connection>> {
        let group = Arc::clone(&self.group);
        let opened = group.open(&self.key, &self.slot).await;
        let (key, slot) = (&self.key, &self.slot);
        let kept = {
            let mut keys = lock(&group.keys);
            let current = keys.current(key, slot);
            match &opened {
                Ok(Some(conn)) if current => {
                    slot.touch(group.now_ms());
                    self.publish.send_replace(Outcome::Ready(conn.clone()));
                    true
                }
                Err(e) => {
                    if current {
                        keys.map.remove(key);
                    } else if slot.placed.load(Ordering::Relaxed) {
                        // Removed while it was connecting: its place came free now.
                        keys.closing = keys.closing.saturating_sub(1);
                    }
                    self.publish.send_replace(Outcome::Failed(e.duplicate()));
                    true
                }
                // Removed while it opened (`Some`) or waited for room (`None`).
                Ok(_) => false,
            }
        };
        self.finished = true;
        if !kept {
            if let Ok(Some(conn)) = &opened {
                conn.close().await;
                let mut keys = lock(&group.keys);
                if slot.placed.load(Ordering::Relaxed) {
                    keys.closing = keys.closing.saturating_sub(1);
                }
            }
            self.publish.send_replace(Outcome::Dropped);
        }
        group.room.notify_waiters();
        match opened {
            Ok(Some(_)) if !kept => Ok(None),
            other => other,
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // It panicked (or its runtime shut down) before publishing: forget the slot so
        // that the next `get` tries again, and give its place back.
        let mut keys = lock(&self.group.keys);
        if keys.current(&self.key, &self.slot) {
            keys.map.remove(&self.key);
        } else if self.slot.placed.load(Ordering::Relaxed) {
            keys.closing = keys.closing.saturating_sub(1);
        }
        drop(keys);
        self.group.room.notify_waiters();
    }
}
