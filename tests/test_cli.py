"""The command line, through a real subprocess as a user runs it."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import linvae
from linvae import cli

COMMANDS = ("info", "simulate", "ode", "compare", "stability", "plot", "reproduce")


def cli_run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "linvae.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


# kept under its old name for the tests written before the extension
cli_ = cli_run


def one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode != 0
    err = out.stderr.strip()
    assert err.count("\n") == 0, err
    assert "Traceback" not in err
    return err


def test_help_names_the_symbols() -> None:
    out = cli_run("simulate", "--help")
    assert out.returncode == 0
    for flag in ("--rho", "--eta", "--beta", "--lam", "--tau", "--N", "--t-max", "--config"):
        assert flag in out.stdout


def test_help_of_every_command() -> None:
    top = cli_run("--help")
    assert top.returncode == 0
    for c in COMMANDS:
        assert c in top.stdout
    symbols = {"simulate": ("rho_k", "eta", "tau", "input dimension N"),
               "ode": ("rho_k", "beta", "docs/model.md#odes"),
               "compare": ("-1/2", "input dimensions N", "--replicas"),
               "stability": ("rho_k + eta", "gamma*", "--beta"),
               "plot": ("eps_g", "mean +- 2 sd", "--no-theory", "--out"),
               "reproduce": ("--quick", "summary.md", "--out"),
               "info": ("--help",)}
    for c in COMMANDS:
        out = cli_run(c, "--help")
        assert out.returncode == 0, (c, out.stderr)
        text = " ".join(out.stdout.split())
        for s in symbols[c]:
            assert s in text, (c, s)


def test_info() -> None:
    out = cli_run("info")
    assert out.returncode == 0 and "openmp" in out.stdout and "eigen" in out.stdout


def test_simulate_writes_a_dataset(tmp_path: Path) -> None:
    out = cli_run("--quiet", "simulate", "--N", "300", "--t-max", "0.5", "--seeds", "2",
                  "--beta", "0.7", "--out", str(tmp_path / "r.nc"))
    assert out.returncode == 0, out.stderr
    ds = linvae.io.load(tmp_path / "r.nc")
    assert ds.sizes["replica"] == 2 and ds.attrs["N"] == 300 and ds.attrs["beta"] == 0.7


def test_simulate_with_other_data(tmp_path: Path) -> None:
    # the data flags reach simulate and are recorded in the file
    out = cli_run("--quiet", "simulate", "--N", "300", "--t-max", "0.5", "--seeds", "2",
                  "--noise", "student_t", "--noise-df", "5", "--factors", "rademacher",
                  "--dataset-size", "150", "--order", "cycle", "--dataset-seed", "3",
                  "--training-loss", "--out", str(tmp_path / "r.nc"))
    assert out.returncode == 0, out.stderr
    ds = linvae.io.load(tmp_path / "r.nc")
    assert (ds.attrs["noise"], ds.attrs["noise_df"], ds.attrs["factors"]) == \
        ("student_t", 5.0, "rademacher")
    assert (ds.attrs["dataset_size"], ds.attrs["order"], ds.attrs["dataset_seed"]) == \
        (150, "cycle", 3)
    assert np.isfinite(ds["train_loss"].values).all()


@pytest.mark.parametrize(("args", "message"), [
    (("--noise", "student_t"), "--noise student_t: needs --noise-df"),
    (("--noise", "student_t", "--noise-df", "2"), "--noise-df 2: must be > 2"),
    (("--noise-df", "5"), "--noise-df 5: applies to --noise student_t only"),
    (("--order", "cycle"), "--order cycle: applies to a finite dataset only"),
    (("--dataset-size", "0"), "--dataset-size 0: must be >= 1"),
    (("--noise", "cauchy"), "--noise cauchy: must be one of gaussian, rademacher"),
])
def test_bad_data_flags_are_one_line(args: tuple[str, ...], message: str) -> None:
    err = one_line_error(cli_run("simulate", "--N", "100", "--t-max", "0.1", *args))
    assert message in err, err


def test_bad_parameter_is_one_line_and_nonzero() -> None:
    out = cli_run("simulate", "--eta", "-1")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "--eta -1: must be > 0" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("args", [("simulate", "--N", "abc"), ("ode", "--method", "Euler"),
                                  ("simulate", "--no-such-flag"), ("plot",)])
def test_bad_command_line_is_one_line(args: tuple[str, ...]) -> None:
    err = one_line_error(cli_run(*args))
    assert "error" in err


def test_round_trip_simulate_ode_plot(tmp_path: Path) -> None:
    sim, ode = tmp_path / "sim.nc", tmp_path / "ode.nc"
    out = cli_run("-q", "simulate", "--N", "400", "--t-max", "1", "--seeds", "2", "--M", "2",
                  "--M-star", "2", "--rho", "2", "1", "--init", "overlap", "--noise",
                  "rademacher", "--out", str(sim))
    assert out.returncode == 0, out.stderr
    out = cli_run("ode", "--quiet", "--t-max", "1", "--M", "2", "--M-star", "2", "--rho", "2",
                  "1", "--init-from", str(sim), "--out", str(ode))
    assert out.returncode == 0, out.stderr
    s, o = linvae.io.load(sim), linvae.io.load(ode)
    assert s.attrs["run_noise"] == "rademacher"
    assert o.attrs["kind"] == "ode" and list(o.attrs["rho"]) == [2.0, 1.0]
    assert "linvae ode" in o.attrs["command"] and o.attrs["run_t_max"] == 1.0
    # the ODE started from the simulation's replica-mean t = 0 state
    assert abs(float(o["m"].isel(t=0, latent=0, factor=0))
               - float(s["m"].isel(t=0, latent=0, factor=0).mean())) < 1e-9
    assert abs(float(o["m"].isel(t=-1, latent=0, factor=0))
               - float(s["m"].isel(t=-1, latent=0, factor=0).mean())) < 0.2
    figs = [tmp_path / "sim.png", tmp_path / "sim.pdf", tmp_path / "ode.png"]
    out = cli_run("plot", str(sim), "--out", str(figs[0]), str(figs[1]))
    assert out.returncode == 0, out.stderr
    out = cli_run("plot", str(ode))  # default: next to the file, .png
    assert out.returncode == 0, out.stderr
    for f in figs:
        assert f.stat().st_size > 1000
    assert figs[0].read_bytes()[:4] == b"\x89PNG" and figs[1].read_bytes()[:4] == b"%PDF"


def _recorded_plot(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record the ``theory`` that ``linvae plot`` hands to plot_result (and the figure)."""
    from linvae import plot

    seen: list[Any] = []
    real = plot.plot_result

    def spy(ds: Any, **kwargs: Any) -> Any:
        fig = real(ds, **kwargs)
        seen.append((kwargs.get("theory"), fig))
        return fig

    monkeypatch.setattr(plot, "plot_result", spy)
    return seen


