"""The linear noise approximation (linvae.finite_n) against the exact finite-N chains.

Statistical tolerances, from sampling error:
* a sample covariance entry is compared in units of its own standard error (the sd of
  the products of centred increments over sqrt(n)); |z| < 5 over ~100 entries fails by
  chance with probability ~1e-4;
* a sample sd from n replicas has relative standard error ~ 1/sqrt(2n) (2.2% for
  n = 1000), and the LNA's own error on the sd is O(1/N) away from the plateau (0.05% at
  N = 2000): 10% is 4.5 standard errors;
* the median of n first-passage times has standard error ~ 1.25 sd / sqrt(n).
All runs have fixed seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from scipy.linalg import solve_continuous_lyapunov

from linvae import finite_n as fn
from linvae import ode, schedules, simulate
from linvae.observables import ORDER_PARAMETERS
from linvae.params import Params
from linvae.states import overlap_state, random_init_state

CASES = {
    "(1,1)": Params(M=1, M_star=1, tau=0.5, beta=0.5),
    "(2,1) lam": Params(M=2, M_star=1, tau=0.5, beta=0.5, lam=0.1),
    "(2,2) rho": Params(M=2, M_star=2, rho=[2.0, 1.0], tau=0.5, beta=0.5),
}


def _fixed_point(p: Params) -> dict[str, np.ndarray]:
    """The stable fixed point reached from overlap_state, refined by Newton's method."""
    lay = ode.layout(p)
    x = lay.pack(ode.final_state(p, 400.0, init=overlap_state(p)))
    for _ in range(20):
        x = x - np.linalg.solve(ode.jacobian(p, x), ode.rhs(None, x, p))
    assert np.abs(ode.rhs(None, x, p)).max() < 1e-12
    assert np.linalg.eigvals(ode.jacobian(p, x)).real.max() < 0
    return lay.unpack(x)


def _flat(p: Params, ds: xr.Dataset) -> np.ndarray:
    return ode.layout(p).pack({k: ds[k].values for k in ORDER_PARAMETERS})


def _generic_state(p: Params, seed: int) -> np.ndarray:
    """A physical state with every overlap nonzero and D != 1."""
    rng = np.random.default_rng(seed)
    s = overlap_state(p, 0.5)
    lay = ode.layout(p)
    x = lay.pack(s) + 0.05 * rng.standard_normal(lay.size)
    x[lay.slices["D"]] = 0.6 + 0.3 * rng.random(p.M)
    assert ode.min_gram_eigenvalue(lay.unpack(x)) > 0
    return x


# ---------------------------------------------------------------------------------------
# B(X) and the drift
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("M", "M_star"), [(1, 1), (2, 1), (2, 2), (3, 2), (1, 3)])
def test_drift_of_the_quadratic_form_is_the_ode(M: int, M_star: int) -> None:
    # E f = tr(A S) + c must be the ODEs' right-hand side for any state: this checks every
    # A_i and c_i (B uses the same A_i)
    p = Params(M=M, M_star=M_star, rho=np.linspace(2.0, 1.0, M_star), eta=0.7, beta=0.4,
               lam=0.05, tau=0.6)
    for seed in range(3):
        x = _generic_state(p, seed)
        form = fn.increment_form(p, x)
        assert form.A.shape == (x.size, M_star + 2 * M, M_star + 2 * M)
        np.testing.assert_allclose(form.drift, ode.rhs(None, x, p), rtol=0, atol=1e-13)


def test_drift_follows_the_schedule() -> None:
    p = Params(M=2, M_star=1, beta=schedules.Tanh(beta_inf=0.8, gamma=0.3), tau=0.5)
    x = _generic_state(p, 1)
    for t in (0.0, 1.0, 5.0):
        np.testing.assert_allclose(fn.increment_form(p, x, t).drift, ode.rhs(t, x, p),
                                   atol=1e-13)


def _one_step(p: Params, state: dict[str, np.ndarray], N: int, R: int, method: str,
              batch: int) -> np.ndarray:
    """f = N (X(1/N) - X(0)) of R replicas from the prescribed state."""
    out = []
    for i, b in enumerate(range(0, R, batch)):
        ds = simulate(p, N, 1.0 / N, 1.0 / N, seeds=min(batch, R - b), seed=100 + i,
                      init=state, method=method, progress=False)  # type: ignore[arg-type]
        X = _flat(p, ds)
        out.append(N * (X[:, 1] - X[:, 0]))
    return np.concatenate(out)


