"""The generalisation error eps_g: the decoder distance ||W* P^(1/2) - W||^2 / N minimised
over the symmetries of the loss (sign flips and permutations of latents).

Checked against its definition in weight space, against brute force over matchings, for
the symmetries, and at the fixed points where its value is known in closed form.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import linvae
from linvae import findings, observables
from linvae.params import Params


def brute_force_eg(m: np.ndarray, Q: np.ndarray, rho: np.ndarray) -> float:
    """min over every pairing of factors with distinct latents, enumerated by hand."""
    M, Ms = m.shape
    if M >= Ms:
        pairings = [dict(enumerate(p)) for p in itertools.permutations(range(M), Ms)]
    else:
        pairings = [{k: latent for latent, k in enumerate(p)}
                    for p in itertools.permutations(range(Ms), M)]
    return min(float(rho.sum() + np.trace(Q)
                     - 2 * sum(np.sqrt(rho[k]) * abs(m[latent, k])
                               for k, latent in pairing.items()))
               for pairing in pairings)


@pytest.mark.parametrize(("M", "M_star"), [(1, 1), (2, 1), (1, 3), (2, 2), (3, 2), (2, 3),
                                           (3, 3), (4, 4), (6, 6), (7, 7)])
def test_eg_is_the_best_matching(M: int, M_star: int) -> None:
    # (6, 6) enumerates 720 matchings; (7, 7) takes the assignment-problem path
    rng = np.random.default_rng(M * 10 + M_star)
    m = rng.normal(size=(4, M, M_star))
    Q = rng.normal(size=(4, M, M))
    rho = rng.uniform(0.3, 3.0, size=M_star)
    got = observables.eg(m, Q, rho)
    want = [brute_force_eg(m[i], Q[i], rho) for i in range(4)]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("M", "M_star"), [(1, 1), (2, 2), (3, 2), (2, 3)])
def test_eg_is_the_decoder_distance_in_weight_space(M: int, M_star: int) -> None:
    """eps_g from the order parameters equals min ||W* P^(1/2) - W S Pi||^2 / N computed
    from the weights themselves (to rounding: W*^T W* / N = I exactly)."""
    rng = np.random.default_rng(7)
    N = 2000
    rho = rng.uniform(0.5, 2.5, size=M_star)
    W_star = np.linalg.qr(rng.normal(size=(N, M_star)))[0] * np.sqrt(N)
    # weights near the teacher, so that the best matching is not the trivial one
    W = 0.3 * rng.normal(size=(N, M))
    for k in range(min(M, M_star)):
        W[:, (k + 1) % M] += (-1) ** k * np.sqrt(rho[k]) * W_star[:, k]
    target = W_star * np.sqrt(rho)
    best = np.inf
    cols = min(M, M_star)
    for fperm in itertools.permutations(range(M_star)):
        T = target[:, list(fperm)]
        for perm in itertools.permutations(range(M)):
            for signs in itertools.product((1.0, -1.0), repeat=M):
                Wp = W[:, perm] * np.array(signs)
                # column j of Wp stands for column j of T; the rest of either side is
                # compared with zero (a latent without a factor, a factor without a latent)
                dist = (np.sum((T[:, :cols] - Wp[:, :cols]) ** 2) + np.sum(Wp[:, cols:] ** 2)
                        + np.sum(T[:, cols:] ** 2))
                best = min(best, dist / N)
    got = float(observables.eg(W.T @ W_star / N, W.T @ W / N, rho))
    assert got == pytest.approx(best, rel=1e-10)


def test_eg_is_invariant_under_sign_flips_and_permutations() -> None:
    rng = np.random.default_rng(3)
    M, Ms = 3, 3
    m = rng.normal(size=(M, Ms))
    A = rng.normal(size=(M, M))
    Q = A @ A.T
    rho = np.array([2.0, 1.0, 0.5])
    base = float(observables.eg(m, Q, rho))
    for perm in itertools.permutations(range(M)):
        for signs in itertools.product((1.0, -1.0), repeat=M):
            T = np.diag(signs)[list(perm)]          # a signed permutation of latents
            moved = float(observables.eg(T @ m, T @ Q @ T.T, rho))
            assert moved == pytest.approx(base, abs=1e-12)
    # the authors' form is not invariant: a sign flip of one latent moves it
    S = np.diag([1.0, -1.0, 1.0])
    assert abs(float(observables.eg_authors(S @ m, S @ Q @ S)) - float(
        observables.eg_authors(m, Q))) > 1e-3


def test_eg_matches_the_authors_form_only_where_it_should() -> None:
    rng = np.random.default_rng(5)
    m, Q = rng.normal(size=(10, 1, 1)), rng.uniform(0.1, 3.0, size=(10, 1, 1))
    np.testing.assert_allclose(observables.eg(m, Q, 1.0), observables.eg_authors(m, Q),
                               atol=1e-14)
    np.testing.assert_allclose(observables.eg(m, Q, 2.0),
                               2.0 - 2 * np.sqrt(2.0) * np.abs(m[:, 0, 0]) + Q[:, 0, 0])


def test_eg_is_nan_for_non_finite_states() -> None:
    m = np.array([[[np.nan, 0.1], [0.2, 0.3]], [[0.5, 0.1], [0.2, 0.3]]])
    Q = np.broadcast_to(np.eye(2), (2, 2, 2))
    got = observables.eg(m, Q, [1.0, 2.0])
    assert np.isnan(got[0]) and np.isfinite(got[1])


@pytest.mark.parametrize(("rho", "eta"), [(2.0, 0.5), (3.0, 1.0), (0.5, 1.0), (1.5, 0.3)])
def test_eg_vanishes_at_the_stable_fixed_point_at_beta_eta(rho: float, eta: float) -> None:
    """At small tau the stable fixed point has Q = rho + eta - beta, m = sqrt(Q): at
    beta = eta the learned decoder is the true one. The residual is O(tau)."""
    tau = 1e-3
    fp = linvae.stable_fixed_point(Params(rho=rho, eta=eta, beta=eta, tau=tau))
    assert fp is not None
    assert fp.eg < 2 * tau * rho
    assert float(fp.state["Q"][0, 0]) == pytest.approx(rho, rel=2 * tau)
    # and away from beta = eta it is clearly larger
    off = linvae.stable_fixed_point(Params(rho=rho, eta=eta, beta=0.5 * eta, tau=tau))
    assert off is not None and off.eg > 10 * fp.eg


def test_optimal_beta_is_eta_for_every_rho() -> None:
    tau = 1e-3
    ds = findings.optimal_beta(Params(eta=0.5, tau=tau), rhos=(0.5, 2.0),
                               betas=np.linspace(0.1, 1.2, 12))
    # the optimum moves by O(tau) at finite tau (measured: +0.0004 at rho = 0.5, +0.0012
    # at rho = 2 for tau = 1e-3)
    np.testing.assert_allclose(ds["beta_opt"].values, 0.5, atol=2 * tau)
    assert np.all(ds["eg_min"].values < 2 * tau * ds["rho"].values)
    assert np.all(ds["eg_min"].values <= np.nanmin(ds["eg"].values, axis=1) + 1e-12)
    with pytest.raises(ValueError, match="rhos"):
        findings.optimal_beta(Params(), rhos=(0.0, 1.0))


def test_eg_is_the_total_signal_at_collapse() -> None:
    p = Params(M=2, M_star=2, rho=[2.0, 1.0], eta=1.0, beta=3.5, tau=0.1)  # beta > rho_k + eta
    fp = linvae.stable_fixed_point(p)
    assert fp is not None and fp.kinds == ("collapsed", "collapsed")
    assert fp.eg == pytest.approx(3.0, abs=1e-9)
    one = linvae.stable_fixed_point(Params(rho=2.0, eta=1.0, beta=3.5, tau=0.1))
    assert one is not None and one.eg == pytest.approx(2.0, abs=1e-9)


def test_superfluous_latent_raises_eg() -> None:
    """(M, M*) = (2, 1) below beta = eta: the extra latent fits noise (Q_22 > 0), which the
    decoder distance counts in full."""
    p1 = Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.9, tau=0.2)
    p2 = p1.replace(M=2)
    f1, f2 = linvae.stable_fixed_point(p1), linvae.stable_fixed_point(p2)
    assert f1 is not None and f2 is not None
    noise = [k for k, kind in enumerate(f2.kinds) if kind == "noise"]
    assert len(noise) == 1
    q_noise = float(f2.state["Q"][noise[0], noise[0]])
    assert q_noise == pytest.approx(0.1667, abs=1e-3)
    assert f2.eg == pytest.approx(f1.eg + q_noise, abs=1e-6)


def test_datasets_carry_eg_and_eg_authors() -> None:
    p = Params(rho=2.0, eta=0.5, beta=0.5, tau=0.5)
    ds = linvae.integrate(p, t_max=2.0, init=linvae.states.overlap_state(p, 0.5))
    m, Q = ds["m"].values[:, 0, 0], ds["Q"].values[:, 0, 0]
    np.testing.assert_allclose(ds["eg"].values, 2.0 - 2 * np.sqrt(2.0) * np.abs(m) + Q)
    np.testing.assert_allclose(ds["eg_authors"].values, 1.0 - 2 * np.abs(m) + Q)
