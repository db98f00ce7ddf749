// The fused pass over one block of rows: the hot loop of the simulation.
//
// One SGD step needs two sweeps over the weights (a and b need all of x before any row
// can be updated). We fuse the second sweep of step s-1 into the first sweep of step s:
// for each row i, the pass
//   1. APPLY: applies the pending update of step s-1 with the stored x_{s-1, i},
//   2. accumulates Q (always; g and D need Q before step s) and, if REC, m, d, E, R,
//      all of the state after s steps,
//   3. GEN: draws x_{s, i}, stores it, and accumulates a = W^T x, b = V^T x.
// So each step reads and writes W and V once, and recording costs no extra sweep.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "normal_f32.hpp"
#include "rng.hpp"
#include "simd.hpp"

namespace linvae {

// Largest M and M* handled by the generic (runtime-size) instantiation.
constexpr int kMaxLatents = 32;

// Where the sums of one pass live in a flat array of doubles: a, b (M each), Q, E, R
// (M x M each, Q and E upper triangle only) and m, d (M x M* each). Every block writes
// its own slot; slots are then added in block order, whatever thread computed them.
struct SumLayout {
    int M = 1, Ms = 1;
    int a = 0, b = 0, Q = 0, E = 0, R = 0, m = 0, d = 0, size = 0;

