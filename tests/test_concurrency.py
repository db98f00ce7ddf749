"""simulate from several Python threads at once: identical to sequential calls.

The engine releases the GIL while it runs, so concurrent calls really overlap; each call
owns its engine, records and random streams, so nothing may leak between them. (Ctrl-C
during a long run is covered by tests/test_simulate.py.)
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import xarray as xr

import linvae

ORDER = ("m", "d", "Q", "E", "R", "D")
JOBS: list[tuple[linvae.Params, dict[str, Any]]] = [
    (linvae.Params(M=1, M_star=1, beta=0.5), {"N": 3000, "seed": 1}),
    (linvae.Params(M=2, M_star=1, beta=0.9, tau=0.2), {"N": 2000, "seed": 2}),
    (linvae.Params(M=2, M_star=2, rho=[2.0, 1.0], lam=0.1), {"N": 2500, "seed": 3}),
    (linvae.Params(M=3, M_star=2, rho=1.0, beta=0.3), {"N": 1500, "seed": 4, "dtype": "float32"}),
    (linvae.Params(M=1, M_star=1, beta=0.5), {"N": 3000, "seed": 1}),  # same as job 0
    (linvae.Params(M=1, M_star=1, tau=6.0), {"N": 500, "seed": 5}),  # diverges
]


def run(job: tuple[linvae.Params, dict[str, Any]], threads: int = 1) -> xr.Dataset:
    p, kw = job
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linvae.errors.DivergenceWarning)
        return linvae.simulate(p, t_max=1.0, record_every=0.1, seeds=2, threads=threads,
                               progress=False, **kw)


def assert_identical(a: xr.Dataset, b: xr.Dataset) -> None:
    for k in ORDER:
        assert np.array_equal(a[k].values, b[k].values, equal_nan=True), k
    assert np.array_equal(a.diverged.values, b.diverged.values)
    assert np.array_equal(a.t_diverged.values, b.t_diverged.values, equal_nan=True)


def test_threads_give_the_sequential_results() -> None:
    sequential = [run(job) for job in JOBS]
    start = threading.Barrier(len(JOBS))

    def job_in_thread(job: tuple[linvae.Params, dict[str, Any]]) -> xr.Dataset:
        start.wait()  # all calls enter the engine together
        return run(job)

    with ThreadPoolExecutor(max_workers=len(JOBS)) as pool:
        concurrent = list(pool.map(job_in_thread, JOBS))
    for a, b in zip(sequential, concurrent, strict=True):
        assert_identical(a, b)
    assert_identical(concurrent[0], concurrent[4])
    assert bool(concurrent[5].diverged.all()) and not bool(concurrent[0].diverged.any())


def test_threads_each_using_openmp_give_the_sequential_results() -> None:
    # nested parallelism: Python threads x OpenMP threads over replicas
    jobs = JOBS[:3]
    sequential = [run(job, threads=2) for job in jobs]
    with ThreadPoolExecutor(max_workers=3) as pool:
        concurrent = list(pool.map(lambda j: run(j, threads=2), jobs))
    for a, b in zip(sequential, concurrent, strict=True):
        assert_identical(a, b)


def test_repeated_concurrent_rounds_are_stable() -> None:
    # catches rare races: the same small call from 4 threads, several rounds
    job = (linvae.Params(M=2, M_star=2, rho=[1.5, 0.5]), {"N": 400, "seed": 9})
    ref = run(job)
    for _ in range(5):
        with ThreadPoolExecutor(max_workers=4) as pool:
            for ds in pool.map(lambda _: run(job), range(4)):
                assert_identical(ref, ds)
