// word2vec's sequential SGD (skip-gram and CBOW with negative sampling, lecture notes section
// 3.3, eq. 3.6-3.13) over one step's slice of the token stream, as an XLA FFI handler for CPU.
//
// This is the inner loop of word2vec.c and gensim, applied to one center after the other:
//
//   skip-gram, for each (center t, context c) pair: the input row is l1 = E[c] (the context
//     word's vector predicts the center word); for the center (label 1) and each noise word
//     (label 0) with output row C[w]:
//       f = l1 . C[w];  g = lr (label - sigma(f));  neu1e += g C[w];  C[w] += g l1
//     then E[c] += neu1e.
//   CBOW, for each center t: h = mean of the context rows; the same output loop with l1 = h;
//     then every context row += neu1e (undivided, as word2vec and gensim with cbow_mean=1).
//
// sigma is the exact logistic function (not word2vec's 1000-entry table), in float32; the loss
// sum_pairs [-log sigma(f_center) - sum_noise log sigma(-f_noise)] is accumulated in double. As in
// word2vec, a noise word equal to the center word is skipped. The kernel is a pure function of its
// inputs: the same inputs give the same bits.
//
// Two handlers differ only in where the randomness (window widths and noise words) comes from:
//
// DlJaxWord2VecStep takes it as inputs. Inputs: E [V, D] and C [V, D] float32 (aliased to outputs
//   0 and 1: updated in place); tokens and docs int32 [N + 2L] (the stream slice, doc < 0 on
//   padding); widths int32 [N] (in [1, L]); negatives int32 [N, P, k] (P = 1: shared by a center's
//   pairs; P = 2L: one set per context slot); lr float32 []; count int32 [] (centers of the step to
//   train, 0 for a no-op step).
// DlJaxWord2VecStepRng draws it itself: instead of widths and negatives it takes seed uint32 [2]
//   and the alias table of the noise distribution, accept float32 [V] and alias int32 [V]
//   (`models.alias_table`); attribute `negative` is k. Draw j of center t (0-based in the step) is
//   splitmix64(seed + (t (1 + P k) + j + 1) * golden), seed = seed[0] 2^32 + seed[1]: j = 0 gives
//   the width 1 + (hi32 L) >> 32, j = 1 + p k + i noise word i of slot p: slot s = (hi32 V) >> 32,
//   kept if (lo32 & 0xffffff) 2^-24 < accept[s], else alias[s]. P = 2L for skip-gram (fresh noise
//   words for every (center, context) pair, as word2vec.c and gensim), 1 for CBOW. A draw depends
//   only on (seed, t, j): not on the thread that makes it nor on which draws were needed before.
//
// Attributes: cbow (0 or 1), window (L), threads (1 or 2: each thread runs the loop on half of
// the centers, reading and writing private copies of the rows it touches, then both threads write
// the rows back; see Merge). Outputs: E, C, loss float32 [], pairs float32 [] (skip-gram:
// (center, context) pairs; CBOW: centers with a non-empty window).

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// Vectors of the widest width the build's instruction set has (the library is compiled for this
// CPU, see dl_jax.text.native.arch_flags); unaligned loads and stores.
#if defined(__AVX512F__)
constexpr int64_t kLanes = 16;
#elif defined(__AVX__)
constexpr int64_t kLanes = 8;
#else
constexpr int64_t kLanes = 4;
#endif
typedef float Vec __attribute__((vector_size(kLanes * sizeof(float)), aligned(4), may_alias));
typedef float Vec4 __attribute__((vector_size(4 * sizeof(float)), aligned(4), may_alias));

inline Vec Load(const float* p) { return *reinterpret_cast<const Vec*>(p); }
inline void Store(float* p, Vec v) { *reinterpret_cast<Vec*>(p) = v; }
inline Vec4 Load4(const float* p) { return *reinterpret_cast<const Vec4*>(p); }
inline void Store4(float* p, Vec4 v) { *reinterpret_cast<Vec4*>(p) = v; }

inline float Sum(Vec v) {
  float s = 0.0f;
  for (int64_t i = 0; i < kLanes; ++i) s += v[i];
  return s;
}

