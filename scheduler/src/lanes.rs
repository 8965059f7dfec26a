//! Several connection pools to one provider, so HTTP/2 never waits on a
//! server's stream limit. One HTTP/2 connection carries every request to a
//! host, and hyper's pool never opens a second one: requests beyond the
//! server's `SETTINGS_MAX_CONCURRENT_STREAMS` would queue unseen, with long LLM
//! streams holding their slots. Each lane is its own pool (so its own
//! connection); a request takes the first lane with fewer than `streams`
//! requests in flight. RFC 9113 asks servers to allow at least 100 streams.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Most pools per provider: 1,600 requests in flight at the default 100
/// streams each; beyond that the least busy lane takes the request.
pub const MAX_LANES: usize = 16;

pub struct Lanes<C> {
    clients: Box<[C]>,
    in_flight: Arc<[AtomicU32]>,
    streams: u32,
}

/// A request's place in its lane, given back when dropped (with the response
/// body it travels with).
pub struct Slot {
    in_flight: Arc<[AtomicU32]>,
    lane: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.in_flight[self.lane].fetch_sub(1, Ordering::Relaxed);
    }
}

impl<C> Lanes<C> {
    /// `count` lanes made by `make`, each taking up to `streams` requests before the next.
    pub fn new(count: usize, streams: u32, make: impl FnMut(usize) -> C) -> Lanes<C> {
        let count = count.clamp(1, MAX_LANES);
        Lanes {
            clients: (0..count).map(make).collect(),
            in_flight: (0..count).map(|_| AtomicU32::new(0)).collect(),
            streams: streams.max(1),
        }
    }

    /// The client to send the next request with, and its slot.
    pub fn pick(&self) -> (&C, Slot) {
        let lane = self.free_lane().unwrap_or_else(|| self.least_busy());
        let slot = Slot {
            in_flight: self.in_flight.clone(),
            lane,
        };
        (&self.clients[lane], slot)
    }

    /// Takes a place in the first lane with room; the add comes first, so two
    /// requests never both take a lane's last place.
    fn free_lane(&self) -> Option<usize> {
        self.in_flight.iter().position(|count| {
            let before = count.fetch_add(1, Ordering::Relaxed);
            if before < self.streams {
                return true;
            }
            count.fetch_sub(1, Ordering::Relaxed);
            false
        })
    }

    fn least_busy(&self) -> usize {
        let (lane, count) = self
            .in_flight
            .iter()
            .enumerate()
            .min_by_key(|(_, count)| count.load(Ordering::Relaxed))
            .unwrap_or((0, &self.in_flight[0]));
        count.fetch_add(1, Ordering::Relaxed);
        lane
    }

    /// Requests in flight per lane.
    #[cfg(test)]
    fn loads(&self) -> Vec<u32> {
        self.in_flight
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lane_fills_before_the_next_is_used() {
        let lanes = Lanes::new(3, 2, |i| i);
        let slots: Vec<Slot> = (0..5).map(|_| lanes.pick().1).collect();
        assert_eq!(lanes.loads(), vec![2, 2, 1]);
        drop(slots);
        assert_eq!(lanes.loads(), vec![0, 0, 0]);
    }

    #[test]
    fn a_freed_place_is_taken_before_a_later_lane() {
        let lanes = Lanes::new(2, 2, |i| i);
        let first = lanes.pick();
        let _second = lanes.pick();
        let (&third, _third_slot) = lanes.pick();
        assert_eq!(third, 1);
        drop(first);
        let (&again, _) = lanes.pick();
        assert_eq!(again, 0);
    }

    #[test]
    fn when_every_lane_is_full_the_least_busy_takes_more() {
        let lanes = Lanes::new(2, 1, |i| i);
        let _a = lanes.pick();
        let _b = lanes.pick();
        let (&lane, _c) = lanes.pick();
        assert_eq!(lanes.loads().iter().sum::<u32>(), 3);
        let (&next, _d) = lanes.pick();
        assert_ne!(lane, next, "the overflow spreads");
        assert_eq!(lanes.loads(), vec![2, 2]);
    }

    #[test]
    fn counts_are_clamped_to_something_usable() {
        assert_eq!(Lanes::new(0, 0, |i| i).loads(), vec![0]);
        assert_eq!(Lanes::new(1000, 5, |i| i).loads().len(), MAX_LANES);
    }
}
