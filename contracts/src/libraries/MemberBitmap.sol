// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title MemberBitmap
/// @notice Sets of member indices as bytes: bit i is bit (i % 8), counted from the least
///         significant, of byte i / 8. Any number of members fits; missing trailing bytes are 0.
library MemberBitmap {
    /// @notice Whether member `index` is in the set.
    function contains(bytes storage bitmap, uint256 index) internal view returns (bool) {
        uint256 byteIndex = index >> 3;
        if (byteIndex >= bitmap.length) return false;
        return (uint8(bitmap[byteIndex]) >> (index & 7)) & 1 == 1;
    }

    /// @notice Whether member `index` is in a set passed in calldata.
    function contains(bytes calldata bitmap, uint256 index) internal pure returns (bool) {
        uint256 byteIndex = index >> 3;
        if (byteIndex >= bitmap.length) return false;
        return (uint8(bitmap[byteIndex]) >> (index & 7)) & 1 == 1;
    }

    /// @notice The most bytes a bitmap over `memberCount` indices needs.
    function maxLength(uint256 memberCount) internal pure returns (uint256) {
        return (memberCount + 7) >> 3;
    }
}
