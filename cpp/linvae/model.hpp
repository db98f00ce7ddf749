// The model, declared once for the weights engine, the Gram chain and the ODEs: its
// parameters (Params) and its order parameters (the op:: table). Everything that lists
// them (the bindings, record sinks, the flat ODE layout) iterates over these tables, so a
// new scalar parameter is one line of LINVAE_REAL_PARAMS plus the physics that uses it.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

namespace linvae {

// The real scalar parameters besides the sizes M, M*, the strengths rho and beta(t)
// (which the engines take per step, the ODEs as a schedule): X(name, default). tau is
// the learning rate of W, tau_V and tau_D those of V and D (equal to tau unless given).
#define LINVAE_REAL_PARAMS(X) \
    X(eta, 1.0)               \
    X(lam, 0.0)               \
    X(tau, 0.5)               \
    X(tau_V, 0.5)             \
    X(tau_D, 0.5)

struct Params {
    int M = 1;
    int Ms = 1;
    std::vector<double> rho;  // length Ms
#define LINVAE_DECLARE_PARAM(name, value) double name = value;
    LINVAE_REAL_PARAMS(LINVAE_DECLARE_PARAM)
#undef LINVAE_DECLARE_PARAM
};

struct RealParam {
    const char* name;
    double Params::*member;
};

#define LINVAE_REAL_PARAM_ENTRY(name, value) RealParam{#name, &Params::name},
inline constexpr RealParam kRealParams[] = {LINVAE_REAL_PARAMS(LINVAE_REAL_PARAM_ENTRY)};
#undef LINVAE_REAL_PARAM_ENTRY
inline constexpr int kRealParamCount = static_cast<int>(sizeof(kRealParams) / sizeof(kRealParams[0]));

// The order parameters, in the order of records and of the flat ODE state:
// X(name, shape). Shapes are in latents (M) and factors (M*); a symmetric M x M matrix is
// recorded in full and stored in the flat ODE state as its upper triangle.
enum class Shape { kLatentFactor, kSymmetric, kLatentLatent, kLatent };

#define LINVAE_ORDER_PARAMETERS(X) \
    X(m, kLatentFactor)            \
    X(d, kLatentFactor)            \
    X(Q, kSymmetric)               \
    X(E, kSymmetric)               \
    X(R, kLatentLatent)            \
    X(D, kLatent)

namespace op {
#define LINVAE_OP_ENUM(name, shape) name,
enum : int { LINVAE_ORDER_PARAMETERS(LINVAE_OP_ENUM) count };
#undef LINVAE_OP_ENUM
}  // namespace op

struct OrderParameter {
    const char* name;
    Shape shape;
};

#define LINVAE_OP_ENTRY(name, shape) OrderParameter{#name, Shape::shape},
inline constexpr OrderParameter kOrderParameters[op::count] = {
    LINVAE_ORDER_PARAMETERS(LINVAE_OP_ENTRY)};
#undef LINVAE_OP_ENTRY

// The axes of one order parameter's array, by the names the datasets give them: "factor"
// has M* entries, "latent" and "latent2" M. The one place that maps a Shape to axes.
struct Axes {
    int rank;
    std::array<const char*, 2> names;
};

constexpr Axes axes(Shape s) {
    switch (s) {
        case Shape::kLatentFactor: return {2, {"latent", "factor"}};
        case Shape::kSymmetric:
        case Shape::kLatentLatent: return {2, {"latent", "latent2"}};
        case Shape::kLatent: return {1, {"latent", nullptr}};
    }
    return {0, {nullptr, nullptr}};
}

// The sizes of those axes for M latents and Ms factors (1 past the rank).
constexpr std::array<std::int64_t, 2> axis_sizes(Shape s, int M, int Ms) {
    const Axes a = axes(s);
    std::array<std::int64_t, 2> sizes{1, 1};
    for (std::size_t k = 0; k < static_cast<std::size_t>(a.rank); ++k)
        sizes[k] = std::string_view(a.names[k]) == "factor" ? Ms : M;
    return sizes;
}

// Entries of the full (row-major) array of one order parameter.
constexpr std::int64_t full_size(Shape s, int M, int Ms) {
    const auto n = axis_sizes(s, M, Ms);
    return n[0] * n[1];
}

// Entries in the flat ODE state: a symmetric matrix keeps its upper triangle.
inline int flat_size(Shape s, int M, int Ms) {
    return s == Shape::kSymmetric ? M * (M + 1) / 2 : static_cast<int>(full_size(s, M, Ms));
}

// Where the recorded order parameters go: row-major arrays of shape (S, T, ...), one per
// order parameter (by op::), owned by the caller; record k of a run is written at t index
// rec_start + k. Bt, Ct (S, T, M, M), if not null, take the training set's moments.
struct RecordSink {
    std::array<double*, op::count> out{};
    std::int64_t T = 0;          // length of the t axis of the arrays
    std::int64_t rec_start = 0;  // t index of this run's first record
    double* Bt = nullptr;
    double* Ct = nullptr;

    // Where record k of replica r goes, for M latents and Ms factors, by op::.
    std::array<double*, op::count> row(int r, std::int64_t k, int M, int Ms) const {
        const std::int64_t i = static_cast<std::int64_t>(r) * T + rec_start + k;
        std::array<double*, op::count> at{};
        for (int o = 0; o < op::count; ++o)
            at[static_cast<std::size_t>(o)] =
                out[static_cast<std::size_t>(o)] + i * full_size(kOrderParameters[o].shape, M, Ms);
        return at;
    }
};

}  // namespace linvae
