//! The Solidity interfaces GPU-Bridge calls, as alloy bindings: the asset
//! (an ERC-20 with EIP-3009, like USDC), the sanctions oracle, and the EIP-712
//! message EIP-3009 payers sign.

// The bindings mirror the contracts' signatures, however many arguments they take.
#![allow(clippy::too_many_arguments)]

alloy::sol! {
    #[sol(rpc)]
    interface Token {
        event Transfer(address indexed from, address indexed to, uint256 value);
        event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);
        function balanceOf(address account) external view returns (uint256);
        function authorizationState(address authorizer, bytes32 nonce) external view returns (bool);
        function transferWithAuthorization(
            address from,
            address to,
            uint256 value,
            uint256 validAfter,
            uint256 validBefore,
            bytes32 nonce,
            uint8 v,
            bytes32 r,
            bytes32 s
        ) external;
    }

    #[sol(rpc)]
    interface SanctionsOracle {
        function isSanctioned(address addr) external view returns (bool);
    }

    /// EIP-3009's signed message; `eip712_signing_hash` under the asset's domain.
    struct TransferWithAuthorization {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }
}
