// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {ISwarmCoordinator} from "../interfaces/ISwarmCoordinator.sol";

/// @title SwarmHashes
/// @notice Every hash the protocol agrees on, in one place, so off-chain code can mirror it.
/// @dev The Python bindings (`node/chain/protocol.py`) compute the same values; a test holds
///      both sides to the same bytes.
library SwarmHashes {
    /// @notice A node's commitment to its update: binds the reveal to its sender, round and swarm.
    function commitment(
        string calldata cid,
        bytes32 contentHash,
        uint64 numSamples,
        bytes32 salt,
        address node,
        uint64 round,
        address coordinator
    ) internal pure returns (bytes32) {
        return keccak256(abi.encode(cid, contentHash, numSamples, salt, node, round, coordinator));
    }

    /// @notice The key stake accumulates under: the hash of the whole attested tuple.
    function outcomeKey(ISwarmCoordinator.Outcome calldata outcome) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                outcome.checkpointHash,
                outcome.checkpointCid,
                outcome.acceptedBitmap,
                outcome.rewardsRoot,
                outcome.rewardTotal
            )
        );
    }

    /// @notice The OpenZeppelin StandardMerkleTree leaf of an (address, uint256) reward.
    /// @dev Hashed twice so a leaf can never pass for an inner node (second-preimage safety).
    function rewardLeaf(address account, uint256 amount) internal pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(account, amount))));
    }

    /// @notice A round's public seed: fixed when the round opens, readable by every node and auditor.
    function roundSeed(
        address coordinator,
        uint64 round,
        uint64 baseRound,
        bytes32 baseCheckpointHash,
        uint64 openedAt
    ) internal view returns (bytes32) {
        return keccak256(abi.encode(block.chainid, coordinator, round, baseRound, baseCheckpointHash, openedAt));
    }
}
