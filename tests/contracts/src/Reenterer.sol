// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {ITokenHooks} from "./HookToken.sol";

/// @title Reenterer
/// @notice TEST ONLY. An attacker contract: it acts as a member or reward recipient through
///         `execute`, and from inside the next token callback it sends one armed call back into
///         the target, recording whether that call succeeded and its return or revert data
///         (instead of reverting, so the outer call completes and the test can inspect both).
contract Reenterer is ITokenHooks {
    address public immutable target;
    bytes public armed; // calldata sent to `target` from inside the next callback
    bool public reentered; // whether a callback sent the armed call
    bool public reentrySucceeded;
    bytes public reentryResult; // the armed call's return data, or its revert data

    constructor(address target_) {
        target = target_;
    }

    /// @notice Call `to` with `data` as this contract, bubbling up a revert unchanged.
    function execute(address to, bytes calldata data) external returns (bytes memory result) {
        bool ok;
        (ok, result) = to.call(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(result, 32), mload(result))
            }
        }
    }

    /// @notice Send `data` to the target from inside the next token callback (once).
    function arm(bytes calldata data) external {
        armed = data;
        reentered = false;
    }

    function tokensToSend(address, uint256) external {
        _reenter();
    }

    function tokensReceived(address, uint256) external {
        _reenter();
    }

    function _reenter() private {
        if (armed.length == 0) return;
        bytes memory data = armed;
        delete armed;
        reentered = true;
        (reentrySucceeded, reentryResult) = target.call(data);
    }
}
