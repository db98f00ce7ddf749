"""A sweep pasted into a script and run with ``python file.py`` works as written.

The local pool's workers are spawned; they must not run the caller's script again (an
unguarded script would start the sweep in every worker, and each would die). When the
script itself defines the task, the workers do need it, and an unguarded call is
refused before any worker starts.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import linvae

README_BLOCK = textwrap.dedent("""
    import linvae

    p = linvae.Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.5)
    grid = linvae.Grid(beta=[0.5, 1.0, 1.5, 2.5], N=[200, 300], replicas=2)
    res = linvae.sweep(p, grid, task="simulate", out="runs/phase", t_max=0.5,
                       max_workers=2)
    ds = linvae.open_sweep("runs/phase")     # one dataset with beta and N as dimensions
    print("statuses", sorted(set(ds.status.values.ravel().tolist())), res.failed)
""")

OWN_TASK = textwrap.dedent("""
    import linvae
    import xarray as xr

    def doubled(p, *, x: float = 1.0):
        return xr.Dataset({"y": ((), 2.0 * p.beta_inf * x)})

    linvae.sweeps.register_task("doubled", doubled, replace=True)
    {call}
""")
CALL = ('res = linvae.sweep(linvae.Params(), linvae.Grid(beta=[0.5, 1.0]), task="doubled", '
        'out="runs/own", max_workers=2)\n'
        'print("failed", res.failed)')


def run_script(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "sweep_script.py"
    script.write_text(code)
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=240)


def test_readme_sweep_block_runs_as_a_script_without_a_guard(tmp_path: Path) -> None:
    out = run_script(tmp_path, README_BLOCK)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "statuses ['ok'] 0" in out.stdout
    assert len(out.stderr.splitlines()) < 5, out.stderr[-3000:]
    assert not list((tmp_path / "runs" / "phase").glob("*.error.json"))


def test_a_task_defined_in_an_unguarded_script_is_refused_before_any_worker(
        tmp_path: Path) -> None:
    out = run_script(tmp_path, OWN_TASK.replace("{call}", CALL))
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ValueError: ") and 'if __name__ == "__main__":' in last
    code = OWN_TASK.replace("{call}", CALL).splitlines()
    line = next(i for i, text in enumerate(code, 1) if "linvae.sweep(" in text)
    assert f"sweep_script.py:{line}" in last  # where the call is
    assert not (tmp_path / "runs").exists()  # refused before anything was made
    assert out.stderr.count("Traceback") == 1  # the script's own, not one per worker


def test_a_task_defined_in_a_guarded_script_runs_on_the_pool(tmp_path: Path) -> None:
    guard = 'if __name__ == "__main__":\n' + textwrap.indent(CALL, "    ")
    guarded = OWN_TASK.replace("{call}", guard)
    out = run_script(tmp_path, guarded)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "failed 0" in out.stdout
    ds = linvae.open_sweep(tmp_path / "runs" / "own")
    assert ds.y.values.tolist() == [1.0, 2.0]
