"""`linvae reproduce`: every figure family, its data and summary.md."""


from __future__ import annotations

import dataclasses
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

    from linvae.reproduce import registry

    collapse = reproduce.get("collapse")
    monkeypatch.setitem(registry._FAMILIES, "collapse",
                        dataclasses.replace(collapse, compute=broken))
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


def test_axis_labels_are_the_package_s_mathtext_labels() -> None:
    p = linvae.Params()
    ds = linvae.integrate(p, t_max=0.5, init=linvae.states.overlap_state(p))
    assert plot.axis_label(ds, "m") == r"$m = W^{\top}W^{*}/N$"  # the definition only
    assert plot.axis_label(ds, "D") == "encoder variance $D$"
    assert plot.axis_label(ds, "eg") == r"generalisation error $\varepsilon_g$"
    ds["other"] = ds["D"].copy()
    ds["other"].attrs["long_name"] = "something else"
    assert plot.axis_label(ds, "other") == "something else"  # else its long name
    assert plot.axis_label(ds, "not_there") == "not_there"


def test_every_family_computes_and_draws_on_tiny_settings() -> None:
    """Each registered family's compute, plot and summary, in-process and small."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    assert reproduce.names()[:len(reproduce.FAMILIES)] == reproduce.FAMILIES
    for family in reproduce.families():
        s = family.settings("tiny")
        assert family.tiny is not None, family.name
        data = family.compute(s, progress=False, threads=1)
        assert any(k.endswith(".nc") for k in data), family.name
        drawn = family.plot(data, s)
        figures = drawn.values() if isinstance(drawn, dict) else [drawn]
        assert all(isinstance(f, Figure) and f.axes for f in figures), family.name
        lines = [family.parameters(data, s), *family.summary(data, s)]
        assert all(isinstance(line, str) for line in lines) and "|---" in "".join(lines), \
            family.name


@dataclasses.dataclass(frozen=True, kw_only=True)
class ToySettings(reproduce.Settings):
    n: int
    scale: float


def _toy_compute(s: ToySettings, *, progress: bool, threads: int | None) -> reproduce.Data:
    import xarray as xr

    x = np.arange(s.n, dtype=np.float64)
    return {"toy.nc": xr.Dataset({"y": ("x", s.scale * x**2)}, coords={"x": x},
                                 attrs={**linvae.Params().to_attrs()}),
            "toy_scratch": xr.Dataset({"total": ((), s.scale * s.n)})}


def _toy_plot(data: reproduce.Data, s: ToySettings) -> object:
    fig = plot.figure()
    ds = data["toy.nc"]
    fig.axes[0].plot(ds["x"], ds["y"])
    return fig


def test_a_registered_toy_family_runs_like_the_built_in_ones(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toy = reproduce.FigureFamily(
        name="toy", title="A toy family", about="a parabola",
        quick=ToySettings(n=5, scale=2.0), full=ToySettings(n=50, scale=2.0),
        compute=_toy_compute, plot=_toy_plot,  # type: ignore[arg-type]
        parameters=lambda data, s: f"n = {s.n}, scale {s.scale:g}.",
        summary=lambda data, s: ["", *reproduce.table(
            ["n", "sum of y"], [[str(s.n), f"{float(data['toy.nc']['y'].sum()):g}"]])])
    reproduce.register(toy)
    try:
        assert reproduce.names()[-1] == "toy"
        with pytest.raises(ValueError, match="registered already"):
            reproduce.register(toy)
        with pytest.raises(SystemExit):
            cli.main(["reproduce", "--help"])
        help_text = " ".join(capsys.readouterr().out.split())
        assert f"{len(reproduce.names())} toy (a parabola)" in help_text
        report = reproduce.reproduce(tmp_path, quick=True, progress=False, only=["toy"])
    finally:
        reproduce.unregister("toy")
    assert "toy" not in reproduce.names()
    assert report.ok, report.families[0].error
    assert {p.name for p in tmp_path.iterdir()} == {"toy.nc", "toy.png", "toy.pdf",
                                                     "summary.md"}
    assert linvae.io.load(tmp_path / "toy.nc")["y"].values.tolist() == [0, 2, 8, 18, 32]
    summary = (tmp_path / "summary.md").read_text()
    n = len(reproduce.FAMILIES) + 1
    assert (f"## {n}. A toy family\n\nParameters: n = 5, scale 2.\n\n| n | sum of y |\n"
            f"|---|---|\n| 5 | 60 |\n\nData: toy.nc\n") in summary
    assert "| toy | ok |" in summary and "toy.png, toy.pdf" in summary


def test_settings_missing_or_mistyped_fields_are_rejected() -> None:
    with pytest.raises(TypeError, match="scale"):
        ToySettings(n=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"ToySettings\.n must be int, got 2\.5 \(float\)"):
        ToySettings(n=2.5, scale=1.0)  # type: ignore[arg-type]
    from linvae.reproduce.collapse import CollapseSettings

    with pytest.raises(TypeError, match="phase"):
        CollapseSettings(betas=np.linspace(0, 1, 3))  # type: ignore[call-arg]

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class WithDefault(reproduce.Settings):
        n: int = 3

    with pytest.raises(TypeError, match="take no defaults"):
        reproduce.FigureFamily(name="d", title="d", about="d", quick=WithDefault(),
                               full=WithDefault(), compute=_toy_compute,  # type: ignore[arg-type]
                               plot=_toy_plot, parameters=str, summary=list)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="one dataclass for both"):
        reproduce.FigureFamily(name="e", title="e", about="e", quick=ToySettings(n=1, scale=1.0),
                               full=WithDefault(), compute=_toy_compute,  # type: ignore[arg-type]
                               plot=_toy_plot, parameters=str, summary=list)  # type: ignore[arg-type]
