// The Gram chain: the exact finite-N law of the order parameters of one-pass SGD with
// Gaussian data, at a cost per step that does not depend on N.
//
// Why it is exact: the noise n is isotropic and every update is equivariant under
// rotations of R^N, so (G, D), G = U^T U / N with U = [W*, W, V] (K = M* + 2M columns),
// is a Markov chain on its own. One step, given (G, D) and a factor G = L L^T:
//   c ~ N(0, I_M*), xi ~ N(0, I_K), chi ~ chi^2_{N-K}, independent;
//   z = L xi has the law of U^T n / sqrt(N), and ||n||^2 = xi^T xi + chi (chi is the part
//   of n outside span U; this split holds for any square root L, singular ones too);
//   y = U^T x / sqrt(N) = G[:, *] P^1/2 c + sqrt(eta) z;  a = y_W, b = y_V;
//   g = -a + (Q + beta I) b;  ||x||^2 = sum_* y_*^2 + eta (sum_{W,V} xi^2 + chi);
//   U' = U A + x bv^T / sqrt(N) with A = blockdiag(I, I - tau/N (b b^T + diag(D) + lam I),
//   (1 - tau_V lam / N) I) and bv = (0, tau b, -tau_V g), hence
//   G' = A^T G A + (A^T y bv^T + bv y^T A) / N + bv bv^T ||x||^2 / N^2,
//   D' = D - tau_D/N (diag(Q)/2 + beta/2 (1 - 1/D))   (tau: the rate of W).
// The W* block of G is I and never changes; it is never written.
//
// Each step changes G by O(1/N). The increment is computed on its own (as
// A = I + Abar, G' - G = Abar^T G + G Abar + Abar^T G Abar + ...) and added with a
// compensated sum, so that 1e10 steps at N = 1e9 do not accumulate 1e10 roundings.
//
// Random numbers: the weight engine's generators (rng.hpp), lane 0 of the streams
// (seed, replica, kGramInitStream) and (seed, replica, kGramStepStream): a trajectory
// is fixed by (seed, replica) alone, whatever the thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "engine.hpp"  // ModelConfig, RecordSink, Status codes, kMaxLatents
#include "rng.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace linvae {

// Stream ids far from the weight engine's (0, 1, 2 + block): the two engines run with
// one seed are then independent, so their laws can be compared sample against sample.
constexpr std::uint64_t kGramInitStream = std::uint64_t{1} << 62;
constexpr std::uint64_t kGramStepStream = kGramInitStream + 1;

// hi + lo += x by Knuth's two-sum: lo keeps the bits hi cannot hold, so an increment
// of relative size 1/N is not rounded away, step after step, in the same direction.
// keep = 0 drops lo, which makes it the plain hi += x (for comparison), without a branch.
inline void compensated_add(double& hi, double& lo, double x, double keep = 1.0) {
    const double t = x + lo;
    const double s = hi + t;
    const double bp = s - hi;
    lo = keep * ((hi - (s - bp)) + (t - bp));
    hi = s;
}

// standard_normal (rng.hpp), the same numbers, inlined into the step. The rare slow path
// works on a copy of the generator, so that the generator's address never escapes and
// its state can stay in registers.
[[gnu::noinline]] inline double gram_normal_slow(Xoshiro256pp& g, std::uint64_t bits,
                                                 const ZigguratTables& z) {
    return normal_slow(g, bits, z);
}

[[gnu::always_inline]] inline double gram_normal(Xoshiro256pp& g, const ZigguratTables& z) {
    const std::uint64_t bits = g.next();
    double x;
    if (normal_fast(bits, z, x)) return x;
    Xoshiro256pp copy = g;
    x = gram_normal_slow(copy, bits, z);
    g = copy;
    return x;
}

// log(1 + x) - x without the cancellation of the two terms for small x (Taylor series
// to x^10, below rounding for |x| < 1/64; the direct form loses at most 7 bits beyond).
inline double log1p_minus_x(double x) {
    if (std::abs(x) < 0x1.0p-6) {
        double s = 0.1;
        for (int k = 9; k >= 2; --k) s = 1.0 / k - x * s;
        return -x * x * s;
    }
    return std::log1p(x) - x;
}

