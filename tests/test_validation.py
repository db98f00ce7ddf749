"""Bad input at every public entry point: each error names the parameter, the value and the rule.

One table row per (entry point, parameter, rule). The documented exceptions are TypeError
(wrong type), ValueError (wrong value, shape or state) and MemoryError (a run that cannot
fit in memory, raised before allocating). docs/validation.md is the same table in prose.

A check an entry point does not make yet can be pinned as a row with
``pytest.mark.xfail(strict=True)``; once the check exists the row passes, strict mode
fails the run, and the marker must go.
"""

from __future__ import annotations

import importlib
import math
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import linvae
from linvae import Params, schedules
from linvae._validate import check_array, check_int, check_real

P = Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, lam=0.0, tau=0.5)
P22 = Params(M=2, M_star=2, rho=[2.0, 1.0])
START = {"m": [[0.5]], "d": [[0.5]], "Q": [[1.0]], "E": [[1.0]], "R": [[0.3]], "D": [1.0]}
NAN, INF = float("nan"), float("inf")


def case(id_: str, fn: Callable[[], Any], exc: type[BaseException] | tuple[type[BaseException], ...],
         match: str, *marks: Any) -> Any:
    return pytest.param(fn, exc, match, id=id_, marks=marks)


def sim(p: Params = P, **kw: Any) -> Any:
    kw = {"N": 50, "t_max": 0.2, "record_every": 0.1, "progress": False, **kw}
    return linvae.simulate(p, **kw)


def ode(p: Params = P, **kw: Any) -> Any:
    kw = {"t_max": 1.0, "record_every": 0.5, "init": START, **kw}
    return linvae.integrate(p, **kw)


def cmp(p: Params = P, **kw: Any) -> Any:
    kw = {"Ns": [20, 40], "t_max": 0.2, "record_every": 0.1, "replicas": 2, "init": START,
          **kw}
    return linvae.compare(p, **kw)


# ---------------------------------------------------------------------------------------
# linvae.Params
# ---------------------------------------------------------------------------------------
PARAMS_CASES = [
    case("M-zero", lambda: Params(M=0), ValueError, r"M must be >= 1, got 0"),
    case("M-negative", lambda: Params(M=-3), ValueError, r"M must be >= 1, got -3"),
    case("M-float", lambda: Params(M=1.5), TypeError, r"M must be an integer, got float 1\.5"),
    case("M-str", lambda: Params(M="2"), TypeError, r"M must be an integer, got str '2'"),
    case("M-bool", lambda: Params(M=True), TypeError, r"M must be an integer, got bool True"),
    case("M-None", lambda: Params(M=None), TypeError, r"M must be an integer, got NoneType"),
    case("M_star-zero", lambda: Params(M_star=0), ValueError, r"M_star must be >= 1, got 0"),
    case("M_star-nan", lambda: Params(M_star=NAN), TypeError, r"M_star must be an integer"),
    case("rho-negative", lambda: Params(rho=-1.0), ValueError, r"rho must be >= 0, got -1\.0"),
    case("rho-nan", lambda: Params(rho=NAN), ValueError, r"rho must be finite, got nan"),
    case("rho-inf", lambda: Params(rho=INF), ValueError, r"rho must be finite, got inf"),
    case("rho-str", lambda: Params(rho="1"), TypeError, r"rho must be a real number, got str"),
    case("rho-wrong-length", lambda: Params(M_star=2, rho=[1.0, 2.0, 3.0]), ValueError,
         r"rho must have shape \(2,\), got shape \(3,\)"),
    case("rho-wrong-length-1", lambda: Params(rho=[1.0, 2.0]), ValueError,
         r"rho must have shape \(1,\), got shape \(2,\)"),
    case("rho-2d", lambda: Params(M_star=2, rho=[[1.0, 2.0]]), ValueError,
         r"rho must have shape \(2,\), got shape \(1, 2\)"),
    case("rho-vector-nan", lambda: Params(M_star=2, rho=[1.0, NAN]), ValueError,
         r"rho must be finite, got \[1\.0, nan\]"),
    case("rho-vector-negative", lambda: Params(M_star=2, rho=[1.0, -2.0]), ValueError,
         r"rho must be >= 0 elementwise, got \[1\.0, -2\.0\]"),
    case("rho-vector-objects", lambda: Params(M_star=2, rho=[1.0, "x"]), (TypeError, ValueError),
         r"rho must be an array of real numbers"),
    case("eta-zero", lambda: Params(eta=0.0), ValueError, r"eta must be > 0, got 0\.0"),
    case("eta-negative", lambda: Params(eta=-1.0), ValueError, r"eta must be > 0, got -1\.0"),
    case("eta-inf", lambda: Params(eta=INF), ValueError, r"eta must be finite, got inf"),
    case("eta-complex", lambda: Params(eta=1j), TypeError, r"eta must be a real number, got complex"),
    case("beta-negative", lambda: Params(beta=-0.5), ValueError, r"beta must be >= 0, got -0\.5"),
    case("beta-nan", lambda: Params(beta=NAN), ValueError, r"beta must be finite, got nan"),
    case("beta-str", lambda: Params(beta="0.5"), TypeError,
         r"beta must be a non-negative number or a linvae\.schedules\.Schedule, got str"),
    case("beta-dict", lambda: Params(beta={"kind": "tanh"}), TypeError,
         r"beta must be a non-negative number .*got dict"),
    case("lam-negative", lambda: Params(lam=-0.1), ValueError, r"lam must be >= 0, got -0\.1"),
    case("lam-inf", lambda: Params(lam=INF), ValueError, r"lam must be finite, got inf"),
    case("tau-zero", lambda: Params(tau=0.0), ValueError, r"tau must be > 0, got 0\.0"),
    case("tau-negative", lambda: Params(tau=-1e-3), ValueError, r"tau must be > 0, got -0\.001"),
    case("tau-nan", lambda: Params(tau=NAN), ValueError, r"tau must be finite, got nan"),
    case("tau-None", lambda: Params(tau=None), TypeError, r"tau must be a real number, got NoneType"),
    case("replace-revalidates", lambda: P.replace(tau=-1.0), ValueError, r"tau must be > 0"),
]


