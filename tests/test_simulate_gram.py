"""simulate(method="gram"): the Gram chain behind the interface of the weight engine.

Checked here: the same dataset as method="weights" (layout, attributes, divergence
variables); bad input refused before any work; bit-identical results for any thread
count and across a stop (Ctrl-C in process, SIGTERM to a child at N = 1e9) and resume;
divergence flagged per replica; the same law as the weights at small N; the ODE at
N = 1e8; and the method from the command line, a config file, compare and sweep.
"""

from __future__ import annotations

import importlib
import json
import signal
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from interrupts import interrupt_at_checkpoint
from scipy import stats
from test_checkpoint import RUN as CKPT_RUN
from test_gram import entries
from test_interrupts import Child

import linvae
from linvae import cli
from linvae.schedules import Tanh
from linvae.simulation import DIVERGENCE_REASONS, DivergenceWarning
from linvae.states import overlap_state

sim_module = importlib.import_module("linvae.simulation")

P11 = linvae.Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.5)
P = linvae.Params(M=2, M_star=1, rho=1.5, eta=1.0, beta=Tanh(0.8, 0.5), lam=0.05, tau=0.5)


def run(p: linvae.Params = P, **kw: Any) -> xr.Dataset:
    kw = {"N": 1000, "t_max": 1.0, "record_every": 0.25, "seeds": 3, "progress": False,
          "method": "gram", **kw}
    return linvae.simulate(p, **kw)


# -- the same dataset ------------------------------------------------------------------------

@pytest.mark.parametrize("start", ["random", "prescribed"])
def test_same_dataset_as_the_weights(start: str) -> None:
    p = linvae.Params(M=3, M_star=2, rho=[2.0, 1.0], lam=0.1)
    init: Any = "random" if start == "random" else overlap_state(p, 0.4)
    g, w = (run(p, N=300, init=init, method=m) for m in ("gram", "weights"))
    assert dict(g.sizes) == dict(w.sizes)
    assert set(g.data_vars) == set(w.data_vars)
    assert set(g.coords) == set(w.coords)
    for k in w.variables:
        assert g[k].dims == w[k].dims and g[k].dtype == w[k].dtype, k
    for k in w.coords:
        assert np.array_equal(g[k].values, w[k].values), k
    assert np.array_equal(g["beta"].values, w["beta"].values)
    assert g.attrs.keys() == w.attrs.keys()
    for k, v in w.attrs.items():
        if k == "method":
            assert (g.attrs[k], v) == ("gram", "weights")
        else:
            assert np.array_equal(g.attrs[k], v), k
    assert not g["diverged"].any() and (g["divergence"] == "").all()
    assert np.isnan(g["t_diverged"]).all()
    # the same law, not the same numbers: one seed, two different trajectories
    assert not np.array_equal(g["Q"].values[:, 1:], w["Q"].values[:, 1:])
    if start == "prescribed":  # the Gram chain takes the start exactly
        for k in ("m", "d", "Q", "E", "R", "D"):
            assert np.all(g[k].values[:, 0] == np.asarray(init[k])), k


