"""Long runs that lose no work and fail early and clearly.

The command line stopped by a signal keeps what it did and says how to go on; a
finished run's checkpoint resumes to its result; every output path is checked before
any work; a failure is one line on stderr with a meaningful exit code; work whose cost
grows fast either reports progress or is refused up front. Children are real processes
at small N, each bounded in time.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import linvae
from linvae import cli
from linvae.errors import IntegrationError, OutputError, TooLargeError

P = linvae.Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.5)
#: about 3 s in one thread
LONG = ["--N", "2000", "--t-max", "150", "--seeds", "2", "--threads", "1", "--seed", "3"]


def start_cli(*args: str) -> subprocess.Popen[str]:
    """``linvae ARGS`` as a child process, returned once its run has begun."""
    proc = subprocess.Popen([sys.executable, "-m", "linvae.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killer = threading.Timer(90, proc.kill)
    killer.start()
    proc.killer = killer  # type: ignore[attr-defined]
    assert proc.stderr is not None
    while "simulating" not in (line := proc.stderr.readline()):
        assert line, f"child ended early ({proc.wait()})"
    time.sleep(0.8)  # into the run loop
    return proc


def finish(proc: subprocess.Popen[str]) -> tuple[int, list[str]]:
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.killer.cancel()  # type: ignore[attr-defined]
    return proc.returncode, [ln for ln in err.splitlines() if ln.strip()]


def one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0] and "cli.py" not in lines[0]
    return lines[0]


# -- 3. Ctrl-C and SIGTERM on the command line ------------------------------------------


def test_cli_ctrl_c_keeps_partial_result_and_prints_the_resume_command(
        tmp_path: Path) -> None:
    out = tmp_path / "run.nc"
    proc = start_cli("simulate", *LONG, "--out", str(out))
    proc.send_signal(signal.SIGINT)
    code, err = finish(proc)
    assert code == 130, err
    (line,) = [ln for ln in err if "stopped" in ln]
    assert "stopped by SIGINT" in line and "resume with: " in line
    assert not out.exists()  # a file under the final name is always complete
    partial = linvae.io.load(tmp_path / "run.partial.nc")
    assert partial.attrs["partial"] == 1 and 0 < partial.sizes["t"] < 1501
    assert (tmp_path / "run.nc.ckpt").exists()

    command = shlex.split(line.split("resume with: ", 1)[1])
    assert command[0] == "linvae"
    assert command[-2:] == ["--resume", str(tmp_path / "run.nc.ckpt")]
    assert cli.main(["-q", *command[1:]]) == 0
    # the checkpoint the user did not ask for and the partial file are gone
    assert not (tmp_path / "run.nc.ckpt").exists()
    assert not (tmp_path / "run.partial.nc").exists()
    assert cli.main(["-q", "simulate", *LONG, "--out", str(tmp_path / "ref.nc")]) == 0
    xr.testing.assert_identical(linvae.io.load(out).drop_attrs(),
                                linvae.io.load(tmp_path / "ref.nc").drop_attrs())


@pytest.mark.parametrize(("sig", "extra", "code"), [
    (signal.SIGTERM, [], 143),
    (signal.SIGUSR1, ["--stop-signal", "USR1"], 138),
])
def test_cli_sigterm_and_requested_sigusr1_stop_like_ctrl_c(
        tmp_path: Path, sig: signal.Signals, extra: list[str], code: int) -> None:
    out, ckpt = tmp_path / "run.nc", tmp_path / "keep.ckpt"
    proc = start_cli("simulate", *LONG, "--out", str(out), "--checkpoint", str(ckpt), *extra)
    proc.send_signal(sig)
    returncode, err = finish(proc)
    assert returncode == code, err
    (line,) = [ln for ln in err if "stopped" in ln]
    assert f"stopped by {sig.name}" in line and f"--resume {ckpt}" in line
    assert ckpt.exists() and (tmp_path / "run.partial.nc").exists()
    meta, _ = linvae.io.load_checkpoint(ckpt)
    assert 0 < meta["s0"] < 2000 * 150


# -- 4. the README's checkpoint example -------------------------------------------------


def test_resuming_a_finished_run_returns_its_result(tmp_path: Path) -> None:
    ckpt = tmp_path / "run.ckpt"
    ds = linvae.simulate(P, N=1000, t_max=1.0, seeds=2, checkpoint=ckpt,
                         checkpoint_every=600, progress=False)
    assert ckpt.exists()  # a short run has written no periodic one: this is the final
    again = linvae.simulate(P, N=1000, t_max=1.0, seeds=2, resume=ckpt, progress=False)
    xr.testing.assert_identical(ds, again)
    stamp = ckpt.stat().st_mtime_ns
    linvae.simulate(P, N=1000, t_max=1.0, seeds=2, resume=ckpt, checkpoint=ckpt,
                    progress=False)
    assert ckpt.stat().st_mtime_ns == stamp  # nothing ran, nothing rewritten


# -- 5. and 9. outputs checked before any work ------------------------------------------


@pytest.mark.parametrize("where", ["folder", "proc", "missing", "special"])
def test_cli_refuses_unwritable_outputs_before_the_run(tmp_path: Path, where: str) -> None:
    target = {"folder": tmp_path, "proc": Path("/proc/x.nc"),
              "missing": tmp_path / "nowhere" / "x.nc", "special": Path("/dev/null")}[where]
    if where == "proc" and not Path("/proc").is_dir():
        pytest.skip("no /proc")
    for flag in ("--out", "--checkpoint"):
        args = ["-q", "simulate", "--N", "200000", "--t-max", "20", flag, str(target)]
        if flag == "--checkpoint":
            args += ["--out", str(tmp_path / "ok.nc")]
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "linvae.cli", *args], capture_output=True,
                             text=True, timeout=60)
        assert time.perf_counter() - t0 < 30  # the run would take hours
        assert out.returncode == 2, out.stderr
        line = one_line(out.stderr)
        assert ".part" not in line and ".probe" not in line
        # the path, or (if long) its start and end around "...", to keep the line short
        shown = line.split(": error: ", 1)[1]
        path = str(target)
        assert path in shown or (path[:8] in shown and path[-10:] in shown), line
    assert not any(p.name.endswith((".part", ".probe")) for p in tmp_path.iterdir())


def test_python_api_checks_outputs_before_allocating(tmp_path: Path) -> None:
    huge = {"N": 10**10, "t_max": 1.0, "seeds": 64, "progress": False}  # no memory for it
    with pytest.raises(MemoryError):
        linvae.simulate(P, **huge)
    with pytest.raises(OutputError, match="is a folder") as info:
        linvae.simulate(P, checkpoint=tmp_path, **huge)
    assert isinstance(info.value, IsADirectoryError)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        linvae.simulate(P, resume=tmp_path / "none.ckpt", **huge)
    ds = linvae.simulate(P, N=100, t_max=0.1, progress=False)
    with pytest.raises(OutputError, match="is a folder"):
        linvae.io.save(ds, tmp_path)
    with pytest.raises(OutputError, match="does not exist") as info:
        linvae.io.save(ds, tmp_path / "nowhere" / "x.nc")
    assert isinstance(info.value, FileNotFoundError)  # what it raised before
    if Path("/proc").is_dir():
        with pytest.raises(OutputError, match="does not accept new files"):
            linvae.io.save(ds, "/proc/x.nc")
    (tmp_path / "file").write_text("")
    for bad in (tmp_path / "file", tmp_path / "file" / "sub"):
        with pytest.raises(OutputError):
            linvae.sweep(P, linvae.Grid(beta=[0.5]), out=bad, N=100, t_max=0.1,
                         executor="serial", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


# -- 6. one line per problem and a meaningful exit code ---------------------------------


def test_every_replica_diverging_is_a_failure_but_the_file_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "div.nc"
    code = cli.main(["-q", "simulate", "--tau", "5", "--N", "2000", "--t-max", "2",
                     "--out", str(out)])
    assert code == 1
    line = one_line(capsys.readouterr().err)
    assert "every replica diverged" in line and str(out) in line
    assert linvae.io.load(out).diverged.all()
    assert not (tmp_path / "div.nc.ckpt").exists()


def test_ode_that_runs_away_fails_fast_in_one_line(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    p = P.replace(tau=5.0)
    t0 = time.perf_counter()
    with pytest.raises(IntegrationError, match="ran away") as info:
        linvae.integrate(p, t_max=20.0)
    assert time.perf_counter() - t0 < 5.0
    assert isinstance(info.value, RuntimeError) and info.value.t < 20.0
    assert not isinstance(info.value, np.linalg.LinAlgError)
    out = tmp_path / "o.nc"
    assert cli.main(["-q", "ode", "--tau", "5", "--out", str(out)]) == 1
    line = one_line(capsys.readouterr().err)
    assert "ran away" in line and "Eigenvalues" not in line
    assert linvae.io.load(tmp_path / "o.partial.nc").attrs["truncated"] == 1
    assert not out.exists()


def test_plot_of_a_merged_sweep_is_one_line(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    linvae.sweep(P, linvae.Grid(beta=[0.5, 1.0], replicas=2), out=tmp_path / "sw", N=200,
                 t_max=0.3, executor="serial", progress=False)
    merged = tmp_path / "merged.nc"
    linvae.io.save(linvae.open_sweep(tmp_path / "sw"), merged)
    assert cli.main(["-q", "plot", str(merged), "--out", str(tmp_path / "m.png")]) == 2
    line = one_line(capsys.readouterr().err)
    assert "merged.nc" in line and "more than one run" in line


def test_warnings_and_internal_errors_are_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(args: object) -> int:
        warnings_module.warn("something odd\nover two lines", RuntimeWarning, stacklevel=1)
        raise IndexError("index 2 is out of bounds")

    import warnings as warnings_module

    monkeypatch.setattr(cli, "cmd_info", broken)
    monkeypatch.delenv("LINVAE_DEBUG", raising=False)
    assert cli.main(["info"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "linvae info: warning: something odd over two lines"
    assert len(err) == 2 and "internal error: IndexError" in err[1]


# -- 7. unbounded work: refused up front, or progress --------------------------------


def test_stability_of_a_huge_model_is_refused_at_once(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    t0 = time.perf_counter()
    assert cli.main(["-q", "stability", "--M", "40", "--M-star", "1"]) == 2
    assert time.perf_counter() - t0 < 10.0
    line = one_line(capsys.readouterr().err)
    assert "--M 40 --M-star 1" in line and "at most 256" in line
    big = linvae.Params(M=40, M_star=1)
    for call in (linvae.fixed_points, linvae.collapse_threshold, linvae.stability.noise_threshold,
                 linvae.stability.convergence_time, linvae.stability.step_size_limit):
        with pytest.raises(TooLargeError):
            call(big)
    with pytest.raises(ValueError, match="starting roles"):  # combinatorial starts
        linvae.fixed_points(linvae.Params(M=8, M_star=8))
    linvae.fixed_points(linvae.Params(M=3, M_star=2))  # well inside: still runs


def test_runs_without_a_terminal_log_progress_and_time_to_go(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    sim = sys.modules["linvae.simulation"]
    monkeypatch.setattr(sim, "_LOG_EVERY", 0.0)
    with caplog.at_level(logging.INFO, logger="linvae.simulation"):
        linvae.simulate(P, N=2000, t_max=5.0, progress=True)  # stderr is no terminal here
    lines = [r.getMessage() for r in caplog.records if "to go" in r.getMessage()]
    assert lines and "t = " in lines[0] and "of 5" in lines[0]
    with caplog.at_level(logging.INFO, logger="linvae.stability"):
        linvae.stability.step_size_limit(P.replace(tau=0.2), rtol=0.05)
    assert any("bisection steps to go" in r.getMessage() for r in caplog.records)


def test_cli_runs_sigterm_like_ctrl_c_outside_simulate(tmp_path: Path) -> None:
    # ode has no checkpoint; SIGTERM still unwinds like Ctrl-C, status 143, no .part left
    proc = subprocess.Popen([sys.executable, "-c", (
        "import sys, time, linvae.cli as c\n"
        "c.cmd_info = lambda a: (print('ready', flush=True), time.sleep(30))[0]\n"
        "sys.exit(c.main(['info']))")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143
    assert one_line(err) == "linvae info: interrupted by SIGTERM"


def test_cli_does_not_overwrite_the_checkpoint_of_a_stopped_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "run.nc.ckpt").write_bytes(b"state of a stopped run")
    code = cli.main(["-q", "simulate", "--N", "200", "--t-max", "0.2", "--out",
                     str(tmp_path / "run.nc")])
    assert code == 2
    assert "--resume" in one_line(capsys.readouterr().err)
    assert (tmp_path / "run.nc.ckpt").read_bytes() == b"state of a stopped run"


def test_cli_stopped_while_writing_the_result_keeps_the_finished_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run.nc"
    args = ["-q", "simulate", "--N", "300", "--t-max", "1", "--seeds", "2", "--out", str(out)]

    def stopped(*a: object) -> int:
        raise KeyboardInterrupt

    with monkeypatch.context() as mp:
        mp.setattr(cli, "_save_result", stopped)
        assert cli.main(args) == 130
    line = one_line(capsys.readouterr().err)
    assert "interrupted by SIGINT" in line and "go on with: " in line
    assert (tmp_path / "run.nc.ckpt").exists() and not out.exists()
    command = shlex.split(line.split("go on with: ", 1)[1])
    assert cli.main(command[1:]) == 0  # the finished run is written at once
    assert not (tmp_path / "run.nc.ckpt").exists()
    ref = linvae.simulate(P, N=300, t_max=1.0, seeds=2, progress=False)
    xr.testing.assert_identical(linvae.io.load(out)[list(ref.data_vars)].drop_attrs(),
                                ref.drop_attrs())
