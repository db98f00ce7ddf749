"""One replica on one and on two threads, on a quiet machine and beside a busy process.

With one replica at large N the blocks of each pass are spread over a team of threads,
which meet at a barrier every step. Another process busy on one of the team's cores then
holds the whole team up for whole time slices; the engine measures both team sizes as it
runs and keeps the faster. The summary prints, from the medians of this run, the quiet
speed-up (time on one thread / time on two) and the loaded ratio (time on two threads /
time on one, both beside the same busy process, which shares the first of the cores the
run may use).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import linvae
from linvae import _core
from linvae.simulation import empty_records, new_engine

WORK = 200_000_000  # row updates per round: ~0.2 s of one thread


def _cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return list(range(os.cpu_count() or 1))


pytestmark = pytest.mark.skipif(len(_cpus()) < 2 or _core.build_info()["max_threads"] < 2,
                                reason="needs two cores and an OpenMP build")


@pytest.fixture
def busy(request: pytest.FixtureRequest) -> Iterator[None]:
    """A plain busy loop on the first usable core while the test runs, if asked for."""
    if request.param == "quiet":
        yield
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(proc.pid, {_cpus()[0]})
        time.sleep(0.2)  # running before the measurement starts
        yield
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("busy", ["quiet", "busy"], indirect=True)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("N", [100_000, 1_000_000])
def test_one_replica_over_threads(benchmark: Any, busy: None, N: int, threads: int,
                                  request: pytest.FixtureRequest) -> None:
    load = request.node.callspec.params["busy"]
    e = new_engine(linvae.Params(), N)
    e.init_random(1)
    steps = max(2, WORK // N)
    out = empty_records(linvae.Params(), 1, 1)
    beta = np.full(steps, 0.5)
    none = np.array([], dtype=np.int64)
    benchmark.pedantic(e.run, args=(beta, none, out),
                       kwargs={"rec_start": 0, "threads": threads}, rounds=5, warmup_rounds=1)
    benchmark.extra_info.update(kind=f"team_{load}", N=N, M=1, threads=threads,
                                elements=steps * N)