def _z_scores(f: np.ndarray, B: np.ndarray, keep: np.ndarray) -> np.ndarray:
    f = f[:, keep]
    fc = f - f.mean(axis=0)
    prod = fc[:, :, None] * fc[:, None, :]
    se = prod.std(axis=0) / math.sqrt(len(f))
    return (prod.mean(axis=0) - B[np.ix_(keep, keep)]) / se


@pytest.mark.parametrize(("method", "N", "R", "batch"),
                         [("gram", 100_000, 20_000, 20_000), ("weights", 2000, 3000, 1000)])
@pytest.mark.parametrize("case", ["(1,1)", "(2,2) rho"])
def test_diffusion_is_the_covariance_of_one_step(case: str, method: str, N: int, R: int,
                                                 batch: int) -> None:
    p = CASES[case].replace(lam=0.05)
    state = overlap_state(p, 0.6)
    state["D"] = 0.8 * state["D"]
    B = fn.diffusion(p, state)
    f = _one_step(p, state, N, R, method, batch)
    keep = np.arange(ode.layout(p).size)[:-p.M]  # D moves deterministically
    z = _z_scores(f, B, keep)
    assert np.abs(z).max() < 5.0, (ode.layout(p).labels, z)


def test_initial_covariance_is_the_random_start() -> None:
    p = CASES["(2,2) rho"]
    N, R = 500, 20_000
    ds = simulate(p, N, 1.0 / N, 1.0 / N, seeds=R, seed=3, method="gram", progress=False)
    X = _flat(p, ds)[:, 0]
    var = N * X.var(axis=0, ddof=1)
    pred = np.diag(fn.initial_covariance(p))
    # relative SE of a variance ~ sqrt(2 / R) = 1%; N Var is exact at every N
    ok = pred > 0
    np.testing.assert_allclose(var[ok], pred[ok], rtol=0.05)
    assert np.all(var[~ok] < 1e-20)
    C = N * np.cov(X[:, ok].T)
    off = C - np.diag(np.diag(C))
    assert np.abs(off).max() < 5 * math.sqrt(2.0 / R) * 2  # entries of sd <= sqrt(2 * 2 / R)


# ---------------------------------------------------------------------------------------
# along trajectories
# ---------------------------------------------------------------------------------------
def _compare_sd(p: Params, init: str | dict[str, np.ndarray], N: int, R: int,
                times: list[float]) -> None:
    pred = fn.fluctuations(p, N, times[-1], init=init, t_eval=times)
    ds = simulate(p, N, times[-1], times=times, seeds=R, seed=7, init=init, method="gram",
                  progress=False)  # type: ignore[arg-type]
    sd = _flat(p, ds).std(axis=0, ddof=1)
    psd = np.sqrt(np.diagonal(pred["cov"].values, axis1=1, axis2=2))
    labels = ode.layout(p).labels
    for i, t in enumerate(times):
        ok = psd[i] > 0
        ratio = sd[i, ok] / psd[i, ok]
        assert np.all(np.abs(ratio - 1) < 0.10), (t, np.asarray(labels)[ok], ratio)
        assert np.all(sd[i, ~ok] < 1e-12)


@pytest.mark.parametrize("case", list(CASES))
def test_sd_from_a_prescribed_start_matches_the_gram_chain(case: str) -> None:
    p = CASES[case]
    _compare_sd(p, overlap_state(p, 0.5), N=2000, R=1000, times=[1.0, 3.0, 6.0])


@pytest.mark.parametrize("case", ["(1,1)", "(2,2) rho"])
def test_sd_from_the_random_start_matches_the_gram_chain(case: str) -> None:
    # on the plateau, before the escape (t <= 2 at N = 4000 keeps |m| ~ 0.05)
    _compare_sd(CASES[case], "random", N=4000, R=1000, times=[0.0, 1.0, 2.0])