@pytest.mark.parametrize(("fn", "exc", "match"), PARAMS_CASES)
def test_params_rejects(fn: Callable[[], Any], exc: type[BaseException], match: str) -> None:
    with pytest.raises(exc, match=match):
        fn()


# ---------------------------------------------------------------------------------------
# schedules
# ---------------------------------------------------------------------------------------
SCHEDULE_CASES = [
    case("Constant-negative", lambda: schedules.Constant(-1.0), ValueError,
         r"beta must be >= 0, got -1\.0"),
    case("Constant-str", lambda: schedules.Constant("1"), TypeError,
         r"beta must be a real number, got str"),
    case("Tanh-beta_inf-nan", lambda: schedules.Tanh(NAN, 1.0), ValueError,
         r"beta_inf must be finite, got nan"),
    case("Tanh-gamma-zero", lambda: schedules.Tanh(1.0, 0.0), ValueError,
         r"gamma must be > 0, got 0\.0"),
    case("Linear-t_warmup-zero", lambda: schedules.Linear(1.0, 0.0), ValueError,
         r"t_warmup must be > 0, got 0\.0"),
    case("Linear-beta0-negative", lambda: schedules.Linear(1.0, 1.0, -1.0), ValueError,
         r"beta0 must be >= 0, got -1\.0"),
    case("Sigmoid-gamma-inf", lambda: schedules.Sigmoid(1.0, INF, 1.0), ValueError,
         r"gamma must be finite, got inf"),
    case("Sigmoid-t_mid-negative", lambda: schedules.Sigmoid(1.0, 1.0, -1.0), ValueError,
         r"t_mid must be >= 0, got -1\.0"),
    case("Cyclical-period-zero", lambda: schedules.Cyclical(1.0, 0.0), ValueError,
         r"period must be > 0, got 0\.0"),
    case("Cyclical-ratio-zero", lambda: schedules.Cyclical(1.0, 1.0, 0.0), ValueError,
         r"ratio must be > 0, got 0\.0"),
    case("Cyclical-ratio-above-1", lambda: schedules.Cyclical(1.0, 1.0, 2.0), ValueError,
         r"ratio must be <= 1, got 2\.0"),
    case("Cyclical-n_cycles-zero", lambda: schedules.Cyclical(1.0, 1.0, 0.5, 0), ValueError,
         r"n_cycles must be >= 1, got 0"),
    case("Cyclical-n_cycles-float", lambda: schedules.Cyclical(1.0, 1.0, 0.5, 1.5), TypeError,
         r"n_cycles must be an integer, got float 1\.5"),
    case("from_dict-unknown-kind", lambda: schedules.from_dict({"kind": "cosine"}), ValueError,
         r"schedule kind must be one of .*got 'cosine'"),
    case("from_dict-unknown-field",
         lambda: schedules.from_dict({"kind": "tanh", "beta_inf": 1, "gamma": 1, "zz": 1}),
         ValueError, r"unknown field\(s\) \['zz'\] for schedule kind 'tanh'"),
    case("from_dict-missing-field", lambda: schedules.from_dict({"kind": "tanh", "beta_inf": 1}),
         TypeError, r"gamma"),
    case("as_schedule-list", lambda: schedules.as_schedule([0.5]), TypeError,
         r"beta must be a non-negative number or a linvae\.schedules\.Schedule, got list"),
]


