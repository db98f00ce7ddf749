// The distributions of the data beyond the Gaussian model (docs/model.md#data-families):
// the background noise n and the factors c, each scaled to mean 0 and variance 1.
//
// Gaussian noise keeps the ziggurat of rng.hpp (and its fused, vectorised path); the other
// families are drawn from lane 0 of the same stream, one 64-bit word per draw where the
// family allows it, so a trajectory stays fixed by (seed, replica) whatever the threads.
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "normal_f32.hpp"
#include "rng.hpp"

namespace linvae {

enum class Family : int { kGaussian = 0, kRademacher = 1, kLaplace = 2, kUniform = 3, kStudentT = 4 };
inline constexpr int kFamilyCount = 5;
// The names Python uses, indexed by Family.
inline constexpr const char* kFamilyNames[kFamilyCount] = {"gaussian", "rademacher", "laplace",
                                                           "uniform", "student_t"};

inline Family family_named(const std::string& name) {
    for (int k = 0; k < kFamilyCount; ++k)
        if (name == kFamilyNames[k]) return static_cast<Family>(k);
    throw std::invalid_argument("unknown distribution family '" + name + "'");
}

// A family and, for Student-t, its degrees of freedom nu > 2 (the variance is nu / (nu - 2),
// so nu <= 2 has no unit-variance version), with the constants of its draws.
// Uniform on (0, 1), never 0 or 1: the 52 high bits of a word, centred in their cell.
inline double open_uniform(std::uint64_t bits) {
    return (Xoshiro256pp::to_double(bits >> 12) + 0.5) * 0x1.0p-52;
}

struct NoiseLaw {
    Family family = Family::kGaussian;
    double df = 0.0;
    // Student-t: Marsaglia & Tsang's d = nu/2 - 1/3 and c = 1 / sqrt(9 d), and the scale
    // (nu - 2) / 2 of 1 / G
    double gd = 0.0, gc = 0.0, tscale = 0.0;

    NoiseLaw() = default;
    NoiseLaw(Family f, double nu) : family(f), df(nu) {
        if (f == Family::kStudentT && std::isfinite(df) && df > 2.0) {
            gd = 0.5 * df - 1.0 / 3.0;
            gc = 1.0 / std::sqrt(9.0 * gd);
            tscale = 0.5 * (df - 2.0);
        }
    }

    void check() const {
        if (family == Family::kStudentT && !(std::isfinite(df) && df > 2.0))
            throw std::invalid_argument("student_t noise needs a finite df > 2");
        if (family != Family::kStudentT && df != 0.0)
            throw std::invalid_argument("df applies to student_t only");
    }
};

// Exponential ziggurat tables (Marsaglia & Tsang 2000, 256 layers), in the layout of the
// normal one: a 64-bit word gives the layer (8 bits), a sign (1 bit, for Laplace) and a
// 52-bit abscissa; ~98.9% of draws are accepted at once.
struct ExpZigguratTables {
    static constexpr int kLayers = 256;
    static constexpr std::uint64_t kIdxMask = kLayers - 1;
    static constexpr std::uint64_t kSignBit = std::uint64_t{1} << 8;
    static constexpr int kAbsShift = 12;
    static constexpr double r = 7.69711747013104972;     // start of the tail
    static constexpr double v = 3.949659822581572e-3;    // area of each layer
    std::array<std::uint64_t, kLayers> k{};
    std::array<double, kLayers> w{}, f{};

    ExpZigguratTables() {
        const double m = 0x1.0p52;
        double de = r, te = r;
        const double q = v / std::exp(-de);
        k[0] = static_cast<std::uint64_t>((de / q) * m);
        k[1] = 0;
        w[0] = q / m;
        w[kLayers - 1] = de / m;
        f[0] = 1.0;
        f[kLayers - 1] = std::exp(-de);
        for (int i = kLayers - 2; i >= 1; --i) {
            de = -std::log(v / de + std::exp(-de));
            k[i + 1] = static_cast<std::uint64_t>((de / te) * m);
            te = de;
            f[i] = std::exp(-de);
            w[i] = de / m;
        }
    }

