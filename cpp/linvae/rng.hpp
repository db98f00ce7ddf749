// Random numbers for one-pass SGD: every step needs N fresh Gaussians, so this is the
// floor of the whole simulation.
//
// Generator: xoshiro256++ (Blackman & Vigna 2019): 256-bit state, period 2^256 - 1,
// passes BigCrush and PractRand, ~1 ns per 64-bit word, and all 64 output bits are of
// full quality (unlike xoshiro256+), which the ziggurat needs since it uses the low bits
// for the layer index. States are seeded through SplitMix64, as its authors recommend.
//
// Normals: the ziggurat of Marsaglia & Tsang (2000) with 2048 layers, in the 52-bit form
// of NumPy's 256-layer one: one 64-bit word gives layer index, sign and abscissa; ~99.8%
// of draws are accepted at once, the rest go to the exact wedge or tail (Marsaglia 1964)
// tests.
//
// Streams: a stream is identified by (seed, replica, stream id) and made of kLanes
// independent xoshiro states used round-robin (element i of a fill comes from lane
// i % kLanes). That fixes every bit of a trajectory by the seed and the replica index
// alone, whatever the thread count, and lets a vectorised fill reproduce the scalar one.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "simd.hpp"

#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#endif

namespace linvae {

// Index of the lowest set bit of v != 0 (count of trailing zeros), on every compiler.
inline int lowest_set_bit(unsigned v) {
#if defined(_MSC_VER) && !defined(__clang__)
    unsigned long i;
    _BitScanForward(&i, v);
    return static_cast<int>(i);
#else
    return __builtin_ctz(v);
#endif
}

inline std::uint64_t splitmix64(std::uint64_t& x) {
    std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// Hash of a tuple of 64-bit words: chained SplitMix64 finalisers, so that nearby keys
// (replica 0 and 1, lane 0 and 1) land on unrelated states.
inline std::uint64_t hash_key(std::uint64_t seed, std::uint64_t a, std::uint64_t b,
                              std::uint64_t c) {
    std::uint64_t h = seed;
    for (std::uint64_t w : {a, b, c}) {
        std::uint64_t x = h ^ (w * 0xd1b54a32d192ed03ULL);
        h = splitmix64(x);
    }
    return h;
}

struct Xoshiro256pp {
    std::uint64_t s[4];

    explicit Xoshiro256pp(std::uint64_t key = 0) { seed(key); }

    void seed(std::uint64_t key) {
        std::uint64_t x = key;
        for (auto& w : s) w = splitmix64(x);  // never all zero: splitmix64 is a bijection
    }

    static inline std::uint64_t rotl(std::uint64_t x, int k) {
        return (x << k) | (x >> (64 - k));
    }

    inline std::uint64_t next() {
        const std::uint64_t result = rotl(s[0] + s[3], 23) + s[0];
        const std::uint64_t t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = rotl(s[3], 45);
        return result;
    }

    // Uniform on [0, 1) with 53 random bits.
    inline double uniform() { return to_double(next() >> 11) * 0x1.0p-53; }

    // Values below 2^63 converted through int64: one instruction, where uint64 -> double
    // is a branchy sequence on x86-64 before AVX-512.
    static inline double to_double(std::uint64_t v) {
        return static_cast<double>(static_cast<std::int64_t>(v));
    }
};

// Ziggurat tables, computed once: the recursion of Marsaglia & Tsang with 2048 layers
// (r and v solved for 2048 layers to 17 digits). A 64-bit word gives the layer (11 bits),
// the sign (1 bit) and a 52-bit abscissa (the rest, u >> 12). More layers leave fewer
// words outside their layer's rectangle (0.23% with 2048), and each miss costs a
// mispredicted branch and a detour through scalar code. Beyond 2048 the gain is small
// and the float32 abscissa loses bits (the measurements are in CHANGELOG.md).
struct ZigguratTables {
    static constexpr int kLayers = 2048;
    static constexpr int kIdxBits = 11;
    static constexpr std::uint64_t kIdxMask = kLayers - 1;
    static constexpr std::uint64_t kSignBit = std::uint64_t{1} << kIdxBits;
    static constexpr int kAbsShift = kIdxBits + 1;       // the abscissa is u >> 12, 52 bits
    static constexpr std::uint64_t kSignedMask = 2 * kLayers - 1;  // layer and sign bit
    static constexpr double r = 4.2163704095118969;     // start of the tail
    static constexpr double v = 6.1260651762404609e-4;  // area of each layer
    // k and w are indexed by the word's low 12 bits, layer and sign: the second half
    // repeats the first with w negated, so the fast path gets the sign with the scale
    // (abscissa * -w is exactly the negated product, -0.0 included).
    std::array<std::uint64_t, 2 * kLayers> k{};  // acceptance thresholds on the abscissa
    std::array<double, 2 * kLayers> w{};         // signed abscissa scale
    std::array<double, kLayers> f{};             // density at the layer edges

    ZigguratTables() {
        const double m1 = 0x1.0p52;
        double dn = r, tn = r;
        const double q = v / std::exp(-0.5 * dn * dn);
        k[0] = static_cast<std::uint64_t>((dn / q) * m1);
        k[1] = 0;
        w[0] = q / m1;
        w[kLayers - 1] = dn / m1;
        f[0] = 1.0;
        f[kLayers - 1] = std::exp(-0.5 * dn * dn);
        for (int i = kLayers - 2; i >= 1; --i) {
            dn = std::sqrt(-2.0 * std::log(v / dn + std::exp(-0.5 * dn * dn)));
            k[i + 1] = static_cast<std::uint64_t>((dn / tn) * m1);
            tn = dn;
            f[i] = std::exp(-0.5 * dn * dn);
            w[i] = dn / m1;
        }
        for (int i = 0; i < kLayers; ++i) {
            w[i + kLayers] = -w[i];
            k[i + kLayers] = k[i];
        }
    }

    static const ZigguratTables& get() {
        static const ZigguratTables tables;
        return tables;
    }
};

// The slow path of the ziggurat, taken for ~0.2% of draws: wedge or tail test, then
// fresh draws from the same lane until one is accepted.
inline double normal_slow(Xoshiro256pp& g, std::uint64_t bits, const ZigguratTables& z) {
    for (;;) {
        using Z = ZigguratTables;
        const auto idx = static_cast<unsigned>(bits & Z::kIdxMask);
        const bool negative = (bits & Z::kSignBit) != 0;
        const std::uint64_t rabs = bits >> Z::kAbsShift;
        double x = Xoshiro256pp::to_double(rabs) * z.w[idx];
        if (rabs < z.k[idx]) return negative ? -x : x;
        if (idx == 0) {
            for (;;) {  // tail beyond r: Marsaglia's exponential-rejection method
                const double xx = -std::log1p(-g.uniform()) / ZigguratTables::r;
                const double yy = -std::log1p(-g.uniform());
                if (yy + yy > xx * xx) {
                    x = ZigguratTables::r + xx;
                    return negative ? -x : x;
                }
            }
        }
        if ((z.f[idx - 1] - z.f[idx]) * g.uniform() + z.f[idx] < std::exp(-0.5 * x * x))
            return negative ? -x : x;
        bits = g.next();
    }
}

// The fast path without branches: the signed scale carries the word's sign bit (a
// data-dependent branch on it would mispredict half the time). Returns false when the
// word falls outside the layer's rectangle (slow path needed).
inline bool normal_fast(std::uint64_t bits, const ZigguratTables& z, double& out) {
    using Z = ZigguratTables;
    const auto j = static_cast<unsigned>(bits & Z::kSignedMask);
    const std::uint64_t rabs = bits >> Z::kAbsShift;
    out = Xoshiro256pp::to_double(rabs) * z.w[j];
    return rabs < z.k[j];
}

inline double standard_normal(Xoshiro256pp& g, const ZigguratTables& z) {
    const std::uint64_t bits = g.next();
    double x;
    return normal_fast(bits, z, x) ? x : normal_slow(g, bits, z);
}

#ifdef LINVAE_HAVE_AVX2_PATH

LINVAE_AVX2 inline __m256i rotl_avx2(__m256i x, int k) {
    return _mm256_or_si256(_mm256_slli_epi64(x, k), _mm256_srli_epi64(x, 64 - k));
}

// The xoshiro256++ states of a stream's four lanes in AVX2 registers (element l = lane l).
struct XoshiroX4 {
    __m256i s0, s1, s2, s3;

    LINVAE_AVX2 explicit XoshiroX4(const Xoshiro256pp* lanes) {
        alignas(32) std::uint64_t st[4][4];
        for (int w = 0; w < 4; ++w)
            for (int l = 0; l < 4; ++l) st[w][l] = lanes[l].s[w];
        s0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(st[0]));
        s1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(st[1]));
        s2 = _mm256_load_si256(reinterpret_cast<const __m256i*>(st[2]));
        s3 = _mm256_load_si256(reinterpret_cast<const __m256i*>(st[3]));
    }

