// One-pass SGD for the linear VAE (docs/model.md#data to #order-parameters, and
// docs/model.md#initial-states), S replicas at once.
//
// Each replica owns its teacher W*, weights W, V, D, the last sample x and its random
// streams; replicas are independent and run in parallel over OpenMP threads. Rows are
// processed in fixed blocks of kBlock: each block has its own noise stream and its sums
// are combined in block order, so a trajectory is fixed by (seed, replica) alone.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <Eigen/Dense>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "dataset.hpp"
#include "kernel.hpp"
#include "model.hpp"
#include "noise.hpp"
#include "rng.hpp"
#include "simd.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace linvae {

constexpr std::int64_t kBlock = 4096;

// Stream ids within a replica: weights initialisation, the factors c, then one per block.
// A finite dataset keys sample mu's streams by (data key, mu, id), and its teacher's by
// (data key, kTeacherSample, kInitStream), which no sample index reaches.
enum StreamId : std::uint64_t { kInitStream = 0, kSignalStream = 1, kFirstNoiseStream = 2 };
inline constexpr std::uint64_t kTeacherSample = ~std::uint64_t{0};

// Why a replica stopped (kRunning: it did not). kIndefinite is the Gram chain's own: its
// Gram matrix is not positive semidefinite, so it is the Gram matrix of no vectors.
enum Status : int { kRunning = 0, kNonFinite = 1, kNonPositiveD = 2, kBlowUp = 3, kIndefinite = 4 };
inline constexpr int kStatusCount = 5;
// What each status means, in the words of the divergence reports.
inline constexpr const char* kStatusReasons[kStatusCount] = {
    "", "non-finite value", "D <= 0", "blow-up", "Gram matrix not positive semidefinite"};

// The model's parameters (model.hpp) and what a simulation adds: the input dimension,
// the runaway bound and the data options.
struct ModelConfig : Params {
    std::int64_t N = 1;
    double blowup = 1e8;  // a diagonal of Q or E beyond this is a runaway
    NoiseLaw noise;                      // of the background noise n
    Family factors = Family::kGaussian;  // of the factors c: Gaussian or Rademacher
    DatasetSpec data;                    // P = 0: one-pass SGD
};

// body(r) for every replica r < S, replicas in parallel on up to `threads` threads (each
// replica is a sequential chain, taken by one thread).
template <class F>
void for_each_replica(int S, int threads, F&& body) {
#ifdef _OPENMP
    const int nt = std::max(1, std::min(threads, S));
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int r = 0; r < S; ++r) body(r);
#else
    (void)threads;
    for (int r = 0; r < S; ++r) body(r);
#endif
}

// How many threads share the blocks of a pass (one replica at large N). A pass ends at
// a barrier every step, so when another process holds one of the team's cores, the whole
// team waits for that thread's next time slice: on a loaded machine a team of two was up
// to 7 times slower than one thread. So the size is chosen by measurement. Steps run on
// the size that was faster; now and then a short probe tries the other size. A probe of
// the team that is clearly faster is confirmed over a longer window before it is kept: a
// thread woken for a probe gets a share of a busy core that it does not keep. Windows grow to
// 2 s while the choice stands, and are at least kCostRatio probes long, so probing costs
// a few per cent at most. A run starts on one thread, which is never much slower. Sums
// are added in block order, so the size never changes a trajectory.
class TeamTuner {
public:
    void start(int threads) {
        if (threads == threads_) return;  // keep what was learnt across runs
        threads_ = threads;
        best_ = 1;
        phase_ = kWarmUp;
        window_ = kFirstWindow;
        open_window();
    }
    int size() const { return phase_ == kProbing ? other() : best_; }

    void step_done() {
        ++steps_;
        const double elapsed = seconds_since(start_);
        const double per_step = elapsed / static_cast<double>(steps_);
        switch (phase_) {
            case kWarmUp:  // the first steps touch fresh pages: no measure of the size
                if (elapsed < window_) return;
                phase_ = kExploit;
                break;
            case kExploit:
                if (elapsed < window_) return;
                best_per_step_ = per_step;
                phase_ = threads_ > 1 ? kProbing : kExploit;
                break;
            case kProbing:
                if (elapsed < kProbe) return;
                // a probe of the team is optimistic (its woken threads get a share of a
                // busy core that they do not keep), a probe of one thread is not
                if (per_step < (other() > 1 ? kMargin : kMargin2) * best_per_step_) {
                    last_per_step_ = best_per_step_;
                    best_ = other();
                    phase_ = kConfirming;
                    window_ = kConfirmRatio * std::max(kProbe, per_step);
                } else {
                    phase_ = kExploit;
                    window_ = next_window(per_step);
                }
                break;
            case kConfirming:
                if (elapsed < window_) return;
                if (per_step > kMargin2 * last_per_step_) {  // not faster after all: back
                    best_ = other();
                    best_per_step_ = last_per_step_;
                    window_ = next_window(per_step);
                } else {
                    best_per_step_ = per_step;
                    window_ = std::max(kFirstWindow, kCostRatio * std::max(kProbe, last_per_step_));
                }
                phase_ = kExploit;
                break;
        }
        open_window();
    }

private:
    enum Phase { kWarmUp, kExploit, kProbing, kConfirming };
    // A probe spans several time slices of the scheduler (a few ms each), so that a
    // core shared with another process shows in it.
    static constexpr double kFirstWindow = 0.02, kMaxWindow = 2.0, kProbe = 0.015;
    static constexpr double kMargin = 0.8;         // a probe of the team must be clearly
    static constexpr double kMargin2 = 0.95;       // faster, then faster over a window
    static constexpr double kConfirmRatio = 10.0;  // that window, in probes
    static constexpr double kCostRatio = 40.0;     // an exploit window, in probes
    using Clock = std::chrono::steady_clock;
    int threads_ = 0, best_ = 1;
    Phase phase_ = kWarmUp;
    double window_ = kFirstWindow, best_per_step_ = 0.0, last_per_step_ = 0.0;
    std::int64_t steps_ = 0;
    Clock::time_point start_{};

