// Python access to the SGD engine: construction, initial states, and runs that write
// recorded order parameters straight into caller-owned NumPy arrays.
#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <pybind11/eigen.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "linvae/engine.hpp"

namespace py = pybind11;
using linvae::Engine;
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

// The per-latent arrays of a pending update, by the names get_state/set_state use.
std::array<std::pair<const char*, std::array<double, linvae::kMaxLatents>*>, 5> pending_arrays(
        linvae::PendingUpdate& up) {
    return {{{"b", &up.b}, {"wdiag", &up.wdiag}, {"u", &up.u}, {"cW", &up.cW}, {"cV", &up.cV}}};
}

template <class Real>
void register_engine_type(py::module_& m, const char* name) {
    using E = Engine<Real>;
    py::class_<E>(m, name)
        .def(py::init([](std::int64_t N, int M, int M_star, std::vector<double> rho, double eta,
                         double lam, double tau, double blowup, std::uint64_t seed, int replicas,
                         bool rademacher) {
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
                 return std::make_unique<E>(std::move(c), seed, replicas);
             }),
             py::arg("N"), py::arg("M"), py::arg("M_star"), py::arg("rho"), py::arg("eta"),
             py::arg("lam"), py::arg("tau"), py::arg("blowup"), py::arg("seed"), py::arg("replicas"),
             py::arg("rademacher") = false)
        .def("init_random", &E::init_random, py::arg("threads"),
             py::call_guard<py::gil_scoped_release>())
        .def("init_prescribed", &E::init_prescribed, py::arg("S"), py::arg("D"), py::arg("threads"),
             py::call_guard<py::gil_scoped_release>())
        .def("run",
             [](E& e, carray<double> beta, carray<std::int64_t> records, carray<double> m,
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
             py::arg("E"), py::arg("R"), py::arg("D"), py::arg("rec_start"), py::arg("threads"))
        .def("status",
             [](E& e) {
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
             "2 = D <= 0, 3 = blow-up.")
        .def("flush", &E::flush, "Apply pending updates so that weights() is the current state.")
        .def("weights",
             [](E& e, int r) {
                 if (r < 0 || r >= e.replicas()) throw py::index_error("replica out of range");
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
                 if (r < 0 || r >= e.replicas()) throw py::index_error("replica out of range");
                 const auto& c = e.config();
                 auto& rep = e.replica(r);
                 const int M = c.M;
                 py::dict st;
                 st["W"] = py::array_t<Real>({c.N, static_cast<std::int64_t>(M)}, rep.W.data());
                 st["V"] = py::array_t<Real>({c.N, static_cast<std::int64_t>(M)}, rep.V.data());
                 st["W_star"] = py::array_t<Real>({c.N, static_cast<std::int64_t>(c.Ms)}, rep.Ws.data());
                 st["x"] = py::array_t<Real>(c.N, rep.x.data());
                 st["D"] = py::array_t<double>(M, rep.D.data());
                 st["Q"] = py::array_t<double>({M, M}, rep.Q.data());
                 for (const auto& [name, arr] : pending_arrays(rep.pending))
                     st[name] = py::array_t<double>(M, arr->data());
                 st["dec1"] = rep.pending.dec1;
                 st["vdec"] = rep.pending.vdec;
                 st["has_pending"] = rep.has_pending;
                 st["steps"] = rep.steps;
                 st["status"] = rep.status;
                 const auto nb = static_cast<py::ssize_t>(rep.noise.size());
                 constexpr int L = linvae::NormalStream::kLanes;
                 py::array_t<std::uint64_t> noise({nb, static_cast<py::ssize_t>(L), py::ssize_t{4}});
                 auto* pn = noise.mutable_data();
                 for (py::ssize_t b = 0; b < nb; ++b)
                     for (int l = 0; l < L; ++l)
                         for (int w = 0; w < 4; ++w) *pn++ = rep.noise[b].lane(l).s[w];
                 py::array_t<std::uint64_t> signal({static_cast<py::ssize_t>(L), py::ssize_t{4}});
                 auto* ps = signal.mutable_data();
                 for (int l = 0; l < L; ++l)
                     for (int w = 0; w < 4; ++w) *ps++ = rep.signal.lane(l).s[w];
                 st["noise_streams"] = noise;
                 st["signal_stream"] = signal;
                 return st;
             },
             py::arg("replica"),
             "Complete state of one replica (weights in their own dtype, pending update, "
             "generator states): set_state() of it continues bit for bit.")
        .def("set_state",
             [](E& e, int r, py::dict st) {
                 if (r < 0 || r >= e.replicas()) throw py::index_error("replica out of range");
                 const auto& c = e.config();
                 auto& rep = e.replica(r);
                 const py::ssize_t N = c.N, M = c.M, Ms = c.Ms;
                 constexpr int L = linvae::NormalStream::kLanes;
                 auto get = [&](const char* k, std::vector<py::ssize_t> shape, auto tag) {
                     using T = decltype(tag);
                     if (!st.contains(k)) throw py::value_error(std::string("state is missing ") + k);
                     auto a = py::array_t<T, py::array::c_style>::ensure(st[k]);
                     if (!a) throw py::value_error(std::string("state entry ") + k + " has the wrong type");
                     expect_shape(a, shape, k);
                     return a;
                 };
                 auto copy = [](auto a, auto& dst) { std::copy(a.data(), a.data() + a.size(), dst.begin()); };
                 auto W = get("W", {N, M}, Real{});
                 auto V = get("V", {N, M}, Real{});
                 auto Ws = get("W_star", {N, Ms}, Real{});
                 auto x = get("x", {N}, Real{});
                 auto D = get("D", {M}, double{});
                 auto Q = get("Q", {M, M}, double{});
                 for (const auto& [name, arr] : pending_arrays(rep.pending))
                     get(name, {M}, double{});  // checked before anything is changed
                 auto noise = get("noise_streams", {static_cast<py::ssize_t>(rep.noise.size()), L, 4}, std::uint64_t{});
                 auto signal = get("signal_stream", {L, 4}, std::uint64_t{});
                 copy(W, rep.W);
                 copy(V, rep.V);
                 copy(Ws, rep.Ws);
                 copy(x, rep.x);
                 copy(D, rep.D);
                 copy(Q, rep.Q);
                 for (const auto& [name, arr] : pending_arrays(rep.pending))
                     copy(get(name, {M}, double{}), *arr);
                 rep.pending.dec1 = st["dec1"].cast<double>();
                 rep.pending.vdec = st["vdec"].cast<double>();
                 rep.has_pending = st["has_pending"].cast<bool>();
                 rep.steps = st["steps"].cast<std::int64_t>();
                 rep.status = st["status"].cast<int>();
                 const std::uint64_t* pn = noise.data();
                 for (auto& stream : rep.noise)
                     for (int l = 0; l < L; ++l)
                         for (int w = 0; w < 4; ++w) stream.lane(l).s[w] = *pn++;
                 const std::uint64_t* ps = signal.data();
                 for (int l = 0; l < L; ++l)
                     for (int w = 0; w < 4; ++w) rep.signal.lane(l).s[w] = *ps++;
             },
             py::arg("replica"), py::arg("state"), "Restore a state from get_state().")
        .def("step_given",
             [](E& e, int r, carray<double> x, double beta) {
                 if (r < 0 || r >= e.replicas()) throw py::index_error("replica out of range");
                 expect_shape(x, {static_cast<py::ssize_t>(e.config().N)}, "x");
                 e.step_given(r, x.data(), beta);
             },
             py::arg("replica"), py::arg("x"), py::arg("beta"),
             "One SGD step of one replica on a supplied sample x (tests).");
}

}  // namespace

void register_engine(py::module_& m) {
    register_engine_type<double>(m, "Engine64");
    register_engine_type<float>(m, "Engine32");
}