    LINVAE_AVX2 void store(Xoshiro256pp* lanes) const {
        for (int l = 0; l < 4; ++l) lanes[l] = lane(l);
    }

    // the next word of every lane
    LINVAE_AVX2 inline __m256i next() {
        const __m256i bits = _mm256_add_epi64(rotl_avx2(_mm256_add_epi64(s0, s3), 23), s0);
        const __m256i t = _mm256_slli_epi64(s1, 17);
        s2 = _mm256_xor_si256(s2, s0);
        s3 = _mm256_xor_si256(s3, s1);
        s1 = _mm256_xor_si256(s1, s2);
        s0 = _mm256_xor_si256(s0, s3);
        s2 = _mm256_xor_si256(s2, t);
        s3 = rotl_avx2(s3, 45);
        return bits;
    }

    // Lane l as a scalar generator (for the slow path of a rejected word), and back.
    LINVAE_AVX2 Xoshiro256pp lane(int l) const {
        alignas(32) std::uint64_t st[4][4];
        _mm256_store_si256(reinterpret_cast<__m256i*>(st[0]), s0);
        _mm256_store_si256(reinterpret_cast<__m256i*>(st[1]), s1);
        _mm256_store_si256(reinterpret_cast<__m256i*>(st[2]), s2);
        _mm256_store_si256(reinterpret_cast<__m256i*>(st[3]), s3);
        Xoshiro256pp g;
        for (int w = 0; w < 4; ++w) g.s[w] = st[w][l];
        return g;
    }
    // Blended in rather than reloaded: a 256-bit load of data just written by 64-bit
    // stores cannot be store-forwarded, and the stall would hold every later group.
    LINVAE_AVX2 void set_lane(int l, const Xoshiro256pp& g) {
        const __m256i in_lane = _mm256_cmpeq_epi64(_mm256_setr_epi64x(0, 1, 2, 3),
                                                   _mm256_set1_epi64x(l));
        s0 = put(s0, g.s[0], in_lane);
        s1 = put(s1, g.s[1], in_lane);
        s2 = put(s2, g.s[2], in_lane);
        s3 = put(s3, g.s[3], in_lane);
    }
    LINVAE_AVX2 static inline __m256i put(__m256i s, std::uint64_t v,
                                          __m256i mask) {
        return _mm256_blendv_epi8(s, _mm256_set1_epi64x(static_cast<long long>(v)), mask);
    }
};

