"""linvae.sweeps as a package: point keys and pickles that sweep folders and saved objects
rely on, the task registry that the command line reads, and light imports."""

from __future__ import annotations

import base64
import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import xarray as xr

import linvae
from linvae import cli
from linvae.schedules import Tanh
from linvae.sweeps import (
    Grid,
    SweepResult,
    TaskFailure,
    point_key,
    register_task,
    registered_tasks,
    sweep,
    task_cli_settings,
)

BASE = linvae.Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, lam=0.0, tau=0.5)
# a shard past every grid index: sweep writes sweep.json (with every point's key) and
# runs nothing
NOTHING = (99, 100)


def keys_of(out: Path) -> list[str]:
    return list(json.loads((out / "sweep.json").read_text())["keys"])


# ---------------------------------------------------------------------------------------
# what sweep folders and pickles written earlier rely on
# ---------------------------------------------------------------------------------------
def test_point_key_recipe_is_unchanged() -> None:
    p = linvae.Params(M=2, M_star=2, rho=[2.0, 1.0], eta=0.5, beta=Tanh(1.5, 2.0), lam=0.1,
                      tau=0.3)
    settings = {"N": 1000, "t_max": 2.0, "record_every": 0.5, "replicas": 3, "seed": 7,
                "init": "random", "dtype": "float64", "times": None, "blowup": 1e8}
    assert point_key("simulate", p, settings) == "756a7317b6e5461e"


@pytest.mark.parametrize(("task", "grid", "kwargs", "keys"), [
    ("simulate", Grid(beta=[0.5, 2.5], replicas=2), {"N": 50, "t_max": 0.1},
     ["cce2997e8c8acaa8", "1f11e166d94f6077"]),
    ("simulate", Grid(beta=[0.5], replicas=2), {"N": 50, "t_max": 0.1, "method": "gram"},
     ["37261b03aa3d4725"]),
    # method="weights" is what "simulate" did before it had the setting: same keys
    ("simulate", Grid(beta=[0.5, 2.5], replicas=2),
     {"N": 50, "t_max": 0.1, "method": "weights"}, ["cce2997e8c8acaa8", "1f11e166d94f6077"]),
    ("ode", Grid.zip(beta=[0.5, 1.5], rho=[1.0, 2.0]) * Grid(init=[0.25, 0.5]),
     {"t_max": 0.5},
     ["5b6a155749a0ef35", "3c4aa4c576fba7d6", "72bc86f41407838e", "c1e64dc098a70fcc"]),
    ("stability", Grid(beta=[0.5, 2.5]), {"thresholds": False},
     ["89b550844fef495e", "a97219fe4227d628"]),
], ids=["simulate", "simulate-gram", "simulate-weights", "ode", "stability"])
def test_sweep_point_keys_are_unchanged(tmp_path: Path, task: str, grid: Grid,
                                        kwargs: dict[str, Any], keys: list[str]) -> None:
    res = sweep(BASE, grid, task, out=tmp_path, executor="serial", progress=False,
                shard=NOTHING, **kwargs)
    assert res.selected == 0
    assert keys_of(tmp_path) == keys


# pickle.dumps(..., protocol=4) of the objects below, as written before linvae.sweeps
# became a package
OLD_PICKLES = {
    "Grid": "gASVGAEAAAAAAACMDWxpbnZhZS5zd2VlcHOUjARHcmlklJOUKYGUTn2UKIwHX2Jsb2Nrc5RoAIwGX0Jsb2Nr"
            "lJOUKYGUfZQojANkaW2UjAVwb2ludJSMBGF4ZXOUfZQojARiZXRhlF2UKEc/4AAAAAAAAIwQbGludmFl"
            "LnNjaGVkdWxlc5SMBFRhbmiUk5QpgZR9lCiMCGJldGFfaW5mlEc/8AAAAAAAAIwFZ2FtbWGUR0AAAAAA"
            "AAAAdWJljANyaG+UXZQoXZRHP/AAAAAAAABhXZRHQAAAAAAAAABhZXWMBnppcHBlZJSIdWJoBymBlH2U"
            "KGgKjAFOlGgMfZRoHl2UKEtkS8hlc2gbiXVihpSMCV9yZXBsaWNhc5RLAnWGlGIu",
    "TaskFailure": "gASVggAAAAAAAACMDWxpbnZhZS5zd2VlcHOUjAtUYXNrRmFpbHVyZZSTlCmBlH2UKIwFaW5k"
                   "ZXiUSwGMA2tleZSMEDAxMjM0NTY3ODlhYmNkZWaUjAVwb2ludJR9lIwEYmV0YZRHP+AAAAAA"
                   "AABzjAVlcnJvcpSMEFZhbHVlRXJyb3I6IGJvb22UdWIu",
    "SweepResult": "gASVOgEAAAAAAACMDWxpbnZhZS5zd2VlcHOUjAtTd2VlcFJlc3VsdJSTlCmBlH2UKIwDb3V0"
                   "lIwHcGF0aGxpYpSMCVBvc2l4UGF0aJSTlIwBL5SMAXiUjAJzd5SHlFKUjAR0YXNrlIwDb2Rl"
                   "lIwFdG90YWyUSwKMCHNlbGVjdGVklEsCjARkb25llEsBjAdza2lwcGVklEsAjAhmYWlsdXJl"
                   "c5RoAIwLVGFza0ZhaWx1cmWUk5QpgZR9lCiMBWluZGV4lEsBjANrZXmUjBAwMTIzNDU2Nzg5"
                   "YWJjZGVmlIwFcG9pbnSUfZSMBGJldGGURz/gAAAAAAAAc4wFZXJyb3KUjBBWYWx1ZUVycm9y"
                   "OiBib29tlHVihZSMCGRpdmVyZ2VklEsAjAVzaGFyZJROjAdzZWNvbmRzlEc/+AAAAAAAAHVi"
                   "Lg==",
}


