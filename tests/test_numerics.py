"""Edge cases of the engine: many latents, N = 1, tiny and huge learning rates."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import linvae
from linvae import Params
from linvae.states import overlap_state

ORDER = ("m", "d", "Q", "E", "R", "D")


def sim(p: Params, **kw: object) -> object:
    kw = {"N": 200, "t_max": 0.5, "record_every": 0.25, "seeds": 2, "progress": False, **kw}
    return linvae.simulate(p, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("M", "M_star"), [(16, 1), (16, 16), (1, 16), (8, 3)])
def test_many_latents(M: int, M_star: int) -> None:
    p = Params(M=M, M_star=M_star, rho=1.0, beta=0.5, tau=0.2)
    ds = sim(p, N=300, t_max=0.3, record_every=0.1)
    assert dict(ds.sizes)["latent"] == M and dict(ds.sizes)["factor"] == M_star
    assert not ds.diverged.any()
    for k in ORDER:
        assert np.isfinite(ds[k].values).all(), k
    # t = 0 of the random start: Q, E ~ I and m, d ~ 0 up to O(N^-1/2)
    Q0 = ds.Q.isel(t=0).values
    np.testing.assert_allclose(np.diagonal(Q0, axis1=-2, axis2=-1), 1.0, atol=0.5)
    np.testing.assert_allclose(Q0, np.swapaxes(Q0, -1, -2), atol=1e-12)


def test_many_latents_prescribed() -> None:
    p = Params(M=16, M_star=2, rho=[2.0, 1.0], beta=0.5, tau=0.2)
    s0 = overlap_state(p, 0.5)
    ds = sim(p, N=2 * 16 + 2 + 10, init=s0, t_max=0.2, record_every=0.1)
    for k in ORDER:
        np.testing.assert_allclose(ds[k].isel(t=0).values[0], s0[k], atol=1e-9)


def test_N_one_random_init() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linvae.errors.DivergenceWarning)  # N = 1 is all noise
        ds = sim(Params(M=1, M_star=1), N=1, t_max=20.0, record_every=1.0, seeds=4)
    assert ds.sizes["t"] == 21
    for r in range(4):
        rep = ds.isel(replica=r)
        if bool(rep.diverged):
            assert float(rep.t_diverged) > 0
        else:
            assert np.isfinite(rep.Q.values).all()
    # the teacher is a unit vector: m^2 <= Q at N = 1 (Cauchy-Schwarz, equality in 1-d)
    m0, Q0 = ds.m.isel(t=0).values[:, 0, 0], ds.Q.isel(t=0).values[:, 0, 0]
    np.testing.assert_allclose(m0**2, Q0, rtol=1e-12)


def test_N_below_what_the_init_needs_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"N must be >= M_star=2 for an orthonormal teacher"):
        sim(Params(M=1, M_star=2), N=1)
    p = Params(M=1, M_star=1)
    s0 = overlap_state(p, 0.5)
    for N in (1, 2):
        with pytest.raises(ValueError, match=r"N must be >= M_star \+ 2 M = 3 to realise"):
            sim(p, N=N, init=s0)
    ds = sim(p, N=3, init=s0, t_max=1.0)  # the smallest N that works
    for k in ORDER:
        np.testing.assert_allclose(ds[k].isel(t=0).values[0], s0[k], atol=1e-12)


def test_tiny_tau_barely_moves() -> None:
    p = Params(M=2, M_star=1, tau=1e-6)
    s0 = overlap_state(p, 0.5)
    ds = sim(p, N=500, init=s0, t_max=2.0, record_every=1.0)
    assert not ds.diverged.any()
    for k in ORDER:
        v = ds[k].values
        assert np.isfinite(v).all()
        # drift ~ tau t, noise ~ tau sqrt(t / N): far below 1e-3
        np.testing.assert_allclose(v[:, -1], v[:, 0], atol=1e-4, err_msg=k)
    ref = sim(p, N=500, init=s0, t_max=2.0, record_every=1.0, dtype="float32")
    assert np.isfinite(ref.Q.values).all()


@pytest.mark.parametrize("tau", [10.0, 1e3, 1e8, 1e300])
def test_huge_tau_is_reported_as_divergence(tau: float) -> None:
    with pytest.warns(linvae.errors.DivergenceWarning, match="diverged"):
        ds = sim(Params(tau=tau), N=300, t_max=2.0, record_every=0.5, seeds=3)
    assert ds.diverged.all()
    assert set(ds.divergence.values) <= {"non-finite value", "D <= 0", "blow-up"}
    assert (ds.t_diverged.values <= 2.0).all()
    # never NaN datasets without a flag: every NaN record belongs to a flagged replica
    nan_any = np.isnan(ds.Q.values).any(axis=(1, 2, 3))
    assert not (nan_any & ~ds.diverged.values).any()
    # the state at t = 0 is recorded before anything happens
    assert np.isfinite(ds.Q.isel(t=0).values).all()


@pytest.mark.parametrize("blowup", [1e-3, 0.5])
def test_small_blowup_threshold_flags_blow_up(blowup: float) -> None:
    with pytest.warns(linvae.errors.DivergenceWarning):
        ds = sim(Params(), N=200, t_max=0.5, blowup=blowup)
    assert ds.diverged.all() and set(ds.divergence.values) == {"blow-up"}


def test_extreme_but_valid_parameters_stay_finite() -> None:
    for p in (Params(rho=0.0, eta=1e-6, beta=0.0, tau=0.01), Params(rho=1e3, eta=1e3, tau=1e-4),
              Params(M=2, M_star=2, rho=[1e-12, 0.0], lam=10.0, tau=0.01),
              Params(beta=1e6, tau=1e-6)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", linvae.errors.DivergenceWarning)
            ds = sim(p)
        for r in range(ds.sizes["replica"]):
            rep = ds.isel(replica=r)
            if not bool(rep.diverged):
                assert np.isfinite(rep.Q.values).all(), p
