"""Tests of the SGD-vs-ODE comparison (docs/model.md#findings, deterministic limit)."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import xarray as xr
from gap_scaling import check_gap_shrinks_like_sqrt_n

from linvae import Params
from linvae.comparison import VARIABLES, Comparison, compare, fit_exponents, gap_statistics
from linvae.dataset import make_dataset
from linvae.ode import integrate
from linvae.states import overlap_state

OPS = ("m", "d", "Q", "E", "R", "D")


def make_fake_simulate(exponent: float = -0.5, amplitude: float = 0.3,
                       same_noise: bool = True, diverge_first: bool = False):
    """A stand-in for linvae.simulate: the ODE plus smooth noise ~ amplitude * N**exponent.

    With ``same_noise`` every N gets the same noise path (only its size changes), so the
    fitted exponent must be recovered exactly. ``diverge_first`` marks replica 0 as
    diverged and fills it with garbage, which compare must leave out.
    """
    calls = []

    def fake(p, N, t_max, record_every, *, seeds, seed, init, threads, progress,
             method="weights"):
        calls.append({"N": N, "t_max": t_max, "record_every": record_every,
                      "seeds": seeds, "seed": seed, "init": init, "threads": threads,
                      "progress": progress, "method": method})
        # the engine's grid: t = round(t N) / N
        t = np.unique(np.round(np.arange(0.0, t_max + 0.5 * record_every, record_every)
                               * N) / N)
        ode = integrate(p, t_max=float(t[-1]), init=init, t_eval=t)
        rng = np.random.default_rng(0 if same_noise else 1000 + N)
        ops = {}
        for k in OPS:
            base = ode[k].values[None]
            walk = np.cumsum(rng.standard_normal((seeds, *base.shape[1:])), axis=1)
            walk -= walk[:, :1]  # the prescribed start is realised exactly
            walk /= np.sqrt(len(t))
            ops[k] = base + amplitude * N**exponent * walk
        ops["Q"] = 0.5 * (ops["Q"] + np.swapaxes(ops["Q"], -1, -2))
        ops["E"] = 0.5 * (ops["E"] + np.swapaxes(ops["E"], -1, -2))
        ops["D"] = np.abs(ops["D"])
        diverged = np.zeros(seeds, dtype=bool)
        if diverge_first:
            diverged[0] = True
            for k in OPS:
                ops[k][0, len(t) // 2:] = np.nan
        ds = make_dataset(ops, t, p, lead=("replica", "t"), attrs={"kind": "simulation"})
        ds["diverged"] = ("replica", diverged)
        return ds

    fake.calls = calls  # type: ignore[attr-defined]
    return fake


P = Params(M=2, M_star=2, rho=(2.0, 1.0), eta=1.0, beta=0.5, lam=0.1, tau=0.5)


def test_gap_statistics_by_hand():
    ode = integrate(P, t_max=2.0, record_every=0.5)
    ops = {k: np.stack([ode[k].values, ode[k].values]) for k in OPS}
    ops["m"] = ops["m"].copy()
    ops["m"][1, :, 0, 1] += 0.2  # one replica, one entry, every time
    sim = make_dataset(ops, ode["t"].values, P, lead=("replica", "t"))
    g = gap_statistics(sim, ode)
    assert list(g["variable"].values) == list(VARIABLES)
    assert float(g["max"].sel(variable="m")) == pytest.approx(0.2)
    # one entry of 2 x 2, in one replica of 2: rms = 0.2 / sqrt(8)
    assert float(g["rms"].sel(variable="m")) == pytest.approx(0.2 / np.sqrt(8))
    assert float(g["max"].sel(variable="Q")) == 0.0
    with pytest.raises(ValueError, match="t grid"):
        gap_statistics(sim.isel(t=slice(1, None)), ode)


def test_fit_exponents_recovers_power_law():
    Ns = np.array([500, 2000, 8000, 32000])
    gaps = xr.Dataset({"max": (("N", "variable"), np.outer(3.0 * Ns**-0.5, [1.0, 2.0])),
                       "rms": (("N", "variable"), np.outer(0.5 * Ns**-1.0, [1.0, 1.0]))},
                      coords={"N": Ns, "variable": ["m", "Q"]})
    exps, pre = fit_exponents(gaps)
    np.testing.assert_allclose(exps["max"].values, [-0.5, -0.5])
    np.testing.assert_allclose(exps["rms"].values, [-1.0, -1.0])
    np.testing.assert_allclose(pre["max"].values, [3.0, 6.0])
    # non-finite or zero gaps are left out; fewer than two points gives NaN
    gaps["max"][1:, 0] = np.nan
    exps, _ = fit_exponents(gaps)
    assert np.isnan(float(exps["max"].sel(variable="m")))
    assert float(exps["max"].sel(variable="Q")) == pytest.approx(-0.5)


@pytest.mark.parametrize("exponent", [-0.5, -1.0])
def test_compare_recovers_exponent_with_fake_simulation(exponent):
    fake = make_fake_simulate(exponent=exponent)
    res = compare(P, Ns=[4000, 1000, 16000], t_max=3.0, replicas=3, record_every=0.25,
                  seed=5, threads=2, simulate_fn=fake)
    assert isinstance(res, Comparison)
    assert res.Ns == [1000, 4000, 16000]
    assert [c["N"] for c in fake.calls] == [1000, 4000, 16000]
    assert [c["seed"] for c in fake.calls] == [5, 6, 7]
    assert all(c["seeds"] == 3 and c["threads"] == 2 for c in fake.calls)
    s0 = overlap_state(P)
    for k in OPS:  # the default prescribed start is handed to the simulation
        np.testing.assert_array_equal(fake.calls[0]["init"][k], s0[k])
    assert set(res.gaps.dims) == {"N", "variable"}
    assert set(res.gaps.data_vars) == {"max", "rms"}
    # same noise path at every N: the exponent is exact for every order parameter
    for stat in ("max", "rms"):
        np.testing.assert_allclose(res.exponents[stat].sel(variable=list(OPS)).values,
                                   exponent, atol=1e-6)
    assert res.ode.attrs["kind"] == "ode"
    assert set(res.sims) == {1000, 4000, 16000}
    text = repr(res)
    assert "exp(rms)" in text
    assert "16000" in text


def test_compare_independent_noise_and_diverged_replica():
    fake = make_fake_simulate(same_noise=False, diverge_first=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the NaNs of the diverged replica must not leak
        res = compare(P, Ns=[1000, 4000, 16000, 64000], t_max=2.0, replicas=6,
                      record_every=0.1, simulate_fn=fake)
    assert res.n_diverged == {1000: 1, 4000: 1, 16000: 1, 64000: 1}
    assert np.all(np.isfinite(res.gaps["rms"].values))
    e = res.exponents["rms"].sel(variable=list(OPS)).values
    assert np.all(np.abs(e + 0.5) < 0.15), e
    assert "diverged" in repr(res)


def test_plots_render():
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from linvae import plot

    res = compare(P, Ns=[1000, 4000], t_max=2.0, replicas=2, record_every=0.25,
                  simulate_fn=make_fake_simulate())
    fig = res.plot(variable="Q")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    # replicas and theory at the same multiple of their sd, both in the legend
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert plot.THEORY_LABEL in labels and "ODE ± 2σ/√N (theory)" in labels
    assert "SGD N=1000 (mean ± 2 sd)" in labels
    dotted = [ln for ln in fig.axes[0].get_lines() if ln.get_linestyle() == ":"]
    n_entries = len(plot._default_entries(res.ode["Q"]))
    assert len(dotted) == 2 * 2 * n_entries + 1  # +- per N and entry, and the proxy
    assert fig.axes[1].get_xscale() == "log"
    fig.savefig(io.BytesIO(), format="png")
    fig2 = plot.figure(ncols=2)
    plot.plot_trajectories(res.ode, res.sims, variable="eg", ax=fig2.axes[0])
    # no theory given: no band
    assert plot.THEORY_LABEL not in [t.get_text() for t in
                                     fig2.axes[0].get_legend().get_texts()]
    plot.plot_gaps(res.gaps, stat="max", variables=["m", "D"], ax=fig2.axes[1])
    fig2.savefig(io.BytesIO(), format="png")
    with pytest.raises(ValueError, match="variable"):
        plot.plot_trajectories(res.ode, res.sims, variable="nope")
    with pytest.raises(ValueError, match="stat"):
        plot.plot_gaps(res.gaps, stat="median")


def test_spread_is_the_linear_noise_approximation():
    from linvae import fluctuations

    res = compare(P, Ns=[1000, 4000], t_max=2.0, replicas=4, record_every=0.25,
                  simulate_fn=make_fake_simulate(same_noise=False))
    spread = res.spread
    assert spread is not None
    lna = fluctuations(P, 1000, 2.0, init=overlap_state(P), record_every=0.25)
    np.testing.assert_allclose(spread["t"].values, res.ode["t"].values)
    for v in VARIABLES:
        assert spread[f"{v}_sd"].dims[:2] == ("N", "t")
        # integrated once at N = 1, scaled by N^-1/2
        np.testing.assert_allclose(spread[f"{v}_sd"].sel(N=1000).values,
                                   lna[f"{v}_sd"].values, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(spread[f"{v}_sd"].sel(N=4000).values,
                                   lna[f"{v}_sd"].values / 2, rtol=1e-6, atol=1e-12)
        for N in (1000, 4000):
            measured = res.sims[N][v].std("replica", ddof=1).values
            np.testing.assert_allclose(spread[f"{v}_sd_measured"].sel(N=N).values, measured,
                                       rtol=1e-12)
    ratio = res.spread_ratio
    assert ratio is not None and set(ratio["ratio"].dims) == {"N", "variable"}
    assert np.all(np.isfinite(ratio["ratio"].values))
    assert "replica sd / predicted sd" in repr(res)


def test_compare_without_the_prediction(monkeypatch, caplog):
    from linvae import finite_n, plot
    from linvae.errors import IntegrationError

    def broken(*args, **kwargs):
        raise IntegrationError("covariance equation failed (simulated)")

    monkeypatch.setattr(finite_n, "fluctuations", broken)
    with caplog.at_level("WARNING", logger="linvae"):
        res = compare(P, Ns=[1000, 4000], t_max=1.0, replicas=2, record_every=0.25,
                      simulate_fn=make_fake_simulate())
    assert res.spread is None and res.spread_ratio is None
    assert np.all(np.isfinite(res.gaps["rms"].values))
    assert "no predicted spread" in caplog.text and "simulated" in caplog.text
    assert "replica sd" not in repr(res)
    pytest.importorskip("matplotlib")
    fig = res.plot()
    assert plot.THEORY_LABEL not in [t.get_text() for t in
                                     fig.axes[0].get_legend().get_texts()]


@pytest.mark.parametrize(("kwargs", "exc", "name"), [
    ({"Ns": [1000]}, ValueError, "Ns"),
    ({"Ns": [1000, 1000]}, ValueError, "Ns"),
    ({"Ns": [1000, 0]}, ValueError, "Ns"),
    ({"Ns": 1000}, TypeError, "Ns"),
    ({"t_max": -1.0}, ValueError, "t_max"),
    ({"record_every": 50.0}, ValueError, "record_every"),
    ({"replicas": 0}, ValueError, "replicas"),
    ({"seed": -1}, ValueError, "seed"),
    ({"variables": ["m", "x"]}, ValueError, "variables"),
    ({"init": "random"}, TypeError, "init"),
])
def test_compare_validates_arguments(kwargs, exc, name):
    args = {"Ns": [1000, 4000], "t_max": 2.0, "simulate_fn": make_fake_simulate(), **kwargs}
    with pytest.raises(exc, match=name):
        compare(P, **args)


def test_compare_against_real_sgd():
    """SGD from the engine concentrates on the ODE: the gap shrinks like N^-1/2.

    From N = 1000 to 8000 the gap should shrink by sqrt(8) = 2.8, within the standard
    error of the gap estimated from 16 replicas.
    """
    pytest.importorskip("linvae._core")
    res = compare(P, Ns=[1000, 8000], t_max=5.0, replicas=16, record_every=0.25, seed=1)
    check_gap_shrinks_like_sqrt_n(res, ["m", "d", "Q", "E", "R"])
    e = res.exponents["rms"].sel(variable="m").item()
    assert -0.8 < e < -0.25, e
    # 16 replicas: an sd is known to ~18%, the median over times and entries better
    r = res.spread_ratio["ratio"].sel(variable=["m", "Q", "R"]).values
    assert np.all((r > 0.6) & (r < 1.5)), r
    assert res.sims[1000].attrs["kind"] == "simulation"
