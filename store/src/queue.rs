//! The writer thread's inbox: a mutex-guarded queue with a condition variable.
//! Channels that spin and `sched_yield` before they park (crossbeam's, std's)
//! cost the writer about seven system calls per commit at moderate load, when
//! it drains its queue and waits again after nearly every commit; this one
//! parks at once and is woken only when it is actually waiting.

use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Producers' side; clones share one queue.
pub(crate) struct Inbox<T>(Arc<Shared<T>>);

/// The single consumer's side; dropping it closes the queue to producers.
pub(crate) struct Outbox<T>(Arc<Shared<T>>);

struct Shared<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

struct State<T> {
    items: VecDeque<T>,
    /// An item queued that must not wait.
    urgent: bool,
    /// When the oldest item queued that may wait was queued.
    lazy_since: Option<Instant>,
    /// The consumer is parked waiting for an item.
    waiting: bool,
    /// The consumer is gone: nothing sent now would be read.
    closed: bool,
}

pub(crate) fn queue<T>() -> (Inbox<T>, Outbox<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            urgent: false,
            lazy_since: None,
            waiting: false,
            closed: false,
        }),
        ready: Condvar::new(),
    });
    (Inbox(shared.clone()), Outbox(shared))
}

impl<T> Clone for Inbox<T> {
    fn clone(&self) -> Self {
        Inbox(self.0.clone())
    }
}

impl<T> Inbox<T> {
    /// Queues `item`, or hands it back when the consumer is gone. An item
    /// that is not `urgent` may wait up to the consumer's linger for company:
    /// it wakes a parked consumer only to start that clock.
    pub fn send(&self, item: T, urgent: bool) -> Result<(), T> {
        let mut state = self.0.state.lock();
        if state.closed {
            return Err(item);
        }
        state.items.push_back(item);
        let starts_clock = !urgent && state.lazy_since.is_none();
        if urgent {
            state.urgent = true;
        } else {
            state.lazy_since.get_or_insert_with(Instant::now);
        }
        let wake = state.waiting && (urgent || starts_clock);
        if wake {
            state.waiting = false;
        }
        drop(state);
        if wake {
            self.0.ready.notify_one();
        }
        Ok(())
    }
}

impl<T> Outbox<T> {
    /// Blocks until something is due, then moves up to `max` items (at least
    /// one) into `into`. Due: an urgent item is queued, or the oldest other
    /// one has waited `linger`.
    pub fn recv_many(&self, into: &mut Vec<T>, max: usize, linger: Duration) {
        let mut state = self.0.state.lock();
        loop {
            let now = Instant::now();
            let lingered = state.lazy_since.map(|since| since + linger);
            if !state.items.is_empty() && (state.urgent || lingered.is_some_and(|at| now >= at)) {
                break;
            }
            state.waiting = true;
            match lingered {
                Some(at) => {
                    self.0.ready.wait_until(&mut state, at);
                }
                None => self.0.ready.wait(&mut state),
            }
            state.waiting = false;
        }
        let take = state.items.len().min(max.max(1));
        into.extend(state.items.drain(..take));
        // What is left (beyond `max`) is due at once anyway.
        if state.items.is_empty() {
            state.urgent = false;
            state.lazy_since = None;
        }
    }
}

impl<T> Drop for Outbox<T> {
    fn drop(&mut self) {
        let unread = {
            let mut state = self.0.state.lock();
            state.closed = true;
            std::mem::take(&mut state.items)
        };
        // Dropping what was queued and never read answers its senders (their
        // acknowledgement channels close).
        drop(unread);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_LINGER: Duration = Duration::ZERO;

    #[test]
    fn delivers_in_order_in_groups_of_at_most_max() {
        let (inbox, outbox) = queue();
        for i in 0..5 {
            assert!(inbox.send(i, true).is_ok());
        }
        let mut got = Vec::new();
        outbox.recv_many(&mut got, 3, NO_LINGER);
        assert_eq!(got, vec![0, 1, 2]);
        outbox.recv_many(&mut got, 3, NO_LINGER);
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_lazy_item_waits_for_its_linger_or_an_urgent_one() {
        let (inbox, outbox) = queue();
        let (taken, took) = std::sync::mpsc::channel();
        let consumer = std::thread::spawn(move || {
            let mut got = Vec::new();
            outbox.recv_many(&mut got, 8, Duration::from_secs(3600));
            let _ = taken.send(got);
            let mut later = Vec::new();
            outbox.recv_many(&mut later, 8, Duration::from_millis(5));
            later
        });
        assert!(inbox.send(1, false).is_ok());
        let early = took.recv_timeout(Duration::from_millis(50));
        assert!(early.is_err(), "taken before its linger");
        assert!(inbox.send(2, true).is_ok());
        assert_eq!(took.recv().ok(), Some(vec![1, 2]));
        // Alone, a lazy item is taken once it has lingered.
        assert!(inbox.send(3, false).is_ok());
        assert_eq!(consumer.join().ok(), Some(vec![3]));
    }

    #[test]
    fn a_parked_consumer_is_woken_by_a_send_from_another_thread() {
        let (inbox, outbox) = queue();
        let consumer = std::thread::spawn(move || {
            let mut got = Vec::new();
            while got.len() < 100 {
                outbox.recv_many(&mut got, 7, Duration::from_millis(1));
            }
            got
        });
        let producers: Vec<_> = (0..4)
            .map(|p| {
                let inbox = inbox.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        assert!(inbox.send(p * 100 + i, p % 2 == 0).is_ok());
                    }
                })
            })
            .collect();
        for producer in producers {
            assert!(producer.join().is_ok());
        }
        let got = consumer.join().unwrap_or_default();
        assert_eq!(got.len(), 100);
        for p in 0..4 {
            let mine: Vec<_> = got.iter().filter(|v| **v / 100 == p).collect();
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "one producer's order kept"
            );
        }
    }

    #[test]
    fn sending_after_the_consumer_is_gone_hands_the_item_back() {
        let (inbox, outbox) = queue();
        drop(outbox);
        assert_eq!(inbox.send(7, true), Err(7));
    }
}