    SumLayout() = default;
    SumLayout(int M_, int Ms_) : M(M_), Ms(Ms_) {
        a = 0;
        b = a + M;
        Q = b + M;
        E = Q + M * M;
        R = E + M * M;
        m = R + M * M;
        d = m + M * Ms;
        size = d + M * Ms;
    }
};

// Coefficients of the pending update of one row (docs/model.md#sgd):
//   W_i <- W_i (I - tau/N (b b^T + diag(D) + lam I)) + x_i tau b^T / sqrt(N)
//        = W_i o wdiag - (W_i . b) u + x_i cW,
//   V_i <- vscale V_i - x_i cV,
// with wdiag = 1 - tau/N (D + lam), u = tau b / N, cW = tau b / sqrt(N),
// cV = tau g / sqrt(N), vscale = 1 - vdec, vdec = tau lam / N. The decoder update is rank
// one plus a diagonal, so it costs O(M) per row rather than the O(M^2) of a full product.
// For M = 1 the hot paths use the single decay dec1 = tau/N (b^2 + D + lam): the float32
// one adds -W dec1 to W, since 1 - dec1 would lose dec1's digits in single precision.
struct PendingUpdate {
    std::array<double, kMaxLatents> b{}, wdiag{}, u{}, cW{}, cV{};
    double dec1 = 0.0, vdec = 0.0;
};

// W_i . b over the M latents. For M a multiple of 4 in the order of a vector of four
// lanes (lane l sums latents l, l + 4, ...; then (l0 + l2) + (l1 + l3)), which is what
// block_pass_step_avx2 computes; otherwise in latent order (for M = 2 without the 0 the
// loop starts from, so that the sign of a zero matches block_pass_step_m2_avx2).
template <int MC>
inline double dot_latents(const double* w, const double* b, int M) {
    if constexpr (MC == 2) {
        return w[0] * b[0] + w[1] * b[1];  // as a horizontal add of the two products
    } else if constexpr (MC > 0 && MC % 4 == 0) {
        double t[4];
        for (int l = 0; l < 4; ++l) t[l] = w[l] * b[l];
        for (int c = 1; c < MC / 4; ++c)
            for (int l = 0; l < 4; ++l) t[l] += w[4 * c + l] * b[4 * c + l];
        return (t[0] + t[2]) + (t[1] + t[3]);
    } else {
        double s = 0.0;
        for (int j = 0; j < M; ++j) s += w[j] * b[j];
        return s;
    }
}

// Before float32 weights just stored are read back as double: a compiler barrier, so that
// the read is of the stored (rounded) value. Without it GCC 12 at -O3 forwarded the stored
// pair of floats and folded the vector conversions double -> float -> double away, in
// some instantiations and not others: the sums then saw unrounded weights, and float32
// trajectories depended on which steps were recorded.
template <class Real>
inline void reload_barrier() {
    if constexpr (std::is_same_v<Real, float>) std::atomic_signal_fence(std::memory_order_seq_cst);
}

// Rows [i0, i1) of the row-major arrays W, V (N x M), Ws (N x M*), x (N).
// noise[j] is the standard normal for row i0 + j; cs[f] = sqrt(rho_f) c_f / sqrt(N).
// MC / MSC > 0 fix M / M* at compile time (the common small cases); 0 means runtime.
// The block's sums are written (not added) to its slot ``out`` laid out by ``L``.
template <class Real, int MC, int MSC, bool APPLY, bool REC, bool GEN>
void block_pass(int M_rt, int Ms_rt, std::int64_t i0, std::int64_t i1, Real* __restrict W,
                Real* __restrict V, const Real* __restrict Ws, Real* __restrict x,
                const PendingUpdate& up, const Real* __restrict noise,
                const double* __restrict cs, double sqrt_eta, const SumLayout& L,
                double* __restrict out) {
    const int M = MC > 0 ? MC : M_rt;
    const int Ms = MSC > 0 ? MSC : Ms_rt;
    constexpr int MB = MC > 0 ? MC : kMaxLatents;
    constexpr int MSB = MSC > 0 ? MSC : kMaxLatents;
    // Local accumulators: the order of additions inside a block is fixed (row order).
    // For M = 2, Q, a and b sum the even and the odd rows of the block apart, then add
    // the two: the order of block_pass_step_m2_avx2, which holds two rows per register.
    constexpr int NL = MC == 2 ? 2 : 1;
    double a_l[NL][MB] = {}, b_l[NL][MB] = {}, Q_l[NL][MB * MB] = {};
    double E[REC ? MB * MB : 1] = {}, R[REC ? MB * MB : 1] = {};
    double m[REC ? MB * MSB : 1] = {}, d[REC ? MB * MSB : 1] = {};
    double w[MB], v[MB], ws[MSB];
    const double vscale = 1.0 - up.vdec;

    for (std::int64_t i = i0; i < i1; ++i) {
        const int lane = NL == 2 ? static_cast<int>((i - i0) & 1) : 0;
        double* a = a_l[lane];
        double* b = b_l[lane];
        double* Q = Q_l[lane];
        Real* Wi = W + i * M;
        Real* Vi = V + i * M;
        const Real* Wsi = Ws + i * Ms;
        for (int k = 0; k < M; ++k) {
            w[k] = static_cast<double>(Wi[k]);
            v[k] = static_cast<double>(Vi[k]);
        }
        for (int f = 0; f < Ms; ++f) ws[f] = static_cast<double>(Wsi[f]);
        if constexpr (APPLY) {
            const double xo = static_cast<double>(x[i]);
            const double wb = dot_latents<MC>(w, up.b.data(), M);
            for (int k = 0; k < M; ++k) {
                Wi[k] = static_cast<Real>((w[k] * up.wdiag[k] - wb * up.u[k]) + xo * up.cW[k]);
                Vi[k] = static_cast<Real>(vscale * v[k] - xo * up.cV[k]);
            }
            // continue with the stored values, so that float32 order parameters describe
            // the weights actually held
            reload_barrier<Real>();
            for (int k = 0; k < M; ++k) {
                w[k] = static_cast<double>(Wi[k]);
                v[k] = static_cast<double>(Vi[k]);
            }
        }
        for (int k = 0; k < M; ++k)
            for (int l = k; l < M; ++l) Q[k * M + l] += w[k] * w[l];
        if constexpr (REC) {
            for (int k = 0; k < M; ++k) {
                for (int f = 0; f < Ms; ++f) {
                    m[k * Ms + f] += w[k] * ws[f];
                    d[k * Ms + f] += v[k] * ws[f];
                }
                for (int l = 0; l < M; ++l) R[k * M + l] += w[k] * v[l];
                for (int l = k; l < M; ++l) E[k * M + l] += v[k] * v[l];
            }
        }
        if constexpr (GEN) {
            double xi = sqrt_eta * static_cast<double>(noise[i - i0]);
            for (int f = 0; f < Ms; ++f) xi += ws[f] * cs[f];
            x[i] = static_cast<Real>(xi);
            reload_barrier<Real>();
            xi = static_cast<double>(x[i]);
            for (int k = 0; k < M; ++k) {
                a[k] += w[k] * xi;
                b[k] += v[k] * xi;
            }
        }
    }

    auto total = [&](const double (&t)[NL][MB], int j) {
        if constexpr (NL == 2) return t[0][j] + t[1][j];
        return t[0][j];
    };
    auto total_q = [&](int j) {
        if constexpr (NL == 2) return Q_l[0][j] + Q_l[1][j];
        return Q_l[0][j];
    };
    for (int k = 0; k < M; ++k) {
        out[L.a + k] = total(a_l, k);
        out[L.b + k] = total(b_l, k);
        for (int l = k; l < M; ++l) out[L.Q + k * M + l] = total_q(k * M + l);
    }
    if constexpr (REC) {
        for (int k = 0; k < M; ++k) {
            for (int f = 0; f < Ms; ++f) {
                out[L.m + k * Ms + f] = m[k * Ms + f];
                out[L.d + k * Ms + f] = d[k * Ms + f];
            }
            for (int l = 0; l < M; ++l) out[L.R + k * M + l] = R[k * M + l];
            for (int l = k; l < M; ++l) out[L.E + k * M + l] = E[k * M + l];
        }
    }
}

#ifdef LINVAE_HAVE_AVX2_PATH
// The step pass (pending update and new sample, no record) for float64 weights and
// M = 4 or 8, a row at a time with its latents in AVX2 registers: the arithmetic of
// block_pass entry by entry in the same order (each sum over rows runs in row order, W_i
// . b in dot_latents' order), so the same bits, with the O(M^2) sum of Q as M / 4 vector
// multiply-adds per latent. The latents of a row are contiguous (row-major W and V), so
// no transposes are needed.
template <int MC>
LINVAE_AVX2 void block_pass_step_avx2(
        int Ms, std::int64_t i0, std::int64_t i1, double* __restrict W, double* __restrict V,
        const double* __restrict Ws, double* __restrict x, const PendingUpdate& up,
        const double* __restrict noise, const double* __restrict cs, double sqrt_eta,
        const SumLayout& L, double* __restrict out) {
    static_assert(MC % 4 == 0, "latents in whole AVX2 registers");
    constexpr int NV = MC / 4;
    __m256d b[NV], wdiag[NV], u[NV], cW[NV], cV[NV];
    __m256d a_acc[NV], b_acc[NV], Q[MC][NV];  // Q[k][c]: entries (k, 4c .. 4c + 3), c >= k / 4
    const __m256d vscale = _mm256_set1_pd(1.0 - up.vdec);
    for (int c = 0; c < NV; ++c) {
        b[c] = _mm256_loadu_pd(up.b.data() + 4 * c);
        wdiag[c] = _mm256_loadu_pd(up.wdiag.data() + 4 * c);
        u[c] = _mm256_loadu_pd(up.u.data() + 4 * c);
        cW[c] = _mm256_loadu_pd(up.cW.data() + 4 * c);
        cV[c] = _mm256_loadu_pd(up.cV.data() + 4 * c);
        a_acc[c] = b_acc[c] = _mm256_setzero_pd();
        for (int k = 0; k < MC; ++k) Q[k][c] = _mm256_setzero_pd();
    }
    for (std::int64_t i = i0; i < i1; ++i) {
        double* Wi = W + i * MC;
        double* Vi = V + i * MC;
        __m256d w[NV], v[NV];
        for (int c = 0; c < NV; ++c) {
            w[c] = _mm256_loadu_pd(Wi + 4 * c);
            v[c] = _mm256_loadu_pd(Vi + 4 * c);
        }
        __m256d t = _mm256_mul_pd(w[0], b[0]);
        for (int c = 1; c < NV; ++c) t = _mm256_add_pd(t, _mm256_mul_pd(w[c], b[c]));
        const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(t), _mm256_extractf128_pd(t, 1));
        const __m256d wb = _mm256_set1_pd(_mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s))));
        const __m256d xo = _mm256_set1_pd(x[i]);
        for (int c = 0; c < NV; ++c) {
            w[c] = _mm256_add_pd(_mm256_sub_pd(_mm256_mul_pd(w[c], wdiag[c]), _mm256_mul_pd(wb, u[c])),
                                 _mm256_mul_pd(xo, cW[c]));
            v[c] = _mm256_sub_pd(_mm256_mul_pd(vscale, v[c]), _mm256_mul_pd(xo, cV[c]));
            _mm256_storeu_pd(Wi + 4 * c, w[c]);
            _mm256_storeu_pd(Vi + 4 * c, v[c]);
        }
        for (int k = 0; k < MC; ++k) {
            const __m256d wk = _mm256_broadcast_sd(Wi + k);
            for (int c = k / 4; c < NV; ++c) Q[k][c] = _mm256_add_pd(Q[k][c], _mm256_mul_pd(wk, w[c]));
        }
        double xi = sqrt_eta * noise[i - i0];
        for (int f = 0; f < Ms; ++f) xi += Ws[i * Ms + f] * cs[f];
        x[i] = xi;
        const __m256d xv = _mm256_set1_pd(xi);
        for (int c = 0; c < NV; ++c) {
            a_acc[c] = _mm256_add_pd(a_acc[c], _mm256_mul_pd(w[c], xv));
            b_acc[c] = _mm256_add_pd(b_acc[c], _mm256_mul_pd(v[c], xv));
        }
    }
    alignas(32) double q[MC][MC];
    for (int c = 0; c < NV; ++c) {
        _mm256_storeu_pd(out + L.a + 4 * c, a_acc[c]);
        _mm256_storeu_pd(out + L.b + 4 * c, b_acc[c]);
        for (int k = 0; k < MC; ++k) _mm256_store_pd(&q[k][4 * c], Q[k][c]);
    }
    for (int k = 0; k < MC; ++k)
        for (int l = k; l < MC; ++l) out[L.Q + k * MC + l] = q[k][l];
}
#endif

