"""Byzantine stake against real node processes on a real Anvil (a CI-sized run of
`scripts/soak_byzantine.py`): colluders attesting one forged tuple never finalize it; just
under 1/3 of the stake they cannot stop the honest tuple, and once a late colluder lifts them
just over 1/3 they block rounds, which fail visibly and are retried from the same base."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "soak_byzantine.py"


@pytest.fixture(scope="module")
def escalation() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--honest", "3", "--rounds", "2", "--scenario", "escalate"],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.stdout, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout)
    (scenario,) = report["scenarios"]
    return scenario


def test_the_forged_tuple_is_never_finalized(escalation: dict[str, Any]) -> None:
    assert escalation["forged_finalized"] == 0
    # A round closed under the colluders meets them as the next round (WrongRound), or as
    # finalized (RoundAlreadyFinalized).
    closed = {"WrongRound", "RoundAlreadyFinalized"}
    for record in escalation["rounds"]:
        # Their first finalize follows their attests at once, so the contract refuses it for want
        # of stake, unless the honest nodes closed the round in between: under a third they need
        # no colluder to finalize, and over a third the round fails once the window closes.
        assert record["colluder_first_finalize"] in {"QuorumNotReached", *closed}
        # Besides: the late colluder may not vote in the round it joined in (NotEligible, or
        # DeadlinePassed once every eligible member attested: the window then closes early, and
        # the contract checks the window first); an attest racing the round's close meets the
        # next round (the late colluder attests last, after the first finalize).
        allowed = {
            "QuorumNotReached",
            "ineligible attest: NotEligible",
            "ineligible attest: DeadlinePassed",
            *closed,
            *(f"{who}: {name}" for who in ("attest", "ineligible attest") for name in closed),
        }
        assert set(record["colluder_finalize_errors"]) <= allowed
        assert record["forged_stake_share_of_required"] < 1
    refused = [r["colluder_first_finalize"] == "QuorumNotReached" for r in escalation["rounds"]]
    assert any(refused), "the colluders never got to finalize before the round closed"


def test_under_a_third_the_honest_tuple_finalizes(escalation: dict[str, Any]) -> None:
    first = escalation["rounds"][0]
    assert first["status"] == "finalized"
    assert first["honest_nodes_agree"] and first["finalized_honest_tuple"]


def test_over_a_third_rounds_fail_visibly_from_the_same_base(escalation: dict[str, Any]) -> None:
    second = escalation["rounds"][1]
    assert escalation["colluder_stake_share"] > 1 / 3
    assert second["status"] == "failed"
    assert second["honest_nodes_agree"]
    assert second["leading_stake_share_of_required"] < 1
    assert escalation["rounds_failed_visibly"] == 1
    assert escalation["failed_rounds_retried_from_same_base"]
