"""Multi-epoch SGD on a finite dataset (docs/model.md#finite-datasets).

What is checked, and against what:
* the engine against an independent NumPy reference that stores the P samples: each
  step's x is the stored sample of its index (to rounding; bit for bit from one visit of
  a sample to the next), the visiting order is the one promised, and NumPy SGD on the
  stored samples lands on the engine's weights;
* the law: with P far beyond the number of steps no sample is seen twice, so the run
  must have the law of one-pass SGD; a small dataset must not (overfitting);
* replicas, shared datasets, threads, attributes, the training loss, the checks of the
  options and resuming from a checkpoint.

Statistical tolerances come from the sampling error and are stated where used; all
seeds are fixed, so a pass is reproducible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import xarray as xr
from interrupts import interrupt_at_checkpoint
from numpy.typing import NDArray
from scipy import stats

import linvae
from linvae.data import check_data
from linvae.dataset import parse_state
from linvae.observables import gram_sqrt, loss_terms, state_gram
from linvae.reference import ReferenceSGD
from linvae.simulation import _teacher_first, empty_records, new_engine

Array = NDArray[np.float64]

P11 = linvae.Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, lam=0.0, tau=0.5)
P21 = linvae.Params(M=2, M_star=1, rho=1.5, eta=0.7, beta=0.9, lam=0.1, tau=0.8)
NONE = np.array([], dtype=np.int64)
Order = Literal["shuffle", "cycle"]
Dtype = Literal["float64", "float32"]


def engine(p: linvae.Params, N: int, P: int, *, order: str = "shuffle", seed: int = 4,
           replicas: int = 1, dtype: str = "float64", **data: Any) -> Any:
    """An engine on a dataset of P samples, started from the random initial state."""
    e = new_engine(p, N, replicas=replicas, seed=seed, dtype=dtype,
                   data=check_data(dataset_size=P, order=order, **data))
    e.init_random(1)
    return e


def stored_dataset(e: Any, p: linvae.Params, P: int, r: int = 0) -> tuple[Array, Array]:
    """Replica r's P samples X (P x N), built in NumPy from the engine's draws (c, n) and
    its teacher, and the size |W*| |cs| + sqrt(eta) |n| of the terms of each entry, which
    bounds its rounding error."""
    e.flush()
    W_star = e.weights(r)["W_star"]
    N = W_star.shape[0]
    X, size = np.empty((P, N)), np.empty((P, N))
    for mu in range(P):
        c, n = e.sample(r, mu)
        # the engine's factor coefficients, in its own order of operations
        cs = np.sqrt(p.rho_vec) * c / np.sqrt(N)
        X[mu] = W_star @ cs + np.sqrt(p.eta) * n
        size[mu] = np.abs(W_star) @ np.abs(cs) + np.sqrt(p.eta) * np.abs(n)
    return X, size


def out_arrays(p: linvae.Params, S: int = 1, T: int = 1) -> dict[str, Array]:
    """Record arrays of an engine's run, by order parameter."""
    return empty_records(p, S, T)


def numpy_train_loss(X: Array, W: Array, V: Array, D: Array, beta: float, lam: float) -> float:
    """The per-sample loss l(x) of docs/model.md#model, averaged over the rows of X."""
    N = W.shape[0]
    a = X @ W / np.sqrt(N)  # (P, M)
    b = X @ V / np.sqrt(N)
    Q = W.T @ W / N
    per_sample = (-np.sum(a * b, axis=1) + 0.5 * np.einsum("pk,kl,pl->p", b, Q, b)
                  + 0.5 * np.sum(np.diag(Q) * D)
                  + 0.5 * beta * np.sum(b**2 + D - np.log(D) - 1.0, axis=1)
                  + lam / (2 * N) * (np.sum(W**2) + np.sum(V**2)))
    return float(per_sample.mean())


# -- the engine against stored samples ---------------------------------------------------

