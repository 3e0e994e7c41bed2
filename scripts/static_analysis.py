"""Static analysis of the contracts with Slither, driven through solc-js.

No native solc can be installed here, and Slither (through crytic-compile) runs a native
``solc``. This script gives it one: a small shim that answers ``solc --version`` and
``solc --standard-json`` by running the pinned solc-js (``contracts/node_modules/solc``), the
same compiler that builds the committed artifacts. With ``--solc-standard-json`` crytic-compile
sends the whole source tree in one standard-JSON compilation, which the shim passes through.

Slither lives in its own virtual environment (``build/slither-venv``): it requires web3 < 8,
which the project's web3 8 environment must not be downgraded to.

Usage::

    .venv/bin/python scripts/static_analysis.py            # summary JSON on stdout
    .venv/bin/python scripts/static_analysis.py --full     # every finding, low ones too

Prints JSON: Slither's version, the number of findings by impact, and each high or medium
finding with whether ``contracts/SECURITY.md`` explains it (it must name the detector and the
function). Exits 1 if any high or medium finding is unexplained, 2 if Slither cannot run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = ROOT / "contracts"
SOLCJS = CONTRACTS / "node_modules" / "solc" / "solc.js"
BUILD = ROOT / "build"
VENV = BUILD / "slither-venv"
SHIM_DIR = BUILD / "solc-shim"
REPORT = BUILD / "slither.json"
SECURITY = CONTRACTS / "SECURITY.md"
SLITHER_VERSION = "0.11.6"
REMAPPING = "@openzeppelin/contracts/=node_modules/@openzeppelin/contracts/"
SERIOUS = ("High", "Medium")

SHIM = textwrap.dedent(
    """\
    #!/usr/bin/env bash
    # solc's command line (--version, --standard-json), answered by solc-js. Written by
    # scripts/static_analysis.py for Slither; other arguments are refused.
    set -euo pipefail
    case "${{1:-}}" in
      --version)
        echo "solc, the solidity compiler commandline interface"
        echo "Version: $(node {solcjs} --version)"
        ;;
      --standard-json)
        tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
        cat > "$tmp/in.json"
        # Files, not pipes: solc-js reads stdin in one call and exits right after writing.
        node {solcjs} --standard-json --base-path {contracts} \\
          --include-path {contracts}/node_modules < "$tmp/in.json" > "$tmp/out.json"
        grep -v '^>>>' "$tmp/out.json"  # solc-js prints a '>>>' note before the JSON
        ;;
      *) echo "solc shim: unsupported arguments: $*" >&2; exit 2 ;;
    esac
    """
)


def ensure_slither() -> Path:
    """The Slither executable, installed into its own environment on first use."""
    slither = VENV / "bin" / "slither"
    if not slither.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [
                str(VENV / "bin" / "pip"),
                "install",
                "--quiet",
                f"slither-analyzer=={SLITHER_VERSION}",
            ],
            check=True,
        )
    return slither


def write_shim() -> None:
    """Write the solc-js shim as ``build/solc-shim/solc``."""
    SHIM_DIR.mkdir(parents=True, exist_ok=True)
    shim = SHIM_DIR / "solc"
    shim.write_text(SHIM.format(solcjs=SOLCJS, contracts=CONTRACTS))
    shim.chmod(0o755)


def run_slither(slither: Path) -> dict[str, Any]:
    """Run Slither over ``contracts/src`` (OpenZeppelin excluded); its JSON report."""
    REPORT.unlink(missing_ok=True)
    env = os.environ | {"PATH": f"{SHIM_DIR}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [
            str(slither),
            "src",
            "--solc-standard-json",
            "--solc-remaps",
            REMAPPING,
            "--filter-paths",
            "node_modules",
            "--json",
            str(REPORT),
        ],
        cwd=CONTRACTS,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if not REPORT.exists():
        raise RuntimeError(
            f"slither wrote no report (exit {done.returncode}): {done.stderr[-2000:]}"
        )
    report: dict[str, Any] = json.loads(REPORT.read_text())
    if not report.get("success"):
        raise RuntimeError(f"slither failed: {report.get('error')}")
    return report


def _function_of(finding: dict[str, Any]) -> str:
    """The first function or contract a finding points at, as Slither names it."""
    for element in finding.get("elements", []):
        if element.get("type") == "function":
            parent = element.get("type_specific_fields", {}).get("parent", {}).get("name", "")
            return f"{parent}.{element['name']}"
    for element in finding.get("elements", []):
        if element.get("type") == "contract":
            return str(element["name"])
    return ""


def summarise(report: dict[str, Any], full: bool) -> dict[str, Any]:
    """Counts by impact, and the serious findings with whether SECURITY.md explains them."""
    findings = report["results"].get("detectors", [])
    explained = SECURITY.read_text() if SECURITY.exists() else ""
    serious = []
    for finding in findings:
        if finding["impact"] not in SERIOUS:
            continue
        where = _function_of(finding)
        serious.append(
            {
                "impact": finding["impact"],
                "confidence": finding["confidence"],
                "check": finding["check"],
                "where": where,
                "explained": f"`{finding['check']}`" in explained and f"`{where}`" in explained,
                "description": finding["description"].strip(),
            }
        )
    summary: dict[str, Any] = {
        "slither": SLITHER_VERSION,
        "compiler": "solc-js via scripts/static_analysis.py shim",
        "findings_by_impact": dict(Counter(f["impact"] for f in findings)),
        "serious": serious,
        "unexplained": sum(not f["explained"] for f in serious),
    }
    if full:
        summary["all"] = [
            {
                "impact": f["impact"],
                "check": f["check"],
                "where": _function_of(f),
                "description": f["description"].strip(),
            }
            for f in findings
        ]
    return summary


def main() -> int:
    """Run the analysis and print the summary; the exit code says whether it is clean."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="list every finding")
    args = parser.parse_args()
    try:
        slither = ensure_slither()
        write_shim()
        report = run_slither(slither)
    except (OSError, RuntimeError, subprocess.CalledProcessError) as err:
        print(json.dumps({"error": str(err)}))
        return 2
    summary = summarise(report, args.full)
    print(json.dumps(summary, indent=2))
    return 1 if summary["unexplained"] else 0


if __name__ == "__main__":
    sys.exit(main())
