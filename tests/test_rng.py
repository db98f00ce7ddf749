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


def draw(s: _core.NormalStream, m: int, dtype: str) -> np.ndarray:
    """m normals of the stream for weights of this dtype, as float64 (exact)."""
    return s.normal(m) if dtype == "float64" else s.normal32(m).astype(np.float64)


# Both generators: float64 normals (one per 64-bit word) and float32 ones (two per word).
@pytest.fixture(scope="module", params=["float64", "float32"])
def sample(request: pytest.FixtureRequest) -> np.ndarray:
    return draw(_core.NormalStream(seed=2024, replica=0, stream_id=5), n, request.param)


def test_moments(sample: np.ndarray) -> None:
    se = 1.0 / np.sqrt(n)
    assert abs(sample.mean()) < 5 * se
    assert abs(sample.var() - 1.0) < 5 * np.sqrt(2.0) * se           # Var(x^2) = 2
    assert abs(stats.skew(sample)) < 5 * np.sqrt(6.0) * se            # Var(skew) ~ 6/n
    assert abs(stats.kurtosis(sample)) < 5 * np.sqrt(24.0) * se       # Var(excess kurt.) ~ 24/n


R = 4.2163704095118969  # start of the tail of the 2048-layer ziggurat (both dtypes)


@pytest.mark.parametrize("a", [1.0, 2.0, 3.0, 3.6541528853610088, 4.0, R, 4.5])
@pytest.mark.parametrize("side", ["lower", "upper", "both"])
def test_tails(sample: np.ndarray, a: float, side: str) -> None:
    # binomial count beyond a, on both sides of the tail start R (3.654 is the 256-layer
    # one); n p ~ 7 for one side at 4.5, and +1 absorbs the discreteness
    p = {"lower": 1.0, "upper": 1.0, "both": 2.0}[side] * stats.norm.sf(a)
    beyond = {"lower": sample < -a, "upper": sample > a, "both": np.abs(sample) > a}[side]
    k = np.count_nonzero(beyond)
    assert abs(k - n * p) < 5 * np.sqrt(n * p * (1 - p)) + 1


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tail_beyond_r_has_the_normal_shape(dtype: type) -> None:
    # Only ~50 of a 2e6 sample lie beyond R, too few to see the tail's shape: draw 2e7
    # (~500 beyond R, in reused buffers) and KS-test them against the normal law
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


# lags within a fill: 1 (neighbours; for float32 also the two halves of a word), and the
# next draw of the same lane (float64: 4; float32: 2 the next word's half, 8 the same half)
@pytest.mark.parametrize(("dtype", "lags"), [("float64", (1, 4)), ("float32", (1, 2, 8))])
def test_streams_are_independent(dtype: str, lags: tuple[int, ...]) -> None:
    # replicas, blocks and consecutive fills: correlations are N(0, 1/m) under independence
    m = 400_000
    tol = 5 / np.sqrt(m)
    a = draw(_core.NormalStream(1, 0, 2), m, dtype)
    for other in (_core.NormalStream(1, 1, 2), _core.NormalStream(1, 0, 3),
                  _core.NormalStream(2, 0, 2)):
        assert abs(np.corrcoef(a, draw(other, m, dtype))[0, 1]) < tol
    s = _core.NormalStream(9, 0, 2)
    first, second = draw(s, m, dtype), draw(s, m, dtype)
    assert abs(np.corrcoef(first, second)[0, 1]) < tol
    for lag in lags:
        assert abs(np.corrcoef(first[:-lag], first[lag:])[0, 1]) < tol


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