// a . b with four independent accumulators (a single one makes every multiply-add wait for the
// previous one); the sum order is fixed by d alone.
inline float Dot(const float* __restrict a, const float* __restrict b, int64_t d) {
  Vec s0 = {}, s1 = {}, s2 = {}, s3 = {};
  int64_t i = 0;
  for (; i + 4 * kLanes <= d; i += 4 * kLanes) {
    s0 += Load(a + i) * Load(b + i);
    s1 += Load(a + i + kLanes) * Load(b + i + kLanes);
    s2 += Load(a + i + 2 * kLanes) * Load(b + i + 2 * kLanes);
    s3 += Load(a + i + 3 * kLanes) * Load(b + i + 3 * kLanes);
  }
  for (; i + kLanes <= d; i += kLanes) s1 += Load(a + i) * Load(b + i);
  float s = Sum((s0 + s1) + (s2 + s3));
  if (kLanes > 4 && i + 4 <= d) {
    const Vec4 p = Load4(a + i) * Load4(b + i);
    s += (p[0] + p[1]) + (p[2] + p[3]);
    i += 4;
  }
  for (; i < d; ++i) s += a[i] * b[i];
  return s;
}

inline void Axpy(float a, const float* __restrict x, float* __restrict y, int64_t d) {
  int64_t i = 0;
  for (; i + kLanes <= d; i += kLanes) Store(y + i, Load(y + i) + a * Load(x + i));
  for (; i + 4 <= d; i += 4) Store4(y + i, Load4(y + i) + a * Load4(x + i));
  for (; i < d; ++i) y[i] += a * x[i];
}

// The loss of a run of output words, -sum log p, kept as a product of the p in double and
// turned into a logarithm only when it gets small (one log per many words instead of one each).
struct LogLoss {
  double sum = 0.0;
  double product = 1.0;
  void Add(double p, float margin) {
    if (margin > 80.0f) {  // p < 2e-35: -log p = margin + log1p(exp(-margin)) = margin
      sum += margin;
      return;
    }
    product *= p;
    if (product < 1e-200) Flush();
  }
  void Flush() {
    sum -= std::log(product);
    product = 1.0;
  }
};

// The gradient factor g = lr (label - sigma(f)) of one output word; adds its loss
// (label 1: -log sigma(f), label 0: -log sigma(-f)).
inline float Gradient(float f, float label, float lr, LogLoss& loss) {
  // sigma(f) from one exponential and one division: with z = exp(-|f|), the larger of sigma(f)
  // and sigma(-f) is 1 / (1 + z), the smaller z / (1 + z).
  const float z = std::exp(-std::fabs(f));
  const float large = 1.0f / (1.0f + z);
  const float small = z * large;
  const float margin = label > 0.5f ? -f : f;  // -log p = softplus(margin)
  loss.Add(margin > 0.0f ? small : large, margin);
  return lr * (label - (f >= 0.0f ? large : small));
}

// neu1e += g out and out += g l1 (with the old out).
inline void UpdateOutput(const float* __restrict l1, float* __restrict out,
                         float* __restrict neu1e, float g, int64_t d) {
  int64_t i = 0;
  const Vec gv = Vec{} + g;
  for (; i + kLanes <= d; i += kLanes) {
    const Vec o = Load(out + i);
    Store(neu1e + i, Load(neu1e + i) + gv * o);
    Store(out + i, o + gv * Load(l1 + i));
  }
  for (; i + 4 <= d; i += 4) {
    const Vec4 o = Load4(out + i);
    Store4(neu1e + i, Load4(neu1e + i) + g * o);
    Store4(out + i, o + g * Load4(l1 + i));
  }
  for (; i < d; ++i) {
    const float o = out[i];
    neu1e[i] += g * o;
    out[i] = o + g * l1[i];
  }
}

constexpr int64_t kMaxOutputs = 64;