def test_fluctuations_dataset() -> None:
    p = CASES["(2,1) lam"]
    ds = fn.fluctuations(p, 1000, 2.0, init=overlap_state(p), record_every=0.5)
    mean = ode.integrate(p, 2.0, init=overlap_state(p), record_every=0.5)
    for k in ORDER_PARAMETERS:
        xr.testing.assert_allclose(ds[k], mean[k])
        assert ds[f"{k}_sd"].dims == mean[k].dims
    assert ds["cov"].dims == ("t", "component", "component2")
    assert list(ds["component"].values) == ode.layout(p).labels
    assert float(np.abs(ds["cov"].isel(t=0)).max()) == 0.0
    # Q_sd is symmetric, and the packed Q[0,1] variance is both entries'
    Qsd = ds["Q_sd"].isel(t=-1).values
    np.testing.assert_allclose(Qsd, Qsd.T)
    np.testing.assert_allclose(Qsd[0, 1] ** 2, ds["cov"].isel(t=-1).sel(
        component="Q[0,1]", component2="Q[0,1]").item())
    # Cov scales like 1/N
    ds4 = fn.fluctuations(p, 4000, 2.0, init=overlap_state(p), record_every=0.5)
    np.testing.assert_allclose(ds4["cov"].values * 4, ds["cov"].values, rtol=1e-12)
    assert ds.attrs["N"] == 1000 and ds.attrs["init"] == "prescribed"


def test_eg_sd_is_the_delta_method() -> None:
    p = CASES["(1,1)"]
    ds = fn.fluctuations(p, 1000, 3.0, init=overlap_state(p), record_every=1.0)
    cov = ds["cov"].values
    lay = ode.layout(p)
    # eps_g = rho - 2 sqrt(rho) |m| + Q for (1, 1)
    g = np.zeros(lay.size)
    g[lay.slices["Q"]] = 1.0
    g[lay.slices["m"]] = -2.0 * math.sqrt(p.rho[0]) * np.sign(ds["m"].values[-1, 0, 0])
    np.testing.assert_allclose(ds["eg_sd"].values[-1], math.sqrt(g @ cov[-1] @ g),
                               rtol=1e-6)
    # on the collapsed manifold eps_g has a kink at m = 0: no delta method there
    rnd = fn.fluctuations(p, 1000, 1.0, record_every=0.5)
    assert np.all(np.isnan(rnd["eg_sd"].values))
    assert np.all(np.isnan(fn.eg_gradient(p, lay.pack(random_init_state(p)))[lay.slices["m"]]))


# ---------------------------------------------------------------------------------------
# stationary covariance
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(CASES))
def test_stationary_covariance_solves_the_lyapunov_equation(case: str) -> None:
    p = CASES[case]
    fp = _fixed_point(p)
    st = fn.stationary_covariance(p, fp)
    x = ode.layout(p).pack(fp)
    J, B = ode.jacobian(p, x), fn.diffusion(p, x)
    S = st.sigma.values
    assert np.abs(J @ S + S @ J.T + B).max() < 1e-9 * np.abs(B).max()
    np.testing.assert_allclose(S, S.T, atol=1e-12)
    assert np.linalg.eigvalsh(S).min() > -1e-10
    assert list(st.sigma["component"].values) == ode.layout(p).labels
    np.testing.assert_allclose(S, solve_continuous_lyapunov(J, -B), rtol=1e-8, atol=1e-12)
    assert math.isclose(st.eg_sd(100), math.sqrt(st.eg_var / 100))
    assert st.eigenvalues[0].real == pytest.approx(np.linalg.eigvals(J).real.max())


def test_covariance_at_a_fixed_point_relaxes_to_the_stationary_one() -> None:
    p = CASES["(1,1)"]
    fp = _fixed_point(p)
    st = fn.stationary_covariance(p, fp)
    S = st.sigma.values
    # Sigma(t) - Sigma(inf) decays like exp(2 Re lambda_max t): 1e-9 of it is left at t_end
    t_end = 10.4 / abs(st.eigenvalues[0].real)
    ds = fn.fluctuations(p, 1, t_end, init=fp, t_eval=[0.0, t_end])
    np.testing.assert_allclose(ds["cov"].values[-1], S, rtol=1e-6, atol=1e-7 * np.abs(S).max())