// chi^2 with k degrees of freedom, exactly, for any k (N up to 2^53): 2 Gamma(k/2) by
// the rejection method of Marsaglia & Tsang (2000), which needs shape >= 1, i.e. k >= 2;
// k = 1 is a squared normal. For k ~ 1e9 the log test is evaluated as
// d (log1p(delta) - delta), delta = (1 + c x)^3 - 1 = O(k^-1/2), to keep its O(1) value
// exact where d (1 - v + log v) would lose ~9 digits.
class ChiSquare {
public:
    ChiSquare() = default;
    explicit ChiSquare(std::int64_t k) : k_(k) {
        if (k_ >= 2) {
            d_ = 0.5 * static_cast<double>(k_) - 1.0 / 3.0;
            c_ = 1.0 / std::sqrt(9.0 * d_);
        }
    }

    // The first attempt inline (accepted ~90% of the time by the squeeze); the rest, as
    // the same sequence of draws, out of line.
    [[gnu::always_inline]] inline double operator()(Xoshiro256pp& g, const ZigguratTables& z) const {
        if (k_ >= 2) {
            const double x = gram_normal(g, z);
            const double cx = c_ * x;
            if (cx > -1.0) {
                const double delta = cx * (3.0 + cx * (3.0 + cx));  // v - 1, v = (1 + c x)^3
                const double u = g.uniform();
                const double x2 = x * x;
                if (u < 1.0 - 0.0331 * x2 * x2 || exact_test(x2, delta, u))  // their squeeze
                    return 2.0 * (d_ + d_ * delta);
            }
        }
        Xoshiro256pp copy = g;  // as in gram_normal: the generator's address stays local
        const double v = k_ >= 2 ? attempts(copy, z) : small(copy, z);
        g = copy;
        return v;
    }

private:
    // log u < x^2/2 + d (1 - v + log v); log u <= u - 1 decides it without the log unless
    // u is within |rhs| = O(k^-1/2) of 1
    [[gnu::noinline]] bool exact_test(double x2, double delta, double u) const {
        const double rhs = 0.5 * x2 + d_ * log1p_minus_x(delta);
        return u - 1.0 < rhs || std::log(u) < rhs;
    }

    [[gnu::noinline]] double attempts(Xoshiro256pp& g, const ZigguratTables& z) const {
        for (;;) {
            const double x = gram_normal(g, z);
            const double cx = c_ * x;
            if (cx <= -1.0) continue;
            const double delta = cx * (3.0 + cx * (3.0 + cx));
            const double u = g.uniform();
            const double x2 = x * x;
            if (u < 1.0 - 0.0331 * x2 * x2 || exact_test(x2, delta, u))
                return 2.0 * (d_ + d_ * delta);
        }
    }

    [[gnu::noinline]] double small(Xoshiro256pp& g, const ZigguratTables& z) const {
        if (k_ <= 0) return 0.0;
        const double x = gram_normal(g, z);  // k = 1
        return x * x;
    }

    std::int64_t k_ = 0;
    double d_ = 0.0, c_ = 0.0;
};

struct GramReplica {
    std::vector<double> G, Gc;  // K x K row-major, symmetric, and its compensation terms
    std::vector<double> D, Dc;  // encoder variances and their compensation terms
    Xoshiro256pp gen;           // the step stream
    std::int64_t steps = 0;
    int status = kRunning;
};

// The step for (M, M*) = (MC, MSC) known at compile time, or both 0 for any sizes.
template <int MC, int MSC>
struct GramKernel {
    static constexpr bool kFixed = MC > 0 && MSC > 0;
    static constexpr int KB = kFixed ? MSC + 2 * MC : 3 * kMaxLatents;
    static constexpr int MB = kFixed ? MC : kMaxLatents;
    static constexpr int MSB = kFixed ? MSC : kMaxLatents;

    // What a run carries from step to step (on the stack for fixed sizes).
    struct State {
        double G[KB][KB], Gc[KB][KB], D[MB], Dc[MB];
    };
    // What one step computes and forgets (for fixed sizes a fresh local each step, which
    // the compiler may keep in registers).
    struct Scratch {
        double l[KB][KB], c[KB][KB];  // unit lower factor, its Schur columns
        double HQ[MB][MB];
        double rt[KB], y[KB];
        double g[MB], Qb[MB], bH[MB], dD[MB];
    };
    // The random numbers of one step: sqrt(rho) o c, xi and chi.
    struct Draws {
        double sc[MSB], xi[KB], chi;
    };

    struct Consts {
        int M, Ms, K;
        double N, invN, alpha, tau, lam, sqrt_eta, eta, blowup, pivot_tol;
        // the rates of W, V and D over N; V's over W's; omega = 1 - tau_V lam / N; omega^2 - 1
        double tN, tNV, alphaD, rV, om, e2;
        double sqrt_rho[MSB];
        double keep;  // 1: compensated sums, 0: plain ones
        ChiSquare chi;
    };

    const Consts k;

