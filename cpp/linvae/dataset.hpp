// Multi-epoch SGD on a finite dataset of P samples (docs/model.md#finite-datasets).
//
// No sample is stored: sample mu is the draw of the random streams keyed by (data key,
// mu), regenerated bit for bit at every visit, so memory is that of one-pass SGD for any
// P. The order of visits is "cycle" (mu = s mod P) or "shuffle": in epoch e, a pseudo-
// random permutation of [0, P) keyed by (seed, replica, e) (VisitOrder).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "rng.hpp"

namespace linvae {

enum class Order : int { kShuffle = 0, kCycle = 1 };
inline constexpr const char* kOrderNames[2] = {"shuffle", "cycle"};

inline Order order_named(const std::string& name) {
    for (int k = 0; k < 2; ++k)
        if (name == kOrderNames[k]) return static_cast<Order>(k);
    throw std::invalid_argument("unknown dataset order '" + name + "'");
}

// Tags that keep the dataset's keys apart from every other use of hash_key.
enum DataTag : std::uint64_t { kDataTag = 0x64617461ULL, kOrderTag = 0x6f726472ULL };

struct DatasetSpec {
    std::int64_t P = 0;            // 0: one-pass SGD, a fresh sample every step
    Order order = Order::kShuffle;
    std::uint64_t seed = 0;        // the dataset's seed
    bool shared = false;           // every replica trains on the dataset of replica 0

    bool finite() const { return P > 0; }

    // The key of replica r's dataset: its teacher and its samples.
    std::uint64_t key(int r) const {
        return hash_key(seed, kDataTag, shared ? 0 : static_cast<std::uint64_t>(r), 0);
    }
};

// A permutation of [0, 2^(2h)) with h-bit halves: a balanced Feistel network of eight
// rounds whose round function is a keyed SplitMix64 hash.
inline std::uint64_t feistel(std::uint64_t v, int h, std::uint64_t key) {
    const std::uint64_t mask = (std::uint64_t{1} << h) - 1;
    std::uint64_t L = v >> h, R = v & mask;
    for (std::uint64_t round = 0; round < 8; ++round) {
        const std::uint64_t F = hash_key(key, round, R, 0) & mask;
        const std::uint64_t T = L ^ F;
        L = R;
        R = T;
    }
    return (L << h) | R;
}

// The order of visits of one replica: the sample of step s. A "shuffle" epoch of up to
// kExplicit samples is a Fisher-Yates permutation drawn from the epoch's key, kept until
// the epoch ends (4 bytes per sample, regenerated from the key after a restart); a
// larger one is a Feistel permutation of the next even power of two, walked until it
// lands in [0, P), evaluated in O(1) time and memory. Tiny Feistel networks are far
// from uniform, hence the explicit permutation below the threshold.
class VisitOrder {
public:
    static constexpr std::int64_t kExplicit = std::int64_t{1} << 22;

    std::int64_t at(const DatasetSpec& ds, std::uint64_t seed, int r, std::int64_t s) {
        const std::int64_t pos = s % ds.P;
        if (ds.order == Order::kCycle || ds.P == 1) return pos;
        const std::int64_t epoch = s / ds.P;
        const std::uint64_t key =
            hash_key(seed, kOrderTag, static_cast<std::uint64_t>(r), static_cast<std::uint64_t>(epoch));
        if (ds.P > kExplicit) return feistel_walk(ds.P, key, pos);
        if (epoch != epoch_ || static_cast<std::int64_t>(perm_.size()) != ds.P) {
            draw_permutation(ds.P, key);
            epoch_ = epoch;
        }
        return perm_[static_cast<std::size_t>(pos)];
    }

private:
    std::int64_t epoch_ = -1;
    std::vector<std::uint32_t> perm_;

    void draw_permutation(std::int64_t P, std::uint64_t key) {
        perm_.resize(static_cast<std::size_t>(P));
        for (std::int64_t i = 0; i < P; ++i) perm_[static_cast<std::size_t>(i)] = static_cast<std::uint32_t>(i);
        Xoshiro256pp g(key);
        for (std::int64_t i = P - 1; i > 0; --i) {
            // j uniform on [0, i]: masked words, rejected above i (no modulo bias)
            const auto n = static_cast<std::uint64_t>(i);
            std::uint64_t mask = n;
            for (int k = 1; k < 64; k *= 2) mask |= mask >> k;
            std::uint64_t j;
            do j = g.next() & mask;
            while (j > n);
            std::swap(perm_[static_cast<std::size_t>(i)], perm_[static_cast<std::size_t>(j)]);
        }
    }

    static std::int64_t feistel_walk(std::int64_t P, std::uint64_t key, std::int64_t pos) {
        int h = 1;
        while ((std::uint64_t{1} << (2 * h)) < static_cast<std::uint64_t>(P)) ++h;
        // cycle walking: the orbit of pos leaves [0, P) only to return, so this is a
        // permutation of [0, P); fewer than 4 rounds on average, since 2^(2h) < 4P
        std::uint64_t v = static_cast<std::uint64_t>(pos);
        do v = feistel(v, h, key);
        while (v >= static_cast<std::uint64_t>(P));
        return static_cast<std::int64_t>(v);
    }
};

}  // namespace linvae