#ifdef LINVAE_HAVE_AVX2_PATH
// The step pass for float64 weights and M = 2: two rows (four weights, contiguous in the
// row-major W) per AVX2 register, rows of even and odd index on their own halves, which
// block_pass's two lanes for M = 2 mirror; W_i . b is a horizontal add, as dot_latents<2>.
LINVAE_AVX2 inline void block_pass_step_m2_avx2(
        int Ms, std::int64_t i0, std::int64_t i1, double* __restrict W, double* __restrict V,
        const double* __restrict Ws, double* __restrict x, const PendingUpdate& up,
        const double* __restrict noise, const double* __restrict cs, double sqrt_eta,
        const SumLayout& L, double* __restrict out) {
    const __m256d b = _mm256_setr_pd(up.b[0], up.b[1], up.b[0], up.b[1]);
    const __m256d wdiag = _mm256_setr_pd(up.wdiag[0], up.wdiag[1], up.wdiag[0], up.wdiag[1]);
    const __m256d u = _mm256_setr_pd(up.u[0], up.u[1], up.u[0], up.u[1]);
    const __m256d cW = _mm256_setr_pd(up.cW[0], up.cW[1], up.cW[0], up.cW[1]);
    const __m256d cV = _mm256_setr_pd(up.cV[0], up.cV[1], up.cV[0], up.cV[1]);
    const double vs = 1.0 - up.vdec;
    const __m256d vscale = _mm256_set1_pd(vs);
    // elements (0, 1): even rows, (2, 3): odd rows; qd: Q00, Q11; qx: Q01 (twice)
    __m256d qd = _mm256_setzero_pd(), qx = qd, av = qd, bv = qd;
    auto xi_of = [&](std::int64_t r) {
        double xi = sqrt_eta * noise[r - i0];
        for (int f = 0; f < Ms; ++f) xi += Ws[r * Ms + f] * cs[f];
        return xi;
    };
    std::int64_t i = i0;
    for (; i + 2 <= i1; i += 2) {
        __m256d w = _mm256_loadu_pd(W + 2 * i), v = _mm256_loadu_pd(V + 2 * i);
        const __m256d p = _mm256_mul_pd(w, b);
        const __m256d wb = _mm256_hadd_pd(p, p);
        const __m256d xo = _mm256_permute4x64_pd(_mm256_castpd128_pd256(_mm_loadu_pd(x + i)), 0x50);
        w = _mm256_add_pd(_mm256_sub_pd(_mm256_mul_pd(w, wdiag), _mm256_mul_pd(wb, u)),
                          _mm256_mul_pd(xo, cW));
        v = _mm256_sub_pd(_mm256_mul_pd(vscale, v), _mm256_mul_pd(xo, cV));
        _mm256_storeu_pd(W + 2 * i, w);
        _mm256_storeu_pd(V + 2 * i, v);
        qd = _mm256_add_pd(qd, _mm256_mul_pd(w, w));
        qx = _mm256_add_pd(qx, _mm256_mul_pd(w, _mm256_permute_pd(w, 0x5)));
        const double xi0 = xi_of(i), xi1 = xi_of(i + 1);
        x[i] = xi0;
        x[i + 1] = xi1;
        const __m256d xv = _mm256_setr_pd(xi0, xi0, xi1, xi1);
        av = _mm256_add_pd(av, _mm256_mul_pd(w, xv));
        bv = _mm256_add_pd(bv, _mm256_mul_pd(v, xv));
    }
    alignas(32) double q2[4], x2[4], a2[4], b2[4];
    _mm256_store_pd(q2, qd);
    _mm256_store_pd(x2, qx);
    _mm256_store_pd(a2, av);
    _mm256_store_pd(b2, bv);
    if (i < i1) {  // the last row of an odd block, an even row: block_pass's arithmetic
        double* Wi = W + 2 * i;
        double* Vi = V + 2 * i;
        const double xo = x[i], wb = Wi[0] * up.b[0] + Wi[1] * up.b[1];
        for (int k = 0; k < 2; ++k) {
            Wi[k] = (Wi[k] * up.wdiag[k] - wb * up.u[k]) + xo * up.cW[k];
            Vi[k] = vs * Vi[k] - xo * up.cV[k];
        }
        q2[0] += Wi[0] * Wi[0];
        q2[1] += Wi[1] * Wi[1];
        x2[0] += Wi[0] * Wi[1];
        const double xi = xi_of(i);
        x[i] = xi;
        for (int k = 0; k < 2; ++k) {
            a2[k] += Wi[k] * xi;
            b2[k] += Vi[k] * xi;
        }
    }
    for (int k = 0; k < 2; ++k) {
        out[L.a + k] = a2[k] + a2[2 + k];
        out[L.b + k] = b2[k] + b2[2 + k];
    }
    out[L.Q + 0] = q2[0] + q2[2];
    out[L.Q + 1] = x2[0] + x2[2];
    out[L.Q + 3] = q2[1] + q2[3];
}
#endif

