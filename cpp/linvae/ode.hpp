// The limiting ODEs of the order parameters (docs/model.md#odes): right-hand side, its
// analytic Jacobian, beta(t) of the built-in schedules, and the physicality checks of
// docs/model.md#pitfalls (smallest eigenvalue of the Gram matrix, D > 0).
//
// The state is the flat vector of linvae.ode.StateLayout: m (M x M*, row-major), d (same),
// the upper triangles of Q and E (row-major), R (M x M, row-major), D (M). This is the
// package's one implementation of the ODEs; tests/ode_oracle.py keeps the NumPy form of
// the same equations as a test oracle.
//
// A System owns scratch buffers, so one System must not be used by two threads at once;
// copies are cheap (the solvers and the grid loops copy one per thread).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <Eigen/Dense>

#include "model.hpp"

namespace linvae::ode {

// ---------------------------------------------------------------------------------------
// beta(t): the built-in schedule kinds of linvae.schedules, with the same formulas
// ---------------------------------------------------------------------------------------
enum class ScheduleKind : int { kConstant = 0, kTanh = 1, kLinear = 2, kSigmoid = 3, kCyclical = 4 };

constexpr int kScheduleParams = 4;

struct Schedule {
    ScheduleKind kind = ScheduleKind::kConstant;
    // constant: (beta); tanh: (beta_inf, gamma); linear: (beta_inf, t_warmup, beta0);
    // sigmoid: (beta_inf, gamma, t_mid); cyclical: (beta_max, period, ratio, n_cycles)
    double p[kScheduleParams] = {0.0, 0.0, 0.0, 0.0};

    static Schedule make(int kind, const double* params) {
        if (kind < 0 || kind > 4) throw std::invalid_argument("unknown schedule kind");
        Schedule s;
        s.kind = static_cast<ScheduleKind>(kind);
        for (int i = 0; i < kScheduleParams; ++i) s.p[i] = params[i];
        return s;
    }

    double at(double t) const {
        switch (kind) {
            case ScheduleKind::kConstant:
                return p[0];
            case ScheduleKind::kTanh:
                return p[0] * std::tanh(p[1] * t);
            case ScheduleKind::kLinear: {
                const double frac = std::clamp(t / p[1], 0.0, 1.0);
                return p[2] + (p[0] - p[2]) * frac;
            }
            case ScheduleKind::kSigmoid:
                return p[0] * 0.5 * (1.0 + std::tanh(0.5 * p[1] * (t - p[2])));
            case ScheduleKind::kCyclical: {
                if (t >= p[3] * p[1]) return p[0];
                double r = std::fmod(t, p[1]);  // np.mod: the sign of the divisor
                if (r != 0.0 && r < 0.0) r += p[1];
                const double phase = r / (p[2] * p[1]);
                return p[0] * std::clamp(phase, 0.0, 1.0);
            }
        }
        return p[0];
    }

    double limit() const { return p[0]; }
    bool is_constant() const { return kind == ScheduleKind::kConstant; }
};

// ---------------------------------------------------------------------------------------
// model parameters and the flat layout
// ---------------------------------------------------------------------------------------
// The model's parameters (model.hpp) with beta(t) as a schedule.
struct Model : Params {
    Schedule beta;
};

// The flat state: the order parameters in the order of the op:: table, a symmetric
// matrix as its upper triangle (row-major), the others row-major.
struct Layout {
    int M = 1, Ms = 1;
    int ntri = 1;
    std::array<int, op::count> off{};  // where each order parameter starts, by op::
    int n = 0;
    std::vector<int> sym;  // (i, j) -> position within a triangle block, M x M

