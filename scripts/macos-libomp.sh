#!/usr/bin/env bash
# Build LLVM's OpenMP runtime (libomp) for macOS wheels: scripts/macos-libomp.sh PREFIX
#
# Apple clang compiles OpenMP (-Xclang -fopenmp) but ships no runtime, and Homebrew's
# libomp is built for the runner's own macOS version, too new for a wheel meant to run on
# older systems. This builds libomp from the LLVM release sources for
# MACOSX_DEPLOYMENT_TARGET (cibuildwheel sets it: 10.15 on x86_64, 11.0 on arm64) and the
# machine's architecture, into PREFIX/{include,lib}; CMake then finds it through
# OpenMP_ROOT=PREFIX and delocate copies PREFIX/lib/libomp.dylib into the wheel.
# cibuildwheel runs it once per runner as before-all (pyproject.toml, [tool.cibuildwheel.macos]).
#
# Without it the build still succeeds, without OpenMP: replicas then run on one thread.
set -euo pipefail
prefix=${1:?usage: scripts/macos-libomp.sh PREFIX}
version=${LINVAE_LIBOMP_VERSION:-19.1.7}
target=${MACOSX_DEPLOYMENT_TARGET:-11.0}
arch=$(uname -m)

if [ -f "$prefix/lib/libomp.dylib" ]; then
  echo "libomp already in $prefix"; exit 0
fi
src=$(mktemp -d "${TMPDIR:-/tmp}/libomp.XXXXXX")
trap 'rm -rf "$src"' EXIT
url=https://github.com/llvm/llvm-project/releases/download/llvmorg-$version
# a standalone build of openmp/ needs the shared CMake modules of llvm-project (cmake/)
for part in openmp cmake; do
  curl -fsSL --retry 3 "$url/$part-$version.src.tar.xz" -o "$src/$part.tar.xz"
  mkdir "$src/$part"
  tar -xf "$src/$part.tar.xz" -C "$src/$part" --strip-components 1
done
cmake -S "$src/openmp" -B "$src/build" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$prefix" \
  -DCMAKE_INSTALL_NAME_DIR="$prefix/lib" \
  -DCMAKE_OSX_ARCHITECTURES="$arch" \
  -DCMAKE_OSX_DEPLOYMENT_TARGET="$target" \
  -DLIBOMP_INSTALL_ALIASES=OFF \
  -DLIBOMP_OMPD_SUPPORT=OFF \
  -DOPENMP_ENABLE_OMPT_TOOLS=OFF
cmake --build "$src/build" --parallel "$(sysctl -n hw.ncpu)"
cmake --install "$src/build"
otool -L "$prefix/lib/libomp.dylib"
otool -l "$prefix/lib/libomp.dylib" | grep -A3 -E 'LC_BUILD_VERSION|LC_VERSION_MIN' || true
