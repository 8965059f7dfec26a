//! Email addresses as account names: validated, then lower-cased so one mailbox
//! is one account whatever its capitalisation.

use email_address::{EmailAddress, Options};

const MAX_LEN: usize = 254;

/// The normalised address, or `None` when it is not a deliverable-looking address.
pub fn normalize(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() || trimmed.len() > MAX_LEN {
        return None;
    }
    let options = Options {
        minimum_sub_domains: 2,
        allow_domain_literal: false,
        allow_display_text: false,
        allow_long_local_parts: false,
    };
    EmailAddress::parse_with_options(trimmed, options).ok()?;
    Some(trimmed.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_addresses_and_folds_case() {
        assert_eq!(
            normalize(" You@Example.COM ").as_deref(),
            Some("you@example.com")
        );
        assert!(normalize("a.b+tag@mail.example.org").is_some());
    }

    #[test]
    fn refuses_what_is_not_an_address() {
        for bad in [
            "",
            "plain",
            "@example.com",
            "you@",
            "you@localhost",
            "you@[127.0.0.1]",
            "Name <you@example.com>",
            "two@@example.com",
            "sp ace@example.com",
        ] {
            assert_eq!(normalize(bad), None, "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(normalize(&long), None);
    }
}