    int other() const { return best_ == 1 ? threads_ : 1; }
    // after a probe of the slower size that took slower_per_step a step
    double next_window(double slower_per_step) const {
        return std::max(std::min(2 * window_, kMaxWindow),
                        kCostRatio * std::max(kProbe, slower_per_step));
    }
    void open_window() {
        steps_ = 0;
        start_ = Clock::now();
    }
    static double seconds_since(Clock::time_point t0) {
        return std::chrono::duration<double>(Clock::now() - t0).count();
    }
};

// Storage for the weights: large arrays on 2 MiB pages where the kernel allows it
// (Linux transparent huge pages in "madvise" mode). A step walks all of them, and with
// 4 KiB pages every 512 rows of each array cost a TLB miss. Successive arrays start at
// different offsets from the page (multiples of 1088 bytes): arrays that all start on a
// page boundary put W_i, V_i and x_i at equal addresses modulo 4 KiB, which the CPU
// mistakes for dependencies between their loads and stores.
template <class T>
struct HugePageAllocator {
    using value_type = T;
    static constexpr std::size_t kHuge = std::size_t{1} << 21;
    static constexpr std::size_t kMin = kHuge / 8;  // smaller arrays: the usual allocator
    HugePageAllocator() = default;
    template <class U>
    HugePageAllocator(const HugePageAllocator<U>&) {}
#if defined(_WIN32)  // no std::aligned_alloc there: the usual allocator
    T* allocate(std::size_t n) { return std::allocator<T>().allocate(n); }
    void deallocate(T* p, std::size_t n) { std::allocator<T>().deallocate(p, n); }
#else
    T* allocate(std::size_t n) {
        const std::size_t bytes = n * sizeof(T);
        if (bytes < kMin) return std::allocator<T>().allocate(n);
        static std::atomic<unsigned> count{0};
        const std::size_t offset = 64 + 1088 * (count++ % 8);  // 64: room for the base
        const std::size_t rounded = (bytes + offset + kHuge - 1) / kHuge * kHuge;
        void* base = std::aligned_alloc(kHuge, rounded);
        if (base == nullptr) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
        madvise(base, rounded, MADV_HUGEPAGE);  // a hint: without it, ordinary pages
#endif
        char* p = static_cast<char*>(base) + offset;
        std::memcpy(p - sizeof(void*), &base, sizeof(void*));
        return reinterpret_cast<T*>(p);
    }
    void deallocate(T* p, std::size_t n) {
        if (n * sizeof(T) < kMin) return std::allocator<T>().deallocate(p, n);
        void* base;
        std::memcpy(&base, reinterpret_cast<char*>(p) - sizeof(void*), sizeof(void*));
        std::free(base);
    }
#endif
    template <class U>
    bool operator==(const HugePageAllocator<U>&) const { return true; }
    template <class U>
    bool operator!=(const HugePageAllocator<U>&) const { return false; }
};

template <class Real>
using Weights = std::vector<Real, HugePageAllocator<Real>>;

template <class Real>
struct Replica {
    Weights<Real> W, V, Ws, x;
    std::vector<double> D, Q;  // D and Q of the current state (Q summed exactly each pass)
    PendingUpdate pending;
    bool has_pending = false;
    std::vector<NormalStream> noise;
    NormalStream signal;
    std::int64_t steps = 0;
    int status = kRunning;
    std::vector<double> slots;  // per-block sums of the current pass (nblocks x layout.size)
    std::vector<double> sums;   // their total, added in block order
    VisitOrder order;           // which sample each step visits, on a finite dataset
};

// A replica's complete state, for checkpoints: the weights in their own dtype, the
// pending update and the generators' words. get_state and set_state of the bindings copy
// exactly what these name, so that a restored replica continues bit for bit.
using StateShape = std::vector<std::int64_t>;

// The generator words of a replica: its noise streams (blocks x lanes x 4 words), then
// its factor stream (lanes x 4), packed for a copy and unpacked by restore.
template <class Real>
struct StreamWords {
    static constexpr int L = NormalStream::kLanes;
    std::vector<std::uint64_t> noise, signal;

    explicit StreamWords(const Replica<Real>& rep) {
        for (const auto& stream : rep.noise) append(stream, noise);
        append(rep.signal, signal);
    }
    void restore(Replica<Real>& rep) const {
        const std::uint64_t* p = noise.data();
        for (auto& stream : rep.noise) p = set(stream, p);
        set(rep.signal, signal.data());
    }

private:
    static void append(const NormalStream& g, std::vector<std::uint64_t>& out) {
        for (int l = 0; l < L; ++l) out.insert(out.end(), g.lane(l).s, g.lane(l).s + 4);
    }
    static const std::uint64_t* set(NormalStream& g, const std::uint64_t* p) {
        for (int l = 0; l < L; ++l)
            for (int w = 0; w < 4; ++w) g.lane(l).s[w] = *p++;
        return p;
    }
};

// f(name, data, shape) for each array of the state (data: Real*, double* or
// std::uint64_t*), the generators through `words`.
template <class Real, class F>
void visit_state_arrays(const ModelConfig& c, Replica<Real>& rep, StreamWords<Real>& words,
                        F&& f) {
    const std::int64_t N = c.N, M = c.M, Ms = c.Ms, L = NormalStream::kLanes;
    const auto nb = static_cast<std::int64_t>(rep.noise.size());
    f("W", rep.W.data(), StateShape{N, M});
    f("V", rep.V.data(), StateShape{N, M});
    f("W_star", rep.Ws.data(), StateShape{N, Ms});
    f("x", rep.x.data(), StateShape{N});
    f("D", rep.D.data(), StateShape{M});
    f("Q", rep.Q.data(), StateShape{M, M});
    PendingUpdate& up = rep.pending;
    f("b", up.b.data(), StateShape{M});
    f("wdiag", up.wdiag.data(), StateShape{M});
    f("u", up.u.data(), StateShape{M});
    f("cW", up.cW.data(), StateShape{M});
    f("cV", up.cV.data(), StateShape{M});
    f("noise_streams", words.noise.data(), StateShape{nb, L, 4});
    f("signal_stream", words.signal.data(), StateShape{L, 4});
}

