"""The N^-1/2 law of the SGD-ODE gap, tested with a tolerance from the replicas' spread."""

from __future__ import annotations

import numpy as np

from linvae.comparison import Comparison, gap_statistics


def check_gap_shrinks_like_sqrt_n(res: Comparison, variables: list[str],
                                  n_se: float = 4.0) -> None:
    """Assert rms gap(N1) / rms gap(N2) = sqrt(N2 / N1) within n_se standard errors.

    The mean-square gap at each N is the mean over independent replicas of each
    replica's own mean square (over t and entries), so its standard error is the
    replicas' spread / sqrt(replicas). The log of the rms ratio gets its standard
    error by the delta method; the bias of the ODE limit, O(1/N), is far below it.
    """
    n1, n2 = res.Ns
    for v in variables:
        log_ms, var_log_ms = [], []
        for n in (n1, n2):
            sim = res.sims[n]
            ms = np.array([float(gap_statistics(sim.isel(replica=[r]), res.ode, [v])["rms"][0])
                           for r in range(sim.sizes["replica"])]) ** 2
            log_ms.append(np.log(ms.mean()))
            var_log_ms.append(ms.var(ddof=1) / ms.size / ms.mean() ** 2)
        log_ratio = 0.5 * (log_ms[0] - log_ms[1])
        se = 0.5 * np.sqrt(sum(var_log_ms))
        expected = 0.5 * np.log(n2 / n1)
        assert abs(log_ratio - expected) < n_se * se, (v, np.exp(log_ratio), se)
        # and the test has power: a gap that did not shrink with N would fail it
        assert n_se * se < expected, (v, se)
