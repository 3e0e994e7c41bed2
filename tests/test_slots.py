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

from swarmchain.node.errors import ConfigError
from swarmchain.node.runtime.slots import StopWaiting, TrainingSlots


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
            time.sleep(0.2)
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
            "from swarmchain.node.runtime.slots import StopWaiting, TrainingSlots\n"
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


def test_a_waiter_stops_waiting_when_asked(tmp_path: Path) -> None:
    slots, stop, outcome = TrainingSlots(1, tmp_path), threading.Event(), []

    def wait() -> None:
        try:
            with slots.hold(stop):
                outcome.append("held")
        except StopWaiting:
            outcome.append("stopped")

    with slots.hold():
        waiter = threading.Thread(target=wait)
        waiter.start()
        stop.set()
        waiter.join(timeout=30)
    assert outcome == ["stopped"]


def test_a_directory_open_to_others_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "slots"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    with pytest.raises(ConfigError, match="not a directory of this user's alone"):
        TrainingSlots(2, shared)


def test_an_unopenable_lock_file_is_a_config_error_and_leaks_nothing(tmp_path: Path) -> None:
    (tmp_path / "slot-1").mkdir()  # a lock file that cannot be opened
    slots = TrainingSlots(3, tmp_path)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with (
            pytest.raises(ConfigError, match="cannot open a training-slot lock file"),
            slots.hold(),
        ):
            pass
    assert len(os.listdir("/proc/self/fd")) == before