// f(name, value) for each scalar of the state, by reference.
template <class Real, class F>
void visit_state_scalars(Replica<Real>& rep, F&& f) {
    f("dec1", rep.pending.dec1);
    f("vdec", rep.pending.vdec);
    f("has_pending", rep.has_pending);
    f("steps", rep.steps);
    f("status", rep.status);
}

template <class Real>
class Engine {
public:
    Engine(ModelConfig cfg, std::uint64_t seed, int replicas)
        : cfg_(std::move(cfg)), seed_(seed), L_(cfg_.M, cfg_.Ms) {
        if (cfg_.N < 1 || cfg_.M < 1 || cfg_.Ms < 1 || cfg_.M > kMaxLatents ||
            cfg_.Ms > kMaxLatents || replicas < 1 ||
            static_cast<int>(cfg_.rho.size()) != cfg_.Ms)
            throw std::invalid_argument("Engine: inconsistent sizes (validate in Python first)");
        cfg_.noise.check();
        const std::int64_t N = cfg_.N;
        const std::int64_t nblocks = (N + kBlock - 1) / kBlock;
        reps_.resize(static_cast<std::size_t>(replicas));
        for (int r = 0; r < replicas; ++r) {
            Replica<Real>& rep = reps_[static_cast<std::size_t>(r)];
            rep.W.assign(static_cast<std::size_t>(N * cfg_.M), Real(0));
            rep.V.assign(static_cast<std::size_t>(N * cfg_.M), Real(0));
            rep.Ws.assign(static_cast<std::size_t>(N * cfg_.Ms), Real(0));
            rep.x.assign(static_cast<std::size_t>(N), Real(0));
            rep.D.assign(static_cast<std::size_t>(cfg_.M), 1.0);
            rep.Q.assign(static_cast<std::size_t>(cfg_.M * cfg_.M), 0.0);
            rep.signal = NormalStream(seed, static_cast<std::uint64_t>(r), kSignalStream);
            rep.slots.assign(static_cast<std::size_t>(nblocks * L_.size), 0.0);
            rep.sums.assign(static_cast<std::size_t>(L_.size), 0.0);
            rep.noise.reserve(static_cast<std::size_t>(nblocks));
            for (std::int64_t blk = 0; blk < nblocks; ++blk)
                rep.noise.emplace_back(seed, static_cast<std::uint64_t>(r),
                                       kFirstNoiseStream + static_cast<std::uint64_t>(blk));
        }
    }

    const ModelConfig& config() const { return cfg_; }
    int replicas() const { return static_cast<int>(reps_.size()); }
    Replica<Real>& replica(int r) { return reps_.at(static_cast<std::size_t>(r)); }

    // The authors' start: W, V i.i.d. N(0, 1), D = 1, W* a random orthonormal frame * sqrt(N).
    void init_random(int threads) {
        for_each_replica(replicas(), threads, [&](int r) {
            Replica<Real>& rep = reps_[static_cast<std::size_t>(r)];
            NormalStream g(seed_, static_cast<std::uint64_t>(r), kInitStream);
            fill_teacher(rep, r, g);
            orthonormalise(rep, cfg_.Ms);
            fill_normal(g, rep.W);
            fill_normal(g, rep.V);
            reset_state(rep, std::vector<double>(static_cast<std::size_t>(cfg_.M), 1.0));
        });
    }

    // docs/model.md#initial-states: [W*, W, V] = sqrt(N) F S, with F an orthonormal N x K
    // frame and S a square root of the Gram matrix G (S^T S = G, first M* columns
    // orthonormal).
    void init_prescribed(const Eigen::MatrixXd& S, const std::vector<double>& D0, int threads) {
        const int K = cfg_.Ms + 2 * cfg_.M;
        if (S.rows() != K || S.cols() != K || static_cast<int>(D0.size()) != cfg_.M)
            throw std::invalid_argument("init_prescribed: S must be K x K and D0 of length M");
        for_each_replica(replicas(), threads, [&](int r) {
            Replica<Real>& rep = reps_[static_cast<std::size_t>(r)];
            NormalStream g(seed_, static_cast<std::uint64_t>(r), kInitStream);
            fill_teacher(rep, r, g);
            fill_normal(g, rep.W);
            fill_normal(g, rep.V);
            orthonormalise(rep, K);
            const std::int64_t N = cfg_.N;
            std::vector<double> row(static_cast<std::size_t>(K)), out(static_cast<std::size_t>(K));
            for (std::int64_t i = 0; i < N; ++i) {
                for (int c = 0; c < K; ++c) row[c] = static_cast<double>(*cell(rep, i, c));
                for (int c = 0; c < K; ++c) {
                    double s = 0.0;
                    for (int j = 0; j < K; ++j) s += row[j] * S(j, c);
                    out[c] = s;
                }
                for (int c = 0; c < K; ++c) *cell(rep, i, c) = static_cast<Real>(out[c]);
            }
            reset_state(rep, D0);
        });
    }

    // Run n_steps steps of every live replica. beta[j] is beta(t) before step j of this
    // run; record_offsets (sorted, in [0, n_steps]) says after how many steps of this run
    // to record. Called without the GIL.
    // With at least as many replicas as threads, replicas run in parallel; with fewer
    // (one replica at large N), the blocks of each pass do. Either way the sums are added
    // in block order, so the result does not depend on the choice.
    void run(const double* beta, std::int64_t n_steps, const std::int64_t* record_offsets,
             std::int64_t n_records, const RecordSink& sink, int threads) {
        const bool by_blocks = replicas() < threads && cfg_.N > kBlock;
        auto one = [&](int r, TeamTuner* team) {
            run_replica(reps_[static_cast<std::size_t>(r)], r, beta, n_steps, record_offsets,
                        n_records, sink, team);
        };
        if (by_blocks) {
            team_.start(threads);
            for (int r = 0; r < replicas(); ++r) one(r, &team_);
        } else {
            for_each_replica(replicas(), threads, [&](int r) { one(r, nullptr); });
        }
        block_threads_ = 1;
    }

