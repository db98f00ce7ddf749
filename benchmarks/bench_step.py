"""Speed of one SGD step: the engine, the NumPy reference, and the random-number floor.

Run with ``python -m pytest benchmarks -p no:randomly``; the summary at the end prints
ns per (step x N) and the ratios (NumPy / engine, engine step / generator fill).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import linvae
from linvae import _core
from linvae.reference import ReferenceSGD
from linvae.simulation import empty_records, new_engine

NS = [1_000, 10_000, 100_000]
MS = [1, 2]
WORK = 2_000_000  # row updates per round: ~10 ms of engine work


def _params(M: int) -> linvae.Params:
    return linvae.Params(M=M, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.5)


def _info(benchmark: Any, kind: str, N: int, M: int, elements: int, threads: int = 1) -> None:
    benchmark.extra_info.update(kind=kind, N=N, M=M, elements=elements, threads=threads)


def _engine_steps(benchmark: Any, N: int, M: int, kind: str, dtype: str = "float64") -> None:
    # one round: WORK // N steps of one replica, nothing recorded
    e = new_engine(_params(M), N, dtype=dtype)
    e.init_random(1)
    n = max(1, WORK // N)
    beta = np.full(n, _params(M).beta_inf)
    none = np.array([], dtype=np.int64)
    benchmark(e.run, beta, none, empty_records(_params(M), 1, 1), rec_start=0, threads=1)
    _info(benchmark, kind, N, M, n * N)


@pytest.mark.parametrize("M", MS)
@pytest.mark.parametrize("N", NS)
def test_engine_step(benchmark: Any, N: int, M: int) -> None:
    _engine_steps(benchmark, N, M, "engine")


@pytest.mark.parametrize("N", NS)
def test_engine_step_float32(benchmark: Any, N: int) -> None:
    # float32 weights: float arithmetic and float normals (two per random word)
    _engine_steps(benchmark, N, 1, "engine32", "float32")


@pytest.mark.parametrize("M", MS)
@pytest.mark.parametrize("N", NS)
def test_numpy_reference_step(benchmark: Any, N: int, M: int) -> None:
    ref = ReferenceSGD.random(_params(M), N, seed=0)
    n = max(1, WORK // N // 8)

    def steps() -> None:
        for _ in range(n):
            ref.step(beta=0.5)

    benchmark(steps)
    _info(benchmark, "numpy", N, M, n * N)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("N", NS)
def test_generator_fill(benchmark: Any, N: int, dtype: str) -> None:
    # the floor: the engine's own generator filling N normals, once per step (float32:
    # its own float normals, two per random word)
    s = _core.NormalStream(0, 0, 2)
    buf = np.empty(N, dtype=dtype)
    n = max(1, WORK // N)

    def fills() -> None:
        for _ in range(n):
            s.fill(buf)

    benchmark(fills)
    _info(benchmark, "fill" if dtype == "float64" else "fill32", N, 0, n * N)


@pytest.mark.parametrize("N", NS)
def test_numpy_standard_normal(benchmark: Any, N: int) -> None:
    g = np.random.default_rng(0)
    buf = np.empty(N)
    n = max(1, WORK // N)

    def fills() -> None:
        for _ in range(n):
            g.standard_normal(out=buf)

    benchmark(fills)
    _info(benchmark, "np_normal", N, 0, n * N)
