"""Per-block learning rates: tau for W, tau_V for V, tau_D for D (docs/model.md#rates).

Checked here, each against something independent:
* rates equal to tau, given explicitly, change nothing bit for bit (weights in both
  precisions, the Gram chain, the ODEs);
* the compiled ODEs and Jacobian against the NumPy oracle, with unequal rates (one engine
  step against the NumPy reference, and the law of the Gram chain against the weights,
  are checked with per-block rates in tests/test_engine.py and tests/test_simulate_gram.py);
* the law: SGD against the ODEs over four decades of N (the gap shrinks like N^-1/2,
  and fails to with the wrong ODE), and the spread against the finite-N theory;
* the statics: at lam = 0 and small tau, the fixed points and the collapse threshold do
  not depend on the rates, while the growth rate out of the plateau does;
* bad input, and the rates through the command line.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import ode_oracle as oracle
import pytest
from test_fluctuations import _compare_sd, _one_step, _z_scores

import linvae
from linvae import finite_n as fn
from linvae import ode
from linvae.schedules import Tanh
from linvae.stability import collapse_growth_rate, collapse_threshold, stable_fixed_point
from linvae.states import overlap_state

P11 = linvae.Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.5)
P21 = linvae.Params(M=2, M_star=1, rho=1.5, eta=0.7, beta=0.9, lam=0.1, tau=0.4)
#: a fast encoder and slow variances: tau_V = 3 tau, tau_D = tau / 2
FAST = {"tau_V": 1.5, "tau_D": 0.25}


def _same(a: Any, b: Any) -> bool:
    return all(np.array_equal(a[k].values, b[k].values) for k in ("m", "d", "Q", "E", "R", "D"))


@pytest.mark.parametrize(("method", "dtype"), [("weights", "float64"), ("weights", "float32"),
                                               ("gram", "float64")])
def test_rates_equal_to_tau_change_nothing(method: str, dtype: str) -> None:
    p = P21.replace(beta=Tanh(0.9, 0.5))
    kw: dict[str, Any] = {"t_max": 2.0, "record_every": 0.5, "seeds": 3, "seed": 5,
                          "method": method, "progress": False}
    if method == "weights":
        kw["dtype"] = dtype
    a = linvae.simulate(p, 400, **kw)
    b = linvae.simulate(p.replace(tau_V=p.tau, tau_D=p.tau), 400, **kw)
    assert _same(a, b)
    c = linvae.simulate(p.replace(**FAST), 400, **kw)
    assert not _same(a, c)  # the rates are used


def test_rates_equal_to_tau_change_nothing_in_the_odes() -> None:
    state = overlap_state(P21, 0.5)
    a, b = (linvae.integrate(p, 3.0, init=state, record_every=0.5)
            for p in (P21, P21.replace(tau_V=P21.tau, tau_D=P21.tau)))
    assert _same(a, b)


@pytest.mark.parametrize("p", [P11.replace(**FAST), P21.replace(tau_V=0.1, tau_D=1.3),
                               linvae.Params(M=3, M_star=2, rho=[3.0, 0.5], eta=0.4,
                                             beta=Tanh(1.2, 0.7), lam=0.2, tau=0.6,
                                             tau_D=0.2)])
def test_rhs_and_jacobian_equal_the_oracle(p: linvae.Params) -> None:
    rng = np.random.default_rng(p.M + 5)
    for t in (0.0, 1.3, None):
        y = ode.layout(p).pack(oracle.random_state(p, rng))
        f, f0 = ode.rhs(t, y, p), oracle.rhs(t, y, p)
        assert np.abs(f - f0).max() <= 1e-12 * max(1.0, np.abs(f0).max()), t
        J, J0 = ode.jacobian(p, y, t), oracle.jacobian(p, y, t)
        assert np.abs(J - J0).max() <= 1e-12 * max(1.0, np.abs(J0).max()), t


def _gap_exponent(p: linvae.Params, p_ode: linvae.Params) -> float:
    """Slope of log(rms |SGD - ODE|) against log N, N = 1e3 .. 1e7 (Gram chain)."""
    state = overlap_state(p, 0.5)
    times = [0.25, 0.5, 0.75, 1.0]
    ode_ds = linvae.integrate(p_ode, 1.0, init=state, t_eval=times, method="DOP853",
                              rtol=1e-11, atol=1e-13)
    Ns = np.array([1e3, 1e4, 1e5, 1e6, 1e7])
    rms = []
    for i, N in enumerate(Ns):
        ds = linvae.simulate(p, int(N), 1.0, times=times, seeds=4, seed=40 + i, init=state,
                             method="gram", progress=False)
        sq = [((ds[k].values - ode_ds[k].values) ** 2).mean() for k in "mdQERD"]
        rms.append(math.sqrt(float(np.mean(sq))))
    return float(np.polyfit(np.log(Ns), np.log(rms), 1)[0])


def test_sgd_follows_the_odes_with_unequal_rates() -> None:
    # The rms gap over 4 replicas, 6 order parameters and 4 times has a relative error
    # of about 1/sqrt(2 * 96) = 7% per N, so the slope over 4 decades has a standard
    # error of about 0.02: the tolerance 0.1 is 5 of them. With the ODEs of equal rates
    # the gap stops shrinking (the drift is wrong at O(1)), so the check has power.
    p = P11.replace(lam=0.05, **FAST)
    assert abs(_gap_exponent(p, p) + 0.5) < 0.1
    assert _gap_exponent(p, P11.replace(lam=0.05)) > -0.2


@pytest.mark.parametrize("p", [P11.replace(lam=0.05, **FAST),
                               linvae.Params(M=2, M_star=2, rho=[2.0, 1.0], beta=0.3,
                                             tau=0.5, tau_V=1.5, tau_D=0.25)])
def test_finite_n_spread_with_unequal_rates(p: linvae.Params) -> None:
    # the sd over 1000 replicas has a relative error of 2.2%: within 10% of the theory
    _compare_sd(p, overlap_state(p, 0.5), N=2000, R=1000, times=[1.0, 3.0])


def test_one_step_covariance_with_unequal_rates() -> None:
    p = P21.replace(**FAST)
    state = overlap_state(p, 0.6)
    state["D"] = 0.8 * state["D"]
    f = _one_step(p, state, 100_000, 20_000, "gram", 20_000)
    keep = np.arange(ode.layout(p).size)[:-p.M]  # D moves deterministically
    z = _z_scores(f, fn.diffusion(p, state), keep)
    assert np.abs(z).max() < 5.0, z


@pytest.mark.parametrize("rates", [{"tau_V": 3e-3}, {"tau_D": 2e-4}, {"tau_V": 5e-3,
                                                                    "tau_D": 5e-4}])
def test_statics_do_not_depend_on_the_rates(rates: dict[str, float]) -> None:
    """At lam = 0 and tau -> 0 the ODEs are a rescaled gradient flow: the same critical
    points and stability. The fixed points differ by O(tau) (the tau^2 terms), here 1e-3."""
    p = linvae.Params(M=2, M_star=1, rho=1.0, eta=1.0, beta=0.6, tau=1e-3)
    q = p.replace(**rates)
    a, b = stable_fixed_point(p).state, stable_fixed_point(q).state
    for k in a:
        np.testing.assert_allclose(np.abs(b[k]), np.abs(a[k]), atol=2e-2, err_msg=k)
    assert float(collapse_threshold(q)) == pytest.approx(float(collapse_threshold(p)),
                                                          abs=1e-6)
    # but the growth out of the collapsed plateau (of m and d, so set by tau and tau_V),
    # hence the escape time, does depend on tau_V
    g = [collapse_growth_rate(x.replace(beta=0.5)) for x in (p, q)]
    if "tau_V" in rates:
        assert abs(g[1] / g[0] - 1.0) > 0.1
    else:
        assert g[1] == pytest.approx(g[0], rel=1e-9)


@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, "fast"])
@pytest.mark.parametrize("name", ["tau_V", "tau_D"])
def test_bad_rates_are_refused(name: str, value: Any) -> None:
    with pytest.raises((ValueError, TypeError), match=name):
        P11.replace(**{name: value})


def test_rates_follow_tau_unless_given() -> None:
    p = P11.replace(tau_V=2.0)
    assert p.rates == (0.5, 2.0, 0.5) and p.replace(tau=0.1).rates == (0.1, 2.0, 0.1)
    assert "tau_V=2.0" in repr(p) and "tau_D" not in repr(p)
    assert "tau_V" not in P11.to_attrs() and linvae.Params.from_attrs(p.to_attrs()) == p
    assert p.scaled_rates(0.5).rates == (0.25, 1.0, 0.25)


def test_rates_from_the_command_line(tmp_path: Any) -> None:
    from test_cli import cli_run

    out = cli_run("-q", "simulate", "--N", "200", "--t-max", "0.5", "--tau-V", "1.5",
                  "--tau-D", "0.25", "--out", str(tmp_path / "r.nc"))
    assert out.returncode == 0, out.stderr
    ds = linvae.io.load(tmp_path / "r.nc")
    assert ds.attrs["tau_V"] == 1.5 and ds.attrs["tau_D"] == 0.25
    bad = cli_run("simulate", "--N", "200", "--tau-V", "0")
    assert bad.returncode == 2 and "--tau-V 0" in bad.stderr and "> 0" in bad.stderr
