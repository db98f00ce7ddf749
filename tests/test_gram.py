"""The Gram chain (_core.GramEngine): the exact finite-N law of the order parameters,
simulated without the N-vectors.

Checked here: the same law as the weight-space engine at small N; bit-identical
trajectories for any thread count and across get_state/set_state; the ODE limit at
N = 1e8; no rounding drift at N = 1e12; the W* block exactly I; divergence codes; and
the binding's checks of its arguments.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy import stats

import linvae
from linvae import _core
from linvae.data import check_data
from linvae.observables import gram_sqrt, state_gram
from linvae.schedules import Tanh
from linvae.simulation import empty_records, new_engine
from linvae.states import overlap_state

Ops = dict[str, np.ndarray]
ENGINES = {"weights": _core.Engine64, "gram": _core.GramEngine}


def make_engine(kind: str, p: linvae.Params, N: int, replicas: int, seed: int,
                **kw: Any) -> Any:
    return new_engine(p, N, replicas=replicas, seed=seed, method=kind, **kw)


empty_ops = empty_records


def init(engine: Any, state: Ops | None, threads: int = 2) -> None:
    """The default random start, or the prescribed state: the weights realise it to
    rounding from a square root of its Gram matrix, the Gram chain takes it exactly."""
    if state is None:
        engine.init_random(threads)
    elif isinstance(engine, _core.GramEngine):
        engine.init_gram(state_gram(state), list(state["D"]), threads)
    else:
        engine.init_prescribed(gram_sqrt(state_gram(state)), list(state["D"]), threads)


def drive(engine: Any, p: linvae.Params, N: int, times: list[float], *, threads: int = 2,
          chunk: int | None = None, s_start: int = 0) -> Ops:
    """Record the states at step counts round(t N), in chunks, as linvae.simulate drives
    the weight engine (beta evaluated at t = s / N before step s)."""
    steps = np.unique(np.round(np.asarray(times) * N).astype(np.int64))
    S = engine.status()[0].size
    ops = empty_ops(p, S, steps.size)
    s0, total = s_start, int(steps[-1])
    chunk = chunk or max(1, total - s0)
    while True:
        n = min(chunk, total - s0)
        last = s0 + n >= total
        lo, hi = np.searchsorted(steps, [s0, s0 + n + 1 if last else s0 + n])
        engine.run(p.beta_at((s0 + np.arange(n)) / N), (steps[lo:hi] - s0).astype(np.int64),
                   ops, rec_start=int(lo), threads=threads)
        s0 += n
        if last:
            return ops


def entries(p: linvae.Params) -> list[tuple[str, tuple[int, ...]]]:
    """Every distinct scalar order parameter (Q and E are symmetric)."""
    M, Ms = p.M, p.M_star
    out = [(k, (i, f)) for k in ("m", "d") for i in range(M) for f in range(Ms)]
    out += [(k, (i, j)) for k in ("Q", "E") for i in range(M) for j in range(i, M)]
    out += [("R", (i, j)) for i in range(M) for j in range(M)]
    return out + [("D", (i,)) for i in range(M)]


def random_state(p: linvae.Params, seed: int) -> Ops:
    """A realisable prescribed state with O(1) overlaps."""
    rng = np.random.default_rng(seed)
    K, Ms, M = p.M_star + 2 * p.M, p.M_star, p.M
    A = 0.6 * rng.standard_normal((K, K))
    A[:Ms] = 0.0
    A[:Ms, :Ms] = np.eye(Ms)
    G = A @ A.T
    G = (G + G.T) / 2  # exactly symmetric
    a, b = Ms, Ms + M
    return {"m": G[a:b, :a], "d": G[b:, :a], "Q": G[a:b, a:b], "E": G[b:, b:], "R": G[a:b, b:],
            "D": rng.uniform(0.5, 1.5, M)}


# -- the law at small N: the Gram chain against the weight-space engine -------------------

P11 = linvae.Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, lam=0.05, tau=0.5)
LAW_CASES = [
    pytest.param(P11, 40, "prescribed", id="M1Ms1-prescribed-N40"),
    pytest.param(P11, 20, "random", id="M1Ms1-random-N20"),
    pytest.param(linvae.Params(M=2, M_star=1, rho=1.5, eta=0.7, beta=0.4, lam=0.1, tau=0.5),
                 60, "random", id="M2Ms1-lam-random-N60"),
    pytest.param(linvae.Params(M=2, M_star=2, rho=[2.0, 1.0], eta=1.0, beta=0.3, lam=0.05,
                               tau=0.5), 50, "prescribed", id="M2Ms2-rho21-prescribed-N50"),
    pytest.param(linvae.Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=Tanh(0.5, 0.5), tau=0.5),
                 100, "random", id="M1Ms1-tanh-random-N100"),
]
LAW_TIMES = [0.0, 0.5, 1.5, 3.0]
LAW_S = 6000
FAMILY_ALPHA = 0.01  # false-alarm probability of one whole case, if the laws are equal


@pytest.mark.parametrize(("p", "N", "start"), LAW_CASES)
def test_same_law_as_the_weight_engine(p: linvae.Params, N: int, start: str) -> None:
    # Two independent samples of S replicas (different seeds; the engines' streams are
    # disjoint anyway), compared entry by entry at each time by three tests. Bonferroni:
    # each of the n tests of a case runs at level FAMILY_ALPHA / n, so a correct engine
    # fails a case with probability <= 1% (the seeds are fixed, so the outcome is too).
    state = random_state(p, 3) if start == "prescribed" else None
    out = {}
    for seed, kind in enumerate(ENGINES, start=11):
        e = make_engine(kind, p, N, LAW_S, seed)
        init(e, state)
        out[kind] = drive(e, p, N, LAW_TIMES, chunk=37)
        assert (e.status()[0] == 0).all()
    w, g = out["weights"], out["gram"]
    samples = []
    for k, ix in entries(p):
        for ti in range(len(LAW_TIMES)):
            x, y = w[k][(slice(None), ti, *ix)], g[k][(slice(None), ti, *ix)]
            if state is not None and ti == 0:
                continue  # the prescribed state, checked below
            if x.std() == 0.0 and y.std() == 0.0:  # deterministic: D = 1 at t = 0
                assert x[0] == y[0], (k, ix)
            else:
                samples.append((k, ix, ti))
    alpha = FAMILY_ALPHA / (3 * len(samples))
    z_max = stats.norm.isf(alpha / 2)
    for k, ix, ti in samples:
        x, y = w[k][(slice(None), ti, *ix)], g[k][(slice(None), ti, *ix)]
        what = f"{k}{list(ix)} at t = {LAW_TIMES[ti]}"
        # means: the difference in units of its standard error
        se = np.sqrt(x.var(ddof=1) / x.size + y.var(ddof=1) / y.size)
        assert abs(x.mean() - y.mean()) < z_max * se, f"mean of {what}"
        # spreads: log(sd) has variance (kurtosis - 1) / (4 S) (delta method; pooled
        # kurtosis, since the order parameters are far from Gaussian at N = 20)
        kurt = stats.kurtosis(np.concatenate([x - x.mean(), y - y.mean()]), fisher=False)
        se_log = np.sqrt((kurt - 1.0) / (4 * x.size) + (kurt - 1.0) / (4 * y.size))
        assert abs(np.log(x.std() / y.std())) < z_max * se_log, f"sd of {what}"
        # the whole distribution
        assert stats.ks_2samp(x, y).pvalue > alpha, f"distribution of {what}"
    if state is not None:  # t = 0: the prescribed state itself (the weights to rounding)
        for k, ix in entries(p):
            want = state[k][ix]
            assert np.all(g[k][(slice(None), 0, *ix)] == want), k
            np.testing.assert_allclose(w[k][(slice(None), 0, *ix)], want, atol=1e-12)


def test_random_start_has_the_exact_law() -> None:
    # The Bartlett start against the weights' own random start at N = 12 (far from the
    # N -> infinity limit Q = E = I, m = d = R = 0), many replicas, t = 0 only.
    p = linvae.Params(M=2, M_star=2)
    S, N = 20000, 12
    t0 = {kind: drive_start(kind, p, N, S) for kind in ENGINES}
    samples = entries(p)[:-p.M]  # D = 1 exactly
    alpha = FAMILY_ALPHA / (2 * len(samples))
    for k, ix in samples:
        x, y = t0["weights"][k][(slice(None), 0, *ix)], t0["gram"][k][(slice(None), 0, *ix)]
        se = np.sqrt(x.var(ddof=1) / S + y.var(ddof=1) / S)
        assert abs(x.mean() - y.mean()) < stats.norm.isf(alpha / 2) * se, k
        assert stats.ks_2samp(x, y).pvalue > alpha, k
    assert np.all(t0["gram"]["D"] == 1.0)


def drive_start(kind: str, p: linvae.Params, N: int, S: int) -> Ops:
    e = make_engine(kind, p, N, S, seed=5 if kind == "gram" else 6)
    e.init_random(2)
    return drive(e, p, N, [0.0])


# -- reproducibility -------------------------------------------------------------------

P21 = linvae.Params(M=2, M_star=1, rho=1.0, eta=1.0, beta=0.5, lam=0.1, tau=0.5)


def test_bit_identical_for_any_thread_count_and_chunking() -> None:
    N, S, times = 1000, 7, [0.0, 0.3, 1.0, 2.0]
    results = []
    for threads, chunk in ((1, None), (2, 97), (3, 1000)):
        e = make_engine("gram", P21, N, S, seed=4)
        e.init_random(threads)
        results.append((drive(e, P21, N, times, threads=threads, chunk=chunk),
                        [e.get_state(r) for r in range(S)]))
    ops0, st0 = results[0]
    for ops, st in results[1:]:
        for k in ops0:
            assert np.array_equal(ops[k], ops0[k], equal_nan=False), k
        for a, b in zip(st, st0, strict=True):
            for k in a:
                assert np.array_equal(a[k], b[k]), k


def test_independent_of_the_generator_simd_path() -> None:
    # the chain draws its few numbers per step with the scalar generator only
    before = _core.build_info()["simd_runtime"]
    try:
        _core.set_simd_path("avx2")
    except ValueError:
        pytest.skip("this build or CPU has only the scalar path")
    runs = []
    try:
        for path in ("scalar", "avx2"):
            _core.set_simd_path(path)
            e = make_engine("gram", P21, 500, 2, seed=8)
            e.init_random(1)
            runs.append(drive(e, P21, 500, [0.0, 1.0]))
    finally:
        _core.set_simd_path(before)
    for k in runs[0]:
        assert np.array_equal(runs[0][k], runs[1][k]), k


def test_replica_stream_depends_only_on_seed_and_replica() -> None:
    # replica 1 of a run of 2 replicas = replica 1 of a run of 5
    runs = []
    for S in (2, 5):
        e = make_engine("gram", P21, 500, S, seed=9)
        e.init_random(2)
        runs.append(drive(e, P21, 500, [0.0, 1.0]))
    for k in runs[0]:
        assert np.array_equal(runs[0][k][1], runs[1][k][1]), k
        assert not np.array_equal(runs[1][k][1], runs[1][k][2]), k


def test_state_round_trip_resumes_bit_identically() -> None:
    N, S, times = 800, 3, [0.0, 0.5, 1.0, 1.5]
    e = make_engine("gram", P21, N, S, seed=2)
    e.init_random(2)
    whole = drive(e, P21, N, times)
    # stop after 0.7 N steps, save as a checkpoint would (arrays, scalars as 0-d arrays)
    e = make_engine("gram", P21, N, S, seed=2)
    e.init_random(2)
    first = drive(e, P21, N, [0.0, 0.5, 0.7])
    saved = [{k: np.array(v) for k, v in e.get_state(r).items()} for r in range(S)]
    f = make_engine("gram", P21, N, S, seed=123)  # another seed: the state carries the streams
    for r, st in enumerate(saved):
        f.set_state(r, st)
    rest = drive(f, P21, N, [0.7, 1.0, 1.5], s_start=round(0.7 * N))
    for k in whole:
        assert np.array_equal(whole[k][:, :2], first[k][:, :2]), k
        assert np.array_equal(whole[k][:, 2:], rest[k][:, 1:]), k
    assert np.array_equal(f.status()[1], np.full(S, round(1.5 * N)))


# -- structure, large N, rounding ---------------------------------------------------------

def test_teacher_block_stays_exactly_identity() -> None:
    p = linvae.Params(M=3, M_star=2, rho=[2.0, 0.5], eta=0.5, beta=0.2, lam=0.1, tau=0.8)
    for state in (None, random_state(p, 1)):
        e = make_engine("gram", p, 300, 2, seed=1)
        init(e, state)
        drive(e, p, 300, [0.0, 3.0])
        for r in range(2):
            G, comp = e.gram(r), e.get_state(r)["G_comp"]
            assert np.array_equal(G[:2, :2], np.eye(2))
            assert np.array_equal(comp[:2, :2], np.zeros((2, 2)))
            assert np.array_equal(G, G.T)


def test_mean_trajectory_follows_the_ode_at_N_1e8() -> None:
    # The linear noise approximation: the spread of the state is sigma(t) / sqrt(N) with
    # sigma independent of N. sigma is measured at N = 1e4 (1000 replicas); at N = 1e8 the
    # mean of S = 4 replicas must be within 5 standard errors sigma / sqrt(N S) of the
    # ODE (the SGD-ODE bias is O(1/N) = 1e-8, far below).
    p = P11
    state = overlap_state(p, 0.5)
    times = [0.0, 0.125, 0.25, 0.375, 0.5]
    e = make_engine("gram", p, 10_000, 1000, seed=1)
    init(e, state)
    small = drive(e, p, 10_000, times)
    N, S = 10**8, 4
    e = make_engine("gram", p, N, S, seed=2)
    init(e, state)
    big = drive(e, p, N, times, chunk=10**7)
    ode = linvae.integrate(p, t_max=times[-1], init=state, t_eval=times, method="DOP853",
                           rtol=1e-12, atol=1e-14)
    for k, ix in entries(p):
        sigma = small[k][(slice(None), slice(1, None), *ix)].std(axis=0) * np.sqrt(10_000)
        mean = big[k][(slice(None), slice(1, None), *ix)].mean(axis=0)
        gap = np.abs(mean - ode[k].values[(slice(1, None), *ix)])
        assert np.all(gap < 5 * sigma / np.sqrt(N * S) + 1e-9), (k, gap * np.sqrt(N))


def test_no_rounding_drift_at_large_N() -> None:
    # W = V = 0 is a fixed point of the Gram matrix (b = g = 0), so D follows
    # D' = D - (tau beta / 2N) (1 - 1/D) alone: 1e7 steps of ~1e-13 at N = 1e12, whose
    # limit solves D + log|D - 1| = const - tau beta t / 2 (Euler's O(1/N) error: 1e-17).
    # Compensated sums land on it to rounding; the plain ones miss by ~n ulp / 10.
    p = P11.replace(lam=0.0)
    N, n, D0 = 10**12, 10**7, 0.5
    G0 = np.zeros((3, 3))
    G0[0, 0] = 1.0
    kt = p.tau * p.beta_inf / 2 * n / N
    # the change delta = D(t) - D0 ~ 1e-6 by Newton on delta + log1p(delta / (D0 - 1)) + kt
    delta = 0.0
    for _ in range(6):
        delta -= (delta + np.log1p(delta / (D0 - 1.0)) + kt) / (1.0 + 1.0 / (D0 - 1.0 + delta))
    exact = D0 + delta
    D = {}
    for comp in (True, False):
        e = make_engine("gram", p, N, 1, seed=0, compensated=comp)
        e.init_gram(G0, [D0], 1)
        D[comp] = drive(e, p, N, [n / N])["D"][0, 0, 0]
        assert np.array_equal(e.gram(0), G0)
    assert abs(D[True] - exact) <= 2 * np.spacing(D0)
    assert abs(D[False] - exact) > 1e-11  # what the compensation removes
    # and in a live run: after 2e6 steps the plain sums have wandered off the compensated
    # ones by ~1e-13 (measured), ~1000 roundings of one step (~1e-16), yet still far
    # below the N^-1/2 = 1e-6 noise
    Gs = {}
    for comp in (True, False):
        e = make_engine("gram", P11, N, 1, seed=3, compensated=comp)
        init(e, overlap_state(P11, 0.5))
        drive(e, P11, N, [2e6 / N])
        Gs[comp] = e.gram(0)
    gap = np.abs(Gs[True] - Gs[False]).max()
    assert 1e-14 < gap < 1e-6, gap


# -- divergence and bad arguments ----------------------------------------------------------

def test_divergence_codes() -> None:
    p = P11
    def one(state: Ops, **kw: Any) -> tuple[int, int, Ops]:
        e = make_engine("gram", p, kw.pop("N", 100), 1, seed=0, **kw)
        init(e, state)
        ops = drive(e, p, 100, [0.0, 0.5, 1.0])
        status, steps = e.status()
        return int(status[0]), int(steps[0]), ops
    base = overlap_state(p, 0.5)
    # Q beyond blowup: stopped at its first step, as the weight engine (code 3)
    status, steps, ops = one({**base, "Q": np.array([[3.0]])}, blowup=2.0)
    assert (status, steps) == (3, 1)
    assert np.isfinite(ops["Q"][0, 0]).all() and np.isnan(ops["Q"][0, 1:]).all()
    # a decoder this large drives D below zero at once (code 2)
    status, steps, _ = one({**base, "m": np.zeros((1, 1)), "R": np.zeros((1, 1)),
                            "Q": np.array([[1e3]])}, N=10)
    assert status == 2
    # tau far beyond the stability limit (as in test_simulate): every replica diverges
    e = make_engine("gram", p.replace(tau=6.0), 500, 3, seed=0)
    e.init_random(1)
    ops = drive(e, p.replace(tau=6.0), 500, list(np.arange(0, 2.0, 0.01)))
    status, steps = e.status()
    assert set(status) <= {1, 2, 3} and (steps < 1000).all()
    # an indefinite Gram matrix (4) and a NaN (1), through set_state
    e = make_engine("gram", p, 100, 2, seed=0)
    e.init_random(1)
    for r, (i, v) in enumerate(((2, -0.5), (1, np.nan))):
        st = e.get_state(r)
        st["G"][i, i] = v
        e.set_state(r, st)
    drive(e, p, 100, [0.0, 0.1])
    assert list(e.status()[0]) == [4, 1] and list(e.status()[1]) == [1, 1]


def test_singular_starts_are_exact_not_divergent() -> None:
    # W = V makes the Gram matrix singular; W = V = 0 stays there. Neither is a divergence.
    p = P21
    G = np.eye(5)
    B = np.array([[1.0, 0.3], [0.3, 1.0]])
    G[1:3, 1:3] = G[3:, 3:] = G[1:3, 3:] = G[3:, 1:3] = B
    G[0, 1:] = G[1:, 0] = [0.5, 0.2, 0.5, 0.2]
    e = make_engine("gram", p, 50, 2, seed=0)
    e.init_gram(G, [1.0, 1.0], 1)
    drive(e, p, 50, [0.0, 1.0])
    assert (e.status()[0] == 0).all() and np.linalg.eigvalsh(e.gram(0))[0] > 1e-6
    Z = np.zeros((5, 5))
    Z[0, 0] = 1.0
    e.init_gram(Z, [0.5, 2.0], 1)
    drive(e, p, 50, [0.0, 1.0])
    assert (e.status()[0] == 0).all() and np.array_equal(e.gram(1), Z)


@pytest.mark.parametrize(("call", "match"), [
    (lambda e: e.init_gram(np.eye(4), [1.0], 1), "G has the wrong shape"),
    (lambda e: e.init_gram(np.diag([2.0, 1.0, 1.0]), [1.0], 1), "W\\* block"),
    (lambda e: e.init_gram(np.diag([1.0, 1.0, -1e-3]), [1.0], 1), "positive semidefinite"),
    (lambda e: e.init_gram(np.array([[1.0, 1.5, 0], [1.5, 1.0, 0], [0, 0, 1.0]]), [1.0], 1),
     "positive semidefinite"),
    (lambda e: e.init_gram(np.eye(3) + np.triu(np.ones((3, 3)), 1) * 0.1, [1.0], 1),
     "symmetric"),
    (lambda e: e.init_gram(np.eye(3), [0.0], 1), "D must be"),
    (lambda e: e.init_gram(np.full((3, 3), np.nan), [1.0], 1), "not finite"),
    (lambda e: e.init_prescribed(np.eye(2), [1.0], 1), "S has the wrong shape"),
    (lambda e: e.set_state(0, {}), "missing"),
    (lambda e: e.set_state(0, {**e.get_state(0), "G": 2 * np.eye(3)}), "W\\* block"),
    (lambda e: e.set_state(0, {**e.get_state(0), "stream": np.zeros(4, np.uint64)}),
     "all-zero"),
    (lambda e: e.gram(5), "replica out of range"),
    (lambda e: e.run(np.zeros(3), np.array([2, 1]), empty_ops(P11, 1, 2),
                     rec_start=0, threads=1), "records must be increasing"),
    (lambda e: e.run(np.zeros(3), np.array([0]), empty_ops(P11, 2, 1),
                     rec_start=0, threads=1), "wrong shape"),
])
def test_binding_rejects_bad_arguments(call: Any, match: str) -> None:
    e = make_engine("gram", P11, 100, 1, seed=0)
    with pytest.raises((ValueError, IndexError), match=match):
        call(e)


def test_binding_rejects_what_the_chain_cannot_do() -> None:
    with pytest.raises(ValueError, match="N >= M\\* \\+ 2M = 3"):
        make_engine("gram", P11, 2, 1, seed=0)
    with pytest.raises(ValueError, match="exact for Gaussian data only"):
        make_engine("gram", P11, 100, 1, seed=0, noise="rademacher")
    with pytest.raises(ValueError, match="fresh sample every step"):
        make_engine("gram", P11, 100, 1, seed=0, data=check_data(dataset_size=10))
