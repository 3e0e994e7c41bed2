"""Chain access: the Solidity build, contract bindings, deployment and transactions."""
