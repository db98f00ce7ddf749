"""The compiled engine against the NumPy reference, step by step, and its initial states."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import linvae
from linvae.dataset import parse_state
from linvae.reference import ReferenceSGD
from linvae.simulation import empty_records

EngineFactory = Callable[..., Any]


CASES = [
    linvae.Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, lam=0.0, tau=0.5),
    linvae.Params(M=2, M_star=1, rho=1.5, eta=0.7, beta=0.9, lam=0.1, tau=0.8),
    linvae.Params(M=2, M_star=2, rho=[2.0, 1.0], eta=1.0, beta=0.3, lam=0.05, tau=0.5),
    linvae.Params(M=3, M_star=2, rho=[3.0, 0.5], eta=0.4, beta=1.2, lam=0.2, tau=1.0),
    linvae.Params(M=5, M_star=3, rho=[1.0, 2.0, 3.0], eta=1.0, beta=0.1, lam=0.0, tau=0.3),
    # per-block rates (docs/model.md#rates)
    linvae.Params(M=2, M_star=2, rho=[2.0, 1.0], eta=1.0, beta=0.3, lam=0.05, tau=0.5,
                  tau_V=1.5, tau_D=0.1),
]


@pytest.mark.parametrize("p", CASES, ids=lambda p: f"M{p.M}Ms{p.M_star}"
                         + ("-rates" if p.tau_V is not None else ""))
def test_steps_equal_numpy_reference(p: linvae.Params, engine_factory: EngineFactory) -> None:
    # Same weights, same data vectors: the engine's update is docs/model.md#sgd exactly.
    N = 3000
    e = engine_factory(p, N, seed=7)
    e.init_random(1)
    e.flush()
    w = e.weights(0)
    ref = ReferenceSGD(p, N, W=w["W"], V=w["V"], D=w["D"], W_star=w["W_star"])
    rng = np.random.default_rng(11)
    for beta in (p.beta_inf, 0.0, 2.0):
        x = ref.sample_x() if beta else rng.standard_normal(N) * 3.0
        x = x.copy()
        e.step_given(0, x, beta)
        ref.step(x, beta)
        w = e.weights(0)
        for k in ("W", "V"):
            np.testing.assert_allclose(w[k], getattr(ref, k), rtol=0, atol=1e-12, err_msg=k)
        np.testing.assert_allclose(w["D"], ref.D, rtol=0, atol=1e-15)


def test_float32_step_matches_to_single_precision(engine_factory: EngineFactory) -> None:
    p = CASES[2]
    N = 2000
    e = engine_factory(p, N, dtype="float32")
    e.init_random(1)
    e.flush()
    w = e.weights(0)
    ref = ReferenceSGD(p, N, W=w["W"], V=w["V"], D=w["D"], W_star=w["W_star"])
    x = ref.sample_x().copy()
    e.step_given(0, x, 0.5)
    ref.step(x, 0.5)
    w = e.weights(0)
    np.testing.assert_allclose(w["W"], ref.W, atol=5e-6)
    np.testing.assert_allclose(w["V"], ref.V, atol=5e-6)


@pytest.mark.parametrize("p", CASES[1:], ids=lambda p: f"M{p.M}Ms{p.M_star}")
def test_teacher_is_orthonormal(p: linvae.Params, engine_factory: EngineFactory) -> None:
    N = 2500
    e = engine_factory(p, N, seed=3, replicas=2)
    e.init_random(2)
    e.flush()
    for r in range(2):
        Ws = e.weights(r)["W_star"]
        np.testing.assert_allclose(Ws.T @ Ws / N, np.eye(p.M_star), atol=1e-13)


def random_state(p: linvae.Params, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A random realisable state: the Gram matrix of random vectors plus an exact I block."""
    K = p.M_star + 2 * p.M
    F = np.linalg.qr(rng.standard_normal((K + 3, K)))[0]
    A = rng.standard_normal((K, K)) * 0.6
    A[: p.M_star] = 0.0
    A[: p.M_star, : p.M_star] = np.eye(p.M_star)
    G = (F @ A.T).T @ (F @ A.T)
    a, b = p.M_star, p.M_star + p.M
    return {"m": G[a:b, :a], "d": G[b:, :a], "Q": G[a:b, a:b], "E": G[b:, b:], "R": G[a:b, b:],
            "D": rng.uniform(0.3, 2.0, p.M)}


