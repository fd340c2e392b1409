//! The idle side of keyed pools: what counts as use of a key, and the sweeper that
//! evicts keys idle for `idle_evict_after`.

use super::{KeyedPools, Slot, lock};
use crate::connection::Connection;
use std::sync::atomic::Ordering;
use std::time::Duration;

impl KeyedPools {
    /// Whether `conn` (or one of its replicas) has a connection checked out now, and
    /// when the key was last used: asked for, a checkout started or ended (now while
    /// one is in progress), or found in use by the sweeper.
    pub(super) fn activity(&self, slot: &Slot, conn: &Connection) -> (bool, u64) {
        let mut busy = false;
        let mut last = slot.last_used.load(Ordering::Relaxed);
        for c in std::iter::once(conn.clone()).chain(conn.replicas()) {
            busy |= c.in_use() > 0;
            last = last.max(self.ms_at(c.last_checkout()));
        }
        (busy, last)
    }

    /// Whether `slot`'s key has had no checkout and nothing in use for `limit` (`now`
    /// and `limit` in ms).
    fn is_idle(&self, slot: &Slot, now: u64, limit: u64) -> bool {
        slot.conn().is_some_and(|c| {
            let (busy, last) = self.activity(slot, &c);
            !busy && now.saturating_sub(last) >= limit
        })
    }

    /// One pass of the sweeper: notes which keys are in use (a key found in use counts as
    /// used until the pass after the one that finds it free, so the idle time counts
    /// from no earlier than its return), then evicts the idle ones, each checked again
    /// under the lock as it is removed.
    async fn sweep(&self, limit: Duration) {
        let limit = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        let now = self.now_ms();
        let idle: Vec<String> = lock(&self.keys)
            .map
            .iter()
            .filter(|(_, slot)| {
                let Some(conn) = slot.conn() else {
                    return false;
                };
                let (busy, _) = self.activity(slot, &conn);
                if slot.was_busy.swap(busy, Ordering::Relaxed) || busy {
                    slot.touch(now);
                }
                self.is_idle(slot, now, limit)
            })
            .map(|(k, _)| k.clone())
            .collect();
        let evictions = idle
            .iter()
            .map(|key| self.evict(key, |slot| self.is_idle(slot, self.now_ms(), limit)));
        futures_util::future::join_all(evictions).await;
    }

    /// Starts the idle sweeper once (on first use): every quarter of `idle_evict_after`
    /// (at least 50 ms, at most 30 s) it evicts the keys idle that long, whether or not
    /// anything asks for a key.
    pub(super) fn start_sweeper(&self) {
        let Some(limit) = self.config.idle_evict_after else {
            return;
        };
        // Every `get` passes here: a plain load first keeps that a read of a shared line.
        if self.sweeping.load(Ordering::Acquire) || self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let every = (limit / 4).clamp(Duration::from_millis(50), Duration::from_secs(30));
        let cancel = self.shared.cancel.clone();
        let weak = self.me.clone();
        self.shared.tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
                let Some(group) = weak.upgrade() else { return };
                group.sweep(limit).await;
            }
        });
    }
}