    // Apply any pending update, so that W, V hold the current state (tests, snapshots).
    void flush() {
        for (auto& rep : reps_)
            if (rep.status == kRunning) pass_no_sample(rep, false);
    }

    // One step of replica r on a supplied sample x (tests: compare with a NumPy step).
    void step_given(int r, const double* x_given, double beta) {
        Replica<Real>& rep = replica(r);
        std::vector<double> cs(static_cast<std::size_t>(cfg_.Ms), 0.0);
        pass_blocks(rep, /*gen=*/true, /*rec=*/false, cs.data(), 1.0,
                    [&](std::int64_t i0, std::int64_t n, Real* buf) {
                        std::copy(x_given + i0, x_given + i0 + n, buf);
                    });
        finish_step(rep, beta);
        pass_no_sample(rep, false);
    }

    // The sample seen at step s (0-based) of replica r, on a finite dataset, through the
    // order object `order` (the replica's own in a run).
    std::int64_t sample_index(VisitOrder& order, int r, std::int64_t s) const {
        return order.at(cfg_.data, seed_, r, s);
    }

    // The draws (c, n) of sample mu of replica r's dataset, as a visit makes them.
    std::pair<std::vector<double>, std::vector<double>> sample(int r, std::int64_t mu) const {
        const std::uint64_t key = cfg_.data.key(r), u = static_cast<std::uint64_t>(mu);
        NormalStream signal(key, u, kSignalStream);
        std::vector<double> c(static_cast<std::size_t>(cfg_.Ms));
        for (auto& v : c) v = draw_factor(signal, cfg_.factors);
        std::vector<double> n(static_cast<std::size_t>(cfg_.N));
        std::vector<Real> buf(static_cast<std::size_t>(std::min(cfg_.N, kBlock)));
        for (std::int64_t i0 = 0; i0 < cfg_.N; i0 += kBlock) {
            const std::int64_t len = std::min(kBlock, cfg_.N - i0);
            fill_sample_noise(key, mu, i0 / kBlock, buf.data(), len);
            for (std::int64_t j = 0; j < len; ++j) n[i0 + j] = static_cast<double>(buf[j]);
        }
        return {c, n};
    }

    // Z = S Y for the covariance S = (1/P) sum_mu x_mu x_mu^T of replica r's training set
    // (Y, Z: N x k, row-major), its samples regenerated one by one, so nothing of size P N
    // is stored. The samples are cut into kSlices slices whatever the thread count and the
    // slices added in order, so Z does not depend on the threads.
    void apply_covariance(int r, const double* Y, int k, double* Z, int threads) const {
        const Replica<Real>& rep = reps_.at(static_cast<std::size_t>(r));
        const std::int64_t N = cfg_.N, P = cfg_.data.P;
        constexpr int kSlices = 16;
        const std::size_t size = static_cast<std::size_t>(N) * static_cast<std::size_t>(k);
        std::vector<double> part(kSlices * size, 0.0);
        auto slice = [&](int s) {
            std::vector<double> cs(static_cast<std::size_t>(cfg_.Ms)), x(static_cast<std::size_t>(N)),
                proj(static_cast<std::size_t>(k));
            std::vector<Real> buf(static_cast<std::size_t>(std::min(N, kBlock)));
            double* acc = part.data() + static_cast<std::size_t>(s) * size;
            for (std::int64_t mu = P * s / kSlices; mu < P * (s + 1) / kSlices; ++mu) {
                training_sample(rep, r, mu, cs.data(), buf.data(), x.data());
                std::fill(proj.begin(), proj.end(), 0.0);
                for (std::int64_t i = 0; i < N; ++i)
                    for (int j = 0; j < k; ++j) proj[j] += x[i] * Y[i * k + j];
                for (std::int64_t i = 0; i < N; ++i)
                    for (int j = 0; j < k; ++j) acc[i * k + j] += x[i] * proj[j];
            }
        };
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(std::max(1, threads))
        for (int s = 0; s < kSlices; ++s) slice(s);
#else
        (void)threads;
        for (int s = 0; s < kSlices; ++s) slice(s);
#endif
        const double scale = 1.0 / static_cast<double>(P);
        for (std::size_t j = 0; j < size; ++j) {
            double z = 0.0;
            for (int s = 0; s < kSlices; ++s) z += part[static_cast<std::size_t>(s) * size + j];
            Z[j] = z * scale;
        }
    }

private:
    ModelConfig cfg_;
    std::uint64_t seed_;
    SumLayout L_;
    std::vector<Replica<Real>> reps_;
    int block_threads_ = 1;  // threads over the blocks of the current pass
    TeamTuner team_;

    // W* from the replica's init stream g (one-pass SGD) or, for a finite dataset, from
    // the dataset's own stream, which replicas sharing the dataset share.
    void fill_teacher(Replica<Real>& rep, int r, NormalStream& g) const {
        if (!cfg_.data.finite()) return fill_normal(g, rep.Ws);
        NormalStream t(cfg_.data.key(r), kTeacherSample, kInitStream);
        fill_normal(t, rep.Ws);
    }

    static void fill_normal(NormalStream& g, Weights<Real>& v) {
        std::vector<double> buf(static_cast<std::size_t>(std::min<std::int64_t>(kBlock, v.size())));
        for (std::size_t i0 = 0; i0 < v.size(); i0 += buf.size()) {
            const std::size_t n = std::min(buf.size(), v.size() - i0);
            g.fill(buf.data(), n);
            for (std::size_t j = 0; j < n; ++j) v[i0 + j] = static_cast<Real>(buf[j]);
        }
    }

