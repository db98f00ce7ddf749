// Build information: what `linvae info` reports.
#include <string>

#include <Eigen/Core>
#include <pybind11/pybind11.h>

#include "linvae/engine.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace py = pybind11;

void register_info(py::module_& m) {
    m.def("build_info", [] {
        py::dict info;
#ifdef _OPENMP
        info["openmp"] = true;
        info["max_threads"] = omp_get_max_threads();
#else
        info["openmp"] = false;
        info["max_threads"] = 1;
#endif
        info["eigen"] = std::to_string(EIGEN_WORLD_VERSION) + "." +
                        std::to_string(EIGEN_MAJOR_VERSION) + "." +
                        std::to_string(EIGEN_MINOR_VERSION);
#if defined(__AVX512F__)
        info["simd"] = "avx512";
#elif defined(__AVX2__)
        info["simd"] = "avx2";
#elif defined(__SSE2__)
        info["simd"] = "sse2";
#else
        info["simd"] = "scalar";
#endif
#ifdef LINVAE_NATIVE
        info["native"] = true;
#else
        info["native"] = false;
#endif
#if defined(__clang__)
        info["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
        info["compiler"] = std::string("gcc ") + __VERSION__;
#else
        info["compiler"] = "unknown";
#endif
#ifdef LINVAE_HAVE_AVX2_PATH
        info["simd_runtime"] =
            linvae::active_simd_path() == linvae::SimdPath::kAvx2 ? "avx2" : "scalar";
#else
        info["simd_runtime"] = "scalar";
#endif
        info["block"] = linvae::kBlock;
        info["max_latents"] = linvae::kMaxLatents;
        return info;
    }, "Compiler, SIMD level, OpenMP and Eigen versions of this build.");

    m.def("set_simd_path", [](const std::string& name) {
#ifdef LINVAE_HAVE_AVX2_PATH
        if (name == "avx2" && !linvae::cpu_has_avx2_path())
            throw py::value_error("this CPU has no AVX2 and FMA");
        if (name != "avx2" && name != "scalar")
            throw py::value_error("simd path must be 'avx2' or 'scalar'");
        linvae::active_simd_path() = name == "avx2" ? linvae::SimdPath::kAvx2 : linvae::SimdPath::kScalar;
#else
        if (name != "scalar") throw py::value_error("this build has only the scalar path");
#endif
    }, py::arg("name"), "Choose the generator's code path (tests and benchmarks; both give the same numbers).");
}
