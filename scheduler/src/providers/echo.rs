//! The built-in diagnostic backend: the output is the input.

use crate::catalog::Operation;
use crate::executor::{AttemptError, BoxFuture, Call, Executed, Executor};

pub struct Echo;

impl Executor for Echo {
    fn execute<'a>(&'a self, call: &'a Call<'a>) -> BoxFuture<'a, Result<Executed, AttemptError>> {
        let result = match call.binding.operation {
            Operation::Echo => Ok(Executed::output(call.input.clone())),
            other => Err(AttemptError::Unsupported(other)),
        };
        Box::pin(std::future::ready(result))
    }
}