@pytest.mark.parametrize(("fn", "exc", "match"), SCHEDULE_CASES)
def test_schedules_reject(fn: Callable[[], Any], exc: type[BaseException], match: str) -> None:
    with pytest.raises(exc, match=match):
        fn()


# ---------------------------------------------------------------------------------------
# linvae.simulate
# ---------------------------------------------------------------------------------------
SIMULATE_CASES = [
    case("p-dict", lambda: linvae.simulate({"M": 1}, N=10, t_max=1.0), TypeError,
         r"p must be a linvae\.Params, got dict"),
    case("N-zero", lambda: sim(N=0), ValueError, r"N must be >= 1, got 0"),
    case("N-negative", lambda: sim(N=-5), ValueError, r"N must be >= 1, got -5"),
    case("N-float", lambda: sim(N=10.5), TypeError, r"N must be an integer, got float 10\.5"),
    case("N-str", lambda: sim(N="10"), TypeError, r"N must be an integer, got str '10'"),
    case("N-nan", lambda: sim(N=NAN), TypeError, r"N must be an integer, got float nan"),
    case("t_max-zero", lambda: sim(t_max=0.0), ValueError, r"t_max must be > 0, got 0\.0"),
    case("t_max-negative", lambda: sim(t_max=-1.0), ValueError, r"t_max must be > 0, got -1\.0"),
    case("t_max-nan", lambda: sim(t_max=NAN), ValueError, r"t_max must be finite, got nan"),
    case("t_max-inf", lambda: sim(t_max=INF), ValueError, r"t_max must be finite, got inf"),
    case("t_max-str", lambda: sim(t_max="1"), TypeError, r"t_max must be a real number, got str"),
    case("record_every-zero", lambda: sim(record_every=0.0), ValueError,
         r"record_every must be > 0, got 0\.0"),
    case("record_every-negative", lambda: sim(record_every=-0.1), ValueError,
         r"record_every must be > 0, got -0\.1"),
    case("record_every-above-t_max", lambda: sim(record_every=0.5), ValueError,
         r"record_every must be <= 0\.2, got 0\.5"),
    case("record_every-nan", lambda: sim(record_every=NAN), ValueError,
         r"record_every must be finite, got nan"),
    case("times-nan", lambda: sim(times=[0.0, NAN]), ValueError, r"times must be .*finite"),
    case("times-beyond-t_max", lambda: sim(times=[0.0, 5.0]), ValueError,
         r"times must be .*\[0, t_max=0\.2\]"),
    case("times-negative", lambda: sim(times=[-0.1]), ValueError, r"times must be"),
    case("times-empty", lambda: sim(times=[]), ValueError, r"times must be .*non-empty"),
    case("seeds-zero", lambda: sim(seeds=0), ValueError, r"seeds must be >= 1, got 0"),
    case("seeds-float", lambda: sim(seeds=1.5), TypeError, r"seeds must be an integer"),
    case("seed-negative", lambda: sim(seed=-1), ValueError, r"seed must be >= 0, got -1"),
    case("seed-too-large", lambda: sim(seed=2**64), ValueError,
         r"seed must be <= 9223372036854775807, got 18446744073709551616"),
    case("threads-zero", lambda: sim(threads=0), ValueError, r"threads must be >= 1, got 0"),
    case("dtype-float16", lambda: sim(dtype="float16"), ValueError,
         r"dtype must be 'float64' or 'float32', got 'float16'"),
    case("blowup-zero", lambda: sim(blowup=0.0), ValueError, r"blowup must be > 0, got 0\.0"),
    case("blowup-nan", lambda: sim(blowup=NAN), ValueError, r"blowup must be finite"),
    case("checkpoint_every-negative", lambda: sim(checkpoint_every=-1.0), ValueError,
         r"checkpoint_every must be >= 0, got -1\.0"),
    case("M-above-engine-limit", lambda: sim(Params(M=1000)), ValueError,
         r"M and M_star must be <= \d+ for the engine, got M=1000"),
    case("init-unknown-string", lambda: sim(init="zeros"), ValueError,
         r"init must be 'random' or a state mapping, got 'zeros'"),
    case("init-None", lambda: sim(init=None), (TypeError, ValueError), r"init"),
    case("init-missing-key", lambda: sim(init={k: v for k, v in START.items() if k != "R"}),
         ValueError, r"init is missing the order parameter 'R'"),
    case("init-wrong-shape", lambda: sim(init={**START, "Q": [[1.0, 0.0]]}), ValueError,
         r"init\['Q'\] must have shape \(1, 1\), got shape \(1, 2\)"),
    case("init-wrong-shape-for-M", lambda: sim(P22, init=START), ValueError,
         r"init\['m'\] must have shape \(2, 2\), got shape \(1, 1\)"),
    case("init-nan", lambda: sim(init={**START, "Q": [[NAN]]}), ValueError,
         r"init\['Q'\] must be finite, got \[\[nan\]\]"),
    case("init-inf", lambda: sim(init={**START, "m": [[INF]]}), ValueError,
         r"init\['m'\] must be finite"),
    case("init-D-zero", lambda: sim(init={**START, "D": [0.0]}), ValueError,
         r"init\['D'\] must be > 0 elementwise, got \[0\.0\]"),
    case("init-not-psd", lambda: sim(init={**START, "m": [[2.0]]}), ValueError,
         r"init is not a realisable state: the Gram matrix .* positive semidefinite, but "
         r"its smallest eigenvalue is -"),
    case("init-Q-asymmetric",
         lambda: sim(Params(M=2), N=20, init={"m": np.zeros((2, 1)), "d": np.zeros((2, 1)),
                                              "Q": [[1.0, 0.5], [0.0, 1.0]], "E": np.eye(2),
                                              "R": np.zeros((2, 2)), "D": [1.0, 1.0]}),
         ValueError, r"init\['Q'\] must be symmetric"),
    case("N-below-M_star-random", lambda: sim(Params(M_star=3, rho=1.0), N=2), ValueError,
         r"N must be >= M_star=3 for an orthonormal teacher, got 2"),
    case("N-below-prescribed-rank", lambda: sim(N=2, init=START), ValueError,
         r"N must be >= M_star \+ 2 M = 3 to realise a prescribed init, got 2"),
    case("N-absurd", lambda: sim(N=10**12, seeds=4), MemoryError,
         r"N=1000000000000 with seeds=4 needs about [\d.]+ GiB .* available"),
    case("seeds-absurd", lambda: sim(N=10, seeds=10**9), MemoryError,
         r"seeds=1000000000 needs about"),
    case("steps-overflow", lambda: sim(N=10**6, t_max=1e15, record_every=1e14),
         (ValueError, MemoryError), r"t_max"),
    case("records-absurd", lambda: sim(N=10, t_max=1e6, record_every=1e-6), MemoryError,
         r"record_every"),
]