    // The sizes, as constants when they are template arguments (k's copies are not).
    int nM() const { return kFixed ? MC : k.M; }
    int nMs() const { return kFixed ? MSC : k.Ms; }
    int nK() const { return kFixed ? MSC + 2 * MC : k.K; }

    static Consts make_consts(const ModelConfig& c, bool compensated) {
        Consts k{};
        k.M = kFixed ? MC : c.M;
        k.Ms = kFixed ? MSC : c.Ms;
        k.K = k.Ms + 2 * k.M;
        k.N = static_cast<double>(c.N);
        k.invN = 1.0 / k.N;
        k.alpha = c.tau / k.N;
        k.tN = c.tau * k.invN;
        k.tNV = c.tau_V * k.invN;
        k.alphaD = c.tau_D / k.N;
        k.rV = c.tau_V / c.tau;  // exactly 1 when the rates are equal
        const double alphaV = c.tau_V / k.N;
        k.om = 1.0 - alphaV * c.lam;
        k.e2 = -alphaV * c.lam * (2.0 - alphaV * c.lam);
        k.tau = c.tau;
        k.lam = c.lam;
        k.eta = c.eta;
        k.sqrt_eta = std::sqrt(c.eta);
        k.blowup = c.blowup;
        // a pivot within this many roundings of G_jj from zero is a direction G does not
        // span (rank deficiency), not a sign of indefiniteness
        k.pivot_tol = 16.0 * k.K * std::numeric_limits<double>::epsilon();
        for (int f = 0; f < k.Ms; ++f) k.sqrt_rho[f] = std::sqrt(c.rho[static_cast<std::size_t>(f)]);
        k.keep = compensated ? 1.0 : 0.0;
        k.chi = ChiSquare(c.N - k.K);
        return k;
    }

    GramKernel(const ModelConfig& c, bool compensated) : k(make_consts(c, compensated)) {}

    static void load(State& w, const GramReplica& rep, int K, int M) {
        for (int i = 0; i < K; ++i)
            for (int j = 0; j < K; ++j) {
                w.G[i][j] = rep.G[static_cast<std::size_t>(i * K + j)];
                w.Gc[i][j] = rep.Gc[static_cast<std::size_t>(i * K + j)];
            }
        for (int l = 0; l < M; ++l) {
            w.D[l] = rep.D[static_cast<std::size_t>(l)];
            w.Dc[l] = rep.Dc[static_cast<std::size_t>(l)];
        }
    }

    static void store(const State& w, GramReplica& rep, int K, int M) {
        for (int i = 0; i < K; ++i)
            for (int j = 0; j < K; ++j) {
                rep.G[static_cast<std::size_t>(i * K + j)] = w.G[i][j];
                rep.Gc[static_cast<std::size_t>(i * K + j)] = w.Gc[i][j];
            }
        for (int l = 0; l < M; ++l) {
            rep.D[static_cast<std::size_t>(l)] = w.D[l];
            rep.Dc[static_cast<std::size_t>(l)] = w.Dc[l];
        }
    }

    // G = l diag(p) l^T with l unit lower triangular (the Cholesky factor is
    // l diag(sqrt p)); false if G is not positive semidefinite. This form puts only
    // divisions on the chain from one step's G to the next, the square roots rt = sqrt(p)
    // beside it. The W* block of G is I, so the first M* columns of l are those of G. A
    // pivot within rounding of zero gives a zero column: G does not span that direction
    // (PSD then requires the rest of its Schur column to vanish too, to rounding).
    [[gnu::always_inline]] inline bool factor(const State& w, Scratch& s) const {
        const int Ms = nMs(), K = nK();
        for (int i = Ms; i < K; ++i)
            for (int f = 0; f < Ms; ++f) s.l[i][f] = s.c[i][f] = w.G[i][f];
        for (int j = Ms; j < K; ++j) {
            double p = w.G[j][j];
            for (int l = 0; l < j; ++l) p -= s.l[j][l] * s.c[j][l];
            const double tol = k.pivot_tol * w.G[j][j];
            if (p > tol) {
                const double inv = 1.0 / p;
                s.rt[j] = std::sqrt(p);
                for (int i = j + 1; i < K; ++i) {
                    double c = w.G[i][j];
                    for (int l = 0; l < j; ++l) c -= s.l[i][l] * s.c[j][l];
                    s.c[i][j] = c;
                    s.l[i][j] = c * inv;
                }
            } else if (p >= -tol) {
                s.rt[j] = 0.0;
                for (int i = j + 1; i < K; ++i) {
                    double c = w.G[i][j];
                    for (int l = 0; l < j; ++l) c -= s.l[i][l] * s.c[j][l];
                    if (!(c * c <= tol * w.G[i][i])) return false;
                    s.c[i][j] = s.l[i][j] = 0.0;
                }
            } else {
                return false;  // a negative pivot, or NaN
            }
        }
        return true;
    }

