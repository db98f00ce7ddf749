"""The N^-1/2 gap test of gap_scaling.py fails as often as it says, and no more."""

from __future__ import annotations

import numpy as np
import pytest
from gap_scaling import (
    CALIBRATION_VARIABLES,
    calibrate,
    calibration_mean_squares,
    false_failure_rate,
    gap_test,
)
from scipy import stats


def test_gap_test_validates_its_input() -> None:
    ms = np.ones(4)
    with pytest.raises(ValueError, match="n_se must be a finite number > 0, got 0"):
        gap_test(ms, ms, 100, 800, n_se=0.0)
    with pytest.raises(ValueError, match="N=800 must be a 1-d array of at least 3"):
        gap_test(ms, ms[:2], 100, 800)
    with pytest.raises(ValueError, match="N=100 must be finite and > 0"):
        gap_test(np.array([1.0, 0.0, 2.0]), ms, 100, 800)


def test_gap_test_on_an_exact_law() -> None:
    # mean squares that fall exactly as 1/N pass, ones that do not fall fail
    rng = np.random.default_rng(0)
    shape = rng.chisquare(4, 16) / 4
    assert gap_test(shape / 100, shape[::-1] / 800, 100, 800).ok
    bad = gap_test(shape / 100, shape[::-1] / 100, 100, 800)
    assert bad.powerful and not bad.ok


@pytest.mark.slow
def test_false_failure_rate_is_the_stated_one() -> None:
    # 600 calls' worth of Gram-chain replicas at N = 256 and 2048 (about 10 s on one
    # core), tested at n_se = 2 (rate 0.0455 per variable, 27 failures expected of 600),
    # where a rate that is off shows: each variable's count must lie within its binomial
    # 1e-4 quantiles at both ends, so this test fails by chance with probability
    # <= 5 * 2e-4 = 1e-3 (for a given seed, it passes or fails for good).
    groups, n1, n2, n_se = 600, 256, 2048, 2.0
    data = calibration_mean_squares(n1, n2, groups=groups, seed=1)
    rate = false_failure_rate(n_se)
    lo, hi = stats.binom.ppf(1e-4, groups, rate), stats.binom.isf(1e-4, groups, rate)
    counts = calibrate(data, n1, n2, n_se)["per_variable"]
    assert set(counts) == set(CALIBRATION_VARIABLES)
    for v, k in counts.items():
        assert lo <= k <= hi, (v, k, groups * rate, lo, hi)
    # at the default n_se = 4, the test has power in every call
    assert calibrate(data, n1, n2, 4.0)["powerful"]
