"""float32 weights: the same SGD, rounded to single precision.

The float32 engine updates the weights in float arithmetic and draws its normals two per
random word, so its trajectories are not the float64 ones. What must not change is what
the simulation is for: the order parameters still follow the ODE, with the same
N^-1/2 fluctuations, at the large N where float32 is used to save time and memory.
"""

from __future__ import annotations

import numpy as np
import pytest

import linvae
from linvae.comparison import gap_statistics
from linvae.ode import integrate
from linvae.states import overlap_state

P = linvae.Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.5)
N = 100_000
ORDER = ("m", "d", "Q", "E", "R", "D")


def test_float32_rounding_is_far_below_the_sgd_fluctuations() -> None:
    # Rademacher signs are exact in either type and come from the same bits, so with
    # them both dtypes see the same samples and differ by rounding alone. The order
    # parameters fluctuate by ~N^-1/2 between runs; rounding moves them by 1e-4 of that
    # (measured ~6e-5 at most), so 1e-2 N^-1/2 leaves a margin of 100.
    kw = {"N": N, "init": overlap_state(P, 0.5), "t_max": 0.25, "record_every": 0.05,
          "seed": 3, "noise": "rademacher", "progress": False}
    a = linvae.simulate(P, dtype="float64", **kw)
    b = linvae.simulate(P, dtype="float32", **kw)
    for k in ORDER:
        dev = np.abs(a[k].values - b[k].values).max()
        assert dev < 1e-2 / np.sqrt(N), (k, dev * np.sqrt(N))
    # and the runs did move: the deviations are not zero because nothing happened
    assert np.abs(a.Q.values[:, -1] - a.Q.values[:, 0]).max() > 30 / np.sqrt(N)


@pytest.mark.slow
def test_float32_keeps_the_gap_to_the_ode_at_N_1e5() -> None:
    # Gaussian noise (the model): independent float32 and float64 runs from the same
    # prescribed start, both against the ODE. Each rms gap comes from 4 independent
    # replicas (times within a replica are strongly correlated), so gap^2 is roughly
    # chi^2_4 / 4 and the ratio of two gaps lies in [1/4, 4] with probability ~98.5%
    # (F(4, 4) quantiles); pooled over the order parameters it must be within a factor 2.
    # The scale itself is the N^-1/2 one: every gap below 2 N^-1/2.
    s0 = overlap_state(P, 0.5)
    sims = {dt: linvae.simulate(P, N=N, init=s0, t_max=0.3, record_every=0.05, seeds=4, seed=5,
                                dtype=dt, progress=False) for dt in ("float64", "float32")}
    t = sims["float64"].t.values
    ode = integrate(P, t_max=float(t[-1]), init=s0, t_eval=t)
    gap = {dt: gap_statistics(sims[dt], ode, ORDER)["rms"].values for dt in sims}
    ratio = gap["float32"] / gap["float64"]
    assert np.all((ratio > 0.25) & (ratio < 4.0)), ratio
    pooled = np.sqrt(np.mean(gap["float32"] ** 2) / np.mean(gap["float64"] ** 2))
    assert 0.5 < pooled < 2.0, pooled
    assert np.all(gap["float32"] < 2 / np.sqrt(N)), gap["float32"] * np.sqrt(N)
