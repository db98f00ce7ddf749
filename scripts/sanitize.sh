#!/usr/bin/env bash
# Build the engine with AddressSanitizer + UndefinedBehaviorSanitizer into a temporary
# directory (never into src/linvae) and run the engine-level tests against that build.
#
#   scripts/sanitize.sh [build-dir]        # default: a fresh mktemp -d directory
#
# Python itself is not instrumented, so libasan is preloaded; leak detection is off
# because CPython keeps allocations alive until exit by design. Any ASan/UBSan report
# aborts the process (halt_on_error), so a clean exit code means a clean run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

build=${1:-$(mktemp -d "${TMPDIR:-/tmp}/linvae-sanitize.XXXXXX")}
mkdir -p "$build"
pybind11_dir=$(python -m pybind11 --cmakedir)
site=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
gen=()
command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)

echo "sanitize: building in $build"
cmake -S "$root" -B "$build" "${gen[@]}" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSKBUILD_PROJECT_NAME=linvae -DSKBUILD_PROJECT_VERSION=0.0.0 \
  -DPython_EXECUTABLE="$(command -v python)" \
  -Dpybind11_DIR="$pybind11_dir" -DCMAKE_PREFIX_PATH="$site" \
  -DLINVAE_SANITIZE=ON >"$build/configure.log"
cmake --build "$build" --parallel "$(nproc)" >"$build/build.log"

# A package directory that holds the Python sources of this tree and the sanitized _core.
pkg="$build/pkg"
rm -rf "$pkg" && mkdir -p "$pkg"
cp -r "$root/src/linvae" "$pkg/linvae"
rm -f "$pkg"/linvae/_core*.so
cp "$build"/_core*.so "$pkg/linvae/"

libasan=$(gcc -print-file-name=libasan.so)
libubsan=$(gcc -print-file-name=libubsan.so)
export LD_PRELOAD="$libasan:$libubsan"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1"
export PYTHONPATH="$pkg"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
python -c "import linvae, linvae._core as c; assert '$pkg' in linvae.__file__, linvae.__file__; print('sanitize: using', linvae._core.__file__)"
python -m pytest -p no:cacheprovider -q -x "$root/tests/test_engine.py" "$root/tests/test_rng.py" \
  --rootdir "$root" -c "$root/pyproject.toml"
echo "sanitize: clean (ASan + UBSan, engine and rng tests)"
