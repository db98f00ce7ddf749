// Python access to the ODEs (linvae/ode.hpp) and their compiled solvers (linvae/ode_solve.hpp):
// a system object for right-hand sides, Jacobians, Gram checks and single integrations,
// and grid calls that integrate, or find the steady state, at many parameter points over
// OpenMP threads. linvae.ode validates every argument; the checks here only keep a wrong
// shape from becoming an out-of-bounds access.
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "linvae/ode_solve.hpp"

namespace py = pybind11;
namespace ode = linvae::ode;

namespace {

template <class T>
using carray = py::array_t<T, py::array::c_style | py::array::forcecast>;

void expect(bool ok, const std::string& what) {
    if (!ok) throw py::value_error(what);
}

// sched: the kScheduleParams parameters of the schedule of this kind
ode::Model make_model(const linvae::Params& p, int kind, const double* sched) {
    ode::Model m;
    static_cast<linvae::Params&>(m) = p;
    m.beta = ode::Schedule::make(kind, sched);
    return m;
}

ode::SolveOptions solve_options(const std::string& method, double rtol, double atol, double psd_tol,
                                double runaway, std::int64_t max_steps) {
    ode::SolveOptions o;
    try {
        o.method = ode::method_from_name(method);
    } catch (const std::invalid_argument& e) {
        throw py::value_error(e.what());
    }
    o.rtol = rtol;
    o.atol = atol;
    o.psd_tol = psd_tol;
    o.runaway = runaway;
    o.max_steps = max_steps;
    return o;
}

// Grid inputs: P points of one (M, M*), parameters per point (rho (P, M*) and each real
// parameter of linvae/model.hpp (P,), by name), a start state per point.
struct GridInputs {
    int M, Ms, n;
    py::ssize_t P;
    carray<double> rho, sched, y0;
    std::vector<carray<double>> reals;  // in the order of kRealParams
    carray<std::int32_t> kind;

    GridInputs(int M_, int Ms_, carray<double> rho_, const py::dict& reals_, carray<std::int32_t> kind_,
               carray<double> sched_, carray<double> y0_)
        : M(M_), Ms(Ms_), n(ode::Layout(M_, Ms_).n), P(kind_.ndim() == 1 ? kind_.shape(0) : -1),
          rho(std::move(rho_)), sched(std::move(sched_)), y0(std::move(y0_)), kind(std::move(kind_)) {
        expect(M >= 1 && Ms >= 1, "M and M_star must be >= 1");
        expect(P >= 0, "kind must be one-dimensional");
        expect(rho.ndim() == 2 && rho.shape(0) == P && rho.shape(1) == Ms, "rho must have shape (P, M_star)");
        for (const auto& r : linvae::kRealParams) {
            expect(reals_.contains(r.name), std::string("params is missing ") + r.name);
            auto a = carray<double>::ensure(reals_[r.name]);
            expect(a && a.ndim() == 1 && a.shape(0) == P, std::string(r.name) + " must have shape (P,)");
            reals.push_back(std::move(a));
        }
        expect(sched.ndim() == 2 && sched.shape(0) == P && sched.shape(1) == ode::kScheduleParams,
               "schedule_params must have shape (P, 4)");
        expect(y0.ndim() == 2 && y0.shape(0) == P && y0.shape(1) == n, "y0 must have shape (P, n)");
        for (py::ssize_t i = 0; i < P; ++i)
            expect(kind.data()[i] >= 0 && kind.data()[i] <= 4, "unknown schedule kind");
    }

    ode::Model model(py::ssize_t i) const {
        linvae::Params p;
        p.M = M;
        p.Ms = Ms;
        p.rho.assign(rho.data() + i * Ms, rho.data() + (i + 1) * Ms);
        for (std::size_t k = 0; k < reals.size(); ++k) p.*linvae::kRealParams[k].member = reals[k].data()[i];
        return make_model(p, kind.data()[i], sched.data() + i * ode::kScheduleParams);
    }
};

py::dict solve_result_dict(const ode::SolveResult& r) {
    py::dict d;
    d["status"] = r.status;
    d["event"] = r.event;
    d["t_event"] = r.t_event;
    d["n_recorded"] = r.n_recorded;
    d["nfev"] = r.nfev;
    d["njev"] = r.njev;
    d["nlu"] = r.nlu;
    d["nsteps"] = r.nsteps;
    d["switches"] = r.switches;
    d["first_bad"] = r.records.first_bad;
    d["lam_bad"] = r.records.lam_bad;
    d["lam_min"] = r.records.lam_min;
    d["message"] = r.message;
    return d;
}

}  // namespace