@pytest.mark.parametrize("init", ["random", "overlap"])
def test_plot_draws_the_predicted_band(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       init: str) -> None:
    from linvae import plot
    from linvae.states import overlap_state

    p = linvae.Params(M=1, M_star=1, beta=0.5, tau=0.5)
    start: Any = "random" if init == "random" else overlap_state(p)
    ds = linvae.simulate(p, 500, 1.0, 0.25, seeds=4, seed=3, init=start, method="gram",
                         progress=False)
    f = linvae.io.save(ds, tmp_path / "sim.nc")
    seen = _recorded_plot(monkeypatch)
    assert cli.main(["-q", "plot", str(f), "--out", str(tmp_path / "a.png")]) == 0
    theory, fig = seen[-1]
    assert theory is not None and theory.attrs["N"] == 500 and theory.attrs["init"] == (
        "random" if init == "random" else "prescribed")
    np.testing.assert_allclose(theory["t"].values, ds["t"].values)
    # the ODE from the file's start: at t = 0 the replica mean
    assert float(theory["Q"].isel(t=0).squeeze()) == pytest.approx(
        float(ds["Q"].isel(t=0).mean()), abs=1e-12 if init != "random" else 0.2)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert plot.THEORY_LABEL in labels and "ODE" in labels
    assert (tmp_path / "a.png").stat().st_size > 1000
    # --no-theory: the replicas alone
    assert cli.main(["-q", "plot", str(f), "--no-theory", "--out",
                     str(tmp_path / "b.png")]) == 0
    theory, fig = seen[-1]
    assert theory is None
    assert not any(ln.get_linestyle() == ":" for ax in fig.axes for ln in ax.get_lines())
    assert (tmp_path / "b.png").stat().st_size > 1000


