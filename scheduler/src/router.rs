//! Picks the next backend for a job: `fast` minimises expected completion time
//! (learned latency plus queue wait), `cheap` the expected cost (price per
//! second × the duration learned for that backend), with expected time breaking
//! ties. Allocation-free: one pass over the routes.

use crate::backend::Route;
use gpubridge_protocol::Priority;

/// Indices of routes already tried for a job.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tried(u64);

impl Tried {
    pub fn insert(&mut self, index: usize) {
        self.0 |= 1 << index;
    }
    pub fn contains(self, index: usize) -> bool {
        self.0 & (1 << index) != 0
    }
}

/// The best untried, available route, or `None` when none is left.
pub fn pick(routes: &[Route], priority: Priority, tried: Tried, default_ms: f64) -> Option<usize> {
    let mut best: Option<(usize, f64, f64)> = None;
    for (index, route) in routes.iter().enumerate() {
        if tried.contains(index) || !route.backend.is_available() {
            continue;
        }
        let time = route.backend.expected_ms(default_ms);
        let primary = match priority {
            Priority::Fast => time,
            // Unrounded micro-dollars: short cheap jobs must not tie.
            Priority::Cheap => {
                route.backend.cost_per_second.0 as f64
                    * route.backend.expected_duration_ms(default_ms)
            }
        };
        let better = match best {
            None => true,
            Some((_, p, t)) => primary < p || (primary == p && time < t),
        };
        if better {
            best = Some((index, primary, time));
        }
    }
    best.map(|(index, _, _)| index)
}

/// Routes a job must skip because it asked for another backend model; `None` when
/// no route serves the model asked for.
pub fn exclusions(routes: &[Route], model: Option<&str>) -> Option<Tried> {
    let mut excluded = Tried::default();
    let Some(model) = model else {
        return Some(excluded);
    };
    let mut any = false;
    for (index, route) in routes.iter().enumerate() {
        if route.backend.id.model() == model {
            any = true;
        } else if !route.backend.id.is_fleet() {
            // Agent fleets stay: the pool picks an agent that serves the model.
            excluded.insert(index);
        }
    }
    any.then_some(excluded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendId;
    use crate::backend::BackendSet;
    use crate::catalog::Catalog;
    use crate::config::{ProviderConfig, SchedulerConfig};
    use crate::provider::Provider;

    fn live_set() -> BackendSet {
        let mut cfg = SchedulerConfig::default();
        for provider in Provider::HOSTED {
            cfg.providers.insert(
                provider,
                ProviderConfig {
                    api_key: Some("k".into()),
                    ..Default::default()
                },
            );
        }
        BackendSet::for_tests(&Catalog::builtin().unwrap(), &cfg)
    }

    const MODEL: &str = "meta-llama/Llama-3.3-70B-Instruct";

    fn provider(route: &Route) -> Option<Provider> {
        match &route.backend.id {
            BackendId::Hosted { provider, .. } => Some(*provider),
            BackendId::Fleet { .. } => None,
        }
    }

    #[test]
    fn fast_follows_latency_and_cheap_follows_cost() {
        let set = live_set();
        let routes = set.routes("llm-4090", Some(MODEL)).unwrap();
        for (i, route) in routes.iter().enumerate() {
            // Groq fastest, DeepInfra slowest.
            let ms = match provider(&routes[i]) {
                Some(Provider::Groq) => 100.0,
                Some(Provider::DeepInfra) => 900.0,
                _ => 400.0,
            };
            route.backend.latency_ms.observe(ms + i as f64, 1.0);
        }
        let fast = pick(routes, Priority::Fast, Tried::default(), 1000.0).unwrap();
        assert_eq!(provider(&routes[fast]), Some(Provider::Groq));
        // DeepInfra has the lowest price (300 µ$/s) but takes 9× as long as
        // Groq (600 µ$/s): Groq's jobs cost less.
        let cheap = pick(routes, Priority::Cheap, Tried::default(), 1000.0).unwrap();
        assert_eq!(provider(&routes[cheap]), Some(Provider::Groq));
        let mut tried = Tried::default();
        tried.insert(cheap);
        let next = pick(routes, Priority::Cheap, tried, 1000.0).unwrap();
        assert_eq!(
            provider(&routes[next]),
            Some(Provider::DeepInfra),
            "300 µ$/s × 0.9 s is next"
        );
    }

    #[test]
    fn cheap_follows_price_when_durations_are_alike() {
        let set = live_set();
        let routes = set.routes("llm-4090", Some(MODEL)).unwrap();
        // Nothing learned: every backend is expected to take the default.
        let cheap = pick(routes, Priority::Cheap, Tried::default(), 1000.0).unwrap();
        assert_eq!(provider(&routes[cheap]), Some(Provider::DeepInfra));
        for route in routes {
            route.backend.latency_ms.observe(500.0, 1.0);
        }
        let cheap = pick(routes, Priority::Cheap, Tried::default(), 1000.0).unwrap();
        assert_eq!(provider(&routes[cheap]), Some(Provider::DeepInfra));
        assert_eq!(routes[cheap].backend.expected_cost(1000.0).0, 150);
    }

    #[test]
    fn fast_accounts_for_queue_wait() {
        let set = live_set();
        let routes = set.routes("llm-4090", Some(MODEL)).unwrap();
        for route in routes {
            route.backend.latency_ms.observe(100.0, 1.0);
        }
        let first = pick(routes, Priority::Fast, Tried::default(), 1000.0).unwrap();
        // Fill the first choice's in-flight slots and queue some: it must lose.
        let backend = &routes[first].backend;
        let tickets: Vec<_> = (0..backend.limits.max_in_flight * 2)
            .filter_map(|_| backend.enter_queue())
            .collect();
        let next = pick(routes, Priority::Fast, Tried::default(), 1000.0).unwrap();
        assert_ne!(next, first);
        drop(tickets);
    }

    #[test]
    fn open_circuits_and_exhaustion_are_skipped() {
        let set = live_set();
        let routes = set.routes("rerank", None).unwrap();
        let mut tried = Tried::default();
        let mut seen = 0;
        while let Some(i) = pick(routes, Priority::Fast, tried, 500.0) {
            tried.insert(i);
            seen += 1;
        }
        let live = routes.iter().filter(|r| r.backend.is_live()).count();
        assert!(live >= 2);
        assert_eq!(
            seen, live,
            "every live route once; agent fleets are not live"
        );
        for route in routes {
            for _ in 0..10 {
                route
                    .backend
                    .breaker
                    .record_failure(crate::breaker::Admission::Normal);
            }
        }
        assert!(!routes.iter().any(|r| r.backend.is_available()));
        assert_eq!(pick(routes, Priority::Fast, Tried::default(), 500.0), None);
    }
}
