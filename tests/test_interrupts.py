"""Stop signals at random instants, delivered to real child processes.

Whatever instant a signal lands (inside the compiled engine, between chunks, during a
checkpoint write, twice in a row), the checkpoint written on the way out must describe
one consistent state: the run resumed from it is bit-identical to an uninterrupted one.
SIGTERM (and SIGUSR1 when asked) must stop a run like Ctrl-C, with the conventional
exit status when left uncaught. Every child is bounded in time and runs at small N.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

import linvae

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

P = linvae.Params(M=2, M_star=1, rho=1.5, eta=1.0, beta=linvae.schedules.Tanh(0.8, 0.5),
                  lam=0.05, tau=0.5)
#: about 0.3 s of engine work in chunks of about 25 ms
RUN: dict[str, Any] = {"N": 1500, "t_max": 40.0, "record_every": 0.1, "seeds": 2,
                       "seed": 7, "threads": 1}

# One child process runs many trials, so that Python's start-up is paid once. For each
# it waits for "go", says "start k", runs simulate (checkpoint on stop only, or after
# every chunk) and reports how the run ended; a signal that comes after the run (a late
# second one) is caught by the child's own handler and reported, which also shows that
# simulate restored it.
CHILD = textwrap.dedent("""
    import json, signal, sys, time
    import linvae
    import linvae.simulation  # load everything before the parent's signals come

    late = []
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(s, lambda signum, frame: late.append(signum))
    P = linvae.Params(M=2, M_star=1, rho=1.5, eta=1.0,
                      beta=linvae.schedules.Tanh(0.8, 0.5), lam=0.05, tau=0.5)
    cfg = json.loads(sys.argv[1])
    # pay the first call's one-off costs (lazy imports, thread start-up) before trial 0,
    # whose duration sets the range of the random instants
    linvae.simulate(P, N=50, t_max=0.1, progress=False, threads=1)
    for k, every in enumerate(cfg["every"]):
        assert sys.stdin.readline().strip() == "go"
        ckpt = f"{cfg['dir']}/run{k}.ckpt"
        print(f"start {k}", flush=True)
        t0 = time.perf_counter()
        try:
            linvae.simulate(P, checkpoint=ckpt, checkpoint_every=every, progress=False,
                            stop_signals=("SIGTERM", "SIGUSR1"), **cfg["run"])
            report = f"done {k} {time.perf_counter() - t0:.4f}"
        except linvae.errors.SimulationInterrupted as exc:
            report = f"stopped {k} {exc.signal} {exc.t!r} {exc.exit_code}"
        time.sleep(0.05)  # let a late second signal arrive
        print(report, "late", *late, flush=True)
        late.clear()
""")


class Child:
    """A child process read line by line, killed if it outlives ``timeout`` seconds."""

    def __init__(self, args: list[str], timeout: float) -> None:
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.watchdog = threading.Timer(timeout, self.proc.kill)
        self.watchdog.start()

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def line(self) -> str:
        assert self.proc.stdout is not None and self.proc.stderr is not None
        out = self.proc.stdout.readline()
        assert out, f"child ended early: {self.proc.wait()} {self.proc.stderr.read()}"
        return out.strip()

    def finish(self) -> tuple[int, str]:
        try:
            _, err = self.proc.communicate(timeout=60)
        finally:
            self.watchdog.cancel()
        return self.proc.returncode, err


@pytest.fixture(scope="module")
def reference() -> xr.Dataset:
    return linvae.simulate(P, progress=False, **RUN)


def test_stop_signals_at_random_instants_resume_bit_identically(
        tmp_path: Path, reference: xr.Dataset) -> None:
    rng = np.random.default_rng(20240601)
    n_trials = 16
    # checkpoint only on the way out, or after every chunk (signals land in the writes)
    every = [1e9 if k % 2 else 0.0 for k in range(n_trials + 1)]
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    cfg = {"dir": str(tmp_path), "run": RUN, "every": every}
    child = Child([sys.executable, str(script), json.dumps(cfg)], timeout=150)
    child.send("go")
    assert child.line() == "start 0"
    kind, _, seconds, *_ = child.line().split()
    assert kind == "done"
    duration = float(seconds)  # trial 0 runs uninterrupted: the time of a whole run
    outcomes = []
    for k in range(1, n_trials + 1):
        child.send("go")
        assert child.line() == f"start {k}"
        sig = [signal.SIGINT, signal.SIGTERM, signal.SIGUSR1][k % 3]
        delay = rng.uniform(0.0, duration)
        time.sleep(delay)
        child.proc.send_signal(sig)
        if k % 4 == 0:  # a second signal right behind the first, as an impatient user
            time.sleep(rng.uniform(0.0, 0.02))
            child.proc.send_signal(signal.SIGINT)
        outcomes.append((k, sig, delay, child.line()))
    code, err = child.finish()
    assert code == 0, err

    stopped = 0
    for k, sig, _delay, report in outcomes:
        ckpt = tmp_path / f"run{k}.ckpt"
        assert ckpt.exists(), (k, report)
        if report.startswith("stopped"):
            _, _, signum, t, exit_code, *_ = report.split()
            # two signals pending at once are handled in signal-number order
            sent = {sig, signal.SIGINT} if k % 4 == 0 else {sig}
            assert int(signum) in sent and int(exit_code) == 128 + int(signum), report
            assert 0.0 <= float(t) <= RUN["t_max"]
            stopped += 1
        else:
            assert report.startswith("done"), report
        resumed = linvae.simulate(P, resume=ckpt, progress=False, **RUN)
        # bit for bit: assert_identical compares the float values exactly
        xr.testing.assert_identical(reference.drop_attrs(), resumed.drop_attrs())
    assert stopped >= n_trials // 2, outcomes  # most signals landed during a run


UNCAUGHT = textwrap.dedent("""
    import sys
    import linvae
    import linvae.simulation  # load everything before the parent's signals come

    P = linvae.Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.5)
    print("start", flush=True)
    linvae.simulate(P, N=2000, t_max=1000.0, seeds=1, threads=1, progress=False,
                    checkpoint=sys.argv[1], stop_signals=sys.argv[2].split(","))
