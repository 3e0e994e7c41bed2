"""Storage throughput: the embedded store beside a plain file copy (the limit) and a real IPFS peer.

For each blob size, each backend puts fresh random bytes and gets them back, several times; the
JSON printed quotes the median put and get throughput in MB/s (10**6 bytes per second). `get`
includes checking every block against its CID. `put_get_mb_s` is size / (put time + get time),
and `embedded_vs_file_copy` its ratio for the embedded store over the plain copy (target: >= 0.5
from 16 MiB up). `verified_bound_vs_file_copy` is the same ratio for an ideal store that adds only
the hashing it cannot skip (one SHA-256 pass on put, one on get, over every core) to the plain
copy's I/O: where the page cache copies faster than the cores hash, that bound sits below 0.5.

Usage: .venv/bin/python scripts/bench_storage.py [--sizes-mib 1 16 128] [--repeats 5] [--no-ipfs]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from swarmchain.node.devtools.ipfs_peer import JsIpfsPeer
from swarmchain.storage.embedded import EmbeddedStore
from swarmchain.storage.kubo import KuboStore

MIB = 1024 * 1024

Backend = Callable[[bytes], tuple[float, float]]  # data -> (put seconds, get seconds)


def _timed(action: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def _file_copy(scratch: Path) -> Backend:
    def run(data: bytes) -> tuple[float, float]:
        path = scratch / "blob"
        put_s, _ = _timed(lambda: path.write_bytes(data))
        get_s, back = _timed(path.read_bytes)
        assert back == data
        path.unlink()
        return put_s, get_s

    return run


def _embedded(store: EmbeddedStore) -> Backend:
    def run(data: bytes) -> tuple[float, float]:
        put_s, cid = _timed(lambda: store.put(data))
        get_s, back = _timed(lambda: store.get(cid))
        assert back == data
        store.unpin(cid)
        store.gc()  # untimed: keeps the disk from filling up
        return put_s, get_s

    return run


def _ipfs(store: KuboStore) -> Backend:
    def run(data: bytes) -> tuple[float, float]:
        put_s, cid = _timed(lambda: store.put(data))
        get_s, back = _timed(lambda: store.get(cid))
        assert back == data
        return put_s, get_s

    return run


def _measure(backend: Backend, size: int, repeats: int) -> dict[str, float]:
    backend(os.urandom(MIB))  # warm up: threads, connections, index
    puts, gets, totals = [], [], []
    for _ in range(repeats):
        data = os.urandom(size)  # fresh bytes: no backend may skip blocks it already holds
        put_s, get_s = backend(data)
        puts.append(size / put_s / 1e6)
        gets.append(size / get_s / 1e6)
        totals.append(size / (put_s + get_s) / 1e6)
    return {
        "put_mb_s": round(statistics.median(puts), 1),
        "get_mb_s": round(statistics.median(gets), 1),
        "put_get_mb_s": round(statistics.median(totals), 1),
    }


def _sha256_mb_s() -> float:
    data = os.urandom(128 * MIB)
    seconds, _ = _timed(lambda: hashlib.sha256(data).digest())
    return round(len(data) / seconds / 1e6, 1)


def _verified_bound_mb_s(hash_mb_s: float, copy: dict[str, Any]) -> float:
    """The put+get throughput of an ideal verified store: the plain copy's I/O plus one SHA-256
    pass per direction (put names every block, get checks every block), spread over every core.
    No store that hashes what it stores and checks what it returns can beat it."""
    cores = os.cpu_count() or 1
    seconds_per_mb = 1 / copy["put_get_mb_s"] + 2 / (hash_mb_s * cores)
    return 1 / seconds_per_mb


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its JSON on stdout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mib", type=int, nargs="+", default=[1, 16, 128])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-ipfs", action="store_true", help="skip the js-ipfs peer")
    args = parser.parse_args(argv)

    results: list[dict[str, Any]] = []
    hash_mb_s = _sha256_mb_s()
    scratch = Path(tempfile.mkdtemp(prefix="swarm-bench-"))
    try:
        # The local backends first, with no IPFS peer running: its background work would take the
        # cores the embedded store hashes on.
        with EmbeddedStore(scratch / "store") as embedded:
            local = {"file_copy": _file_copy(scratch), "embedded": _embedded(embedded)}
            for size_mib in args.sizes_mib:
                size = size_mib * MIB
                rows = {}
                for name, backend in local.items():
                    rows[name] = {"size_bytes": size, "backend": name, "repeats": args.repeats}
                    rows[name] |= _measure(backend, size, args.repeats)
                    results.append(rows[name])
                copy_mb_s = rows["file_copy"]["put_get_mb_s"]
                rows["embedded"]["embedded_vs_file_copy"] = round(
                    rows["embedded"]["put_get_mb_s"] / copy_mb_s, 2
                )
                bound = _verified_bound_mb_s(hash_mb_s, rows["file_copy"])
                rows["embedded"]["verified_bound_vs_file_copy"] = round(bound / copy_mb_s, 2)
        if not args.no_ipfs:
            with JsIpfsPeer() as peer, KuboStore(peer.api_url, timeout=300) as kubo:
                for size_mib in args.sizes_mib:
                    row = {"size_bytes": size_mib * MIB, "backend": "ipfs_peer"}
                    row |= {"repeats": args.repeats}
                    results.append(row | _measure(_ipfs(kubo), size_mib * MIB, args.repeats))
    finally:
        shutil.rmtree(scratch)
    print(
        json.dumps(
            {
                "results": results,
                "unit": "MB/s = 10**6 bytes per second, median over repeats",
                "machine": {
                    # one SHA-256 pass over 128 MiB on one thread: put and get each hash every
                    # byte once, which bounds the embedded store on a busy machine
                    "sha256_mb_s": hash_mb_s,
                    "load_average_1m": round(os.getloadavg()[0], 2),
                    "python": platform.python_version(),
                    "cpu_count": os.cpu_count(),
                    "platform": platform.platform(),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