@pytest.mark.parametrize(("fn", "exc", "match"), SIMULATE_CASES)
def test_simulate_rejects(fn: Callable[[], Any], exc: type[BaseException], match: str) -> None:
    with pytest.raises(exc, match=match):
        fn()


def test_memory_error_is_raised_before_allocating(monkeypatch: pytest.MonkeyPatch) -> None:
    # If simulate got as far as building the engine, it allocated; it must not.
    simmod = sys.modules["linvae.simulation"]  # the module of linvae.simulate

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the engine was constructed before the memory check")

    monkeypatch.setattr(simmod._core, "Engine64", boom)
    monkeypatch.setattr(simmod._core, "Engine32", boom)
    monkeypatch.setattr(linvae.methods, "available_memory", lambda: 1e6)  # 1 MB
    with pytest.raises(MemoryError, match=r"N=100000 with seeds=2 needs about .* GiB"):
        sim(N=100_000, seeds=2)


# ---------------------------------------------------------------------------------------
# linvae.integrate
# ---------------------------------------------------------------------------------------
INTEGRATE_CASES = [
    case("p-dict", lambda: linvae.integrate({}, t_max=1.0, init=START), TypeError,
         r"p must be a linvae\.Params, got dict"),
    case("t_max-zero", lambda: ode(t_max=0.0), ValueError, r"t_max must be > 0, got 0\.0"),
    case("t_max-nan", lambda: ode(t_max=NAN), ValueError, r"t_max must be finite, got nan"),
    case("t_max-inf", lambda: ode(t_max=INF), ValueError, r"t_max must be finite, got inf"),
    case("t_max-str", lambda: ode(t_max="1"), TypeError, r"t_max must be a real number"),
    case("record_every-zero", lambda: ode(record_every=0.0), ValueError,
         r"record_every must be > 0, got 0\.0"),
    case("record_every-above-t_max", lambda: ode(record_every=2.0), ValueError,
         r"record_every must be <= t_max=1, got 2\.0"),
    case("record_every-inf", lambda: ode(record_every=INF), ValueError,
         r"record_every must be finite"),
    case("method-unknown", lambda: ode(method="Euler"), ValueError,
         r"method must be one of .*got 'Euler'"),
    case("rtol-zero", lambda: ode(rtol=0.0), ValueError, r"rtol must be > 0, got 0\.0"),
    case("atol-negative", lambda: ode(atol=-1.0), ValueError, r"atol must be > 0, got -1\.0"),
    case("psd_tol-nan", lambda: ode(psd_tol=NAN), ValueError, r"psd_tol must be finite"),
    case("on_unphysical-unknown", lambda: ode(on_unphysical="ignore"), ValueError,
         r"on_unphysical must be 'raise' or 'truncate', got 'ignore'"),
    case("t_eval-decreasing", lambda: ode(t_eval=[0.5, 0.2]), ValueError,
         r"t_eval must be strictly increasing within \[0, t_max=1\]"),
    case("t_eval-empty", lambda: ode(t_eval=[]), ValueError, r"t_eval must be a non-empty"),
    case("init-random-string", lambda: ode(init="random"), TypeError,
         r"init must be a state .*got 'random'"),
    case("init-list", lambda: ode(init=[1.0, 2.0]), (TypeError, ValueError), r"init"),
    case("init-missing-key", lambda: ode(init={k: v for k, v in START.items() if k != "D"}),
         ValueError, r"init is missing the order parameter 'D'"),
    case("init-wrong-shape", lambda: ode(init={**START, "Q": [[1.0, 0.0]]}), ValueError,
         r"init\['Q'\] must have shape \(1, 1\), got shape \(1, 2\)"),
    case("init-nan", lambda: ode(init={**START, "R": [[NAN]]}), ValueError,
         r"init\['R'\] must be finite"),
    case("init-D-negative", lambda: ode(init={**START, "D": [-1.0]}), ValueError,
         r"init\['D'\] must be > 0 elementwise, got \[-1\.0\]"),
    case("init-not-psd", lambda: ode(init={**START, "Q": [[0.1]]}), ValueError,
         r"init is not a realisable state: the Gram matrix"),
    case("records-absurd", lambda: ode(t_max=1e9, record_every=1e-6), (ValueError, MemoryError),
         r"record_every"),
]