def test_stationary_sd_matches_the_gram_chain() -> None:
    p = CASES["(1,1)"]
    fp = _fixed_point(p)
    st = fn.stationary_covariance(p, fp)
    N, R = 500, 1000
    # the variance relaxes like exp(2 Re lambda_max t), Re lambda_max = -0.136: at t = 40,
    # 2e-5 of the gap is left
    ds = simulate(p, N, 40.0, times=[40.0], seeds=R, seed=5, init=fp, method="gram",
                  progress=False)
    sd = _flat(p, ds)[:, 0].std(axis=0, ddof=1)
    pred = st.sd(N).values
    # relative SE 2.2%, LNA error O(1/N) = 0.2%
    np.testing.assert_allclose(sd, pred, rtol=0.10)
    assert abs(float(ds["eg"].std()) / st.eg_sd(N) - 1) < 0.10


@pytest.mark.parametrize("case", ["(1,1)", "(2,2) rho"])
def test_fixed_point_covariance_is_the_stationary_covariance(case: str) -> None:
    from linvae import stable_fixed_point

    p = CASES[case]
    fp = stable_fixed_point(p, integrate_starts=False)
    st = fp.covariance()
    direct = fn.stationary_covariance(p, fp.state)
    np.testing.assert_array_equal(st.sigma.values, direct.sigma.values)
    assert list(st.sigma["component"].values) == ode.layout(p).labels
    np.testing.assert_array_equal(st.eigenvalues, direct.eigenvalues)
    # sd(N) = sqrt(diag Sigma / N): quadrupling N halves it
    np.testing.assert_allclose(st.sd(4000).values, st.sd(1000).values / 2, rtol=1e-12)
    np.testing.assert_allclose(st.sd(1000).values, np.sqrt(np.diag(direct.sigma.values)
                                                           / 1000), rtol=1e-12)
    assert np.all(st.sd(1000).sel(component=[c for c in st.sigma["component"].values
                                             if not str(c).startswith("D")]).values > 0)
    assert st.eg_sd(4000) == pytest.approx(st.eg_sd(1000) / 2, rel=1e-12)


def test_covariance_of_an_unstable_fixed_point_is_refused() -> None:
    from linvae import fixed_points

    unstable = [f for f in fixed_points(CASES["(1,1)"], integrate_starts=False)
                if not f.stable]
    assert unstable
    with pytest.raises(ValueError, match="linearly stable"):
        unstable[0].covariance()


def test_stationary_covariance_refuses_non_fixed_points() -> None:
    p = CASES["(1,1)"]
    with pytest.raises(ValueError, match=r"fixed point.*max \|rhs\|"):
        fn.stationary_covariance(p, overlap_state(p))
    # the collapsed fixed point, unstable for beta < rho + eta
    collapsed = {"m": np.zeros((1, 1)), "d": np.zeros((1, 1)), "Q": np.zeros((1, 1)),
                 "E": np.zeros((1, 1)), "R": np.zeros((1, 1)), "D": np.ones(1)}
    with pytest.raises(ValueError, match="linearly stable"):
        fn.stationary_covariance(p, collapsed)


# ---------------------------------------------------------------------------------------
# the escape from the plateau
# ---------------------------------------------------------------------------------------
#: Large growth rate (lambda = 1.61; the plateau fits the noise, beta < eta), so that the
#: escape takes few steps.
ESCAPE = Params(rho=2.0, eta=0.5, beta=0.2, tau=1.5)


def _passage_times(p: Params, N: int, R: int, target: float, t_max: float) -> np.ndarray:
    ds = simulate(p, N, t_max, 0.02, seeds=R, seed=11, method="gram", progress=False)
    m = np.abs(ds["m"].values[:, :, 0, 0])
    t = ds["t"].values
    hit = m >= target
    i = np.argmax(hit, axis=1)
    assert hit[np.arange(R), i].mean() > 0.9  # the median is among the passages
    i = np.maximum(i, 1)
    lo, hi = m[np.arange(R), i - 1], m[np.arange(R), i]
    out = t[i - 1] + (target - lo) / (hi - lo) * (t[i] - t[i - 1])
    return np.where(hit.any(axis=1), out, np.inf)


@pytest.mark.parametrize(("N", "R"), [(1000, 2000), pytest.param(10_000, 1000,
                                                                   marks=pytest.mark.slow)])
