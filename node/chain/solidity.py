"""Compile the Solidity sources in ``contracts/src`` into committed artifacts.

The sources go through the compiler's standard-JSON interface. The compiler is the pinned
solc-js (``contracts/package-lock.json``), or a native ``solc`` on PATH through py-solc-x when its
version is the pinned one, so both give the same bytes. Each contract becomes
``contracts/artifacts/<Name>.json`` with its ABI, bytecode, compiler version and the hash of its
source file. Output is canonical JSON, so recompiling unchanged sources reproduces the artifacts
byte for byte; a test holds us to that.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from swarmchain.node.errors import CompileError, ToolchainError
from swarmchain.node.paths import CONTRACT_ARTIFACTS, CONTRACT_SOURCES, CONTRACTS_DIR

SOLC_VERSION = "0.8.37"
EVM_VERSION = "cancun"
OPTIMIZER_RUNS = 200
SOLCJS = CONTRACTS_DIR / "node_modules" / "solc" / "solc.js"
# Imports resolve relative to contracts/ for both compilers, so both see the same source unit names.
REMAPPING = "@openzeppelin/contracts/=node_modules/@openzeppelin/contracts/"


def standard_input(sources_dir: Path = CONTRACT_SOURCES) -> dict[str, Any]:
    """Build the compiler's standard-JSON input for every ``.sol`` file under `sources_dir`.

    Source names are paths relative to ``contracts/`` (``src/SwarmToken.sol``) and
    imports of ``@openzeppelin/...`` are remapped into ``node_modules``, so the metadata never
    holds a machine's absolute paths.
    """
    files = sorted(sources_dir.rglob("*.sol"))
    if not files:
        raise CompileError(f"no Solidity sources under {sources_dir}")
    base = sources_dir.parent
    return {
        "language": "Solidity",
        "sources": {f.relative_to(base).as_posix(): {"content": f.read_text()} for f in files},
        "settings": {
            "remappings": [REMAPPING],
            "optimizer": {"enabled": True, "runs": OPTIMIZER_RUNS},
            "evmVersion": EVM_VERSION,
            "outputSelection": {
                "*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}
            },
        },
    }


def _run_solcjs(payload: str) -> tuple[dict[str, Any], str]:
    node = shutil.which("node")
    if node is None:
        raise ToolchainError(
            "node is missing: solc-js needs Node.js", hint="apt-get install nodejs npm"
        )
    if not SOLCJS.is_file():
        raise ToolchainError(
            f"solc-js not found at {SOLCJS}", hint="run `npm ci --prefix contracts` or `make setup`"
        )
    cmd = [node, str(SOLCJS), "--standard-json", "--base-path", str(CONTRACTS_DIR)]
    # stdin and stdout are files, not pipes: solc-js reads stdin with one readFileSync, which
    # fails with EAGAIN when a large input is still arriving through a pipe, and it calls
    # process.exit() right after writing, which cuts output to a pipe off at 64 KiB.
    with tempfile.TemporaryFile(mode="w+") as stdin, tempfile.TemporaryFile(mode="w+") as out:
        stdin.write(payload)
        stdin.seek(0)
        done = subprocess.run(
            cmd, stdin=stdin, stdout=out, stderr=subprocess.PIPE, text=True, check=False
        )
        out.seek(0)
        stdout = out.read()
    # solc-js prints one ">>> Cannot retry compilation with SMT..." style line before the JSON.
    text = "\n".join(line for line in stdout.splitlines() if not line.startswith(">>>"))
    if done.returncode != 0 or not text.strip():
        raise ToolchainError(f"solc-js failed (exit {done.returncode}): {done.stderr.strip()}")
    version = subprocess.run(
        [node, str(SOLCJS), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return json.loads(text), version


def _native_solc() -> str | None:
    """A native solc on PATH whose version is the pinned one, or None."""
    path = shutil.which("solc")
    if path is None:
        return None
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"Version: (\S+)", out)
    if match and match.group(1).startswith(SOLC_VERSION + "+"):
        return path
    return None


def _run_native(solc: str, source: dict[str, Any]) -> tuple[dict[str, Any], str]:
    import solcx

    output: dict[str, Any] = solcx.compile_standard(
        source, solc_binary=solc, base_path=str(CONTRACTS_DIR), allow_paths=[str(CONTRACTS_DIR)]
    )
    version = subprocess.run([solc, "--version"], capture_output=True, text=True, check=True)
    return output, version.stdout


def _canonical_version(raw: str) -> str:
    """``0.8.37+commit.abcdef12``: the compiler build, without the platform suffix."""
    match = re.search(r"(\d+\.\d+\.\d+\+commit\.[0-9a-f]+)", raw)
    if match is None:
        raise ToolchainError(f"cannot read the compiler version from {raw!r}")
    return match.group(1)


def compile_sources(sources_dir: Path = CONTRACT_SOURCES) -> dict[str, dict[str, Any]]:
    """Compile every contract under `sources_dir`.

    Returns
    -------
    dict
        Artifact dicts keyed by contract name.

    Raises
    ------
    CompileError
        With the compiler's messages (file and line) when compilation fails.
    ToolchainError
        When no compiler can run.
    """
    source = standard_input(sources_dir)
    native = _native_solc()
    if native is not None:
        output, raw_version = _run_native(native, source)
    else:
        output, raw_version = _run_solcjs(json.dumps(source))
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError(
            "Solidity compilation failed:\n"
            + "\n".join(e.get("formattedMessage", e.get("message", "")).rstrip() for e in errors)
        )
    version = _canonical_version(raw_version)
    artifacts: dict[str, dict[str, Any]] = {}
    for source_name, contracts in sorted(output.get("contracts", {}).items()):
        if not source_name.startswith("src/"):
            continue
        content = source["sources"][source_name]["content"].encode()
        for name, compiled in sorted(contracts.items()):
            artifacts[name] = {
                "contractName": name,
                "sourceName": source_name,
                "sourceHash": "0x" + hashlib.sha256(content).hexdigest(),
                "compiler": {"version": version, "evmVersion": EVM_VERSION, "runs": OPTIMIZER_RUNS},
                "abi": compiled["abi"],
                "bytecode": "0x" + compiled["evm"]["bytecode"]["object"],
                "deployedBytecode": "0x" + compiled["evm"]["deployedBytecode"]["object"],
            }
    return artifacts


def render(artifact: dict[str, Any]) -> bytes:
    """The canonical bytes of one artifact file."""
    return (json.dumps(artifact, indent=2, sort_keys=True) + "\n").encode()


def write_artifacts(
    artifacts: dict[str, dict[str, Any]], out_dir: Path = CONTRACT_ARTIFACTS
) -> list[Path]:
    """Write one JSON file per contract into `out_dir`, removing stale ones.

    Returns
    -------
    list of Path
        The files written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, artifact in artifacts.items():
        path = out_dir / f"{name}.json"
        path.write_bytes(render(artifact))
        written.append(path)
    for stale in set(out_dir.glob("*.json")) - set(written):
        stale.unlink()
    return written