// Redo, in output order, the outputs of a group that missed their layer's rectangle
// (bit j of ``rejected``): output j of a group of G comes from lane j * 4 / G, whose
// state the slow path advances in the registers.
template <int G, class Word, class Out, class Slow>
LINVAE_AVX2 inline void redo_rejected(XoshiroX4& st, unsigned rejected,
                                      const Word* bits, Out* xs,
                                      Slow&& slow) {
    for (; rejected != 0; rejected &= rejected - 1) {
        const int j = __builtin_ctz(rejected), l = j * 4 / G;
        Xoshiro256pp lane = st.lane(l);
        xs[j] = slow(lane, bits[j]);
        st.set_lane(l, lane);
    }
}

// The four lanes of a stream in AVX2 registers: xoshiro256++ and the ziggurat's fast path
// for four words at once. Every operation is exact (integer ops, the int -> double
// conversion of a 52-bit value, one multiply by the signed scale), so the output equals the
// scalar generator bit for bit; rejected lanes take the scalar slow path on their own
// state, in lane order. Group g (normals 4g .. 4g + 3, one word per lane) goes to
// sink(g, normals), so a kernel can use them straight from registers; a fill is the sink
// that stores them.
template <class Sink>
LINVAE_AVX2 inline void normals4_avx2(Xoshiro256pp* lanes,
                                      std::size_t n_groups,
                                      const ZigguratTables& z, Sink&& sink) {
    using Z = ZigguratTables;
    XoshiroX4 st(lanes);
    const __m256i signed_mask = _mm256_set1_epi64x(Z::kSignedMask);
    const __m256i exp52 = _mm256_set1_epi64x(0x4330000000000000LL);  // the double 2^52
    const __m256d two52 = _mm256_set1_pd(0x1.0p52);
    for (std::size_t g = 0; g < n_groups; ++g) {
        const __m256i bits = st.next();
        const __m256i idx = _mm256_and_si256(bits, signed_mask);  // layer and sign
        const __m256i rabs = _mm256_srli_epi64(bits, Z::kAbsShift);  // the 52 bits above the sign
        const __m256d w = _mm256_i64gather_pd(z.w.data(), idx, 8);
        const __m256i k = _mm256_i64gather_epi64(
            reinterpret_cast<const long long*>(z.k.data()), idx, 8);
        const __m256d xr = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(rabs, exp52)), two52);
        __m256d x = _mm256_mul_pd(xr, w);
        const int ok = _mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(k, rabs)));
        if (ok != 0xf) {  // ~1% of groups: redo the rejected lanes, in lane order
            alignas(32) std::uint64_t b[4];
            alignas(32) double xs[4];
            _mm256_store_si256(reinterpret_cast<__m256i*>(b), bits);
            _mm256_store_pd(xs, x);
            redo_rejected<4>(st, ~static_cast<unsigned>(ok) & 0xfu, b, xs,
                             [&](Xoshiro256pp& g, std::uint64_t u) { return normal_slow(g, u, z); });
            x = _mm256_load_pd(xs);
        }
        sink(g, x);
    }
    st.store(lanes);
}