    Layout() = default;
    Layout(int M_, int Ms_) : M(M_), Ms(Ms_) {
        ntri = M * (M + 1) / 2;
        n = 0;
        for (int o = 0; o < op::count; ++o) {
            off[static_cast<std::size_t>(o)] = n;
            n += flat_size(kOrderParameters[o].shape, M, Ms);
        }
        sym.assign(static_cast<std::size_t>(M * M), 0);
        int k = 0;
        for (int i = 0; i < M; ++i)
            for (int j = i; j < M; ++j, ++k) {
                sym[static_cast<std::size_t>(i * M + j)] = k;
                sym[static_cast<std::size_t>(j * M + i)] = k;
            }
    }
    int at(int o) const { return off[static_cast<std::size_t>(o)]; }
    int tri(int i, int j) const { return sym[static_cast<std::size_t>(i * M + j)]; }
};

// ---------------------------------------------------------------------------------------
// small dense matrices in row-major scratch buffers (sizes are a few latents)
// ---------------------------------------------------------------------------------------
namespace detail {

// C (r x c) = A (r x k) * B (k x c). Each entry sums over l in order; the loop over j is
// innermost so that the entries of a row accumulate side by side (the sums are exact
// IEEE sums in a fixed order: no reassociation, no fused multiply-add).
inline void mm(const double* A, const double* B, double* C, int r, int k, int c) {
    for (int i = 0; i < r; ++i) {
        double* Ci = C + i * c;
        for (int j = 0; j < c; ++j) Ci[j] = 0.0;
        for (int l = 0; l < k; ++l) {
            const double a = A[i * k + l];
            const double* Bl = B + l * c;
            for (int j = 0; j < c; ++j) Ci[j] += a * Bl[j];
        }
    }
}

// C (r x c) = A (r x k) * diag(w) * B^T, B (c x k)
inline void mdmt(const double* A, const double* w, const double* B, double* C, int r, int k,
                 int c) {
    for (int i = 0; i < r; ++i) {
        double* Ci = C + i * c;
        for (int j = 0; j < c; ++j) Ci[j] = 0.0;
        for (int l = 0; l < k; ++l) {
            const double a = A[i * k + l] * w[l];
            for (int j = 0; j < c; ++j) Ci[j] += a * B[j * k + l];
        }
    }
}

}  // namespace detail

// ---------------------------------------------------------------------------------------
// the system
// ---------------------------------------------------------------------------------------
class System {
public:
    System() = default;
    explicit System(Model model) : model_(std::move(model)), lay_(model_.M, model_.Ms) {
        if (model_.M < 1 || model_.Ms < 1) throw std::invalid_argument("M and M_star must be >= 1");
        if (static_cast<int>(model_.rho.size()) != model_.Ms)
            throw std::invalid_argument("rho must have M_star entries");
        const auto M = static_cast<std::size_t>(model_.M);
        const auto MS = static_cast<std::size_t>(model_.M * model_.Ms);
        pe_.resize(static_cast<std::size_t>(model_.Ms));
        for (int j = 0; j < model_.Ms; ++j)
            pe_[static_cast<std::size_t>(j)] = model_.rho[static_cast<std::size_t>(j)] + model_.eta;
        for (auto* v : {&m_, &d_, &dm_, &dd_, &t1_, &t2_, &t3_}) v->assign(MS, 0.0);
        for (auto* v : {&Q_, &E_, &R_, &Bb_, &Cab_, &Aaa_, &K_, &B_, &BbK_, &CabK_, &Ebg_, &Eag_,
                        &Egg_, &QB_, &KBbK_, &dQ_, &dE_, &dR_, &dBb_, &dCab_, &dAaa_, &dB_,
                        &dEbg_, &dEag_, &dCabK_, &dEgg_, &dQB_, &s1_, &s2_, &s3_})
            v->assign(M * M, 0.0);
        D_.assign(M, 0.0);
        dD_.assign(M, 0.0);
        const int K = model_.Ms + 2 * model_.M;
        G_.resize(K, K);
    }

    const Model& model() const { return model_; }
    const Layout& layout() const { return lay_; }
    int size() const { return lay_.n; }
    double beta(double t) const { return model_.beta.at(t); }

    // A constant added to the right-hand side (empty: none). Only the tests use it, to
    // drive a state out of the physical region on purpose.
    void set_drift(std::vector<double> drift) {
        if (!drift.empty() && static_cast<int>(drift.size()) != lay_.n)
            throw std::invalid_argument("drift must have the length of the flat state");
        drift_ = std::move(drift);
    }
    const std::vector<double>& drift() const { return drift_; }