// The output words of one input vector l1, in word2vec's order: outs[0] the word to predict
// (label 1), then the noise words (label 0); each f = l1 . C[w], g = lr (label - sigma(f)),
// neu1e += g C[w], C[w] += g l1. When the rows are distinct, no update changes a later dot, so
// all dots are taken first (independent, they overlap in the CPU) and the updates follow in the
// same order: the same bits as one word after the other, which is what repeated rows get.
inline void OutputWords(const float* __restrict l1, float* const* outs, int64_t n,
                        float* __restrict neu1e, float lr, int64_t d, LogLoss& loss) {
  bool distinct = n <= kMaxOutputs;
  for (int64_t i = 1; i < n && distinct; ++i) {
    for (int64_t j = 0; j < i; ++j) distinct &= outs[i] != outs[j];
  }
  if (!distinct) {
    for (int64_t j = 0; j < n; ++j) {
      UpdateOutput(l1, outs[j], neu1e, Gradient(Dot(l1, outs[j], d), j == 0, lr, loss), d);
    }
    return;
  }
  float g[kMaxOutputs];
  for (int64_t j = 0; j < n; ++j) g[j] = Dot(l1, outs[j], d);
  for (int64_t j = 0; j < n; ++j) g[j] = Gradient(g[j], j == 0, lr, loss);
  for (int64_t j = 0; j < n; ++j) UpdateOutput(l1, outs[j], neu1e, g[j], d);
}

// Asks for a row's cache lines ahead of its use (the tables are larger than the caches and the
// rows are visited in a random order); no effect on the results.
inline void PrefetchRow(const float* row, int64_t d) {
  const char* p = reinterpret_cast<const char*>(row);
  for (int64_t b = 0; b < d * static_cast<int64_t>(sizeof(float)); b += 64) {
    __builtin_prefetch(p + b, 1, 3);
  }
}

constexpr int64_t kAhead = 2;

// The randomness of one center: its window width and its noise words, slots [0, P) of k each.
// Only the slots of the center's window, [L - width, L + width), are filled when P = 2L.
inline int64_t FirstSlot(int64_t P, int64_t L, int64_t w) { return P == 1 ? 0 : L - w; }
inline int64_t EndSlot(int64_t P, int64_t L, int64_t w) { return P == 1 ? 1 : L + w; }

// Draws given as inputs (widths [N], negatives [N, P, K]).
struct GivenDraws {
  const int32_t* width;
  const int32_t* neg;
  int64_t L, P, K;
  int64_t row;  // entries of `neg` per center
  void Fill(int64_t t, int32_t* out) const {
    const int64_t w = std::min<int64_t>(std::max<int32_t>(width[t], 1), L);
    out[0] = static_cast<int32_t>(w);
    const int32_t* src = neg + t * row;
    for (int64_t i = FirstSlot(P, L, w) * K; i < EndSlot(P, L, w) * K; ++i) out[1 + i] = src[i];
  }
};

inline uint64_t SplitMix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Draws made here: counter-based, so draw (t, j) is the same whoever makes it and whenever.
struct RngDraws {
  uint64_t seed;
  const float* accept;
  const int32_t* alias;
  int64_t V, L, P, K;
  uint64_t Bits(int64_t t, int64_t j) const {
    const uint64_t counter = static_cast<uint64_t>(t * (1 + P * K) + j) + 1;
    return SplitMix64(seed + counter * 0x9E3779B97F4A7C15ULL);
  }
  void Fill(int64_t t, int32_t* out) const {
    const int64_t w = 1 + static_cast<int64_t>(((Bits(t, 0) >> 32) * static_cast<uint64_t>(L)) >> 32);
    out[0] = static_cast<int32_t>(w);
    for (int64_t i = FirstSlot(P, L, w) * K; i < EndSlot(P, L, w) * K; ++i) {
      const uint64_t r = Bits(t, 1 + i);
      const int64_t slot = static_cast<int64_t>(((r >> 32) * static_cast<uint64_t>(V)) >> 32);
      const float coin = static_cast<float>(r & 0xffffffu) * (1.0f / 16777216.0f);
      out[1 + i] = coin < accept[slot] ? static_cast<int32_t>(slot) : alias[slot];
    }
  }
};