    // The random numbers of one step, in their fixed order: c, xi, chi.
    [[gnu::always_inline]] inline void draw(Draws& d, Xoshiro256pp& gen,
                                            const ZigguratTables& zt) const {
        for (int f = 0; f < nMs(); ++f) d.sc[f] = k.sqrt_rho[f] * gram_normal(gen, zt);
        for (int i = 0; i < nK(); ++i) d.xi[i] = gram_normal(gen, zt);
        d.chi = k.chi(gen, zt);
    }

    // One step with the random numbers dr; returns the status after it. A step that
    // finds the state before it diverged leaves it unchanged.
    [[gnu::always_inline]] inline int step(State& w, Scratch& s, const Draws& dr,
                                           double beta) const {
        const int M = nM(), Ms = nMs(), K = nK(), iW = Ms, iV = Ms + M;
        const double alpha = k.alpha, lam = k.lam, se = k.sqrt_eta;
        if (!factor(w, s)) {
            for (int i = 0; i < K; ++i)
                for (int j = 0; j <= i; ++j)
                    if (!std::isfinite(w.G[i][j])) return kNonFinite;
            return kIndefinite;
        }

        // y = G[:, *] P^1/2 c + sqrt(eta) z, z = l (rt o xi); the * rows of l are [I 0]
        double xx = 0.0;  // sum of xi^2 over the W and V rows
        for (int i = 0; i < Ms; ++i) s.y[i] = dr.sc[i] + se * dr.xi[i];
        for (int i = Ms; i < K; ++i) {
            double z = s.rt[i] * dr.xi[i];
            for (int j = 0; j < Ms; ++j) z += s.l[i][j] * dr.xi[j];
            for (int j = Ms; j < i; ++j) z += s.l[i][j] * (s.rt[j] * dr.xi[j]);
            double sig = 0.0;
            for (int f = 0; f < Ms; ++f) sig += w.G[i][f] * dr.sc[f];
            s.y[i] = sig + se * z;
            xx += dr.xi[i] * dr.xi[i];
        }
        double x2 = 0.0;  // ||x||^2: the * coordinates of x are y_*, the rest is noise
        for (int f = 0; f < Ms; ++f) x2 += s.y[f] * s.y[f];
        x2 += k.eta * (xx + dr.chi);

        // A NaN anywhere in G has failed the factorisation, an infinity reaches a diagonal.
        for (int l = 0; l < M; ++l)
            if (!(w.G[iW + l][iW + l] <= k.blowup && w.G[iV + l][iV + l] <= k.blowup))
                return std::isfinite(w.G[iW + l][iW + l] + w.G[iV + l][iV + l]) ? kBlowUp : kNonFinite;

        // g = -a + (Q + beta I) b
        const double* a = s.y + iW;
        const double* b = s.y + iV;
        double ba = 0.0;
        for (int l = 0; l < M; ++l) {
            double q = 0.0;
            for (int m = 0; m < M; ++m) q += w.G[iW + l][iW + m] * b[m];
            s.Qb[l] = q;
            s.g[l] = (q - a[l]) + beta * b[l];
            ba += b[l] * a[l];
        }

        // The increment, block by block. Abar_W v = -alpha (b (b.v) + Lam o v) with
        // Lam = D + lam; omega = 1 - alpha lam scales V; u = A^T y; the x x^T part
        // contributes ||x||^2 tau^2 / N^2 times products of b and -g.
        const double tN = k.tN, tNV = k.tNV, s2 = x2 * tN * tN, s2V = x2 * tN * tNV,
                     s2VV = x2 * tNV * tNV, om = k.om, lamV = k.rV * lam;
        double Lam[MB], uW[MB], uV[MB];
        for (int l = 0; l < M; ++l) {
            Lam[l] = w.D[l] + lam;
            uW[l] = a[l] - alpha * (b[l] * ba + Lam[l] * a[l]);
            uV[l] = om * b[l];
            // D' = D - tau/N (Q_kk / 2 + beta/2 (1 - 1/D_k)), with Q before the step
            s.dD[l] = -k.alphaD * (0.5 * w.G[iW + l][iW + l] + 0.5 * beta * (1.0 - 1.0 / w.D[l]));
        }
        const double keep = k.keep;
        auto add = [&](int i, int j, double dG) { compensated_add(w.G[i][j], w.Gc[i][j], dG, keep); };
        // m, d: G[f][W_l], G[f][V_l]
        for (int f = 0; f < Ms; ++f) {
            double bm = 0.0;
            for (int l = 0; l < M; ++l) bm += b[l] * w.G[iW + l][f];
            for (int l = 0; l < M; ++l) {
                add(f, iW + l, -alpha * (b[l] * bm + Lam[l] * w.G[iW + l][f]) + tN * (b[l] * s.y[f]));
                add(f, iV + l, -alpha * lamV * w.G[iV + l][f] - tNV * (s.g[l] * s.y[f]));
            }
        }
        // Q: with HQ = Q Abar_W, the change is HQ + HQ^T + Abar_W HQ + noise
        for (int l = 0; l < M; ++l)
            for (int m = 0; m < M; ++m)
                s.HQ[l][m] = -alpha * (s.Qb[l] * b[m] + w.G[iW + l][iW + m] * Lam[m]);
        for (int m = 0; m < M; ++m) {
            double q = 0.0;
            for (int l = 0; l < M; ++l) q += b[l] * s.HQ[l][m];
            s.bH[m] = q;
        }
        for (int l = 0; l < M; ++l)
            for (int m = l; m < M; ++m)
                add(iW + l, iW + m,
                    (s.HQ[l][m] + s.HQ[m][l]) - alpha * (b[l] * s.bH[m] + Lam[l] * s.HQ[l][m]) +
                        tN * (uW[l] * b[m] + b[l] * uW[m]) + s2 * (b[l] * b[m]));
        // R: omega Abar_W R - alpha lam R + noise
        for (int m = 0; m < M; ++m) {
            double q = 0.0;
            for (int l = 0; l < M; ++l) q += b[l] * w.G[iW + l][iV + m];
            s.bH[m] = q;
        }
        for (int l = 0; l < M; ++l)
            for (int m = 0; m < M; ++m) {
                const double R = w.G[iW + l][iV + m];
                add(iW + l, iV + m,
                    -alpha * (om * (b[l] * s.bH[m] + Lam[l] * R) + lamV * R) +
                        tN * (b[l] * uV[m] - k.rV * (uW[l] * s.g[m])) - s2V * (b[l] * s.g[m]));
            }
        // E: (omega^2 - 1) E + noise
        const double e2 = k.e2;
        for (int l = 0; l < M; ++l)
            for (int m = l; m < M; ++m)
                add(iV + l, iV + m,
                    e2 * w.G[iV + l][iV + m] - tNV * (uV[l] * s.g[m] + s.g[l] * uV[m]) +
                        s2VV * (s.g[l] * s.g[m]));
        for (int j = Ms; j < K; ++j)
            for (int i = 0; i < j; ++i) w.G[j][i] = w.G[i][j];

        for (int l = 0; l < M; ++l) compensated_add(w.D[l], w.Dc[l], s.dD[l], keep);
        for (int l = 0; l < M; ++l) {
            if (!std::isfinite(w.D[l])) return kNonFinite;
            if (w.D[l] <= 0.0) return kNonPositiveD;
        }
        return kRunning;
    }
};