    void rhs(double t, const double* y, double* f) { rhs_beta(beta(t), y, f); }

    // The right-hand side with beta given (fixed points use beta_inf).
    void rhs_beta(double beta, const double* y, double* f) {
        using detail::mdmt;
        using detail::mm;
        const int M = model_.M, Ms = model_.Ms;
        // tau: the rate of W; tau_V, tau_D those of V and D; rV = tau_V / tau
        const double tau = model_.tau, tau_V = model_.tau_V, tau_D = model_.tau_D;
        const double rV = tau_V / tau, eta = model_.eta, lam = model_.lam;
        const double* rho = model_.rho.data();
        load(y);
        double *Bb = Bb_.data(), *Cab = Cab_.data(), *Aaa = Aaa_.data(), *K = K_.data();
        double *B = B_.data(), *BbK = BbK_.data(), *CabK = CabK_.data(), *Ebg = Ebg_.data();
        double *Eag = Eag_.data(), *Egg = Egg_.data(), *QB = QB_.data(), *KBbK = KBbK_.data();
        const double *m = m_.data(), *d = d_.data(), *Q = Q_.data(), *E = E_.data();
        const double *R = R_.data(), *D = D_.data();
        // Bb = d P d^T + eta E, Cab = m P d^T + eta R, Aaa = m P m^T + eta Q
        mdmt(d, rho, d, Bb, M, Ms, M);
        mdmt(m, rho, d, Cab, M, Ms, M);
        mdmt(m, rho, m, Aaa, M, Ms, M);
        for (int i = 0; i < M * M; ++i) {
            Bb[i] += eta * E[i];
            Cab[i] += eta * R[i];
            Aaa[i] += eta * Q[i];
        }
        // K = Q + beta I, B = Bb + lam I + diag(D)
        for (int i = 0; i < M; ++i)
            for (int j = 0; j < M; ++j) {
                const int ij = i * M + j;
                K[ij] = Q[ij] + (i == j ? beta : 0.0);
                B[ij] = Bb[ij] + (i == j ? lam : 0.0);
                if (i == j) B[ij] += D[i];
            }
        mm(Bb, K, BbK, M, M, M);
        mm(Cab, K, CabK, M, M, M);
        mm(K, BbK, KBbK, M, M, M);
        mm(Q, B, QB, M, M, M);
        for (int i = 0; i < M; ++i)
            for (int j = 0; j < M; ++j) {
                const int ij = i * M + j, ji = j * M + i;
                Ebg[ij] = BbK[ij] - Cab[ji];
                Eag[ij] = CabK[ij] - Aaa[ij];
                Egg[ij] = Aaa[ij] - CabK[ij] - CabK[ji] + KBbK[ij];
            }
        const double tt_eta = tau * tau * eta, tv_eta = tau * tau_V * eta,
                     vv_eta = tau_V * tau_V * eta;
        // dm = tau (d Pe - B m), dd = tau_V ((m - K d) Pe - lam d)
        double *Bm = t1_.data(), *Kd = t2_.data();
        mm(B, m, Bm, M, M, Ms);
        mm(K, d, Kd, M, M, Ms);
        for (int i = 0; i < M; ++i)
            for (int j = 0; j < Ms; ++j) {
                const int ij = i * Ms + j;
                const double pe = pe_[static_cast<std::size_t>(j)];
                f[lay_.at(op::m) + ij] = tau * (d[ij] * pe - Bm[ij]);
                f[lay_.at(op::d) + ij] = tau_V * ((m[ij] - Kd[ij]) * pe - lam * d[ij]);
            }
        // Q, E (upper triangles) and R
        double* BR = s1_.data();
        mm(B, R, BR, M, M, M);
        for (int i = 0; i < M; ++i) {
            for (int j = i; j < M; ++j) {
                const int ij = i * M + j, ji = j * M + i;
                const int k = lay_.tri(i, j);
                f[lay_.at(op::Q) + k] = tau * (Cab[ij] + Cab[ji] - QB[ij] - QB[ji]) + tt_eta * Bb[ij];
                f[lay_.at(op::E) + k] = -tau_V * (Ebg[ij] + Ebg[ji] + 2.0 * lam * E[ij]) + vv_eta * Egg[ij];
            }
            for (int j = 0; j < M; ++j) {
                const int ij = i * M + j;
                // tau (Bb - B R) - tau_V (Eag + lam R) - tau tau_V eta Ebg
                f[lay_.at(op::R) + ij] =
                    tau * (Bb[ij] - rV * Eag[ij] - rV * lam * R[ij] - BR[ij]) - tv_eta * Ebg[ij];
            }
            f[lay_.at(op::D) + i] = -tau_D * (0.5 * Q[i * M + i] + 0.5 * beta * (1.0 - 1.0 / D[i]));
        }
        if (!drift_.empty())
            for (int i = 0; i < lay_.n; ++i) f[i] += drift_[static_cast<std::size_t>(i)];
    }

