"""Recording only reads, and a sample is the same sample at every visit.

The same seed must give the same trajectory bit for bit whatever the recording times,
the thread count or the passes around a step (step 0 has nothing pending; a flush applies
the pending update without a new sample). These are exact checks: equal bits, no
tolerance.

* A dense and a sparse recording grid agree at their common times, for both dtypes,
  M = 1, 2, 3, 4, 8 (the compiled sizes) and 5 (the general one), M* = 1 and 2, both
  methods, every data option, and one replica on one or two threads (the blocks of a
  pass then run on a team whose size the engine changes as it measures).
* On a finite dataset, the x of every visit of a sample is bit for bit the x of its first
  visit, step 0 included, with and without a flush between steps; and a run with a flush
  after every step is bit for bit the run without.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import xarray as xr

import linvae
from linvae.data import check_data
from linvae.simulation import empty_records, new_engine

VARIABLES = ("m", "d", "Q", "E", "R", "D", "eg")
SIZES = [(1, 1), (2, 1), (3, 1), (4, 1), (8, 1), (5, 2), (1, 2), (2, 2)]


def params(M: int, Ms: int, lam: float = 0.05) -> linvae.Params:
    return linvae.Params(M=M, M_star=Ms, rho=[1.5, 0.8][:Ms], eta=0.9, beta=0.6, lam=lam,
                         tau=0.7)


def run(p: linvae.Params, N: int, times: np.ndarray, **kw: Any) -> xr.Dataset:
    return linvae.simulate(p, N, float(times[-1]), times=times, seeds=kw.pop("seeds", 2),
                           seed=11, progress=False, **kw)


def assert_same_at_common_times(p: linvae.Params, N: int, steps: int, *,
                                sparse_threads: int | None = None, **kw: Any) -> None:
    dense = np.arange(steps + 1) / N                       # every step
    sparse = np.array([0, 1, 7, steps // 2, steps]) / N    # a few, one of them odd
    a = run(p, N, dense, **kw)
    b = run(p, N, sparse, **{**kw, **({} if sparse_threads is None else
                                      {"threads": sparse_threads})})
    at = a.sel(t=b.t.values)
    for v in VARIABLES:
        assert np.array_equal(at[v].values, b[v].values, equal_nan=True), v


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("M", "Ms"), SIZES, ids=[f"M{m}-Ms{s}" for m, s in SIZES])
def test_recording_times_do_not_change_the_trajectory(M: int, Ms: int, dtype: str) -> None:
    assert_same_at_common_times(params(M, Ms), 300, 120, dtype=dtype)


DATA = {
    "rademacher": {"noise": "rademacher"},
    "uniform": {"noise": "uniform"},
    "laplace": {"noise": "laplace"},
    "student_t": {"noise": "student_t", "noise_df": 5.0},
    "rademacher-factors": {"factors": "rademacher"},
    "dataset-shuffle": {"dataset_size": 37},
    "dataset-cycle": {"dataset_size": 5, "order": "cycle"},
    "dataset-shared": {"dataset_size": 11, "dataset_seed": 3, "training_loss": True},
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("M", [1, 2, 3, 4, 8, 5])
@pytest.mark.parametrize("data", list(DATA))
def test_recording_times_with_every_data_option(data: str, M: int, dtype: str) -> None:
    assert_same_at_common_times(params(M, 1), 200, 90, dtype=dtype, **DATA[data])


def test_recording_times_with_a_schedule_and_no_decay() -> None:
    p = params(2, 1, lam=0.0).replace(beta=linvae.schedules.Tanh(beta_inf=0.6, gamma=3.0))
    assert_same_at_common_times(p, 300, 150)
    assert_same_at_common_times(params(1, 1, lam=0.0), 300, 150, dtype="float32")


@pytest.mark.parametrize(("M", "Ms"), [(1, 1), (2, 1), (3, 2)])
def test_recording_times_in_the_gram_chain(M: int, Ms: int) -> None:
    assert_same_at_common_times(params(M, Ms), 2000, 200, method="gram")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("M", "Ms"), [(1, 1), (2, 1), (3, 1), (4, 2)])
def test_recording_and_threads_on_one_replica(M: int, Ms: int, dtype: str) -> None:
    # N above one block (4096 rows): with two threads and one replica the blocks of each
    # pass run on a team, dense records on one thread against sparse ones on two
    assert_same_at_common_times(params(M, Ms), 9000, 60, dtype=dtype, seeds=1, threads=1,
                                sparse_threads=2)


# -- a sample is the same at every visit -------------------------------------------------
def dataset_engine(p: linvae.Params, N: int, P: int, dtype: str) -> Any:
    e = new_engine(p, N, seed=5, dtype=dtype, data=check_data(dataset_size=P, order="cycle"))
    e.init_random(1)
    return e


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("M", "Ms"), [(1, 1), (2, 1), (1, 2), (3, 2)])
@pytest.mark.parametrize("N", [300, 5000])
def test_a_sample_is_the_same_at_every_visit(M: int, Ms: int, N: int, dtype: str) -> None:
    p, P, steps = params(M, Ms), 3, 13
    out = empty_records(p, 1, 1)
    none = np.array([], dtype=np.int64)
    flushed, plain = dataset_engine(p, N, P, dtype), dataset_engine(p, N, P, dtype)
    first: dict[int, np.ndarray] = {}
    for s in range(steps):
        for e in (flushed, plain):
            e.run(np.array([0.6]), none, out, rec_start=0, threads=1)
        xs = [e.get_state(0)["x"] for e in (flushed, plain)]
        assert np.array_equal(xs[0], xs[1]), s        # a flush changed the next sample
        mu = s % P                                     # "cycle": step s visits s mod P
        if mu in first:
            assert np.array_equal(xs[0], first[mu]), (s, mu)
        else:
            first[mu] = xs[0].copy()
        flushed.flush()                                # after every step, step 0's too
    flushed.flush()
    plain.flush()
    for k, v in plain.weights(0).items():
        assert np.array_equal(v, flushed.weights(0)[k]), k
    assert np.array_equal(plain.get_state(0)["D"], flushed.get_state(0)["D"])
