//! Providers that speak only the OpenAI-compatible API: Groq, DeepInfra and
//! Fireworks. A new such provider needs a `Provider` variant and nothing here.

use super::client::ProviderClient;
use super::openai;
use crate::executor::{AttemptError, BoxFuture, Call, Executed, Executor};

pub struct OpenAiCompatible(pub ProviderClient);

impl Executor for OpenAiCompatible {
    fn execute<'a>(&'a self, call: &'a Call<'a>) -> BoxFuture<'a, Result<Executed, AttemptError>> {
        Box::pin(async move { openai::serve(&self.0, call).await.map(Executed::output) })
    }
}
