"""Turn the benchmark medians into the ratios the project tracks, measured in one run.

Every benchmark stores in ``extra_info`` what it measured (``kind``), its N and M, and
how many row updates (``elements`` = steps x N) one round did. The summary divides
medians of the same run, so machine speed and load mostly cancel.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest


def _medians(config: pytest.Config) -> dict[tuple[str, int, int, int], float]:
    session = getattr(config, "_benchmarksession", None)
    out: dict[tuple[str, int, int, int], float] = {}
    for bench in getattr(session, "benchmarks", []) or []:
        info = bench.extra_info
        if "kind" in info and bench.stats:
            key = (info["kind"], info["N"], info.get("M", 0), info.get("threads", 1))
            out[key] = bench.stats.median / info["elements"] * 1e9  # ns per (step x N)
    return out


def _memory_rows(config: pytest.Config) -> list[dict[str, Any]]:
    session = getattr(config, "_benchmarksession", None)
    return [b.extra_info for b in getattr(session, "benchmarks", []) or []
            if b.extra_info.get("memory")]


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def _ode_summary(w: Any, config: pytest.Config) -> None:
    """benchmarks/bench_ode.py: compiled vs pure-Python medians per unit, and their ratio."""
    session = getattr(config, "_benchmarksession", None)
    rows: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for bench in getattr(session, "benchmarks", []) or []:
        info = bench.extra_info
        if "ode" in info and bench.stats:
            rows[(info["ode"], info["case"])][info["impl"]] = bench.stats.median / info["units"]
    if not rows:
        return
    w("")
    w(f"linvae ODE benchmarks: medians per unit (a call; a grid point), python / compiled, "
      f"within this run; CPU: {_cpu()}")
    w(f"{'what':<18} {'case':>8} {'compiled':>12} {'python':>12} {'ratio':>9}")
    for (what, case), r in rows.items():
        c, py = r.get("compiled"), r.get("python")

        def t(x: float | None) -> str:
            return "" if x is None else (f"{x * 1e3:.3f} ms" if x >= 1e-4 else
                                         f"{x * 1e6:.2f} us")

        ratio = f"{py / c:.1f}x" if c and py else ""
        w(f"{what:<18} {case:>8} {t(c):>12} {t(py):>12} {ratio:>9}")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    mem = _memory_rows(config)
    if mem:
        w = terminalreporter.write_line
        w("")
        w("linvae peak memory per replica vs budget (2M + M* + 2) N itemsize")
        w(f"{'N':>9} {'M':>2} {'S':>2} {'dtype':>8} {'added MiB':>10} {'budget MiB':>11} "
          f"{'ratio':>6}")
        for r in mem:
            add, bud = r["added_per_replica"] / 2**20, r["budget_per_replica"] / 2**20
            w(f"{r['N']:>9} {r['M']:>2} {r['S']:>2} {r['dtype']:>8} {add:>10.1f} {bud:>11.1f} "
              f"{add / bud:>6.2f}")
    _ode_summary(terminalreporter.write_line, config)
    ns = _medians(config)
    if not ns:
        return
    _scaling_summary(terminalreporter.write_line, ns)
    _data_summary(terminalreporter.write_line, ns)
    _team_summary(terminalreporter.write_line, ns)
    rows: dict[tuple[int, int], dict[str, float]] = defaultdict(dict)
    for (kind, N, M, threads), v in ns.items():
        rows[(N, M)][f"{kind}@{threads}"] = v
    w = terminalreporter.write_line
    if not any("engine@1" in r or "numpy@1" in r for r in rows.values()):
        return
    w("")
    w("linvae step benchmarks: medians, ns per (step x N), ratios within this run")
    w(f"{'N':>9} {'M':>2} {'engine':>8} {'numpy':>8} {'fill':>7} {'np.normal':>9} "
      f"{'numpy/engine':>12} {'step/fill':>9} {'np.normal/fill':>14}")
    for (N, M), r in sorted(rows.items()):
        if M == 0 or not ({"engine@1", "numpy@1"} & r.keys()):
            continue
        eng, ref = r.get("engine@1"), r.get("numpy@1")
        fill, npn = ns.get(("fill", N, 0, 1)), ns.get(("np_normal", N, 0, 1))

        def f(x: float | None, fmt: str = "8.2f") -> str:
            return format(x, fmt) if x is not None else " " * int(fmt.split(".")[0])

        def ratio(a: float | None, b: float | None, width: int) -> str:
            return format(a / b, f"{width}.2f") if a and b else " " * width

        w(f"{N:>9} {M:>2} {f(eng)} {f(ref)} {f(fill, '7.2f')} {f(npn, '9.2f')} "
          f"{ratio(ref, eng, 12)} {ratio(eng, fill, 9)} {ratio(npn, fill, 14)}")
    f32 = [(N, ns.get(("engine", N, 1, 1)), v, ns.get(("fill32", N, 0, 1)))
           for (k, N, _, _), v in sorted(ns.items()) if k == "engine32"]
    if f32:
        w("")
        w("float32 weights (M = 1): ns per (step x N), and float64 / float32 throughput")
        for N, e64, e32, fill32 in f32:
            w(f"{N:>9}  float32 {e32:.2f}  float64 {e64 or float('nan'):.2f}  "
              f"f64/f32 {(e64 or float('nan')) / e32:.2f}  float32 fill {fill32 or float('nan'):.2f}")


def _data_summary(w: Any, ns: dict[tuple[str, int, int, int], float]) -> None:
    """benchmarks/bench_data.py: each data option's step against one-pass Gaussian."""
    rows = sorted((N, k[5:], v) for (k, N, _, _), v in ns.items() if k.startswith("data:"))
    if not rows:
        return
    w("")
    w("data options (M = 1): ns per (step x N), and the ratio to one-pass Gaussian noise")
    for N, kind, v in rows:
        base = ns.get(("data:gaussian", N, 1, 1))
        w(f"{N:>9}  {kind:<22} {v:7.2f}  {v / base if base else float('nan'):6.2f}x")