    // Column c of the frame [W*, W, V] (row-major storage of each block of columns).
    Real* cell(Replica<Real>& rep, std::int64_t i, int c) const {
        if (c < cfg_.Ms) return &rep.Ws[static_cast<std::size_t>(i * cfg_.Ms + c)];
        c -= cfg_.Ms;
        if (c < cfg_.M) return &rep.W[static_cast<std::size_t>(i * cfg_.M + c)];
        c -= cfg_.M;
        return &rep.V[static_cast<std::size_t>(i * cfg_.M + c)];
    }

    // Gram-Schmidt twice ("twice is enough", Giraud et al. 2005) over the first K columns
    // of [W*, W, V], leaving them orthogonal with squared norm N; sums in double.
    void orthonormalise(Replica<Real>& rep, int K) const {
        const std::int64_t N = cfg_.N;
        if (K > N)
            throw std::invalid_argument("need N >= M* + 2M for a prescribed start, N >= M* always");
        for (int c = 0; c < K; ++c) {
            for (int pass = 0; pass < 2; ++pass) {
                for (int j = 0; j < c; ++j) {
                    double dot = 0.0;
                    for (std::int64_t i = 0; i < N; ++i)
                        dot += static_cast<double>(*cell(rep, i, j)) * static_cast<double>(*cell(rep, i, c));
                    dot /= static_cast<double>(N);  // column j is already scaled to norm^2 = N
                    for (std::int64_t i = 0; i < N; ++i)
                        *cell(rep, i, c) = static_cast<Real>(static_cast<double>(*cell(rep, i, c)) -
                                                             dot * static_cast<double>(*cell(rep, i, j)));
                }
            }
            double nrm = 0.0;
            for (std::int64_t i = 0; i < N; ++i) {
                const double v = static_cast<double>(*cell(rep, i, c));
                nrm += v * v;
            }
            const double scale = std::sqrt(static_cast<double>(N) / nrm);
            for (std::int64_t i = 0; i < N; ++i)
                *cell(rep, i, c) = static_cast<Real>(static_cast<double>(*cell(rep, i, c)) * scale);
        }
    }

    void reset_state(Replica<Real>& rep, const std::vector<double>& D0) {
        rep.D = D0;
        rep.has_pending = false;
        rep.steps = 0;
        rep.status = kRunning;
        pass_no_sample(rep, false);  // Q of the initial state
    }

    // A pass over all blocks. fill(i0, n, buf) provides the n standard normals of block
    // rows [i0, i0 + n) (or, in tests, the supplied x with cs = 0 and sqrt_eta = 1).
    // Leaves the pass's sums in rep.sums and the state's Q in rep.Q.
    // With from_streams, the hot M = M* = 1 pass takes its normals straight from the
    // block's stream instead (the same numbers fill would give, without the buffer).
    template <class Fill>
    void pass_blocks(Replica<Real>& rep, bool gen, bool rec, const double* cs, double sqrt_eta,
                     Fill&& fill, bool from_streams = false) {
        const std::int64_t N = cfg_.N;
        const std::int64_t nblocks = (N + kBlock - 1) / kBlock;
        const bool fused = from_streams && gen && rep.has_pending && cfg_.M == 1 && cfg_.Ms == 1;
        auto block = [&](std::int64_t blk) {
            const std::int64_t i0 = blk * kBlock, i1 = std::min(N, i0 + kBlock);
            double* slot = rep.slots.data() + blk * L_.size;
            if (fused)
                return pass_m1(rep, rec, i0, i1,
                               &rep.noise[static_cast<std::size_t>(blk)], cs,
                               sqrt_eta, slot);
            Real buf[kBlock];
            if (gen) fill(i0, i1 - i0, buf);
            dispatch_m(rep, gen, rec, i0, i1, gen ? buf : nullptr, cs, sqrt_eta, slot);
        };
#ifdef _OPENMP
        if (block_threads_ > 1) {
#pragma omp parallel for schedule(static) num_threads(block_threads_)
            for (std::int64_t blk = 0; blk < nblocks; ++blk) block(blk);
        } else
#endif
            for (std::int64_t blk = 0; blk < nblocks; ++blk) block(blk);

        // totals in block order; only the entries this pass wrote
        const int n_used = rec ? L_.size : L_.E;
        std::fill(rep.sums.begin(), rep.sums.begin() + n_used, 0.0);
        for (std::int64_t blk = 0; blk < nblocks; ++blk) {
            const double* slot = rep.slots.data() + blk * L_.size;
            for (int j = 0; j < n_used; ++j) rep.sums[j] += slot[j];
        }
        const int M = cfg_.M;
        const double invN = 1.0 / static_cast<double>(N);
        for (int k = 0; k < M; ++k)
            for (int l = k; l < M; ++l)
                rep.Q[k * M + l] = rep.Q[l * M + k] = rep.sums[L_.Q + k * M + l] * invN;
        rep.has_pending = false;
    }

    // A pass without a new sample: applies the pending update, sums Q (and the record).
    void pass_no_sample(Replica<Real>& rep, bool rec) {
        pass_blocks(rep, false, rec, nullptr, 0.0, [](std::int64_t, std::int64_t, Real*) {});
    }

    void dispatch_m(Replica<Real>& rep, bool gen, bool rec, std::int64_t i0, std::int64_t i1,
                    const Real* noise, const double* cs, double se, double* slot) {
        switch (cfg_.M) {
            case 1: return dispatch_ms<1>(rep, gen, rec, i0, i1, noise, cs, se, slot);
            case 2: return dispatch_ms<2>(rep, gen, rec, i0, i1, noise, cs, se, slot);
            case 3: return dispatch_ms<3>(rep, gen, rec, i0, i1, noise, cs, se, slot);
            case 4: return dispatch_ms<4>(rep, gen, rec, i0, i1, noise, cs, se, slot);
            case 8: return dispatch_ms<8>(rep, gen, rec, i0, i1, noise, cs, se, slot);
            default: return dispatch_ms<0>(rep, gen, rec, i0, i1, noise, cs, se, slot);
        }
    }

