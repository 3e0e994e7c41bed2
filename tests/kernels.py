"""Environments that cap torch, MKL and oneDNN at one CPU kernel family, as an older machine would.

A process started with ``kernel_env("avx2")`` computes as an AVX2 server does, whatever this
machine's own vector width; ``"default"`` is the portable SSE baseline.
"""

from __future__ import annotations

import os

KERNELS = {
    "default": {
        "ATEN_CPU_CAPABILITY": "default",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
        "DNNL_MAX_CPU_ISA": "SSE41",
    },
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "DNNL_MAX_CPU_ISA": "AVX2",
    },
    "avx512": {
        "ATEN_CPU_CAPABILITY": "avx512",
        "MKL_ENABLE_INSTRUCTIONS": "AVX512",
        "DNNL_MAX_CPU_ISA": "AVX512_CORE",
    },
}


def kernel_env(kernels: str, threads: int | None = None) -> dict[str, str]:
    """This process's environment with the CPU kernels capped (and BLAS threads set)."""
    env = dict(os.environ) | KERNELS[kernels]
    if threads is not None:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(threads)
    return env