void register_ode(py::module_& m) {
    py::class_<ode::System>(m, "OdeSystem",
                            "The ODEs of docs/model.md#odes for one parameter set, in the flat layout "
                            "of linvae.ode.StateLayout.")
        .def(py::init([](const linvae::Params& p, int schedule_kind, std::vector<double> schedule_params,
                         std::vector<double> drift) {
                 expect(schedule_params.size() == static_cast<std::size_t>(ode::kScheduleParams),
                        "schedule_params must have 4 entries");
                 ode::System s(make_model(p, schedule_kind, schedule_params.data()));
                 s.set_drift(std::move(drift));
                 return s;
             }),
             py::arg("params"), py::arg("schedule_kind"), py::arg("schedule_params"),
             py::arg("drift") = std::vector<double>{})
        .def_property_readonly("size", &ode::System::size)
        .def("beta", &ode::System::beta, py::arg("t"))
        .def(
            "rhs",
            [](ode::System& s, double t, carray<double> y, py::object beta) {
                const int n = s.size();
                expect(y.ndim() >= 1 && y.shape(y.ndim() - 1) == n, "y has the wrong last axis");
                const bool given = !beta.is_none();
                const double b = given ? beta.cast<double>() : s.beta(t);
                std::vector<py::ssize_t> shape(y.shape(), y.shape() + y.ndim());
                carray<double> out(shape);
                const py::ssize_t rows = y.size() / n;
                for (py::ssize_t r = 0; r < rows; ++r)
                    s.rhs_beta(b, y.data() + r * n, out.mutable_data() + r * n);
                return out;
            },
            py::arg("t"), py::arg("y"), py::arg("beta") = py::none(),
            "Right-hand side at flat state(s) y (..., n); beta(t) unless beta is given.")
        .def(
            "jacobian",
            [](ode::System& s, double t, carray<double> y, py::object beta) {
                const int n = s.size();
                expect(y.ndim() == 1 && y.shape(0) == n, "y must be one flat state");
                const double b = beta.is_none() ? s.beta(t) : beta.cast<double>();
                carray<double> J({n, n});
                s.jacobian_beta(b, y.data(), J.mutable_data());
                return J;
            },
            py::arg("t"), py::arg("y"), py::arg("beta") = py::none(),
            "Analytic Jacobian (n x n) at one flat state; beta(t) unless beta is given.")
        .def(
            "gram_event",
            [](ode::System& s, carray<double> y, double psd_tol) {
                expect(y.ndim() == 1 && y.shape(0) == s.size(), "y must be one flat state");
                return s.gram_event(y.data(), psd_tol);
            },
            py::arg("y"), py::arg("psd_tol"))
        .def(
            "min_gram_eigenvalue",
            [](ode::System& s, carray<double> y) {
                const int n = s.size();
                expect(y.ndim() >= 1 && y.shape(y.ndim() - 1) == n, "y has the wrong last axis");
                std::vector<py::ssize_t> shape(y.shape(), y.shape() + y.ndim() - 1);
                carray<double> out(shape);
                const py::ssize_t rows = y.size() / n;
                for (py::ssize_t r = 0; r < rows; ++r) out.mutable_data()[r] = s.min_gram_eigenvalue(y.data() + r * n);
                return out;
            },
            py::arg("y"), "Smallest Gram eigenvalue of flat state(s) (..., n).")
        .def(
            "integrate",
            [](const ode::System& s0, carray<double> y0, carray<double> t_eval, double t_max,
               const std::string& method, double rtol, double atol, double psd_tol, double runaway,
               std::int64_t max_steps) {
                const int n = s0.size();
                expect(y0.ndim() == 1 && y0.shape(0) == n, "y0 must be one flat state");
                expect(t_eval.ndim() == 1, "t_eval must be one-dimensional");
                const auto opt = solve_options(method, rtol, atol, psd_tol, runaway, max_steps);
                const py::ssize_t T = t_eval.shape(0);
                carray<double> Y({T, static_cast<py::ssize_t>(n)});
                std::fill(Y.mutable_data(), Y.mutable_data() + Y.size(), ode::kNaN);
                ode::SolveResult r;
                ode::System s = s0;  // its own scratch buffers (copied under the GIL)
                {
                    py::gil_scoped_release release;
                    r = ode::solve(s, opt, 0.0, y0.data(), t_max, t_eval.data(), static_cast<int>(T),
                                   Y.mutable_data());
                }
                py::dict d = solve_result_dict(r);
                d["y"] = Y;
                return d;
            },
            py::arg("y0"), py::arg("t_eval"), py::arg("t_max"), py::arg("method"), py::arg("rtol"),
            py::arg("atol"), py::arg("psd_tol"), py::arg("runaway"), py::arg("max_steps"),
            "Integrate from t = 0 to t_max entirely in C++, recording at t_eval; rows of y past "
            "n_recorded are NaN.")
        .def(
            "check_records",
            [](ode::System& s, carray<double> Y, double psd_tol) {
                const int n = s.size();
                expect(Y.ndim() == 2 && Y.shape(1) == n, "Y must have shape (T, n)");
                const auto rc = s.check_records(Y.data(), static_cast<int>(Y.shape(0)), psd_tol);
                return py::make_tuple(rc.first_bad, rc.lam_bad, rc.lam_min);
            },
            py::arg("Y"), py::arg("psd_tol"),
            "(first unphysical record or -1, its smallest Gram eigenvalue, the smallest Gram "
            "eigenvalue over the records before it).");

    m.def(
        "ode_integrate_grid",
        [](int M, int M_star, carray<double> rho, const py::dict& reals, carray<std::int32_t> kind, carray<double> sched, carray<double> y0,
           carray<double> t_eval, double t_max, const std::string& method, double rtol, double atol,
           double psd_tol, double runaway, std::int64_t max_steps, int threads) {
            GridInputs in(M, M_star, std::move(rho), reals, std::move(kind), std::move(sched), std::move(y0));
            expect(t_eval.ndim() == 1, "t_eval must be one-dimensional");
            const auto opt = solve_options(method, rtol, atol, psd_tol, runaway, max_steps);
            const py::ssize_t P = in.P, T = t_eval.shape(0);
            const int n = in.n;
            carray<double> Y({P, T, static_cast<py::ssize_t>(n)});
            carray<std::int32_t> status(P), event(P), n_rec(P), first_bad(P);
            carray<double> t_event(P), lam_min(P), lam_bad(P);
            carray<std::int64_t> nfev(P);
            double* Yp = Y.mutable_data();
            std::fill(Yp, Yp + Y.size(), ode::kNaN);
            auto* fb = first_bad.mutable_data();
            auto* Lp = lam_min.mutable_data();
            auto* Lb = lam_bad.mutable_data();
            auto* st = status.mutable_data();
            auto* ev = event.mutable_data();
            auto* nr = n_rec.mutable_data();
            auto* te = t_event.mutable_data();
            auto* nf = nfev.mutable_data();
            const double* tev = t_eval.data();
            {
                py::gil_scoped_release release;
                ode::for_each_point(
                    P, threads,
                    [&](std::int64_t i) {
                        ode::System s(in.model(i));
                        const auto r = ode::solve(s, opt, 0.0, in.y0.data() + i * n, t_max, tev,
                                                  static_cast<int>(T), Yp + i * T * n);
                        fb[i] = r.records.first_bad;
                        Lp[i] = r.records.lam_min;
                        Lb[i] = r.records.lam_bad;
                        st[i] = r.status;
                        ev[i] = r.event;
                        te[i] = r.t_event;
                        nr[i] = r.n_recorded;
                        nf[i] = r.nfev;
                    },
                    [&](std::int64_t i) {
                        fb[i] = -1;
                        Lp[i] = Lb[i] = ode::kNaN;
                        st[i] = -2;
                        ev[i] = -1;
                        te[i] = ode::kNaN;
                        nr[i] = 0;
                        nf[i] = 0;
                    });
            }
            py::dict d;
            d["y"] = Y;
            d["lam_min"] = lam_min;
            d["lam_bad"] = lam_bad;
            d["first_bad"] = first_bad;
            d["status"] = status;
            d["event"] = event;
            d["t_event"] = t_event;
            d["n_recorded"] = n_rec;
            d["nfev"] = nfev;
            return d;
        },
        py::arg("M"), py::arg("M_star"), py::arg("rho"), py::arg("reals"), py::arg("kind"), py::arg("schedule_params"), py::arg("y0"), py::arg("t_eval"), py::arg("t_max"),
        py::arg("method"), py::arg("rtol"), py::arg("atol"), py::arg("psd_tol"), py::arg("runaway"),
        py::arg("max_steps"), py::arg("threads"),
        "Integrate P parameter points (OpenMP over points); status per point: 0 reached t_max, "
        "1 a terminal event (event: 0 Gram, 1 D, 2 runaway), -1 solver failure, -2 internal "
        "error.");

    m.def(
        "ode_steady_state_grid",
        [](int M, int M_star, carray<double> rho, const py::dict& reals, carray<std::int32_t> kind, carray<double> sched, carray<double> y0,
           carray<std::int32_t> n_zero, double t_settle, int max_rounds, const std::string& method,
           double rtol, double atol, double psd_tol, double runaway, double residual_tol, double eig_tol,
           std::int64_t max_steps, int threads) {
            GridInputs in(M, M_star, std::move(rho), reals, std::move(kind), std::move(sched), std::move(y0));
            expect(n_zero.ndim() == 1 && n_zero.shape(0) == in.P, "n_zero must have shape (P,)");
            ode::SteadyOptions opt;
            opt.solve = solve_options(method, rtol, atol, psd_tol, runaway, max_steps);
            opt.t_settle = t_settle;
            opt.max_rounds = max_rounds;
            opt.residual_tol = residual_tol;
            opt.eig_tol = eig_tol;
            const py::ssize_t P = in.P;
            const int n = in.n;
            carray<double> Y({P, static_cast<py::ssize_t>(n)}), ere({P, static_cast<py::ssize_t>(n)}),
                eim({P, static_cast<py::ssize_t>(n)});
            carray<std::int32_t> status(P);
            carray<double> residual(P), t_end(P), max_real(P);
            carray<std::int64_t> nfev(P);
            double *Yp = Y.mutable_data(), *Rp = ere.mutable_data(), *Ip = eim.mutable_data();
            auto* st = status.mutable_data();
            auto *rs = residual.mutable_data(), *te = t_end.mutable_data(), *mr = max_real.mutable_data();
            auto* nf = nfev.mutable_data();
            const auto* nz = n_zero.data();
            {
                py::gil_scoped_release release;
                ode::for_each_point(
                    P, threads,
                    [&](std::int64_t i) {
                        ode::System s(in.model(i));
                        ode::SteadyOptions o = opt;
                        o.n_zero_allowed = nz[i];
                        const auto r = ode::steady_state(s, o, in.y0.data() + i * n, Yp + i * n,
                                                         Rp + i * n, Ip + i * n);
                        st[i] = r.status;
                        rs[i] = r.residual;
                        te[i] = r.t_end;
                        mr[i] = r.max_real;
                        nf[i] = r.nfev;
                    },
                    [&](std::int64_t i) {
                        std::fill(Yp + i * n, Yp + (i + 1) * n, ode::kNaN);
                        st[i] = -2;
                        rs[i] = te[i] = mr[i] = ode::kNaN;
                        nf[i] = 0;
                    });
            }
            py::dict d;
            d["y"] = Y;
            d["eig_real"] = ere;
            d["eig_imag"] = eim;
            d["status"] = status;
            d["residual"] = residual;
            d["t_end"] = t_end;
            d["max_real"] = max_real;
            d["nfev"] = nfev;
            return d;
        },
        py::arg("M"), py::arg("M_star"), py::arg("rho"), py::arg("reals"), py::arg("kind"), py::arg("schedule_params"), py::arg("y0"), py::arg("n_zero"),
        py::arg("t_settle"), py::arg("max_rounds"), py::arg("method"), py::arg("rtol"), py::arg("atol"),
        py::arg("psd_tol"), py::arg("runaway"), py::arg("residual_tol"), py::arg("eig_tol"),
        py::arg("max_steps"), py::arg("threads"),
        "The steady state of P parameter points (OpenMP over points); status per point: 0 stable "
        "fixed point, 1 not stable, 2 no fixed point found, 3 left the physical region, -2 "
        "internal error.");
}