// S replicas of the Gram chain, with the interface of Engine (engine.hpp): the same
// configuration, initial states, runs writing into a RecordSink, and status codes.
class GramEngine {
public:
    GramEngine(ModelConfig cfg, std::uint64_t seed, int replicas, bool compensated = true)
        : cfg_(std::move(cfg)), seed_(seed), compensated_(compensated) {
        if (cfg_.N < 1 || cfg_.M < 1 || cfg_.Ms < 1 || cfg_.M > kMaxLatents ||
            cfg_.Ms > kMaxLatents || replicas < 1 ||
            static_cast<int>(cfg_.rho.size()) != cfg_.Ms)
            throw std::invalid_argument("GramEngine: inconsistent sizes (validate in Python first)");
        if (cfg_.N < K())
            throw std::invalid_argument("the Gram chain needs N >= M* + 2M = " + std::to_string(K()) +
                                        ", got N = " + std::to_string(cfg_.N));
        if (cfg_.noise.family != Family::kGaussian || cfg_.factors != Family::kGaussian)
            throw std::invalid_argument("the Gram chain is exact for Gaussian data only; "
                                        "other families need the weight-space engine");
        if (cfg_.data.finite())
            throw std::invalid_argument("the Gram chain draws a fresh sample every step; "
                                        "a finite dataset needs the weight-space engine");
        const auto KK = static_cast<std::size_t>(K() * K());
        const auto M = static_cast<std::size_t>(cfg_.M);
        reps_.resize(static_cast<std::size_t>(replicas));
        for (int r = 0; r < replicas; ++r) {
            GramReplica& rep = reps_[static_cast<std::size_t>(r)];
            rep.G.assign(KK, 0.0);  // W = V = 0 until an initial state is set
            for (int f = 0; f < cfg_.Ms; ++f) rep.G[static_cast<std::size_t>(f * K() + f)] = 1.0;
            rep.Gc.assign(KK, 0.0);
            rep.D.assign(M, 1.0);
            rep.Dc.assign(M, 0.0);
            rep.gen = NormalStream(seed, static_cast<std::uint64_t>(r), kGramStepStream).lane(0);
        }
    }

