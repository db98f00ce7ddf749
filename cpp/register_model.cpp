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
    const linvae::Axes a = linvae::axes(s);
    py::list names;
    for (int k = 0; k < a.rank; ++k) names.append(a.names[static_cast<std::size_t>(k)]);
    return py::tuple(names);
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