class Untouchable:
    """Stands in for the compiled module: any use of it means work has started."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"_core.{name} used before the arguments were checked")


@pytest.mark.parametrize(("kw", "match"), [
    ({"noise": "rademacher"}, "exact only for Gaussian data"),
    ({"dtype": "float32"}, "float64 only"),
    ({"N": 4}, r"N >= M_star \+ 2 M = 5, got 4"),
    ({"N": 4, "init": overlap_state(P, 0.5)}, r"N >= M_star \+ 2 M = 5, got 4"),
    ({"method": "exact"}, "method must be 'weights' or 'gram'"),
    ({"method": "Gram"}, "method must be 'weights' or 'gram'"),
])
def test_bad_input_is_refused_before_any_work(kw: dict[str, Any], match: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sim_module, "_core", Untouchable())
    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(ValueError, match=match):
        run(**{"checkpoint": ckpt, **kw})
    assert not ckpt.exists() and not list(tmp_path.iterdir())


def test_memory_estimate_does_not_grow_with_N() -> None:
    # the weights' estimate at N = 1e12 would be terabytes; the Gram chain holds 2 K^2
    # numbers per replica, so this starts (and is stopped at once by its own t_max)
    ds = run(P11, N=10**12, t_max=1e-10, record_every=1e-10, seeds=2)
    assert ds.sizes["t"] == 2 and not ds["diverged"].any()
    with pytest.raises(MemoryError, match="weights"):
        run(P11, N=10**12, t_max=1e-10, record_every=1e-10, method="weights")


# -- reproducibility ---------------------------------------------------------------------------

def test_bit_identical_for_threads_1_2_3() -> None:
    a, b, c = (run(N=5000, t_max=2.0, seeds=5, threads=t) for t in (1, 2, 3))
    xr.testing.assert_identical(a, b)
    xr.testing.assert_identical(a, c)


@pytest.mark.parametrize("stop_at", [2, 9])
def test_stopped_and_resumed_run_is_bit_identical(tmp_path: Path, stop_at: int,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    full = linvae.simulate(P, method="gram", **CKPT_RUN)
    ckpt = tmp_path / "run.ckpt"
    with monkeypatch.context() as mp:
        interrupt_at_checkpoint(mp, stop_at, CKPT_RUN["N"])
        with pytest.raises(linvae.errors.SimulationInterrupted) as info:
            linvae.simulate(P, method="gram", checkpoint=ckpt, checkpoint_every=0.0,
                            **CKPT_RUN)
    assert 0 < info.value.partial.sizes["t"] < full.sizes["t"]
    meta, arrays = linvae.io.load_checkpoint(ckpt)
    assert meta["run"]["method"] == "gram"
    assert {k.split("/")[1] for k in arrays if k.startswith("replica0/")} == \
        {"G", "G_comp", "D", "D_comp", "steps", "status", "stream"}
    resumed = linvae.simulate(P, method="gram", resume=ckpt, threads=1, **CKPT_RUN)
    xr.testing.assert_identical(full, resumed)
    with pytest.raises(ValueError, match=r"belongs to another run.*method: checkpoint "
                                         r"'gram' vs call 'weights'"):
        linvae.simulate(P, method="weights", resume=ckpt, **CKPT_RUN)


def test_checkpoint_from_before_the_method_setting_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a weight-engine checkpoint whose run key has no "method" (as written before there
    # was a choice) belongs to method="weights"
    run_kw = {**CKPT_RUN, "t_max": 1.0}
    full = linvae.simulate(P, **run_kw)
    ckpt = tmp_path / "old.ckpt"
    with monkeypatch.context() as mp:
        interrupt_at_checkpoint(mp, 3, CKPT_RUN["N"])
        with pytest.raises(linvae.errors.SimulationInterrupted):
            linvae.simulate(P, checkpoint=ckpt, checkpoint_every=0.0, **run_kw)
    meta, arrays = linvae.io.load_checkpoint(ckpt)
    del meta["run"]["method"], meta["format"]
    linvae.io.save_checkpoint(ckpt, meta, arrays)
    xr.testing.assert_identical(full.drop_attrs(),
                                linvae.simulate(P, resume=ckpt, **run_kw).drop_attrs())


# SIGTERM to a child running at N = 1e9: t = 0.05 is 5e7 steps per replica (~3 s of one
# thread for each), in chunks bounded in steps, so the stop must come within ~0.1 s
GIANT: dict[str, Any] = {"N": 10**9, "t_max": 0.05, "record_every": 0.005, "seeds": 2,
                         "seed": 3, "method": "gram"}
GIANT_CHILD = textwrap.dedent("""
    import json, sys
    import linvae
    import linvae.simulation  # load everything before the parent's signals come

    P = linvae.Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.5)
    print("start", flush=True)
    linvae.simulate(P, checkpoint=sys.argv[1], threads=1, progress=False,
                    init=linvae.states.overlap_state(P, 0.5), **json.loads(sys.argv[2]))
