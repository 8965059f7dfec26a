//! The `X-Priority` routing hint.

use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// `fast` prefers the lowest expected completion time; `cheap` the lowest cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    #[default]
    Fast,
    Cheap,
}

#[derive(Debug, thiserror::Error)]
#[error("unknown priority {0:?}: expected \"fast\" or \"cheap\"")]
pub struct UnknownPriority(pub String);

impl FromStr for Priority {
    type Err = UnknownPriority;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fast" => Ok(Priority::Fast),
            "cheap" => Ok(Priority::Cheap),
            _ => Err(UnknownPriority(s.to_string())),
        }
    }
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Fast => "fast",
            Priority::Cheap => "cheap",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_case_insensitively() {
        assert_eq!("FAST".parse::<Priority>().unwrap(), Priority::Fast);
        assert_eq!(" cheap ".parse::<Priority>().unwrap(), Priority::Cheap);
        assert!("quick".parse::<Priority>().is_err());
    }
}