@pytest.mark.parametrize(("fn", "exc", "match"), INTEGRATE_CASES)
def test_integrate_rejects(fn: Callable[[], Any], exc: type[BaseException], match: str) -> None:
    with pytest.raises(exc, match=match):
        fn()


# ---------------------------------------------------------------------------------------
# linvae.compare
# ---------------------------------------------------------------------------------------
COMPARE_CASES = [
    case("p-None", lambda: linvae.compare(None, Ns=[10, 20], init=START), TypeError,
         r"p must be a linvae\.Params, got NoneType"),
    case("Ns-one", lambda: cmp(Ns=[100]), ValueError,
         r"Ns must hold at least two distinct N to fit an exponent, got \[100\]"),
    case("Ns-repeated", lambda: cmp(Ns=[100, 100]), ValueError, r"Ns must hold at least two"),
    case("Ns-zero", lambda: cmp(Ns=[0, 100]), ValueError, r"Ns\[0\] must be >= 1, got 0"),
    case("Ns-float", lambda: cmp(Ns=[100, 10.5]), TypeError,
         r"Ns\[1\] must be an integer, got float 10\.5"),
    case("Ns-str", lambda: cmp(Ns="100"), TypeError,
         r"Ns must be a sequence of integers, got str"),
    case("t_max-negative", lambda: cmp(t_max=-1.0), ValueError, r"t_max must be > 0, got -1\.0"),
    case("t_max-nan", lambda: cmp(t_max=NAN), ValueError, r"t_max must be finite"),
    case("record_every-above-t_max", lambda: cmp(record_every=1.0), ValueError,
         r"record_every must be <= t_max=0\.2, got 1\.0"),
    case("replicas-zero", lambda: cmp(replicas=0), ValueError, r"replicas must be >= 1, got 0"),
    case("seed-negative", lambda: cmp(seed=-1), ValueError, r"seed must be >= 0, got -1"),
    case("variables-unknown", lambda: cmp(variables=["zz"]), ValueError,
         r"variables must be a non-empty subset of .*got \['zz'\]"),
    case("init-random", lambda: cmp(init="random"), TypeError,
         r"init must be a prescribed state .*got 'random'"),
    case("init-not-psd", lambda: cmp(init={**START, "m": [[2.0]]}), ValueError,
         r"init is not a realisable state"),
    case("init-wrong-shape", lambda: cmp(init={**START, "D": [1.0, 1.0]}), ValueError,
         r"init\['D'\] must have shape \(1,\), got shape \(2,\)"),
    case("Ns-absurd", lambda: cmp(Ns=[10, 10**13]), MemoryError,
         r"N=10000000000000 with seeds=2 needs about"),
]


