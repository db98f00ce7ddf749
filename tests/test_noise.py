"""The optional Rademacher background noise: same first two moments, same ODE limit."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from gap_scaling import check_gap_shrinks_like_sqrt_n

import linvae
from linvae import _core


def test_signs_are_balanced_and_exact() -> None:
    n = 1_000_003
    s = _core.NormalStream(3, 0, 2).signs(n)
    assert set(np.unique(s)) == {-1.0, 1.0}
    assert abs(s.mean()) < 5 / np.sqrt(n)                      # binomial, five sigma
    assert abs(np.corrcoef(s[:-1], s[1:])[0, 1]) < 5 / np.sqrt(n)


def test_rademacher_runs_are_reproducible_and_recorded() -> None:
    p = linvae.Params(M=2, lam=0.1)
    a = linvae.simulate(p, N=3000, t_max=0.5, seeds=2, noise="rademacher", progress=False)
    b = linvae.simulate(p, N=3000, t_max=0.5, seeds=2, noise="rademacher", threads=1,
                        progress=False)
    g = linvae.simulate(p, N=3000, t_max=0.5, seeds=2, progress=False)
    assert np.array_equal(a.Q.values, b.Q.values)
    assert not np.array_equal(a.Q.values, g.Q.values)
    assert a.attrs["noise"] == "rademacher"
    assert g.attrs["noise"] == "gaussian"
    with pytest.raises(ValueError, match="noise must be"):
        linvae.simulate(p, N=10, t_max=0.1, noise="cauchy", progress=False)  # type: ignore[arg-type]


def test_rademacher_sgd_still_concentrates_on_the_ode() -> None:
    # the ODE depends on the noise only through its first two moments: the SGD-ODE gap
    # must shrink like N^-1/2 as with Gaussian noise (same test as the Gaussian one)
    P = linvae.Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.5)
    sim = functools.partial(linvae.simulate, noise="rademacher")
    res = linvae.compare(P, Ns=[1000, 8000], t_max=5.0, replicas=16, record_every=0.25, seed=1,
                         simulate_fn=sim)
    check_gap_shrinks_like_sqrt_n(res, ["m", "d", "Q", "E", "R"])
    assert res.sims[8000].attrs["noise"] == "rademacher"
