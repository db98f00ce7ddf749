"""`linvae reproduce`: every figure family, its data and summary.md."""


from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import linvae
from linvae import cli, plot, reproduce

FIGURES = [f"{name}{suffix}" for name in reproduce.FAMILIES for suffix in (".png", ".pdf")]


def test_quick_writes_every_figure_family(tmp_path: Path) -> None:
    out = tmp_path / "tmp"
    run = subprocess.run([sys.executable, "-m", "linvae.cli", "reproduce", "--quick",
                          "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    names = {p.name for p in out.iterdir()}
    missing = [f for f in [*FIGURES, "summary.md"] if f not in names]
    assert not missing, missing
    for f in FIGURES:
        head = (out / f).read_bytes()[:4]
        assert head == (b"\x89PNG" if f.endswith(".png") else b"%PDF"), f
    assert not [n for n in names if n.endswith(".part")]
    summary = (out / "summary.md").read_text()
    assert "FAILED" not in summary and "Total run time" in summary
    for text in ("ρ_k + η", "exponent (rms)", "γ*", "disentanglement score",
                 "measured / predicted", "slope 1/(2μ)"):
        assert text in summary
    # the data are next to the figures, readable, with their parameters
    for nc in ("sgd_vs_ode_gaps.nc", "sgd_vs_ode_spread.nc", "collapse_sweep.nc", "annealing.nc",
               "disentanglement.nc", "superfluous_trajectories.nc", "fluctuations_sd.nc",
               "fluctuations_escape.nc", "fluctuations_slope.nc"):
        assert "tau" in linvae.io.load(out / nc).attrs, nc
    # the finite-N family: the theory against the Gram chain, within sampling error
    # (an sd from 100 replicas to 7%, a median escape time from 200 to ~2%; fixed seeds)
    sd = linvae.io.load(out / "fluctuations_sd.nc")
    r = (sd["sd_measured"] / sd["sd_predicted"]).values
    assert np.all(np.abs(r - 1) < 0.3), r
    esc = linvae.io.load(out / "fluctuations_escape.nc")
    r = (esc["t_measured"] / esc["t_predicted"]).values
    assert np.all(np.abs(r - 1) < 0.1), r
    slope = linvae.io.load(out / "fluctuations_slope.nc")["slope"].values
    assert np.all(np.diff(slope) > 0), slope  # 1/(2 lambda) grows towards rho + eta
    # the logs say where the output goes
    assert str(out) in run.stderr


def test_a_failing_family_is_recorded_and_the_others_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no stable fixed point (simulated failure)")

    monkeypatch.setattr(reproduce, "_fig_collapse", broken)
    code = cli.main(["-q", "reproduce", "--quick", "--only", "collapse", "disentanglement",
                     "--out", str(tmp_path)])
    assert code == 1
    assert "collapse" in capsys.readouterr().err
    assert (tmp_path / "disentanglement.png").exists()
    assert (tmp_path / "disentanglement.pdf").exists()
    assert not (tmp_path / "collapse.png").exists()
    summary = (tmp_path / "summary.md").read_text()
    assert "FAILED" in summary and "simulated failure" in summary


def test_plot_result_rejects_unknown_variables(tmp_path: Path) -> None:
    ds = linvae.integrate(linvae.Params(), t_max=1.0)
    with pytest.raises(ValueError, match="variables must be among"):
        plot.plot_result(ds, variables=["nope"])
    fig = plot.plot_result(ds, variables=["m", "eg"])
    path = plot.save_figure(fig, tmp_path / "f.pdf")
    assert path.read_bytes()[:4] == b"%PDF"


def test_axis_labels_come_from_the_dataset_long_names() -> None:
    p = linvae.Params()
    ds = linvae.integrate(p, t_max=0.5, init=linvae.states.overlap_state(p))
    assert plot.axis_label(ds, "m") == "m = W^T W*/N"  # the definition part only
    assert plot.axis_label(ds, "D") == ds["D"].attrs["long_name"]
    assert plot.axis_label(ds, "not_there") == "not_there"