REFERENCE_CASES = [
    # (params, N, P, data options): M = M* = 1 takes the fused hot path with the normals
    # straight from the streams; M = 2 with lam > 0 the general pass; N = 4100 has two
    # blocks of rows (two noise streams per sample), with non-Gaussian data
    pytest.param(P11, 1000, 7, {}, id="M1"),
    pytest.param(P21, 1500, 11, {}, id="M2-lam"),
    pytest.param(P11.replace(rho=2.0, eta=0.5, lam=0.1), 4100, 5,
                 {"noise": "laplace", "factors": "rademacher"}, id="M1-2blocks-laplace"),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("order", ["shuffle", "cycle"])
@pytest.mark.parametrize(("p", "N", "P", "data"), REFERENCE_CASES)
def test_engine_trains_on_the_stored_samples(p: linvae.Params, N: int, P: int,
                                             data: dict[str, Any], order: str,
                                             dtype: str) -> None:
    e = engine(p, N, P, order=order, dtype=dtype, **data)
    X, size = stored_dataset(e, p, P)
    assert X.shape == (P, N)
    st = e.get_state(0)
    ref = ReferenceSGD(p, N, W=st["W"], V=st["V"], D=st["D"], W_star=st["W_star"])
    epochs = 4
    steps = epochs * P
    mus = e.sample_index(0, np.arange(steps, dtype=np.int64))
    # (b) the order of visits
    if order == "cycle":
        np.testing.assert_array_equal(mus, np.arange(steps) % P)
    else:
        by_epoch = mus.reshape(epochs, P)
        np.testing.assert_array_equal(np.sort(by_epoch, axis=1), np.tile(np.arange(P), (epochs, 1)))
        # a fresh permutation every epoch (two equal ones among 4 of P! >= 120 would be a
        # coincidence of probability < 5%, fixed by the seed)
        assert len({tuple(row) for row in by_epoch}) == epochs
    # (a) x = X[mu] to rounding: the engine forms it with a fused multiply-add (float64:
    # two roundings against NumPy's three; float32: also se and cs rounded to single)
    eps = np.finfo(dtype).eps
    x_tol = (2 if dtype == "float64" else 3) * eps * size
    first_x: dict[int, NDArray[Any]] = {}
    w_tol = 1e-12 if dtype == "float64" else 2e-5
    d_tol = 1e-12 if dtype == "float64" else 1e-6
    out = out_arrays(p)
    beta = p.beta_inf
    for s in range(steps):
        e.run(np.array([beta]), NONE, out, rec_start=0, threads=1)
        st = e.get_state(0)
        assert st["steps"] == s + 1
        mu = int(mus[s])
        x = st["x"]
        assert np.all(np.abs(x.astype(np.float64) - X[mu]) <= x_tol[mu]), (s, mu)
        # regenerated from its key, so the very same numbers at every visit, step 0
        # (nothing pending) included
        if mu in first_x:
            assert np.array_equal(x, first_x[mu]), (s, mu)
        else:
            first_x[mu] = x.copy()
        # (c) NumPy SGD on the stored samples: the weights before this step's update
        if s:
            np.testing.assert_allclose(st["W"], ref.W, rtol=0, atol=w_tol)
            np.testing.assert_allclose(st["V"], ref.V, rtol=0, atol=w_tol)
        ref.step(X[mu], beta)
        np.testing.assert_allclose(st["D"], ref.D, rtol=0, atol=d_tol)
        if dtype == "float32":  # keep the reference on the engine's rounded weights
            ref.W[...] = ref.W.astype(np.float32)
            ref.V[...] = ref.V.astype(np.float32)
    assert len(first_x) == P  # every sample was visited again
    e.flush()
    w = e.weights(0)
    np.testing.assert_allclose(w["W"], ref.W, rtol=0, atol=w_tol)
    np.testing.assert_allclose(w["V"], ref.V, rtol=0, atol=w_tol)
    # the same steps in one run (as simulate takes them, in chunks) give the same state
    one = engine(p, N, P, order=order, dtype=dtype, **data)
    one.run(np.full(steps, beta), NONE, out, rec_start=0, threads=1)
    one.flush()
    for k, v in one.weights(0).items():
        assert np.array_equal(v, w[k]), k


# -- the order of visits -----------------------------------------------------------------

def visits(P: int, epochs: int, *, seed: int = 4, replica: int = 0, replicas: int = 1,
           order: str = "shuffle") -> NDArray[np.int64]:
    """The sample indices of the first ``epochs`` epochs, one row per epoch."""
    e = new_engine(P11, 10, replicas=replicas, seed=seed,
                   data=check_data(dataset_size=P, order=order))
    out: NDArray[np.int64] = e.sample_index(replica, np.arange(epochs * P, dtype=np.int64))
    return out.reshape(epochs, P)


def position_chi2_pvalue(by_epoch: NDArray[np.int64], positions: int) -> float:
    """P-value of the chi-square test that the sample at each of the first ``positions``
    positions is uniform on [0, P), pooled over the epochs (independent permutations)."""
    E, P = by_epoch.shape
    table = np.array([np.bincount(by_epoch[:, k], minlength=P) for k in range(positions)])
    expected = E / P
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return float(stats.chi2.sf(chi2, positions * (P - 1)))


@pytest.mark.parametrize(("P", "epochs"), [(64, 3000), (100, 2000), (1000, 300)])
def test_shuffle_is_a_uniform_permutation(P: int, epochs: int) -> None:
    # Every epoch is a permutation of [0, P); which sample comes at a given position is
    # uniform over the epochs: chi-square p > 1e-3 over the first 10 positions and the
    # last (expected counts >= 3 per cell, where the chi-square approximation holds)
    by_epoch = visits(P, epochs)
    np.testing.assert_array_equal(np.sort(by_epoch, axis=1), np.tile(np.arange(P), (epochs, 1)))
    assert position_chi2_pvalue(by_epoch, 10) > 1e-3
    assert position_chi2_pvalue(by_epoch[:, ::-1], 1) > 1e-3
    # what the dynamics sees (the samples are exchangeable, their labels do not matter):
    # where a sample comes in one epoch is independent of where it came in the one before
    # (positions in 8 bins; chi-square test of independence, p > 1e-3)
    where = np.argsort(by_epoch, axis=1)  # where[e, mu]: position of sample mu in epoch e
    bins = 8
    before, after = (where[:-1].ravel() * bins // P), (where[1:].ravel() * bins // P)
    table = np.zeros((bins, bins))
    np.add.at(table, (before, after), 1)
    assert stats.chi2_contingency(table).pvalue > 1e-3


@pytest.mark.parametrize("P", [3, 5, 10, 20])
def test_shuffle_is_uniform_for_small_datasets(P: int) -> None:
    # As above, over every position, with 20000 epochs (a tiny Feistel network failed
    # this: for P = 5, sample 4 came last in 27% of the epochs instead of 20%)
    assert position_chi2_pvalue(visits(P, 20000), P) > 1e-3


def test_order_keys() -> None:
    P = 50
    base = visits(P, 4, replicas=2)
    # the order is keyed by (seed, replica, epoch)
    assert not np.array_equal(base, visits(P, 4, replicas=2, replica=1))
    assert not np.array_equal(base, visits(P, 4, seed=5, replicas=2))
    # ... and by nothing else: the number of replicas does not change replica 0's
    np.testing.assert_array_equal(base, visits(P, 4))
    np.testing.assert_array_equal(visits(1, 5), 0)
    np.testing.assert_array_equal(visits(P, 3, order="cycle"), np.tile(np.arange(P), (3, 1)))
    # a huge dataset: the Feistel network on 2^40 values, walked back into [0, P)
    P = 10**12
    e = new_engine(P11, 10, seed=4, data=check_data(dataset_size=P))
    first = e.sample_index(0, np.arange(100_000, dtype=np.int64))
    assert first.min() >= 0 and first.max() < P
    assert np.unique(first).size == first.size  # within an epoch no sample comes twice
    # spread over [0, P): the mean of 1e5 uniform indices is P/2 within 4 standard errors
    assert abs(first.mean() / P - 0.5) < 4 * np.sqrt(1 / 12 / first.size)
    later = e.sample_index(0, np.arange(3 * P, 3 * P + 1000, dtype=np.int64))
    assert later.min() >= 0 and later.max() < P and not np.array_equal(later, first[:1000])
    with pytest.raises(ValueError, match="steps must be >= 0"):
        e.sample_index(0, np.array([-1], dtype=np.int64))


# -- the law -----------------------------------------------------------------------------

LAW = linvae.Params(M=1, M_star=1, rho=3.0, eta=1.0, beta=0.5, lam=0.0, tau=0.5)
LAW_RUN: dict[str, Any] = {"N": 400, "t_max": 2.0, "times": [0.0, 0.5, 1.0, 2.0],
                           "seeds": 96, "progress": False}
LAW_STATS = ("m", "Q", "E", "D", "eg")


@pytest.fixture(scope="module")
def one_pass() -> xr.Dataset:
    return linvae.simulate(LAW, seed=1, **LAW_RUN)


def two_sample_stats(a: xr.Dataset, b: xr.Dataset, k: str, ti: int) -> tuple[float, float]:
    """The difference of the replica means of ``k`` at time index ``ti`` in units of its
    standard error, and the two-sample Kolmogorov-Smirnov p-value."""
    x, y = (ds[k].values[:, ti].reshape(ds.sizes["replica"], -1)[:, 0] for ds in (a, b))
    se = np.sqrt(x.var(ddof=1) / x.size + y.var(ddof=1) / y.size)
    return float((x.mean() - y.mean()) / se), float(stats.ks_2samp(x, y).pvalue)


@pytest.mark.parametrize("order", ["shuffle", "cycle"])
def test_huge_dataset_has_the_one_pass_law(one_pass: xr.Dataset, order: Order) -> None:
    # 800 steps of a dataset of 1e12 samples never see a sample twice, so the run is
    # one-pass SGD with other random numbers. 96 replicas of each, every statistic at
    # t = 0.5, 1, 2 (and t = 0 but D = 1): means within 4 standard errors of their
    # difference (level 6e-5) and KS p > 1e-3. Over the 19 pairs a correct engine fails
    # with probability <= 19 * 1.06e-3, about 2%; the seeds are fixed, so the outcome is too.
    big = linvae.simulate(LAW, seed=2, dataset_size=10**12, order=order, **LAW_RUN)
    assert not big["diverged"].any()
    pairs = 0
    for k in LAW_STATS:
        for ti, t in enumerate(LAW_RUN["times"]):
            if k == "D" and t == 0.0:  # D = 1 at the start, exactly
                assert (big["D"].values[:, 0] == 1.0).all()
                continue
            z, p_ks = two_sample_stats(one_pass, big, k, ti)
            assert abs(z) < 4 and p_ks > 1e-3, (k, t, z, p_ks)
            pairs += 1
    assert pairs == 19


def test_small_dataset_overfits(one_pass: xr.Dataset) -> None:
    # P = N/4: 8 epochs by t = 2. The same tests must now fail by far (|z| > 8, KS
    # p < 1e-8) for the order parameters the dataset drives (at t = 1 and 2): the law
    # test above has the power to see a finite dataset.
    small = linvae.simulate(LAW, seed=3, dataset_size=LAW_RUN["N"] // 4, training_loss=True,
                            **LAW_RUN)
    for k in ("Q", "E", "D", "eg"):
        for ti in (2, 3):
            z, p_ks = two_sample_stats(one_pass, small, k, ti)
            assert abs(z) > 8 and p_ks < 1e-8, (k, ti, z, p_ks)
    # at the start the weights do not depend on the data: the training loss is an
    # unbiased estimate of the population loss (mean difference within 4 standard errors)
    gap = (small["train_loss"] - small["loss"]).values
    se0 = gap[:, 0].std(ddof=1) / np.sqrt(gap.shape[0])
    assert abs(gap[:, 0].mean()) < 4 * se0 and se0 > 0
    # later the training loss is below the population loss in every replica (by ~3 at
    # t = 2, with a spread of 0.25 between replicas)
    assert (gap[:, 2:] < 0).all()
    assert gap[:, 3].mean() < -50 * gap[:, 3].std(ddof=1) / np.sqrt(gap.shape[0])


# -- replicas, shared datasets, threads, attributes --------------------------------------

def test_replicas_have_their_own_or_a_shared_dataset() -> None:
    p, N, P, S = P21, 600, 9, 3
    own = engine(p, N, P, replicas=S)
    own.flush()
    shared = engine(p, N, P, replicas=S, dataset_seed=5)
    shared.flush()
    for r in range(1, S):
        # without dataset_seed: another teacher and other samples
        assert not np.array_equal(own.weights(r)["W_star"], own.weights(0)["W_star"])
        for a, b in zip(own.sample(r, 3), own.sample(0, 3), strict=True):
            assert not np.array_equal(a, b)
        # with it: the same teacher and samples, other initial weights
        assert np.array_equal(shared.weights(r)["W_star"], shared.weights(0)["W_star"])
        for a, b in zip(shared.sample(r, 3), shared.sample(0, 3), strict=True):
            assert np.array_equal(a, b)
        assert not np.array_equal(shared.weights(r)["W"], shared.weights(0)["W"])
        # and their own order of visits
        steps = np.arange(4 * P, dtype=np.int64)
        assert not np.array_equal(shared.sample_index(r, steps), shared.sample_index(0, steps))
    # the dataset of dataset_seed does not depend on the run's seed...
    other = engine(p, N, P, seed=8, dataset_seed=5)
    other.flush()
    assert np.array_equal(other.weights(0)["W_star"], shared.weights(0)["W_star"])
    assert np.array_equal(other.sample(0, 3)[1], shared.sample(0, 3)[1])
    # ... and is the dataset of that seed: the one replica 0 of a run with seed=5 has
    seed5 = engine(p, N, P, seed=5)
    seed5.flush()
    assert np.array_equal(seed5.weights(0)["W_star"], shared.weights(0)["W_star"])
    # the teacher is orthonormal (W*^T W* / N = I) either way
    W_star = shared.weights(0)["W_star"]
    np.testing.assert_allclose(W_star.T @ W_star / N, np.eye(p.M_star), atol=1e-12)
    # trajectories differ between replicas sharing a dataset (own start and order)
    ds = linvae.simulate(p, N, 1.0, record_every=0.5, seeds=S, seed=4, dataset_size=P,
                         dataset_seed=5, progress=False)
    m_end = ds["m"].values[:, -1].reshape(S, -1)
    assert len({tuple(row) for row in m_end}) == S


def test_shared_dataset_with_a_prescribed_start() -> None:
    # simulate(init=state, dataset_seed=...) builds its engine this way: every replica
    # must still train on the one teacher of the dataset (with the symmetric square
    # root of the Gram matrix, W* would take in each replica's own W and V)
    p, N, S = P21, 600, 3
    state = parse_state({"m": [[0.5], [0.1]], "d": [[0.5], [0.0]], "Q": np.eye(2),
                         "E": np.eye(2), "R": [[0.3, 0.0], [0.0, 0.1]], "D": [1.0, 1.0]}, p)
    e = new_engine(p, N, replicas=S, seed=2, data=check_data(dataset_size=9, dataset_seed=5))
    e.init_prescribed(_teacher_first(gram_sqrt(state_gram(state)), p.M_star),
                      state["D"].tolist(), 1)
    e.flush()
    for r in range(1, S):
        np.testing.assert_allclose(e.weights(r)["W_star"], e.weights(0)["W_star"], atol=1e-12)


@pytest.mark.parametrize(("N", "S", "t_max"), [(800, 3, 0.6), (4200, 1, 0.05)])
def test_any_thread_count_gives_the_same_run(N: int, S: int, t_max: float) -> None:
    # S = 3: replicas in parallel; S = 1 at N > 4096: the two blocks of rows of one
    # replica in parallel (briefly: a parallel region every step is slow on a busy machine)
    kw: dict[str, Any] = {"t_max": t_max, "record_every": t_max / 3, "seeds": S, "seed": 6,
                          "dataset_size": 13, "training_loss": True, "progress": False}
    a = linvae.simulate(P21, N, threads=1, **kw)
    b = linvae.simulate(P21, N, threads=2, **kw)
    xr.testing.assert_identical(a, b)
    assert np.isfinite(a["train_loss"].values).all()


def test_attributes_record_the_dataset(tmp_path: Path) -> None:
    kw: dict[str, Any] = {"N": 300, "t_max": 0.5, "record_every": 0.25, "seeds": 2,
                          "progress": False}
    ds = linvae.simulate(P11, dataset_size=17, order="cycle", dataset_seed=3,
                         training_loss=True, **kw)
    assert ds.attrs["dataset_size"] == 17 and ds.attrs["order"] == "cycle"
    assert ds.attrs["dataset_seed"] == 3 and ds.attrs["training_loss"] == 1
    assert ds["train_loss"].dims == ("replica", "t")
    # netCDF-safe: written and read back unchanged
    back = linvae.io.load(linvae.io.save(ds, tmp_path / "run.nc"))
    for k in ("dataset_size", "order", "dataset_seed", "training_loss"):
        assert back.attrs[k] == ds.attrs[k], k
    np.testing.assert_array_equal(back["train_loss"].values, ds["train_loss"].values)
    # the defaults; without a dataset, none of these attributes and no train_loss
    own = linvae.simulate(P11, dataset_size=17, **kw)
    assert own.attrs["order"] == "shuffle" and own.attrs["training_loss"] == 0
    assert "dataset_seed" not in own.attrs and "train_loss" not in own
    one = linvae.simulate(P11, **kw)
    assert not {"dataset_size", "order", "dataset_seed", "training_loss"} & set(one.attrs)
    # a dataset of P = 1e12 samples is not a one-pass run with the same seed: its teacher
    # comes from the dataset's key
    huge = linvae.simulate(P11, dataset_size=10**12, **kw)
    assert not np.array_equal(huge["m"].values, one["m"].values)


# -- the training loss -------------------------------------------------------------------

@pytest.mark.parametrize(("p", "order", "dtype"), [
    (P11, "shuffle", "float64"),
    (P11, "cycle", "float32"),
    # annealed beta: each record's loss takes the beta of its own time
    (P21.replace(beta=linvae.schedules.Tanh(0.8, 0.5)), "shuffle", "float64"),
], ids=["M1", "M1-cycle-float32", "M2-lam-annealed"])
def test_training_loss_is_the_mean_loss_over_the_samples(p: linvae.Params, order: Order,
                                                         dtype: Dtype) -> None:
    # NumPy's mean of l(x) over the stored samples, at the weights of an engine replaying
    # the run up to each recorded time, against the engine's training moments at that
    # record (through loss_terms, as simulate uses them) and simulate's own train_loss.
    # All sums are in double precision from the same numbers: 1e-10.
    N, P, S, seed = 300, 13, 2, 7
    times = [0.0, 0.7, 1.5]
    ds = linvae.simulate(p, N, 1.5, times=times, seeds=S, seed=seed, dtype=dtype,
                         dataset_size=P, order=order, training_loss=True, progress=False)
    assert ds["train_loss"].attrs["long_name"] == "loss averaged over the training set"
    for ti, t in enumerate(times):
        steps = round(t * N)
        e = engine(p, N, P, order=order, seed=seed, replicas=S, dtype=dtype)
        out = out_arrays(p, S)
        Bb, Cab = np.full((S, 1, p.M, p.M), np.nan), np.full((S, 1, p.M, p.M), np.nan)
        beta = np.asarray(p.beta_at(np.arange(steps) / N), dtype=np.float64)
        e.run(beta, np.array([steps], dtype=np.int64), out, rec_start=0, threads=1,
              train_Bb=Bb, train_Cab=Cab)
        beta_t = float(p.beta_at(t))
        engine_loss = loss_terms(Bb, Cab, out["Q"], out["E"], out["D"], beta=beta_t, lam=p.lam)[2]
        # The replay is simulate's trajectory, and a record at the end of a run takes the
        # arithmetic of the pass simulate goes on with: the same bits.
        np.testing.assert_array_equal(out["Q"][:, 0], ds["Q"].values[:, ti])
        # The float32 M = M* = 1 pass sums Q in single precision over runs of 128 rows
        # (relative rounding ~1e-7 per run); every other sum is in double.
        tol = 1e-10 if dtype == "float64" or p.M > 1 else 1e-6
        e.flush()
        for r in range(S):
            X, _ = stored_dataset(e, p, P, r)
            w = e.weights(r)
            want = numpy_train_loss(X, w["W"], w["V"], w["D"], beta_t, p.lam)
            assert abs(engine_loss[r, 0] - want) < tol * max(1.0, abs(want)), (t, r)
            got = float(ds["train_loss"].values[r, ti])
            assert got == engine_loss[r, 0], (t, r, got, engine_loss[r, 0])
            # the moments themselves
            a, b = X @ w["W"] / np.sqrt(N), X @ w["V"] / np.sqrt(N)
            np.testing.assert_allclose(Bb[r, 0], b.T @ b / P, rtol=1e-10, atol=1e-13)
            np.testing.assert_allclose(Cab[r, 0], a.T @ b / P, rtol=1e-10, atol=1e-13)


def test_training_moments_need_a_finite_dataset() -> None:
    e = new_engine(P11, 50, seed=1)
    e.init_random(1)
    Bb = np.zeros((1, 1, 1, 1))
    with pytest.raises(ValueError, match="finite dataset"):
        e.run(np.full(2, 0.5), np.array([2], dtype=np.int64), out_arrays(P11), rec_start=0,
              threads=1, train_Bb=Bb, train_Cab=Bb.copy())
    with pytest.raises(ValueError, match="finite dataset"):
        e.sample(0, 0)
    with pytest.raises(ValueError, match="finite dataset"):
        e.sample_index(0, np.array([0], dtype=np.int64))
    f = engine(P11, 50, 4)
    with pytest.raises(IndexError, match="sample index"):
        f.sample(0, 4)
    with pytest.raises(IndexError, match="sample index"):
        f.sample(0, -1)


# -- the options -------------------------------------------------------------------------

@pytest.mark.parametrize(("kw", "error", "match"), [
    ({"dataset_size": 0}, ValueError, "dataset_size must be >= 1"),
    ({"dataset_size": -1}, ValueError, "dataset_size must be >= 1"),
    ({"dataset_size": 2.5}, TypeError, "dataset_size must be an integer"),
    ({"dataset_size": "10"}, TypeError, "dataset_size must be an integer"),
    ({"dataset_size": True}, TypeError, "dataset_size must be an integer"),
    ({"dataset_size": 2**62 + 1}, ValueError, "dataset_size must be <="),
    ({"dataset_size": 10, "order": "random"}, ValueError, "order must be 'shuffle' or 'cycle'"),
    ({"order": "random"}, ValueError, "order must be"),
    ({"order": "cycle"}, ValueError, "order='cycle' applies to a finite dataset only"),
    ({"dataset_seed": 1}, ValueError, "dataset_seed=1 applies to a finite dataset only"),
    ({"training_loss": True}, ValueError, "training_loss=True applies to a finite dataset"),
    ({"dataset_size": 10, "training_loss": "yes"}, TypeError, "training_loss must be"),
    ({"dataset_size": 10, "dataset_seed": -1}, ValueError, "dataset_seed must be >= 0"),
    ({"dataset_size": 10, "dataset_seed": 1.5}, TypeError, "dataset_seed must be an integer"),
    ({"dataset_size": 10, "method": "gram"}, ValueError,
     "method='gram' .* cannot train on dataset_size=10"),
])
def test_bad_options_are_rejected(kw: dict[str, Any], error: type[Exception],
                                  match: str) -> None:
    with pytest.raises(error, match=match):
        linvae.simulate(P11, N=50, t_max=0.1, progress=False, **kw)


def test_gram_engine_refuses_a_dataset() -> None:
    with pytest.raises(ValueError, match="finite dataset needs the weight-space engine"):
        new_engine(P11, 50, method="gram", data=check_data(dataset_size=10))


# -- checkpoint and resume ---------------------------------------------------------------

RESUME = linvae.Params(M=2, M_star=1, rho=1.5, eta=1.0, beta=linvae.schedules.Tanh(0.8, 0.5),
                       lam=0.05, tau=0.5)
RESUME_RUN: dict[str, Any] = {"N": 600, "t_max": 2.0, "record_every": 0.1, "seeds": 2,
                              "seed": 11, "dataset_size": 37, "progress": False}


@pytest.mark.parametrize(("order", "training_loss", "dtype"), [
    ("shuffle", True, "float64"), ("cycle", False, "float32")])
def test_stopped_and_resumed_run_is_bit_identical(tmp_path: Path, order: str,
                                                  training_loss: bool, dtype: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # stopped after 600 steps, in the middle of epoch 16 of 37 samples
    run = {**RESUME_RUN, "order": order, "training_loss": training_loss, "dtype": dtype}
    full = linvae.simulate(RESUME, **run)
    ckpt = tmp_path / "run.ckpt"
    with monkeypatch.context() as mp:
        interrupt_at_checkpoint(mp, 3, RESUME_RUN["N"])
        with pytest.raises(linvae.errors.SimulationInterrupted) as info:
            linvae.simulate(RESUME, checkpoint=ckpt, checkpoint_every=0.0, **run)
    assert info.value.t == pytest.approx(1.0)
    partial = info.value.partial
    assert partial is not None and 0 < partial.sizes["t"] < full.sizes["t"]
    resumed = linvae.simulate(RESUME, resume=ckpt, threads=1, **run)
    xr.testing.assert_identical(full.drop_attrs(), resumed.drop_attrs())
    assert ("train_loss" in resumed) == training_loss
    # another run's checkpoint is refused, saying what differs
    other_order = "cycle" if order == "shuffle" else "shuffle"
    for change, what in (({"dataset_size": 38}, "dataset_size"),
                         ({"order": other_order}, "order"),
                         ({"dataset_seed": 3}, "dataset_seed")):
        with pytest.raises(ValueError, match=rf"belongs to another run.*{what}"):
            linvae.simulate(RESUME, resume=ckpt, **{**run, **change})
    one_pass = {k: v for k, v in run.items()
                if k not in ("dataset_size", "order", "training_loss")}
    with pytest.raises(ValueError, match=r"belongs to another run.*dataset_size"):
        linvae.simulate(RESUME, resume=ckpt, **one_pass)
