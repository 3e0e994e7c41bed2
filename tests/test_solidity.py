"""The Solidity build: reproducible artifacts and readable compile errors."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from swarmchain.node.chain.solidity import compile_sources, render
from swarmchain.node.errors import CompileError
from swarmchain.node.paths import CONTRACT_ARTIFACTS, REPO_ROOT


def _committed(path: Path) -> bytes:
    """The artifact as committed to git (the working-tree file outside a git checkout)."""
    relative = path.relative_to(REPO_ROOT).as_posix()
    shown = subprocess.run(
        ["git", "show", f"HEAD:{relative}"], cwd=REPO_ROOT, capture_output=True, check=False
    )
    return shown.stdout if shown.returncode == 0 else path.read_bytes()


@pytest.fixture(scope="module")
def artifacts() -> dict[str, dict[str, Any]]:
    """One fresh compilation of contracts/src, shared by this module's tests."""
    return compile_sources()


def test_recompiling_reproduces_committed_artifacts_byte_for_byte(
    artifacts: dict[str, dict[str, Any]],
) -> None:
    assert artifacts, "no contracts compiled"
    committed = {p.stem for p in CONTRACT_ARTIFACTS.glob("*.json")}
    assert committed == set(artifacts)
    for name, artifact in artifacts.items():
        assert render(artifact) == _committed(CONTRACT_ARTIFACTS / f"{name}.json"), name


def test_artifacts_carry_abi_bytecode_version_and_source_hash(
    artifacts: dict[str, dict[str, Any]],
) -> None:
    artifact = artifacts["SwarmToken"]
    assert artifact["compiler"]["version"].startswith("0.8.37+commit.")
    assert artifact["bytecode"].startswith("0x60")
    assert artifact["sourceHash"].startswith("0x") and len(artifact["sourceHash"]) == 66
    assert any(item.get("name") == "transfer" for item in artifact["abi"])


def test_compile_error_names_file_and_line(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "Broken.sol").write_text(
        "// SPDX-License-Identifier: MIT\npragma solidity 0.8.37;\ncontract Broken {\n"
        "    function f() external { undefinedName(); }\n}\n"
    )
    with pytest.raises(CompileError) as info:
        compile_sources(src)
    message = str(info.value)
    assert "src/Broken.sol:4" in message
    assert "undefinedName" in message


def test_missing_sources_are_reported(tmp_path: Path) -> None:
    with pytest.raises(CompileError, match="no Solidity sources"):
        compile_sources(tmp_path)
