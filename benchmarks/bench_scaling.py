"""How the step time scales: with N (1e3 to 1e7), with M, and over threads.

ns per (step x N) that stays flat means time linear in N. Thread speed-ups are measured
for replicas spread over threads and for one large replica whose blocks are spread.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import linvae
from linvae.simulation import empty_records, new_engine


def _run(benchmark: Any, N: int, M: int, S: int, threads: int, steps: int, kind: str,
         dtype: str = "float64") -> None:
    p = linvae.Params(M=M)
    e = new_engine(p, N, replicas=S, dtype=dtype)
    e.init_random(threads)
    benchmark(e.run, np.full(steps, 0.5), np.array([], dtype=np.int64), empty_records(p, S, 1),
              rec_start=0,
              threads=threads)
    benchmark.extra_info.update(kind=kind, N=N, M=M, threads=threads, elements=steps * N * S)


@pytest.mark.parametrize("N", [1_000, 10_000, 100_000, 1_000_000, 10_000_000])
def test_scaling_in_N(benchmark: Any, N: int) -> None:
    _run(benchmark, N, 1, 1, 1, max(2, 2_000_000 // N), "scale_N")


@pytest.mark.parametrize("N", [1_000, 10_000, 100_000, 1_000_000, 10_000_000])
def test_scaling_in_N_float32(benchmark: Any, N: int) -> None:
    _run(benchmark, N, 1, 1, 1, max(2, 2_000_000 // N), "scale_N32", "float32")


@pytest.mark.parametrize("M", [1, 2, 4, 8])
def test_scaling_in_M(benchmark: Any, M: int) -> None:
    _run(benchmark, 100_000, M, 1, 1, 20, "scale_M")


@pytest.mark.parametrize("threads", [1, 2])
def test_replicas_over_threads(benchmark: Any, threads: int) -> None:
    _run(benchmark, 10_000, 1, 4, threads, 200, "replicas")


@pytest.mark.parametrize("threads", [1, 2])
def test_one_large_replica_over_threads(benchmark: Any, threads: int) -> None:
    _run(benchmark, 1_000_000, 1, 1, threads, 4, "blocks")