    // Directional derivative of the right-hand side at y along the flat direction v.
    // Call prepare_jvp(beta, y) first (it computes what does not depend on v).
    void prepare_jvp(double beta, const double* y) {
        // rhs_beta leaves Bb, Cab, K, B and the products in the scratch buffers
        if (scratch_f_.size() != static_cast<std::size_t>(lay_.n))
            scratch_f_.assign(static_cast<std::size_t>(lay_.n), 0.0);
        rhs_beta(beta, y, scratch_f_.data());
        jvp_beta_ = beta;
    }

    void jvp(const double* v, double* out) {
        using detail::mdmt;
        using detail::mm;
        const int M = model_.M, Ms = model_.Ms;
        const double tau = model_.tau, tau_V = model_.tau_V, tau_D = model_.tau_D;
        const double rV = tau_V / tau, eta = model_.eta, lam = model_.lam;
        const double beta = jvp_beta_;
        const double* rho = model_.rho.data();
        const double *m = m_.data(), *d = d_.data(), *Q = Q_.data();
        const double *R = R_.data(), *D = D_.data();
        const double *Bb = Bb_.data(), *Cab = Cab_.data(), *K = K_.data(), *B = B_.data();
        // unpack the direction
        double *dm = dm_.data(), *dd = dd_.data(), *dQ = dQ_.data(), *dE = dE_.data();
        double *dR = dR_.data(), *dD = dD_.data();
        for (int i = 0; i < M * Ms; ++i) {
            dm[i] = v[lay_.at(op::m) + i];
            dd[i] = v[lay_.at(op::d) + i];
        }
        for (int i = 0; i < M; ++i) {
            for (int j = 0; j < M; ++j) {
                dQ[i * M + j] = v[lay_.at(op::Q) + lay_.tri(i, j)];
                dE[i * M + j] = v[lay_.at(op::E) + lay_.tri(i, j)];
                dR[i * M + j] = v[lay_.at(op::R) + i * M + j];
            }
            dD[i] = v[lay_.at(op::D) + i];
        }
        double *dBb = dBb_.data(), *dCab = dCab_.data(), *dAaa = dAaa_.data(), *dB = dB_.data();
        double *dEbg = dEbg_.data(), *dEag = dEag_.data(), *dCabK = dCabK_.data();
        double *dEgg = dEgg_.data(), *dQB = dQB_.data();
        double *s1 = s1_.data(), *s2 = s2_.data(), *s3 = s3_.data();
        // dBb = dd P d^T + d P dd^T + eta dE, and likewise dCab, dAaa
        mdmt(dd, rho, d, dBb, M, Ms, M);
        mdmt(d, rho, dd, s1, M, Ms, M);
        for (int i = 0; i < M * M; ++i) dBb[i] = dBb[i] + s1[i] + eta * dE[i];
        mdmt(dm, rho, d, dCab, M, Ms, M);
        mdmt(m, rho, dd, s1, M, Ms, M);
        for (int i = 0; i < M * M; ++i) dCab[i] = dCab[i] + s1[i] + eta * dR[i];
        mdmt(dm, rho, m, dAaa, M, Ms, M);
        mdmt(m, rho, dm, s1, M, Ms, M);
        for (int i = 0; i < M * M; ++i) dAaa[i] = dAaa[i] + s1[i] + eta * dQ[i];
        // dK = dQ, dB = dBb + diag(dD)
        for (int i = 0; i < M * M; ++i) dB[i] = dBb[i];
        for (int i = 0; i < M; ++i) dB[i * M + i] += dD[i];
        // dEbg = -dCab^T + dBb K + Bb dK
        mm(dBb, K, s1, M, M, M);
        mm(Bb, dQ, s2, M, M, M);
        for (int i = 0; i < M; ++i)
            for (int j = 0; j < M; ++j) dEbg[i * M + j] = -dCab[j * M + i] + s1[i * M + j] + s2[i * M + j];
        // dCabK = dCab K + Cab dK, dEag = -dAaa + dCabK
        mm(dCab, K, s1, M, M, M);
        mm(Cab, dQ, s2, M, M, M);
        for (int i = 0; i < M * M; ++i) {
            dCabK[i] = s1[i] + s2[i];
            dEag[i] = -dAaa[i] + s1[i] + s2[i];
        }
        // dEgg = dAaa - dCabK - dCabK^T + dK Bb K + K dBb K + K Bb dK
        mm(dQ, BbK_.data(), s1, M, M, M);  // dK (Bb K)
        mm(K, dBb, s2, M, M, M);
        mm(s2, K, s3, M, M, M);  // K dBb K
        for (int i = 0; i < M * M; ++i) s1[i] += s3[i];
        mm(K, Bb, s2, M, M, M);
        mm(s2, dQ, s3, M, M, M);  // K Bb dK
        for (int i = 0; i < M; ++i)
            for (int j = 0; j < M; ++j) {
                const int ij = i * M + j;
                dEgg[ij] = dAaa[ij] - dCabK[ij] - dCabK[j * M + i] + s1[ij] + s3[ij];
            }
        // dQB = dQ B + Q dB
        mm(dQ, B, s1, M, M, M);
        mm(Q, dB, s2, M, M, M);
        for (int i = 0; i < M * M; ++i) dQB[i] = s1[i] + s2[i];
        const double tt_eta = tau * tau * eta, tv_eta = tau * tau_V * eta,
                     vv_eta = tau_V * tau_V * eta;
        // m and d
        double *a1 = t1_.data(), *a2 = t2_.data(), *a3 = t3_.data();
        mm(dB, m, a1, M, M, Ms);
        mm(B, dm, a2, M, M, Ms);
        for (int i = 0; i < M; ++i)
            for (int j = 0; j < Ms; ++j) {
                const int ij = i * Ms + j;
                out[lay_.at(op::m) + ij] = tau * (dd[ij] * pe_[static_cast<std::size_t>(j)] - a1[ij] - a2[ij]);
            }
        mm(dQ, d, a1, M, M, Ms);
        mm(K, dd, a3, M, M, Ms);
        for (int i = 0; i < M; ++i)
            for (int j = 0; j < Ms; ++j) {
                const int ij = i * Ms + j;
                out[lay_.at(op::d) + ij] =
                    tau_V * ((dm[ij] - a1[ij] - a3[ij]) * pe_[static_cast<std::size_t>(j)] - lam * dd[ij]);
            }
        // Q, E, R
        mm(dB, R, s1, M, M, M);
        mm(B, dR, s2, M, M, M);
        for (int i = 0; i < M; ++i) {
            for (int j = i; j < M; ++j) {
                const int ij = i * M + j, ji = j * M + i;
                const int k = lay_.tri(i, j);
                out[lay_.at(op::Q) + k] =
                    tau * (dCab[ij] + dCab[ji] - dQB[ij] - dQB[ji]) + tt_eta * dBb[ij];
                out[lay_.at(op::E) + k] =
                    -tau_V * (dEbg[ij] + dEbg[ji] + 2.0 * lam * dE[ij]) + vv_eta * dEgg[ij];
            }
            for (int j = 0; j < M; ++j) {
                const int ij = i * M + j;
                out[lay_.at(op::R) + ij] =
                    tau * (dBb[ij] - rV * dEag[ij] - rV * lam * dR[ij] - s1[ij] - s2[ij]) -
                    tv_eta * dEbg[ij];
            }
            out[lay_.at(op::D) + i] =
                -tau_D * (0.5 * dQ[i * M + i] + 0.5 * beta * dD[i] / (D[i] * D[i]));
        }
    }

