"""Tests of the limiting ODEs and their integrator (docs/model.md#odes to #pitfalls)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import xarray as xr
from ode_oracle import random_state

from linvae import Params, observables, schedules
from linvae.dataset import make_dataset
from linvae.ode import (
    StateLayout,
    UnphysicalStateError,
    UnphysicalStateWarning,
    integrate,
    jacobian,
    layout,
    min_gram_eigenvalue,
    pack,
    rhs,
    unpack,
)
from linvae.reference import ReferenceSGD
from linvae.states import overlap_state, random_init_state

OPS = ("m", "d", "Q", "E", "R", "D")


def weights_from_state(state: dict, N: int, rng: np.random.Generator):
    """[W*, W, V] with Gram matrix / N equal to the state's (docs/model.md#initial-states).

    Also returns the orthonormal frame F (N x K) spanning the columns and the symmetric
    root S of G, so that [W*, W, V] = sqrt(N) F S.
    """
    G = observables.gram_matrix(*(state[k] for k in ("m", "d", "Q", "E", "R")))
    w, U = np.linalg.eigh(G)
    S = (U * np.sqrt(np.clip(w, 0, None))) @ U.T
    F, _ = np.linalg.qr(rng.standard_normal((N, G.shape[0])))
    X = np.sqrt(N) * F @ S
    return X, F, S


# ---------------------------------------------------------------------------------------
# per-sample increments of the order parameters, exact at finite N
# ---------------------------------------------------------------------------------------
def increments(s: dict, a, b, sv, xx, p: Params, beta: float, N: int) -> dict:
    """N * (change of each order parameter) in one SGD step, vectorised over samples.

    Exact closed forms from docs/model.md#sgd at fixed weights, in terms of the sample's
    projections a = W^T x/sqrt(N), b = V^T x/sqrt(N), sv = W*^T x/sqrt(N) (leading axis:
    sample) and xx = |x|^2 / N. Expanding W' = W + tau dW, V' = V + tau dV with
    dW = x b^T/sqrt(N) - W Bs/N, dV = -(x g^T/sqrt(N) + lam V/N) gives every term,
    including the tau^2 ones and their O(1/N) corrections.
    """
    m, d, Q, E, R, D = (s[k] for k in OPS)
    tau, lam = p.tau, p.lam
    I_ = np.eye(p.M)
    K = Q + beta * I_
    bb = b[:, :, None] * b[:, None, :]
    ab = a[:, :, None] * b[:, None, :]
    Bs = bb + np.diag(D) + lam * I_
    g = -a + b @ K  # K symmetric
    gg = g[:, :, None] * g[:, None, :]
    bg = b[:, :, None] * g[:, None, :]
    ag = a[:, :, None] * g[:, None, :]
    x3 = xx[:, None, None]
    T = lambda z: np.swapaxes(z, -1, -2)
    BsA = Bs @ a[:, :, None]  # (S, M, 1)
    ba_Bs = b[:, :, None] * T(BsA)  # b (Bs a)^T = b a^T Bs
    dm = tau * (b[:, :, None] * sv[:, None, :] - Bs @ m)
    dd = -tau * (g[:, :, None] * sv[:, None, :] + lam * d)
    dQ = tau * (ab + T(ab) - Bs @ Q - Q @ Bs) + tau**2 * (
        x3 * bb - (ba_Bs + T(ba_Bs)) / N + Bs @ Q @ Bs / N)
    dE = -tau * (bg + T(bg) + 2 * lam * E) + tau**2 * (
        x3 * gg + lam * (bg + T(bg)) / N + lam**2 * E / N)
    dR = tau * (bb - Bs @ R - ag - lam * R) - tau**2 * (
        x3 * bg + lam * bb / N - BsA * g[:, None, :] / N - lam * Bs @ R / N)
    dD = -tau * (0.5 * np.diag(Q) + 0.5 * beta * (1 - 1 / D))
    return {"m": dm, "d": dd, "Q": dQ, "E": dE, "R": dR,
            "D": np.broadcast_to(dD, (len(xx), p.M))}


MC_CASES = [
    # (M, M*, rho, eta, beta, lam, tau)
    (1, 1, 1.5, 1.0, 0.4, 0.1, 0.8),
    (2, 1, 1.0, 0.8, schedules.Tanh(0.9, 0.5), 0.2, 0.6),
    (2, 2, (2.0, 1.0), 1.0, 0.5, 0.1, 0.7),
    (3, 2, (1.5, 0.7), 0.6, 0.3, 0.3, 1.0),
]


@pytest.mark.parametrize(("M", "Ms", "rho", "eta", "beta", "lam", "tau"), MC_CASES)
def test_rhs_is_expected_sgd_increment(M, Ms, rho, eta, beta, lam, tau):
    """rhs = N E[one-step change], estimated by Monte Carlo over the sample x.

    Design: weights with a random O(1)-overlap state are built at N = 20000 and handed
    to ReferenceSGD. (1) The closed-form increments above are checked against
    ReferenceSGD.step on a few real samples (to rounding). (2) Their mean over many x is
    estimated cheaply and exactly at this N by sampling x in the span of [W*, W, V]:
    x = F u + sqrt(eta) n_perp with u Gaussian in K = M* + 2M dims and |n_perp|^2 a
    chi^2_{N-K} variable, so a sample costs O(K) and not O(N). The tolerance is 5 standard
    errors (measured from the samples) plus 2e-3 for the O(1/N) finite-N bias, which is
    far below it at N = 20000.
    """
    p = Params(M=M, M_star=Ms, rho=rho, eta=eta, beta=beta, lam=lam, tau=tau)
    rng = np.random.default_rng(1234 + 10 * M + Ms)
    N = 20000
    t = 1.7
    beta_t = float(p.beta_at(t))
    X, _F, S = weights_from_state(random_state(p, rng), N, rng)
    W_star, W, V = X[:, :Ms], X[:, Ms:Ms + M], X[:, Ms + M:]
    D0 = rng.uniform(0.4, 1.4, M)
    sgd = ReferenceSGD(p, N, W=W, V=V, D=D0, W_star=W_star, rng=np.random.default_rng(7))
    s0 = sgd.order_parameters()

    # (1) closed form == literal SGD step, on real samples
    for _ in range(3):
        ref = ReferenceSGD(p, N, W=W, V=V, D=D0, W_star=W_star, rng=sgd.rng)
        x = ref.sample_x().copy()
        proj = X.T @ x / np.sqrt(N)
        inc = increments(s0, proj[None, Ms:Ms + M], proj[None, Ms + M:], proj[None, :Ms],
                         np.array([x @ x / N]), p, beta_t, N)
        ref.step(x, beta=beta_t)
        after = ref.order_parameters()
        for k in OPS:
            np.testing.assert_allclose(N * (after[k] - s0[k]), inc[k][0], rtol=1e-6,
                                       atol=1e-6, err_msg=k)

    # (2) Monte Carlo mean of the exact increments
    n_samples, chunk = 400_000, 100_000
    K = Ms + 2 * M
    sums = {k: 0.0 for k in OPS}
    sq = {k: 0.0 for k in OPS}
    root_P = np.sqrt(p.rho_vec)
    for _ in range(n_samples // chunk):
        c = rng.standard_normal((chunk, Ms))
        z = rng.standard_normal((chunk, K))
        # coordinates of x in the frame F: signal W* sqrt(P) c / sqrt(N) = F S[:, :M*] sqrt(P) c
        u = (c * root_P) @ S[:, :Ms].T + np.sqrt(eta) * z
        proj = u @ S  # X^T x / sqrt(N) = S F^T x (S symmetric)
        xx = (np.sum(u * u, axis=1) + eta * rng.chisquare(N - K, chunk)) / N
        inc = increments(s0, proj[:, Ms:Ms + M], proj[:, Ms + M:], proj[:, :Ms], xx, p,
                         beta_t, N)
        for k in OPS:
            sums[k] = sums[k] + inc[k].sum(axis=0)
            sq[k] = sq[k] + (inc[k] ** 2).sum(axis=0)
    mean = {k: sums[k] / n_samples for k in OPS}
    se = {k: np.sqrt(np.maximum(sq[k] / n_samples - mean[k] ** 2, 0) / n_samples) + 1e-12
          for k in OPS}

    ode = rhs(t, s0, p)
    for k in OPS:
        assert np.all(np.abs(mean[k] - ode[k]) <= 5 * se[k] + 2e-3), (
            k, mean[k], ode[k], se[k])

    # teeth: the same check without the tau^2 eta terms must fail clearly (measured
    # z-scores 500-850 here, against at most ~2.5 with them)
    Bb, Cab, Aaa = observables.moments(*(s0[k] for k in ("m", "d", "Q", "E", "R")),
                                       p.rho_vec, p.eta)
    Kb = s0["Q"] + beta_t * np.eye(M)
    Ebg = -Cab.T + Bb @ Kb
    Egg = Aaa - Cab @ Kb - Kb @ Cab.T + Kb @ Bb @ Kb
    no_t2 = {"Q": ode["Q"] - tau**2 * eta * Bb, "E": ode["E"] - tau**2 * eta * Egg,
             "R": ode["R"] + tau**2 * eta * Ebg}
    z_max = max(float(np.max(np.abs(mean[k] - no_t2[k]) / se[k])) for k in no_t2)
    assert z_max > 20, z_max


# ---------------------------------------------------------------------------------------
# layout, Jacobian, symmetry
# ---------------------------------------------------------------------------------------
def test_pack_unpack_roundtrip_and_labels():
    p = Params(M=3, M_star=2, rho=(1.0, 2.0))
    lay = layout(p)
    assert isinstance(lay, StateLayout)
    assert lay.size == 2 * 6 + 2 * 6 + 9 + 3 == len(lay.labels)
    s = random_state(p, np.random.default_rng(0))
    y = pack(s, p)
    back = unpack(y, p)
    for k in OPS:
        np.testing.assert_array_equal(back[k], s[k])
    # leading axes
    ys = np.stack([y, 2 * y])
    assert unpack(ys, p)["Q"].shape == (2, 3, 3)
    np.testing.assert_array_equal(pack(unpack(ys, p), p), ys)
    assert lay.labels[lay.slices["Q"].start + 1] == "Q[0,1]"
    with pytest.raises(ValueError, match="flat state"):
        unpack(np.zeros(5), p)


def test_rhs_dict_and_flat_agree_and_vectorise():
    p = Params(M=2, M_star=2, rho=(2.0, 1.0), lam=0.1, beta=schedules.Tanh(0.5, 0.2))
    rng = np.random.default_rng(3)
    states = [random_state(p, rng) for _ in range(3)]
    batch = {k: np.stack([s[k] for s in states]) for k in OPS}
    out_b = rhs(2.0, batch, p)
    for i, s in enumerate(states):
        out = rhs(2.0, s, p)
        np.testing.assert_allclose(pack(out, p), rhs(2.0, pack(s, p), p), rtol=1e-14)
        for k in OPS:
            np.testing.assert_allclose(out_b[k][i], out[k], rtol=1e-13, atol=1e-15)
        for k in ("Q", "E"):
            np.testing.assert_allclose(out[k], out[k].T, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize(("M", "Ms"), [(1, 1), (2, 1), (2, 2), (3, 2), (4, 4)])
def test_jacobian_matches_central_differences(M, Ms):
    rng = np.random.default_rng(100 + 10 * M + Ms)
    p = Params(M=M, M_star=Ms, rho=rng.uniform(0.5, 2.0, Ms), eta=0.7,
               beta=schedules.Tanh(0.8, 0.3), lam=0.2, tau=0.7)
    for t in (0.4, None):  # beta(t) on the ramp, and beta_inf
        y = pack(random_state(p, rng), p)
        J = jacobian(p, y, t)
        assert J.shape == (y.size, y.size)
        h = 1e-6
        J_fd = np.empty_like(J)
        t_eval = 1e9 if t is None else t  # beta(1e9) = beta_inf
        for k in range(y.size):
            e = np.zeros_like(y)
            e[k] = h
            J_fd[:, k] = (rhs(t_eval, y + e, p) - rhs(t_eval, y - e, p)) / (2 * h)
        np.testing.assert_allclose(J, J_fd, rtol=1e-6, atol=1e-6 * np.abs(J).max())
    # the dict form gives the same matrix
    s = unpack(y, p)
    np.testing.assert_array_equal(jacobian(p, s), jacobian(p, y))


# ---------------------------------------------------------------------------------------
# integration
# ---------------------------------------------------------------------------------------
def test_integrate_dataset_layout_and_attrs():
    p = Params(M=2, M_star=2, rho=(2.0, 1.0), lam=0.05, beta=schedules.Tanh(0.5, 0.3))
    ds = integrate(p, t_max=5.0, record_every=0.5)
    assert isinstance(ds, xr.Dataset)
    np.testing.assert_allclose(ds["t"].values, np.arange(11) * 0.5)
    assert ds["m"].dims == ("t", "latent", "factor")
    assert ds["Q"].dims == ("t", "latent", "latent2")
    for k in ("eg", "rate", "distortion", "loss", "beta"):
        assert k in ds
    assert ds.attrs["kind"] == "ode"
    assert ds.attrs["method"] == "auto"
    assert ds.attrs["solver"] == "compiled"
    assert ds.attrs["rtol"] == 1e-8
    assert ds.attrs["atol"] == 1e-10
    assert ds.attrs["truncated"] == 0
    assert ds.attrs["min_gram_eigenvalue"] >= -1e-9
    # the t = 0 record is the start state, and the derived quantities match make_dataset
    s0 = overlap_state(p)
    for k in OPS:
        np.testing.assert_allclose(ds[k].isel(t=0).values, s0[k], atol=1e-14)
    ref = make_dataset({k: ds[k].values for k in OPS}, ds["t"].values, p, lead=("t",))
    np.testing.assert_allclose(ds["loss"].values, ref["loss"].values)
    # t_max not on the grid is still recorded
    ds2 = integrate(p, t_max=1.05, record_every=0.5)
    np.testing.assert_allclose(ds2["t"].values, [0.0, 0.5, 1.0, 1.05])


def test_integrate_accepts_dataset_slices_and_methods_agree():
    p = Params(M=2, M_star=1, lam=0.1, tau=0.5)
    s0 = random_state(p, np.random.default_rng(5))
    ds = integrate(p, t_max=3.0, init=s0, record_every=1.0, rtol=1e-10, atol=1e-12)
    # a slice of an ODE dataset, or of a fake replica dataset averaged over replicas
    again = integrate(p, t_max=3.0, init=ds.isel(t=0), record_every=1.0, rtol=1e-10,
                      atol=1e-12)
    xr.testing.assert_allclose(ds[list(OPS)], again[list(OPS)])
    rep = xr.concat([ds, ds], dim="replica")
    mean0 = integrate(p, t_max=3.0, init=rep.mean("replica").isel(t=0), record_every=1.0)
    np.testing.assert_allclose(mean0["m"].values, ds["m"].values, atol=1e-6)
    for method in ("Radau", "BDF", "RK45", "DOP853"):
        other = integrate(p, t_max=3.0, init=s0, record_every=1.0, method=method,
                          rtol=1e-10, atol=1e-12)
        assert other.attrs["method"] == method
        for k in OPS:
            np.testing.assert_allclose(other[k].values, ds[k].values, atol=1e-6, err_msg=k)


@pytest.mark.parametrize(("M", "Ms"), [(2, 1), (3, 2)])
def test_symmetry_and_physicality_preserved(M, Ms):
    rng = np.random.default_rng(11 * M + Ms)
    p = Params(M=M, M_star=Ms, rho=rng.uniform(0.5, 2.0, Ms), eta=1.0,
               beta=schedules.Tanh(0.6, 0.2), lam=0.05, tau=0.5)
    ds = integrate(p, t_max=50.0, init=random_state(p, rng, rank_extra=0), record_every=0.5)
    for k in ("Q", "E"):
        v = ds[k].values
        np.testing.assert_array_equal(v, np.swapaxes(v, -1, -2))
    lam_min = min_gram_eigenvalue({k: ds[k].values for k in OPS})
    assert lam_min.min() >= -1e-9
    assert ds.attrs["min_gram_eigenvalue"] == pytest.approx(lam_min.min())
    assert np.all(ds["D"].values > 0)


def test_random_init_state_keeps_m_d_zero():
    p = Params(M=2, M_star=2, rho=(2.0, 1.0))
    s = random_init_state(p)
    np.testing.assert_array_equal(s["Q"], np.eye(2))
    out = rhs(0.0, s, p)
    np.testing.assert_array_equal(out["m"], 0)
    np.testing.assert_array_equal(out["d"], 0)
    ds = integrate(p, t_max=20.0, init=s, record_every=5.0)
    assert np.abs(ds["m"].values).max() == 0
    assert np.abs(ds["d"].values).max() == 0


# ---------------------------------------------------------------------------------------
# docs/model.md#findings: fixed points
# ---------------------------------------------------------------------------------------
def _final(ds):
    return {k: ds[k].isel(t=-1).values for k in OPS}


def test_single_latent_fixed_point_small_tau_limit():
    # at small tau and lam = 0 the non-collapsed fixed point has Q -> rho + eta - beta
    rho, eta, beta = 1.0, 1.0, 0.5
    Qs = []
    for tau in (0.004, 0.002):
        p = Params(M=1, M_star=1, rho=rho, eta=eta, beta=beta, tau=tau)
        ds = integrate(p, t_max=100.0 / tau, record_every=10.0 / tau)
        f = _final(ds)
        assert np.abs(pack(rhs(0.0, f, p), p)).max() < 1e-8 * tau  # converged
        Qs.append(float(f["Q"][0, 0]))
    # the shift is O(tau): halving tau halves the distance to rho + eta - beta
    dist = [q - (rho + eta - beta) for q in Qs]
    assert abs(dist[1]) < 0.005
    assert dist[1] == pytest.approx(dist[0] / 2, rel=0.05)


def test_single_latent_fixed_point_finite_tau_documented_numbers():
    p = Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.5)
    f = _final(integrate(p, t_max=300.0, record_every=10.0))
    assert round(float(f["Q"][0, 0]), 2) == 2.08
    assert round(float(f["m"][0, 0]), 2) == 1.32
    assert np.abs(pack(rhs(0.0, f, p), p)).max() < 1e-9
    # it is a stable fixed point
    assert np.linalg.eigvals(jacobian(p, f)).real.max() < 0


def test_superfluous_latent_fixed_point_stays_physical():
    """(M, M*) = (2, 1), rho = eta = 1, tau = 0.2, beta = 0.9 (docs/model.md#findings, #pitfalls).

    docs/model.md#pitfalls reports an integration that left the PSD cone near this fixed point. The
    cause is the antisymmetric part of Q and E when they are stored as full matrices
    (it is unstable there); with symmetric storage the fixed point is stable and the
    integration stays physical. Either way the integrator must not return garbage: it
    returns a physical trajectory here, and the detection itself is tested below.
    """
    p = Params(M=2, M_star=1, rho=1.0, eta=1.0, beta=0.9, tau=0.2)
    init = {"m": np.array([[0.5], [0.2]]), "d": np.array([[0.4], [0.1]]),
            "Q": np.array([[1.0, 0.1], [0.1, 1.0]]), "E": np.eye(2),
            "R": np.array([[0.3, 0.05], [0.0, 0.2]]), "D": np.ones(2)}
    ds = integrate(p, t_max=800.0, init=init, record_every=10.0, rtol=1e-9)
    assert ds.attrs["truncated"] == 0
    assert ds.attrs["min_gram_eigenvalue"] >= -1e-9
    f = _final(ds)
    assert round(float(f["Q"][1, 1]), 3) == 0.167
    assert round(float(f["R"][1, 1]), 3) == 0.150
    assert round(float(f["D"][1]), 3) == 0.844
    assert abs(float(f["m"][1, 0])) < 1e-4
    assert float(min_gram_eigenvalue(f)) == pytest.approx(0.003, abs=5e-4)
    assert np.linalg.eigvals(jacobian(p, f)).real.max() < 0


def test_full_matrix_storage_would_be_unstable_at_superfluous_fixed_point():
    """Why the flat state stores triangles (and why docs/model.md#pitfalls saw a runaway).

    On full (not necessarily symmetric) Q and E the same equations have an extra,
    antisymmetric, direction that is unstable at this fixed point (eigenvalue ~ +0.12),
    so rounding errors grow and leave the PSD cone; on symmetric states it is stable.
    """
    from ode_oracle import Consts, rhs_core  # full matrices: only the NumPy oracle does that

    p = Params(M=2, M_star=1, rho=1.0, eta=1.0, beta=0.9, tau=0.2)
    f = _final(integrate(p, t_max=2000.0, record_every=100.0, rtol=1e-10, atol=1e-12))
    shapes = {k: f[k].shape for k in OPS}
    sizes = [int(np.prod(shapes[k])) for k in OPS]

    def full_rhs(y):
        parts = np.split(y, np.cumsum(sizes)[:-1])
        s = {k: v.reshape(shapes[k]) for k, v in zip(OPS, parts, strict=True)}
        out = rhs_core(s, 0.9, Consts.of(p))
        return np.concatenate([out[k].ravel() for k in OPS])

    y = np.concatenate([f[k].ravel() for k in OPS])
    h = 1e-7
    J_full = np.stack([(full_rhs(y + h * e) - full_rhs(y - h * e)) / (2 * h)
                       for e in np.eye(y.size)], axis=1)
    assert np.linalg.eigvals(J_full).real.max() == pytest.approx(0.120, abs=0.005)
    assert np.linalg.eigvals(jacobian(p, f)).real.max() < -0.02


@pytest.fixture
def leaky_rhs(monkeypatch):
    """An RHS that drains Q_11 at a constant rate, so the state must leave the cone.

    The compiled system's test hook adds a constant to the right-hand side; every solver
    (compiled or SciPy's) then integrates the leaky equations."""
    import linvae.ode as ode_mod

    def leaky(p):
        lay = layout(p)
        drift = np.zeros(lay.size)
        drift[[lay.slices["Q"].start + lay._sym[i, i] for i in range(p.M)]] = -0.5
        return ode_mod._new_system(p, drift=drift)

    monkeypatch.setattr(ode_mod, "_system", leaky)


@pytest.mark.parametrize(("method", "solver"), [("RK45", "scipy"), ("RK45", "compiled"),
                                                ("auto", None)])
def test_unphysical_state_raises(leaky_rhs, method, solver):
    p = Params(M=1, M_star=1)
    with pytest.raises(UnphysicalStateError, match="positive semidefinite") as err:
        integrate(p, t_max=20.0, record_every=0.1, method=method, solver=solver)
    t_bad = err.value.t
    assert 0 < t_bad < 20
    part = err.value.partial
    assert part is not None
    assert part["t"].values[-1] <= t_bad
    assert min_gram_eigenvalue({k: part[k].values for k in OPS}).min() >= -1e-7


@pytest.mark.parametrize(("method", "solver"), [("LSODA", "scipy"), ("auto", None)])
def test_unphysical_state_truncates_with_warning(leaky_rhs, method, solver):
    p = Params(M=1, M_star=1)
    with pytest.warns(UnphysicalStateWarning, match="left the physical region"):
        ds = integrate(p, t_max=20.0, record_every=0.1, on_unphysical="truncate",
                       method=method, solver=solver)
    assert ds.attrs["truncated"] == 1
    assert ds["t"].values[-1] <= ds.attrs["t_unphysical"] < 20
    assert ds.attrs["min_gram_eigenvalue"] >= -1e-7


def test_speed_4x4_to_t1000():
    p = Params(M=4, M_star=4, rho=(2.0, 1.5, 1.0, 0.5), eta=1.0, beta=0.5, lam=0.1, tau=0.5)
    integrate(p, t_max=1.0)  # warm-up
    t0 = time.perf_counter()
    ds = integrate(p, t_max=1000.0, init=overlap_state(p, 0.3), record_every=0.1)
    elapsed = time.perf_counter() - t0
    assert ds.sizes["t"] == 10001
    assert elapsed < 2.0, elapsed  # ~0.25 s on the development machine; generous bound


# ---------------------------------------------------------------------------------------
# argument validation
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "exc", "name"), [
    ({"t_max": 0.0}, ValueError, "t_max"),
    ({"t_max": "1"}, TypeError, "t_max"),
    ({"record_every": 0.0}, ValueError, "record_every"),
    ({"record_every": 30.0}, ValueError, "record_every"),
    ({"method": "Euler"}, ValueError, "method"),
    ({"rtol": 0.0}, ValueError, "rtol"),
    ({"atol": -1.0}, ValueError, "atol"),
    ({"psd_tol": 0.0}, ValueError, "psd_tol"),
    ({"on_unphysical": "ignore"}, ValueError, "on_unphysical"),
    ({"init": "random"}, TypeError, "init"),
    ({"init": 3.0}, TypeError, "init"),
    ({"init": {"m": [[2.0]], "d": [[0.0]], "Q": [[1.0]], "E": [[1.0]], "R": [[0.0]],
               "D": [1.0]}}, ValueError, "init"),
    ({"init": {"m": [[0.0]], "d": [[0.0]], "Q": [[1.0]], "E": [[1.0]], "R": [[0.0]]}},
     ValueError, "init"),
    ({"t_eval": [0.0, 2.0, 1.0]}, ValueError, "t_eval"),
    ({"t_eval": [0.0, 50.0]}, ValueError, "t_eval"),
])
def test_integrate_validates_arguments(kwargs, exc, name):
    p = Params(M=1, M_star=1)
    args = {"t_max": 20.0, **kwargs}
    with pytest.raises(exc, match=name):
        integrate(p, **args)


def test_integrate_rejects_non_params():
    with pytest.raises(TypeError, match="p must be"):
        integrate({"M": 1})  # type: ignore[arg-type]
