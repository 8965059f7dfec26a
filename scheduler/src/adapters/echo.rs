//! The built-in diagnostic backend: the output is the input.

use super::Call;
use serde_json::Value;

pub fn run(call: &Call<'_>) -> Value {
    call.input.clone()
}
