// Integrators, fixed points and parameter grids for the ODEs of ode.hpp, entirely in C++.
//
// Steppers (forward in time only):
//   Rk45  - SciPy's RK45 (Dormand-Prince 5(4), quartic dense output), ported step for
//           step: same coefficients, initial step, error norm and step-size control.
//   Radau - SciPy's Radau (Radau IIA of order 5, cubic dense output, simplified Newton
//           with the analytic Jacobian), ported step for step.
//   Auto  - LSODA-like: Rk45 while the problem is not stiff, Radau while it is stiff and
//           Radau is the cheaper of the two. Rk45 flags stiffness with Hairer's DOPRI5 test
//           (h |lambda| estimated from the last two stages above 3.25 on 15 accepted
//           steps); Radau hands back when h ||J||_inf (an upper bound of h |lambda|) stays
//           below 2 on 15 accepted steps, or when its estimated work per unit time exceeds
//           RK45's (see class Auto).
// The driver `solve` records the solution at given times from the steppers' dense output
// and stops at the first sign change (from >= 0 to <= 0) of any terminal event of
// linvae.ode.integrate: lambda_min(G) / max(1, max|G|) + psd_tol, min_k D_k, and
// runaway - max_i |y_i| (-1 for a state that is not finite). Event times are located with
// Brent's method on the dense output, as solve_ivp does.
#pragma once

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <Eigen/Dense>

#include "ode.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace linvae::ode {

constexpr double kEps = std::numeric_limits<double>::epsilon();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

using RowMat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