@pytest.mark.parametrize(("fn", "exc", "match"), COMPARE_CASES)
def test_compare_rejects(fn: Callable[[], Any], exc: type[BaseException], match: str) -> None:
    with pytest.raises(exc, match=match):
        fn()


# ---------------------------------------------------------------------------------------
# linvae.fixed_points, linvae.collapse_threshold (linvae.stability)
# ---------------------------------------------------------------------------------------
def _stability_cases() -> list[Any]:
    if not hasattr(linvae, "fixed_points") or not hasattr(linvae, "collapse_threshold"):
        return [pytest.param(None, None, None, marks=pytest.mark.skip(
            reason="linvae.fixed_points / collapse_threshold not available"))]
    fp, ct = linvae.fixed_points, linvae.collapse_threshold
    quick = {"default_starts": False}
    return [
        case("fixed_points-p-None", lambda: fp(None), TypeError,
             r"p must be a linvae\.Params, got NoneType"),
        case("fixed_points-beta-zero", lambda: fp(P.replace(beta=0.0)), ValueError,
             r"beta \(its limit beta_inf\) must be > 0 for a fixed-point analysis, got 0"),
        case("fixed_points-n_random-negative", lambda: fp(P, n_random=-1), ValueError,
             r"n_random must be >= 0, got -1"),
        case("fixed_points-eig_tol-zero", lambda: fp(P, eig_tol=0.0), ValueError,
             r"eig_tol must be > 0, got 0\.0"),
        case("fixed_points-starts-wrong-length", lambda: fp(P, [[1.0, 2.0]], **quick),
             ValueError, r"flat state must have last axis of length 6 .*got shape \(2,\)"),
        case("fixed_points-starts-wrong-shape-dict",
             lambda: fp(P, [{**START, "m": [[1.0, 2.0]]}], **quick), ValueError,
             r"starts\[0\]\['m'\] must have shape"),
        case("fixed_points-starts-nan", lambda: fp(P, [{**START, "m": [[NAN]]}], **quick),
             ValueError, r"starts\[0\]"),
        case("fixed_points-seed-negative", lambda: fp(P, seed=-1), ValueError,
             r"seed must be >= 0, got -1"),
        case("fixed_points-seed-str", lambda: fp(P, seed="a"), TypeError,
             r"seed must be an integer"),
        case("collapse_threshold-p-str", lambda: ct("p"), TypeError,
             r"p must be a linvae\.Params, got str"),
        case("collapse_threshold-factor-out-of-range", lambda: ct(P, factor=1), ValueError,
             r"factor must be in 0\.\.0 \(M_star=1\), got 1"),
        case("collapse_threshold-factor-negative", lambda: ct(P, factor=-1), ValueError,
             r"factor must be >= 0, got -1"),
        case("collapse_threshold-factor-float", lambda: ct(P, factor=0.5), TypeError,
             r"factor must be an integer, got float 0\.5"),
        case("collapse_threshold-beta_max-zero", lambda: ct(P, beta_max=0.0), ValueError,
             r"beta_max must be > 0, got 0\.0"),
        case("collapse_threshold-n_scan-one", lambda: ct(P, n_scan=1), ValueError,
             r"n_scan must be >= 2, got 1"),
        case("collapse_threshold-xtol-nan", lambda: ct(P, xtol=NAN), ValueError,
             r"xtol must be finite, got nan"),
    ]


