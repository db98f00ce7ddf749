// What the bindings of the engine-like classes share (Engine64/Engine32 in
// register_engine.cpp, GramEngine in register_gram.cpp): the model configuration of their
// constructors, runs into caller-owned arrays, status, and the checks of arguments and
// state entries. Each register file keeps its own method names, arguments and docstrings.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "linvae/engine.hpp"  // ModelConfig, RecordSink

namespace linvae::bind {

namespace py = pybind11;

template <class T>
using carray = py::array_t<T, py::array::c_style>;

// The bindings trust nothing: a wrong shape here would be a write out of bounds.
inline void expect_shape(const py::array& a, std::vector<py::ssize_t> shape, const char* name) {
    bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
    for (std::size_t i = 0; ok && i < shape.size(); ++i) ok = a.shape(i) == shape[i];
    if (!ok) throw py::value_error(std::string(name) + " has the wrong shape");
}

template <class E>
void check_replica(const E& e, int r) {
    if (r < 0 || r >= e.replicas()) throw py::index_error("replica out of range");
}

// The data options of the constructors, by their Python names (the C++ tables of names
// in noise.hpp and dataset.hpp are the ones Python checks against).
struct DataOptions {
    std::string noise = "gaussian";
    double noise_df = 0.0;
    std::string factors = "gaussian";
    std::int64_t dataset_size = 0;
    std::string order = "shuffle";
    std::uint64_t dataset_seed = 0;
    bool dataset_shared = false;
};

// The constructors' keyword arguments after the model's: the DataOptions, by name.
#define LINVAE_DATA_ARGS                                                                 \
    py::arg("noise") = "gaussian", py::arg("noise_df") = 0.0,                            \
        py::arg("factors") = "gaussian", py::arg("dataset_size") = 0,                    \
        py::arg("order") = "shuffle", py::arg("dataset_seed") = 0,                       \
        py::arg("dataset_shared") = false

inline ModelConfig model_config(std::int64_t N, const Params& p, double blowup,
                                const DataOptions& o) {
    ModelConfig c;
    static_cast<Params&>(c) = p;
    c.N = N;
    c.blowup = blowup;
    try {
        c.noise = NoiseLaw{family_named(o.noise), o.noise_df};
        c.noise.check();
        c.factors = family_named(o.factors);
        c.data.order = order_named(o.order);
    } catch (const std::invalid_argument& err) {
        throw py::value_error(err.what());
    }
    if (c.factors != Family::kGaussian && c.factors != Family::kRademacher)
        throw py::value_error("factors must be 'gaussian' or 'rademacher'");
    if (o.dataset_size < 0) throw py::value_error("dataset_size must be >= 0 (0: one-pass)");
    c.data.P = o.dataset_size;
    c.data.seed = o.dataset_seed;
    c.data.shared = o.dataset_shared;
    return c;
}

// run(beta, records, out, rec_start, threads): beta per step, records as increasing step
// offsets in [0, len(beta)], written at t index rec_start + k of the (S, T, ...) arrays of
// out, one per order parameter by its name.
template <class E>
void run(E& e, carray<double> beta, carray<std::int64_t> records, const py::dict& out,
         std::int64_t rec_start, int threads, std::optional<carray<double>> train_Bb,
         std::optional<carray<double>> train_Cab) {
    const auto& c = e.config();
    const py::ssize_t S = e.replicas();
    const std::int64_t n_steps = beta.ndim() == 1 ? beta.shape(0) : -1;
    if (n_steps < 0) throw py::value_error("beta must be one-dimensional");
    if (records.ndim() != 1) throw py::value_error("records must be one-dimensional");
    RecordSink sink;
    std::vector<carray<double>> arrays;  // keeps the arrays alive over the run
    py::ssize_t T = -1;
    for (const auto& o : kOrderParameters) {
        if (!out.contains(o.name)) throw py::value_error(std::string("out is missing ") + o.name);
        // a check, not a cast: a converted copy would take the records and be dropped
        if (!py::isinstance<carray<double>>(out[o.name]))
            throw py::value_error(std::string(o.name) + " must be a C-contiguous float64 array");
        auto a = py::reinterpret_borrow<carray<double>>(out[o.name]);
        if (!a.writeable()) throw py::value_error(std::string(o.name) + " is not writeable");
        if (T < 0) T = a.ndim() >= 2 ? a.shape(1) : 0;
        std::vector<py::ssize_t> shape{S, T};
        const auto sizes = axis_sizes(o.shape, c.M, c.Ms);
        for (int k = 0; k < axes(o.shape).rank; ++k) shape.push_back(sizes[static_cast<std::size_t>(k)]);
        expect_shape(a, std::move(shape), o.name);
        arrays.push_back(std::move(a));
    }
    for (std::size_t i = 0; i < arrays.size(); ++i) sink.out[i] = arrays[i].mutable_data();
    sink.T = T;
    sink.rec_start = rec_start;
    const std::int64_t n_rec = records.shape(0);
    const std::int64_t* rec = records.data();
    for (std::int64_t k = 0; k < n_rec; ++k)
        if (rec[k] < 0 || rec[k] > n_steps || (k > 0 && rec[k] <= rec[k - 1]))
            throw py::value_error("records must be increasing offsets in [0, len(beta)]");
    if (rec_start < 0 || rec_start + n_rec > T)
        throw py::value_error("records do not fit the output arrays");
    if (train_Bb.has_value() != train_Cab.has_value())
        throw py::value_error("give both train_Bb and train_Cab, or neither");
    if (train_Bb) {
        if (!c.data.finite())
            throw py::value_error("training moments need a finite dataset (dataset_size > 0)");
        expect_shape(*train_Bb, {S, T, c.M, c.M}, "train_Bb");
        expect_shape(*train_Cab, {S, T, c.M, c.M}, "train_Cab");
        sink.Bt = train_Bb->mutable_data();
        sink.Ct = train_Cab->mutable_data();
    }
    const double* b = beta.data();
    py::gil_scoped_release release;
    e.run(b, n_steps, rec, n_rec, sink, threads);
}

// (status code, steps taken) per replica.
template <class E>
auto status(E& e) {
    const int S = e.replicas();
    py::array_t<int> status(S);
    py::array_t<std::int64_t> steps(S);
    for (int r = 0; r < S; ++r) {
        status.mutable_at(r) = e.replica(r).status;
        steps.mutable_at(r) = e.replica(r).steps;
    }
    return py::make_tuple(status, steps);
}

// Entry k of a state dict for set_state, as a C-contiguous array of T of the given shape.
template <class T>
carray<T> state_entry(const py::dict& st, const char* k, std::vector<py::ssize_t> shape) {
    if (!st.contains(k)) throw py::value_error(std::string("state is missing ") + k);
    auto a = carray<T>::ensure(st[k]);
    if (!a) throw py::value_error(std::string("state entry ") + k + " has the wrong type");
    expect_shape(a, std::move(shape), k);
    return a;
}

}  // namespace linvae::bind
