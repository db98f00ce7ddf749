// Float32 standard normals, two per 64-bit word: the 2048-layer ziggurat of rng.hpp on
// 32-bit halves (11-bit layer, 1 sign bit, 20-bit abscissa), so half the words of the
// float64 stream per normal. A group of eight normals needs the slow path when any of its
// words misses its layer's rectangle: 1.8% of groups (0.23% of words). The price of the
// many layers is the abscissa grid of layer
// i, with step x_i 2^-20 (relative 1e-6), far below anything a simulation sees.
//
// Layout of a fill from the kLanes = 4 lanes of a NormalStream: group g (outputs 8g .. 8g+7)
// takes one word from each lane; output 8g + 2l + h is the low (h = 0) or high (h = 1)
// half of lane l's word. That is exactly the order of the eight 32-bit elements of the four
// words in an AVX2 register, so the vector path needs no shuffle. A last partial group of
// r < 8 outputs uses the words of lanes 0 .. ceil(r/2) - 1 the same way (an unused high
// half is discarded). Rejected outputs of a group are redone in the order l = 0..3, h = 0
// then 1, on lane l's own state, in both paths, so scalar and AVX2 agree bit for bit.
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "rng.hpp"
#include "simd.hpp"

namespace linvae {

// The float64 tables (same layers, same r and v) rescaled to a 20-bit abscissa: the
// scale by 2^32 is exact, and k >> 32 is the float64 threshold floor(ratio 2^52) taken
// at 2^20. The wedge test uses the float64 table of the density.
struct ZigguratTablesF {
    using Z64 = ZigguratTables;
    static constexpr int kLayers = Z64::kLayers;
    static constexpr int kIdxBits = Z64::kIdxBits;
    static constexpr std::uint32_t kIdxMask = kLayers - 1;
    static constexpr std::uint32_t kSignBit = 1u << kIdxBits;
    static constexpr int kAbsShift = kIdxBits + 1;     // the abscissa is u >> 12
    static constexpr std::uint32_t kSignedMask = 2 * kLayers - 1;  // layer and sign bit
    static constexpr double r = Z64::r;                // start of the tail
    // k and w are indexed by the word's low 12 bits, layer and sign, as in Z64.
    std::array<std::uint32_t, 2 * kLayers> k{};  // acceptance thresholds on the abscissa
    std::array<float, 2 * kLayers> w{};          // signed abscissa scale (one rounding)
    const std::array<double, kLayers>& fd;       // density at the layer edges (wedge test)

    ZigguratTablesF() : fd(Z64::get().f) {
        const Z64& z = Z64::get();
        for (int j = 0; j < 2 * kLayers; ++j) {
            k[j] = static_cast<std::uint32_t>(z.k[j] >> 32);
            w[j] = static_cast<float>(z.w[j] * 0x1.0p32);
        }
    }