    static const ExpZigguratTables& get() {
        static const ExpZigguratTables tables;
        return tables;
    }
};

// Exp(1) from the word `bits` (layer and abscissa; its sign bit is left to the caller),
// and fresh words of g when the word falls outside its layer's rectangle.
inline double exponential(Xoshiro256pp& g, std::uint64_t bits) {
    using Z = ExpZigguratTables;
    const Z& z = Z::get();
    for (;;) {
        const auto i = static_cast<unsigned>(bits & Z::kIdxMask);
        const std::uint64_t a = bits >> Z::kAbsShift;
        const double x = Xoshiro256pp::to_double(a) * z.w[i];
        if (a < z.k[i]) return x;
        if (i == 0) return Z::r - std::log(open_uniform(g.next()));  // the tail, memoryless
        if (z.f[i] + open_uniform(g.next()) * (z.f[i - 1] - z.f[i]) < std::exp(-x)) return x;
        bits = g.next();
    }
}


// Gamma(a, 1) for a >= 1, with d = a - 1/3 and c = 1 / sqrt(9 d): Marsaglia & Tsang
// (2000), a normal and a uniform per try, the squeeze accepting ~98% of tries without a
// logarithm.
inline double gamma_mt(Xoshiro256pp& g, double d, double c) {
    const ZigguratTables& z = ZigguratTables::get();
    for (;;) {
        const double x = standard_normal(g, z);
        double v = 1.0 + c * x;
        if (v <= 0.0) continue;
        v = v * v * v;
        const double u = open_uniform(g.next());
        const double x2 = x * x;
        if (u < 1.0 - 0.0331 * x2 * x2) return d * v;
        if (std::log(u) < 0.5 * x2 + d * (1.0 - v + std::log(v))) return d * v;
    }
}

// x with its sign bit flipped when `flip` is not 0, without a branch (a branch on a random
// bit mispredicts half the time).
inline double with_sign_of(double x, std::uint64_t flip) {
    std::uint64_t u;
    std::memcpy(&u, &x, sizeof u);
    u ^= static_cast<std::uint64_t>(flip != 0) << 63;
    std::memcpy(&x, &u, sizeof x);
    return x;
}

// One draw of a family with mean 0 and variance 1.
//   rademacher: +-1, the top bit of a word;
//   laplace:   +-E / sqrt(2), E ~ Exp(1) from the exponential ziggurat;
//   uniform:   on (-sqrt(3), sqrt(3));
//   student_t: Z sqrt((nu - 2) / (2 G)), Z ~ N(0, 1), G ~ Gamma(nu / 2), i.e. a t_nu
//              variate times sqrt((nu - 2) / nu).
inline double draw_unit(Xoshiro256pp& g, const NoiseLaw& law) {
    switch (law.family) {
        case Family::kLaplace: {
            const std::uint64_t w = g.next();
            return with_sign_of(exponential(g, w) * 0.70710678118654752,
                                w & ExpZigguratTables::kSignBit);
        }
        case Family::kUniform:
            return (2.0 * open_uniform(g.next()) - 1.0) * 1.7320508075688772;
        case Family::kStudentT: {
            const double x = standard_normal(g, ZigguratTables::get());
            return x * std::sqrt(law.tscale / gamma_mt(g, law.gd, law.gc));
        }
        case Family::kRademacher:
            return (g.next() >> 63) ? -1.0 : 1.0;
        case Family::kGaussian:
            break;
    }
    return standard_normal(g, ZigguratTables::get());
}

// The next n noise values of the stream in the weights' type: the Gaussian and Rademacher
// ones through their own fills (rng.hpp), the others a draw at a time.
template <class T>
void fill_noise(NormalStream& s, const NoiseLaw& law, T* out, std::size_t n) {
    switch (law.family) {
        case Family::kGaussian:
            return fill_normals(s, out, n);
        case Family::kRademacher:
            return s.fill_signs(out, n);
        default: {
            Xoshiro256pp& g = s.lane(0);
            for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<T>(draw_unit(g, law));
        }
    }
}

// One factor c_f: Gaussian (the model) or Rademacher (+-1, the top bit of a word).
inline double draw_factor(NormalStream& s, Family family) {
    if (family == Family::kGaussian) return s.next();
    return draw_unit(s.lane(0), NoiseLaw{family, 0.0});
}

}  // namespace linvae