def test_pickles_written_earlier_load_and_new_ones_are_the_same() -> None:
    failure = TaskFailure(1, "0123456789abcdef", {"beta": 0.5}, "ValueError: boom")
    objects = {
        "Grid": Grid.zip(beta=[0.5, Tanh(1.0, 2.0)], rho=[[1.0], [2.0]], replicas=2)
        * Grid(N=[100, 200]),
        "TaskFailure": failure,
        "SweepResult": SweepResult(out=Path("/x/sw"), task="ode", total=2, selected=2, done=1,
                                   skipped=0, failures=(failure,), seconds=1.5),
    }
    for name, obj in objects.items():
        old = base64.b64decode(OLD_PICKLES[name])
        assert pickle.loads(old) == obj, name
        assert pickle.dumps(obj, protocol=4) == old, name


def test_importing_the_sweeps_and_making_a_grid_stay_light() -> None:
    # dask only when a sweep runs on it; xarray and netCDF4 only to run or merge one
    code = ("import sys, linvae.sweeps\n"
            "linvae.sweeps.Grid(beta=[0.5, 1.0], N=[100]) * linvae.sweeps.Grid(seed=[1, 2])\n"
            "heavy = {'dask', 'distributed', 'xarray', 'netCDF4', 'scipy', 'matplotlib'}\n"
            "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------
# the registry and the command line
# ---------------------------------------------------------------------------------------
def scaled(params: linvae.Params, *, t_max: float = 1.0, factor: float = 2.0) -> xr.Dataset:
    return xr.Dataset({"y": ((), factor * t_max * params.beta_inf)})


def coloured(params: linvae.Params, *, colour: str = "red") -> xr.Dataset:
    return xr.Dataset({"y": ((), params.beta_inf)})


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks registered in the test are gone after it."""
    tasks = linvae.sweeps.tasks
    monkeypatch.setattr(tasks, "_TASKS", dict(tasks._TASKS))


def run_cli(*args: str) -> int:
    return cli.main(["-q", "sweep", "--executor", "serial", *args])


def test_built_in_tasks_and_the_flags_they_take(tmp_path: Path) -> None:
    assert registered_tasks()[:3] == ("simulate", "ode", "stability")
    sub = cli.build_parser()._linvae_subparsers["sweep"]  # type: ignore[attr-defined]
    (task_flag,) = [a for a in sub._actions if a.dest == "task"]
    assert list(task_flag.choices) == list(registered_tasks())
    # which flags each built-in task takes from the command line
    expected = {"simulate": {"N": 10_000, "t_max": 20.0, "record_every": 0.1, "seed": 0,
                             "method": "weights", "replicas": 4},
                "ode": {"t_max": 20.0, "record_every": 0.1},
                "stability": {}}
    for task, settings in expected.items():
        out = tmp_path / task
        assert run_cli("--task", task, "--axis", "beta", "0.5", "--shard", "99/100",
                       "--out", str(out)) == 0
        assert json.loads((out / "sweep.json").read_text())["settings"] == settings


def test_a_registered_task_runs_from_the_command_line(registry: None, tmp_path: Path) -> None:
    register_task("scaled", scaled, cli_settings=("t_max",))
    assert task_cli_settings("scaled") == ("t_max",)
    assert run_cli("--task", "scaled", "--axis", "beta", "0.5", "1.0", "--t-max", "3",
                   "--out", str(tmp_path)) == 0
    ds = linvae.open_sweep(tmp_path)
    assert (ds.status.values == "ok").all()
    # --t-max is passed, factor keeps the task's default
    assert ds.y.values.tolist() == [3.0, 6.0]


def test_command_line_settings_must_be_settings_with_a_flag(
        registry: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="unknown command-line setting 'N' for task 'scaled'"):
        register_task("scaled", scaled, cli_settings=("N",))
    with pytest.raises(ValueError, match="'beta' is a model parameter"):
        register_task("scaled", scaled, cli_settings=("beta",))
    with pytest.raises(TypeError, match="cli_settings must be a sequence of setting names"):
        register_task("scaled", scaled, cli_settings="t_max")
    assert "scaled" not in registered_tasks()
    register_task("coloured", coloured, cli_settings=("colour",))
    assert run_cli("--task", "coloured", "--axis", "beta", "0.5", "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "task 'coloured' is registered to take 'colour' from the command line, which has " \
           "no flag for it" in err