    static const ZigguratTablesF& get() {
        static const ZigguratTablesF tables;
        return tables;
    }
};

// Fast path of one 32-bit word, branch-free: the signed scale carries the sign. rabs <
// 2^20, so int -> float is exact and x has a single rounding (the multiply). Returns
// false when the word falls outside the layer's rectangle.
inline bool normal_fast_f32(std::uint32_t u, const ZigguratTablesF& z, float& out) {
    using Z = ZigguratTablesF;
    const unsigned j = u & Z::kSignedMask;
    const std::uint32_t rabs = u >> Z::kAbsShift;
    out = static_cast<float>(static_cast<std::int32_t>(rabs)) * z.w[j];
    return rabs < z.k[j];
}

// Slow path of a rejected word u, drawing from lane g (already past the group's word):
// the tail or wedge test in double, as in normal_slow.
inline float normal_slow_f32(Xoshiro256pp& g, std::uint32_t u, const ZigguratTablesF& z) {
    using Z = ZigguratTablesF;
    const unsigned idx = u & Z::kIdxMask;
    const bool negative = (u & Z::kSignBit) != 0;
    if (idx == 0) {
        for (;;) {  // tail beyond r: Marsaglia's exponential-rejection method
            const double xx = -std::log1p(-g.uniform()) / Z::r;
            const double yy = -std::log1p(-g.uniform());
            if (yy + yy > xx * xx) {
                const float x = static_cast<float>(Z::r + xx);
                return negative ? -x : x;
            }
        }
    }
    // The wedge test is on the float abscissa actually returned.
    const float x = static_cast<float>(static_cast<std::int32_t>(u >> Z::kAbsShift)) * z.w[idx];
    const double xd = x;
    if ((z.fd[idx - 1] - z.fd[idx]) * g.uniform() + z.fd[idx] < std::exp(-0.5 * xd * xd))
        return negative ? -x : x;
    // Rejected: the accepted part of a rejection sampler has density c*phi, so replacing
    // a rejection by any exact fresh N(0,1) draw keeps the law exactly normal.
    return static_cast<float>(standard_normal(g, ZigguratTables::get()));
}

// Outputs 0 .. r-1 (r <= 8) of one group, from the words of lanes 0 .. ceil(r/2) - 1.
inline void normals_group_f32(Xoshiro256pp* g, float* out, std::size_t r,
                              const ZigguratTablesF& z) {
    std::uint32_t u[8];
    for (std::size_t l = 0; 2 * l < r; ++l) {
        const std::uint64_t word = g[l].next();
        u[2 * l] = static_cast<std::uint32_t>(word);
        u[2 * l + 1] = static_cast<std::uint32_t>(word >> 32);
    }
    unsigned rejected = 0;  // bit j: output j needs the slow path
    for (std::size_t j = 0; j < r; ++j)
        rejected |= static_cast<unsigned>(!normal_fast_f32(u[j], z, out[j])) << j;
    // ~2% of full groups (0.23% of words): redo the rejected outputs in output order,
    // visiting only the set bits (a branch per output would mispredict on each rejection).
    for (; rejected != 0; rejected &= rejected - 1) {
        const int j = lowest_set_bit(rejected);
        out[j] = normal_slow_f32(g[j >> 1], u[j], z);
    }
}

// Scalar group generator: group g (8 normals) goes to sink(g, const float* eight).
template <class Sink>
inline void normals8_scalar(Xoshiro256pp* lanes, std::size_t n_groups, Sink&& sink) {
    const ZigguratTablesF& z = ZigguratTablesF::get();
    Xoshiro256pp g[4] = {lanes[0], lanes[1], lanes[2], lanes[3]};  // in registers
    for (std::size_t grp = 0; grp < n_groups; ++grp) {
        float x[8];
        normals_group_f32(g, x, 8, z);
        sink(grp, static_cast<const float*>(x));
    }
    for (int l = 0; l < 4; ++l) lanes[l] = g[l];
}

#ifdef LINVAE_HAVE_AVX2_PATH
// AVX2 group generator: the same numbers as normals8_scalar, with group g handed to
// sink(g, __m256 eight) straight from registers (the sink's call operator must itself be
// compiled for AVX2, see StoreNormals8F). Every operation of the fast path is exact or a
// single float rounding identical to the scalar one (integer ops, an exact int -> float
// conversion, one multiply by the signed scale).
template <class Sink>
LINVAE_AVX2 inline void normals8_avx2(Xoshiro256pp* lanes,
                                      std::size_t n_groups, Sink&& sink) {
    using Z = ZigguratTablesF;
    const Z& z = Z::get();
    XoshiroX4 st(lanes);
    const int* k_table = reinterpret_cast<const int*>(z.k.data());
    for (std::size_t g = 0; g < n_groups; ++g) {
        // 32-bit element 2l + h of `bits` is half h of lane l's word: the output order.
        const __m256i bits = st.next();
        // layer and sign: two shifts, which leave the registers to the kernel (a mask
        // constant would be rebuilt every group)
        const __m256i j = _mm256_srli_epi32(_mm256_slli_epi32(bits, 32 - Z::kAbsShift),
                                            32 - Z::kAbsShift);
        const __m256i rabs = _mm256_srli_epi32(bits, Z::kAbsShift);
        const __m256 w = _mm256_i32gather_ps(z.w.data(), j, 4);
        const __m256i k = _mm256_i32gather_epi32(k_table, j, 4);  // k < 2^20: signed compare ok
        __m256 x = _mm256_mul_ps(_mm256_cvtepi32_ps(rabs), w);
        const int ok = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(k, rabs)));
        if (ok != 0xff) {  // ~2% of groups: redo the rejected outputs, in output order
            alignas(32) std::uint32_t u[8];
            alignas(32) float xs[8];
            _mm256_store_si256(reinterpret_cast<__m256i*>(u), bits);
            _mm256_store_ps(xs, x);
            redo_rejected<8>(st, ~static_cast<unsigned>(ok) & 0xffu, u, xs,
                             [&](Xoshiro256pp& g, std::uint32_t w) { return normal_slow_f32(g, w, z); });
            x = _mm256_load_ps(xs);
        }
        sink(g, x);
    }
    st.store(lanes);
}

struct StoreNormals8F {
    float* out;
    LINVAE_AVX2 inline void operator()(std::size_t g, __m256 x) const {
        _mm256_storeu_ps(out + 8 * g, x);
    }
};
#endif

// out[0 .. n) = the next n float32 normals of the stream, in the layout described above.
// Like NormalStream::fill, a fill always starts a new group at lane 0, so the values
// depend only on the stream and the sequence of fill lengths.
inline void fill_normals(NormalStream& s, float* out, std::size_t n) {
    static_assert(NormalStream::kLanes == 4, "a group is one word from each of four lanes");
    Xoshiro256pp lanes[4] = {s.lane(0), s.lane(1), s.lane(2), s.lane(3)};
    const std::size_t groups = n / 8;
#ifdef LINVAE_HAVE_AVX2_PATH
    if (active_simd_path() == SimdPath::kAvx2)
        normals8_avx2(lanes, groups, StoreNormals8F{out});
    else
#endif
        normals8_scalar(lanes, groups, [out](std::size_t g, const float* x) {
            std::memcpy(out + 8 * g, x, 8 * sizeof(float));
        });
    if (n % 8 != 0) normals_group_f32(lanes, out + 8 * groups, n % 8, ZigguratTablesF::get());
    for (int l = 0; l < 4; ++l) s.lane(l) = lanes[l];
}

}  // namespace linvae
