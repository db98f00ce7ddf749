// The compiled core, linvae._core: one register_* file per concept.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void register_model(py::module_& m);
void register_engine(py::module_& m);
void register_gram(py::module_& m);
void register_rng(py::module_& m);
void register_info(py::module_& m);
void register_ode(py::module_& m);

PYBIND11_MODULE(_core, m) {
    m.doc() = "linvae's compiled core: one-pass SGD engine, the Gram chain, and their random numbers";
    register_model(m);
    register_engine(m);
    register_gram(m);
    register_rng(m);
    register_info(m);
    register_ode(m);
}
