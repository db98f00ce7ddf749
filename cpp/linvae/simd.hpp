// SIMD dispatch: which vector code this build has, and which one this CPU runs.
//
// With GCC or Clang on x86-64 the build carries an AVX2 path (functions marked
// LINVAE_AVX2, compiled for AVX2 + FMA whatever the build's -march) next to the scalar
// one, and picks between them once at run time from the CPU. Both give the same bits:
// the scalar path rounds the same fused expressions with std::fma. Everything that has
// AVX2 code guards it with LINVAE_HAVE_AVX2_PATH.
#pragma once

#include <cstdlib>
#include <string>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define LINVAE_HAVE_AVX2_PATH 1
// Every AVX2 CPU has FMA; the dispatch asks the CPU for both.
#define LINVAE_AVX2 __attribute__((target("avx2,fma")))
#endif

namespace linvae {

#ifdef LINVAE_HAVE_AVX2_PATH
// Whether this CPU can run the LINVAE_AVX2 code.
inline bool cpu_has_avx2_path() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

// Which path runs: decided once, overridable for tests (LINVAE_SIMD=scalar, or
// linvae._core.set_simd_path).
enum class SimdPath { kScalar, kAvx2 };
inline SimdPath& active_simd_path() {
    static SimdPath path = [] {
        const char* env = std::getenv("LINVAE_SIMD");
        if (env != nullptr && std::string(env) == "scalar") return SimdPath::kScalar;
        return cpu_has_avx2_path() ? SimdPath::kAvx2 : SimdPath::kScalar;
    }();
    return path;
}
#endif

}  // namespace linvae
