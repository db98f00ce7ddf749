"""linvae.sweep: grids, executors, merging, failure records, kill-and-resume, shards."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from sweep_tasks import crashy_task

import linvae
from linvae.schedules import Tanh
from linvae.sweeps import (
    Grid,
    open_sweep,
    point_key,
    register_task,
    registered_tasks,
    shard_from_env,
    sweep,
)

P = linvae.Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, lam=0.0, tau=0.5)
SIM = {"t_max": 1.0, "record_every": 0.25, "progress": False}


if "crashy" not in registered_tasks():
    register_task("crashy", crashy_task)


def strip_grid(ds: xr.Dataset, grid_names: list[str]) -> xr.Dataset:
    return ds.drop_vars([n for n in grid_names if n in ds.coords])


# ---------------------------------------------------------------------------------------
# grids
# ---------------------------------------------------------------------------------------
def test_cartesian_grid() -> None:
    g = Grid(beta=[0.5, 1.0, 1.5, 2.5], N=[1_000, 10_000], replicas=8)
    assert g.dims == ("beta", "N")
    assert g.shape == (4, 2)
    assert len(g) == 8
    assert g.replicas == 8
    assert g.names == ("beta", "N")
    points = list(g)
    assert points[0] == {"beta": 0.5, "N": 1_000}
    assert points[1] == {"beta": 0.5, "N": 10_000}
    assert points[-1] == {"beta": 2.5, "N": 10_000}
    c = g.coords()
    np.testing.assert_array_equal(c["beta"], [0.5, 1.0, 1.5, 2.5])
    np.testing.assert_array_equal(c["N"], [1_000, 10_000])
    assert Grid.from_dict(json.loads(json.dumps(g.to_dict()))) == g
    assert "replicas=8" in repr(g)
    assert "8 points" in repr(g)
    # numpy axes, non-scalar values (rho vectors, schedules) get string labels
    g2 = Grid(rho=np.array([[1.0, 2.0], [2.0, 1.0]]), beta=[0.5, Tanh(0.5, 0.1)])
    assert list(g2)[1] == {"rho": [1.0, 2.0], "beta": Tanh(0.5, 0.1)}
    assert list(g2.coords()["rho"]) == ["[1.0, 2.0]", "[2.0, 1.0]"]
    assert list(g2.coords()["beta"]) == ["0.5", "Tanh(beta_inf=0.5, gamma=0.1)"]
    assert Grid.from_dict(json.loads(json.dumps(g2.to_dict()))) == g2


def test_zipped_grid_and_product() -> None:
    z = Grid.zip(beta=[0.5, 1.0, 1.5], rho=[1.0, 2.0, 3.0])
    assert z.dims == ("point",)
    assert z.shape == (3,)
    assert len(z) == 3
    assert list(z)[2] == {"beta": 1.5, "rho": 3.0}
    c = z.coords()
    np.testing.assert_array_equal(c["point"], [0, 1, 2])
    assert c["beta"][0] == "point"
    g = z * Grid(N=[500, 1000], replicas=2)
    assert g.dims == ("point", "N")
    assert g.shape == (3, 2)
    assert len(g) == 6
    assert g.replicas == 2
    assert list(g)[1] == {"beta": 0.5, "rho": 1.0, "N": 1000}
    assert Grid.from_dict(g.to_dict()) == g


def test_grid_validation() -> None:
    with pytest.raises(ValueError, match=r"unknown grid axis 'gamma'.*beta.*N.*t_max"):
        Grid(gamma=[1.0])
    with pytest.raises(ValueError, match="grid axis 'beta' is empty"):
        Grid(beta=[])
    with pytest.raises(ValueError, match=r"equal lengths.*beta: 2.*rho: 3"):
        Grid.zip(beta=[0.5, 1.0], rho=[1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="grid axis 'beta' must be a sequence"):
        Grid(beta=0.5)
    with pytest.raises(TypeError, match="grid axis 'method' must be a sequence"):
        Grid(method="RK45")
    with pytest.raises(ValueError, match="repeated value"):
        Grid(beta=[0.5, 1.0, 0.5])
    with pytest.raises(ValueError, match="repeated value"):
        Grid.zip(beta=[0.5, 0.5], tau=[0.1, 0.1])
    with pytest.raises(ValueError, match="replicas must be >= 1"):
        Grid(beta=[0.5], replicas=0)
    with pytest.raises(ValueError, match="grid axis 'beta' appears more than once"):
        Grid(beta=[0.5]) * Grid.zip(beta=[1.0], tau=[0.1])
    with pytest.raises(ValueError, match="dim must not be"):
        Grid.zip(dim="t", beta=[0.5])
    with pytest.raises(ValueError, match="different replicas"):
        Grid(beta=[0.5], replicas=2) * Grid(N=[100], replicas=3)


def test_point_key_is_stable() -> None:
    key = point_key("simulate", P, {"N": 1000, "t_max": 2.0})
    assert key == "47aabc68f200fa1e"  # the same in every session and on every machine
    assert point_key("simulate", P, {"t_max": 2, "N": 1000.0}) == key
    assert point_key("simulate", P.replace(beta=0.6), {"N": 1000, "t_max": 2.0}) != key
    assert point_key("ode", P, {"N": 1000, "t_max": 2.0}) != key
    assert point_key("simulate", P, {"N": 1000, "t_max": 2.0, "seed": 1}) != key


# ---------------------------------------------------------------------------------------
# sweeps, merging, executors
# ---------------------------------------------------------------------------------------
SIM_GRID = Grid(beta=[0.5, 2.5], N=[200, 400], replicas=2)


@pytest.fixture(scope="module")
def local_sim(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    out = tmp_path_factory.mktemp("sim") / "runs"
    res = sweep(P, SIM_GRID, "simulate", out=out, executor="local", max_workers=2, **SIM)
    return out, res


def test_local_simulate_sweep_merges_and_equals_direct_runs(local_sim: tuple[Path, Any]
                                                            ) -> None:
    out, res = local_sim
    assert (res.total, res.selected, res.done, res.skipped, res.failed) == (4, 4, 4, 0, 0)
    assert res.ok
    assert "4 done" in repr(res)
    ds = res.open()
    assert ds.m.dims == ("beta", "N", "replica", "t", "latent", "factor")
    assert dict(ds.sizes) == {"beta": 2, "N": 2, "replica": 2, "t": 5, "latent": 1,
                              "latent2": 1, "factor": 1}
    assert (ds.status == "ok").all()
    assert ds.beta_t.dims == ("beta", "N", "t")  # beta(t), renamed: beta is a grid dim
    for point in SIM_GRID:
        direct = linvae.simulate(P.replace(beta=point["beta"]), point["N"], seeds=2, **SIM)
        got = ds.sel(point)
        for k in ("m", "d", "Q", "E", "R", "D", "eg", "loss", "diverged", "t_diverged"):
            assert np.array_equal(got[k].values, direct[k].values, equal_nan=True), (point, k)
        np.testing.assert_array_equal(got.beta_t.values, direct.beta.values)
    # a second run finds everything done
    again = sweep(P, SIM_GRID, "simulate", out=out, executor="serial", **SIM)
    assert (again.done, again.skipped, again.failed) == (0, 4, 0)


def test_dask_sweep_gives_the_same_dataset(local_sim: tuple[Path, Any], tmp_path: Path
                                           ) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        res = sweep(P, SIM_GRID, "simulate", out=tmp_path / "dask", executor=client, **SIM)
    assert (res.done, res.failed) == (4, 0)
    xr.testing.assert_identical(res.open(), open_sweep(local_sim[0]))


def test_local_ode_sweep_zipped_grid(tmp_path: Path) -> None:
    grid = Grid.zip(beta=[0.5, 2.5], tau=[0.5, 0.2]) * Grid(t_max=[2.0, 3.0])
    res = sweep(P, grid, "ode", out=tmp_path, executor="local", max_workers=2,
                record_every=0.5, init=0.3, progress=False)
    assert (res.done, res.failed) == (4, 0)
    ds = open_sweep(tmp_path)
    assert ds.m.dims == ("point", "t_max", "t", "latent", "factor")
    np.testing.assert_array_equal(ds.point, [0, 1])
    np.testing.assert_array_equal(ds.beta, [0.5, 2.5])
    assert ds.beta.dims == ("point",)
    np.testing.assert_array_equal(ds.t, np.arange(0, 3.01, 0.5))
    for i, point in enumerate(Grid.zip(beta=[0.5, 2.5], tau=[0.5, 0.2])):
        for t_max in (2.0, 3.0):
            p = P.replace(**point)
            direct = linvae.integrate(p, t_max, linvae.states.overlap_state(p, 0.3),
                                      record_every=0.5)
            got = ds.isel(point=i).sel(t_max=t_max).sel(t=direct.t)
            for k in ("m", "d", "Q", "E", "R", "D", "eg"):
                assert np.array_equal(got[k].values, direct[k].values), (point, t_max, k)
    # the shorter run is padded with NaN beyond its t_max
    assert np.isnan(ds.m.sel(t_max=2.0, t=3.0)).all()
    assert not np.isnan(ds.m.sel(t_max=3.0, t=3.0)).any()


def test_failing_task_is_recorded_and_others_complete(tmp_path: Path) -> None:
    grid = Grid(t_max=[1.0, 0.2, 2.0])  # record_every 0.5 > t_max 0.2: simulate raises
    with cf.ThreadPoolExecutor(2) as pool:
        res = sweep(P, grid, "simulate", out=tmp_path, executor=pool, N=200,
                    record_every=0.5, progress=False)
    assert (res.done, res.failed) == (2, 1)
    (fail,) = res.failures
    assert fail.index == 1
    assert fail.point == {"t_max": 0.2}
    assert "ValueError" in fail.error
    assert "record_every" in fail.error
    assert "failed" in repr(res)
    assert "record_every" in repr(res)
    record = json.loads((tmp_path / f"{fail.key}.error.json").read_text())
    assert record["error"] == fail.error
    assert record["settings"]["t_max"] == 0.2
    assert record["params"]["beta"] == 0.5
    assert "Traceback" in record["traceback"]
    ds = open_sweep(tmp_path)
    assert list(ds.status.values) == ["ok", "failed", "ok"]
    assert "record_every" in str(ds.error.sel(t_max=0.2).values)
    assert np.isnan(ds.m.sel(t_max=0.2)).all()
    assert not np.isnan(ds.m.sel(t_max=1.0, t=1.0)).any()
    # the next run retries the failed task only (it fails again); retry_failed=False skips it
    again = sweep(P, grid, "simulate", out=tmp_path, executor="serial", N=200,
                  record_every=0.5, progress=False)
    assert (again.done, again.skipped, again.failed) == (0, 2, 1)
    skip = sweep(P, grid, "simulate", out=tmp_path, executor="serial", N=200,
                 record_every=0.5, progress=False, retry_failed=False)
    assert (skip.done, skip.skipped, skip.failed, skip.ok) == (0, 2, 0, False)


def test_missing_points_are_nan(tmp_path: Path) -> None:
    grid = Grid(seed=[0, 1, 2], replicas=2)
    res = sweep(P, grid, "simulate", out=tmp_path, executor="serial", N=200, **SIM)
    assert res.done == 3
    (tmp_path / f"{open_sweep(tmp_path).key.values[1]}.nc").unlink()
    ds = open_sweep(tmp_path)
    assert list(ds.status.values) == ["ok", "missing", "ok"]
    assert np.isnan(ds.m.sel(seed=1)).all()
    assert np.isnan(ds.diverged.sel(seed=1)).all()
    assert (ds.divergence.sel(seed=1) == "").all()
    assert ds.diverged.sel(seed=0).sum() == 0
    linvae.io.save(ds, tmp_path / "merged.nc")  # the merged dataset is storable
    xr.testing.assert_identical(linvae.io.load(tmp_path / "merged.nc"), ds)


def test_sweep_argument_errors(tmp_path: Path) -> None:
    g = Grid(beta=[0.5, 1.0])
    with pytest.raises(ValueError, match=r"task 'simulate' needs the setting.*N"):
        sweep(P, g, "simulate", out=tmp_path, t_max=1.0)
    with pytest.raises(ValueError, match=r"unknown setting 'seeds'.*use replicas"):
        sweep(P, g, "simulate", out=tmp_path, N=100, t_max=1.0, seeds=2)
    with pytest.raises(ValueError, match="'tau' is a model parameter"):
        sweep(P, g, "simulate", out=tmp_path, N=100, t_max=1.0, tau=0.1)
    with pytest.raises(ValueError, match="'t_max' is both a grid axis and a fixed setting"):
        sweep(P, Grid(t_max=[1.0]), "simulate", out=tmp_path, N=100, t_max=1.0)
    with pytest.raises(ValueError, match="unknown grid axis 'N' for task 'ode'"):
        sweep(P, Grid(N=[100]), "ode", out=tmp_path)
    with pytest.raises(ValueError, match=r"'replicas'.*task 'ode'"):
        sweep(P, Grid(beta=[0.5], replicas=2), "ode", out=tmp_path)
    with pytest.raises(ValueError, match=r"grid point 1 .*tau must be > 0"):
        sweep(P, Grid(tau=[0.5, -1.0]), "ode", out=tmp_path)
    with pytest.raises(ValueError, match="unknown task 'nope'; registered tasks: simulate"):
        sweep(P, g, "nope", out=tmp_path)
    with pytest.raises(ValueError, match="executor must be"):
        sweep(P, g, "ode", out=tmp_path, executor="mpi")
    with pytest.raises(ValueError, match="threads_per_task must be >= 1"):
        sweep(P, g, "ode", out=tmp_path, threads_per_task=0)
    with pytest.raises(FileNotFoundError, match="not a sweep folder"):
        open_sweep(tmp_path / "nothing")
    with pytest.raises(ValueError, match="already registered"):
        register_task("simulate", crashy_task)
    assert not list(tmp_path.iterdir())  # nothing was written by a rejected call


def test_custom_task_must_be_importable_for_the_local_pool(monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    registry = linvae.sweeps.tasks
    monkeypatch.setattr(registry, "_TASKS", dict(registry._TASKS))  # ends with the test
    register_task("lam_ode", lambda params, *, t_max=1.0: linvae.integrate(params, t_max))
    with pytest.raises(ValueError, match=r"cannot send .* to its workers"):
        sweep(P, Grid(beta=[0.5]), "lam_ode", out=tmp_path / "local")
    assert not (tmp_path / "local").exists()
    res = sweep(P, Grid(beta=[0.5]), "lam_ode", out=tmp_path / "serial", executor="serial",
                t_max=0.5, progress=False)
    assert res.done == 1
    assert "lam_ode" in registered_tasks()


# ---------------------------------------------------------------------------------------
# failures: killed sweeps, dead workers
# ---------------------------------------------------------------------------------------
def _results(out: Path) -> dict[str, tuple[int, int]]:
    return {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in out.glob("*.nc")}


def test_killed_sweep_resumes_without_recomputing(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    betas = [0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6]
    code = (f"import linvae\nfrom linvae.sweeps import Grid, sweep\n"
            f"if __name__ == '__main__':\n"
            f"    sweep(linvae.Params(), Grid(beta={betas}), 'simulate', out={str(out)!r}, "
            f"executor='local', max_workers=2, N=2000, t_max=10.0, record_every=1.0, "
            f"progress=False)\n")
    src = str(Path(linvae.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len(_results(out)) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its workers, like scancel
        proc.wait()
    time.sleep(0.2)
    before = _results(out)
    assert 2 <= len(before) < len(betas), "kill the sweep part-way"

    res = sweep(linvae.Params(), Grid(beta=betas), "simulate", out=out, executor="serial",
                N=2000, t_max=10.0, record_every=1.0, progress=False)
    assert (res.skipped, res.done, res.failed) == (len(before), len(betas) - len(before), 0)
    after = _results(out)
    assert {k: after[k] for k in before} == before  # finished files were not rewritten
    assert len(after) == len(betas)
    ds = open_sweep(out)
    assert (ds.status == "ok").all()
    assert len(set(ds.key.values.tolist())) == len(betas)
    assert not np.isnan(ds.m).any()


def test_dead_worker_loses_only_its_task(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    marker.mkdir()
    (marker / "crash-once-1.0").touch()  # kills its worker once: recovered in the same run
    (marker / "crash-2.0").touch()  # kills its worker every time: lost, retried next run
    grid = Grid(beta=[0.5, 1.0, 2.0, 1.5])
    kw: dict[str, Any] = {"N": 200, "t_max": 1.0, "marker": str(marker), "progress": False}
    omp = os.environ.get("OMP_NUM_THREADS")
    res = sweep(P, grid, "crashy", out=tmp_path / "runs", executor="local", max_workers=2,
                threads_per_task=2, **kw)
    assert os.environ.get("OMP_NUM_THREADS") == omp  # the parent's environment is restored
    assert (res.done, res.failed) == (3, 1)
    assert res.failures[0].point == {"beta": 2.0}
    assert "worker process died" in res.failures[0].error
    ds = open_sweep(tmp_path / "runs")
    assert list(ds.status.values) == ["ok", "ok", "failed", "ok"]
    # every task got threads_per_task, as its threads and as its worker's OMP_NUM_THREADS
    assert ds.attrs["omp"] == "2"
    assert ds.attrs["threads"] == 2
    attempts = {b: int((marker / f"attempts-{b}").read_text()) for b in grid.axes["beta"]}
    assert attempts[1.0] == 2  # died, then ran alone and completed
    # 2.0 died alone (and once more with others if it had started before the first death);
    # bystanders lost with a dead worker ran once more
    assert all(1 <= attempts[b] <= 2 for b in (0.5, 1.5, 2.0))

    (marker / "crash-2.0").unlink()
    again = sweep(P, grid, "crashy", out=tmp_path / "runs", executor="serial", **kw)
    assert (again.done, again.skipped, again.failed) == (1, 3, 0)
    now = {b: int((marker / f"attempts-{b}").read_text()) for b in grid.axes["beta"]}
    assert now == {**attempts, 2.0: attempts[2.0] + 1}  # only the lost task ran again
    assert (open_sweep(tmp_path / "runs").status == "ok").all()


# ---------------------------------------------------------------------------------------
# job arrays
# ---------------------------------------------------------------------------------------
def test_shards_cover_the_grid_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    grid = Grid(beta=[0.5, 1.0, 1.5], tau=[0.2, 0.5])
    kw: dict[str, Any] = {"t_max": 1.0, "record_every": 0.5, "executor": "serial",
                          "progress": False}
    selected = []
    for i in range(4):
        res = sweep(P, grid, "ode", out=tmp_path, shard=(i, 4), **kw)
        assert res.shard == (i, 4)
        assert res.skipped == 0
        assert res.failed == 0
        selected.append(res.selected)
        assert res.done == res.selected
    assert selected == [2, 2, 1, 1]
    assert sum(selected) == len(grid)
    assert len(list(tmp_path.glob("*.nc"))) == len(grid)
    assert (open_sweep(tmp_path).status == "ok").all()
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")
    res = sweep(P, grid, "ode", out=tmp_path, shard="env", **kw)
    assert (res.shard, res.selected, res.skipped, res.done) == ((1, 4), 2, 2, 0)


def test_shard_from_env() -> None:
    assert shard_from_env({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "8"}) == (3, 8)
    # --array=1-4: ids 1..4 are shards 0..3
    env = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "1",
           "SLURM_ARRAY_TASK_MAX": "4"}
    assert shard_from_env(env) == (0, 4)
    # --array=0-10:2: ids 0, 2, ..., 10
    env = {"SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "10",
           "SLURM_ARRAY_TASK_STEP": "2", "SLURM_ARRAY_TASK_COUNT": "6"}
    assert shard_from_env(env) == (3, 6)
    with pytest.raises(RuntimeError, match="SLURM_ARRAY_TASK_ID"):
        shard_from_env({})
    with pytest.raises(RuntimeError, match="must be an integer"):
        shard_from_env({"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "2"})
    with pytest.raises(RuntimeError, match="outside"):
        shard_from_env({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "2"})
    with pytest.raises(ValueError, match="shard index i must be <= 1"):
        sweep(P, Grid(beta=[0.5]), "ode", out="unused", shard=(2, 2))


def test_stability_task_over_beta_finds_the_collapse(tmp_path):
    # below rho + eta the stable fixed point learns the factor, above it collapses
    p = linvae.Params(M=1, M_star=1, rho=1.0, eta=1.0, tau=0.1)
    res = linvae.sweep(p, linvae.Grid(beta=[0.5, 2.5]), task="stability", out=tmp_path,
                       executor="serial", progress=False, thresholds=True)
    assert res.ok
    ds = linvae.open_sweep(tmp_path)
    assert bool(ds.stable.all())
    m = np.abs(ds.m.sel(latent=0, factor=0))
    assert float(m.sel(beta=0.5)) > 0.5
    assert float(m.sel(beta=2.5)) < 1e-8
    np.testing.assert_allclose(ds.collapse_threshold.values, 2.0, atol=1e-6)


def test_stability_task_thresholds_with_fewer_and_more_latents_than_factors(tmp_path):
    # M < M* (factor 1 has no latent), M > M* (a superfluous latent) and M = M*: every
    # point succeeds, and at lam = 0 factor k collapses at beta = rho_k + eta
    p = linvae.Params(M=1, M_star=1, rho=1.0, eta=0.5, beta=0.5, tau=0.1)
    grid = Grid.zip(M=[1, 2, 2], M_star=[2, 1, 2], rho=[[2.0, 1.0], [1.0], [2.0, 1.0]])
    res = sweep(p, grid, task="stability", out=tmp_path, executor="serial", progress=False)
    assert res.ok, res.failures
    ds = open_sweep(tmp_path)
    assert (ds.status.values == "ok").all()
    thr = ds.collapse_threshold.transpose("point", "factor").values
    expected = [[2.5, np.nan], [1.5, np.nan], [2.5, 1.5]]   # rho_k + eta; NaN: no latent
    np.testing.assert_allclose(thr, expected, atol=1e-6)
    # the factor without a latent is NaN in the result itself, not only padding
    one = linvae.io.load(tmp_path / f"{ds.key.values[0]}.nc")
    assert one.sizes["factor"] == 2 and np.isnan(one.collapse_threshold.values[1])