struct StoreNormals4 {
    double* out;
    LINVAE_AVX2 inline void operator()(std::size_t g, __m256d x) const {
        _mm256_storeu_pd(out + 4 * g, x);
    }
};
#endif

// A stream of standard normals made of kLanes interleaved generators.
class NormalStream {
public:
    static constexpr int kLanes = 4;

    NormalStream() = default;
    NormalStream(std::uint64_t seed, std::uint64_t replica, std::uint64_t stream_id) {
        for (int l = 0; l < kLanes; ++l)
            lanes_[l].seed(hash_key(seed, replica, stream_id, static_cast<std::uint64_t>(l)));
    }

    // out[i] = next normal of lane (i % kLanes), for i < n. A fill always starts at lane 0,
    // so the values depend only on the stream and the sequence of fill lengths.
    void fill(double* out, std::size_t n) {
        const std::size_t groups = n / kLanes;
#ifdef LINVAE_HAVE_AVX2_PATH
        if (active_simd_path() == SimdPath::kAvx2)
            normals4_avx2(lanes_, groups, ZigguratTables::get(), StoreNormals4{out});
        else
#endif
            normals4(lanes_, groups, [out](std::size_t g, const double* x) {
                std::memcpy(out + kLanes * g, x, kLanes * sizeof(double));
            });
        fill_tail(out + groups * kLanes, n - groups * kLanes);
    }

    // The last n < kLanes normals of a fill: one from each lane in turn.
    void fill_tail(double* out, std::size_t n) {
        for (std::size_t l = 0; l < n; ++l) out[l] = standard_normal(lanes_[l], ZigguratTables::get());
    }

    // The scalar group generator: group g (normals 4g .. 4g + 3, one word per lane) goes
    // to sink(g, normals). Same numbers as normals4_avx2.
    template <class Sink>
    static void normals4(Xoshiro256pp* lanes, std::size_t n_groups, Sink&& sink) {
        static_assert(kLanes == 4, "the accept test below spells out four lanes");
        const ZigguratTables& z = ZigguratTables::get();
        Xoshiro256pp g[kLanes] = {lanes[0], lanes[1], lanes[2], lanes[3]};  // in registers
        for (std::size_t grp = 0; grp < n_groups; ++grp) {
            std::uint64_t bits[kLanes];
            bool ok[kLanes];
            double x[kLanes];
            for (int l = 0; l < kLanes; ++l) bits[l] = g[l].next();
            for (int l = 0; l < kLanes; ++l) ok[l] = normal_fast(bits[l], z, x[l]);
            if (!(ok[0] & ok[1] & ok[2] & ok[3])) {  // ~1% of groups: redo the rejected lanes
                for (int l = 0; l < kLanes; ++l)
                    if (!ok[l]) x[l] = normal_slow(g[l], bits[l], z);
            }
            sink(grp, static_cast<const double*>(x));
        }
        for (int l = 0; l < kLanes; ++l) lanes[l] = g[l];
    }

    // out[i] = +-1 with probability 1/2 each (Rademacher): the cheaper noise with the
    // Gaussian's first two moments. Bit j of the words of lane 0, in order, gives the sign
    // of element j; each byte is expanded through a table of its eight signs.
    template <class T>
    void fill_signs(T* out, std::size_t n) {
        static const auto table = [] {
            std::array<std::array<T, 8>, 256> t{};
            for (int byte = 0; byte < 256; ++byte)
                for (int j = 0; j < 8; ++j) t[byte][j] = (byte >> j) & 1 ? T(1) : T(-1);
            return t;
        }();
        Xoshiro256pp& g = lanes_[0];
        for (std::size_t i = 0; i < n; i += 64) {
            std::uint64_t bits = g.next();
            const std::size_t m = std::min<std::size_t>(64, n - i);
            std::size_t j = 0;
            for (; j + 8 <= m; j += 8, bits >>= 8)
                std::memcpy(out + i + j, table[bits & 0xff].data(), 8 * sizeof(T));
            for (int k = 0; j < m; ++j, ++k) out[i + j] = table[bits & 0xff][k];
        }
    }

    double next() {  // a single draw, from lane 0 (used for the few per-step factor draws)
        return standard_normal(lanes_[0], ZigguratTables::get());
    }

    const Xoshiro256pp& lane(int l) const { return lanes_[l]; }
    Xoshiro256pp& lane(int l) { return lanes_[l]; }
    Xoshiro256pp* lanes() { return lanes_; }

private:
    Xoshiro256pp lanes_[kLanes];
};

// The next n normals of a stream in the weights' type (float32: normal_f32.hpp).
inline void fill_normals(NormalStream& s, double* out, std::size_t n) { s.fill(out, n); }

}  // namespace linvae