def test_plot_without_the_theory_logs_one_line(tmp_path: Path) -> None:
    p = linvae.Params(M=1, M_star=1, beta=0.5, tau=0.5)
    ds = linvae.simulate(p, 300, 0.5, 0.25, seeds=2, method="gram", progress=False)
    del ds.attrs["init"]  # the start is unknown: no theory
    f = linvae.io.save(ds, tmp_path / "sim.nc")
    out = cli_run("plot", str(f), "--out", str(tmp_path / "c.png"))
    assert out.returncode == 0, out.stderr
    warn = [ln for ln in out.stderr.splitlines() if "no predicted band" in ln]
    assert len(warn) == 1 and "unknown start" in warn[0], out.stderr
    assert "Traceback" not in out.stderr
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_config_with_flag_override(tmp_path: Path) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text('beta = 0.2\n[model]\nbeta = 0.3\neta = 2.0\nrho = 1.5\n'
                   '[run]\nt_max = 0.4\nN = 250\nseeds = 2\nNs = [1, 2]\n'
                   f'[simulate]\nout = "{tmp_path / "c.nc"}"\nseeds = 3\n')
    out = cli_run("-q", "simulate", "--config", str(cfg), "--beta", "0.7")
    assert out.returncode == 0, out.stderr
    ds = linvae.io.load(tmp_path / "c.nc")
    assert ds.attrs["beta"] == 0.7          # the flag wins over [model]
    assert ds.attrs["eta"] == 2.0 and list(ds.attrs["rho"]) == [1.5]   # from [model]
    assert ds.attrs["N"] == 250 and ds.attrs["run_t_max"] == 0.4       # from [run]
    assert ds.sizes["replica"] == 3        # [simulate] wins over [run]
    assert ds.attrs["run_config"] == str(cfg)


