//! A timer to the microsecond inside the runtime: a timerfd the reactor
//! watches. Tokio's own timer fires on whole milliseconds, so at thousands of
//! requests a second it sends them in bursts, up to a millisecond late; a
//! thread of our own sleeping to each send would cost a cross-thread wake
//! per request. Here the worker that polls the reactor wakes for the timer
//! and sends the request itself.

use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;

pub struct Ticker {
    fd: AsyncFd<OwnedFd>,
}

impl Ticker {
    pub fn new() -> std::io::Result<Ticker> {
        let flags = TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC;
        let fd = timerfd_create(TimerfdClockId::Monotonic, flags)?;
        // `new` is deprecated for types whose descriptor could change or close
        // under it (`register` is its unsafe successor, and unsafe code is
        // forbidden here); an `OwnedFd` owned by the `AsyncFd` cannot.
        #[allow(deprecated)]
        let fd = AsyncFd::new(fd)?;
        Ok(Ticker { fd })
    }

    /// Returns at `at` (at once if it has passed).
    pub async fn until(&self, at: Instant) -> std::io::Result<()> {
        let Some(wait) = at
            .checked_duration_since(Instant::now())
            .filter(|w| !w.is_zero())
        else {
            return Ok(());
        };
        let spec = Itimerspec {
            it_interval: timespec(Duration::ZERO),
            it_value: timespec(wait),
        };
        timerfd_settime(&self.fd, TimerfdTimerFlags::empty(), &spec)?;
        loop {
            let mut ready = self.fd.readable().await?;
            let mut expirations = [0u8; 8];
            match rustix::io::read(self.fd.get_ref(), &mut expirations) {
                Ok(_) => return Ok(()),
                Err(rustix::io::Errno::AGAIN) => ready.clear_ready(),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn timespec(duration: Duration) -> rustix::time::Timespec {
    rustix::time::Timespec {
        tv_sec: duration.as_secs() as i64,
        tv_nsec: i64::from(duration.subsec_nanos()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_once_its_time_has_come_and_at_once_when_past() {
        let ticker = Ticker::new().unwrap();
        let at = Instant::now() + Duration::from_millis(3);
        ticker.until(at).await.unwrap();
        assert!(Instant::now() >= at, "not before its time");
        // Passed: no wait, and no expiration left behind to trip the next one.
        ticker.until(at).await.unwrap();
        let later = Instant::now() + Duration::from_millis(2);
        ticker.until(later).await.unwrap();
        assert!(Instant::now() >= later);
    }
}