    // Dense Jacobian J[i, j] = d f_i / d y_j, row-major n x n, with beta given.
    void jacobian_beta(double beta, const double* y, double* J) {
        const int n = lay_.n;
        prepare_jvp(beta, y);
        dir_.assign(static_cast<std::size_t>(n), 0.0);
        col_.assign(static_cast<std::size_t>(n), 0.0);
        for (int k = 0; k < n; ++k) {
            dir_[static_cast<std::size_t>(k)] = 1.0;
            jvp(dir_.data(), col_.data());
            dir_[static_cast<std::size_t>(k)] = 0.0;
            for (int i = 0; i < n; ++i) J[i * n + k] = col_[static_cast<std::size_t>(i)];
        }
    }
    void jacobian(double t, const double* y, double* J) { jacobian_beta(beta(t), y, J); }

    // ---- physicality (docs/model.md#pitfalls) ------------------------------------------
    // The Gram matrix [[I, m^T, d^T], [m, Q, R], [d, R^T, E]] of a flat state; returns
    // max(1, max |G|), the scale of the PSD tolerance.
    double gram(const double* y) {
        const int M = model_.M, Ms = model_.Ms;
        const int a = Ms, b = Ms + M;
        G_.setZero();
        for (int i = 0; i < Ms; ++i) G_(i, i) = 1.0;
        for (int i = 0; i < M; ++i) {
            for (int j = 0; j < Ms; ++j) {
                const double mij = y[lay_.at(op::m) + i * Ms + j], dij = y[lay_.at(op::d) + i * Ms + j];
                G_(a + i, j) = G_(j, a + i) = mij;
                G_(b + i, j) = G_(j, b + i) = dij;
            }
            for (int j = 0; j < M; ++j) {
                G_(a + i, a + j) = y[lay_.at(op::Q) + lay_.tri(i, j)];
                G_(b + i, b + j) = y[lay_.at(op::E) + lay_.tri(i, j)];
                const double rij = y[lay_.at(op::R) + i * M + j];
                G_(a + i, b + j) = G_(b + j, a + i) = rij;
            }
        }
        return std::max(1.0, G_.cwiseAbs().maxCoeff());
    }