def test_example_config_is_valid(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    out = cli_run("-q", "ode", "--config", str(root / "examples" / "run.toml"), "--t-max", "1",
                  "--out", str(tmp_path / "o.nc"))
    assert out.returncode == 0, out.stderr
    assert linvae.io.load(tmp_path / "o.nc").attrs["run_record_every"] == 0.1


@pytest.mark.parametrize(("text", "message"), [
    (None, "does not exist"),
    ("[model\nbeta = 1", "not valid TOML"),
    ("[model]\nbetta = 1.0\n", "unknown key 'betta'"),
    ("[model]\nbeta = \"high\"\n", "beta must be a number"),
    ("[simulate]\nN = 1.5\n", "N must be an integer"),
    ("[nonsense]\nN = 1\n", "unknown section [nonsense]"),
])
def test_unreadable_config_is_one_line(tmp_path: Path, text: str | None, message: str) -> None:
    cfg = tmp_path / "c.toml"
    if text is not None:
        cfg.write_text(text)
    err = one_line_error(cli_run("simulate", "--config", str(cfg)))
    assert message in err and "config" in err


def test_unwritable_output_is_one_line(tmp_path: Path) -> None:
    err = one_line_error(cli_run("ode", "--t-max", "0.5", "--out",
                                 str(tmp_path / "missing" / "o.nc")))
    assert "does not exist" in err
    err = one_line_error(cli_run("plot", str(tmp_path / "nothing.nc")))
    assert "does not exist" in err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root can write into read-only folders")
def test_read_only_output_folder_is_one_line(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        err = one_line_error(cli_run("ode", "--t-max", "0.5", "--out", str(ro / "o.nc")))
        assert "not writable" in err
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)


def test_read_only_output_folder_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    # the same check as above, also as root: the writability test is what answers
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path
                        else real(p, mode))
    assert cli.main(["-q", "ode", "--t-max", "0.5", "--out", str(tmp_path / "o.nc")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not writable" in err
    assert list(tmp_path.iterdir()) == []


def test_killed_write_leaves_no_complete_looking_file(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    import xarray as xr

    real = xr.Dataset.to_netcdf

    def dies_midway(self: xr.Dataset, path: str, *args: object, **kwargs: object) -> None:
        real(self, path, *args, **kwargs)
        with open(path, "r+b") as f:   # a half-written file ...
            f.truncate(100)
        raise KeyboardInterrupt          # ... and the process is stopped

    monkeypatch.setattr(xr.Dataset, "to_netcdf", dies_midway)
    target = tmp_path / "o.nc"
    assert cli.main(["-q", "ode", "--t-max", "0.5", "--out", str(target)]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []   # the temporary file is gone too


def test_sigkill_during_a_run_leaves_no_file(tmp_path: Path) -> None:
    import time

    target = tmp_path / "big.nc"
    proc = subprocess.Popen([sys.executable, "-m", "linvae.cli", "-q", "simulate", "--N",
                             "20000", "--t-max", "50", "--seeds", "1", "--threads", "1",
                             "--out", str(target)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    time.sleep(3.0)
    proc.kill()
    proc.wait(timeout=30)
    assert not target.exists()
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".nc"]


def test_compare_and_stability(tmp_path: Path) -> None:
    out = cli_run("-q", "compare", "--Ns", "200", "400", "--t-max", "0.5", "--replicas", "2",
                  "--record-every", "0.1", "--out", str(tmp_path / "cmp"))
    assert out.returncode == 0, out.stderr
    names = {p.name for p in (tmp_path / "cmp").iterdir()}
    assert {"compare.png", "compare.pdf", "compare_ode.nc", "compare_gaps.nc",
            "compare_sim_N200.nc", "compare_sim_N400.nc"} <= names
    # the help names exactly the files compare writes
    import re

    described = " ".join(_subparsers()["compare"].format_help().split())
    named = set(re.findall(r"[\w<>]+\.(?:nc|png|pdf)", described))
    named |= {n.replace(".png", ".pdf") for n in named}
    named = {n.replace("<N>", N) for n in named for N in ("200", "400")}
    assert named == names, (named, names)
    gaps = linvae.io.load(tmp_path / "cmp" / "compare_gaps.nc")
    assert "exponent_rms" in gaps and gaps.attrs["run_replicas"] == 2
    out = cli_run("-q", "stability", "--beta", "0.5", "--tau", "0.1",
                  "--out", str(tmp_path / "st.json"))
    assert out.returncode == 0, out.stderr
    assert "collapse of factor 0" in out.stdout and "gamma*" in out.stdout
    import json

    res = json.loads((tmp_path / "st.json").read_text())
    assert abs(res["thresholds"]["collapse_0"]["value"] - 2.0) < 1e-3


def test_sweep_shards_cover_the_grid_and_merge(tmp_path: Path) -> None:
    out = tmp_path / "sw"
    base = ("--quiet", "sweep", "--axis", "beta", "0.5", "2.5", "--axis", "N", "200", "400",
            "--t-max", "0.5", "--replicas", "2", "--executor", "serial", "--out", str(out))
    for shard in ("0/2", "1/2"):
        r = cli_run(*base, "--shard", shard)
        assert r.returncode == 0, r.stderr
    assert len(list(out.glob("*.nc"))) == 4
    r = cli_run("--quiet", "sweep", "--merge", "--out", str(out))
    assert r.returncode == 0, r.stderr
    ds = linvae.io.load(out / "merged.nc")
    assert dict(ds.sizes)["beta"] == 2
    assert dict(ds.sizes)["N"] == 2
    assert (ds.status.values == "ok").all()
    # a re-run of a shard finds its points done and recomputes nothing
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.nc") if p.name != "merged.nc"}
    assert cli_run(*base, "--shard", "0/2").returncode == 0
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("*.nc") if p.name != "merged.nc"}
    assert before == after


def test_sweep_bad_shard_is_one_line() -> None:
    r = cli_run("sweep", "--axis", "beta", "0.5", "--shard", "x")
    assert "--shard x: must be i/n" in one_line_error(r)


def _subparsers() -> dict[str, Any]:
    return cli.build_parser()._linvae_subparsers  # type: ignore[attr-defined, no-any-return]


def test_integer_flags_accept_integral_floats() -> None:
    parse = cli._int_flag("N", ge=1)
    for text in ("10000", "1e4", "10_000", "10000.0", "1E4", " 10000 "):
        value = parse(text)
        assert value == 10_000 and type(value) is int, text
    for text, rule in (("1.5", "N must be an integer, got float 1.5"),
                       ("abc", "N must be an integer, got 'abc'"),
                       ("nan", "N must be an integer"), ("inf", "N must be an integer"),
                       ("True", "N must be an integer"), ("0", "N must be >= 1, got 0"),
                       ("-2e3", "N must be >= 1, got -2000")):
        with pytest.raises(argparse.ArgumentTypeError) as info:
            parse(text)
        assert str(info.value) == rule or str(info.value).startswith(rule), (text, info.value)
    # the same rule and wording as the Python API
    with pytest.raises(ValueError, match="seeds must be >= 1, got 0"):
        linvae.simulate(linvae.Params(), N=100, t_max=0.1, seeds=0.0)
    assert cli._int_flag("seed", ge=0)("0") == 0


def test_every_integer_flag_uses_the_shared_parser() -> None:
    # no flag parses integers with plain int (which refuses 1e4); each integer flag
    # (an int default, or a list of them) goes through _int_flag
    for name, sp in _subparsers().items():
        for a in sp._actions:
            assert a.type is not int, (name, a.option_strings)
            default = a.default[0] if isinstance(a.default, list) and a.default else a.default
            if isinstance(default, int) and not isinstance(default, bool):
                assert getattr(a.type, "__name__", "") == "integer", (name, a.option_strings)


def test_integral_floats_on_the_command_line(tmp_path: Path) -> None:
    out = cli_run("-q", "simulate", "--N", "3e2", "--t-max", "0.2", "--seeds", "2.0",
                  "--seed", "1_0", "--threads", "1e0", "--M", "1.0",
                  "--out", str(tmp_path / "r.nc"))
    assert out.returncode == 0, out.stderr
    ds = linvae.io.load(tmp_path / "r.nc")
    assert ds.attrs["N"] == 300 and ds.sizes["replica"] == 2 and ds.attrs["seed"] == 10
    err = one_line_error(cli_run("simulate", "--N", "1.5"))
    assert "error: --N 1.5: must be an integer (see linvae simulate --help)" in err
    err = one_line_error(cli_run("compare", "--Ns", "1e3", "-4000"))
    assert "error: --Ns -4000: must be >= 1" in err
    err = one_line_error(cli_run("sweep", "--replicas", "two"))
    assert "error: --replicas two: must be an integer" in err
    # a config value goes through the same parser
    cfg = tmp_path / "c.toml"
    cfg.write_text("N = 1.5\n")
    err = one_line_error(cli_run("simulate", "--config", str(cfg)))
    assert "N must be an integer, got float 1.5" in err


def test_help_shows_each_default_once() -> None:
    import re

    for name, sp in _subparsers().items():
        text = " ".join(sp.format_help().split())
        assert "(default: None)" not in text, name
        assert "(default: False)" not in text, name
        assert not re.search(r"\(default[^()]*\) \(default", text), name
        for a in sp._actions:
            shown = sp._get_formatter()._get_help_string(a) or ""
            assert shown.count("default:") <= 1, (name, a.option_strings, shown)
            switch = a.nargs == 0  # --quick, --help: nothing to show
            if (a.default is not None and a.default is not argparse.SUPPRESS and not switch
                    and a.help and "default" not in a.help):
                assert "%(default)s" in shown, (name, a.option_strings)  # still shown


def test_help_describes_only_the_starts_a_command_takes() -> None:
    subs = _subparsers()
    for name in ("ode", "compare"):
        text = " ".join(subs[name].format_help().split())
        assert "'random' = W" not in text and "not 'random'" in text, name
    assert "'random' = W, V i.i.d." in " ".join(subs["simulate"].format_help().split())


def test_reproduce_help_states_the_time_the_readme_quotes() -> None:
    """The help and the README's set-up section quote the same measured run times."""
    import re

    text = " ".join(_subparsers()["reproduce"].format_help().split())
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    full = re.search(r"About (\d+) s on 2 cores; --quick about (\d+) s", text)
    assert full is not None, text
    assert f"It takes about {full[1]} s on a two-core machine" in readme
    assert f"`linvae reproduce --quick` about {full[2]} s" in readme
    from linvae.reproduce import FAMILIES

    for family in FAMILIES:
        assert family in text, family


def test_stability_with_fewer_latents_than_factors(tmp_path: Path) -> None:
    out = cli_run("-q", "stability", "--M", "1", "--M-star", "2", "--rho", "2", "1",
                  "--tau", "0.1", "--out", str(tmp_path / "st.json"))
    assert out.returncode == 0, out.stderr
    assert "in parentheses" in out.stdout and "bracket" not in out.stdout
    assert "collapse of factor 0: beta_c = 3  (rho_k + eta = 3)" in out.stdout
    assert "collapse of factor 1: none, no latent of its own (M = 1)" in out.stdout
    import json

    thr = json.loads((tmp_path / "st.json").read_text())["thresholds"]
    assert abs(thr["collapse_0"]["value"] - 3.0) < 1e-6 and "collapse_1" not in thr


def test_stability_prints_and_writes_its_report(tmp_path: Path) -> None:
    import json

    from linvae.stability import stability_report

    out = cli_run("-q", "stability", "--M", "2", "--M-star", "1", "--beta", "0.9", "--tau",
                  "0.2", "--out", str(tmp_path / "st.json"))
    assert out.returncode == 0, out.stderr
    report = stability_report(linvae.Params(M=2, M_star=1, beta=0.9, tau=0.2))
    assert out.stdout == f"{report}\n"
    assert (tmp_path / "st.json").read_text() == json.dumps(report.to_dict(), indent=2)


def test_shared_run_flags_are_declared_once() -> None:
    """A run flag has one default and one help in every command that takes it.

    The exceptions are passed explicitly: compare's 8 replicas and its --method per N; the
    ODE solver's --method is another setting under the same name.
    """
    exceptions = {("compare", "replicas"): 8, ("compare", "method"): ["weights"]}
    seen: dict[str, set[str]] = {}
    for command, sp in _subparsers().items():
        for a in sp._actions:
            if a.dest not in cli.RUN_FLAGS or (command, a.dest) == ("ode", "method"):
                continue
            flag = cli.RUN_FLAGS[a.dest]
            seen.setdefault(a.dest, set()).add(command)
            assert a.option_strings == [cli._flag(a.dest)], (command, a.dest)
            assert a.default == exceptions.get((command, a.dest), flag["default"]), \
                (command, a.dest)
            assert (a.help or "").startswith(flag["help"]), (command, a.dest)
    assert seen["record_every"] == {"simulate", "ode", "compare", "sweep"}
    assert seen["t_max"] == seen["record_every"]
    assert {"simulate", "compare"} <= seen["threads"]
    # every command's own result is named after it
    for command in ("simulate", "ode", "compare", "sweep"):
        out = next(a for a in _subparsers()[command]._actions if a.dest == "out")
        assert str(out.default).startswith(f"linvae-{command}"), command