""")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_at_N_1e9_stops_promptly_and_resumes_bit_identically(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(GIANT_CHILD)
    ckpt = tmp_path / "job.ckpt"
    child = Child([sys.executable, str(script), str(ckpt), json.dumps(GIANT)], timeout=60)
    assert child.line() == "start"
    time.sleep(0.5)
    sent = time.monotonic()
    child.proc.send_signal(signal.SIGTERM)
    returncode, err = child.finish()
    assert time.monotonic() - sent < 2.0
    assert returncode == 143, err
    meta, _ = linvae.io.load_checkpoint(ckpt)
    assert 0 < meta["s0"] < GIANT["N"] * GIANT["t_max"]
    init = overlap_state(P11, 0.5)
    resumed = linvae.simulate(P11, resume=ckpt, threads=2, progress=False, init=init, **GIANT)
    whole = linvae.simulate(P11, threads=2, progress=False, init=init, **GIANT)
    xr.testing.assert_identical(whole.drop_attrs(), resumed.drop_attrs())


# -- divergence --------------------------------------------------------------------------------

def test_divergence_is_flagged_per_replica_not_clipped() -> None:
    # tau = 1 at N = 10 is at the edge: with this seed some replicas drive D below zero
    # and the others do not (fixed seeds, so always the same ones)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = run(P11.replace(tau=1.0), N=10, t_max=20.0, record_every=0.05, seeds=8, seed=1)
    div = ds["diverged"].values
    assert 0 < div.sum() < div.size, div
    assert sum(issubclass(w.category, DivergenceWarning) for w in caught) == div.sum()
    t = ds["t"].values
    for r in range(div.size):
        D = ds["D"].values[r, :, 0]
        if div[r]:
            assert ds["divergence"].values[r] == "D <= 0"
            td = float(ds["t_diverged"][r])
            assert 0 < td <= 20.0
            assert np.isnan(D[t >= td]).all() and np.isfinite(D[t < td]).all()
            assert (D[t < td] > 0).all()  # what was recorded is the state, not a clipped one
        else:
            assert ds["divergence"].values[r] == "" and np.isnan(ds["t_diverged"][r])
            assert np.isfinite(ds["Q"].values[r]).all()
    # far beyond the stability limit every replica stops, each with its reason
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)
        ds = run(P11.replace(tau=6.0), N=20, t_max=5.0, record_every=0.05, seeds=8, seed=1)
    assert ds["diverged"].all()
    assert set(ds["divergence"].values) <= set(DIVERGENCE_REASONS.values()) - {""}
    assert DIVERGENCE_REASONS[4] == "Gram matrix not positive semidefinite"


# -- the law ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("rates", "seed"), [({}, 21), ({"tau_V": 1.0, "tau_D": 0.3}, 31)],
                         ids=["equal rates", "per-block rates"])
def test_same_law_as_the_weights_at_small_N(rates: dict[str, float], seed: int) -> None:
    # Two independent samples of S replicas at N = 20 (random start, annealed beta),
    # compared entry by entry at each time: means within 4 standard errors of their
    # difference (level 6e-5 each) and Kolmogorov-Smirnov p > 1e-3. Bonferroni over the
    # 17 (entry, time) pairs: a correct chain fails with probability <= 17 * 1.06e-3,
    # about 2% per case; the seeds are fixed, so the outcome is too. (At N = 20 a much
    # faster encoder drives a few replicas to D <= 0, hence the moderate rates.)
    p = P11.replace(beta=Tanh(0.5, 0.5), **rates)
    S, N, times = 4000, 20, [0.0, 1.0, 3.0]
    w, g = (linvae.simulate(p, N, 3.0, times=times, seeds=S, seed=s, method=m,
                            progress=False)
            for s, m in ((seed, "weights"), (seed + 1, "gram")))
    assert not w["diverged"].any() and not g["diverged"].any()
    pairs = 0
    for k, ix in entries(p):
        for ti, t in enumerate(times):
            x, y = (ds[k].values[(slice(None), ti, *ix)] for ds in (w, g))
            if k == "D" and t == 0.0:  # D = 1 at the start, exactly
                assert (x == 1.0).all() and (y == 1.0).all()
                continue
            pairs += 1
            se = np.sqrt(x.var(ddof=1) / S + y.var(ddof=1) / S)
            assert abs(x.mean() - y.mean()) < 4 * se, (k, ix, t)
            assert stats.ks_2samp(x, y).pvalue > 1e-3, (k, ix, t)
    assert pairs == 17


def test_follows_the_ode_at_N_1e8() -> None:
    # The spread of a replica is sigma(t) / sqrt(N) with sigma independent of N, measured
    # at N = 1e4 with 1000 replicas; at N = 1e8 every replica, entry and time must be
    # within 5 of those of the ODE from the same start (SGD's O(1/N) bias is 1e-8).
    state = overlap_state(P11, 0.5)
    kw: dict[str, Any] = {"t_max": 0.5, "record_every": 0.125, "init": state,
                          "progress": False, "method": "gram"}
    small = linvae.simulate(P11, 10**4, seeds=1000, seed=1, **kw)
    N = 10**8
    big = linvae.simulate(P11, N, seeds=2, seed=2, **kw)
    ode = linvae.integrate(P11, t_max=0.5, init=state, t_eval=big["t"].values,
                           method="DOP853", rtol=1e-12, atol=1e-14)
    for k in ("m", "d", "Q", "E", "R", "D"):
        sigma = small[k].values[:, 1:].std(axis=0) * np.sqrt(10**4)
        gap = np.abs(big[k].values[:, 1:] - ode[k].values[1:])
        assert np.all(gap < 5 * sigma / np.sqrt(N)), (k, gap * np.sqrt(N) / sigma)
        assert np.all(big[k].values[:, 0] == ode[k].values[0])


# -- every way in ------------------------------------------------------------------------------

def test_method_from_the_command_line_and_a_config(tmp_path: Path) -> None:
    out = tmp_path / "g.nc"
    base = ["-q", "simulate", "--N", "1000000", "--t-max", "0.01", "--record-every", "0.005",
            "--seeds", "2"]
    assert cli.main([*base, "--method", "gram", "--out", str(out)]) == 0
    ds = linvae.io.load(out)
    assert ds.attrs["method"] == "gram" and ds.attrs["run_method"] == "gram"
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'[simulate]\nmethod = "gram"\nout = "{tmp_path / "c.nc"}"\n')
    assert cli.main([*base, "--config", str(cfg)]) == 0
    assert linvae.io.load(tmp_path / "c.nc").attrs["method"] == "gram"
    assert cli.main([*base, "--method", "gram", "--noise", "rademacher",
                     "--out", str(tmp_path / "r.nc")]) == 2
    assert not (tmp_path / "r.nc").exists()


def test_compare_with_a_method_per_N(tmp_path: Path) -> None:
    res = linvae.compare(P11, Ns=[300, 10**5, 10**6], t_max=0.5, replicas=2,
                         record_every=0.1, sim_method={10**5: "gram", 10**6: "gram"})
    assert res.methods == {300: "weights", 10**5: "gram", 10**6: "gram"}
    assert [res.sims[n].attrs["method"] for n in res.Ns] == ["weights", "gram", "gram"]
    assert list(res.gaps["method"].values) == ["weights", "gram", "gram"]
    assert "N=100000 gram" in repr(res)
    with pytest.raises(ValueError, match="not among Ns"):
        linvae.compare(P11, Ns=[300, 600], sim_method={1000: "gram"})
    with pytest.raises(ValueError, match="sim_method must be among"):
        linvae.compare(P11, Ns=[300, 600], sim_method="exact")
    code = cli.main(["-q", "compare", "--Ns", "300", "1000000", "--method", "weights", "gram",
                     "--t-max", "0.2", "--replicas", "2", "--out", str(tmp_path / "cmp")])
    assert code == 0
    gaps = linvae.io.load(tmp_path / "cmp" / "compare_gaps.nc")
    assert list(gaps["method"].values) == ["weights", "gram"]
    assert cli.main(["-q", "compare", "--Ns", "300", "600", "900", "--method", "weights",
                     "gram", "--out", str(tmp_path / "cmp2")]) == 2


def test_sweep_passes_the_method_and_keeps_the_keys_of_earlier_sweeps(tmp_path: Path) -> None:
    grid = linvae.sweeps.Grid(replicas=2, beta=[0.5, 1.0])
    kw: dict[str, Any] = {"task": "simulate", "executor": "serial", "progress": False,
                          "N": 500, "t_max": 0.2, "record_every": 0.1}
    first = linvae.sweep(P11, grid, out=tmp_path / "w", **kw)
    assert first.done == 2
    # "weights" is what the task did before it had the setting: the same points, done
    again = linvae.sweep(P11, grid, out=tmp_path / "w", method="weights", **kw)
    assert again.skipped == 2 and again.done == 0
    gram = linvae.sweep(P11, grid, out=tmp_path / "g", method="gram", **kw)
    assert gram.done == 2
    results = list((tmp_path / "g").glob("*.nc"))
    assert len(results) == 2
    for f in results:
        assert linvae.io.load(f).attrs["method"] == "gram"
    keys = [json.loads((tmp_path / d / "sweep.json").read_text())["keys"] for d in "wg"]
    assert set(keys[0]).isdisjoint(keys[1])