    // Smallest eigenvalue of the Gram matrix (NaN if the state is not finite).
    double min_gram_eigenvalue(const double* y) {
        gram(y);
        if (!G_.allFinite()) return std::numeric_limits<double>::quiet_NaN();
        eig_.compute(G_, Eigen::EigenvaluesOnly);
        return eig_.eigenvalues()(0);
    }

    // The terminal-event function of linvae.ode.integrate: lambda_min(G) / scale + psd_tol.
    double gram_event(const double* y, double psd_tol) {
        const double scale = gram(y);
        if (!G_.allFinite()) return -1.0;  // as in linvae.ode: the runaway event says so
        eig_.compute(G_, Eigen::EigenvaluesOnly);
        return eig_.eigenvalues()(0) / scale + psd_tol;
    }

    // Cheap test that gram_event(y) > 0: G + psd_tol * scale * I has a Cholesky factor.
    // (Only a failed test needs the eigenvalue.)
    bool gram_event_positive(const double* y, double psd_tol) {
        const double scale = gram(y);
        if (!G_.allFinite()) return false;
        G_.diagonal().array() += psd_tol * scale;
        llt_.compute(G_);
        return llt_.info() == Eigen::Success;
    }

    // Whether G - c I has a Cholesky factor, i.e. lambda_min(G) > c.
    bool gram_above(const double* y, double c) {
        gram(y);
        if (!G_.allFinite()) return false;
        G_.diagonal().array() -= c;
        llt_.compute(G_);
        return llt_.info() == Eigen::Success;
    }

