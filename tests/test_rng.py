"""Statistical quality of the engine's normal generator (xoshiro256++ and ziggurat).

Every check compares a sample statistic with its exact value under N(0, 1) and allows
five standard errors of that statistic (fixed seeds, so a pass is reproducible; a
correct generator fails a given check with probability ~6e-7).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy import stats

from linvae import _core

n = 2_000_000


@pytest.fixture(scope="module")
def sample() -> np.ndarray:
    return _core.NormalStream(seed=2024, replica=0, stream_id=5).normal(n)


def test_moments(sample: np.ndarray) -> None:
    se = 1.0 / np.sqrt(n)
    assert abs(sample.mean()) < 5 * se
    assert abs(sample.var() - 1.0) < 5 * np.sqrt(2.0) * se           # Var(x^2) = 2
    assert abs(stats.skew(sample)) < 5 * np.sqrt(6.0) * se            # Var(skew) ~ 6/n
    assert abs(stats.kurtosis(sample)) < 5 * np.sqrt(24.0) * se       # Var(excess kurt.) ~ 24/n


R = 4.0388498461095045  # start of the tail of the 1024-layer ziggurat (both dtypes)


@pytest.mark.parametrize("a", [1.0, 2.0, 3.0, 3.6541528853610088, R, 4.5])
def test_tails(sample: np.ndarray, a: float) -> None:
    # count both sides of the tail start exactly (3.654 is the 256-layer tail start)
    p = 2 * stats.norm.sf(a)
    k = np.count_nonzero(np.abs(sample) > a)
    assert abs(k - n * p) < 5 * np.sqrt(n * p * (1 - p)) + 1


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tail_beyond_r_has_the_normal_shape(dtype: type) -> None:
    # Only ~110 of a 2e6 sample lie beyond R, too few to see the tail's shape: draw 2e7
    # (~1100 beyond R, in reused buffers) and KS-test them against the normal law
    # conditioned on |x| > R. Their count is binomial: five standard errors.
    s = _core.NormalStream(31, 0, 4)
    buf: np.ndarray = np.empty(5_000_000, dtype=dtype)
    tail = []
    for _ in range(4):
        s.fill(buf)
        tail.append(buf[np.abs(buf) > R].astype(np.float64))
    t = np.concatenate(tail)
    m, p = 4 * buf.size, 2 * stats.norm.sf(R)
    assert abs(t.size - m * p) < 5 * np.sqrt(m * p * (1 - p))
    assert abs(np.count_nonzero(t > 0) - t.size / 2) < 5 * np.sqrt(t.size) / 2
    sf_r = stats.norm.sf(R)
    assert stats.kstest(np.abs(t), lambda x: 1.0 - stats.norm.sf(x) / sf_r).pvalue > 1e-4


def test_distribution_ks(sample: np.ndarray) -> None:
    assert stats.kstest(sample[:500_000], "norm").pvalue > 1e-4


def test_symmetric_and_no_gaps_at_layers(sample: np.ndarray) -> None:
    # chi-square over 200 equiprobable bins catches layer-edge errors of the ziggurat
    edges = stats.norm.ppf(np.linspace(0, 1, 201))
    counts, _ = np.histogram(sample, bins=edges)
    chi2 = ((counts - n / 200) ** 2 / (n / 200)).sum()
    assert stats.chi2.sf(chi2, df=199) > 1e-4


def test_streams_are_independent() -> None:
    # replicas, blocks and consecutive fills: correlations are N(0, 1/m) under independence
    m = 400_000
    a = _core.NormalStream(1, 0, 2).normal(m)
    for other in (_core.NormalStream(1, 1, 2).normal(m), _core.NormalStream(1, 0, 3).normal(m),
                  _core.NormalStream(2, 0, 2).normal(m)):
        assert abs(np.corrcoef(a, other)[0, 1]) < 5 / np.sqrt(m)
    s = _core.NormalStream(9, 0, 2)
    first, second = s.normal(m), s.normal(m)
    assert abs(np.corrcoef(first, second)[0, 1]) < 5 / np.sqrt(m)
    assert abs(np.corrcoef(first[:-1], first[1:])[0, 1]) < 5 / np.sqrt(m)      # lag 1
    assert abs(np.corrcoef(first[:-4], first[4:])[0, 1]) < 5 / np.sqrt(m)      # same lane


def test_reproducible_bit_for_bit() -> None:
    a = _core.NormalStream(123, 4, 7).normal(10_001)
    b = _core.NormalStream(123, 4, 7).normal(10_001)
    assert np.array_equal(a, b)
    # a fill's values depend only on the stream and the fill lengths
    s = _core.NormalStream(123, 4, 7)
    out = np.empty(10_001)
    s.fill(out)
    assert np.array_equal(out, a)


def test_bit_generator_is_balanced() -> None:
    # each of the 64 output bits is set half the time (binomial, 5 sigma)
    words = _core.NormalStream(77, 0, 0).uniform_bits(200_000)
    bits = (words[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
    freq = bits.mean(axis=0)
    assert np.all(np.abs(freq - 0.5) < 5 * 0.5 / np.sqrt(words.size))


def test_simd_and_scalar_paths_give_the_same_numbers() -> None:
    # The AVX2 fills and the AVX2 passes (M = M* = 1: four float64 or eight float32 rows
    # at a time; M = 2: two rows, M = 4, 8: a row per register) do the scalar arithmetic,
    # so the whole run, not just the generator, is the same bit for bit on either path,
    # for both weight types and both noises (N = 5001 also exercises the tail rows).
    import linvae

    active = _core.build_info()["simd_runtime"]
    if active != "avx2":
        pytest.skip("this CPU or build has only the scalar path")
    try:
        a = _core.NormalStream(5, 1, 2).normal(100_003)
        cases = [(M, 1, dtype, noise) for M in (1, 2) for dtype in ("float64", "float32")
                 for noise in ("gaussian", "rademacher")]
        cases += [(M, 2, "float64", "gaussian") for M in (2, 4, 8)]  # AVX2 M = 2, 4, 8 passes

        def sim(M: int, Ms: int, dtype: str, noise: str) -> Any:
            p = linvae.Params(M=M, M_star=Ms, rho=[2.0, 1.0][:Ms])
            return linvae.simulate(p, N=5001, t_max=0.2, seeds=2, dtype=dtype, noise=noise,
                                   progress=False)

        runs = {c: sim(*c) for c in cases}
        _core.set_simd_path("scalar")
        b = _core.NormalStream(5, 1, 2).normal(100_003)
        for c, sim_a in runs.items():
            sim_b = sim(*c)
            for k in ("m", "d", "Q", "E", "R", "D"):
                assert np.array_equal(sim_a[k].values, sim_b[k].values), (*c, k)
    finally:
        _core.set_simd_path(active)
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="simd path"):
        _core.set_simd_path("sse9")
