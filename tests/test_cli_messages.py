"""What the command line says: one-line errors naming flag, value and rule, checked before
any work; the stability report's text; `linvae info`'s SIMD line; reproduce's divergence
warnings. In-process (linvae.cli.main), so each test is fast."""

from __future__ import annotations

import importlib
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

import linvae
from linvae import cli
from linvae.errors import DivergenceWarning

#: What each command's work starts with: none of them may run for a bad command line
WORK = ("linvae.simulation.simulate", "linvae.ode.integrate", "linvae.comparison.run_compare",
        "linvae.stability.stability_report", "linvae.plot.plot_result",
        "linvae.finite_n.predicted_spread", "linvae.reproduce.reproduce",
        "linvae.sweeps.sweep")


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Record (and refuse) every start of a command's work; run in an empty folder."""
    started: list[str] = []
    for target in WORK:  # import every module first, so that none keeps a stand-in
        importlib.import_module(target.rpartition(".")[0])
    for target in WORK:
        def refuse(*args: Any, _name: str = target, **kwargs: Any) -> Any:
            started.append(_name)
            raise AssertionError(f"{_name} started")

        monkeypatch.setattr(target, refuse)
    monkeypatch.chdir(tmp_path)
    return started


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # a mistake argparse finds ends as it does on the command line
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def error_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run a bad command line; return its one error line (exit code 2, under 120 chars)."""
    code, out, err = run(argv, capsys)
    assert code == 2, (argv, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    command = next(a for a in argv if not a.startswith("-"))
    assert line.startswith(f"linvae {command}: error: "), line
    assert len(line) < 120, (len(line), line)
    assert "Traceback" not in err and out == ""
    return line


BAD: list[tuple[list[str], str]] = [
    # simulate: the values, the relations between them, the engine's limits, the memory
    (["simulate", "--N", "500", "--t-max", "nan"], "--t-max nan: must be finite"),
    (["simulate", "--N", "500", "--t-max", "-1"], "--t-max -1: must be > 0"),
    (["simulate", "--N", "500", "--record-every", "0"], "--record-every 0: must be > 0"),
    (["simulate", "--N", "1e12"], "--N 1e12 --seeds 4: the weights need"),
    (["simulate", "--N", "0"], "--N 0: must be >= 1 (see linvae simulate --help)"),
    (["simulate", "--beta", "-1"], "--beta -1: must be >= 0 (see linvae simulate --help)"),
    (["simulate", "--beta=-1"], "--beta -1: must be >= 0"),
    (["simulate", "--rho", "1", "2"],
     "--rho 1 2: needs one value, or one per factor (--M-star 1)"),
    (["simulate", "--M-star", "2", "--rho", "1", "-1"], "--rho 1 -1: every value must be >= 0"),
    (["simulate", "--t-max", "1", "--record-every", "30"],
     "--record-every 30: must be <= --t-max (1)"),
    (["simulate", "--N", "2", "--init", "overlap"], "--N 2: must be >= M* + 2M = 3"),
    (["simulate", "--M", "100", "--M-star", "100"], "--M 100: must be <= "),
    (["simulate", "--N", "1e18", "--t-max", "1e3"], "--t-max 1e3 --N 1e18: 1e+21 steps"),
    (["simulate", "--method", "gram", "--noise", "laplace"],
     "--method gram: needs Gaussian noise and factors, got --noise laplace"),
    (["simulate", "--noise", "student_t"], "--noise student_t: needs --noise-df"),
    (["simulate", "--noise", "cauchy"], "--noise cauchy: must be one of gaussian, rademacher"),
    (["simulate", "--checkpoint-every", "-1"], "--checkpoint-every -1: must be >= 0"),
    (["simulate", "--resume", "gone.ckpt"], "--resume gone.ckpt: does not exist"),
    (["simulate", "--init-from", "gone.nc"], "--init-from gone.nc: does not exist"),
    (["simulate", "--out", "missing/r.nc"], "--out missing/r.nc: its folder does not exist"),
    (["simulate", "--gamma", "0", "--anneal", "tanh"], "--gamma 0: must be > 0"),
    (["simulate", "--t-ma", "nan"], "--t-max nan: must be finite"),  # an abbreviation
    (["simulate", "--N", "1.5"], "--N 1.5: must be an integer"),
    (["simulate", "--beta", "abc"], "--beta abc: must be a real number"),
    (["simulate", "--no-such", "3"], "--no-such 3: not an option or argument of linvae simulate"),
    # ode
    (["ode", "--t-max", "nan"], "--t-max nan: must be finite"),
    (["ode", "--record-every", "0"], "--record-every 0: must be > 0"),
    (["ode", "--rtol", "0"], "--rtol 0: must be > 0"),
    (["ode", "--eta", "0"], "--eta 0: must be > 0"),
    # compare
    (["compare", "--Ns", "1000"], "--Ns 1000: must hold at least two distinct N"),
    (["compare", "--t-max", "-1"], "--t-max -1: must be > 0"),
    (["compare", "--Ns", "1e12", "1e3"], "--Ns 1e12 --replicas 8: the weights need"),
    (["compare", "--Ns", "2", "1000"], "--Ns 2: must be >= M* + 2M = 3"),
    (["compare", "--Ns", "1e3", "-4000"], "--Ns -4000: must be >= 1"),
    (["compare", "--method", "gram", "weights"], "--method gram weights: needs one method"),
    # stability: a size refused up front, in one short line
    (["stability", "--M", "11", "--M-star", "1"],
     "--M 11 --M-star 1: 286 state entries; the fixed-point search takes at most 256"),
    (["stability", "--lam", "-1"], "--lam -1: must be >= 0"),
    (["stability", "--out", "missing/st.json"], "--out missing/st.json: its folder does not"),
    # plot
    (["plot", "gone.nc"], "file gone.nc: does not exist"),
    (["plot"], "file: missing (required)"),
    # reproduce
    (["reproduce", "--threads", "0"], "--threads 0: must be >= 1"),
    (["reproduce", "--only", "nothing"], "--only nothing: must be one of sgd_vs_ode, collapse"),
    # sweep
    (["sweep", "--axis", "beta", "-1", "0.5"], "--axis beta -1: must be >= 0"),
    (["sweep", "--axis", "N", "0"], "--axis N 0: must be >= 1"),
    (["sweep", "--axis", "beta", "1", "--t-max", "nan"], "--t-max nan: must be finite"),
    (["sweep", "--axis", "beta", "1", "--shard", "x"], "--shard x: must be i/n"),
    (["sweep", "--axis", "beta", "1", "--shard", "2/2"], "--shard 2/2: must be i/n with 0 <= i"),
    (["sweep"], "--axis: needs at least one grid axis"),
    (["sweep", "--axis", "beta", "1", "--beta", "-1"], "--beta -1: must be >= 0"),
]


@pytest.mark.parametrize(("argv", "expected"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_naming_flag_value_and_rule_before_any_work(
        argv: list[str], expected: str, no_work: list[str],
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="linvae")
    line = error_line(argv, capsys)
    assert expected in line, line
    assert line.endswith("--help)"), line
    # nothing started: no start line ("simulating ...", "integrating ...", ...), no work
    assert not [r.getMessage() for r in caplog.records if r.name.startswith("linvae")]
    assert no_work == []
    assert [p.name for p in Path().iterdir()] == []  # no output, checkpoint or folder


def test_start_line_comes_after_the_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str],
                                           caplog: pytest.LogCaptureFixture) -> None:
    # a good command line says what it starts, then runs
    caplog.set_level(logging.INFO, logger="linvae")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["ode", "--t-max", "0.5", "--out", "o.nc"]) == 0
    messages = [r.getMessage() for r in caplog.records if r.name == "linvae"]
    assert messages[0].startswith("integrating the ODEs for Params(") and "t = 0.5" in messages[0]
    assert (tmp_path / "o.nc").is_file()


def test_a_value_from_the_config_names_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                no_work: list[str],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c.toml").write_text("[model]\nbeta = -1.0\n")
    line = error_line(["simulate", "--config", "c.toml"], capsys)
    assert "error: --beta -1 (from c.toml): must be >= 0" in line
    # the command line wins over the file, and then the file is not blamed
    line = error_line(["simulate", "--config", "c.toml", "--beta", "-2"], capsys)
    assert "error: --beta -2: must be >= 0" in line
    (tmp_path / "bad.toml").write_text("[model]\nbetta = 1.0\n")
    line = error_line(["simulate", "--config", "bad.toml"], capsys)
    assert line.startswith("linvae simulate: error: --config bad.toml: unknown key 'betta'")


def test_library_names_map_to_flags(capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli.build_parser()
    sub = parser._linvae_subparsers["simulate"]  # type: ignore[attr-defined]
    argv = ["simulate", "--M-star", "0", "--noise-df", "5", "--t-max", "1e3"]
    context = cli._Context("linvae simulate", sub, argv)
    # a parameter x is the flag --x, underscores as dashes, with the value as typed
    for message, line in (
            ("M_star must be >= 1, got 0", "--M-star 0: must be >= 1"),
            (("noise_df applies to noise='student_t' only, got noise_df=5.0 with "
             "noise='gaussian'"), "--noise-df 5: applies to --noise student_t only"),
            ("t_max must be finite, got inf", "--t-max 1e3: must be finite"),
            ("record_every must be <= t_max=1000, got 2000.0",
             "--record-every: must be <= --t-max 1000"),
    ):
        got = context.error(ValueError(message))
        assert line in got, (message, got)
        assert got.endswith("(see linvae simulate --help)") and len(got) < 120
    # a message about no flag stays as it is, without the pointer to --help
    got = context.error(ValueError("the sweep is started at the top level of the script"))
    assert got == "linvae simulate: error: the sweep is started at the top level of the script"


def test_python_errors_keep_their_wording() -> None:
    # the library's exceptions, for Python users, name the parameter and the value
    with pytest.raises(ValueError, match=r"^beta must be >= 0, got -1\.0$"):
        linvae.Params(beta=-1)
    with pytest.raises(ValueError, match=r"^rho must have shape \(1,\), got shape \(2,\)$"):
        linvae.Params(rho=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"^t_max must be finite, got nan$"):
        linvae.simulate(linvae.Params(), N=100, t_max=float("nan"))


def test_long_lines_are_fitted() -> None:
    # a long value is cut in its middle, a long rule loses its trailing clauses and asides
    line = cli._error_line("linvae simulate", "--out /tmp/" + "x" * 200 + ".nc",
                           "its folder does not accept new files (Read-only file system), so "
                           "the output cannot be written there")
    assert line == (f"linvae simulate: error: --out /tmp/{'x' * 13}...{'x' * 10}.nc: its "
                    "folder does not accept new files (see --help)")
    line = cli._error_line("linvae simulate", "--out /tmp/x.nc",
                           "its folder does not accept new files (Read-only file system), so "
                           "the output cannot be written there")
    assert line == ("linvae simulate: error: --out /tmp/x.nc: its folder does not accept new "
                    "files (Read-only file system) (see --help)")
    line = cli._error_line("linvae reproduce", "--only nothing",
                           "must be one of " + ", ".join(f"family_{i}" for i in range(20)))
    assert len(line) < 120 and line.endswith(", ... (see --help)")


def test_stability_text(no_work: list[str], monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    from linvae.stability import report

    monkeypatch.setattr("linvae.stability.stability_report", report.stability_report)
    code, out, _ = run(["-q", "stability"], capsys)  # M = M* = 1
    assert code == 0 and "collapse of factor 0: beta_c = 2" in out
    assert "superfluous" not in out  # no superfluous latent: nothing said about one
    assert max(map(len, out.splitlines())) < 120
    code, out, _ = run(["-q", "stability", "--M", "2", "--M-star", "2", "--rho", "2", "1",
                        "--beta", "0.9"], capsys)
    assert code == 0 and "superfluous" not in out
    lines = out.splitlines()
    assert max(map(len, lines)) < 120
    # matrix rows aligned: the second row's "[" under the first row's second "["
    first = lines.index("    m = [[1.477  0.    ]")
    assert lines[first + 1] == "         [0.     1.0552]]"
    code, out, _ = run(["-q", "stability", "--M", "2", "--M-star", "1", "--beta", "0.9",
                        "--tau", "0.2"], capsys)
    assert code == 0
    assert "  superfluous latent stops fitting noise: beta = " in out


def test_info_says_which_simd_path_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from linvae import _core

    code, out, _ = run(["info"], capsys)
    assert code == 0
    simd = [ln for ln in out.splitlines() if ln.strip().startswith("simd")]
    assert len(simd) == 1 and "(in use" in simd[0], out
    info = _core.build_info()
    if info["simd_runtime"] != "scalar":
        assert simd[0] == (f"  simd: {info['simd_runtime']} (in use; compiled baseline "
                           f"{info['simd']})")
    assert cli._simd({"simd": "sse2", "simd_runtime": "avx2"}) == \
        "avx2 (in use; compiled baseline sse2)"
    assert cli._simd({"simd": "avx2", "simd_runtime": "avx2"}) == "avx2 (in use)"
    assert cli._simd({"simd": "sse2", "simd_runtime": "scalar"}).startswith(
        "sse2 (in use; the AVX2 kernels are off")


# -- reproduce: divergences named by family and point ----------------------------------

def _run_of(diverged: list[bool]) -> xr.Dataset:
    return xr.Dataset({"diverged": ("replica", np.array(diverged)),
                       "t_diverged": ("replica", np.where(diverged, 0.5, np.nan)),
                       "divergence": ("replica", np.array(["D <= 0" if d else "" for d in
                                                            diverged]))})


def test_divergence_notes_name_family_data_and_point() -> None:
    from linvae.reproduce.universality import divergence_notes, expects_divergence

    heavy = {"noise": "student_t", "noise_df": 2.5}
    assert expects_divergence(heavy) and not expects_divergence({"noise": "student_t",
                                                                 "noise_df": 3.0})
    runs = [(250, _run_of([True, False, True])), (1000, _run_of([False] * 3)),
            (4000, _run_of([True, False, False]))]
    # where divergence is the finding: once for the family, with the count per N
    (note,) = divergence_notes("student_t ν=2.5", heavy, runs)
    assert note == ("universality, student_t nu=2.5 (noise=student_t, noise_df=2.5): 3 of 9 "
                    "replicas diverged (N=250: 2, N=4000: 1), as expected for nu < 8/3; they "
                    "are left out of the fits")
    # elsewhere: once per point that had one, naming N and the data options
    notes = divergence_notes("laplace", {"noise": "laplace"}, runs)
    assert notes == [
        ("universality, laplace (noise=laplace), N=250: 2 of 3 replicas diverged (replica 0 at "
        "t = 0.5: D <= 0); they are left out of the fits"),
        ("universality, laplace (noise=laplace), N=4000: 1 of 3 replicas diverged (replica 0 "
        "at t = 0.5: D <= 0); they are left out of the fits")]
    assert divergence_notes("gaussian", {}, [(250, _run_of([False] * 3))]) == []


def test_universality_warns_per_family_and_point(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from linvae.reproduce import _run_family, get, universality

    # a step size at which the heavy tails diverge within the tiny settings (fixed seeds)
    monkeypatch.setattr(universality, "P", universality.P.replace(tau=1.5))
    monkeypatch.setattr(universality, "DATA_FAMILIES", (
        ("student_t ν=2.5", {"noise": "student_t", "noise_df": 2.5}),
        ("student_t ν=3", {"noise": "student_t", "noise_df": 3.0})))
    family = get("universality")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fam = _run_family(family, tmp_path, family.settings("tiny"), False, 1)
    assert fam.ok, fam.error
    texts = [str(w.message) for w in caught if issubclass(w.category, DivergenceWarning)]
    assert texts, "no divergence at tau = 1.5"
    # no bare per-replica warning: each names the family, the data options and the point
    assert all(t.startswith("universality, student_t nu=") for t in texts), texts
    expected = [t for t in texts if "noise_df=2.5" in t]
    assert len(expected) <= 1 and all("as expected for nu < 8/3" in t for t in expected)
    others = [t for t in texts if "noise_df=3" in t]
    assert all(", N=" in t and "replicas diverged (replica " in t for t in others), others
    # the data count the same divergences
    ds = linvae.io.load(tmp_path / "universality.nc")
    assert int(ds["diverged"].sum()) >= len(texts)


def test_runner_names_the_family_of_other_warnings(tmp_path: Path) -> None:
    from linvae.reproduce import _attributed

    with warnings.catch_warnings(record=True) as raw:
        warnings.simplefilter("always")
        for r in (3, 7):
            warnings.warn(f"replica {r} diverged at t = 1.5 (D <= 0); it was stopped, its "
                          f"later records are NaN, and the other replicas went on",
                          DivergenceWarning, stacklevel=1)
        warnings.warn("all 4 replicas diverged at N=100; its gaps are NaN", RuntimeWarning,
                      stacklevel=1)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        _attributed("fluctuations", raw)
    texts = [str(w.message) for w in shown]
    assert texts == ["fluctuations: all 4 replicas diverged at N=100; its gaps are NaN",
                     ("fluctuations: 2 replica(s) diverged in its runs, the first replica 3 "
                     "diverged at t = 1.5 (D <= 0); their records after it are NaN")]