    const ModelConfig& config() const { return cfg_; }
    int replicas() const { return static_cast<int>(reps_.size()); }
    int K() const { return cfg_.Ms + 2 * cfg_.M; }
    bool compensated() const { return compensated_; }
    GramReplica& replica(int r) { return reps_.at(static_cast<std::size_t>(r)); }

    // The law of the authors' start (W, V i.i.d. N(0, 1), W*^T W* / N = I, D = 1), drawn
    // exactly in O(K^2): rotate W* onto the first M* coordinates; then m, d are those rows
    // of W, V over sqrt(N) (i.i.d. N(0, 1/N)) and the other N - M* rows add a
    // Wishart(N - M*, I_2M) / N, drawn by Bartlett's decomposition B B^T (B lower
    // triangular, B_ii^2 ~ chi^2_{N - M* - i}, i from 0, B_ij ~ N(0, 1) below).
    void init_random(int threads) {
        for_each_replica(replicas(), threads, [&](int r) {
            GramReplica& rep = reps_[static_cast<std::size_t>(r)];
            NormalStream s(seed_, static_cast<std::uint64_t>(r), kGramInitStream);
            Xoshiro256pp& g = s.lane(0);
            const ZigguratTables& zt = ZigguratTables::get();
            const int Ms = cfg_.Ms, P = 2 * cfg_.M, K = this->K();
            const double N = static_cast<double>(cfg_.N), sqN = std::sqrt(N);
            std::vector<double> X(static_cast<std::size_t>(P * Ms)), B(static_cast<std::size_t>(P * P), 0.0);
            for (auto& v : X) v = standard_normal(g, zt) / sqN;  // rows: m, then d
            for (int i = 0; i < P; ++i) {
                for (int j = 0; j < i; ++j) B[static_cast<std::size_t>(i * P + j)] = standard_normal(g, zt);
                B[static_cast<std::size_t>(i * P + i)] = std::sqrt(ChiSquare(cfg_.N - Ms - i)(g, zt));
            }
            std::vector<double> G(static_cast<std::size_t>(K * K), 0.0);
            for (int f = 0; f < Ms; ++f) G[static_cast<std::size_t>(f * K + f)] = 1.0;
            for (int i = 0; i < P; ++i) {
                for (int f = 0; f < Ms; ++f) {
                    const double v = X[static_cast<std::size_t>(i * Ms + f)];
                    G[static_cast<std::size_t>((Ms + i) * K + f)] = v;
                    G[static_cast<std::size_t>(f * K + Ms + i)] = v;
                }
                for (int j = 0; j <= i; ++j) {
                    double xx = 0.0, bb = 0.0;
                    for (int f = 0; f < Ms; ++f)
                        xx += X[static_cast<std::size_t>(i * Ms + f)] * X[static_cast<std::size_t>(j * Ms + f)];
                    for (int l = 0; l <= j; ++l)
                        bb += B[static_cast<std::size_t>(i * P + l)] * B[static_cast<std::size_t>(j * P + l)];
                    const double v = xx + bb / N;
                    G[static_cast<std::size_t>((Ms + i) * K + Ms + j)] = v;
                    G[static_cast<std::size_t>((Ms + j) * K + Ms + i)] = v;
                }
            }
            reset(rep, G, std::vector<double>(static_cast<std::size_t>(cfg_.M), 1.0));
        });
    }