    template <int MC>
    void dispatch_ms(Replica<Real>& rep, bool gen, bool rec, std::int64_t i0, std::int64_t i1,
                     const Real* noise, const double* cs, double se, double* slot) {
        if (cfg_.Ms == 1) return dispatch_flags<MC, 1>(rep, gen, rec, i0, i1, noise, cs, se, slot);
        return dispatch_flags<MC, 0>(rep, gen, rec, i0, i1, noise, cs, se, slot);
    }

    // f(apply, rec, gen) with the pass's flags as compile-time constants, from the code
    // (has_pending ? 4 : 0) | (rec ? 2 : 0) | (gen ? 1 : 0).
    template <class F>
    static void by_flags(int code, F&& f) {
        using T = std::true_type;
        using F0 = std::false_type;
        switch (code) {
            case 0: return f(F0{}, F0{}, F0{});
            case 1: return f(F0{}, F0{}, T{});
            case 2: return f(F0{}, T{}, F0{});
            case 3: return f(F0{}, T{}, T{});
            case 4: return f(T{}, F0{}, F0{});
            case 5: return f(T{}, F0{}, T{});
            case 6: return f(T{}, T{}, F0{});
            default: return f(T{}, T{}, T{});
        }
    }

    template <int MC, int MSC>
    void dispatch_flags(Replica<Real>& rep, bool gen, bool rec, std::int64_t i0, std::int64_t i1,
                        const Real* noise, const double* cs, double se, double* slot) {
        const int code = (rep.has_pending ? 4 : 0) | (rec ? 2 : 0) | (gen ? 1 : 0);
        if constexpr (MC == 1 && MSC == 1) {
            if (rep.has_pending && gen)  // the hot path of every step
                return pass_m1(rep, rec, i0, i1, noise, cs, se, slot);
            // step 0 and a flush: the same rows without the update or the sample, so that
            // a sample is drawn and the weights updated alike whatever passes surround them
            return pass_m1_rare(rep, code, i0, i1, noise, cs, se, slot);
        } else {
#ifdef LINVAE_HAVE_AVX2_PATH
            if constexpr (MC == 2 && std::is_same_v<Real, double>) {
                if (code == 5 && active_simd_path() == SimdPath::kAvx2)  // every unrecorded step
                    return block_pass_step_m2_avx2(cfg_.Ms, i0, i1, rep.W.data(), rep.V.data(),
                                                   rep.Ws.data(), rep.x.data(), rep.pending,
                                                   noise, cs, se, L_, slot);
            }
            if constexpr ((MC == 4 || MC == 8) && std::is_same_v<Real, double>) {
                if (code == 5 && active_simd_path() == SimdPath::kAvx2)  // every unrecorded step
                    return block_pass_step_avx2<MC>(cfg_.Ms, i0, i1, rep.W.data(), rep.V.data(),
                                                    rep.Ws.data(), rep.x.data(), rep.pending,
                                                    noise, cs, se, L_, slot);
            }
#endif
            by_flags(code, [&](auto apply, auto rec_c, auto gen_c) {
                block_pass<Real, MC, MSC, decltype(apply)::value, decltype(rec_c)::value,
                           decltype(gen_c)::value>(cfg_.M, cfg_.Ms, i0, i1, rep.W.data(),
                                                   rep.V.data(), rep.Ws.data(), rep.x.data(),
                                                   rep.pending, noise, cs, se, L_, slot);
            });
        }
    }

    // The coefficients of the M = M* = 1 rows: the pending update, sqrt(eta) and the
    // factors' part c of x (float32: in single precision).
    auto m1_coeffs(const PendingUpdate& up, double se, double c) const {
        if constexpr (std::is_same_v<Real, float>)
            return M1CoeffsF{static_cast<float>(up.dec1), static_cast<float>(up.cW[0]),
                             static_cast<float>(up.vdec), static_cast<float>(up.cV[0]),
                             static_cast<float>(se), static_cast<float>(c)};
        else
            return M1Coeffs{1.0 - up.dec1, up.cW[0], 1.0 - up.vdec, up.cV[0], se, c};
    }

    // The M = M* = 1 pass with a pending update and a new sample, on the active SIMD path.
    // Its normals come from a buffer or, without one, from the block's stream.
    template <class Source>
    void pass_m1(Replica<Real>& rep, bool rec, std::int64_t i0, std::int64_t i1,
                 Source src, const double* cs, double se, double* slot) {
        using Noise = std::conditional_t<
            std::is_same_v<Real, float>,
            std::conditional_t<std::is_same_v<Source, const float*>, NoiseBufferF, NoiseStreamF>,
            std::conditional_t<std::is_same_v<Source, const double*>, NoiseBuffer, NoiseStream>>;
        const auto k = m1_coeffs(rep.pending, se, cs[0]);
        if (rec) return pass_m1_on<true>(rep, i0, i1, k, Noise{src}, slot);
        pass_m1_on<false>(rep, i0, i1, k, Noise{src}, slot);
    }

