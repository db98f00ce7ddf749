// Python access to the engine's normal generator, for its statistical tests and for the
// generator-only floor in the benchmarks.
#include <cstdint>
#include <stdexcept>
#include <string>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "linvae/noise.hpp"
#include "linvae/normal_f32.hpp"
#include "linvae/rng.hpp"

namespace py = pybind11;
using linvae::NormalStream;

namespace {

// The next normals of the stream in the array's dtype (float32: its own float normals).
template <class T>
void fill_array(NormalStream& s, py::array_t<T, py::array::c_style> out) {
    if (out.ndim() != 1) throw py::value_error("out must be one-dimensional");
    T* p = out.mutable_data();
    const auto n = static_cast<std::size_t>(out.shape(0));
    py::gil_scoped_release release;
    linvae::fill_normals(s, p, n);
}

template <class T>
py::array_t<T> new_normals(NormalStream& s, std::int64_t n) {
    if (n < 0) throw py::value_error("n must be >= 0");
    py::array_t<T> out(n);
    linvae::fill_normals(s, out.mutable_data(), static_cast<std::size_t>(n));
    return out;
}

}  // namespace

void register_rng(py::module_& m) {
    py::class_<NormalStream>(m, "NormalStream",
                             "Standard normals of the stream (seed, replica, stream_id): "
                             "xoshiro256++ lanes and a 2048-layer ziggurat (float64: one "
                             "64-bit word per normal; float32: one 32-bit half).")
        .def(py::init<std::uint64_t, std::uint64_t, std::uint64_t>(), py::arg("seed"),
             py::arg("replica") = 0, py::arg("stream_id") = 0)
        // noconvert on both: a converted copy would be filled and thrown away, and a
        // float64 array must never reach the float32 overload (or the reverse).
        .def("fill", &fill_array<double>, py::arg("out").noconvert(),
             "Fill a contiguous float64 array in place.")
        .def("fill", &fill_array<float>, py::arg("out").noconvert(),
             "Fill a contiguous float32 array in place (two normals per 64-bit word; "
             "not the float64 stream rounded).")
        .def("normal", &new_normals<double>, py::arg("n"), "A new array of n standard normals.")
        .def("normal32", &new_normals<float>, py::arg("n"),
             "A new float32 array of n standard normals (as fill on float32).")
        .def("signs",
             [](NormalStream& s, std::int64_t n) {
                 if (n < 0) throw py::value_error("n must be >= 0");
                 py::array_t<double> out(n);
                 s.fill_signs(out.mutable_data(), static_cast<std::size_t>(n));
                 return out;
             },
             py::arg("n"), "A new array of n Rademacher signs (+-1).")
        .def("draw",
             [](NormalStream& s, const std::string& family, std::int64_t n, double df) {
                 if (n < 0) throw py::value_error("n must be >= 0");
                 linvae::NoiseLaw law;
                 try {
                     law = linvae::NoiseLaw{linvae::family_named(family), df};
                     law.check();
                 } catch (const std::invalid_argument& err) {
                     throw py::value_error(err.what());
                 }
                 py::array_t<double> out(n);
                 double* p = out.mutable_data();
                 py::gil_scoped_release release;
                 linvae::fill_noise(s, law, p, static_cast<std::size_t>(n));
                 return out;
             },
             py::arg("family"), py::arg("n"), py::arg("df") = 0.0,
             "A new array of n draws of a family of unit variance (the engine's noise n), "
             "df the degrees of freedom of student_t.")
        .def("uniform_bits",
             [](NormalStream& s, std::int64_t n) {
                 if (n < 0) throw py::value_error("n must be >= 0");
                 py::array_t<std::uint64_t> out(n);
                 auto* p = out.mutable_data();
                 for (std::int64_t i = 0; i < n; ++i) p[i] = s.lane(0).next();
                 return out;
             },
             py::arg("n"), "Raw 64-bit words of lane 0 (for tests of the bit generator).");
}