// Prefetches the rows center t will read and write (`draws` as filled by Fill).
template <typename Rows>
inline void PrefetchCenter(const Rows& rows, const int32_t* tok, const int32_t* doc,
                           const int32_t* draws, int64_t pos, int64_t L, int64_t P, int64_t K) {
  if (doc[pos] < 0) return;
  const int64_t w = draws[0];
  rows.PrefetchC(tok[pos]);
  for (int64_t i = FirstSlot(P, L, w) * K; i < EndSlot(P, L, w) * K; ++i) {
    rows.PrefetchC(draws[1 + i]);
  }
  for (int64_t o = -w; o <= w; ++o) {
    if (o != 0 && doc[pos + o] == doc[pos]) rows.PrefetchE(tok[pos + o]);
  }
}

// The sequential loop over centers [begin, end); `rows` gives the row of E or C to read and update,
// `source` the draws of each center (made kAhead centers ahead, so that their rows are prefetched).
template <typename Rows, typename Draws>
void Train(Rows& rows, const int32_t* tok, const int32_t* doc, const Draws& source, float lr, int64_t begin, int64_t end, int64_t L, int64_t P,
           int64_t K, int64_t D, bool cbow, double& loss, double& pairs) {
  const int64_t stride = 1 + P * K;
  std::vector<int32_t> ring((kAhead + 1) * stride);
  auto draws_of = [&](int64_t t) { return ring.data() + (t % (kAhead + 1)) * stride; };
  for (int64_t t = begin; t < std::min<int64_t>(begin + kAhead, end); ++t) {
    source.Fill(t, draws_of(t));
    PrefetchCenter(rows, tok, doc, draws_of(t), L + t, L, P, K);
  }
  std::vector<float> neu1e(D), h(D);
  std::vector<float*> outs(1 + K);
  LogLoss log_loss;
  int64_t pair_count = 0;  // kept here: the other thread's counters may share a cache line
  for (int64_t t = begin; t < end; ++t) {
    const int64_t pos = L + t;
    if (t + kAhead < end) {
      source.Fill(t + kAhead, draws_of(t + kAhead));
      PrefetchCenter(rows, tok, doc, draws_of(t + kAhead), pos + kAhead, L, P, K);
    }
    const int32_t center_doc = doc[pos];
    if (center_doc < 0) continue;
    const int32_t center = tok[pos];
    float* c_center = rows.C(center);
    const int32_t* draws = draws_of(t);
    const int64_t w = draws[0];
    const int32_t* center_negs = draws + 1;
    if (cbow) {
      int64_t cw = 0;
      std::fill(h.begin(), h.end(), 0.0f);
      for (int64_t o = -w; o <= w; ++o) {
        if (o == 0 || doc[pos + o] != center_doc) continue;
        Axpy(1.0f, rows.E(tok[pos + o]), h.data(), D);
        ++cw;
      }
      if (cw == 0) continue;
      const float inv = 1.0f / static_cast<float>(cw);
      for (int64_t i = 0; i < D; ++i) h[i] *= inv;
      std::fill(neu1e.begin(), neu1e.end(), 0.0f);
      int64_t n = 0;
      outs[n++] = c_center;
      for (int64_t j = 0; j < K; ++j) {
        if (center_negs[j] != center) outs[n++] = rows.C(center_negs[j]);
      }
      OutputWords(h.data(), outs.data(), n, neu1e.data(), lr, D, log_loss);
      for (int64_t o = -w; o <= w; ++o) {
        if (o == 0 || doc[pos + o] != center_doc) continue;
        Axpy(1.0f, neu1e.data(), rows.E(tok[pos + o]), D);
      }
      ++pair_count;
    } else {
      for (int64_t o = -w; o <= w; ++o) {
        if (o == 0 || doc[pos + o] != center_doc) continue;
        float* l1 = rows.E(tok[pos + o]);
        // Context slot j in [0, 2L): offsets -L..-1, 1..L (as `models.stream_window_mask`).
        const int64_t slot = o < 0 ? o + L : o + L - 1;
        const int32_t* pair_negs = center_negs + (P == 1 ? 0 : slot) * K;
        std::fill(neu1e.begin(), neu1e.end(), 0.0f);
        int64_t n = 0;
        outs[n++] = c_center;
        for (int64_t j = 0; j < K; ++j) {
          if (pair_negs[j] != center) outs[n++] = rows.C(pair_negs[j]);
        }
        OutputWords(l1, outs.data(), n, neu1e.data(), lr, D, log_loss);
        Axpy(1.0f, neu1e.data(), l1, D);
        ++pair_count;
      }
    }
  }
  log_loss.Flush();
  loss += log_loss.sum;
  pairs += static_cast<double>(pair_count);
}