    // A prescribed start: G0 (K x K row-major, the Gram matrix of docs/model.md
    // #initial-states) and D0, taken exactly. G0 is checked: finite, symmetric, W* block
    // I (to 1e-12, then set exactly), positive semidefinite.
    void init_gram(std::vector<double> G0, const std::vector<double>& D0, int threads) {
        const int K = this->K(), Ms = cfg_.Ms;
        if (static_cast<int>(G0.size()) != K * K || static_cast<int>(D0.size()) != cfg_.M)
            throw std::invalid_argument("init: G must be K x K (K = M* + 2M) and D of length M");
        double scale = 1.0;
        for (double v : G0) {
            if (!std::isfinite(v)) throw std::invalid_argument("init: the Gram matrix is not finite");
            scale = std::max(scale, std::abs(v));
        }
        for (double v : D0)
            if (!(std::isfinite(v) && v > 0.0)) throw std::invalid_argument("init: D must be finite and > 0");
        auto at = [&](int i, int j) -> double& { return G0[static_cast<std::size_t>(i * K + j)]; };
        for (int i = 0; i < K; ++i)
            for (int j = 0; j < i; ++j) {
                if (std::abs(at(i, j) - at(j, i)) > 1e-12 * scale)
                    throw std::invalid_argument("init: the Gram matrix is not symmetric");
                at(i, j) = at(j, i) = 0.5 * (at(i, j) + at(j, i));
            }
        for (int i = 0; i < Ms; ++i)
            for (int j = 0; j < Ms; ++j) {
                const double want = i == j ? 1.0 : 0.0;
                if (std::abs(at(i, j) - want) > 1e-12)
                    throw std::invalid_argument("init: the W* block of the Gram matrix must be I "
                                                "(W*^T W* / N = I)");
                at(i, j) = want;
            }
        if (!positive_semidefinite(G0))
            throw std::invalid_argument("init: the Gram matrix [[I, m^T, d^T], [m, Q, R], "
                                        "[d, R^T, E]] is not positive semidefinite");
        for_each_replica(replicas(), threads, [&](int r) { reset(reps_[static_cast<std::size_t>(r)], G0, D0); });
    }

    // Whether G (K x K row-major) has the chain's factor (the test of every step).
    bool positive_semidefinite(const std::vector<double>& G) const {
        bool ok = false;
        dispatch([&](const auto& kern) {
            with_storage(kern, [&](auto& w, auto& s) {
                GramReplica tmp;
                tmp.G = G;
                tmp.Gc.assign(G.size(), 0.0);
                tmp.D.assign(static_cast<std::size_t>(cfg_.M), 1.0);
                tmp.Dc = tmp.D;
                kern.load(w, tmp, K(), cfg_.M);
                ok = kern.factor(w, s);
            });
        });
        return ok;
    }

    // Run n_steps steps of every live replica, as Engine::run: beta[j] is beta(t) before
    // step j of this run, record k is the state after record_offsets[k] steps. Replicas
    // run in parallel (each is a sequential chain). Called without the GIL.
    void run(const double* beta, std::int64_t n_steps, const std::int64_t* rec,
             std::int64_t n_rec, const RecordSink& sink, int threads) {
        dispatch([&](const auto& kern) {
            for_each_replica(replicas(), threads, [&](int r) {
                GramReplica& rep = reps_[static_cast<std::size_t>(r)];
                if (rep.status == kRunning) run_replica(kern, rep, r, beta, n_steps, rec, n_rec, sink);
            });
        });
    }

    // The random numbers of n_steps steps of replica 0 (c, xi, chi), drawn from a copy of
    // its generator without stepping: the generator's share of a step (benchmarks).
    double fill_floor(std::int64_t n_steps) const {
        double total = 0.0;
        dispatch([&](const auto& kern) {
            using Kern = std::decay_t<decltype(kern)>;
            Xoshiro256pp gen = reps_[0].gen;
            const ZigguratTables& zt = ZigguratTables::get();
            typename Kern::Draws d;
            double sum = 0.0;
            for (std::int64_t j = 0; j < n_steps; ++j) {
                kern.draw(d, gen, zt);
                sum += d.chi + d.xi[0] + d.sc[0];
            }
            total = sum;
        });
        return total;
    }

private:
    ModelConfig cfg_;
    std::uint64_t seed_;
    bool compensated_;
    std::vector<GramReplica> reps_;

    template <class F>
    void dispatch(F&& f) const {
        const int M = cfg_.M, Ms = cfg_.Ms;
        if (M == 1 && Ms == 1) return f(GramKernel<1, 1>(cfg_, compensated_));
        if (M == 2 && Ms == 1) return f(GramKernel<2, 1>(cfg_, compensated_));
        if (M == 2 && Ms == 2) return f(GramKernel<2, 2>(cfg_, compensated_));
        if (M == 4 && Ms == 4) return f(GramKernel<4, 4>(cfg_, compensated_));
        return f(GramKernel<0, 0>(cfg_, compensated_));
    }