@pytest.mark.parametrize("p", CASES, ids=lambda p: f"M{p.M}Ms{p.M_star}")
def test_prescribed_state_is_realised_exactly(p: linvae.Params) -> None:
    rng = np.random.default_rng(5)
    state = random_state(p, rng)
    ds = linvae.simulate(p, N=1500, t_max=0.01, record_every=0.01, seeds=2, init=state,
                         progress=False)
    first = ds.isel(t=0)
    for k, v in state.items():
        np.testing.assert_allclose(first[k].values, np.broadcast_to(v, first[k].shape),
                                   rtol=0, atol=1e-12, err_msg=k)


def test_infeasible_prescription_is_rejected() -> None:
    p = linvae.Params(M=1, M_star=1)
    bad = {"m": [[1.5]], "d": [[0.0]], "Q": [[1.0]], "E": [[1.0]], "R": [[0.0]], "D": [1.0]}
    with pytest.raises(ValueError, match="positive semidefinite"):
        linvae.simulate(p, N=100, t_max=0.1, init=bad, progress=False)
    with pytest.raises(ValueError, match="positive semidefinite"):  # |R| > sqrt(Q E)
        parse_state({**bad, "m": [[0.0]], "R": [[1.2]]}, p)
    with pytest.raises(ValueError, match="D"):
        parse_state({**bad, "m": [[0.0]], "D": [0.0]}, p)
    with pytest.raises(ValueError, match=r"init\['Q'\] must have shape"):
        parse_state({**bad, "Q": np.eye(2)}, p)


def test_engine_rejects_bad_output_arrays(engine_factory: EngineFactory) -> None:
    # the bindings check shapes themselves: a wrong array must never be written out of bounds
    p = CASES[0]
    e = engine_factory(p, 100)
    e.init_random(1)
    ok = empty_records(p, 1, 2)
    with pytest.raises(ValueError, match="shape"):
        e.run(np.full(3, 0.5), np.array([0, 3]), {**ok, "D": np.zeros((1, 1, 1))},
              rec_start=0, threads=1)
    with pytest.raises(ValueError, match="missing D"):
        e.run(np.full(3, 0.5), np.array([0, 3]), {k: v for k, v in ok.items() if k != "D"},
              rec_start=0, threads=1)
    with pytest.raises(ValueError, match="C-contiguous float64"):  # a copy would drop the records
        e.run(np.full(3, 0.5), np.array([0, 3]), {**ok, "Q": ok["Q"].astype(np.float32)},
              rec_start=0, threads=1)
    with pytest.raises(ValueError, match="records"):
        e.run(np.full(3, 0.5), np.array([2, 1]), ok, rec_start=0, threads=1)
    with pytest.raises(ValueError, match="fit"):
        e.run(np.full(3, 0.5), np.array([0, 3]), ok, rec_start=1, threads=1)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("p", [*CASES, linvae.Params(M=4, M_star=1, lam=0.1),
                               linvae.Params(M=8, M_star=2, rho=[2.0, 1.0], tau=0.3)],
                         ids=lambda p: f"M{p.M}Ms{p.M_star}")
def test_fused_run_equals_numpy_reference(p: linvae.Params, dtype: str, engine_factory: EngineFactory) -> None:
    # The engine's own run (fused passes, hot paths): after each single-step run it holds
    # the weights before its pending update and the sample it drew, so the NumPy
    # reference can replay exactly the same samples and must land on the same weights.
    N = 2000
    e = engine_factory(p, N, seed=9, dtype=dtype)
    e.init_random(1)
    st = e.get_state(0)
    ref = ReferenceSGD(p, N, W=st["W"], V=st["V"], D=st["D"], W_star=st["W_star"])
    none = np.array([], dtype=np.int64)
    out = empty_records(p, 1, 1)
    tol = 1e-12 if dtype == "float64" else 2e-5
    for step in range(6):
        beta = 0.3 + 0.1 * step
        e.run(np.array([beta]), none, out, rec_start=0, threads=1)
        st = e.get_state(0)
        if step:  # the weights now include every step before this one
            np.testing.assert_allclose(st["W"], ref.W, rtol=0, atol=tol)
            np.testing.assert_allclose(st["V"], ref.V, rtol=0, atol=tol)
        ref.step(st["x"].astype(np.float64), beta)
        np.testing.assert_allclose(st["D"], ref.D, rtol=0, atol=1e-12 if dtype == "float64" else 1e-6)
        if dtype == "float32":  # keep the reference on the engine's rounded weights
            ref.W[...] = ref.W.astype(np.float32)
            ref.V[...] = ref.V.astype(np.float32)
