//! Operators' configuration files, arbitrary: a typed error naming the
//! problem, never a panic — and the daemon never starts on a half-read file.

use crate::config::{Config, Overrides};
use proptest::prelude::*;

/// Loads `text` as the configuration file, with every check `serve` runs.
fn load(text: &str) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let path = dir.path().join("gpubridge.toml");
    std::fs::write(&path, text).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let _ = Config::load(Some(&path), |_| None, &Overrides::default());
    Ok(())
}

proptest! {
    #[test]
    fn configuration_of_any_text_loads_or_is_refused(text in any::<String>()) {
        load(&text)?;
    }

    #[test]
    fn configuration_of_known_keys_and_any_values(
        section in prop::sample::select(vec!["http", "limits", "scheduler", "accounts", "x402", "webhooks", "stripe", "http.tls", "limits.per_ip", "scheduler.providers.groq"]),
        key in prop::sample::select(vec!["addr", "per_second", "burst", "max_body_bytes", "cert_file", "api_key", "timeout_seconds", "trusted_proxies", "enabled", "headers_timeout_ms", "rpc_url"]),
        value in prop_oneof![
            any::<i64>().prop_map(|v| v.to_string()),
            any::<f64>().prop_map(|v| format!("{v:?}")),
            any::<String>().prop_map(|v| format!("{v:?}")),
            Just("[]".to_string()),
            Just("true".to_string()),
        ],
    ) {
        load(&format!("[{section}]\n{key} = {value}\n"))?;
    }
}
