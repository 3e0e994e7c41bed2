"""Compile contracts/src into contracts/artifacts (``--check`` compares instead of writing)."""

from swarmchain.node.chain.solidity import main

if __name__ == "__main__":
    raise SystemExit(main())