// Rows straight from the tables (one thread).
struct TableRows {
  float* e;
  float* c;
  int64_t d;
  float* E(int32_t r) { return e + static_cast<int64_t>(r) * d; }
  float* C(int32_t r) { return c + static_cast<int64_t>(r) * d; }
  void PrefetchE(int32_t r) const { PrefetchRow(e + static_cast<int64_t>(r) * d, d); }
  void PrefetchC(int32_t r) const { PrefetchRow(c + static_cast<int64_t>(r) * d, d); }
};

// A thread's private copy of the rows of one table it touched: it reads its own updates and not
// the other thread's; the table is not written until both threads are done. The storage is kept
// across calls by the calling thread (grown, never shrunk): no allocation per step.
struct alignas(64) Overlay {
  const float* table = nullptr;
  int64_t d = 0;
  std::vector<int32_t> slot;  // row -> index in `data`, -1 if not copied yet
  std::vector<int32_t> rows;  // the copied rows, in the order of their first use
  std::vector<float> data;

  void Start(const float* t, int64_t v, int64_t dim) {
    table = t;
    d = dim;
    if (static_cast<int64_t>(slot.size()) < v) slot.assign(v, -1);
    if (static_cast<int64_t>(data.size()) < v * dim) data.resize(v * dim);
    rows.clear();
  }
  float* Row(int32_t r) {
    int32_t s = slot[r];
    if (s < 0) {
      s = slot[r] = static_cast<int32_t>(rows.size());
      rows.push_back(r);
      std::memcpy(data.data() + static_cast<int64_t>(s) * d, table + static_cast<int64_t>(r) * d,
                  sizeof(float) * d);
    }
    return data.data() + static_cast<int64_t>(s) * d;
  }
  const float* Find(int32_t r) const {
    const int32_t s = slot[r];
    return s < 0 ? nullptr : data.data() + static_cast<int64_t>(s) * d;
  }
  void Prefetch(int32_t r) const {
    const float* row = Find(r);
    PrefetchRow(row ? row : table + static_cast<int64_t>(r) * d, d);
  }
  void Forget() {
    for (int32_t r : rows) slot[r] = -1;
    rows.clear();
  }
};

struct OverlayRows {
  Overlay& e;
  Overlay& c;
  float* E(int32_t r) { return e.Row(r); }
  float* C(int32_t r) { return c.Row(r); }
  void PrefetchE(int32_t r) const { e.Prefetch(r); }
  void PrefetchC(int32_t r) const { c.Prefetch(r); }
};

// Writes the two threads' rows of one table into it, for the rows r with lo <= r < hi: a row
// only one thread touched gets that thread's row; a row both touched gets the first thread's row
// plus the second's change, first + (second - start).
inline void Merge(float* table, const Overlay& first, const Overlay& second, int32_t lo,
                  int32_t hi) {
  const int64_t d = first.d;
  for (int32_t r : second.rows) {
    if (r < lo || r >= hi) continue;
    float* out = table + static_cast<int64_t>(r) * d;
    const float* b = second.Find(r);
    const float* a = first.Find(r);
    if (a == nullptr) {
      std::memcpy(out, b, sizeof(float) * d);
      continue;
    }
    int64_t i = 0;
    for (; i + kLanes <= d; i += kLanes) Store(out + i, Load(a + i) + (Load(b + i) - Load(out + i)));
    for (; i < d; ++i) out[i] = a[i] + (b[i] - out[i]);
  }
  for (int32_t r : first.rows) {
    if (r < lo || r >= hi || second.Find(r) != nullptr) continue;
    std::memcpy(table + static_cast<int64_t>(r) * d, first.Find(r), sizeof(float) * d);
  }
}

