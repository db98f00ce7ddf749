"""Saving and loading datasets: exact round trip, atomic writes, clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import xarray as xr

import linvae
from linvae.io import load, save


@pytest.mark.parametrize("p", [
    linvae.Params(M=2),
    linvae.Params(M=2, M_star=2, rho=[2.0, 1.0], beta=linvae.schedules.Tanh(1.0, 0.2)),
])
def test_round_trip_is_identical(tmp_path: Path, p: linvae.Params) -> None:
    ds = linvae.simulate(p, N=400, t_max=0.5, seeds=2, progress=False)
    path = save(ds, tmp_path / "run.nc")
    back = load(path)
    xr.testing.assert_identical(ds, back)
    assert linvae.Params.from_attrs(back.attrs) == p
    assert back.diverged.dtype == bool


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    ds = linvae.simulate(linvae.Params(), N=100, t_max=0.1, progress=False)
    bad = ds.assign_attrs(unstorable={"a": 1})  # netCDF cannot store a dict attribute
    with pytest.raises((TypeError, ValueError)):
        save(bad, tmp_path / "run.nc")
    assert os.listdir(tmp_path) == []


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    ds = linvae.simulate(linvae.Params(), N=100, t_max=0.1, progress=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save(ds, tmp_path / "nowhere" / "run.nc")


def test_dataset_over_a_parameter_grid_round_trips(tmp_path: Path) -> None:
    # a phase diagram over rho carries no single rho attribute; it must still load
    ds = linvae.simulate(linvae.Params(), N=100, t_max=0.1, progress=False)
    del ds.attrs["rho"]
    back = load(save(ds, tmp_path / "grid.nc"))
    xr.testing.assert_identical(ds, back)