// The hot path, M = M* = 1 with a pending update and a new sample: the same arithmetic
// as block_pass, but rows are dealt to 4 lanes by row index (row i0 + j to lane j % 4),
// each lane summing its own rows; the lanes are added as ((l0 + l1) + l2) + l3. The
// scalar and the AVX2 version do exactly this, so they agree bit for bit.
struct M1Coeffs {
    double wm, cw, vs, cv, se, cs;
};

// The double sums of the M = 1 passes on NL = 4 or 8 lanes (row j of a group on lane
// j). A total adds each run of four lanes in order, then the runs.
template <int NL, bool REC>
struct LaneTotals {
    double q[NL] = {}, a[NL] = {}, b[NL] = {};
    double m[NL] = {}, d[NL] = {}, E[NL] = {}, R[NL] = {};

    static double total(const double* t) {
        double s = ((t[0] + t[1]) + t[2]) + t[3];
        for (int h = 4; h < NL; h += 4) s += ((t[h] + t[h + 1]) + t[h + 2]) + t[h + 3];
        return s;
    }

    void write(const SumLayout& L, double* out) const {
        out[L.a] = total(a);
        out[L.b] = total(b);
        out[L.Q] = total(q);
        if constexpr (REC) {
            out[L.m] = total(m);
            out[L.d] = total(d);
            out[L.R] = total(R);
            out[L.E] = total(E);
        }
    }
};

template <class Real_, bool REC>
struct M1Lanes : LaneTotals<4, REC> {
    using Real = Real_;
    using Coeffs = M1Coeffs;
    static constexpr bool kRec = REC;
    static constexpr int kGroup = 4;
    using LaneTotals<4, REC>::q, LaneTotals<4, REC>::a, LaneTotals<4, REC>::b,
        LaneTotals<4, REC>::m, LaneTotals<4, REC>::d, LaneTotals<4, REC>::E,
        LaneTotals<4, REC>::R;