    // The M = M* = 1 pass without a pending update or without a new sample (code as in
    // by_flags), on the scalar rows: a pass of step 0, after a flush, or a flush itself.
    void pass_m1_rare(Replica<Real>& rep, int code, std::int64_t i0, std::int64_t i1,
                      const Real* noise, const double* cs, double se, double* slot) {
        const auto k = m1_coeffs(rep.pending, se, (code & 1) ? cs[0] : 0.0);
        using Coeffs = std::remove_const_t<decltype(k)>;
        constexpr bool kFloat = std::is_same_v<Real, float>;
        constexpr int G = kFloat ? 8 : 4;
        by_flags(code, [&](auto apply, auto rec_c, auto gen_c) {
            constexpr bool A = decltype(apply)::value, REC = decltype(rec_c)::value,
                           GN = decltype(gen_c)::value;
            using Lanes = std::conditional_t<kFloat, M1LanesF<REC>, M1Lanes<Real, REC>>;
            static_assert(std::is_same_v<typename Lanes::Coeffs, Coeffs>);
            if constexpr (A && GN) {
                throw std::logic_error("pass_m1_rare: the hot path's pass");
            } else if constexpr (GN) {
                block_pass_m1<Lanes, A, GN>(i0, i1, rep.W.data(), rep.V.data(), rep.Ws.data(),
                                            rep.x.data(), k, NoiseBufferOf<Real, G>{noise}, L_,
                                            slot);
            } else {
                block_pass_m1<Lanes, A, GN>(i0, i1, rep.W.data(), rep.V.data(), rep.Ws.data(),
                                            rep.x.data(), k, NoNoiseOf<Real, G>{}, L_, slot);
            }
        });
    }

    template <bool REC, class Coeffs, class Noise>
    void pass_m1_on(Replica<Real>& rep, std::int64_t i0, std::int64_t i1, const Coeffs& k,
                    const Noise& noise, double* slot) {
        using Lanes = std::conditional_t<std::is_same_v<Real, float>, M1LanesF<REC>,
                                         M1Lanes<Real, REC>>;
        Real* W = rep.W.data();
        Real* V = rep.V.data();
        const Real* Ws = rep.Ws.data();
        Real* x = rep.x.data();
#ifdef LINVAE_HAVE_AVX2_PATH
        if (active_simd_path() == SimdPath::kAvx2)
            return block_pass_m1_avx2<Lanes>(i0, i1, W, V, Ws, x, k, noise, L_, slot);
#endif
        block_pass_m1<Lanes>(i0, i1, W, V, Ws, x, k, noise, L_, slot);
    }

    // After the pass of step s: g, the D update, the pending update, divergence checks.
    void finish_step(Replica<Real>& rep, double beta) {
        const std::vector<double>& sums = rep.sums;
        const int M = cfg_.M;
        const double N = static_cast<double>(cfg_.N);
        const double sqN = std::sqrt(N), tau = cfg_.tau, tau_V = cfg_.tau_V, tau_D = cfg_.tau_D,
                     lam = cfg_.lam;
        // sizes known at run time, storage on the stack: no heap allocation per step
        using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, 0, kMaxLatents,
                                  kMaxLatents>;
        using Vec = Eigen::Matrix<double, Eigen::Dynamic, 1, 0, kMaxLatents, 1>;
        Vec a(M), b(M), D = Eigen::Map<const Vec>(rep.D.data(), M);
        for (int k = 0; k < M; ++k) {
            a[k] = sums[L_.a + k] / sqN;
            b[k] = sums[L_.b + k] / sqN;
        }
        const Mat Q = Eigen::Map<const Mat>(rep.Q.data(), M, M);  // before the step
        const Vec g = -a + (Q + beta * Mat::Identity(M, M)) * b;
        PendingUpdate& up = rep.pending;
        for (int k = 0; k < M; ++k) {
            up.b[k] = b[k];
            up.wdiag[k] = 1.0 - (tau / N) * (D[k] + lam);
            up.u[k] = (tau / N) * b[k];
            up.cW[k] = tau * b[k] / sqN;
            up.cV[k] = tau_V * g[k] / sqN;
        }
        up.dec1 = (tau / N) * (b[0] * b[0] + D[0] + lam);
        up.vdec = tau_V * lam / N;
        rep.has_pending = true;
        for (int k = 0; k < M; ++k)
            rep.D[k] = D[k] - (tau_D / N) * (0.5 * Q(k, k) + 0.5 * beta * (1.0 - 1.0 / D[k]));
        rep.steps += 1;

        if (!(a.allFinite() && b.allFinite() && g.allFinite() && Q.allFinite()))
            rep.status = kNonFinite;
        else if (Q.diagonal().maxCoeff() > cfg_.blowup)
            rep.status = kBlowUp;
        for (int k = 0; k < M && rep.status == kRunning; ++k) {
            if (!std::isfinite(rep.D[k])) rep.status = kNonFinite;
            else if (rep.D[k] <= 0.0) rep.status = kNonPositiveD;
        }
    }

    void record(Replica<Real>& rep, int r, std::int64_t k, const RecordSink& sink) {
        const double* s = rep.sums.data();
        const int M = cfg_.M, Ms = cfg_.Ms;
        const double invN = 1.0 / static_cast<double>(cfg_.N);
        const auto out = sink.row(r, k, M, Ms);
        double *m = out[op::m], *d = out[op::d], *Q = out[op::Q], *E = out[op::E],
               *R = out[op::R], *D = out[op::D];
        for (int i = 0; i < M * Ms; ++i) {
            m[i] = s[L_.m + i] * invN;
            d[i] = s[L_.d + i] * invN;
        }
        for (int i = 0; i < M; ++i) {
            D[i] = rep.D[i];
            for (int j = 0; j < M; ++j) {
                Q[i * M + j] = rep.Q[i * M + j];
                R[i * M + j] = s[L_.R + i * M + j] * invN;
                E[i * M + j] = s[L_.E + (i <= j ? i * M + j : j * M + i)] * invN;
            }
        }
        for (int i = 0; i < M; ++i)
            if (E[i * M + i] > cfg_.blowup || !std::isfinite(E[i * M + i])) rep.status = kBlowUp;
        if (sink.Bt != nullptr) {
            const std::int64_t at = static_cast<std::int64_t>(r) * sink.T + sink.rec_start + k;
            training_moments(rep, r, sink.Bt + at * M * M, sink.Ct + at * M * M);
        }
    }

