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

#include <array>
#include <cstdint>

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

// Coefficients of the pending update of one row:
//   W_i <- W_i Wmat + x_i cW,   V_i <- vscale V_i - x_i cV
// with Wmat = I - tau/N (b b^T + diag(D) + lam I), cW = tau b / sqrt(N),
// cV = tau g / sqrt(N), vscale = 1 - tau lam / N (MODEL.md section 3).
struct PendingUpdate {
    std::array<double, kMaxLatents * kMaxLatents> Wmat{};
    std::array<double, kMaxLatents> cW{}, cV{};
    double vscale = 1.0;
};

// Rows [i0, i1) of the row-major arrays W, V (N x M), Ws (N x M*), x (N).
// noise[j] is the standard normal for row i0 + j; cs[f] = sqrt(rho_f) c_f / sqrt(N).
// MC / MSC > 0 fix M / M* at compile time (the common small cases); 0 means runtime.
// The block's sums are written (not added) to its slot ``out`` laid out by ``L``.
template <class Real, int MC, int MSC, bool APPLY, bool REC, bool GEN>
void block_pass(int M_rt, int Ms_rt, std::int64_t i0, std::int64_t i1, Real* __restrict W,
                Real* __restrict V, const Real* __restrict Ws, Real* __restrict x,
                const PendingUpdate& up, const double* __restrict noise,
                const double* __restrict cs, double sqrt_eta, const SumLayout& L,
                double* __restrict out) {
    const int M = MC > 0 ? MC : M_rt;
    const int Ms = MSC > 0 ? MSC : Ms_rt;
    constexpr int MB = MC > 0 ? MC : kMaxLatents;
    constexpr int MSB = MSC > 0 ? MSC : kMaxLatents;
    // local accumulators: the order of additions inside a block is fixed (row order)
    double a[MB] = {}, b[MB] = {}, Q[MB * MB] = {};
    double E[REC ? MB * MB : 1] = {}, R[REC ? MB * MB : 1] = {};
    double m[REC ? MB * MSB : 1] = {}, d[REC ? MB * MSB : 1] = {};
    double w[MB], v[MB], ws[MSB];

    for (std::int64_t i = i0; i < i1; ++i) {
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
            double wn[MB];
            for (int k = 0; k < M; ++k) {
                double s = xo * up.cW[k];
                for (int j = 0; j < M; ++j) s += w[j] * up.Wmat[j * M + k];
                wn[k] = s;
            }
            for (int k = 0; k < M; ++k) {
                // store, then continue with the stored value so that float32 order
                // parameters describe the weights actually held
                Wi[k] = static_cast<Real>(wn[k]);
                Vi[k] = static_cast<Real>(up.vscale * v[k] - xo * up.cV[k]);
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
            double xi = sqrt_eta * noise[i - i0];
            for (int f = 0; f < Ms; ++f) xi += ws[f] * cs[f];
            x[i] = static_cast<Real>(xi);
            xi = static_cast<double>(x[i]);
            for (int k = 0; k < M; ++k) {
                a[k] += w[k] * xi;
                b[k] += v[k] * xi;
            }
        }
    }

    for (int k = 0; k < M; ++k) {
        out[L.a + k] = a[k];
        out[L.b + k] = b[k];
        for (int l = k; l < M; ++l) out[L.Q + k * M + l] = Q[k * M + l];
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

}  // namespace linvae
