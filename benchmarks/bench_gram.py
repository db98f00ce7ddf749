"""Speed of the Gram chain (_core.GramEngine), whose cost per step does not depend on N.

Run with ``python -m pytest benchmarks/bench_gram.py -p no:randomly``; the summary at
the end prints ns per step for (M, M*) = (1, 1), (2, 2), (4, 4), the step / fill ratio
(fill: drawing that step's normals and chi^2 alone), the speed-up per step over the
weight-space engine at N = 1e4, 1e5, 1e6 measured in the same run, and one replica at
N = 1e8 to t = 10 (1e9 steps).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

import linvae
from linvae.simulation import empty_records, new_engine

SIZES = [(1, 1), (2, 2), (4, 4)]
NS = [10_000, 100_000, 1_000_000]
WORK_NS = 2e7  # ~20 ms of work per round


def _engine(method: str, N: int, M: int, Ms: int, replicas: int = 1) -> Any:
    e = new_engine(linvae.Params(M=M, M_star=Ms), N, replicas=replicas, method=method)
    e.init_random(1)
    return e


def _runner(e: Any, M: int, Ms: int, n: int) -> Any:
    beta = np.full(n, 0.5)
    none = np.array([], dtype=np.int64)
    out = empty_records(linvae.Params(M=M, M_star=Ms), 1, 1)
    return lambda: e.run(beta, none, out, rec_start=0, threads=1)


def _info(benchmark: Any, kind: str, N: int, M: int, Ms: int, steps: int) -> None:
    # elements = steps: benchmarks/conftest.py then reports ns per step
    benchmark.extra_info.update(kind=kind, N=N, M=M, M_star=Ms, elements=steps, threads=1)


@pytest.mark.parametrize(("M", "Ms"), SIZES, ids=lambda v: str(v))
def test_gram_step(benchmark: Any, M: int, Ms: int) -> None:
    n = int(WORK_NS / (40 * (Ms + 2 * M) ** 2 / 9))
    benchmark(_runner(_engine("gram", 1_000_000, M, Ms), M, Ms, n))
    _info(benchmark, "gram", 1_000_000, M, Ms, n)


@pytest.mark.parametrize(("M", "Ms"), SIZES, ids=lambda v: str(v))
def test_gram_fill(benchmark: Any, M: int, Ms: int) -> None:
    # the generator floor: the c, xi and chi^2 of n steps, nothing else
    n = int(WORK_NS / 15 / (Ms + 2 * M) * 3)
    e = _engine("gram", 1_000_000, M, Ms)
    benchmark(e.fill_floor, n)
    _info(benchmark, "gram_fill", 1_000_000, M, Ms, n)


@pytest.mark.parametrize("N", NS)
def test_gram_step_at_N(benchmark: Any, N: int) -> None:
    n = int(WORK_NS / 40)
    benchmark(_runner(_engine("gram", N, 1, 1), 1, 1, n))
    _info(benchmark, "gram_N", N, 1, 1, n)


@pytest.mark.parametrize("N", NS)
def test_weight_step_at_N(benchmark: Any, N: int) -> None:
    n = max(2, int(WORK_NS / N))
    benchmark(_runner(_engine("weights", N, 1, 1), 1, 1, n))
    _info(benchmark, "weights_N", N, 1, 1, n)


def test_gram_one_replica_N1e8_to_t10(benchmark: Any) -> None:
    # 1e9 steps. Timed at t = 1 first; if t = 10 would take over a minute, that is
    # extrapolated (and flagged in extra_info) rather than run.
    N, M, Ms = 10**8, 1, 1
    e = _engine("gram", N, M, Ms)
    if benchmark.disabled:  # the CI's untimed pass: a token run
        benchmark(_runner(e, M, Ms, 1000))
        _info(benchmark, "gram_long", N, M, Ms, 1000)
        return
    t0 = time.perf_counter()
    _runner(e, M, Ms, N)()
    t1 = time.perf_counter() - t0
    extrapolated = 10 * t1 > 60.0
    steps = N if extrapolated else 10 * N
    e = _engine("gram", N, M, Ms)
    benchmark.pedantic(_runner(e, M, Ms, steps), rounds=1, iterations=1)
    _info(benchmark, "gram_long", N, M, Ms, steps)
    benchmark.extra_info.update(t=steps / N, seconds_t1=t1, extrapolated=extrapolated,
                                seconds_t10=(10 * t1 if extrapolated else None))
    assert (e.status()[0] == 0).all()


class _Summary:
    """Prints the Gram chain's ratios at the end of the session (medians of this run)."""

    def pytest_terminal_summary(self, terminalreporter: Any, config: pytest.Config) -> None:
        session = getattr(config, "_benchmarksession", None)
        med: dict[tuple[str, int, int, int], float] = {}
        long_run: dict[str, Any] = {}
        for bench in getattr(session, "benchmarks", []) or []:
            info = bench.extra_info
            if str(info.get("kind", "")).startswith(("gram", "weights_N")) and bench.stats:
                key = (info["kind"], info["N"], info["M"], info["M_star"])
                med[key] = bench.stats.median / info["elements"] * 1e9
                if info["kind"] == "gram_long":
                    long_run = {**info, "median": bench.stats.median}
        if not med:
            return
        w = terminalreporter.write_line
        w("")
        w("Gram chain: medians of this run, ns per step (one replica, one thread)")
        w(f"{'M':>2} {'M*':>2} {'step':>8} {'fill':>8} {'step/fill':>9}")
        for M, Ms in SIZES:
            step, fill = med.get(("gram", 10**6, M, Ms)), med.get(("gram_fill", 10**6, M, Ms))
            if step:
                ratio = f"{step / fill:9.2f}" if fill else ""
                w(f"{M:>2} {Ms:>2} {step:8.1f} {fill or float('nan'):8.1f} {ratio}")
        for N in NS:
            g, wt = med.get(("gram_N", N, 1, 1)), med.get(("weights_N", N, 1, 1))
            if g and wt:
                w(f"N = {N:.0e}: weights {wt / 1e3:9.1f} us/step, gram {g:6.1f} ns/step, "
                  f"speed-up {wt / g:9.0f}x")
        if long_run.get("t"):
            sec = long_run["median"]
            how = (f"t = 1 took {sec:.1f} s, t = 10 extrapolated: {10 * sec:.0f} s"
                   if long_run.get("extrapolated") else f"t = 10 took {sec:.1f} s")
            w(f"N = 1e8, one replica: {how} ({sec / (long_run['t'] * 1e8) * 1e9:.1f} ns/step)")


@pytest.fixture(scope="module", autouse=True)
def _summary(request: pytest.FixtureRequest) -> None:
    pm = request.config.pluginmanager
    if not pm.has_plugin("linvae-gram-summary"):
        pm.register(_Summary(), "linvae-gram-summary")
