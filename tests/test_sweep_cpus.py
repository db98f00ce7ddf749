"""How many workers and threads a sweep uses: the usable cores and oversubscription."""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
from pathlib import Path
from typing import Any

import pytest

import linvae
from linvae.sweeps import Grid, executors, runner, sweep
from linvae.sweeps.executors import _local_workers, slurm_cpus, usable_cpus

P = linvae.Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, lam=0.0, tau=0.5)
ODE: dict[str, Any] = {"t_max": 0.5, "record_every": 0.5, "progress": False}
SLURM_VARS = ("SLURM_JOB_ID", "SLURM_JOBID", "SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE",
              "SLURM_JOB_CPUS_PER_NODE", "SLURM_NODEID", "SLURM_ARRAY_TASK_ID",
              "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX",
              "SLURM_ARRAY_TASK_STEP")


@pytest.fixture
def cores(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Set this process's affinity mask to ``n`` cores, outside any SLURM job."""
    for k in SLURM_VARS:
        monkeypatch.delenv(k, raising=False)

    def set_cores(n: int) -> None:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)), raising=False)

    return set_cores


def sweep_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "linvae.sweeps" and r.levelno >= logging.WARNING]


def in_slurm_job(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    for k, v in env.items():
        monkeypatch.setenv(k, v)


# ---------------------------------------------------------------------------------------
# the usable cores
# ---------------------------------------------------------------------------------------
def test_affinity_only(cores: Any) -> None:
    cores(6)
    assert slurm_cpus() is None
    assert usable_cpus() == 6


def test_slurm_variables_outside_a_job_are_ignored(cores: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cores(6)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "2")  # e.g. left over in a login shell
    assert usable_cpus() == 6


def test_cpus_per_task_caps_the_affinity(cores: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    cores(8)
    in_slurm_job(monkeypatch, SLURM_CPUS_PER_TASK="3", SLURM_CPUS_ON_NODE="8",
                 SLURM_JOB_CPUS_PER_NODE="8")
    assert slurm_cpus() == 3
    assert usable_cpus() == 3
    cores(2)  # the affinity mask is smaller still: it wins
    assert usable_cpus() == 2
    # an explicit environment is read instead of os.environ
    assert slurm_cpus({"SLURM_JOBID": "1", "SLURM_CPUS_ON_NODE": "5"}) == 5
    assert slurm_cpus({}) is None


@pytest.mark.parametrize(("value", "node", "expected"), [
    ("8", None, 8),
    ("4(x2),2", None, 4),          # no node id: the first node, where the batch script runs
    ("4(x2),2", "0", 4),
    ("4(x2),2", "1", 4),
    ("4(x2),2", "2", 2),
    ("4(x2),2", "9", 4),           # a node id outside the list: the first node
    ("4(x2),2", "x", 4),
    ("2,6(x3)", "3", 6),
    (" 16(x4) ", "1", 16),
])
def test_job_cpus_per_node_formats(cores: Any, monkeypatch: pytest.MonkeyPatch, value: str,
                                   node: str | None, expected: int) -> None:
    cores(64)
    in_slurm_job(monkeypatch, SLURM_JOB_CPUS_PER_NODE=value)
    if node is not None:
        monkeypatch.setenv("SLURM_NODEID", node)
    assert slurm_cpus() == expected
    assert usable_cpus() == expected


@pytest.mark.parametrize("garbage", ["", "abc", "0", "-3", "2.5", "4(x)", "(x2)4", "4(x2",
                                     "4(y2)", "4(x2),", ",", "4;2", "１２x", "9" * 5000],
                         ids=lambda g: repr(g[:12]))
def test_garbage_is_ignored(cores: Any, monkeypatch: pytest.MonkeyPatch, garbage: str) -> None:
    cores(6)
    in_slurm_job(monkeypatch, SLURM_CPUS_PER_TASK=garbage, SLURM_CPUS_ON_NODE=garbage,
                 SLURM_JOB_CPUS_PER_NODE=garbage, SLURM_NODEID=garbage)
    assert slurm_cpus() is None
    assert usable_cpus() == 6
    # a readable variable further down still counts
    monkeypatch.setenv("SLURM_JOB_CPUS_PER_NODE", "2(x3)")
    assert usable_cpus() == 2


def test_a_huge_allocation_is_capped_by_the_affinity(cores: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cores(4)
    in_slurm_job(monkeypatch, SLURM_JOB_CPUS_PER_NODE="99999999999999999999(x2)")
    assert usable_cpus() == 4


# ---------------------------------------------------------------------------------------
# the local pool
# ---------------------------------------------------------------------------------------
def test_local_pool_default_fills_the_cores(cores: Any) -> None:
    cores(8)
    assert _local_workers(None, 1, 100) == 8
    assert _local_workers(None, 3, 100) == 2
    assert _local_workers(None, 8, 100) == 1
    assert _local_workers(None, 16, 100) == 1  # never 0


def test_oversubscription_warns_but_keeps_the_choice(cores: Any,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    cores(4)
    with caplog.at_level(logging.WARNING, logger="linvae.sweeps"):
        assert _local_workers(None, 4, 100) == 1
        assert _local_workers(2, 2, 100) == 2
        assert _local_workers(8, 1, 3) == 8  # only 3 tasks: 3 run at once
    assert not sweep_warnings(caplog)
    with caplog.at_level(logging.WARNING, logger="linvae.sweeps"):
        assert _local_workers(3, 2, 100) == 3
    assert "3 task(s) at once with threads_per_task=2, 6 threads on 4 usable core(s)" \
        in caplog.text
    assert "max_workers <= 2" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="linvae.sweeps"):
        assert _local_workers(None, 6, 100) == 1
    assert "threads_per_task=6, 6 threads on 4 usable core(s)" in caplog.text
    assert "threads_per_task to at most 4" in caplog.text


def fake_run_local(calls: list[tuple[int, int]]) -> Any:
    def run(jobs: Any, workers: int, threads: int, report: Any, **kw: Any) -> None:
        calls.append((workers, threads))
    return run


def test_sweep_sizes_its_pool_by_the_allocation(cores: Any, monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(runner, "_run_local", fake_run_local(calls))
    grid = Grid(beta=[0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    cores(8)
    sweep(P, grid, "ode", out=tmp_path / "a", **ODE)
    in_slurm_job(monkeypatch, SLURM_CPUS_PER_TASK="4")
    sweep(P, grid, "ode", out=tmp_path / "b", threads_per_task=2, **ODE)
    # a job-array element: its own allocation, as without shards
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    res = sweep(P, grid, "ode", out=tmp_path / "c", shard="env", **ODE)
    assert res.shard == (1, 2)
    assert not sweep_warnings(caplog)
    with caplog.at_level(logging.WARNING, logger="linvae.sweeps"):
        sweep(P, grid, "ode", out=tmp_path / "d", max_workers=3, threads_per_task=2, **ODE)
    assert calls == [(8, 1), (2, 2), (3, 1), (3, 2)]
    assert "6 threads on 3 usable core(s)" in caplog.text


def test_serial_and_executor_oversubscription_warn(cores: Any, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    cores(2)
    grid = Grid(beta=[0.5, 1.0, 1.5])
    with caplog.at_level(logging.WARNING, logger="linvae.sweeps"):
        sweep(P, grid, "ode", out=tmp_path / "a", executor="serial", threads_per_task=2, **ODE)
        with cf.ThreadPoolExecutor(max_workers=2) as pool:
            sweep(P, grid, "ode", out=tmp_path / "b", executor=pool, **ODE)
    assert not sweep_warnings(caplog)
    with caplog.at_level(logging.WARNING, logger="linvae.sweeps"):
        res = sweep(P, grid, "ode", out=tmp_path / "c", executor="serial",
                    threads_per_task=3, **ODE)
    assert res.done == 3
    assert "the serial executor runs 1 task(s) at once with threads_per_task=3" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="linvae.sweeps"), \
            cf.ThreadPoolExecutor(max_workers=3) as pool:
        res = sweep(P, grid, "ode", out=tmp_path / "d", executor=pool, **ODE)
    assert res.done == 3
    assert "ThreadPoolExecutor runs 3 task(s) at once with threads_per_task=1, 3 threads " \
           "on 2 usable core(s)" in caplog.text


# ---------------------------------------------------------------------------------------
# dask
# ---------------------------------------------------------------------------------------
def test_dask_workers_are_checked_per_host_and_cpu_set(
        cores: Any, caplog: pytest.LogCaptureFixture) -> None:
    distributed = pytest.importorskip("distributed")
    cores(2)
    # in-process workers: they share this process's (patched) affinity mask
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        with caplog.at_level(logging.WARNING, logger="linvae.sweeps"):
            assert executors._check_dask_workers(client, 1) == []
        assert not sweep_warnings(caplog)
        with caplog.at_level(logging.WARNING, logger="linvae.sweeps"):
            assert len(executors._check_dask_workers(client, 2)) == 1
        assert "(2 worker(s), 2 dask thread(s) in all) runs 2 task(s) at once with " \
               "threads_per_task=2, 4 threads on 2 usable core(s)" in caplog.text
        assert "LocalCluster(n_workers=1, threads_per_worker=1)" in caplog.text


def test_dask_check_failure_does_not_stop_the_sweep() -> None:
    class Broken:
        def scheduler_info(self, **kw: Any) -> Any:
            raise OSError("scheduler gone")

    assert executors._check_dask_workers(Broken(), 4) == []
