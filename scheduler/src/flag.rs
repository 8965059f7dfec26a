//! A one-way switch tasks can wait on: what a `watch` channel of `bool` does,
//! in a few words instead of a few hundred bytes. Every job in memory carries
//! two (finished, cancelled), and a deep queue holds a hundred thousand jobs.

use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

#[derive(Default)]
pub(crate) struct Flag {
    set: AtomicBool,
    changed: Notify,
}

impl Flag {
    /// Sets it for good and wakes every waiter.
    pub fn set(&self) {
        self.set.store(true, Ordering::Release);
        self.changed.notify_waiters();
    }

    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// Resolves once it is set (at once if it is).
    pub async fn wait(&self) {
        let notified = self.changed.notified();
        tokio::pin!(notified);
        // Registered before the check, so a `set` in between still wakes us.
        notified.as_mut().enable();
        if !self.is_set() {
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn waiters_wake_once_set_and_later_waits_return_at_once() {
        let flag = Arc::new(Flag::default());
        assert!(!flag.is_set());
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let flag = flag.clone();
                tokio::spawn(async move { flag.wait().await })
            })
            .collect();
        tokio::task::yield_now().await;
        let early = tokio::time::timeout(Duration::from_millis(20), flag.wait()).await;
        assert!(early.is_err(), "not set yet");
        flag.set();
        for waiter in waiters {
            tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("woken")
                .unwrap();
        }
        flag.wait().await;
        assert!(flag.is_set());
    }
}