// Checks the tables and the stream slice; copies the tables to the outputs unless aliased.
ffi::Error Prepare(ffi::Buffer<ffi::F32>& e_in, ffi::Buffer<ffi::F32>& c_in,
                   ffi::Buffer<ffi::S32>& tokens, ffi::Buffer<ffi::S32>& docs, int64_t N,
                   int64_t L, ffi::ResultBuffer<ffi::F32>& e_out,
                   ffi::ResultBuffer<ffi::F32>& c_out, int64_t& V, int64_t& D) {
  const auto e_dims = e_in.dimensions();
  if (e_dims.size() != 2 || c_in.dimensions().size() != 2 ||
      c_in.dimensions()[0] != e_dims[0] || c_in.dimensions()[1] != e_dims[1]) {
    return ffi::Error::InvalidArgument("E and C must be [V, D] tables of the same shape");
  }
  V = e_dims[0];
  D = e_dims[1];
  if (L < 1 || static_cast<int64_t>(tokens.element_count()) != N + 2 * L ||
      static_cast<int64_t>(docs.element_count()) != N + 2 * L) {
    return ffi::Error::InvalidArgument("tokens and docs must have N + 2 window entries");
  }
  const int32_t* tok = tokens.typed_data();
  const int32_t* doc = docs.typed_data();
  for (int64_t i = 0; i < N + 2 * L; ++i) {
    if (doc[i] >= 0 && (tok[i] < 0 || tok[i] >= V)) {
      return ffi::Error::InvalidArgument("token id " + std::to_string(tok[i]) +
                                         " outside [0, " + std::to_string(V) + ")");
    }
  }
  float* E = e_out->typed_data();
  float* C = c_out->typed_data();
  if (E != e_in.typed_data()) std::memcpy(E, e_in.typed_data(), sizeof(float) * V * D);
  if (C != c_in.typed_data()) std::memcpy(C, c_in.typed_data(), sizeof(float) * V * D);
  return ffi::Error::Success();
}

// Trains centers [0, count) on one thread, or on two (see `threads` in dl_jax.text.native).
template <typename Draws>
void Run(float* E, float* C, const int32_t* tok, const int32_t* doc, const Draws& source,
         float lr, int64_t count, int64_t V, int64_t L, int64_t P, int64_t K, int64_t D,
         bool cbow, int64_t threads, double& loss, double& pairs) {
  if (threads <= 1 || count < 2) {
    TableRows rows{E, C, D};
    Train(rows, tok, doc, source, lr, 0, count, L, P, K, D, cbow, loss, pairs);
    return;
  }
  // Two threads, each running the sequential loop on half of the centers from the tables as
  // they were at the start of the step (see Merge for how the halves combine). Deterministic: no
  // thread ever sees the other's writes. Both threads then merge, each its half of the rows.
  const int64_t half = (count + 1) / 2;
  thread_local Overlay storage[4];
  Overlay* overlays = storage;  // the calling thread's, also in the worker
  for (int i = 0; i < 4; ++i) overlays[i].Start(i % 2 ? C : E, V, D);
  OverlayRows first{overlays[0], overlays[1]}, second{overlays[2], overlays[3]};
  double loss2 = 0.0, pairs2 = 0.0;
  const int32_t mid = static_cast<int32_t>(V / 2);
  std::atomic<int> trained{0};
  auto wait_for_both = [&trained] {
    trained.fetch_add(1);
    while (trained.load() < 2) std::this_thread::yield();
  };
  std::thread worker([&] {
    Train(second, tok, doc, source, lr, half, count, L, P, K, D, cbow, loss2, pairs2);
    wait_for_both();
    Merge(E, overlays[0], overlays[2], mid, static_cast<int32_t>(V));
    Merge(C, overlays[1], overlays[3], mid, static_cast<int32_t>(V));
  });
  Train(first, tok, doc, source, lr, 0, half, L, P, K, D, cbow, loss, pairs);
  wait_for_both();
  Merge(E, overlays[0], overlays[2], 0, mid);
  Merge(C, overlays[1], overlays[3], 0, mid);
  worker.join();
  for (int i = 0; i < 4; ++i) overlays[i].Forget();
  loss += loss2;
  pairs += pairs2;
}

