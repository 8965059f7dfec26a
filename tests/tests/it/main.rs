//! The integration tests, as one binary: each module is one area, and all share
//! `gpubridge_tests` (tests/src). One binary links the daemon once, not once per
//! file: a clean build is gigabytes smaller and links in a fraction of the time.

mod accounts;
mod bad_input;
mod bench;
mod cancel;
mod cards;
mod daemon;
mod dashboard;
mod echo;
mod failover;
mod fleet;
mod inline;
mod ledger;
mod limits;
mod mcp;
mod metrics;
mod node_protocol;
mod nodes;
mod openai;
mod providers;
mod restart;
mod retention;
mod routing;
mod soak;
mod ssrf;
mod storage;
mod tls;
mod topups;
mod upstream_http;
mod webhooks;
mod x402;