namespace detail {

// SciPy's RMS norm: ||x||_2 / sqrt(n)
inline double rms(const double* x, int n) {
    double s = 0.0;
    for (int i = 0; i < n; ++i) s += x[i] * x[i];
    return std::sqrt(s) / std::sqrt(static_cast<double>(n));
}

inline bool all_finite(const double* x, int n) {
    for (int i = 0; i < n; ++i)
        if (!std::isfinite(x[i])) return false;
    return true;
}

inline double max_abs(const double* x, int n) {
    double v = 0.0;
    for (int i = 0; i < n; ++i) v = std::max(v, std::abs(x[i]));
    return v;
}

// scipy.integrate._ivp.common.select_initial_step (forward, max_step = inf)
inline double select_initial_step(System& sys, double t0, const double* y0, const double* f0,
                                  double t_bound, int order, double rtol, double atol,
                                  std::vector<double>& work, long& nfev) {
    const int n = sys.size();
    const double interval = std::abs(t_bound - t0);
    if (interval == 0.0) return 0.0;
    work.assign(static_cast<std::size_t>(3 * n), 0.0);
    double *scaled = work.data(), *y1 = work.data() + n, *f1 = work.data() + 2 * n;
    std::vector<double> scale(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) scale[static_cast<std::size_t>(i)] = atol + std::abs(y0[i]) * rtol;
    for (int i = 0; i < n; ++i) scaled[i] = y0[i] / scale[static_cast<std::size_t>(i)];
    const double d0 = rms(scaled, n);
    for (int i = 0; i < n; ++i) scaled[i] = f0[i] / scale[static_cast<std::size_t>(i)];
    const double d1 = rms(scaled, n);
    double h0 = (d0 < 1e-5 || d1 < 1e-5) ? 1e-6 : 0.01 * d0 / d1;
    h0 = std::min(h0, interval);
    for (int i = 0; i < n; ++i) y1[i] = y0[i] + h0 * f0[i];
    sys.rhs(t0 + h0, y1, f1);
    ++nfev;
    for (int i = 0; i < n; ++i) scaled[i] = (f1[i] - f0[i]) / scale[static_cast<std::size_t>(i)];
    const double d2 = rms(scaled, n) / h0;
    double h1;
    if (d1 <= 1e-15 && d2 <= 1e-15)
        h1 = std::max(1e-6, h0 * 1e-3);
    else
        h1 = std::pow(0.01 / std::max(d1, d2), 1.0 / (order + 1));
    return std::min({100 * h0, h1, interval});
}

inline double min_step_at(double t) { return 10 * std::abs(std::nextafter(t, kInf) - t); }

// Brent's method as scipy.optimize.brentq (its C implementation), for an event bracketed
// by [a, b] with f(a) >= 0 >= f(b). Returns a if there is no sign change.
template <class F>
double brentq(F&& f, double xa, double xb, double xtol, double rtol, int iter = 100) {
    double xpre = xa, xcur = xb, xblk = 0.0, fblk = 0.0, spre = 0.0, scur = 0.0;
    double fpre = f(xpre), fcur = f(xcur);
    if (fpre == 0.0) return xpre;
    if (fcur == 0.0) return xcur;
    if (std::signbit(fpre) == std::signbit(fcur)) return fpre < 0.0 ? xpre : xcur;
    for (int i = 0; i < iter; ++i) {
        if (fpre != 0.0 && fcur != 0.0 && std::signbit(fpre) != std::signbit(fcur)) {
            xblk = xpre;
            fblk = fpre;
            spre = scur = xcur - xpre;
        }
        if (std::abs(fblk) < std::abs(fcur)) {
            xpre = xcur;
            xcur = xblk;
            xblk = xpre;
            fpre = fcur;
            fcur = fblk;
            fblk = fpre;
        }
        const double delta = (xtol + rtol * std::abs(xcur)) / 2;
        const double sbis = (xblk - xcur) / 2;
        if (fcur == 0.0 || std::abs(sbis) < delta) return xcur;
        if (std::abs(spre) > delta && std::abs(fcur) < std::abs(fpre)) {
            double stry;
            if (xpre == xblk) {
                stry = -fcur * (xcur - xpre) / (fcur - fpre);
            } else {
                const double dpre = (fpre - fcur) / (xpre - xcur);
                const double dblk = (fblk - fcur) / (xblk - xcur);
                stry = -fcur * (fblk * dblk - fpre * dpre) / (dblk * dpre * (fblk - fpre));
            }
            if (2 * std::abs(stry) < std::min(std::abs(spre), 3 * std::abs(sbis) - delta)) {
                spre = scur;
                scur = stry;
            } else {
                spre = sbis;
                scur = sbis;
            }
        } else {
            spre = sbis;
            scur = sbis;
        }
        xpre = xcur;
        fpre = fcur;
        if (std::abs(scur) > delta)
            xcur += scur;
        else
            xcur += (sbis > 0 ? delta : -delta);
        fcur = f(xcur);
    }
    return xcur;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------
// steppers
// ---------------------------------------------------------------------------------------
class Stepper {
public:
    virtual ~Stepper() = default;
    // One accepted step from t to a new t (<= t_bound); false on failure (see message).
    virtual bool step() = 0;
    // The dense output of the last accepted step, at t_old <= s <= t.
    virtual void dense(double s, double* out) const = 0;
    virtual const char* name() const = 0;

    double t = 0.0, t_old = 0.0, t_bound = 0.0;
    std::vector<double> y;
    long nfev = 0, njev = 0, nlu = 0;
    std::string message;

protected:
    // The start of a one-method solver: t = t_old = t0, y = y0, f = f(t0, y0) unless f0
    // gives it.
    void start(System& sys, double t0, const double* y0, const double* f0, double t_end,
               std::vector<double>& f) {
        const int n = sys.size();
        t = t_old = t0;
        t_bound = t_end;
        y.assign(y0, y0 + n);
        f.assign(static_cast<std::size_t>(n), 0.0);
        if (f0 != nullptr) {
            std::copy(f0, f0 + n, f.begin());
        } else {
            sys.rhs(t, y.data(), f.data());
            ++nfev;
        }
    }

    // The step to try from t0 (SciPy's): h_abs, cut so that t0 + h does not pass t_bound;
    // false, with SciPy's message, once h_abs is below min_step.
    bool propose_step(double t0, double min_step, double& h_abs, double& h, double& t_new) {
        if (h_abs < min_step) {
            message = "Required step size is less than spacing between numbers.";
            return false;
        }
        h = h_abs;
        t_new = t0 + h;
        if (t_new - t_bound > 0) t_new = t_bound;
        h = t_new - t0;
        h_abs = std::abs(h);
        return true;
    }
};

class Rk45 final : public Stepper {
public:
    Rk45(System& sys, double t0, const double* y0, const double* f0, double t_bound, double rtol,
         double atol, bool detect_stiffness)
        : sys_(sys), n_(sys.size()), rtol_(std::max(rtol, 100 * kEps)), atol_(atol),
          detect_(detect_stiffness) {
        start(sys_, t0, y0, f0, t_bound, f_);
        y_old = y;
        h_abs_ = detail::select_initial_step(sys_, t, y.data(), f_.data(), t_bound, 4, rtol_, atol_,
                                             work_, nfev);
        K_.assign(static_cast<std::size_t>(7 * n_), 0.0);
        Q_.assign(static_cast<std::size_t>(4 * n_), 0.0);
        ynew_.assign(static_cast<std::size_t>(n_), 0.0);
        fnew_.assign(static_cast<std::size_t>(n_), 0.0);
        ys_.assign(static_cast<std::size_t>(n_), 0.0);
        err_.assign(static_cast<std::size_t>(n_), 0.0);
    }

    const char* name() const override { return "RK45"; }
    const std::vector<double>& f() const { return f_; }
    // Stiff: h |lambda| > 3.25 on 15 accepted steps, not 6 in a row below it since.
    bool stiff() const { return stiff_count_ >= 15; }
    double last_step() const { return h_last_; }

    bool step() override {
        static constexpr double C[6] = {0.0, 1.0 / 5, 3.0 / 10, 4.0 / 5, 8.0 / 9, 1.0};
        static constexpr double A[6][5] = {
            {0, 0, 0, 0, 0},
            {1.0 / 5, 0, 0, 0, 0},
            {3.0 / 40, 9.0 / 40, 0, 0, 0},
            {44.0 / 45, -56.0 / 15, 32.0 / 9, 0, 0},
            {19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729, 0},
            {9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656}};
        static constexpr double B[6] = {35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784,
                                        11.0 / 84};
        static constexpr double E[7] = {-71.0 / 57600, 0,           71.0 / 16695, -71.0 / 1920,
                                        17253.0 / 339200, -22.0 / 525, 1.0 / 40};
        const int n = n_;
        const double t0 = t;
        const double min_step = detail::min_step_at(t0);
        double h_abs = h_abs_ < min_step ? min_step : h_abs_;
        bool accepted = false, rejected = false;
        double t_new = t0, h = 0.0, error_norm = 0.0;
        double* K = K_.data();
        while (!accepted) {
            if (!propose_step(t0, min_step, h_abs, h, t_new)) return false;
            // stages
            std::copy(f_.begin(), f_.end(), K);
            for (int s = 1; s < 6; ++s) {
                for (int i = 0; i < n; ++i) {
                    double acc = 0.0;
                    for (int j = 0; j < s; ++j) acc += K[j * n + i] * A[s][j];
                    ys_[static_cast<std::size_t>(i)] = y[static_cast<std::size_t>(i)] + acc * h;
                }
                sys_.rhs(t0 + C[s] * h, ys_.data(), K + s * n);
                ++nfev;
            }
            for (int i = 0; i < n; ++i) {
                double acc = 0.0;
                for (int j = 0; j < 6; ++j) acc += K[j * n + i] * B[j];
                ynew_[static_cast<std::size_t>(i)] = y[static_cast<std::size_t>(i)] + h * acc;
            }
            sys_.rhs(t0 + h, ynew_.data(), fnew_.data());
            ++nfev;
            std::copy(fnew_.begin(), fnew_.end(), K + 6 * n);
            for (int i = 0; i < n; ++i) {
                double acc = 0.0;
                for (int j = 0; j < 7; ++j) acc += K[j * n + i] * E[j];
                const double scale =
                    atol_ + std::max(std::abs(y[static_cast<std::size_t>(i)]),
                                     std::abs(ynew_[static_cast<std::size_t>(i)])) * rtol_;
                err_[static_cast<std::size_t>(i)] = acc * h / scale;
            }
            error_norm = detail::rms(err_.data(), n);
            if (error_norm < 1) {
                double factor = error_norm == 0 ? kMaxFactor
                                                : std::min(kMaxFactor, kSafety * std::pow(error_norm, -0.2));
                if (rejected) factor = std::min(1.0, factor);
                h_abs *= factor;
                accepted = true;
            } else {
                h_abs *= std::max(kMinFactor, kSafety * std::pow(error_norm, -0.2));
                rejected = true;
            }
        }
        if (detect_) check_stiffness(h);
        y_old.swap(y);
        y = ynew_;
        f_ = fnew_;
        t_old = t0;
        t = t_new;
        h_abs_ = h_abs;
        h_last_ = h;
        // dense output: Q = K^T P
        static constexpr double P[7][4] = {
            {1, -8048581381.0 / 2820520608, 8663915743.0 / 2820520608, -12715105075.0 / 11282082432},
            {0, 0, 0, 0},
            {0, 131558114200.0 / 32700410799, -68118460800.0 / 10900136933,
             87487479700.0 / 32700410799},
            {0, -1754552775.0 / 470086768, 14199869525.0 / 1410260304, -10690763975.0 / 1880347072},
            {0, 127303824393.0 / 49829197408, -318862633887.0 / 49829197408,
             701980252875.0 / 199316789632},
            {0, -282668133.0 / 205662961, 2019193451.0 / 616988883, -1453857185.0 / 822651844},
            {0, 40617522.0 / 29380423, -110615467.0 / 29380423, 69997945.0 / 29380423}};
        for (int i = 0; i < n; ++i)
            for (int c = 0; c < 4; ++c) {
                double acc = 0.0;
                for (int s = 0; s < 7; ++s) acc += K[s * n + i] * P[s][c];
                Q_[static_cast<std::size_t>(i * 4 + c)] = acc;
            }
        return true;
    }

    void dense(double s, double* out) const override {
        const double x = (s - t_old) / h_last_;
        const double p[4] = {x, x * x, x * x * x, x * x * x * x};
        for (int i = 0; i < n_; ++i) {
            const double* q = &Q_[static_cast<std::size_t>(i * 4)];
            const double acc = q[0] * p[0] + q[1] * p[1] + q[2] * p[2] + q[3] * p[3];
            out[i] = h_last_ * acc + y_old[static_cast<std::size_t>(i)];
        }
    }

    std::vector<double> y_old;

private:
    static constexpr double kSafety = 0.9, kMinFactor = 0.2, kMaxFactor = 10.0;

    // Hairer's DOPRI5 stiffness test. Stage 6 (c = 1) and the new point share t + h, so
    // h * ||f7 - f6|| / ||y7 - y6|| estimates h |lambda| of the dominant mode.
    void check_stiffness(double h) {
        const int n = n_;
        const double* K = K_.data();
        // y6 is the argument of stage 6 (still in ys_)
        double num = 0.0, den = 0.0;
        for (int i = 0; i < n; ++i) {
            const double df = K[6 * n + i] - K[5 * n + i];
            const double dy = ynew_[static_cast<std::size_t>(i)] - ys_[static_cast<std::size_t>(i)];
            num += df * df;
            den += dy * dy;
        }
        if (den > 0.0) {
            const double hl = std::abs(h) * std::sqrt(num / den);
            if (hl > 3.25) {
                nonstiff_ = 0;
                ++stiff_count_;
            } else if (++nonstiff_ >= 6) {
                stiff_count_ = 0;
            }
        }
    }

    System& sys_;
    int n_;
    double rtol_, atol_;
    bool detect_;
    double h_abs_ = 0.0, h_last_ = 1.0;
    std::vector<double> f_, K_, Q_, ynew_, fnew_, ys_, err_, work_;
    int stiff_count_ = 0, nonstiff_ = 0;
};

class Radau final : public Stepper {
public:
    // first_step > 0: the first step to try (else SciPy's initial step selection)
    Radau(System& sys, double t0, const double* y0, const double* f0, double t_bound, double rtol,
          double atol, double first_step = 0.0)
        : sys_(sys), n_(sys.size()), rtol_(std::max(rtol, 100 * kEps)), atol_(atol) {
        start(sys_, t0, y0, f0, t_bound, f_);
        y_old = y;
        const int n = n_;
        h_abs_ = first_step > 0 ? std::min(first_step, t_bound - t0)
                                : detail::select_initial_step(sys_, t, y.data(), f_.data(), t_bound,
                                                              3, rtol_, atol_, work_, nfev);
        newton_tol_ = std::max(10 * kEps / rtol_, std::min(0.03, std::sqrt(rtol_)));
        J_.resize(n, n);
        sys_.jacobian(t, y.data(), J_.data());
        ++njev;
        Z_.assign(static_cast<std::size_t>(3 * n), 0.0);
        Z0_.assign(static_cast<std::size_t>(3 * n), 0.0);
        W_.assign(static_cast<std::size_t>(3 * n), 0.0);
        F_.assign(static_cast<std::size_t>(3 * n), 0.0);
        dW_.assign(static_cast<std::size_t>(3 * n), 0.0);
        Qd_.assign(static_cast<std::size_t>(3 * n), 0.0);
        tmp_.assign(static_cast<std::size_t>(n), 0.0);
        ynew_.assign(static_cast<std::size_t>(n), 0.0);
        fnew_.assign(static_cast<std::size_t>(n), 0.0);
        scale_.assign(static_cast<std::size_t>(n), 0.0);
        fr_.resize(n);
        fc_.resize(n);
    }

    const char* name() const override { return "Radau"; }
    const std::vector<double>& f() const { return f_; }
    double h_abs() const { return h_abs_; }
    // ||J||_inf of the Jacobian in use: h ||J||_inf bounds h |lambda| from above.
    double jac_norm_inf() const { return J_.cwiseAbs().rowwise().sum().maxCoeff(); }

    bool step() override {
        const int n = n_;
        const double t0 = t;
        const double min_step = detail::min_step_at(t0);
        double h_abs = h_abs_, h_abs_old = h_abs_old_, err_old = err_old_;
        if (h_abs_ < min_step) {
            h_abs = min_step;
            h_abs_old = kNaN;
            err_old = kNaN;
        }
        bool rejected = false, accepted = false, converged = false;
        double t_new = t0, h = 0.0, error_norm = 0.0, rate = kNaN;
        int n_iter = 0;
        const double S6 = std::sqrt(6.0);
        const double C[3] = {(4 - S6) / 10, (4 + S6) / 10, 1.0};
        const double E[3] = {(-13 - 7 * S6) / 3, (-13 + 7 * S6) / 3, -1.0 / 3};
        while (!accepted) {
            if (!propose_step(t0, min_step, h_abs, h, t_new)) return false;
            if (!have_sol_) {
                std::fill(Z0_.begin(), Z0_.end(), 0.0);
            } else {
                for (int s = 0; s < 3; ++s) {
                    dense(t0 + h * C[s], tmp_.data());
                    for (int i = 0; i < n; ++i)
                        Z0_[static_cast<std::size_t>(s * n + i)] =
                            tmp_[static_cast<std::size_t>(i)] - y[static_cast<std::size_t>(i)];
                }
            }
            for (int i = 0; i < n; ++i)
                scale_[static_cast<std::size_t>(i)] = atol_ + std::abs(y[static_cast<std::size_t>(i)]) * rtol_;
            converged = false;
            while (!converged) {
                if (!lu_ok_) factorize(h);
                converged = collocation(t0, h, n_iter, rate);
                if (!converged) {
                    if (current_jac_) break;
                    sys_.jacobian(t0, y.data(), J_.data());
                    ++njev;
                    current_jac_ = true;
                    lu_ok_ = false;
                }
            }
            if (!converged) {
                h_abs *= 0.5;
                lu_ok_ = false;
                continue;
            }
            for (int i = 0; i < n; ++i)
                ynew_[static_cast<std::size_t>(i)] = y[static_cast<std::size_t>(i)] + Z_[static_cast<std::size_t>(2 * n + i)];
            // error estimate
            Eigen::VectorXd ZE(n), rhs_v(n);
            for (int i = 0; i < n; ++i) {
                ZE(i) = (Z_[static_cast<std::size_t>(i)] * E[0] + Z_[static_cast<std::size_t>(n + i)] * E[1] +
                         Z_[static_cast<std::size_t>(2 * n + i)] * E[2]) / h;
                rhs_v(i) = f_[static_cast<std::size_t>(i)] + ZE(i);
            }
            Eigen::VectorXd error = lu_real_.solve(rhs_v);
            for (int i = 0; i < n; ++i)
                scale_[static_cast<std::size_t>(i)] =
                    atol_ + std::max(std::abs(y[static_cast<std::size_t>(i)]),
                                     std::abs(ynew_[static_cast<std::size_t>(i)])) * rtol_;
            error_norm = norm_scaled(error.data());
            const double safety = 0.9 * (2 * kNewtonMaxIter + 1) / (2 * kNewtonMaxIter + n_iter);
            if (rejected && error_norm > 1) {
                for (int i = 0; i < n; ++i)
                    tmp_[static_cast<std::size_t>(i)] = y[static_cast<std::size_t>(i)] + error(i);
                sys_.rhs(t0, tmp_.data(), fnew_.data());
                ++nfev;
                for (int i = 0; i < n; ++i) rhs_v(i) = fnew_[static_cast<std::size_t>(i)] + ZE(i);
                error = lu_real_.solve(rhs_v);
                error_norm = norm_scaled(error.data());
            }
            if (error_norm > 1) {
                const double factor = predict_factor(h_abs, h_abs_old, error_norm, err_old);
                h_abs *= std::max(kMinFactor, safety * factor);
                lu_ok_ = false;
                rejected = true;
            } else {
                accepted = true;
                safety_ = safety;
            }
        }
        const bool recompute_jac = n_iter > 2 && rate > 1e-3;
        double factor = predict_factor(h_abs, h_abs_old, error_norm, err_old);
        factor = std::min(kMaxFactor, safety_ * factor);
        if (!recompute_jac && factor < 1.2)
            factor = 1;
        else
            lu_ok_ = false;
        sys_.rhs(t_new, ynew_.data(), fnew_.data());
        ++nfev;
        if (recompute_jac) {
            sys_.jacobian(t_new, ynew_.data(), J_.data());
            ++njev;
            current_jac_ = true;
        } else {
            current_jac_ = false;
        }
        h_abs_old_ = h_abs_;
        err_old_ = error_norm;
        h_abs_ = h_abs * factor;
        y_old.swap(y);
        y = ynew_;
        f_ = fnew_;
        t_old = t0;
        t = t_new;
        h_last_ = t - t_old;
        // dense output: Q = Z^T P
        const double P[3][3] = {{13.0 / 3 + 7 * S6 / 3, -23.0 / 3 - 22 * S6 / 3, 10.0 / 3 + 5 * S6},
                                {13.0 / 3 - 7 * S6 / 3, -23.0 / 3 + 22 * S6 / 3, 10.0 / 3 - 5 * S6},
                                {1.0 / 3, -8.0 / 3, 10.0 / 3}};
        for (int i = 0; i < n; ++i)
            for (int c = 0; c < 3; ++c) {
                double acc = 0.0;
                for (int s = 0; s < 3; ++s) acc += Z_[static_cast<std::size_t>(s * n + i)] * P[s][c];
                Qd_[static_cast<std::size_t>(i * 3 + c)] = acc;
            }
        have_sol_ = true;
        return true;
    }

    void dense(double s, double* out) const override {
        const double x = (s - t_old) / h_last_;
        const double p[3] = {x, x * x, x * x * x};
        for (int i = 0; i < n_; ++i) {
            const double* q = &Qd_[static_cast<std::size_t>(i * 3)];
            out[i] = (q[0] * p[0] + q[1] * p[1] + q[2] * p[2]) + y_old[static_cast<std::size_t>(i)];
        }
    }

    std::vector<double> y_old;

private:
    static constexpr int kNewtonMaxIter = 6;
    static constexpr double kMinFactor = 0.2, kMaxFactor = 10.0;

    static double predict_factor(double h_abs, double h_abs_old, double error_norm,
                                 double error_norm_old) {
        double multiplier = 1.0;
        if (!(std::isnan(error_norm_old) || std::isnan(h_abs_old) || error_norm == 0))
            multiplier = h_abs / h_abs_old * std::pow(error_norm_old / error_norm, 0.25);
        const double e = error_norm == 0 ? kInf : std::pow(error_norm, -0.25);
        return std::min(1.0, multiplier) * e;
    }

    double norm_scaled(const double* v) const {
        double s = 0.0;
        for (int i = 0; i < n_; ++i) {
            const double x = v[i] / scale_[static_cast<std::size_t>(i)];
            s += x * x;
        }
        return std::sqrt(s) / std::sqrt(static_cast<double>(n_));
    }

    void factorize(double h) {
        const double mu_real = 3 + std::cbrt(9.0) - std::cbrt(3.0);
        const std::complex<double> mu_complex(3 + 0.5 * (std::cbrt(3.0) - std::cbrt(9.0)),
                                              -0.5 * (std::pow(3.0, 5.0 / 6) + std::pow(3.0, 7.0 / 6)));
        const int n = n_;
        Eigen::MatrixXd Ar = -J_;
        Ar.diagonal().array() += mu_real / h;
        lu_real_.compute(Ar);
        Eigen::MatrixXcd Ac = (-J_).cast<std::complex<double>>();
        for (int i = 0; i < n; ++i) Ac(i, i) += mu_complex / h;
        lu_complex_.compute(Ac);
        nlu += 2;
        lu_ok_ = true;
        mu_real_h_ = mu_real / h;
        mu_complex_h_ = mu_complex / h;
    }

    // scipy.integrate._ivp.radau.solve_collocation_system; Z_ holds the result
    bool collocation(double t0, double h, int& n_iter, double& rate) {
        static constexpr double T[3][3] = {{0.09443876248897524, -0.14125529502095421, 0.03002919410514742},
                                           {0.25021312296533332, 0.20412935229379994, -0.38294211275726192},
                                           {1, 1, 0}};
        static constexpr double TI[3][3] = {{4.17871859155190428, 0.32768282076106237, 0.52337644549944951},
                                            {-4.17871859155190428, -0.32768282076106237, 0.47662355450055044},
                                            {0.50287263494578682, -2.57192694985560522, 0.59603920482822492}};
        const int n = n_;
        const double S6 = std::sqrt(6.0);
        const double C[3] = {(4 - S6) / 10, (4 + S6) / 10, 1.0};
        const std::complex<double> ti_c[3] = {{TI[1][0], TI[2][0]}, {TI[1][1], TI[2][1]}, {TI[1][2], TI[2][2]}};
        // W = TI Z0, Z = Z0
        for (int r = 0; r < 3; ++r)
            for (int i = 0; i < n; ++i) {
                double acc = 0.0;
                for (int s = 0; s < 3; ++s) acc += TI[r][s] * Z0_[static_cast<std::size_t>(s * n + i)];
                W_[static_cast<std::size_t>(r * n + i)] = acc;
            }
        Z_ = Z0_;
        double dW_norm_old = kNaN;
        rate = kNaN;
        bool converged = false;
        int k = 0;
        for (k = 0; k < kNewtonMaxIter; ++k) {
            for (int s = 0; s < 3; ++s) {
                for (int i = 0; i < n; ++i)
                    tmp_[static_cast<std::size_t>(i)] = y[static_cast<std::size_t>(i)] + Z_[static_cast<std::size_t>(s * n + i)];
                sys_.rhs(t0 + h * C[s], tmp_.data(), &F_[static_cast<std::size_t>(s * n)]);
                ++nfev;
            }
            if (!detail::all_finite(F_.data(), 3 * n)) break;
            for (int i = 0; i < n; ++i) {
                double fr = 0.0;
                std::complex<double> fc(0.0, 0.0);
                for (int s = 0; s < 3; ++s) {
                    const double Fi = F_[static_cast<std::size_t>(s * n + i)];
                    fr += Fi * TI[0][s];
                    fc += Fi * ti_c[s];
                }
                fr_(i) = fr - mu_real_h_ * W_[static_cast<std::size_t>(i)];
                fc_(i) = fc - mu_complex_h_ * std::complex<double>(W_[static_cast<std::size_t>(n + i)],
                                                                   W_[static_cast<std::size_t>(2 * n + i)]);
            }
            const Eigen::VectorXd dr = lu_real_.solve(fr_);
            const Eigen::VectorXcd dc = lu_complex_.solve(fc_);
            double s2 = 0.0;
            for (int i = 0; i < n; ++i) {
                dW_[static_cast<std::size_t>(i)] = dr(i);
                dW_[static_cast<std::size_t>(n + i)] = dc(i).real();
                dW_[static_cast<std::size_t>(2 * n + i)] = dc(i).imag();
            }
            for (int r = 0; r < 3; ++r)
                for (int i = 0; i < n; ++i) {
                    const double x = dW_[static_cast<std::size_t>(r * n + i)] / scale_[static_cast<std::size_t>(i)];
                    s2 += x * x;
                }
            const double dW_norm = std::sqrt(s2) / std::sqrt(static_cast<double>(3 * n));
            if (!std::isnan(dW_norm_old)) rate = dW_norm / dW_norm_old;
            if (!std::isnan(rate) &&
                (rate >= 1 || std::pow(rate, kNewtonMaxIter - k) / (1 - rate) * dW_norm > newton_tol_))
                break;
            for (int i = 0; i < 3 * n; ++i) W_[static_cast<std::size_t>(i)] += dW_[static_cast<std::size_t>(i)];
            for (int r = 0; r < 3; ++r)
                for (int i = 0; i < n; ++i) {
                    double acc = 0.0;
                    for (int s = 0; s < 3; ++s) acc += T[r][s] * W_[static_cast<std::size_t>(s * n + i)];
                    Z_[static_cast<std::size_t>(r * n + i)] = acc;
                }
            if (dW_norm == 0 || (!std::isnan(rate) && rate / (1 - rate) * dW_norm < newton_tol_)) {
                converged = true;
                break;
            }
            dW_norm_old = dW_norm;
        }
        n_iter = std::min(k, kNewtonMaxIter - 1) + 1;
        return converged;
    }

    System& sys_;
    int n_;
    double rtol_, atol_;
    double h_abs_ = 0.0, h_abs_old_ = kNaN, err_old_ = kNaN, h_last_ = 1.0, safety_ = 0.9;
    double newton_tol_ = 0.0;
    bool have_sol_ = false, lu_ok_ = false, current_jac_ = true;
    RowMat J_;
    Eigen::PartialPivLU<Eigen::MatrixXd> lu_real_;
    Eigen::PartialPivLU<Eigen::MatrixXcd> lu_complex_;
    double mu_real_h_ = 0.0;
    std::complex<double> mu_complex_h_;
    std::vector<double> f_, Z_, Z0_, W_, F_, dW_, Qd_, tmp_, ynew_, fnew_, scale_, work_;
    Eigen::VectorXd fr_;
    Eigen::VectorXcd fc_;
};

// Rk45 while not stiff, Radau while stiff and cheaper (see the top of this file).
//
// Radau's steps can be far longer than RK45's stability-limited ones, but each costs dense
// linear algebra (LU factors of n x n real and complex matrices, the Jacobian), which for
// a few latents (n ~ 70) is worth tens of RK45 steps. So a switch is a trial: the work of
// both is estimated from operation counts (deterministic, so trajectories are reproducible),
// and Radau is kept only while its time advanced per unit of work beats RK45's at the step
// size stability allowed it. A failed trial returns to RK45, which may try again after
// twice as many steps as the last time.
class Auto final : public Stepper {
public:
    Auto(System& sys, double t0, const double* y0, double t_bound, double rtol, double atol)
        : sys_(sys), rtol_(rtol), atol_(atol) {
        t = t_old = t0;
        this->t_bound = t_bound;
        y.assign(y0, y0 + sys.size());
        const double M = sys.model().M, Ms = sys.model().Ms, n = sys.size(), K = Ms + 2 * M;
        w_rhs_ = 10 * M * M * M + 10 * M * M * Ms + 30 * M * M + 10 * M * Ms + 2 * n + 100;
        w_rk_step_ = 6 * w_rhs_ + K * K * K / 3;
        w_lu_ = 10.0 / 3 * n * n * n / 2;  // per factorisation (nlu counts real and complex)
        w_jac_ = 2.5 * n * w_rhs_;
        w_solve_ = 10 * n * n / 3;  // per right-hand side of a Newton iteration (3 per iteration)
        rk_ = std::make_unique<Rk45>(sys_, t0, y0, nullptr, t_bound, rtol, atol, true);
        count(*rk_, 0, 0, 0);
    }

    const char* name() const override { return radau_ ? "Radau" : "RK45"; }
    int switches() const { return switches_; }

    bool step() override {
        Stepper* s = active();
        const long f0 = s->nfev, j0 = s->njev, l0 = s->nlu;
        const bool ok = s->step();
        nfev += s->nfev - f0;
        njev += s->njev - j0;
        nlu += s->nlu - l0;
        t = s->t;
        t_old = s->t_old;
        y = s->y;
        if (!ok) {
            message = s->message;
            return false;
        }
        last_ = s;
        if (t >= t_bound) return true;
        if (rk_) {
            ++rk_steps_;
            const double h = rk_->last_step();
            h_rk_ = rk_steps_ == 1 ? h : 0.7 * h_rk_ + 0.3 * h;
            if (rk_->stiff() && rk_steps_ >= retry_at_ && trial_can_pay()) to_radau();
        } else {
            ++radau_steps_;
            easy_ = radau_->h_abs() * radau_->jac_norm_inf() < 2.0 ? easy_ + 1 : 0;
            if (easy_ >= 15) {  // within RK45's stability region: not stiff any more
                to_rk45();
                backoff_ = kFirstBackoff;
                retry_at_ = rk_steps_;
            } else if (radau_steps_ % kWindow == 0) {
                const double work = (nfev - w_nfev_) * (w_rhs_ + w_solve_) +
                                    (njev - w_njev_) * w_jac_ + (nlu - w_nlu_) * w_lu_ +
                                    kWindow * w_rk_step_ / 6;
                const double radau_rate = (t - w_t_) / work, rk_rate = h_rk_ / w_rk_step_;
                if (radau_rate < rk_rate) {  // RK45 would have been cheaper: back to it
                    to_rk45();
                    retry_at_ = rk_steps_ + backoff_;
                    backoff_ *= 2;
                } else {
                    backoff_ = kFirstBackoff;
                    window();
                }
            }
        }
        return true;
    }

    // the stepper that took the last step keeps its dense output until the next step
    void dense(double s, double* out) const override { last_->dense(s, out); }

private:
    static constexpr int kWindow = 10;        // Radau steps between cost comparisons
    static constexpr long kFirstBackoff = 32;  // RK45 steps before a new trial

    Stepper* active() { return rk_ ? static_cast<Stepper*>(rk_.get()) : static_cast<Stepper*>(radau_.get()); }
    void count(const Stepper& s, long f0, long j0, long l0) {
        nfev += s.nfev - f0;
        njev += s.njev - j0;
        nlu += s.nlu - l0;
    }
    void window() {
        w_t_ = t;
        w_nfev_ = nfev;
        w_njev_ = njev;
        w_nlu_ = nlu;
    }
    // Whether what is left of the interval could repay a trial of Radau: a few of its steps
    // (a Jacobian, LU factors, Newton iterations) against RK45's steps of the same work.
    bool trial_can_pay() const {
        const double trial = w_jac_ + 5 * 2 * w_lu_ + 45 * (w_rhs_ + w_solve_);
        return t_bound - t > 2 * trial / w_rk_step_ * h_rk_;
    }
    void to_radau() {
        auto next = std::make_unique<Radau>(sys_, t, y.data(), rk_->f().data(), t_bound, rtol_, atol_,
                                            rk_->last_step());
        window();
        count(*next, 0, 0, 0);
        keep_ = std::move(rk_);
        radau_ = std::move(next);
        radau_steps_ = 0;
        easy_ = 0;
        ++switches_;
    }
    void to_rk45() {
        auto next = std::make_unique<Rk45>(sys_, t, y.data(), radau_->f().data(), t_bound, rtol_,
                                           atol_, true);
        count(*next, 0, 0, 0);
        keep_ = std::move(radau_);
        rk_ = std::move(next);
        ++switches_;
    }

    System& sys_;
    double rtol_, atol_;
    std::unique_ptr<Rk45> rk_;
    std::unique_ptr<Radau> radau_;
    std::unique_ptr<Stepper> keep_;  // the previous stepper (its dense output may be in use)
    Stepper* last_ = nullptr;
    // estimated work (flops) of the parts of a step
    double w_rhs_ = 0, w_rk_step_ = 0, w_lu_ = 0, w_jac_ = 0, w_solve_ = 0;
    double h_rk_ = 0.0;  // recent RK45 step (an average): its rate when it turned stiff
    long rk_steps_ = 0, retry_at_ = 0, backoff_ = kFirstBackoff;
    int radau_steps_ = 0, easy_ = 0, switches_ = 0;
    double w_t_ = 0.0;
    long w_nfev_ = 0, w_njev_ = 0, w_nlu_ = 0;
};

enum class Method : int { kAuto = 0, kRK45 = 1, kRadau = 2 };

inline Method method_from_name(const std::string& name) {
    if (name == "auto") return Method::kAuto;
    if (name == "RK45") return Method::kRK45;
    if (name == "Radau") return Method::kRadau;
    throw std::invalid_argument("unknown compiled method '" + name + "'");
}

inline std::unique_ptr<Stepper> make_stepper(System& sys, Method method, double t0, const double* y0,
                                             double t_bound, double rtol, double atol) {
    switch (method) {
        case Method::kRK45:
            return std::make_unique<Rk45>(sys, t0, y0, nullptr, t_bound, rtol, atol, false);
        case Method::kRadau:
            return std::make_unique<Radau>(sys, t0, y0, nullptr, t_bound, rtol, atol);
        case Method::kAuto:
            break;
    }
    return std::make_unique<Auto>(sys, t0, y0, t_bound, rtol, atol);
}

// ---------------------------------------------------------------------------------------
// the driver: records, terminal events
// ---------------------------------------------------------------------------------------
enum SolveStatus : int { kFinished = 0, kEvent = 1, kFailed = -1 };
enum Event : int { kNoEvent = -1, kGramEvent = 0, kDEvent = 1, kRunawayEvent = 2 };

struct SolveOptions {
    Method method = Method::kAuto;
    double rtol = 1e-8, atol = 1e-10, psd_tol = 1e-8;
    double runaway = 1e8;  // an entry beyond this in absolute value is a runaway
    long max_steps = 10'000'000;
};

inline double runaway_event(const double* y, int n, double runaway) {
    return detail::all_finite(y, n) ? runaway - detail::max_abs(y, n) : -1.0;
}

struct SolveResult {
    int status = kFinished;
    int event = kNoEvent;
    double t_event = kNaN;
    int n_recorded = 0;
    long nfev = 0, njev = 0, nlu = 0, nsteps = 0;
    int switches = 0;  // method "auto": changes between RK45 and Radau
    System::RecordCheck records;
    std::string message;
};

// Integrate from (t0, y0) to t_max, recording at the increasing times t_eval[0..n_eval)
// (within [t0, t_max]) into Y (n_eval x n, row-major), and check the records
// (System::check_records). With y_end (may be null) the state at the last step (or at the
// event) is written there too.
inline SolveResult solve(System& sys, const SolveOptions& opt, double t0, const double* y0,
                         double t_max, const double* t_eval, int n_eval, double* Y,
                         double* y_end = nullptr) {
    const int n = sys.size();
    SolveResult res;
    auto stepper = make_stepper(sys, opt.method, t0, y0, t_max, opt.rtol, opt.atol);
    std::vector<double> ybuf(static_cast<std::size_t>(n));
    // event functions at the start
    bool gram_nonneg = sys.gram_event(y0, opt.psd_tol) >= 0;
    double gD = sys.min_D(y0);
    double gR = runaway_event(y0, n, opt.runaway);
    int ti = 0;
    double t_stop = t0;
    while (true) {
        if (stepper->t >= t_max) break;
        if (res.nsteps >= opt.max_steps) {
            res.status = kFailed;
            res.message = "more than " + std::to_string(opt.max_steps) + " steps";
            break;
        }
        const bool ok = stepper->step();
        ++res.nsteps;
        if (!ok) {
            res.status = kFailed;
            res.message = stepper->message;
            break;
        }
        const double t_old = stepper->t_old;
        double t = stepper->t;
        const double* y = stepper->y.data();
        // events: a change from >= 0 to <= 0
        double g_new = 1.0;
        const bool pos = sys.gram_event_positive(y, opt.psd_tol);
        if (!pos) g_new = sys.gram_event(y, opt.psd_tol);
        const bool gram_active = gram_nonneg && !pos && g_new <= 0;
        gram_nonneg = pos || g_new >= 0;
        const double gD_new = sys.min_D(y);
        const bool d_active = gD >= 0 && gD_new <= 0;
        gD = gD_new;
        const double gR_new = runaway_event(y, n, opt.runaway);
        const bool r_active = gR >= 0 && gR_new <= 0;
        gR = gR_new;
        if (gram_active || d_active || r_active) {
            const auto root = [&](auto&& g) {
                return detail::brentq(
                    [&](double s) {
                        stepper->dense(s, ybuf.data());
                        return g(ybuf.data());
                    },
                    t_old, t, 4 * kEps, 4 * kEps);
            };
            double roots[3] = {kInf, kInf, kInf};
            if (gram_active) roots[0] = root([&](const double* v) { return sys.gram_event(v, opt.psd_tol); });
            if (d_active) roots[1] = root([&](const double* v) { return sys.min_D(v); });
            if (r_active) roots[2] = root([&](const double* v) { return runaway_event(v, n, opt.runaway); });
            // the earliest; on a tie a runaway first, then the Gram event, then D
            int which = kRunawayEvent;
            for (int e : {kGramEvent, kDEvent})
                if (roots[e] < roots[which]) which = e;
            res.status = kEvent;
            res.event = which;
            res.t_event = roots[which];
            t = res.t_event;
        }
        for (; ti < n_eval && t_eval[ti] <= t; ++ti) {
            stepper->dense(t_eval[ti], Y + static_cast<std::ptrdiff_t>(ti) * n);
        }
        t_stop = t;
        if (res.status == kEvent) break;
    }
    if (y_end != nullptr) {
        if (res.status == kEvent)
            stepper->dense(t_stop, y_end);
        else
            std::copy(stepper->y.begin(), stepper->y.end(), y_end);
    }
    res.n_recorded = ti;
    res.records = sys.check_records(Y, ti, opt.psd_tol);
    res.nfev = stepper->nfev;
    res.njev = stepper->njev;
    res.nlu = stepper->nlu;
    if (const auto* a = dynamic_cast<const Auto*>(stepper.get())) res.switches = a->switches();
    return res;
}

// ---------------------------------------------------------------------------------------
// fixed points: Newton with the analytic Jacobian, and the steady state a run settles at
// ---------------------------------------------------------------------------------------
// Newton's method on f(y) = 0 at the given beta, least-squares steps (minimum norm, so a
// Jacobian made singular by a continuous symmetry is fine) with step halving. Returns
// max |f| at the result.
inline double newton(System& sys, double beta, double* y, int max_iter = 100) {
    const int n = sys.size();
    std::vector<double> f(static_cast<std::size_t>(n)), ft(static_cast<std::size_t>(n)),
        yt(static_cast<std::size_t>(n));
    RowMat J(n, n);
    sys.rhs_beta(beta, y, f.data());
    double res = detail::all_finite(f.data(), n) ? detail::max_abs(f.data(), n) : kInf;
    if (!std::isfinite(res)) return res;
    Eigen::VectorXd minus_f(n);
    for (int it = 0; it < max_iter && res > 0; ++it) {
        sys.jacobian_beta(beta, y, J.data());
        for (int i = 0; i < n; ++i) minus_f(i) = -f[static_cast<std::size_t>(i)];
        Eigen::CompleteOrthogonalDecomposition<Eigen::MatrixXd> cod(J);
        const Eigen::VectorXd dy = cod.solve(minus_f);
        if (!dy.allFinite()) break;
        bool accepted = false;
        double step = 1.0;
        for (int k = 0; k < 30 && !accepted; ++k, step *= 0.5) {
            for (int i = 0; i < n; ++i) yt[static_cast<std::size_t>(i)] = y[i] + step * dy(i);
            sys.rhs_beta(beta, yt.data(), ft.data());
            if (!detail::all_finite(ft.data(), n)) continue;
            const double r = detail::max_abs(ft.data(), n);
            if (r < res) {
                accepted = true;
                res = r;
                std::copy(yt.begin(), yt.end(), y);
                f.swap(ft);
            }
        }
        if (!accepted) break;
    }
    return res;
}

// Eigenvalues of the Jacobian at y (beta given), sorted by decreasing real part.
inline void jacobian_eigenvalues(System& sys, double beta, const double* y, double* re, double* im) {
    const int n = sys.size();
    RowMat J(n, n);
    sys.jacobian_beta(beta, y, J.data());
    Eigen::EigenSolver<Eigen::MatrixXd> es(J, false);
    const Eigen::VectorXcd ev = es.eigenvalues();
    std::vector<int> order(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return ev(a).real() > ev(b).real(); });
    for (int i = 0; i < n; ++i) {
        re[i] = ev(order[static_cast<std::size_t>(i)]).real();
        im[i] = ev(order[static_cast<std::size_t>(i)]).imag();
    }
}

enum SteadyStatus : int {
    kStable = 0,         // a stable fixed point, reached from the start
    kNotStable = 1,      // the last fixed point found is not stable
    kNoFixedPoint = 2,   // root finding did not converge
    kLeftPhysical = 3,   // the run left the physical region or the solver failed
};

struct SteadyOptions {
    SolveOptions solve;
    double t_settle = 100.0;
    int max_rounds = 6;
    double residual_tol = 1e-10;
    double eig_tol = 1e-9;
    int n_zero_allowed = 0;  // zero modes of continuous symmetries (equal rho_k)
};

struct SteadyResult {
    int status = kNoFixedPoint;
    double residual = kNaN;
    double t_end = 0.0;
    double max_real = kNaN;
    long nfev = 0;
};

// The stable fixed point a run from y0 settles at: integrate for t_settle, refine the end
// state by Newton at beta_inf, and accept the result if it is a physical, stable fixed
// point that the run is heading for: close to the end state, or the same fixed point as
// in the round before and closer to it now (slow, power-law approach near a threshold).
// Else integrate twice as long from there, up to max_rounds times. eig_re / eig_im get the
// Jacobian's eigenvalues there (decreasing real part).
inline SteadyResult steady_state(System& sys, const SteadyOptions& opt, const double* y0,
                                 double* y_out, double* eig_re, double* eig_im) {
    const int n = sys.size();
    const auto un = static_cast<std::size_t>(n);
    const double beta_inf = sys.model().beta.limit();
    SteadyResult res;
    std::vector<double> y(y0, y0 + n), yfp(un), prev(un), mag(un);
    double prev_dist = kInf;  // distance to the fixed point of the round before (if any)
    std::vector<int> idx(un);
    std::vector<char> drop(un);
    std::fill(y_out, y_out + n, kNaN);
    std::fill(eig_re, eig_re + n, kNaN);
    std::fill(eig_im, eig_im + n, kNaN);
    double span = opt.t_settle;
    for (int round = 0; round < opt.max_rounds; ++round, span *= 2) {
        const double t_end = res.t_end + span;
        const SolveResult sr = solve(sys, opt.solve, res.t_end, y.data(), t_end, nullptr, 0,
                                     nullptr, y.data());
        res.nfev += sr.nfev;
        if (sr.status != kFinished) {
            res.status = kLeftPhysical;
            return res;
        }
        res.t_end = t_end;
        yfp = y;
        res.residual = newton(sys, beta_inf, yfp.data());
        if (!(res.residual <= opt.residual_tol)) {
            res.status = kNoFixedPoint;
            prev_dist = kInf;
            continue;
        }
        double dist = 0.0, big = 0.0, moved = 0.0;
        for (std::size_t i = 0; i < un; ++i) {
            dist = std::max(dist, std::abs(yfp[i] - y[i]));
            big = std::max(big, std::abs(y[i]));
            moved = std::max(moved, std::abs(yfp[i] - prev[i]));
        }
        const bool approaching = prev_dist < kInf && moved <= 1e-8 * (1.0 + big) && dist < prev_dist;
        prev = yfp;
        prev_dist = dist;
        const bool physical = sys.gram_event(yfp.data(), 1e-9) >= 0 && sys.min_D(yfp.data()) > 0;
        jacobian_eigenvalues(sys, beta_inf, yfp.data(), eig_re, eig_im);
        std::copy(yfp.begin(), yfp.end(), y_out);
        // leave out up to n_zero_allowed symmetry zero modes (those of smallest |lambda|)
        for (std::size_t i = 0; i < un; ++i) {
            mag[i] = std::hypot(eig_re[i], eig_im[i]);
            idx[i] = static_cast<int>(i);
            drop[i] = 0;
        }
        std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) {
            return mag[static_cast<std::size_t>(a)] < mag[static_cast<std::size_t>(b)];
        });
        for (int k = 0; k < opt.n_zero_allowed && k < n; ++k) {
            const auto j = static_cast<std::size_t>(idx[static_cast<std::size_t>(k)]);
            if (mag[j] < 1e3 * opt.eig_tol) drop[j] = 1;
        }
        double mr = -kInf;
        for (std::size_t i = 0; i < un; ++i)
            if (!drop[i]) mr = std::max(mr, eig_re[i]);
        res.max_real = mr;
        if (physical && mr < -opt.eig_tol && (dist <= 1e-2 * (1.0 + big) || approaching)) {
            res.status = kStable;
            return res;
        }
        res.status = kNotStable;
    }
    return res;
}

// Threads for a grid: the given count, or (threads <= 0) OpenMP's default.
inline int grid_threads(int threads) {
#ifdef _OPENMP
    return threads > 0 ? threads : omp_get_max_threads();
#else
    (void)threads;
    return 1;
#endif
}

// body(i) for every point i < P of a parameter grid, points in parallel (dynamic
// schedule: points differ widely in cost). A point whose body throws gets on_error(i)
// instead, so that one bad point never loses the others. Called without the GIL.
template <class Body, class OnError>
void for_each_point(std::int64_t P, int threads, Body&& body, OnError&& on_error) {
    [[maybe_unused]] const int nthreads = grid_threads(threads);  // unused without OpenMP
#pragma omp parallel for schedule(dynamic) num_threads(nthreads)
    for (std::int64_t i = 0; i < P; ++i) {
        try {
            body(i);
        } catch (...) {
            on_error(i);
        }
    }
}

}  // namespace linvae::ode
