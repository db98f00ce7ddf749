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

#include "bind_engine.hpp"
#include "linvae/gram.hpp"

namespace py = pybind11;
using linvae::GramEngine;
using linvae::bind::carray;
using linvae::bind::check_replica;
using linvae::bind::expect_shape;

namespace {

std::vector<double> square_matrix(const carray<double>& a, int K, const char* name) {
    expect_shape(a, {K, K}, name);
    return std::vector<double>(a.data(), a.data() + a.size());
}

}  // namespace

void register_gram(py::module_& m) {
    py::class_<GramEngine>(m, "GramEngine",
                           "The Gram chain: the exact finite-N law of the order parameters "
                           "(Gaussian data) at a cost per step independent of N. Same "
                           "interface as Engine64.")
        .def(py::init([](std::int64_t N, const linvae::Params& p, double blowup, std::uint64_t seed, int replicas,
                         std::string noise, double noise_df, std::string factors,
                         std::int64_t dataset_size, std::string order, std::uint64_t dataset_seed,
                         bool dataset_shared, bool compensated) {
                 const linvae::bind::DataOptions o{noise, noise_df, factors, dataset_size,
                                                   order, dataset_seed, dataset_shared};
                 return std::make_unique<GramEngine>(
                     linvae::bind::model_config(N, p, blowup, o),
                     seed, replicas, compensated);
             }),
             py::arg("N"), py::arg("params"), py::arg("blowup"), py::arg("seed"), py::arg("replicas"),
             LINVAE_DATA_ARGS, py::arg("compensated") = true)
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
        .def("run", &linvae::bind::run<GramEngine>, py::arg("beta"), py::arg("records"),
             py::arg("out"), py::arg("rec_start"), py::arg("threads"), py::arg("train_Bb") = py::none(),
             py::arg("train_Cab") = py::none(),
             "As Engine64.run: beta per step, records as increasing step offsets in "
             "[0, len(beta)], written at t index rec_start + k of the (S, T, ...) arrays.")
        .def("status", &linvae::bind::status<GramEngine>,
             "(status code, steps taken) per replica; codes are the values of Status.")
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
                     auto a = linvae::bind::state_entry<T>(st, k, std::move(shape));
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