    // The checks linvae.ode.integrate makes on the recorded states Y (count x n): the
    // first record that is not physical (Gram eigenvalue below -psd_tol * scale, some
    // D_k <= 0, or not finite), the smallest Gram eigenvalue there, and the smallest Gram
    // eigenvalue over the records before it. That minimum is exact, but eigenvalues are
    // computed only on every 16th record, around the smallest of those, and wherever a
    // shifted Cholesky factorisation (gram_above) cannot rule out a smaller one.
    struct RecordCheck {
        int first_bad = -1;
        double lam_bad = std::numeric_limits<double>::quiet_NaN();
        double lam_min = std::numeric_limits<double>::quiet_NaN();
    };
    RecordCheck check_records(const double* Y, int count, double psd_tol) {
        RecordCheck rc;
        const auto row = [&](int i) { return Y + static_cast<std::ptrdiff_t>(i) * lay_.n; };
        int good = count;
        for (int i = 0; i < count; ++i) {
            if (!gram_event_positive(row(i), psd_tol) || !(min_D(row(i)) > 0)) {
                rc.first_bad = i;
                rc.lam_bad = min_gram_eigenvalue(row(i));
                good = i;
                break;
            }
        }
        if (good == 0) return rc;
        constexpr int kStride = 16;
        double cur = std::numeric_limits<double>::infinity();
        int arg = 0;
        for (int i = 0; i < good; i += kStride) {
            const double v = min_gram_eigenvalue(row(i));
            if (v < cur) cur = v, arg = i;
        }
        const int lo = std::max(0, arg - kStride + 1), hi = std::min(good, arg + kStride);
        for (int i = lo; i < hi; ++i) cur = std::min(cur, min_gram_eigenvalue(row(i)));
        for (int i = 0; i < good; ++i)
            if (!gram_above(row(i), cur)) cur = std::min(cur, min_gram_eigenvalue(row(i)));
        rc.lam_min = cur;
        return rc;
    }

    double min_D(const double* y) const {
        double v = std::numeric_limits<double>::infinity();
        for (int i = 0; i < model_.M; ++i) v = std::min(v, y[lay_.at(op::D) + i]);
        return v;
    }

private:
    void load(const double* y) {
        const int M = model_.M, Ms = model_.Ms;
        for (int i = 0; i < M * Ms; ++i) {
            m_[static_cast<std::size_t>(i)] = y[lay_.at(op::m) + i];
            d_[static_cast<std::size_t>(i)] = y[lay_.at(op::d) + i];
        }
        for (int i = 0; i < M; ++i) {
            for (int j = 0; j < M; ++j) {
                const auto ij = static_cast<std::size_t>(i * M + j);
                Q_[ij] = y[lay_.at(op::Q) + lay_.tri(i, j)];
                E_[ij] = y[lay_.at(op::E) + lay_.tri(i, j)];
                R_[ij] = y[lay_.at(op::R) + i * M + j];
            }
            D_[static_cast<std::size_t>(i)] = y[lay_.at(op::D) + i];
        }
    }

    Model model_;
    Layout lay_;
    std::vector<double> pe_, drift_;
    // state and intermediate products (row-major)
    std::vector<double> m_, d_, Q_, E_, R_, D_;
    std::vector<double> Bb_, Cab_, Aaa_, K_, B_, BbK_, CabK_, Ebg_, Eag_, Egg_, QB_, KBbK_;
    // directions and their products
    std::vector<double> dm_, dd_, dQ_, dE_, dR_, dD_;
    std::vector<double> dBb_, dCab_, dAaa_, dB_, dEbg_, dEag_, dCabK_, dEgg_, dQB_;
    std::vector<double> s1_, s2_, s3_, t1_, t2_, t3_;
    std::vector<double> scratch_f_, dir_, col_;
    double jvp_beta_ = 0.0;
    Eigen::MatrixXd G_;
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig_;
    Eigen::LLT<Eigen::MatrixXd> llt_;
};

}  // namespace linvae::ode
