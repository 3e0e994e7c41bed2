"""Chain access: the Anvil launcher, the Solidity build, contract bindings."""
