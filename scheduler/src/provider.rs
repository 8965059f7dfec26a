//! The hosted providers GPU-Bridge can route to (and the built-in echo), and
//! where their settings come from. Operators' own GPUs are node fleets, not providers.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Groq,
    Together,
    DeepInfra,
    Fireworks,
    Replicate,
    Jina,
    /// Built into the daemon (the `echo` service); always live, needs no key.
    Local,
}

impl Provider {
    pub const HOSTED: [Provider; 6] = [
        Provider::Groq,
        Provider::Together,
        Provider::DeepInfra,
        Provider::Fireworks,
        Provider::Replicate,
        Provider::Jina,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Provider::Groq => "groq",
            Provider::Together => "together",
            Provider::DeepInfra => "deepinfra",
            Provider::Fireworks => "fireworks",
            Provider::Replicate => "replicate",
            Provider::Jina => "jina",
            Provider::Local => "local",
        }
    }

    /// The provider's documented API root, including its version prefix.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Provider::Groq => "https://api.groq.com/openai/v1",
            Provider::Together => "https://api.together.xyz/v1",
            Provider::DeepInfra => "https://api.deepinfra.com/v1/openai",
            Provider::Fireworks => "https://api.fireworks.ai/inference/v1",
            Provider::Replicate => "https://api.replicate.com/v1",
            Provider::Jina => "https://api.jina.ai/v1",
            Provider::Local => "local:",
        }
    }

    /// Environment variable holding the provider's credential.
    pub fn key_env(self) -> Option<&'static str> {
        match self {
            Provider::Groq => Some("GROQ_API_KEY"),
            Provider::Together => Some("TOGETHER_API_KEY"),
            Provider::DeepInfra => Some("DEEPINFRA_API_KEY"),
            Provider::Fireworks => Some("FIREWORKS_API_KEY"),
            Provider::Replicate => Some("REPLICATE_API_TOKEN"),
            Provider::Jina => Some("JINA_API_KEY"),
            Provider::Local => None,
        }
    }

    /// Environment variable that points the provider at another server.
    pub fn base_url_env(self) -> Option<String> {
        match self {
            Provider::Local => None,
            other => Some(format!(
                "GPUBRIDGE_{}_BASE_URL",
                other.name().to_uppercase()
            )),
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_match_the_documented_ones() {
        assert_eq!(
            Provider::Groq.base_url_env().unwrap(),
            "GPUBRIDGE_GROQ_BASE_URL"
        );
        assert_eq!(
            Provider::DeepInfra.base_url_env().unwrap(),
            "GPUBRIDGE_DEEPINFRA_BASE_URL"
        );
        assert_eq!(Provider::Replicate.key_env(), Some("REPLICATE_API_TOKEN"));
        assert_eq!(Provider::Local.key_env(), None);
    }
}