def load_artifact(name: str, artifacts_dir: Path = CONTRACT_ARTIFACTS) -> dict[str, Any]:
    """Read a compiled contract's artifact.

    Raises
    ------
    ToolchainError
        If the artifact does not exist (the contracts were never compiled).
    """
    path = artifacts_dir / f"{name}.json"
    if not path.is_file():
        raise ToolchainError(f"no artifact for {name} at {path}", hint="run `make setup`")
    artifact: dict[str, Any] = json.loads(path.read_text())
    return artifact


def drifted(
    artifacts: dict[str, dict[str, Any]], artifacts_dir: Path = CONTRACT_ARTIFACTS
) -> list[str]:
    """Names of the contracts whose artifact file is missing or differs from `artifacts`."""
    return [
        name
        for name, artifact in artifacts.items()
        if not (artifacts_dir / f"{name}.json").is_file()
        or (artifacts_dir / f"{name}.json").read_bytes() != render(artifact)
    ]


def main(argv: list[str] | None = None) -> int:
    """Compile the contracts; with ``--check``, fail if the committed artifacts differ."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    try:
        artifacts = compile_sources()
    except (CompileError, ToolchainError) as err:
        print(err, file=sys.stderr)
        return 1
    if args.check:
        drift = drifted(artifacts)
        if drift:
            print(f"artifacts differ from sources: {', '.join(drift)}", file=sys.stderr)
            return 1
        return 0
    changed = drifted(artifacts)
    write_artifacts(artifacts)
    for name in changed:
        print(f"contracts/artifacts/{name}.json updated: commit it with its sources")
    print(f"{len(artifacts)} contract artifacts, {len(changed)} changed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
