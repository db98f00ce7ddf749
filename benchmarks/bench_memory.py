"""Peak resident memory of a simulation against its budget (2M + M* + 2) N itemsize.

Each case runs in a fresh interpreter, which reports its peak RSS before and after the
simulation; the difference is what the run added (weights, sample buffer, generator
states, records). The summary prints it per replica against the budget.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

PROBE = r"""
import json, resource, sys
import linvae
N, M, S, dtype = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ds = linvae.simulate(linvae.Params(M=M), N=N, t_max=4.0 / N, record_every=2.0 / N, seeds=S,
                     dtype=dtype, progress=False)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"added_bytes": (peak - base) * 1024}))
"""

CASES = [(1_000_000, 1, 1, "float64"), (10_000_000, 1, 1, "float64"),
         (10_000_000, 1, 1, "float32"), (10_000_000, 2, 1, "float64"),
         (1_000_000, 1, 4, "float64")]


@pytest.mark.parametrize(("N", "M", "S", "dtype"), CASES)
def test_peak_memory(benchmark: Any, N: int, M: int, S: int, dtype: str) -> None:
    def probe() -> dict[str, Any]:
        out = subprocess.run([sys.executable, "-c", PROBE, str(N), str(M), str(S), dtype],
                             capture_output=True, text=True, check=True)
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    result = benchmark.pedantic(probe, rounds=1, iterations=1)
    itemsize = 8 if dtype == "float64" else 4
    budget = (2 * M + 1 + 2) * N * itemsize  # (2M + M* + 2) N itemsize, M* = 1
    benchmark.extra_info.update(memory=True, N=N, M=M, S=S, dtype=dtype,
                                added_per_replica=result["added_bytes"] / S,
                                budget_per_replica=budget)
