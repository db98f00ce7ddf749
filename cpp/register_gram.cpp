// Python access to the Gram chain: the interface of the weight engine's binding
// (construction, initial states, runs into caller-owned arrays, status, state), so that
// the driver can pick either engine.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "linvae/gram.hpp"

namespace py = pybind11;
using linvae::GramEngine;
using linvae::ModelConfig;

namespace {

template <class T>
using carray = py::array_t<T, py::array::c_style>;

// The bindings trust nothing: a wrong shape here would be a write out of bounds.
void expect_shape(const py::array& a, std::vector<py::ssize_t> shape, const char* name) {
    bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
    for (std::size_t i = 0; ok && i < shape.size(); ++i) ok = a.shape(i) == shape[i];
    if (!ok) throw py::value_error(std::string(name) + " has the wrong shape");
}

std::vector<double> square_matrix(const carray<double>& a, int K, const char* name) {
    expect_shape(a, {K, K}, name);
    return std::vector<double>(a.data(), a.data() + a.size());
}

void check_replica(const GramEngine& e, int r) {
    if (r < 0 || r >= e.replicas()) throw py::index_error("replica out of range");
}

}  // namespace

void register_gram(py::module_& m) {
    py::class_<GramEngine>(m, "GramEngine",
                           "The Gram chain: the exact finite-N law of the order parameters "
                           "(Gaussian data) at a cost per step independent of N. Same "
                           "interface as Engine64.")
        .def(py::init([](std::int64_t N, int M, int M_star, std::vector<double> rho, double eta,
                         double lam, double tau, double blowup, std::uint64_t seed, int replicas,
                         bool rademacher, bool compensated) {
                 ModelConfig c;
                 c.N = N;
                 c.M = M;
                 c.Ms = M_star;
                 c.rho = std::move(rho);
                 c.eta = eta;
                 c.lam = lam;
                 c.tau = tau;
                 c.blowup = blowup;
                 c.rademacher = rademacher;
                 return std::make_unique<GramEngine>(std::move(c), seed, replicas, compensated);
             }),
             py::arg("N"), py::arg("M"), py::arg("M_star"), py::arg("rho"), py::arg("eta"),
             py::arg("lam"), py::arg("tau"), py::arg("blowup"), py::arg("seed"), py::arg("replicas"),
             py::arg("rademacher") = false, py::arg("compensated") = true)
        .def_property_readonly("K", &GramEngine::K, "M* + 2M, the size of the Gram matrix.")
        .def("init_random", &GramEngine::init_random, py::arg("threads"),
             py::call_guard<py::gil_scoped_release>(),
             "The exact law of the default start (W, V i.i.d. N(0, 1), D = 1).")
        .def("init_prescribed",
             [](GramEngine& e, const carray<double>& S, std::vector<double> D, int threads) {
                 // as Engine64.init_prescribed: [W*, W, V] = sqrt(N) F S, so G = S^T S
                 const int K = e.K();
                 expect_shape(S, {K, K}, "S");
                 std::vector<double> G(static_cast<std::size_t>(K * K));
                 const double* s = S.data();
                 for (int i = 0; i < K; ++i)
                     for (int j = 0; j < K; ++j) {
                         double v = 0.0;
                         for (int l = 0; l < K; ++l) v += s[l * K + i] * s[l * K + j];
                         G[static_cast<std::size_t>(i * K + j)] = v;
                     }
                 py::gil_scoped_release release;
                 e.init_gram(std::move(G), D, threads);
             },
             py::arg("S"), py::arg("D"), py::arg("threads"),
             "A prescribed start from a square root S of the Gram matrix (S^T S = G).")
        .def("init_gram",
             [](GramEngine& e, const carray<double>& G, std::vector<double> D, int threads) {
                 auto g = square_matrix(G, e.K(), "G");
                 py::gil_scoped_release release;
                 e.init_gram(std::move(g), D, threads);
             },
             py::arg("G"), py::arg("D"), py::arg("threads"),
             "A prescribed start from the Gram matrix itself, taken exactly.")
        .def("run",
             [](GramEngine& e, carray<double> beta, carray<std::int64_t> records, carray<double> m,
                carray<double> d, carray<double> Q, carray<double> E_, carray<double> R,
                carray<double> D, std::int64_t rec_start, int threads) {
                 const auto& c = e.config();
                 const py::ssize_t S = e.replicas();
                 const std::int64_t n_steps = beta.ndim() == 1 ? beta.shape(0) : -1;
                 if (n_steps < 0) throw py::value_error("beta must be one-dimensional");
                 if (records.ndim() != 1) throw py::value_error("records must be one-dimensional");
                 const py::ssize_t T = m.ndim() == 4 ? m.shape(1) : -1;
                 expect_shape(m, {S, T, c.M, c.Ms}, "m");
                 expect_shape(d, {S, T, c.M, c.Ms}, "d");
                 expect_shape(Q, {S, T, c.M, c.M}, "Q");
                 expect_shape(E_, {S, T, c.M, c.M}, "E");
                 expect_shape(R, {S, T, c.M, c.M}, "R");
                 expect_shape(D, {S, T, c.M}, "D");
                 const std::int64_t n_rec = records.shape(0);
                 const std::int64_t* rec = records.data();
                 for (std::int64_t k = 0; k < n_rec; ++k)
                     if (rec[k] < 0 || rec[k] > n_steps || (k > 0 && rec[k] <= rec[k - 1]))
                         throw py::value_error("records must be increasing offsets in [0, len(beta)]");
                 if (rec_start < 0 || rec_start + n_rec > T)
                     throw py::value_error("records do not fit the output arrays");
                 linvae::RecordSink sink{m.mutable_data(), d.mutable_data(), Q.mutable_data(),
                                         E_.mutable_data(), R.mutable_data(), D.mutable_data(),
                                         T, rec_start};
                 const double* b = beta.data();
                 py::gil_scoped_release release;
                 e.run(b, n_steps, rec, n_rec, sink, threads);
             },
             py::arg("beta"), py::arg("records"), py::arg("m"), py::arg("d"), py::arg("Q"),
             py::arg("E"), py::arg("R"), py::arg("D"), py::arg("rec_start"), py::arg("threads"),
             "As Engine64.run: beta per step, records as increasing step offsets in "
             "[0, len(beta)], written at t index rec_start + k of the (S, T, ...) arrays.")
        .def("status",
             [](GramEngine& e) {
                 const int S = e.replicas();
                 py::array_t<int> status(S);
                 py::array_t<std::int64_t> steps(S);
                 for (int r = 0; r < S; ++r) {
                     status.mutable_at(r) = e.replica(r).status;
                     steps.mutable_at(r) = e.replica(r).steps;
                 }
                 return py::make_tuple(status, steps);
             },
             "(status code, steps taken) per replica; 0 = running, 1 = non-finite, "
             "2 = D <= 0, 3 = blow-up, 4 = Gram matrix not positive semidefinite.")
        .def("flush", [](GramEngine&) {}, "Nothing is pending in the Gram chain (as Engine64.flush).")
        .def("gram",
             [](GramEngine& e, int r) {
                 check_replica(e, r);
                 const int K = e.K();
                 return py::array_t<double>({K, K}, e.replica(r).G.data());
             },
             py::arg("replica"), "The current Gram matrix of one replica (K x K).")
        .def("get_state",
             [](GramEngine& e, int r) {
                 check_replica(e, r);
                 const auto& rep = e.replica(r);
                 const int K = e.K(), M = e.config().M;
                 py::dict st;
                 st["G"] = py::array_t<double>({K, K}, rep.G.data());
                 st["G_comp"] = py::array_t<double>({K, K}, rep.Gc.data());
                 st["D"] = py::array_t<double>(M, rep.D.data());
                 st["D_comp"] = py::array_t<double>(M, rep.Dc.data());
                 st["steps"] = rep.steps;
                 st["status"] = rep.status;
                 st["stream"] = py::array_t<std::uint64_t>(4, rep.gen.s);
                 return st;
             },
             py::arg("replica"),
             "Complete state of one replica (Gram matrix and D with their compensation "
             "terms, generator state): set_state() of it continues bit for bit.")
        .def("set_state",
             [](GramEngine& e, int r, py::dict st) {
                 check_replica(e, r);
                 auto& rep = e.replica(r);
                 const py::ssize_t K = e.K(), M = e.config().M;
                 auto get = [&](const char* k, std::vector<py::ssize_t> shape, auto tag) {
                     using T = decltype(tag);
                     if (!st.contains(k)) throw py::value_error(std::string("state is missing ") + k);
                     auto a = py::array_t<T, py::array::c_style>::ensure(st[k]);
                     if (!a) throw py::value_error(std::string("state entry ") + k + " has the wrong type");
                     expect_shape(a, shape, k);
                     return std::vector<T>(a.data(), a.data() + a.size());
                 };
                 auto scalar = [&](const char* k) {
                     if (!st.contains(k)) throw py::value_error(std::string("state is missing ") + k);
                     return py::int_(st[k]).cast<std::int64_t>();  // ints, NumPy scalars, 0-d arrays
                 };
                 auto G = get("G", {K, K}, double{});
                 auto Gc = get("G_comp", {K, K}, double{});
                 auto D = get("D", {M}, double{});
                 auto Dc = get("D_comp", {M}, double{});
                 auto gen = get("stream", {4}, std::uint64_t{});
                 const std::int64_t steps = scalar("steps");
                 const std::int64_t status = scalar("status");
                 const int Ms = e.config().Ms;
                 for (int i = 0; i < Ms; ++i)
                     for (int j = 0; j < Ms; ++j)
                         if (G[static_cast<std::size_t>(i * K + j)] != (i == j ? 1.0 : 0.0))
                             throw py::value_error("state entry G: its W* block is not I");
                 if (gen[0] == 0 && gen[1] == 0 && gen[2] == 0 && gen[3] == 0)
                     throw py::value_error("state entry stream: an all-zero generator state");
                 if (steps < 0 || status < 0 || status > linvae::kIndefinite)
                     throw py::value_error("state entries steps/status are out of range");
                 rep.G = std::move(G);
                 rep.Gc = std::move(Gc);
                 rep.D = std::move(D);
                 rep.Dc = std::move(Dc);
                 for (int w = 0; w < 4; ++w) rep.gen.s[w] = gen[static_cast<std::size_t>(w)];
                 rep.steps = steps;
                 rep.status = static_cast<int>(status);
             },
             py::arg("replica"), py::arg("state"), "Restore a state from get_state().")
        .def("fill_floor",
             [](const GramEngine& e, std::int64_t n_steps) {
                 if (n_steps < 0) throw py::value_error("n_steps must be >= 0");
                 py::gil_scoped_release release;
                 return e.fill_floor(n_steps);
             },
             py::arg("n_steps"),
             "Draw the random numbers of n_steps steps of replica 0 (c, xi, chi^2) from a "
             "copy of its generator, without stepping; returns their sum (benchmarks).");
}
