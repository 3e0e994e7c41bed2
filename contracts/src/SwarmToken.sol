// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title SwarmToken
/// @notice The ERC-20 that members stake and that rewards are paid in.
/// @dev Mint rights are as small as they can be: the whole fixed supply is minted once, in the
///      constructor, to `holder`. Nobody can mint afterwards, so the supply is an invariant that
///      tests and auditors can check against (supply == sum of all balances).
contract SwarmToken is ERC20 {
    /// @param holder Receives the entire supply (the deployer, who funds members and the reward pool).
    /// @param supply The fixed total supply, in wei-denominated token units (18 decimals).
    constructor(address holder, uint256 supply) ERC20("Swarm Token", "SWARM") {
        _mint(holder, supply);
    }
}