    // one row on lane l: the arithmetic of block_pass for M = M* = 1. The hot path has
    // APPLY and GEN; step 0 (nothing pending) and a flush (no new sample) leave one out
    // with the same arithmetic for the rest, so neither changes the trajectory.
    template <bool APPLY = true, bool GEN = true>
    inline void row(int l, std::int64_t i, Real* __restrict W, Real* __restrict V,
                    const Real* __restrict Ws, Real* __restrict x, double noise,
                    const M1Coeffs& k) {
        const double ws = static_cast<double>(Ws[i]);
        Real wr = W[i], vr = V[i];
        if constexpr (APPLY) {
            const double xo = static_cast<double>(x[i]);
            wr = static_cast<Real>(std::fma(xo, k.cw, static_cast<double>(W[i]) * k.wm));
            vr = static_cast<Real>(std::fma(-xo, k.cv, k.vs * static_cast<double>(V[i])));
            W[i] = wr;
            V[i] = vr;
        }
        const double w = static_cast<double>(wr), v = static_cast<double>(vr);
        q[l] = std::fma(w, w, q[l]);
        if constexpr (REC) {
            m[l] = std::fma(w, ws, m[l]);
            d[l] = std::fma(v, ws, d[l]);
            R[l] = std::fma(w, v, R[l]);
            E[l] = std::fma(v, v, E[l]);
        }
        if constexpr (GEN) {
            const Real xr = static_cast<Real>(std::fma(k.se, noise, ws * k.cs));
            x[i] = xr;
            const double xi = static_cast<double>(xr);
            a[l] = std::fma(w, xi, a[l]);
            b[l] = std::fma(v, xi, b[l]);
        }
    }

    void end_group(std::size_t) {}
};

// Where the standard normals of a block come from: a buffer (Rademacher signs, supplied
// samples) or straight from the block's stream, group by group, without a buffer. All
// hand out groups of G (row i0 + G g + l gets normal l of group g), then a tail.
template <class T, int G>
struct NoiseBufferOf {
    using value_type = T;
    const T* p;
    template <class Sink>
    void groups(std::size_t n, Sink&& sink) const {
        for (std::size_t g = 0; g < n; ++g) sink(g, p + G * g);
    }
    void tail(std::size_t first, std::size_t n, T* out) const {
        for (std::size_t l = 0; l < n; ++l) out[l] = p[first + l];
    }
};
using NoiseBuffer = NoiseBufferOf<double, 4>;

// No new sample (a flush): zeros that the rows do not read.
template <class T, int G>
struct NoNoiseOf {
    using value_type = T;
    template <class Sink>
    void groups(std::size_t n, Sink&& sink) const {
        const T z[G] = {};
        for (std::size_t g = 0; g < n; ++g) sink(g, z);
    }
    void tail(std::size_t, std::size_t n, T* out) const { std::fill(out, out + n, T(0)); }
};

// Normals of the block's stream: float64 four at a time, float32 eight at a time.
template <class T>
struct NoiseStreamOf {
    using value_type = T;
    NormalStream* s;
    template <class Sink>
    void groups(std::size_t n, Sink&& sink) const {
        if constexpr (std::is_same_v<T, double>)
            NormalStream::normals4(s->lanes(), n, sink);
        else
            normals8_scalar(s->lanes(), n, sink);
    }
    // fewer than a group: the normals a fill of n gives
    void tail(std::size_t, std::size_t n, T* out) const { fill_normals(*s, out, n); }
};
using NoiseStream = NoiseStreamOf<double>;
using NoiseStreamF = NoiseStreamOf<float>;

// The block's last rows (fewer than a group, scalar rows) and its sums into ``out``.
template <class Lanes, bool APPLY = true, bool GEN = true, class Noise>
inline void finish_block_m1(Lanes& acc, std::int64_t i0, std::int64_t i1, std::size_t groups,
                            const Noise& noise, typename Lanes::Real* __restrict W,
                            typename Lanes::Real* __restrict V,
                            const typename Lanes::Real* __restrict Ws,
                            typename Lanes::Real* __restrict x,
                            const typename Lanes::Coeffs& k, const SumLayout& L,
                            double* __restrict out) {
    constexpr int G = Lanes::kGroup;
    typename Noise::value_type z[G];
    const std::int64_t i = i0 + G * static_cast<std::int64_t>(groups);
    noise.tail(G * groups, static_cast<std::size_t>(i1 - i), z);
    for (int l = 0; i + l < i1; ++l)
        acc.template row<APPLY, GEN>(l, i + l, W, V, Ws, x, z[l], k);
    acc.write(L, out);
}

// The M = M* = 1 pass with scalar rows on the lanes of Lanes (M1Lanes, M1LanesF); without
// APPLY (nothing pending) or GEN (no new sample, Noise a NoNoiseOf) for the rare passes.
template <class Lanes, bool APPLY = true, bool GEN = true, class Noise>
void block_pass_m1(std::int64_t i0, std::int64_t i1, typename Lanes::Real* __restrict W,
                   typename Lanes::Real* __restrict V, const typename Lanes::Real* __restrict Ws,
                   typename Lanes::Real* __restrict x, const typename Lanes::Coeffs& k,
                   const Noise& noise, const SumLayout& L, double* __restrict out) {
    constexpr int G = Lanes::kGroup;
    Lanes acc;
    const auto groups = static_cast<std::size_t>(i1 - i0) / G;
    noise.groups(groups, [&](std::size_t g, const auto* z) {
        const std::int64_t i = i0 + G * static_cast<std::int64_t>(g);
        for (int l = 0; l < G; ++l) acc.template row<APPLY, GEN>(l, i + l, W, V, Ws, x, z[l], k);
        acc.end_group(g);
    });
    finish_block_m1<Lanes, APPLY, GEN>(acc, i0, i1, groups, noise, W, V, Ws, x, k, L, out);
}

#ifdef LINVAE_HAVE_AVX2_PATH
// Four rows of Real at a time as doubles (float32 weights are widened exactly).
LINVAE_AVX2 inline __m256d load4(const double* p) { return _mm256_loadu_pd(p); }
LINVAE_AVX2 inline __m256d load4(const float* p) {
    return _mm256_cvtps_pd(_mm_loadu_ps(p));
}
// Round to Real (as a scalar cast does), store, and return the stored values as doubles.
LINVAE_AVX2 inline __m256d store4(double* p, __m256d v) {
    _mm256_storeu_pd(p, v);
    return v;
}
LINVAE_AVX2 inline __m256d store4(float* p, __m256d v) {
    const __m128 f = _mm256_cvtpd_ps(v);
    _mm_storeu_ps(p, f);
    return _mm256_cvtps_pd(f);
}

