// Python access to the model's declaration (linvae/model.hpp): the parameter struct that
// the engines and the ODEs take, and the names of its real parameters and of the order
// parameters, from which linvae's Python layer derives its own lists.
#include <string>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "linvae/model.hpp"

namespace py = pybind11;

namespace {

py::tuple dims(linvae::Shape s) {
    switch (s) {
        case linvae::Shape::kLatentFactor: return py::make_tuple("latent", "factor");
        case linvae::Shape::kSymmetric:
        case linvae::Shape::kLatentLatent: return py::make_tuple("latent", "latent2");
        case linvae::Shape::kLatent: return py::make_tuple("latent");
    }
    return py::make_tuple();
}

}  // namespace

void register_model(py::module_& m) {
    auto cls = py::class_<linvae::Params>(m, "Params",
                                          "The model's parameters as the compiled code takes them "
                                          "(linvae.Params builds it).")
                   .def(py::init<>())
                   .def_readwrite("M", &linvae::Params::M)
                   .def_readwrite("M_star", &linvae::Params::Ms)
                   .def_readwrite("rho", &linvae::Params::rho);
    py::list reals;
    for (const auto& p : linvae::kRealParams) {
        cls.def_readwrite(p.name, p.member);
        reals.append(p.name);
    }
    m.attr("REAL_PARAMS") = py::tuple(reals);
    py::list ops;
    for (const auto& o : linvae::kOrderParameters)
        ops.append(py::make_tuple(o.name, dims(o.shape), o.shape == linvae::Shape::kSymmetric));
    m.attr("ORDER_PARAMETERS") = py::tuple(ops);
}
