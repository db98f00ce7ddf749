// The compiled core, linvae._core: one register_* file per concept.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void register_engine(py::module_& m);
void register_rng(py::module_& m);
void register_info(py::module_& m);

PYBIND11_MODULE(_core, m) {
    m.doc() = "linvae's compiled core: one-pass SGD engine and its random numbers";
    register_engine(m);
    register_rng(m);
    register_info(m);
}
