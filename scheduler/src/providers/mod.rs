//! Hosted providers and the built-in echo, one file each, every one an
//! [`Executor`]. To add a provider: a `Provider` variant (provider.rs: its name,
//! base URL and key variable), a file here implementing `Executor`, and its line
//! in [`executor_for`]. An OpenAI-compatible provider reuses
//! [`compatible::OpenAiCompatible`] and needs no file.

mod client;
mod compatible;
mod echo;
mod jina;
mod openai;
mod replicate;
mod together;

pub use client::ProviderClient;

use crate::executor::Executor;
use crate::provider::Provider;
use std::sync::Arc;

/// The executor of one provider's backends.
pub fn executor_for(client: ProviderClient) -> Arc<dyn Executor> {
    match client.provider {
        Provider::Groq | Provider::DeepInfra | Provider::Fireworks => {
            Arc::new(compatible::OpenAiCompatible(client))
        }
        Provider::Together => Arc::new(together::Together(client)),
        Provider::Jina => Arc::new(jina::Jina(client)),
        Provider::Replicate => Arc::new(replicate::Replicate(client)),
        Provider::Local => Arc::new(echo::Echo),
    }
}

/// An executor that runs nothing (routing tests).
#[cfg(test)]
pub(crate) struct Idle;

#[cfg(test)]
impl Executor for Idle {
    fn execute<'a>(
        &'a self,
        call: &'a crate::executor::Call<'a>,
    ) -> crate::executor::BoxFuture<
        'a,
        Result<crate::executor::Executed, crate::executor::AttemptError>,
    > {
        let op = call.binding.operation;
        Box::pin(std::future::ready(Err(
            crate::executor::AttemptError::Unsupported(op),
        )))
    }
}