def _team_summary(w: Any, ns: dict[tuple[str, int, int, int], float]) -> None:
    """benchmarks/bench_threads.py: one replica on 1 and 2 threads, quiet and loaded."""
    Ns = sorted({N for (k, N, _, _) in ns if k in ("team_quiet", "team_busy")})
    if not Ns:
        return
    w("")
    w(f"one replica over threads (M = 1): ns per (step x N); CPU: {_cpu()}")
    w(f"{'N':>9} {'quiet 1':>8} {'quiet 2':>8} {'speed-up':>8} {'busy 1':>8} {'busy 2':>8} "
      f"{'2 / 1 busy':>10}")
    for N in Ns:
        q1, q2 = ns.get(("team_quiet", N, 1, 1)), ns.get(("team_quiet", N, 1, 2))
        b1, b2 = ns.get(("team_busy", N, 1, 1)), ns.get(("team_busy", N, 1, 2))

        def f(x: float | None, width: int = 8) -> str:
            return format(x, f"{width}.2f") if x is not None else " " * width

        w(f"{N:>9} {f(q1)} {f(q2)} {f(q1 / q2 if q1 and q2 else None)} {f(b1)} {f(b2)} "
          f"{f(b2 / b1 if b1 and b2 else None, 10)}")


def _scaling_summary(w: Any, ns: dict[tuple[str, int, int, int], float]) -> None:
    scale_N = sorted((N, v) for (k, N, _, _), v in ns.items() if k == "scale_N")
    scale_M = sorted((M, v) for (k, _, M, _), v in ns.items() if k == "scale_M")
    scale_N32 = {N: v for (k, N, _, _), v in ns.items() if k == "scale_N32"}
    if scale_N:
        w("")
        w("step time vs N (M = 1, one thread): ns per (step x N); flat = linear in N")
        w("  " + "  ".join(f"N={N:.0e}: {v:.2f}" for N, v in scale_N))
        if scale_N32:
            w("  float32: " + "  ".join(f"N={N:.0e}: {scale_N32[N]:.2f} ({v / scale_N32[N]:.2f}x)"
                                        for N, v in scale_N if N in scale_N32))
    if scale_M:
        w("step time vs M (N = 1e5): ns per (step x N), and per latent")
        w("  " + "  ".join(f"M={M}: {v:.2f} ({v / M:.2f})" for M, v in scale_M))
    for kind, label in (("replicas", "4 replicas, N = 1e4"), ("blocks", "1 replica, N = 1e6")):
        one, two = ns.get((kind, 10_000 if kind == "replicas" else 1_000_000, 1, 1)), \
            ns.get((kind, 10_000 if kind == "replicas" else 1_000_000, 1, 2))
        if one and two:
            w(f"threads, {label}: 2 threads = {one / two:.2f}x one thread")
