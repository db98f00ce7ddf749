"""The three findings and disentanglement, as data and as figures (docs/model.md#findings)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from linvae import Params, schedules
from linvae.findings import (
    annealing,
    collapse_sweep,
    disentanglement,
    disentanglement_score,
    phase_diagram,
    plot_annealing,
    plot_collapse,
    plot_disentanglement,
    plot_superfluous,
    superfluous,
    superfluous_vs_M,
)
from linvae.schedules import make_schedule
from linvae.stability import stable_fixed_point
from linvae.states import entangled_state


@pytest.fixture(scope="module")
def sweep1() -> xr.Dataset:
    return collapse_sweep(Params(rho=1.0, eta=1.0, tau=0.5), [0.3, 0.5, 1.0, 1.9, 2.1, 2.5])


@pytest.fixture(scope="module")
def sup() -> xr.Dataset:
    return superfluous(t_max=1000.0, record_every=5.0)


def test_collapse_sweep_single_factor(sweep1):
    ds = sweep1
    assert ds["eg"].dims == ("beta",) and ds["m"].dims == ("beta", "latent", "factor")
    assert float(ds["threshold"][0]) == pytest.approx(2.0, abs=1e-6)
    learned = ds["beta"].values < 2.0
    assert np.all(ds["n_learned"].values == learned.astype(int))
    assert np.all(ds["rate"].values[~learned] < 1e-12)
    assert np.all(ds["rate"].values[learned] > 1e-3)
    np.testing.assert_allclose(ds["eg"].values[~learned], 1.0, atol=1e-12)
    np.testing.assert_allclose(ds["max_real"].values < 0, True)
    # the documented point
    assert round(float(ds["Q"].sel(beta=0.5)[0, 0]), 2) == 2.08
    assert float(ds["eg"].sel(beta=0.5)) == pytest.approx(
        stable_fixed_point(Params(beta=0.5, tau=0.5)).eg, abs=1e-10)


def test_collapse_cascade_three_factors():
    p = Params(M=3, M_star=3, rho=[3.0, 2.0, 1.0], eta=0.5, tau=0.1)
    ds = collapse_sweep(p, [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(ds["threshold"].values, [3.5, 2.5, 1.5], atol=1e-6)
    assert ds["n_learned"].values.tolist() == [3, 2, 1, 0]
    assert np.all(np.diff(ds["rate"].values) < 0)


def test_phase_diagram_matches_thresholds():
    ds = phase_diagram(Params(tau=0.1), betas=[0.5, 1.2, 2.2, 3.2], rhos=[0.5, 1.5, 2.5])
    assert ds["rate"].dims == ("rho", "beta")
    np.testing.assert_allclose(ds["threshold"].values, ds["predicted"].values, atol=1e-6)
    expect = ds["beta"].values[None, :] < ds["threshold"].values[:, None]
    assert np.array_equal(ds["learned"].values == 1, expect)


def test_superfluous_latent_fits_noise_below_eta_and_collapses_above(sup):
    below, above = sup.sel(beta=0.5), sup.sel(beta=1.5)
    # below eta the extra latent fits noise: Q_22, R_22 > 0 while m_2 = 0
    assert float(below["Qkk"][-1, 1]) > 0.1 and float(below["Rkk"][-1, 1]) > 0.1
    # it un-learns the factor only slowly (the slowest mode of that fixed point)
    mk = below["mk"].values[:, 1]
    assert mk[-1] < 1e-3 and mk[0] > 0.01
    slow = float(sup["max_real"].sel(beta=0.5))
    rate = np.log(mk[-1] / mk[len(mk) // 2]) / (sup["t"].values[-1] - sup["t"].values[len(mk) // 2])
    assert rate == pytest.approx(slow, rel=0.02)
    assert float(below["latent_rate"][-1, 1]) > 0.01
    np.testing.assert_allclose(below["Qkk"][-1].values, below["fp_Qkk"].values, atol=1e-3)
    # above eta it collapses
    assert float(above["Qkk"][-1, 1]) < 1e-3 and float(above["latent_rate"][-1, 1]) < 1e-4
    assert float(sup["max_real"].sel(beta=0.5)) > float(sup["max_real"].sel(beta=1.5))


def test_superfluous_vs_M():
    ds = superfluous_vs_M(Ms=(1, 2), betas=(0.5, 1.5))
    below, above = ds.sel(beta=0.5), ds.sel(beta=1.5)
    assert float(below["eg"].sel(M=2)) > float(below["eg"].sel(M=1)) + 0.3  # noise raises eps_g
    assert float(below["max_real"].sel(M=2)) > float(below["max_real"].sel(M=1))  # slower
    assert float(below["t_conv"].sel(M=2)) > 3 * float(below["t_conv"].sel(M=1))
    assert below["n_noise"].values.tolist() == [0, 1]
    np.testing.assert_allclose(above["eg"].values, above["eg"].values[0], atol=1e-9)
    assert above["n_noise"].values.tolist() == [0, 0]


def test_annealing_tanh_and_gamma_star():
    ds = annealing(gammas=[0.02, 0.1], kinds=("tanh", "linear"))
    assert float(ds["gamma_star"]) == pytest.approx(0.068, abs=5e-4)
    assert float(ds["t_constant"]) == pytest.approx(61, abs=1)
    tanh = ds["t_conv"].sel(schedule="tanh")
    assert float(tanh.sel(gamma=0.02)) == pytest.approx(174, abs=1)
    assert float(tanh.sel(gamma=0.1)) == pytest.approx(60, abs=1)
    # slower than gamma* delays convergence; faster is like constant beta
    assert float(tanh.sel(gamma=0.02)) > 2 * float(ds["t_constant"])
    assert abs(float(tanh.sel(gamma=0.1)) - float(ds["t_constant"])) < 3
    assert float(ds["t_conv"].sel(schedule="linear", gamma=0.02)) > 100  # ramp ends at 100


def test_make_schedule():
    for kind in schedules.RATE_KINDS:
        s = make_schedule(kind, 0.5, 0.1)
        assert s.limit() == 0.5
        assert float(s(1e4)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="kind"):
        make_schedule("cosine", 0.5, 0.1)
    with pytest.raises(ValueError, match="gamma"):
        make_schedule("tanh", 0.5, 0.0)


def test_disentanglement_score():
    assert disentanglement_score(np.eye(2)) == pytest.approx(1.0)
    assert disentanglement_score(np.array([[0.0, -2.0], [1.0, 0.0]])) == pytest.approx(1.0)
    c = 1 / math.sqrt(2)
    assert disentanglement_score(np.array([[c, c], [c, -c]])) == pytest.approx(0.5)
    stack = np.stack([np.eye(2), np.array([[c, c], [c, -c]])])
    np.testing.assert_allclose(disentanglement_score(stack), [1.0, 0.5])
    assert disentanglement_score(np.ones((3, 1))) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="m must have"):
        disentanglement_score(np.ones(3))


def test_disentanglement_from_entangled_to_diagonal():
    ds = disentanglement(t_max=400.0, record_every=5.0)
    score = ds["score"].values
    assert score[0] == pytest.approx(math.cos(0.6) ** 2, abs=1e-9)
    assert score[-1] > 0.999
    assert ds.attrs["max_real"] < 0
    m = ds["m"].values[-1]
    assert abs(m[0, 1]) < 1e-3 and abs(m[1, 0]) < 1e-3
    with pytest.raises(ValueError, match="M >= 2"):
        entangled_state(Params(M=1, M_star=1))


def test_validation():
    with pytest.raises(ValueError, match="betas"):
        collapse_sweep(Params(), [0.0, 1.0])
    with pytest.raises(ValueError, match="betas"):
        collapse_sweep(Params(), [])
    with pytest.raises(ValueError, match="rhos"):
        phase_diagram(Params(), betas=[1.0], rhos=[-1.0])
    with pytest.raises(ValueError, match="M > M_star"):
        superfluous(Params(M=1, M_star=1))
    with pytest.raises(ValueError, match="kinds"):
        annealing(gammas=[0.1], kinds=("nope",))
    with pytest.raises(ValueError, match="gammas"):
        annealing(gammas=[-0.1])
    with pytest.raises(TypeError, match="p must be"):
        collapse_sweep("p")
    with pytest.raises(ValueError, match="delta"):
        superfluous_vs_M(delta=0.0)


def test_figures_draw_and_save(tmp_path, sweep1, sup):
    from matplotlib.figure import Figure

    phase = xr.Dataset({"rate": (("rho", "beta"), np.random.default_rng(0).random((3, 4))),
                        "threshold": (("rho",), [1.5, 2.0, 2.5]),
                        "predicted": (("rho",), [1.5, 2.0, 2.5])},
                       coords={"rho": [0.5, 1.0, 1.5], "beta": [0.5, 1.0, 2.0, 3.0]})
    vs_M = xr.Dataset({"eg": (("beta", "M"), [[0.2, 0.8], [0.1, 0.1]]),
                       "t_conv": (("beta", "M"), [[100, 120], [150, 150]]),
                       "max_real": (("beta", "M"), [[-0.05, -0.01], [-0.04, -0.04]])},
                      coords={"beta": [0.5, 1.5], "M": [1, 2]})
    ann = xr.Dataset({"t_conv": (("schedule", "gamma"), [[170, 60], [120, 60]]),
                      "t_constant": ((), 61.0), "gamma_star": ((), 0.068)},
                     coords={"schedule": ["tanh", "linear"], "gamma": [0.02, 0.1]},
                     attrs={"delta": 1e-3, "beta_inf": 0.5})
    dis = disentanglement(t_max=20.0, record_every=2.0)
    figs = {"collapse": plot_collapse(sweep1, phase), "collapse1": plot_collapse(sweep1),
            "superfluous": plot_superfluous(sup, vs_M), "superfluous1": plot_superfluous(sup),
            "annealing": plot_annealing(ann), "dis": plot_disentanglement(dis)}
    for name, fig in figs.items():
        assert isinstance(fig, Figure)
        out = tmp_path / f"{name}.png"
        fig.savefig(out, dpi=40)
        assert out.stat().st_size > 1000
    # drawing on a figure passed in
    from linvae.plot import figure

    fig = figure()
    assert plot_annealing(ann, fig=fig) is fig
