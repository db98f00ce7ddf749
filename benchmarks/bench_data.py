"""Step cost of the data options: the noise and factor families, and finite datasets.

Each case runs the engine's steps (M = M* = 1, one replica, nothing recorded) and is
reported as ns per (step x N) and as a ratio to one-pass SGD with Gaussian noise, the
medians of the same run. Targets: a finite dataset costs at most 1.2x one-pass (its
samples are regenerated from their keys, which costs a few stream seedings per step).
Gaussian and Rademacher noise have vectorised draws; the other families are drawn one
at a time (Laplace from an exponential ziggurat, Student-t from a normal and a gamma
variate), so their steps cost what their draws cost.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import linvae
from linvae.data import check_data
from linvae.simulation import empty_records, new_engine

NS = [10_000, 100_000]
WORK = 2_000_000  # row updates per round

CASES: dict[str, dict[str, Any]] = {
    "gaussian": {},
    "rademacher": {"noise": "rademacher"},
    "uniform": {"noise": "uniform"},
    "laplace": {"noise": "laplace"},
    "student_t nu=5": {"noise": "student_t", "noise_df": 5.0},
    "factors rademacher": {"factors": "rademacher"},
    "dataset P=1e3 shuffle": {"dataset_size": 1000},
    "dataset P=1e3 cycle": {"dataset_size": 1000, "order": "cycle"},
    "dataset P=1e9 shuffle": {"dataset_size": 10**9},
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("N", NS)
def test_data_step(benchmark: Any, N: int, case: str) -> None:
    e = new_engine(linvae.Params(), N, data=check_data(**CASES[case]))
    e.init_random(1)
    n = max(1, WORK // N)
    beta = np.full(n, 0.5)
    none = np.array([], dtype=np.int64)
    benchmark(e.run, beta, none, empty_records(linvae.Params(), 1, 1), rec_start=0, threads=1)
    benchmark.extra_info.update(kind=f"data:{case}", N=N, M=1, elements=n * N, threads=1)
