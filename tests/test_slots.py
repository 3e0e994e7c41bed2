"""Training slots: at most N holders at once, and a killed holder frees its slot."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from node.errors import ConfigError
from node.runtime.slots import TrainingSlots


def test_at_most_count_hold_a_slot_at_once(tmp_path: Path) -> None:
    slots = TrainingSlots(2, tmp_path)
    lock = threading.Lock()
    holding, most, waits = 0, 0, []

    def train() -> None:
        nonlocal holding, most
        with slots.hold() as waited:
            with lock:
                holding += 1
                most = max(most, holding)
                waits.append(waited)
            time.sleep(0.05)
            with lock:
                holding -= 1

    workers = [threading.Thread(target=train) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert most == 2
    assert len(waits) == 6 and all(w >= 0 for w in waits)


def test_a_killed_holder_frees_its_slot(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from node.runtime.slots import TrainingSlots\n"
            "with TrainingSlots(1, Path(sys.argv[1])).hold():\n"
            "    print('held', flush=True)\n"
            "    time.sleep(600)\n",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        fd = os.open(tmp_path / "slot-0", os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with TrainingSlots(1, tmp_path).hold() as waited:
        assert waited >= 0


def test_a_slot_count_below_one_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train slots must be >= 1"):
        TrainingSlots(0, tmp_path)
