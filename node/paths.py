"""Where the repository's non-Python parts live, for a source checkout."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ANVIL_DIR = REPO_ROOT / "anvil"
CONTRACTS_DIR = REPO_ROOT / "contracts"
CONTRACT_SOURCES = CONTRACTS_DIR / "src"
CONTRACT_ARTIFACTS = CONTRACTS_DIR / "artifacts"
