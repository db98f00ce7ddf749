"""The command line, through a real subprocess as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import linvae


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "linvae.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_help_names_the_symbols() -> None:
    out = cli("simulate", "--help")
    assert out.returncode == 0
    for flag in ("--rho", "--eta", "--beta", "--lam", "--tau", "--N", "--t-max"):
        assert flag in out.stdout


def test_info() -> None:
    out = cli("info")
    assert out.returncode == 0 and "openmp" in out.stdout and "eigen" in out.stdout


def test_simulate_writes_a_dataset(tmp_path: Path) -> None:
    out = cli("--quiet", "simulate", "--N", "300", "--t-max", "0.5", "--seeds", "2",
              "--beta", "0.7", "--out", str(tmp_path / "r.nc"))
    assert out.returncode == 0, out.stderr
    ds = linvae.io.load(tmp_path / "r.nc")
    assert ds.sizes["replica"] == 2 and ds.attrs["N"] == 300 and ds.attrs["beta"] == 0.7


def test_bad_parameter_is_one_line_and_nonzero() -> None:
    out = cli("simulate", "--eta", "-1")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "eta must be > 0" in out.stderr and "Traceback" not in out.stderr
