// Python access to the SGD engine: construction, initial states, and runs that write
// recorded order parameters straight into caller-owned NumPy arrays.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <pybind11/eigen.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bind_engine.hpp"
#include "linvae/engine.hpp"

namespace py = pybind11;
using linvae::Engine;
using linvae::bind::carray;
using linvae::bind::check_replica;
using linvae::bind::expect_shape;

namespace {

template <class Real>
void register_engine_type(py::module_& m, const char* name) {
    using E = Engine<Real>;
    py::class_<E>(m, name)
        .def(py::init([](std::int64_t N, const linvae::Params& p, double blowup, std::uint64_t seed, int replicas,
                         std::string noise, double noise_df, std::string factors,
                         std::int64_t dataset_size, std::string order, std::uint64_t dataset_seed,
                         bool dataset_shared) {
                 const linvae::bind::DataOptions o{noise, noise_df, factors, dataset_size,
                                                   order, dataset_seed, dataset_shared};
                 return std::make_unique<E>(linvae::bind::model_config(N, p, blowup, o),
                                            seed, replicas);
             }),
             py::arg("N"), py::arg("params"), py::arg("blowup"), py::arg("seed"), py::arg("replicas"),
             LINVAE_DATA_ARGS)
        .def("init_random", &E::init_random, py::arg("threads"),
             py::call_guard<py::gil_scoped_release>())
        .def("init_prescribed", &E::init_prescribed, py::arg("S"), py::arg("D"), py::arg("threads"),
             py::call_guard<py::gil_scoped_release>())
        .def("run", &linvae::bind::run<E>, py::arg("beta"), py::arg("records"), py::arg("out"),
             py::arg("rec_start"), py::arg("threads"),
             py::arg("train_Bb") = py::none(), py::arg("train_Cab") = py::none())
        .def("status", &linvae::bind::status<E>,
             "(status code, steps taken) per replica; codes are the values of Status.")
        .def("flush", &E::flush, "Apply pending updates so that weights() is the current state.")
        .def("weights",
             [](E& e, int r) {
                 check_replica(e, r);
                 const auto& c = e.config();
                 auto& rep = e.replica(r);
                 if (rep.has_pending) throw py::value_error("call flush() before weights()");
                 auto mat = [](const linvae::Weights<Real>& v, std::int64_t rows, int cols) {
                     py::array_t<double> out({rows, static_cast<std::int64_t>(cols)});
                     double* p = out.mutable_data();
                     for (std::size_t i = 0; i < v.size(); ++i) p[i] = static_cast<double>(v[i]);
                     return out;
                 };
                 py::dict w;
                 w["W"] = mat(rep.W, c.N, c.M);
                 w["V"] = mat(rep.V, c.N, c.M);
                 w["W_star"] = mat(rep.Ws, c.N, c.Ms);
                 w["D"] = py::array_t<double>(c.M, rep.D.data());
                 return w;
             },
             py::arg("replica"), "Copies of W, V, W*, D of one replica (tests, inspection).")
        .def("get_state",
             [](E& e, int r) {
                 check_replica(e, r);
                 auto& rep = e.replica(r);
                 linvae::StreamWords<Real> words(rep);
                 py::dict st;
                 linvae::visit_state_arrays(e.config(), rep, words,
                                            [&](const char* k, auto* data, const auto& shape) {
                     using T = std::remove_pointer_t<decltype(data)>;
                     st[k] = py::array_t<T>(std::vector<py::ssize_t>(shape.begin(), shape.end()),
                                            data);
                 });
                 linvae::visit_state_scalars(rep, [&](const char* k, auto& v) { st[k] = v; });
                 return st;
             },
             py::arg("replica"),
             "Complete state of one replica (weights in their own dtype, pending update, "
             "generator states): set_state() of it continues bit for bit.")
        .def("set_state",
             [](E& e, int r, py::dict st) {
                 check_replica(e, r);
                 auto& rep = e.replica(r);
                 linvae::StreamWords<Real> words(rep);
                 auto entry = [&](const char* k, auto* data, const auto& shape) {
                     using T = std::remove_pointer_t<decltype(data)>;
                     return linvae::bind::state_entry<T>(
                         st, k, std::vector<py::ssize_t>(shape.begin(), shape.end()));
                 };
                 // every entry is checked before anything is changed
                 linvae::visit_state_arrays(e.config(), rep, words, entry);
                 linvae::visit_state_scalars(rep, [&](const char* k, auto& v) {
                     if (!st.contains(k)) throw py::value_error(std::string("state is missing ") + k);
                     (void)st[k].cast<std::decay_t<decltype(v)>>();
                 });
                 linvae::visit_state_arrays(e.config(), rep, words,
                                            [&](const char* k, auto* data, const auto& shape) {
                     const auto a = entry(k, data, shape);
                     std::copy(a.data(), a.data() + a.size(), data);
                 });
                 linvae::visit_state_scalars(
                     rep, [&](const char* k, auto& v) { v = st[k].cast<std::decay_t<decltype(v)>>(); });
                 words.restore(rep);
             },
             py::arg("replica"), py::arg("state"), "Restore a state from get_state().")
        .def("sample",
             [](E& e, int r, std::int64_t mu) {
                 check_replica(e, r);
                 const auto& c = e.config();
                 if (!c.data.finite()) throw py::value_error("sample() needs a finite dataset");
                 if (mu < 0 || mu >= c.data.P) throw py::index_error("sample index out of range");
                 auto [cf, n] = e.sample(r, mu);
                 return py::make_tuple(py::array_t<double>(c.Ms, cf.data()),
                                       py::array_t<double>(c.N, n.data()));
             },
             py::arg("replica"), py::arg("mu"),
             "The draws (c, n) of sample mu of a replica's dataset, as every visit makes them "
             "(n in the weights' precision, widened): x = W* diag(sqrt(rho)) c / sqrt(N) + "
             "sqrt(eta) n.")
        .def("apply_covariance",
             [](E& e, int r, carray<double> Y, int threads) {
                 check_replica(e, r);
                 const auto& c = e.config();
                 if (!c.data.finite()) throw py::value_error("apply_covariance() needs a finite dataset");
                 if (Y.ndim() != 2 || Y.shape(0) != c.N)
                     throw py::value_error("Y must have shape (N, k)");
                 const auto& Ws = e.replica(r).Ws;
                 if (std::all_of(Ws.begin(), Ws.end(), [](auto w) { return w == 0; }))
                     throw py::value_error("the teacher is not drawn yet: call init_random() first");
                 py::array_t<double> Z({Y.shape(0), Y.shape(1)});
                 {
                     py::gil_scoped_release nogil;
                     e.apply_covariance(r, Y.data(), static_cast<int>(Y.shape(1)),
                                        Z.mutable_data(), threads);
                 }
                 return Z;
             },
             py::arg("replica"), py::arg("Y"), py::arg("threads") = 1,
             "S Y for the covariance S = (1/P) sum_mu x_mu x_mu^T of a replica's training set, "
             "its samples regenerated as every visit makes them (Y: N x k).")
        .def("sample_index",
             [](E& e, int r, carray<std::int64_t> steps) {
                 check_replica(e, r);
                 if (!e.config().data.finite())
                     throw py::value_error("sample_index() needs a finite dataset");
                 py::array_t<std::int64_t> out(steps.size());
                 linvae::VisitOrder order;  // its own: the run's is left as it is
                 for (py::ssize_t i = 0; i < steps.size(); ++i) {
                     if (steps.data()[i] < 0) throw py::value_error("steps must be >= 0");
                     out.mutable_data()[i] = e.sample_index(order, r, steps.data()[i]);
                 }
                 return out;
             },
             py::arg("replica"), py::arg("steps"),
             "The index of the sample each step (0-based) of a replica trains on.")
        .def("step_given",
             [](E& e, int r, carray<double> x, double beta) {
                 check_replica(e, r);
                 expect_shape(x, {static_cast<py::ssize_t>(e.config().N)}, "x");
                 e.step_given(r, x.data(), beta);
             },
             py::arg("replica"), py::arg("x"), py::arg("beta"),
             "One SGD step of one replica on a supplied sample x (tests).");
}

}  // namespace

void register_engine(py::module_& m) {
    py::enum_<linvae::Status>(m, "Status", "Why a replica stopped (running: it did not).")
        .value("running", linvae::kRunning)
        .value("non_finite", linvae::kNonFinite)
        .value("non_positive_D", linvae::kNonPositiveD)
        .value("blow_up", linvae::kBlowUp)
        .value("indefinite", linvae::kIndefinite, "the Gram chain's Gram matrix is not PSD");
    py::tuple reasons(linvae::kStatusCount);
    for (int k = 0; k < linvae::kStatusCount; ++k) reasons[k] = linvae::kStatusReasons[k];
    m.attr("STATUS_REASONS") = reasons;
    py::tuple families(linvae::kFamilyCount);
    for (int k = 0; k < linvae::kFamilyCount; ++k) families[k] = linvae::kFamilyNames[k];
    m.attr("FAMILIES") = families;
    m.attr("ORDERS") = py::make_tuple(linvae::kOrderNames[0], linvae::kOrderNames[1]);
    register_engine_type<double>(m, "Engine64");
    register_engine_type<float>(m, "Engine32");
}
