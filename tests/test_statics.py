"""The minimum of the training loss on P = alpha N samples (docs/model.md#training-minimum).

What is checked, and against what:
* the derivation: the minimum built from a covariance's eigenpairs against a direct
  numerical minimisation of the training loss over the weights, for a dense covariance
  at small N (lam = 0 and lam > 0, a superfluous latent, two factors);
* alpha -> infinity against today's population answers: the stable fixed point of the
  ODEs as tau -> 0, and the collapse and noise thresholds;
* the Lanczos iteration on regenerated samples against a dense eigen-solve of the same
  stored samples;
* both theories against long multi-epoch SGD.

**SGD against theory: the tolerances.** SGD at step size tau sits O(tau) away from the
minimum (about +0.08 in Q at tau = 0.05 here), so every comparison uses two runs on the
same datasets, at tau and tau / 2, and their extrapolation 2 X(tau/2) - X(tau) to
tau = 0, whose error is O(tau^2): about 0.004 in Q from the measured O(tau) term. The
runs last t = 500 / tau * 0.1 (about 20 relaxation times of the slowest direction that
matters above the BBP point), so the remaining time adds less than 1e-3.
* Per dataset (same replica, same samples) the prediction has no sampling error, and the
  tolerance is 0.01 in Q (2.5 times the tau^2 estimate). The N -> infinity theory misses
  the same runs by about 0.1 (the sample-to-sample scatter at N = 400), so the check has
  power, and "closer" is asserted too.
* For the N -> infinity theory, the mean over R replicas of the extrapolated SGD value
  is compared with tolerance 3.3 standard errors (its replica spread / sqrt(R); a
  false-failure rate of 0.1% for a Gaussian mean) plus the finite-N bias of the
  eigenvalue it rests on: 0.02 for an outlier (O(1/N)), 0.1 for the bulk edge (Tracy-
  Widom, O(N^(-2/3))). All seeds are fixed, so a pass is reproducible.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy.optimize import minimize

import linvae
from linvae import DataSpec, Params
from linvae.stability import (
    Spectrum,
    collapse_threshold,
    dataset_spectrum,
    noise_threshold,
    stable_fixed_point,
    training_minimum,
)
from linvae.stability.statics import bulk_edge, spike, spiked_spectrum
from linvae.states import overlap_state

P11 = Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5)


# ---- the derivation, against a direct minimisation -------------------------------------

def _train_loss(S: np.ndarray, w: np.ndarray, v: np.ndarray, D: np.ndarray, beta: float,
                lam: float) -> float:
    """The training loss with w = W/sqrt(N), v = V/sqrt(N) (N x M) and covariance S."""
    Q, Bb, Cab = w.T @ w, v.T @ S @ v, w.T @ S @ v
    rate = 0.5 * np.sum(np.diag(Bb) + D - np.log(D) - 1.0)
    dist = -np.trace(Cab) + 0.5 * np.trace(Q @ Bb) + 0.5 * np.sum(np.diag(Q) * D)
    return float(dist + beta * rate + 0.5 * lam * (np.trace(Q) + np.trace(v.T @ v)))


def _direct_minimum(S: np.ndarray, M: int, beta: float, lam: float, seed: int) -> float:
    N = S.shape[0]
    rng = np.random.default_rng(seed)

    def f(z: np.ndarray) -> float:
        w, v = z[:N * M].reshape(N, M), z[N * M:2 * N * M].reshape(N, M)
        return _train_loss(S, w, v, np.exp(z[2 * N * M:]), beta, lam)

    best = math.inf
    for _ in range(6):
        z0 = np.concatenate([rng.normal(0, 0.5, 2 * N * M), np.zeros(M)])
        res = minimize(f, z0, method="BFGS", options={"gtol": 1e-10, "maxiter": 20000})
        best = min(best, float(res.fun))
    return best


@pytest.mark.parametrize(("M", "M_star", "rho", "beta", "lam"), [
    (1, 1, 1.0, 0.5, 0.0),
    (1, 1, 1.0, 0.5, 0.2),
    (2, 1, 1.0, 0.4, 0.0),    # the second latent fits noise
    (2, 1, 1.0, 0.4, 0.1),
    (2, 2, (2.0, 1.0), 0.8, 0.05),
    (1, 1, 1.0, 3.0, 0.0),    # collapsed
])
def test_minimum_from_the_spectrum_is_the_minimum_of_the_training_loss(
        M: int, M_star: int, rho: Any, beta: float, lam: float) -> None:
    """A dense covariance at N = 8: the closed form against BFGS from 6 random starts."""
    N, P = 8, 12
    p = Params(M=M, M_star=M_star, rho=rho, eta=1.0, beta=beta, lam=lam)
    rng = np.random.default_rng(11)
    Ws = np.linalg.qr(rng.normal(size=(N, M_star)))[0] * math.sqrt(N)
    X = (Ws * np.sqrt(p.rho)) @ rng.normal(size=(M_star, P)) / math.sqrt(N) \
        + rng.normal(size=(N, P))
    S = X @ X.T / P
    ell, U = np.linalg.eigh(S)
    spec = Spectrum(ell[::-1][:M].copy(), U[:, ::-1][:, :M].T @ Ws / math.sqrt(N), "dense")
    tm = training_minimum(p, spectrum=spec)
    direct = _direct_minimum(S, M, beta, lam, seed=5)
    assert tm.train["loss"] == pytest.approx(direct, abs=1e-7)
    # and the closed form's state has that loss: rebuild the weights from it
    w = U[:, ::-1][:, :M] * np.sqrt(np.diagonal(tm.state["Q"]))
    v = w * (np.diagonal(tm.state["R"]) / np.maximum(np.diagonal(tm.state["Q"]), 1e-300))
    assert _train_loss(S, w, v, tm.state["D"], beta, lam) == pytest.approx(direct, abs=1e-7)


def test_the_check_of_the_derivation_has_power() -> None:
    """A minimum built on the wrong eigenvalue (the second, not the top) is not the minimum."""
    N, P = 8, 12
    rng = np.random.default_rng(11)
    X = rng.normal(size=(N, P))
    S = X @ X.T / P
    ell = np.linalg.eigvalsh(S)
    wrong = Spectrum(ell[-2:-1].copy(), np.zeros((1, 1)), "second eigenvalue")
    tm = training_minimum(P11, spectrum=wrong)
    assert tm.train["loss"] > _direct_minimum(S, 1, 0.5, 0.0, seed=5) + 1e-3


# ---- alpha -> infinity: the population answers ------------------------------------------

@pytest.mark.parametrize("p", [
    P11,
    P11.replace(lam=0.1),
    Params(M=2, M_star=1, rho=1.0, eta=1.0, beta=0.6),   # superfluous latent fits noise
    Params(M=2, M_star=2, rho=(2.0, 1.0), eta=0.5, beta=0.7, lam=0.05),
])
def test_large_alpha_is_the_population_fixed_point(p: Params) -> None:
    """The minimum as alpha -> infinity, and the population's, against the ODEs' stable
    fixed point at tau = 1e-4, whose O(tau) shift is about 1e-4."""
    pop = training_minimum(p)
    big = training_minimum(p, 1e12)
    for k, v in pop.state.items():
        np.testing.assert_allclose(big.state[k], v, atol=1e-5, err_msg=k)
    fp = stable_fixed_point(p.replace(tau=1e-4)).state
    for k in ("Q", "E", "R"):
        np.testing.assert_allclose(np.abs(np.diagonal(fp[k])), np.diagonal(pop.state[k]),
                                   atol=2e-3, err_msg=k)
    np.testing.assert_allclose(np.abs(fp["m"]), pop.state["m"], atol=2e-3)
    np.testing.assert_allclose(fp["D"], pop.state["D"], atol=2e-3)


@pytest.mark.parametrize("lam", [0.0, 0.1])
def test_large_alpha_gives_the_population_thresholds(lam: float) -> None:
    p = Params(M=2, M_star=2, rho=(2.0, 0.5), eta=1.0, beta=0.5, lam=lam, tau=1e-3)
    for k in range(2):
        assert float(collapse_threshold(p, k, alpha=1e12)) == pytest.approx(
            float(collapse_threshold(p, k)), abs=1e-5)
    # the population noise threshold carries a finite-tau shift of about eta tau / 4
    assert float(noise_threshold(p, alpha=1e12)) == pytest.approx(
        float(noise_threshold(p)), abs=1e-3)


def test_finite_data_moves_the_thresholds_up() -> None:
    """Below the BBP point the latent collapses at the bulk edge; above, at the outlier;
    both tend to rho + eta (and eta for noise fitting) from above."""
    p = Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5)
    b = [float(collapse_threshold(p, alpha=a)) for a in (0.5, 1.0, 4.0, 100.0)]
    assert b[0] == pytest.approx((1 + math.sqrt(2)) ** 2)          # edge, below BBP
    assert b[1] == pytest.approx(4.0)                              # both at alpha rho^2 = eta^2
    assert b[2] == pytest.approx(2.0 * 1.25)                       # (rho+eta)(1+eta/(alpha rho))
    assert b[0] > b[1] > b[2] > b[3] > 2.0
    assert float(noise_threshold(p, alpha=4.0)) == pytest.approx(2.25)
    t = collapse_threshold(p, alpha=4.0)
    assert t.predicted == 2.0 and t.shift == pytest.approx(0.5)


@pytest.mark.parametrize("lam", [0.0, 0.1])
def test_the_latent_collapses_continuously_at_the_threshold(lam: float) -> None:
    p = P11.replace(lam=lam)
    bc = float(collapse_threshold(p, alpha=2.0))
    below, above = (training_minimum(p.replace(beta=bc + s), 2.0) for s in (-1e-6, 1e-6))
    assert below.alive[0] and not above.alive[0]
    assert 0.0 < below.state["Q"][0, 0] < 1e-4 and above.state["Q"][0, 0] == 0.0
    assert below.train["loss"] == pytest.approx(above.train["loss"], abs=1e-8)


def test_spectrum_as_n_goes_to_infinity() -> None:
    p = Params(M=3, M_star=2, rho=(2.0, 0.2), eta=1.0, beta=0.5)
    sp = spiked_spectrum(p, 4.0)
    # factor 0 is above the BBP point (4 * 4 > 1), factor 1 below (4 * 0.04 < 1)
    ell0, c2 = spike(2.0, 1.0, 4.0)
    np.testing.assert_allclose(sp.ell, [ell0, bulk_edge(1.0, 4.0), bulk_edge(1.0, 4.0)])
    np.testing.assert_allclose(sp.overlap, [[math.sqrt(c2), 0], [0, 0], [0, 0]])
    # the overlap is today's principal-component overlap
    assert c2 == pytest.approx(float(linvae.data.pca_overlap(4.0, 2.0, 1.0)))


@pytest.mark.parametrize(("call", "match"), [
    (lambda: training_minimum(P11, 0.0), "alpha must be > 0"),
    (lambda: training_minimum(P11, -1.0), "alpha must be > 0"),
    (lambda: training_minimum(P11, math.inf), "alpha must be finite"),
    (lambda: training_minimum(P11.replace(beta=0.0), 2.0), "beta must be > 0"),
    (lambda: collapse_threshold(P11, alpha=0), "alpha must be > 0"),
    (lambda: collapse_threshold(P11, alpha=2.0, n_scan=10),
     "n_scan: applies to the population search only"),
    (lambda: noise_threshold(P11, alpha=2.0, beta_max=3.0), "beta_max: applies"),
    (lambda: dataset_spectrum(P11, 1, 10), "N must be >= 2"),
    (lambda: dataset_spectrum(P11, 50, 0), "dataset_size must be >= 1"),
    (lambda: dataset_spectrum(P11, 50, 10, data=DataSpec(dataset_size=20)),
     "data.dataset_size=20 differs"),
])
def test_bad_input_is_refused(call: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_alpha_and_spectrum_together_are_refused() -> None:
    with pytest.raises(TypeError, match="alpha or spectrum"):
        training_minimum(P11, 2.0, spectrum=spiked_spectrum(P11, 2.0))


def test_results_render_themselves() -> None:
    tm = training_minimum(P11, 4.0)
    assert "alpha=4" in repr(tm) and "Q_kk=[2.0]" in repr(tm)
    d = tm.to_dict()
    assert d["alive"] == [True] and d["state"]["Q"] == [[2.0]] and d["eg"] == tm.eg
    import json

    json.dumps(d)


# ---- the Lanczos iteration on regenerated samples ---------------------------------------

@pytest.mark.parametrize(("dtype", "data"), [
    ("float64", DataSpec()),
    ("float32", DataSpec()),
    ("float64", DataSpec(noise="student_t", noise_df=5.0, factors="rademacher")),
])
def test_lanczos_matches_a_dense_eigensolve(dtype: str, data: DataSpec) -> None:
    N, P = 60, 90
    p = Params(M=3, M_star=2, rho=(3.0, 1.5), eta=1.0, beta=0.5)
    sp = dataset_spectrum(p, N, P, seed=4, replica=1, data=data, dtype=dtype)
    from dataclasses import replace

    from linvae.methods import Weights

    eng = Weights(dtype).engine(p, N, replicas=2, seed=4, blowup=1e8,
                                data=replace(data, dataset_size=P))
    eng.init_random(1)
    Ws = np.asarray(eng.weights(1)["W_star"])
    X = np.empty((P, N))
    for mu in range(P):
        c, n = eng.sample(1, mu)
        X[mu] = Ws @ (np.sqrt(p.rho) * c) / math.sqrt(N) + math.sqrt(p.eta) * n
    ell, U = np.linalg.eigh(X.T @ X / P)
    np.testing.assert_allclose(sp.ell, ell[::-1][:3], rtol=1e-9)
    np.testing.assert_allclose(np.abs(sp.overlap), np.abs(U[:, ::-1][:, :3].T @ Ws)
                               / math.sqrt(N), atol=1e-7)


def test_lanczos_does_not_depend_on_the_threads() -> None:
    p = P11.replace(M=2)
    one, two = (dataset_spectrum(p, 300, 500, seed=2, threads=t) for t in (1, 2))
    assert np.array_equal(one.ell, two.ell) and np.array_equal(one.overlap, two.overlap)


# ---- both theories against long multi-epoch SGD -----------------------------------------

N, R, SEED = 400, 6, 7
TAUS = (0.1, 0.05)


def _extrapolated_sgd(p: Params, alpha: float) -> dict[str, np.ndarray]:
    """Late-time means per replica at tau and tau/2 on the same datasets, extrapolated."""
    runs = []
    for tau in TAUS:
        t = 50.0 / tau
        ds = linvae.simulate(p.replace(tau=tau), N, t_max=t, record_every=t / 10, seeds=R,
                             seed=SEED, data=DataSpec(dataset_size=int(alpha * N),
                                                      training_loss=True),
                             init=overlap_state(p, 0.5), progress=False)
        assert not ds["diverged"].any()
        late = ds.isel(t=slice(-3, None)).mean("t")
        runs.append({"Q": np.diagonal(late["Q"].values, axis1=-2, axis2=-1),
                     "train": late["train_loss"].values, "eg": late["eg"].values})
    return {k: 2.0 * runs[1][k] - runs[0][k] for k in runs[0]}


def _per_dataset(p: Params, alpha: float) -> list[linvae.stability.TrainingMinimum]:
    return [training_minimum(p, spectrum=dataset_spectrum(p, N, int(alpha * N), seed=SEED,
                                                          replica=r)) for r in range(R)]


@pytest.mark.parametrize("p", [P11, P11.replace(lam=0.1, beta=0.7)])
def test_per_dataset_theory_against_sgd_on_the_same_datasets(p: Params) -> None:
    alpha = 4.0
    sgd = _extrapolated_sgd(p, alpha)
    per = _per_dataset(p, alpha)
    inf = training_minimum(p, alpha)
    Q_per = np.array([t.state["Q"][0, 0] for t in per])
    err_per = np.abs(sgd["Q"][:, 0] - Q_per)
    err_inf = np.abs(sgd["Q"][:, 0] - inf.state["Q"][0, 0])
    assert err_per.max() < 0.01, err_per
    assert err_per.max() < err_inf.max() and err_per.mean() < err_inf.mean() / 3
    assert err_inf.max() > 0.01   # the same check fails on the N -> infinity theory
    train_per = np.array([t.train["loss"] for t in per])
    assert np.abs(sgd["train"] - train_per).max() < 0.005


def _check_inf(sgd: np.ndarray, theory: float, bias: float) -> tuple[float, float]:
    gap = abs(float(sgd.mean()) - theory)
    return gap, 3.3 * float(sgd.std(ddof=1)) / math.sqrt(sgd.size) + bias


@pytest.mark.parametrize(("alpha", "beta", "bias"), [
    (4.0, 0.5, 0.02),   # above the BBP point (alpha rho^2 = 4 > eta^2)
    (4.0, 2.2, 0.02),   # alive above the population threshold rho + eta = 2
    (0.5, 0.5, 0.1),    # below the BBP point: the latent fits the bulk edge
])
def test_n_to_infinity_theory_against_sgd(alpha: float, beta: float, bias: float) -> None:
    p = P11.replace(beta=beta)
    sgd = _extrapolated_sgd(p, alpha)
    th = training_minimum(p, alpha)
    gap, tol = _check_inf(sgd["Q"][:, 0], th.state["Q"][0, 0], bias)
    assert gap < tol, (gap, tol)
    gap, tol = _check_inf(sgd["train"], th.train["loss"], bias / 2)
    assert gap < tol, (gap, tol)
    # power: the population answer (alpha -> infinity) fails the same check
    pop = training_minimum(p)
    assert _check_inf(sgd["Q"][:, 0], pop.state["Q"][0, 0], bias)[0] > tol
    if beta > 2.0:
        assert th.alive[0] and not pop.alive[0] and sgd["Q"].min() > 0.15


def test_a_superfluous_latent_fits_the_bulk_edge() -> None:
    """M = 2, M* = 1 at alpha = 4: the second latent sits on the top of the noise bulk,
    eta (1 + alpha^(-1/2))^2 - beta = 1.75, where the population says eta - beta = 0.5.
    In the bulk the top eigenvalues are O(N^(-2/3)) apart, so SGD reaches their span
    rather than the top eigenvector within the run: tolerance 0.1 (the edge's bias)."""
    p = P11.replace(M=2)
    sgd = _extrapolated_sgd(p, 4.0)
    th = training_minimum(p, 4.0)
    gap, tol = _check_inf(sgd["Q"][:, 1], th.state["Q"][1, 1], 0.1)
    assert gap < tol, (gap, tol)
    assert abs(float(sgd["Q"][:, 1].mean()) - training_minimum(p).state["Q"][1, 1]) > 1.0


def test_extra_eigenpairs_are_reported_not_used() -> None:
    p = P11.replace(M=2)
    four = dataset_spectrum(p, 200, 400, seed=3, k=4)
    two = Spectrum(four.ell[:2], four.overlap[:2], four.source)
    a, b = training_minimum(p, spectrum=four), training_minimum(p, spectrum=two)
    for k in a.state:
        assert np.array_equal(a.state[k], b.state[k]), k
    assert a.spectrum.ell.shape == (4,) and np.all(np.diff(four.ell) <= 0)
    with pytest.raises(ValueError, match="at least M=2 eigenpairs"):
        training_minimum(p, spectrum=Spectrum(four.ell[:1], four.overlap[:1], "one"))


def test_the_stability_command_with_alpha(tmp_path: Any) -> None:
    import json

    from test_cli import cli_run

    out = cli_run("-q", "stability", "--M", "2", "--alpha", "4", "--out",
                  str(tmp_path / "st.json"))
    assert out.returncode == 0, out.stderr
    assert "latent 0: eigenvalue 2.5" in out.stdout and "collapses above beta = 2.5" in out.stdout
    assert "latent 1: eigenvalue 2.25" in out.stdout  # the superfluous latent on the edge
    saved = json.loads((tmp_path / "st.json").read_text())
    assert saved["training_minimum"]["state"]["Q"][1][1] == pytest.approx(1.75)
    for argv in (["--alpha", "0"], ["--alpha", "nan"], ["--alpha", "2", "--beta", "0"]):
        bad = cli_run("stability", *argv)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert argv[-2] in bad.stderr and "fixed points" not in bad.stdout