// Four rows on the four lanes of AVX2 registers: M1Lanes::row, vectorised. Without
// weight decay (lam = 0, vs = 1) the factor vs is left out: 1 * V = V exactly, so the
// bits are those of the scalar row, one multiply fewer.
template <class Real, bool REC, bool SCALE_V>
struct M1RowsAvx2 {
    Real* __restrict W;
    Real* __restrict V;
    const Real* __restrict Ws;
    Real* __restrict x;
    std::int64_t i0;
    __m256d wm, cw, vs, cv, se, cs;
    __m256d q, a, b, m, d, E, R;

    LINVAE_AVX2 M1RowsAvx2(Real* W_, Real* V_, const Real* Ws_, Real* x_,
                           std::int64_t i0_, const M1Coeffs& k)
        : W(W_), V(V_), Ws(Ws_), x(x_), i0(i0_), wm(_mm256_set1_pd(k.wm)),
          cw(_mm256_set1_pd(k.cw)), vs(_mm256_set1_pd(k.vs)), cv(_mm256_set1_pd(k.cv)),
          se(_mm256_set1_pd(k.se)), cs(_mm256_set1_pd(k.cs)), q(_mm256_setzero_pd()), a(q),
          b(q), m(q), d(q), E(q), R(q) {}

    // rows i0 + 4g .. i0 + 4g + 3 with their four normals
    LINVAE_AVX2 inline void operator()(std::size_t g, __m256d noise) {
        const std::int64_t i = i0 + 4 * static_cast<std::int64_t>(g);
        const __m256d xo = load4(x + i), ws = load4(Ws + i);
        // the scalar expressions, with the same fused multiply-adds
        const __m256d w = store4(W + i, _mm256_fmadd_pd(xo, cw, _mm256_mul_pd(load4(W + i), wm)));
        const __m256d v0 = SCALE_V ? _mm256_mul_pd(vs, load4(V + i)) : load4(V + i);
        const __m256d v = store4(V + i, _mm256_fnmadd_pd(xo, cv, v0));
        q = _mm256_fmadd_pd(w, w, q);
        if constexpr (REC) {
            m = _mm256_fmadd_pd(w, ws, m);
            d = _mm256_fmadd_pd(v, ws, d);
            R = _mm256_fmadd_pd(w, v, R);
            E = _mm256_fmadd_pd(v, v, E);
        }
        const __m256d xi = store4(x + i, _mm256_fmadd_pd(se, noise, _mm256_mul_pd(ws, cs)));
        a = _mm256_fmadd_pd(w, xi, a);
        b = _mm256_fmadd_pd(v, xi, b);
    }
    LINVAE_AVX2 inline void operator()(std::size_t g, const double* noise) {
        (*this)(g, _mm256_loadu_pd(noise));
    }

    LINVAE_AVX2 void lanes_into(M1Lanes<Real, REC>& acc) const {
        _mm256_storeu_pd(acc.q, q);
        _mm256_storeu_pd(acc.a, a);
        _mm256_storeu_pd(acc.b, b);
        if constexpr (REC) {
            _mm256_storeu_pd(acc.m, m);
            _mm256_storeu_pd(acc.d, d);
            _mm256_storeu_pd(acc.R, R);
            _mm256_storeu_pd(acc.E, E);
        }
    }
};

// The groups of a source compiled for AVX2, so that the sink's AVX2 call operator is
// inlined and its sums stay in registers; from the generator, straight from registers.
template <class T, int G, class Sink>
LINVAE_AVX2 inline void groups_avx2(const NoiseBufferOf<T, G>& src,
                                    std::size_t n, Sink& sink) {
    for (std::size_t g = 0; g < n; ++g) sink(g, src.p + G * g);
}
template <class Sink>
LINVAE_AVX2 inline void groups_avx2(const NoiseStream& src, std::size_t n,
                                    Sink& sink) {
    normals4_avx2(src.s->lanes(), n, ZigguratTables::get(), sink);
}

// The M = M* = 1 pass with the AVX2 rows Rows (M1RowsAvx2, M1RowsF32Avx2) on Lanes.
template <class Rows, class Lanes, class Noise>
LINVAE_AVX2 void block_pass_m1_avx2_rows(
        std::int64_t i0, std::int64_t i1, typename Lanes::Real* __restrict W,
        typename Lanes::Real* __restrict V, const typename Lanes::Real* __restrict Ws,
        typename Lanes::Real* __restrict x, const typename Lanes::Coeffs& k,
        const Noise& noise, const SumLayout& L, double* __restrict out) {
    Rows rows(W, V, Ws, x, i0, k);
    const auto groups = static_cast<std::size_t>(i1 - i0) / Lanes::kGroup;
    groups_avx2(noise, groups, rows);
    Lanes acc;
    rows.lanes_into(acc);
    finish_block_m1(acc, i0, i1, groups, noise, W, V, Ws, x, k, L, out);
}