@pytest.mark.parametrize(("fn", "exc", "match"), _stability_cases())
def test_stability_rejects(fn: Callable[[], Any], exc: type[BaseException], match: str) -> None:
    with pytest.raises(exc, match=match):
        fn()


# ---------------------------------------------------------------------------------------
# linvae.sweep / linvae.Grid (sweep.py)
# ---------------------------------------------------------------------------------------
def _sweep_module() -> Any:
    # the module, not linvae.sweep (the function of the same name)
    return importlib.import_module("linvae.sweeps")


def _sweep_cases() -> list[Any]:
    mod = _sweep_module()
    Grid, sweep = mod.Grid, mod.sweep
    return [
        case("Grid-unknown-axis", lambda: Grid(colour=[1, 2]), ValueError,
             r"unknown grid axis 'colour'"),
        case("Grid-axis-not-sequence", lambda: Grid(beta=0.5), TypeError,
             r"grid axis 'beta' must be a sequence of values"),
        case("Grid-axis-empty", lambda: Grid(beta=[]), ValueError, r"grid axis 'beta' is empty"),
        case("Grid-axis-repeated", lambda: Grid(beta=[0.5, 0.5]), ValueError,
             r"grid axis 'beta' has a repeated value 0\.5"),
        case("Grid-replicas-zero", lambda: Grid(beta=[0.5], replicas=0), ValueError,
             r"replicas must be >= 1, got 0"),
        case("Grid.zip-unequal", lambda: Grid.zip(beta=[0.5, 1.0], rho=[1.0]), ValueError,
             r"zipped axes must have equal lengths"),
        case("sweep-p-dict", lambda: sweep({}, Grid(beta=[0.5]), out="/nonexistent"), TypeError,
             r"p must be a linvae\.Params, got dict"),
        case("sweep-grid-dict", lambda: sweep(P, {"beta": [0.5]}, out="/nonexistent"),
             TypeError, r"grid must be a linvae\.Grid, got dict"),
        case("sweep-unknown-task", lambda: sweep(P, Grid(beta=[0.5]), "nope", out="/nonexistent"),
             ValueError, r"unknown task 'nope'"),
        case("sweep-threads-zero",
             lambda: sweep(P, Grid(beta=[0.5]), out="/nonexistent", threads_per_task=0),
             ValueError, r"threads_per_task must be >= 1, got 0"),
    ]