""")


@pytest.mark.parametrize(("sig", "stop_signals", "code"), [
    (signal.SIGTERM, "SIGTERM", 143),
    (signal.SIGUSR1, "SIGTERM,SIGUSR1", 138),
])
def test_uncaught_termination_writes_the_checkpoint_and_exits_conventionally(
        tmp_path: Path, sig: signal.Signals, stop_signals: str, code: int) -> None:
    script = tmp_path / "job.py"
    script.write_text(UNCAUGHT)
    ckpt = tmp_path / "job.ckpt"
    child = Child([sys.executable, str(script), str(ckpt), stop_signals], timeout=60)
    assert child.line() == "start"
    time.sleep(0.5)
    child.proc.send_signal(sig)
    returncode, err = child.finish()
    assert returncode == code, err
    assert ckpt.exists()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"stopped by {sig.name}" in lines[0] and "resume=" in lines[0]
    meta, _ = linvae.io.load_checkpoint(ckpt)
    assert 0 < meta["s0"] < 2000 * 1000


def test_sigusr1_is_not_a_stop_signal_unless_asked(tmp_path: Path) -> None:
    # without "SIGUSR1" in stop_signals the default action of the signal applies
    script = tmp_path / "job.py"
    script.write_text(UNCAUGHT)
    ckpt = tmp_path / "job.ckpt"
    child = Child([sys.executable, str(script), str(ckpt), "SIGTERM"], timeout=60)
    assert child.line() == "start"
    time.sleep(0.3)
    child.proc.send_signal(signal.SIGUSR1)
    returncode, _ = child.finish()
    assert returncode == -signal.SIGUSR1
    assert not ckpt.exists()


def test_handlers_are_restored_after_a_run() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    linvae.simulate(P, N=200, t_max=0.5, progress=False, stop_signals=("SIGTERM", "SIGUSR1"))
    with pytest.raises(ValueError, match="stop_signals"):
        linvae.simulate(P, N=200, t_max=0.5, progress=False, stop_signals=("SIGKILL",))
    assert {s: signal.getsignal(s) for s in before} == before


KILLED = textwrap.dedent("""
    import json, sys
    import linvae
    import linvae.simulation  # load everything before the parent's signals come

    P = linvae.Params(M=2, M_star=1, rho=1.5, eta=1.0,
                      beta=linvae.schedules.Tanh(0.8, 0.5), lam=0.05, tau=0.5)
    print("start", flush=True)
    linvae.simulate(P, checkpoint=sys.argv[1], checkpoint_every=0.0, progress=False,
                    **json.loads(sys.argv[2]))
""")


@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_during_checkpoint_writes_leaves_a_valid_checkpoint(
        tmp_path: Path, reference: xr.Dataset, seed: int) -> None:
    # SIGKILL cannot be handled: what protects the run is the atomic write of every
    # checkpoint (one per chunk here), so the file is always a complete earlier state
    script = tmp_path / "killed.py"
    script.write_text(KILLED)
    ckpt = tmp_path / "run.ckpt"
    child = Child([sys.executable, str(script), str(ckpt), json.dumps(RUN)], timeout=60)
    assert child.line() == "start"
    deadline = time.monotonic() + 30
    while not ckpt.exists() and time.monotonic() < deadline:  # the first one is written
        time.sleep(0.005)
    time.sleep(np.random.default_rng(seed).uniform(0.0, 0.3))
    child.proc.kill()
    returncode, _ = child.finish()
    if returncode == 0:
        pytest.skip("the run finished before the kill")
    assert returncode == -signal.SIGKILL
    resumed = linvae.simulate(P, resume=ckpt, progress=False, **RUN)
    xr.testing.assert_identical(reference.drop_attrs(), resumed.drop_attrs())