// The AVX2 M = 1 pass on M1Lanes: the rows without the vs factor when vs = 1.
template <class Lanes, class Noise>
void block_pass_m1_avx2(std::int64_t i0, std::int64_t i1, typename Lanes::Real* __restrict W,
                        typename Lanes::Real* __restrict V,
                        const typename Lanes::Real* __restrict Ws,
                        typename Lanes::Real* __restrict x, const M1Coeffs& k,
                        const Noise& noise, const SumLayout& L, double* __restrict out) {
    using Real = typename Lanes::Real;
    constexpr bool REC = Lanes::kRec;
    if (k.vs == 1.0)
        return block_pass_m1_avx2_rows<M1RowsAvx2<Real, REC, false>, Lanes>(i0, i1, W, V, Ws, x,
                                                                            k, noise, L, out);
    block_pass_m1_avx2_rows<M1RowsAvx2<Real, REC, true>, Lanes>(i0, i1, W, V, Ws, x, k, noise,
                                                                L, out);
}
#endif

// The hot path for float32 weights, M = M* = 1: float arithmetic on the weights (eight
// rows per AVX2 register, half the bytes per row, float normals two per random word).
// The decoder update is written W + (x cw - W dec1): its increment keeps all its digits
// in float, where the factor 1 - dec1 would round dec1 ~ 1/N to a few bits. Rows go to 8
// lanes by row index. Q, a and b (needed every step) are summed in float over runs of
// kRun groups (128 rows), then in double; a run's rounding (~1e-7 relative) is far below
// that of the float32 weights themselves, and widening every product to double cost as
// much as the rest of the pass. The recorded m, d, E, R are summed in double. A lane
// total is (l0 + .. + l3) + (l4 + .. + l7), each half in order.
struct M1CoeffsF {
    float dec, cw, vdec, cv, se, cs;
};

template <bool REC>
struct M1LanesF : LaneTotals<8, REC> {
    using Real = float;
    using Coeffs = M1CoeffsF;
    static constexpr bool kRec = REC;
    static constexpr int kGroup = 8;
    static constexpr int kRun = 16;  // groups of 8 rows summed in float
    using LaneTotals<8, REC>::q, LaneTotals<8, REC>::a, LaneTotals<8, REC>::b,
        LaneTotals<8, REC>::m, LaneTotals<8, REC>::d, LaneTotals<8, REC>::E,
        LaneTotals<8, REC>::R;
    float pq[8] = {}, pa[8] = {}, pb[8] = {};

    template <bool APPLY = true, bool GEN = true>
    inline void row(int l, std::int64_t i, float* __restrict W, float* __restrict V,
                    const float* __restrict Ws, float* __restrict x, float noise,
                    const M1CoeffsF& k) {
        const float ws = Ws[i];
        float w = W[i], v = V[i];
        if constexpr (APPLY) {
            const float xo = x[i], w0 = w, v0 = v;
            w = w0 + std::fma(xo, k.cw, -(w0 * k.dec));
            // without weight decay (vdec = 0) the decay term is left out, as in the AVX2 rows
            v = k.vdec == 0.0f ? std::fma(-xo, k.cv, v0) : v0 - std::fma(xo, k.cv, v0 * k.vdec);
            W[i] = w;
            V[i] = v;
        }
        pq[l] = std::fma(w, w, pq[l]);
        if constexpr (REC) {
            const double wd = w, vd = v, wsd = ws;
            m[l] = std::fma(wd, wsd, m[l]);
            d[l] = std::fma(vd, wsd, d[l]);
            R[l] = std::fma(wd, vd, R[l]);
            E[l] = std::fma(vd, vd, E[l]);
        }
        if constexpr (GEN) {
            const float xr = std::fma(k.se, noise, ws * k.cs);
            x[i] = xr;
            pa[l] = std::fma(w, xr, pa[l]);
            pb[l] = std::fma(v, xr, pb[l]);
        }
    }

    // end of a run: the float partial sums into the double ones
    void flush() {
        for (int l = 0; l < 8; ++l) {
            q[l] += static_cast<double>(pq[l]);
            a[l] += static_cast<double>(pa[l]);
            b[l] += static_cast<double>(pb[l]);
            pq[l] = pa[l] = pb[l] = 0.0f;
        }
    }

    void end_group(std::size_t g) {
        if ((g + 1) % kRun == 0) flush();
    }

    void write(const SumLayout& L, double* out) {
        flush();
        LaneTotals<8, REC>::write(L, out);
    }
};

// Float normals for the float32 pass, in groups of eight: from a buffer (Rademacher
// signs, supplied samples) or straight from the block's stream (NoiseStreamF).
using NoiseBufferF = NoiseBufferOf<float, 8>;

#ifdef LINVAE_HAVE_AVX2_PATH
// Eight rows in AVX2 registers: M1LanesF::row, vectorised; the double sums of rows
// 0-3 and 4-7 of a group go to lanes 0-3 and 4-7. DECAY_V: lam > 0.
template <bool REC, bool DECAY_V>
struct M1RowsF32Avx2 {
    float* __restrict W;
    float* __restrict V;
    const float* __restrict Ws;
    float* __restrict x;
    std::int64_t i0;
    __m256 dec, cw, vdec, cv, se, cs;
    __m256 pq, pa, pb;  // the float sums of the current run
    __m256d q[2], a[2], b[2], m[2], d[2], E[2], R[2];