@pytest.mark.parametrize(("fn", "exc", "match"), _sweep_cases())
def test_sweep_rejects(fn: Callable[[], Any], exc: type[BaseException], match: str) -> None:
    with pytest.raises(exc, match=match):
        fn()


# ---------------------------------------------------------------------------------------
# the CLI: a bad value is one line on stderr and exit code 2
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "match"), [
    # the rule of the Python API, with the flag and the value as typed
    (["--N", "0"], "error: --N 0: must be >= 1"),
    (["--t-max", "nan"], "error: --t-max nan: must be finite"),
    (["--t-max", "1", "--record-every", "2"], "error: --record-every 2: must be <= --t-max (1)"),
    (["--tau", "0"], "error: --tau 0: must be > 0"),
    (["--M", "0"], "error: --M 0: must be >= 1"),
    (["--M-star", "2", "--rho", "1", "2", "3"],
     "error: --rho 1 2 3: needs one value, or one per factor (--M-star 2)"),
    (["--rho", "-1"], "error: --rho -1: must be >= 0"),
    (["--lam", "-1"], "error: --lam -1: must be >= 0"),
    (["--beta", "inf"], "error: --beta inf: must be finite"),
    (["--N", "1000000000000"], "GiB"),
])
def test_cli_bad_values_are_one_line(args: list[str], match: str, tmp_path: Any) -> None:
    out = subprocess.run([sys.executable, "-m", "linvae.cli", "--quiet", "simulate",
                          "--t-max", "0.1", "--N", "20", *args, "--out",
                          str(tmp_path / "x.nc")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert match in out.stderr
    assert out.stderr.strip().count("\n") == 0, out.stderr
    assert "Traceback" not in out.stderr


# ---------------------------------------------------------------------------------------
# the helpers themselves
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("fn", "exc", "match"), [
    case("real-bool", lambda: check_real("x", True), TypeError, r"x must be a real number"),
    case("real-gt", lambda: check_real("x", 0, gt=0), ValueError, r"x must be > 0, got 0\.0"),
    case("real-ge", lambda: check_real("x", -1, ge=0), ValueError, r"x must be >= 0, got -1\.0"),
    case("real-lt", lambda: check_real("x", 1, lt=1), ValueError, r"x must be < 1, got 1\.0"),
    case("real-le", lambda: check_real("x", 2, le=1), ValueError, r"x must be <= 1, got 2\.0"),
    case("real-nan", lambda: check_real("x", np.float32("nan")), ValueError, r"x must be finite"),
    case("int-float", lambda: check_int("n", 2.5), TypeError, r"n must be an integer, got float"),
    case("int-le", lambda: check_int("n", 5, le=4), ValueError, r"n must be <= 4, got 5"),
    case("array-shape", lambda: check_array("a", [1, 2], (3,)), ValueError,
         r"a must have shape \(3,\), got shape \(2,\)"),
    case("array-type", lambda: check_array("a", [1, "x"], (2,)), TypeError,
         r"a must be an array of real numbers"),
    case("array-complex", lambda: check_array("a", [1j, 2], (2,)), TypeError,
         r"a must be an array of real numbers"),
    case("array-gt", lambda: check_array("a", [1, 0], (2,), gt=0), ValueError,
         r"a must be > 0 elementwise"),
])
def test_validate_helpers(fn: Callable[[], Any], exc: type[BaseException], match: str) -> None:
    with pytest.raises(exc, match=match):
        fn()


def test_validate_helpers_accept_numpy_scalars() -> None:
    assert check_real("x", np.float32(0.5), gt=0) == 0.5
    assert check_int("n", np.int64(3), ge=1) == 3
    assert check_int("n", 4.0) == 4  # an integral float is an integer
    assert math.isclose(check_array("a", 2.0, (1,))[0], 2.0)