ffi::Error Word2VecStepImpl(ffi::Buffer<ffi::F32> e_in, ffi::Buffer<ffi::F32> c_in,
                            ffi::Buffer<ffi::S32> tokens, ffi::Buffer<ffi::S32> docs,
                            ffi::Buffer<ffi::S32> widths, ffi::Buffer<ffi::S32> negatives,
                            ffi::BufferR0<ffi::F32> lr_buf, ffi::BufferR0<ffi::S32> count_buf,
                            ffi::ResultBuffer<ffi::F32> e_out, ffi::ResultBuffer<ffi::F32> c_out,
                            ffi::ResultBufferR0<ffi::F32> loss_out,
                            ffi::ResultBufferR0<ffi::F32> pairs_out, int64_t cbow,
                            int64_t window, int64_t threads) {
  const int64_t L = window;
  const int64_t N = static_cast<int64_t>(widths.element_count());
  const auto neg_dims = negatives.dimensions();
  if (neg_dims.size() != 3 || neg_dims[0] != N || (neg_dims[1] != 1 && neg_dims[1] != 2 * L)) {
    return ffi::Error::InvalidArgument("negatives must be [N, 1 or 2 window, k]");
  }
  int64_t V = 0, D = 0;
  ffi::Error status = Prepare(e_in, c_in, tokens, docs, N, L, e_out, c_out, V, D);
  if (status.failure()) return status;
  const int64_t K = neg_dims[2];
  const int64_t P = cbow ? 1 : neg_dims[1];  // CBOW uses slot 0
  const int32_t* neg = negatives.typed_data();
  for (int64_t i = 0; i < N * neg_dims[1] * K; ++i) {
    if (neg[i] < 0 || neg[i] >= V) {
      return ffi::Error::InvalidArgument("noise word id " + std::to_string(neg[i]) +
                                         " outside [0, " + std::to_string(V) + ")");
    }
  }
  const int64_t count = std::min<int64_t>(std::max<int32_t>(*count_buf.typed_data(), 0), N);
  GivenDraws source{widths.typed_data(), neg, L, P, K, neg_dims[1] * K};
  double loss = 0.0, pairs = 0.0;
  Run(e_out->typed_data(), c_out->typed_data(), tokens.typed_data(), docs.typed_data(), source,
      *lr_buf.typed_data(), count, V, L, P, K, D, cbow != 0, threads, loss, pairs);
  *loss_out->typed_data() = static_cast<float>(loss);
  *pairs_out->typed_data() = static_cast<float>(pairs);
  return ffi::Error::Success();
}

