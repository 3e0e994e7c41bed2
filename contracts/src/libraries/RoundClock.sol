// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {ISwarmCoordinator} from "../interfaces/ISwarmCoordinator.sol";

/// @title RoundClock
/// @notice Pure timing rules of a round: when each window ends, and which window a time is in.
/// @dev A window ends at its deadline, or early, at the moment the last participant who can act in
///      it has acted; with nobody able to act it is over as soon as it starts. Deadlines chain: the
///      reveal window runs `revealDuration` from the end of the commit window, and so on.
library RoundClock {
    /// @notice What the rules need to know about one round.
    struct Clock {
        uint64 openedAt; // timestamp the round opened
        uint64 commitClosedAt; // timestamp of the commit that made commits == activeAtOpen, else 0
        uint64 revealClosedAt; // timestamp of the reveal that made reveals == commits, else 0
        uint64 attestClosedAt; // timestamp of the attestation that made attests == activeAtOpen, else 0
        uint32 activeAtOpen; // members who may commit and attest
        uint32 commits;
        uint32 reveals;
        uint32 attests;
    }

    /// @notice The three window ends of a round.
    /// @dev Sums stay far below 2**64: the coordinator bounds each duration by ten years.
    /// @return commitEnd Commits are accepted while block.timestamp < commitEnd.
    /// @return revealEnd Reveals are accepted in [commitEnd, revealEnd).
    /// @return attestEnd Attestations are accepted in [revealEnd, attestEnd).
    function deadlines(Clock memory c, uint64 commitDuration, uint64 revealDuration, uint64 attestDuration)
        internal
        pure
        returns (uint64 commitEnd, uint64 revealEnd, uint64 attestEnd)
    {
        if (c.commits == c.activeAtOpen) {
            commitEnd = c.activeAtOpen == 0 ? c.openedAt : c.commitClosedAt;
        } else {
            commitEnd = c.openedAt + commitDuration;
        }
        // Only committers reveal, so the reveal window is over once reveals == commits.
        if (c.reveals == c.commits) {
            revealEnd = c.commits == 0 ? commitEnd : c.revealClosedAt;
        } else {
            revealEnd = commitEnd + revealDuration;
        }
        if (c.attests == c.activeAtOpen) {
            attestEnd = c.activeAtOpen == 0 ? revealEnd : c.attestClosedAt;
        } else {
            attestEnd = revealEnd + attestDuration;
        }
    }

    /// @notice The window `timestamp` falls in, given the window ends.
    function phaseAt(uint64 commitEnd, uint64 revealEnd, uint64 attestEnd, uint256 timestamp)
        internal
        pure
        returns (ISwarmCoordinator.Phase)
    {
        if (timestamp < commitEnd) return ISwarmCoordinator.Phase.Commit;
        if (timestamp < revealEnd) return ISwarmCoordinator.Phase.Reveal;
        if (timestamp < attestEnd) return ISwarmCoordinator.Phase.Attest;
        return ISwarmCoordinator.Phase.Ended;
    }
}
