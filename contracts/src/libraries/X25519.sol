// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title X25519
/// @notice Checks on X25519 public keys as 32 raw bytes (little-endian u-coordinates).
library X25519 {
    /// @notice Whether `key` encodes a point of small order: X25519 with it gives the all-zero
    ///         secret for every private key, so nothing can be encrypted to it.
    /// @dev libsodium's list (`has_small_order`): 0, 1, the two points of order 8, p - 1, p and
    ///      p + 1. X25519 ignores bit 255 (the top bit of the last byte), so it is cleared first.
    function isSmallOrder(bytes32 key) internal pure returns (bool) {
        bytes32 u = key & ~bytes32(uint256(0x80));
        return u == bytes32(0)
            || u == 0x0100000000000000000000000000000000000000000000000000000000000000
            || u == 0xe0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800
            || u == 0x5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157
            || u == 0xecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f
            || u == 0xedffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f
            || u == 0xeeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f;
    }
}