ffi::Error Word2VecStepRngImpl(ffi::Buffer<ffi::F32> e_in, ffi::Buffer<ffi::F32> c_in,
                               ffi::Buffer<ffi::S32> tokens, ffi::Buffer<ffi::S32> docs,
                               ffi::Buffer<ffi::U32> seed_buf, ffi::Buffer<ffi::F32> accept_buf,
                               ffi::Buffer<ffi::S32> alias_buf, ffi::BufferR0<ffi::F32> lr_buf,
                               ffi::BufferR0<ffi::S32> count_buf,
                               ffi::ResultBuffer<ffi::F32> e_out,
                               ffi::ResultBuffer<ffi::F32> c_out,
                               ffi::ResultBufferR0<ffi::F32> loss_out,
                               ffi::ResultBufferR0<ffi::F32> pairs_out, int64_t cbow,
                               int64_t window, int64_t negative, int64_t threads) {
  const int64_t L = window, K = negative;
  const int64_t N = static_cast<int64_t>(tokens.element_count()) - 2 * L;
  if (K < 1) return ffi::Error::InvalidArgument("negative must be >= 1");
  if (seed_buf.element_count() != 2) return ffi::Error::InvalidArgument("seed must be uint32[2]");
  int64_t V = 0, D = 0;
  ffi::Error status = Prepare(e_in, c_in, tokens, docs, N, L, e_out, c_out, V, D);
  if (status.failure()) return status;
  if (static_cast<int64_t>(accept_buf.element_count()) != V ||
      static_cast<int64_t>(alias_buf.element_count()) != V) {
    return ffi::Error::InvalidArgument("accept and alias must have V = " + std::to_string(V) +
                                       " entries");
  }
  const int32_t* alias = alias_buf.typed_data();
  for (int64_t i = 0; i < V; ++i) {
    if (alias[i] < 0 || alias[i] >= V) {
      return ffi::Error::InvalidArgument("alias entry " + std::to_string(alias[i]) +
                                         " outside [0, " + std::to_string(V) + ")");
    }
  }
  const uint32_t* seed = seed_buf.typed_data();
  const int64_t P = cbow ? 1 : 2 * L;
  RngDraws source{(static_cast<uint64_t>(seed[0]) << 32) | seed[1], accept_buf.typed_data(),
                  alias, V, L, P, K};
  const int64_t count = std::min<int64_t>(std::max<int32_t>(*count_buf.typed_data(), 0), N);
  double loss = 0.0, pairs = 0.0;
  Run(e_out->typed_data(), c_out->typed_data(), tokens.typed_data(), docs.typed_data(), source,
      *lr_buf.typed_data(), count, V, L, P, K, D, cbow != 0, threads, loss, pairs);
  *loss_out->typed_data() = static_cast<float>(loss);
  *pairs_out->typed_data() = static_cast<float>(pairs);
  return ffi::Error::Success();
}

}  // namespace

// The float lanes of the vectors this build uses (16: AVX-512, 8: AVX, 4: otherwise).
extern "C" int DlJaxWord2VecLanes() { return static_cast<int>(kLanes); }

XLA_FFI_DEFINE_HANDLER_SYMBOL(DlJaxWord2VecStep, Word2VecStepImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()    // E
                                  .Arg<ffi::Buffer<ffi::F32>>()    // C
                                  .Arg<ffi::Buffer<ffi::S32>>()    // tokens
                                  .Arg<ffi::Buffer<ffi::S32>>()    // docs
                                  .Arg<ffi::Buffer<ffi::S32>>()    // widths
                                  .Arg<ffi::Buffer<ffi::S32>>()    // negatives
                                  .Arg<ffi::BufferR0<ffi::F32>>()  // lr
                                  .Arg<ffi::BufferR0<ffi::S32>>()  // count
                                  .Ret<ffi::Buffer<ffi::F32>>()    // E (aliased)
                                  .Ret<ffi::Buffer<ffi::F32>>()    // C (aliased)
                                  .Ret<ffi::BufferR0<ffi::F32>>()  // loss
                                  .Ret<ffi::BufferR0<ffi::F32>>()  // pairs
                                  .Attr<int64_t>("cbow")
                                  .Attr<int64_t>("window")
                                  .Attr<int64_t>("threads"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(DlJaxWord2VecStepRng, Word2VecStepRngImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()    // E
                                  .Arg<ffi::Buffer<ffi::F32>>()    // C
                                  .Arg<ffi::Buffer<ffi::S32>>()    // tokens
                                  .Arg<ffi::Buffer<ffi::S32>>()    // docs
                                  .Arg<ffi::Buffer<ffi::U32>>()    // seed
                                  .Arg<ffi::Buffer<ffi::F32>>()    // accept
                                  .Arg<ffi::Buffer<ffi::S32>>()    // alias
                                  .Arg<ffi::BufferR0<ffi::F32>>()  // lr
                                  .Arg<ffi::BufferR0<ffi::S32>>()  // count
                                  .Ret<ffi::Buffer<ffi::F32>>()    // E (aliased)
                                  .Ret<ffi::Buffer<ffi::F32>>()    // C (aliased)
                                  .Ret<ffi::BufferR0<ffi::F32>>()  // loss
                                  .Ret<ffi::BufferR0<ffi::F32>>()  // pairs
                                  .Attr<int64_t>("cbow")
                                  .Attr<int64_t>("window")
                                  .Attr<int64_t>("negative")
                                  .Attr<int64_t>("threads"));
