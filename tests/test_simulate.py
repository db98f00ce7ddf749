"""linvae.simulate: dataset layout, reproducibility, statistics, bad input, divergence."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import numpy as np
import pytest
import xarray as xr

import linvae
from linvae.reference import ReferenceSGD

P = linvae.Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, lam=0.0, tau=0.5)
START = {"m": [[0.5]], "d": [[0.5]], "Q": [[1.0]], "E": [[1.0]], "R": [[0.3]], "D": [1.0]}


def run(p: linvae.Params = P, **kw: Any) -> xr.Dataset:
    kw = {"N": 1000, "t_max": 1.0, "record_every": 0.25, "seeds": 2, "progress": False, **kw}
    return linvae.simulate(p, **kw)


def assert_identical(a: xr.Dataset, b: xr.Dataset) -> None:
    for k in ("m", "d", "Q", "E", "R", "D"):
        assert np.array_equal(a[k].values, b[k].values, equal_nan=True), k


def test_dataset_layout() -> None:
    p = linvae.Params(M=3, M_star=2, rho=[2.0, 1.0], lam=0.1)
    ds = run(p, seeds=3)
    assert dict(ds.sizes) == {"replica": 3, "t": 5, "latent": 3, "latent2": 3, "factor": 2}
    assert ds["m"].dims == ds["d"].dims == ("replica", "t", "latent", "factor")
    for k in ("Q", "E", "R"):
        assert ds[k].dims == ("replica", "t", "latent", "latent2")
    assert ds["D"].dims == ("replica", "t", "latent")
    for k in ("eg", "rate", "distortion", "loss"):
        assert ds[k].dims == ("replica", "t")
    assert ds["diverged"].dims == ("replica",)
    np.testing.assert_allclose(ds.t.values, [0, 0.25, 0.5, 0.75, 1.0])
    assert linvae.Params.from_attrs(ds.attrs) == p
    assert ds.attrs["N"] == 1000 and ds.attrs["seed"] == 0 and "linvae_version" in ds.attrs
    # derived observables come from the shared closed forms
    der = linvae.observables.derived(*(ds[k].values for k in "mdQERD"), rho=p.rho_vec,
                                     eta=p.eta, beta=0.5, lam=p.lam)
    np.testing.assert_allclose(ds["eg"].values, der.eg)
    np.testing.assert_allclose(ds["loss"].values, der.loss)
    # symmetric order parameters are symmetric
    np.testing.assert_allclose(ds.Q.values, ds.Q.values.swapaxes(-1, -2), atol=1e-14)


def test_same_seed_same_dataset_any_thread_count() -> None:
    a = run(seeds=3, threads=1)
    b = run(seeds=3, threads=2)
    c = run(seeds=3, threads=3)
    assert_identical(a, b)
    assert_identical(a, c)
    d = run(seeds=3, seed=1)
    assert not np.array_equal(a.m.values, d.m.values)
    # replica r depends on (seed, r) only: fewer replicas give the same first ones
    e = run(seeds=1, threads=1)
    assert_identical(a.isel(replica=[0]), e)


def test_recording_grid_does_not_change_the_trajectory() -> None:
    a = run(N=700, record_every=0.1)
    b = run(N=700, record_every=0.25, times=None)
    common = np.intersect1d(a.t.values, b.t.values)
    assert common.size >= 3
    assert_identical(a.sel(t=common), b.sel(t=common))


def test_schedule_is_evaluated_on_the_step_grid() -> None:
    sched = linvae.schedules.Tanh(beta_inf=1.0, gamma=2.0)
    ds = run(P.replace(beta=sched), t_max=1.0)
    np.testing.assert_allclose(ds.beta.values, sched(ds.t.values))
    const = run(P.replace(beta=1.0))
    assert not np.array_equal(ds.D.values, const.D.values)


def test_float32_follows_float64() -> None:
    # Rademacher signs are the same samples in both types (float32 draws its Gaussian
    # normals its own way): weights rounded to single precision stay close
    a = run(N=2000, init=START, t_max=2.0, noise="rademacher")
    b = run(N=2000, init=START, t_max=2.0, dtype="float32", noise="rademacher")
    for k in ("m", "Q", "D"):
        np.testing.assert_allclose(b[k].values, a[k].values, atol=2e-4)
    assert b.attrs["dtype"] == "float32"


@pytest.mark.slow
def test_replica_mean_matches_numpy_reference_within_n_half_fluctuations() -> None:
    # Engine and NumPy reference start from the same prescribed state and simulate the
    # same process with independent random numbers. The replica means differ only by
    # fluctuations of order N^(-1/2); their standard error is estimated from the spread
    # of the engine's replicas, and we allow five of them.
    N, t_max, S, S_ref = 4000, 2.0, 16, 5
    ds = linvae.simulate(P, N=N, t_max=t_max, record_every=0.5, seeds=S, seed=3, init=START,
                         progress=False)
    ref = {k: [] for k in ("m", "Q", "D")}
    for s in range(S_ref):
        r = ReferenceSGD.prescribed(P, N, START, seed=100 + s)
        traj: dict[str, list[float]] = {k: [] for k in ref}
        for step in range(round(t_max * N) + 1):
            if step % (N // 2) == 0:
                ops = r.order_parameters()
                for k in ref:
                    traj[k].append(float(np.ravel(ops[k])[0]))
            if step < round(t_max * N):
                r.step()
        for k, values in traj.items():
            ref[k].append(values)
    for k in ("m", "Q", "D"):
        eng = ds[k].values.reshape(S, -1)
        ref_k = np.array(ref[k])
        sd = eng.std(axis=0, ddof=1)
        assert np.all(sd[1:] < 3.0 / np.sqrt(N)), (k, sd)   # fluctuations are O(N^-1/2)
        tol = 5 * sd * np.sqrt(1 / S + 1 / S_ref) + 1e-12
        gap = np.abs(eng.mean(axis=0) - ref_k.mean(axis=0))
        assert np.all(gap <= tol), (k, gap, tol)
        if k in ("Q", "D"):  # these moved by far more than the tolerance: the test has teeth
            assert abs(eng.mean(axis=0)[-1] - eng.mean(axis=0)[0]) > 10 * tol.max()


@pytest.mark.parametrize(("kw", "match"), [
    ({"N": 0}, "N must be >= 1"),
    ({"N": 10.5}, "N must be an integer"),
    ({"t_max": 0.0}, "t_max must be > 0"),
    ({"t_max": float("nan")}, "t_max must be finite"),
    ({"record_every": 0.0}, "record_every must be > 0"),
    ({"record_every": 2.0}, "record_every must be <= 1"),
    ({"seeds": 0}, "seeds must be >= 1"),
    ({"seed": -1}, "seed must be >= 0"),
    ({"threads": 0}, "threads must be >= 1"),
    ({"dtype": "float16"}, "dtype must be"),
    ({"init": "zeros"}, "init must be 'random'"),
    ({"init": {**START, "D": [-1.0]}}, r"init\['D'\] must be > 0"),
    ({"init": {**START, "Q": [[1.0, 0.0]]}}, r"init\['Q'\] must have shape"),
    ({"init": {k: v for k, v in START.items() if k != "R"}}, "missing the order parameter 'R'"),
    ({"N": 2, "init": START}, "N must be >= M_star \\+ 2 M"),
    ({"N": 10**12, "seeds": 4}, "GiB"),
])
def test_bad_arguments_raise_clear_errors(kw: dict[str, Any], match: str) -> None:
    with pytest.raises((ValueError, TypeError, MemoryError), match=match):
        run(**kw)


@pytest.mark.parametrize(("kw", "match"), [
    ({"M": 0}, "M must be >= 1"),
    ({"M_star": 0}, "M_star must be >= 1"),
    ({"eta": -1.0}, "eta must be > 0"),
    ({"eta": 0.0}, "eta must be > 0"),
    ({"tau": 0.0}, "tau must be > 0"),
    ({"lam": -0.1}, "lam must be >= 0"),
    ({"beta": -0.5}, "beta must be >= 0"),
    ({"beta": "0.5"}, "beta must be a non-negative number"),
    ({"rho": [1.0, 2.0]}, r"rho must have shape \(1,\)"),
    ({"rho": -1.0}, "rho must be >= 0"),
    ({"rho": float("inf")}, "rho must be finite"),
])
def test_params_validation(kw: dict[str, Any], match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        linvae.Params(**kw)


def test_simulate_rejects_non_params() -> None:
    with pytest.raises(TypeError, match=r"linvae\.Params"):
        linvae.simulate({"M": 1}, N=10, t_max=1.0)  # type: ignore[arg-type]


def test_divergence_stops_the_replica_and_is_reported() -> None:
    # tau far beyond the stability limit: D is driven below zero within a few steps
    with pytest.warns(linvae.errors.DivergenceWarning, match="diverged"):
        ds = run(P.replace(tau=6.0), N=500, t_max=2.0, record_every=0.01, seeds=3)
    assert ds.diverged.all()
    for r in range(3):
        td = float(ds.t_diverged[r])
        assert 0 < td < 2.0
        assert ds.divergence.values[r] in ("D <= 0", "non-finite value", "blow-up")
        before = ds.Q.isel(replica=r).sel(t=slice(None, td - 0.011))
        after = ds.Q.isel(replica=r).sel(t=slice(td + 0.011, None))
        assert np.isfinite(before.values).all() and before.sizes["t"] > 0
        assert np.isnan(after.values).all()


def test_healthy_run_reports_no_divergence() -> None:
    ds = run()
    assert not ds.diverged.any()
    assert np.isnan(ds.t_diverged.values).all()
    assert np.isfinite(ds.Q.values).all()


def test_ctrl_c_returns_promptly_with_the_partial_result() -> None:
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    t0 = time.perf_counter()
    timer.start()
    with pytest.raises(linvae.errors.SimulationInterrupted) as info:
        linvae.simulate(P, N=20_000, t_max=500.0, record_every=0.01, seeds=2, progress=False)
    elapsed = time.perf_counter() - t0
    timer.cancel()
    assert elapsed < 10.0
    partial = info.value.partial
    assert 0 < partial.sizes["t"] < 50_001
    assert np.isfinite(partial.Q.values).all()


def test_engine_releases_the_gil() -> None:
    # A pure-Python loop in another thread keeps running while the engine works; if the
    # engine held the GIL, the loop would only get the gaps between chunks (~1% of time).
    def spin(seconds: float) -> int:
        n, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            n += 1
        return n

    alone = spin(0.3)
    worker = threading.Thread(target=lambda: run(N=20_000, t_max=0.5, seeds=1, threads=1))
    worker.start()
    time.sleep(0.05)
    during = spin(0.3)
    worker.join()
    assert during > 0.2 * alone