def test_escape_time_is_the_median_first_passage(N: int, R: int) -> None:
    e = fn.escape_time(ESCAPE, N)
    t = _passage_times(ESCAPE, N, R, e.level * e.m_fixed, e.t + 3.3 / e.rate)
    med = float(np.median(t))
    # sd of the passage time ~ 1.11 / lambda = 0.69; SE of the median 0.02 (R = 2000),
    # i.e. 1% of t: 5% is 5 SE, and the prediction's error is O(N^-1/2)
    assert abs(med / e.t - 1) < 0.05, (med, e)


def test_escape_time_large_n_form() -> None:
    p = Params(rho=2.0, eta=0.5, beta=1.0, tau=1.5)  # fully collapsed plateau
    pl = fn.plateau(p)
    assert np.abs(pl.state["Q"]).max() < 1e-10 and pl.state["D"][0] == pytest.approx(1.0)
    # lambda is the odd block's eigenvalue at Q = E = R = 0, D = 1: tau times the top
    # eigenvalue of [[-1, rho + eta], [rho + eta, -beta (rho + eta)]]
    a = p.rho[0] + p.eta
    top = float(np.linalg.eigvalsh(np.array([[-1.0, a], [a, -p.beta_inf * a]])).max())
    assert pl.rate == pytest.approx(p.tau * top, rel=1e-10)
    e8, e12, e60 = (fn.escape_time(p, N) for N in (10**8, 10**12, 10**60))
    assert e8.slope == pytest.approx(0.5 / pl.rate)
    # exactly the large-N form once the linear regime outlasts the plateau's transient
    # (t_relax = 33 here), and close to it well before
    assert e60.t == e60.t_asymptotic
    assert e12.t == pytest.approx(e12.t_asymptotic, abs=1e-3)
    assert e8.t == pytest.approx(e8.t_asymptotic, abs=1e-2)
    assert abs(e12.t - e12.t_asymptotic) < abs(e8.t - e8.t_asymptotic)
    assert float(e8) == e8.t


def test_growth_rate_vanishes_at_the_threshold() -> None:
    # for beta > eta the plateau is fully collapsed and lambda -> 0 as beta -> rho + eta
    p = ESCAPE.replace(tau=0.5)
    rates = [fn.plateau(p.replace(beta=b)).rate for b in (1.5, 2.4, 2.49)]
    assert all(np.diff(rates) < 0) and 0 < rates[-1] < 0.002
    with pytest.raises(ValueError, match="no escape"):
        fn.plateau(p.replace(beta=2.6))


# ---------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------
def test_arguments_are_checked() -> None:
    p = CASES["(1,1)"]
    with pytest.raises(TypeError, match=r"p must be a linvae\.Params"):
        fn.fluctuations("p", 10, 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="N must be >= 1, got 0"):
        fn.fluctuations(p, 0, 1.0)
    with pytest.raises(TypeError, match="N must be an integer"):
        fn.fluctuations(p, 10.5, 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="t_max must be > 0"):
        fn.fluctuations(p, 10, -1.0)
    with pytest.raises(ValueError, match="record_every must be <= t_max"):
        fn.fluctuations(p, 10, 1.0, record_every=2.0)
    with pytest.raises(ValueError, match="init must be 'random' or a state"):
        fn.fluctuations(p, 10, 1.0, init="zero")
    with pytest.raises(ValueError, match="method must be one of"):
        fn.fluctuations(p, 10, 1.0, method="Euler")
    with pytest.raises(ValueError, match="state must be one flat state of length 6"):
        fn.diffusion(p, np.zeros(5))
    with pytest.raises(ValueError, match="level must be < 1"):
        fn.escape_time(ESCAPE, 1000, level=1.0)
    with pytest.raises(ValueError, match="N must be >= 3"):
        fn.escape_time(ESCAPE, 2)
    with pytest.raises(ValueError, match=r"M = M_star = 1 only, got \(M, M_star\) = \(2, 1\)"):
        fn.escape_time(CASES["(2,1) lam"], 1000)
    with pytest.raises(ValueError, match="constant beta"):
        fn.escape_time(ESCAPE.replace(beta=schedules.Tanh(beta_inf=0.2, gamma=1.0)), 1000)
    with pytest.raises(ValueError, match="N must be >= 1"):
        fn.stationary_covariance(p, _fixed_point(p)).sd(0)