    // A kernel's State and Scratch: on the stack for fixed sizes, else on the heap (K up
    // to 96 makes them ~300 kB).
    template <class Kern, class F>
    static void with_storage(const Kern&, F&& f) {
        using State = typename Kern::State;
        using Scratch = typename Kern::Scratch;
        if constexpr (Kern::kFixed) {
            State w{};
            Scratch s{};
            f(w, s);
        } else {
            auto w = std::make_unique<State>();
            auto s = std::make_unique<Scratch>();
            f(*w, *s);
        }
    }

    void reset(GramReplica& rep, const std::vector<double>& G, const std::vector<double>& D) const {
        rep.G = G;
        rep.Gc.assign(G.size(), 0.0);
        rep.D = D;
        rep.Dc.assign(D.size(), 0.0);
        rep.steps = 0;
        rep.status = kRunning;
    }

    // Record k of this run: the order parameters are blocks of G (docs/model.md
    // #initial-states). Like Engine::record, an E beyond blowup stops the replica.
    template <class Kern>
    static int record(const Kern& kern, const typename Kern::State& w, int r, std::int64_t k,
                      const RecordSink& sink) {
        const int M = kern.nM(), Ms = kern.nMs(), iW = Ms, iV = Ms + M;
        const auto out = sink.row(r, k, M, Ms);
        double *m = out[op::m], *d = out[op::d], *Q = out[op::Q], *E = out[op::E],
               *R = out[op::R], *D = out[op::D];
        for (int l = 0; l < M; ++l) {
            for (int f = 0; f < Ms; ++f) {
                m[l * Ms + f] = w.G[iW + l][f];
                d[l * Ms + f] = w.G[iV + l][f];
            }
            for (int j = 0; j < M; ++j) {
                Q[l * M + j] = w.G[iW + l][iW + j];
                E[l * M + j] = w.G[iV + l][iV + j];
                R[l * M + j] = w.G[iW + l][iV + j];
            }
            D[l] = w.D[l];
        }
        for (int l = 0; l < M; ++l)
            if (!(E[l * M + l] <= kern.k.blowup)) return kBlowUp;
        return kRunning;
    }

    template <class Kern>
    static void run_replica(const Kern& kern_, GramReplica& rep, int r, const double* beta,
                            std::int64_t n_steps, const std::int64_t* rec, std::int64_t n_rec,
                            const RecordSink& sink) {
        const int K = kern_.nK(), M = kern_.nM();
        const Kern kern = kern_;  // a local copy: no store to the state can alias its constants
        Xoshiro256pp gen = rep.gen;
        const ZigguratTables& zt = ZigguratTables::get();
        std::int64_t next = 0, steps = rep.steps;
        int status = kRunning;
        // The numbers of step j + 1 are drawn before step j is computed, so that the
        // generator's work runs beside the step's chain of dependent operations; the
        // sequence of draws is the same, and none is drawn for a step this run won't take.
        // State, draws and generator are locals whose addresses never leave this loop
        // (records and the final store get copies), so that they can live in registers.
        auto loop = [&](auto& w, auto&& one_step) {
            typename Kern::Draws cur, nxt;
            if (n_steps > 0) kern.draw(cur, gen, zt);
            for (std::int64_t j = 0; j < n_steps; ++j) {
                if (next < n_rec && rec[next] == j) {
                    status = record(kern, typename Kern::State(w), r, next++, sink);
                    if (status != kRunning) break;
                }
                if (j + 1 < n_steps) kern.draw(nxt, gen, zt);
                status = one_step(w, cur, beta[j]);
                ++steps;
                if (status != kRunning) break;
                cur = nxt;
            }
            if (status == kRunning && next < n_rec && rec[next] == n_steps)
                status = record(kern, typename Kern::State(w), r, next++, sink);
        };
        if constexpr (Kern::kFixed) {
            typename Kern::State w{};
            Kern::load(w, rep, K, M);
            typename Kern::State w_run = w;
            loop(w_run, [&](typename Kern::State& st, const typename Kern::Draws& d, double b) {
                typename Kern::Scratch s;  // per step: nothing of it outlives the step
                return kern.step(st, s, d, b);
            });
            w = w_run;
            Kern::store(w, rep, K, M);
        } else {
            auto w = std::make_unique<typename Kern::State>();
            auto s = std::make_unique<typename Kern::Scratch>();
            Kern::load(*w, rep, K, M);
            loop(*w, [&](typename Kern::State& st, const typename Kern::Draws& d, double b) {
                return kern.step(st, *s, d, b);
            });
            Kern::store(*w, rep, K, M);
        }
        rep.gen = gen;
        rep.steps = steps;
        rep.status = status;
    }
};

}  // namespace linvae
