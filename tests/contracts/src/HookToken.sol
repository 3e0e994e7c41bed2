// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @notice What a `HookToken` holder may implement to be called on its transfers.
interface ITokenHooks {
    /// @notice Called on the sender before its tokens move.
    function tokensToSend(address to, uint256 amount) external;

    /// @notice Called on the recipient after tokens arrived.
    function tokensReceived(address from, uint256 amount) external;
}

/// @title HookToken
/// @notice TEST ONLY. A hostile ERC-20 with ERC-777-style callbacks: every transfer, mint
///         included, calls the sender before and the recipient after, if they registered. A
///         coordinator deployed with it hands control to an attacker in the middle of each of
///         its token calls, which is what the reentrancy tests need.
contract HookToken is ERC20 {
    mapping(address account => bool) public hooked;

    constructor(address holder, uint256 supply) ERC20("Hook Token", "HOOK") {
        _mint(holder, supply);
    }

    /// @notice Ask to be called on every transfer from or to the caller.
    function registerHooks() external {
        hooked[msg.sender] = true;
    }

    function _update(address from, address to, uint256 value) internal override {
        if (hooked[from]) ITokenHooks(from).tokensToSend(to, value);
        super._update(from, to, value);
        if (hooked[to]) ITokenHooks(to).tokensReceived(from, value);
    }
}
