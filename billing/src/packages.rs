//! The contract's credit packages, the same for card and USDC top-ups: what
//! each costs and the credits (with its bonus) it buys.

use gpubridge_protocol::Micros;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Package {
    pub key: &'static str,
    pub price: Micros,
    pub credits: Micros,
}

const fn dollars(cents: u64) -> Micros {
    Micros(cents * 10_000)
}

pub const PACKAGES: [Package; 4] = [
    Package {
        key: "credits_10",
        price: dollars(1_000),
        credits: dollars(1_000),
    },
    Package {
        key: "credits_25",
        price: dollars(2_500),
        credits: dollars(2_625),
    },
    Package {
        key: "credits_50",
        price: dollars(5_000),
        credits: dollars(5_500),
    },
    Package {
        key: "credits_100",
        price: dollars(10_000),
        credits: dollars(11_500),
    },
];

pub fn package(key: &str) -> Option<Package> {
    PACKAGES.iter().copied().find(|p| p.key == key)
}

pub fn package_keys() -> Vec<&'static str> {
    PACKAGES.iter().map(|p| p.key).collect()
}

/// `amount` less a fee of `fee_bps` basis points (rounded up): what a payment
/// buys at the base rate.
pub fn less_fee(amount: Micros, fee_bps: u64) -> Micros {
    Micros(amount.0 - fee(amount, fee_bps).0)
}

/// The fee on `amount`, rounded up.
pub fn fee(amount: Micros, fee_bps: u64) -> Micros {
    Micros(
        (amount.0 as u128 * fee_bps as u128)
            .div_ceil(10_000)
            .min(amount.0 as u128) as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_and_their_bonuses_are_the_contracts() {
        let bonus = |key| {
            let p = package(key).unwrap();
            (p.credits.0 - p.price.0) * 100 / p.price.0
        };
        assert_eq!(
            [
                bonus("credits_10"),
                bonus("credits_25"),
                bonus("credits_50"),
                bonus("credits_100")
            ],
            [0, 5, 10, 15]
        );
        assert!(package("credits_1000").is_none());
        assert_eq!(fee(Micros(25_000_000), 50), Micros(125_000));
        assert_eq!(fee(Micros(1), 50), Micros(1), "rounded up");
        assert_eq!(less_fee(Micros(10_000_000), 50), Micros(9_950_000));
    }
}