    LINVAE_AVX2 M1RowsF32Avx2(float* W_, float* V_, const float* Ws_,
                              float* x_, std::int64_t i0_,
                              const M1CoeffsF& k)
        : W(W_), V(V_), Ws(Ws_), x(x_), i0(i0_), dec(_mm256_set1_ps(k.dec)),
          cw(_mm256_set1_ps(k.cw)), vdec(_mm256_set1_ps(k.vdec)), cv(_mm256_set1_ps(k.cv)),
          se(_mm256_set1_ps(k.se)), cs(_mm256_set1_ps(k.cs)), pq(_mm256_setzero_ps()),
          pa(pq), pb(pq) {
        for (int h = 0; h < 2; ++h)
            q[h] = a[h] = b[h] = m[h] = d[h] = E[h] = R[h] = _mm256_setzero_pd();
    }

    // the two halves of eight floats, widened exactly
    LINVAE_AVX2 static inline void widen(__m256 f, __m256d (&out)[2]) {
        out[0] = _mm256_cvtps_pd(_mm256_castps256_ps128(f));
        out[1] = _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1));
    }
    LINVAE_AVX2 static inline void add_widened(__m256d (&acc)[2], __m256 f) {
        __m256d h[2];
        widen(f, h);
        acc[0] = _mm256_add_pd(acc[0], h[0]);
        acc[1] = _mm256_add_pd(acc[1], h[1]);
    }

    LINVAE_AVX2 inline void operator()(std::size_t g, __m256 noise) {
        const std::int64_t i = i0 + 8 * static_cast<std::int64_t>(g);
        const __m256 xo = _mm256_loadu_ps(x + i), ws = _mm256_loadu_ps(Ws + i);
        const __m256 w0 = _mm256_loadu_ps(W + i), v0 = _mm256_loadu_ps(V + i);
        // the scalar expressions, with the same fused multiply-adds
        const __m256 w = _mm256_add_ps(w0, _mm256_fmsub_ps(xo, cw, _mm256_mul_ps(w0, dec)));
        const __m256 v = DECAY_V ? _mm256_sub_ps(v0, _mm256_fmadd_ps(xo, cv, _mm256_mul_ps(v0, vdec)))
                                 : _mm256_fnmadd_ps(xo, cv, v0);
        _mm256_storeu_ps(W + i, w);
        _mm256_storeu_ps(V + i, v);
        pq = _mm256_fmadd_ps(w, w, pq);
        if constexpr (REC) {
            __m256d wd[2], vd[2], wsd[2];
            widen(w, wd);
            widen(v, vd);
            widen(ws, wsd);
            for (int h = 0; h < 2; ++h) {
                m[h] = _mm256_fmadd_pd(wd[h], wsd[h], m[h]);
                d[h] = _mm256_fmadd_pd(vd[h], wsd[h], d[h]);
                R[h] = _mm256_fmadd_pd(wd[h], vd[h], R[h]);
                E[h] = _mm256_fmadd_pd(vd[h], vd[h], E[h]);
            }
        }
        const __m256 xr = _mm256_fmadd_ps(se, noise, _mm256_mul_ps(ws, cs));
        _mm256_storeu_ps(x + i, xr);
        pa = _mm256_fmadd_ps(w, xr, pa);
        pb = _mm256_fmadd_ps(v, xr, pb);
        if ((g + 1) % M1LanesF<REC>::kRun == 0) flush();
    }
    LINVAE_AVX2 inline void operator()(std::size_t g, const float* noise) {
        (*this)(g, _mm256_loadu_ps(noise));
    }

    LINVAE_AVX2 inline void flush() {
        add_widened(q, pq);
        add_widened(a, pa);
        add_widened(b, pb);
        pq = pa = pb = _mm256_setzero_ps();
    }

    // the state of the sums, for the scalar rows of the block's tail
    LINVAE_AVX2 void lanes_into(M1LanesF<REC>& acc) const {
        _mm256_storeu_ps(acc.pq, pq);
        _mm256_storeu_ps(acc.pa, pa);
        _mm256_storeu_ps(acc.pb, pb);
        for (int h = 0; h < 2; ++h) {
            _mm256_storeu_pd(acc.q + 4 * h, q[h]);
            _mm256_storeu_pd(acc.a + 4 * h, a[h]);
            _mm256_storeu_pd(acc.b + 4 * h, b[h]);
            if constexpr (REC) {
                _mm256_storeu_pd(acc.m + 4 * h, m[h]);
                _mm256_storeu_pd(acc.d + 4 * h, d[h]);
                _mm256_storeu_pd(acc.R + 4 * h, R[h]);
                _mm256_storeu_pd(acc.E + 4 * h, E[h]);
            }
        }
    }
};

template <class Sink>
LINVAE_AVX2 inline void groups_avx2(const NoiseStreamF& src, std::size_t n,
                                    Sink& sink) {
    normals8_avx2(src.s->lanes(), n, sink);
}

// The AVX2 M = 1 pass on M1LanesF: the rows without the V decay when vdec = 0.
template <class Lanes, class Noise>
void block_pass_m1_avx2(std::int64_t i0, std::int64_t i1, float* __restrict W,
                        float* __restrict V, const float* __restrict Ws, float* __restrict x,
                        const M1CoeffsF& k, const Noise& noise, const SumLayout& L,
                        double* __restrict out) {
    constexpr bool REC = Lanes::kRec;
    if (k.vdec == 0.0f)
        return block_pass_m1_avx2_rows<M1RowsF32Avx2<REC, false>, Lanes>(i0, i1, W, V, Ws, x, k,
                                                                         noise, L, out);
    block_pass_m1_avx2_rows<M1RowsF32Avx2<REC, true>, Lanes>(i0, i1, W, V, Ws, x, k, noise, L,
                                                             out);
}
#endif

}  // namespace linvae