    // Point the replica's streams at sample mu of its dataset: the factor stream and one
    // noise stream per block, keyed by (data key, mu), so every visit draws the same x.
    void visit(Replica<Real>& rep, int r, std::int64_t mu) const {
        const std::uint64_t key = cfg_.data.key(r), u = static_cast<std::uint64_t>(mu);
        rep.signal = NormalStream(key, u, kSignalStream);
        for (std::size_t blk = 0; blk < rep.noise.size(); ++blk)
            rep.noise[blk] = NormalStream(key, u, kFirstNoiseStream + blk);
    }

    // The noise of block blk (its n rows) of sample mu of the dataset with key `key`,
    // as a visit draws it.
    void fill_sample_noise(std::uint64_t key, std::int64_t mu, std::int64_t blk, Real* buf,
                           std::int64_t n) const {
        NormalStream noise(key, static_cast<std::uint64_t>(mu),
                           kFirstNoiseStream + static_cast<std::uint64_t>(blk));
        fill_noise(noise, cfg_.noise, buf, static_cast<std::size_t>(n));
    }

    // The factors' part of x for the replica's next sample: cs[f] = sqrt(rho_f) c_f / sqrt(N).
    void draw_factors(NormalStream& signal, double* cs) const {
        const double sqN = std::sqrt(static_cast<double>(cfg_.N));
        for (int f = 0; f < cfg_.Ms; ++f)
            cs[f] = std::sqrt(cfg_.rho[f]) * draw_factor(signal, cfg_.factors) / sqN;
    }

    // Sample mu of replica r's training set, x (N values), as a visit draws it; buf holds
    // one block of noise, cs the M* factor terms.
    void training_sample(const Replica<Real>& rep, int r, std::int64_t mu, double* cs, Real* buf,
                         double* x) const {
        const int Ms = cfg_.Ms;
        const std::int64_t N = cfg_.N;
        const double sqrt_eta = std::sqrt(cfg_.eta);
        const std::uint64_t key = cfg_.data.key(r);
        NormalStream signal(key, static_cast<std::uint64_t>(mu), kSignalStream);
        draw_factors(signal, cs);
        for (std::int64_t i0 = 0, blk = 0; i0 < N; i0 += kBlock, ++blk) {
            const std::int64_t n = std::min(kBlock, N - i0);
            fill_sample_noise(key, mu, blk, buf, n);
            for (std::int64_t i = i0; i < i0 + n; ++i) {
                double xi = sqrt_eta * static_cast<double>(buf[i - i0]);
                for (int f = 0; f < Ms; ++f) xi += static_cast<double>(rep.Ws[i * Ms + f]) * cs[f];
                x[i] = xi;
            }
        }
    }

    // The training set's moments Bb = mean_mu b b^T and Cab = mean_mu a b^T at the current
    // weights (M x M, row-major), over its P samples regenerated one by one: P passes over
    // W and V, so a record costs P N M operations instead of N M.
    void training_moments(Replica<Real>& rep, int r, double* Bb, double* Cab) const {
        const int M = cfg_.M, Ms = cfg_.Ms;
        const std::int64_t N = cfg_.N;
        const double sqN = std::sqrt(static_cast<double>(N));
        std::vector<double> cs(static_cast<std::size_t>(Ms)), a(M), b(M), Bs(M * M, 0.0),
            Cs(M * M, 0.0), x(static_cast<std::size_t>(N));
        std::vector<Real> buf(static_cast<std::size_t>(std::min(N, kBlock)));
        for (std::int64_t mu = 0; mu < cfg_.data.P; ++mu) {
            training_sample(rep, r, mu, cs.data(), buf.data(), x.data());
            std::fill(a.begin(), a.end(), 0.0);
            std::fill(b.begin(), b.end(), 0.0);
            for (std::int64_t i = 0; i < N; ++i)
                for (int k = 0; k < M; ++k) {
                    a[k] += static_cast<double>(rep.W[i * M + k]) * x[i];
                    b[k] += static_cast<double>(rep.V[i * M + k]) * x[i];
                }
            for (int k = 0; k < M; ++k)
                for (int l = 0; l < M; ++l) {
                    Bs[k * M + l] += b[k] * b[l];
                    Cs[k * M + l] += a[k] * b[l];
                }
        }
        const double scale = 1.0 / (static_cast<double>(cfg_.data.P) * sqN * sqN);
        for (int j = 0; j < M * M; ++j) {
            Bb[j] = Bs[j] * scale;
            Cab[j] = Cs[j] * scale;
        }
    }

    void run_replica(Replica<Real>& rep, int r, const double* beta, std::int64_t n_steps,
                     const std::int64_t* rec, std::int64_t n_rec, const RecordSink& sink,
                     TeamTuner* team) {
        const double sqrt_eta = std::sqrt(cfg_.eta);
        std::vector<double> cs(static_cast<std::size_t>(cfg_.Ms));
        const bool gaussian = cfg_.noise.family == Family::kGaussian;
        std::int64_t next = 0;  // next record to take
        for (std::int64_t j = 0; j < n_steps && rep.status == kRunning; ++j) {
            if (cfg_.data.finite()) visit(rep, r, sample_index(rep.order, r, rep.steps));
            draw_factors(rep.signal, cs.data());
            const bool rec_now = next < n_rec && rec[next] == j;
            if (team != nullptr) block_threads_ = team->size();
            pass_blocks(rep, true, rec_now, cs.data(), sqrt_eta,
                        [&](std::int64_t i0, std::int64_t n, Real* buf) {
                            auto& stream = rep.noise[static_cast<std::size_t>(i0 / kBlock)];
                            fill_noise(stream, cfg_.noise, buf, static_cast<std::size_t>(n));
                        },
                        /*from_streams=*/gaussian);
            if (rec_now) record(rep, r, next++, sink);
            if (rep.status != kRunning) return;
            finish_step(rep, beta[j]);
            if (team != nullptr) team->step_done();
        }
        if (rep.status == kRunning && next < n_rec && rec[next] == n_steps) {
            pass_no_sample(rep, true);
            record(rep, r, next++, sink);
        }
    }
};

}  // namespace linvae
