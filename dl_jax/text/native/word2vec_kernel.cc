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
// word2vec, a noise word equal to the center word is skipped. The randomness (window widths and
// noise words) is drawn by the caller, so the kernel is a pure function of its inputs, and it runs
// on one thread: the same inputs give the same bits.
//
// Inputs: E [V, D] and C [V, D] float32 (aliased to outputs 0 and 1: updated in place); tokens and
// docs int32 [N + 2L] (the stream slice, doc < 0 on padding); widths int32 [N] (in [1, L]);
// negatives int32 [N, P, k] (P = 1: shared by a center's pairs; P = 2L: one set per context slot);
// lr float32 []; count int32 [] (centers of the step to train, 0 for a no-op step).
// Attributes: cbow (0 or 1), window (L). Outputs: E, C, loss float32 [], pairs float32 []
// (skip-gram: (center, context) pairs; CBOW: centers with a non-empty window).

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

inline float Dot(const float* __restrict a, const float* __restrict b, int64_t d) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < d; ++i) s += a[i] * b[i];
  return s;
}

inline void Axpy(float a, const float* __restrict x, float* __restrict y, int64_t d) {
#pragma omp simd
  for (int64_t i = 0; i < d; ++i) y[i] += a * x[i];
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

// One output word: C[w] += g l1 and neu1e += g C[w] (the old C[w]); adds its loss
// (label 1: -log sigma(f), label 0: -log sigma(-f)).
inline void OutputUpdate(const float* __restrict l1, float* __restrict out,
                         float* __restrict neu1e, float label, float lr, int64_t d,
                         LogLoss& loss) {
  const float f = Dot(l1, out, d);
  const float z = std::exp(-std::fabs(f));
  const float sig = f >= 0.0f ? 1.0f / (1.0f + z) : z / (1.0f + z);
  const float g = lr * (label - sig);
  const float margin = label > 0.5f ? -f : f;  // -log p = softplus(margin)
  const double zd = z;
  loss.Add(margin > 0.0f ? zd / (1.0 + zd) : 1.0 / (1.0 + zd), margin);
#pragma omp simd
  for (int64_t i = 0; i < d; ++i) {
    const float o = out[i];
    neu1e[i] += g * o;
    out[i] = o + g * l1[i];
  }
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

// Prefetches the rows center t will read and write.
inline void PrefetchCenter(const float* E, const float* C, const int32_t* tok,
                           const int32_t* doc, const int32_t* negs, int64_t pos, int64_t w,
                           int64_t n_negs, int64_t d) {
  if (doc[pos] < 0) return;
  PrefetchRow(C + static_cast<int64_t>(tok[pos]) * d, d);
  for (int64_t j = 0; j < n_negs; ++j) PrefetchRow(C + static_cast<int64_t>(negs[j]) * d, d);
  for (int64_t o = -w; o <= w; ++o) {
    if (o != 0 && doc[pos + o] == doc[pos]) PrefetchRow(E + static_cast<int64_t>(tok[pos + o]) * d, d);
  }
}

// The sequential loop over centers [begin, end); `rows` gives the row of E or C to read and update.
template <typename Rows>
void Train(Rows& rows, const float* E, const float* C, const int32_t* tok, const int32_t* doc,
           const int32_t* width, const int32_t* neg, float lr, int64_t begin, int64_t end,
           int64_t L, int64_t P, int64_t K, int64_t D, bool cbow, double& loss, double& pairs) {
  // Rows of the first centers; then each center prefetches those of the center kAhead later.
  for (int64_t t = begin; t < std::min<int64_t>(begin + kAhead, end); ++t) {
    PrefetchCenter(E, C, tok, doc, neg + t * P * K, L + t,
                   std::min<int64_t>(std::max<int32_t>(width[t], 1), L), P * K, D);
  }
  std::vector<float> neu1e(D), h(D);
  LogLoss log_loss;
  for (int64_t t = begin; t < end; ++t) {
    const int64_t pos = L + t;
    if (t + kAhead < end) {
      PrefetchCenter(E, C, tok, doc, neg + (t + kAhead) * P * K, pos + kAhead,
                     std::min<int64_t>(std::max<int32_t>(width[t + kAhead], 1), L), P * K, D);
    }
    const int32_t center_doc = doc[pos];
    if (center_doc < 0) continue;
    const int32_t center = tok[pos];
    float* c_center = rows.C(center);
    const int64_t w = std::min<int64_t>(std::max<int32_t>(width[t], 1), L);
    const int32_t* center_negs = neg + t * P * K;
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
      OutputUpdate(h.data(), c_center, neu1e.data(), 1.0f, lr, D, log_loss);
      for (int64_t j = 0; j < K; ++j) {
        const int32_t noise = center_negs[j];
        if (noise == center) continue;
        OutputUpdate(h.data(), rows.C(noise), neu1e.data(), 0.0f, lr, D, log_loss);
      }
      for (int64_t o = -w; o <= w; ++o) {
        if (o == 0 || doc[pos + o] != center_doc) continue;
        Axpy(1.0f, neu1e.data(), rows.E(tok[pos + o]), D);
      }
      pairs += 1.0;
    } else {
      for (int64_t o = -w; o <= w; ++o) {
        if (o == 0 || doc[pos + o] != center_doc) continue;
        float* l1 = rows.E(tok[pos + o]);
        // Context slot j in [0, 2L): offsets -L..-1, 1..L (as `models.stream_window_mask`).
        const int64_t slot = o < 0 ? o + L : o + L - 1;
        const int32_t* pair_negs = center_negs + (P == 1 ? 0 : slot) * K;
        std::fill(neu1e.begin(), neu1e.end(), 0.0f);
        OutputUpdate(l1, c_center, neu1e.data(), 1.0f, lr, D, log_loss);
        for (int64_t j = 0; j < K; ++j) {
          const int32_t noise = pair_negs[j];
          if (noise == center) continue;
          OutputUpdate(l1, rows.C(noise), neu1e.data(), 0.0f, lr, D, log_loss);
        }
        Axpy(1.0f, neu1e.data(), l1, D);
        pairs += 1.0;
      }
    }
  }
  log_loss.Flush();
  loss += log_loss.sum;
}

// Rows straight from the tables (one thread).
struct TableRows {
  float* e;
  float* c;
  int64_t d;
  float* E(int32_t r) { return e + static_cast<int64_t>(r) * d; }
  float* C(int32_t r) { return c + static_cast<int64_t>(r) * d; }
};

// A thread's private copy of the rows it touched: it reads its own updates and not the other
// thread's; the tables are not written until both are done.
struct Overlay {
  // Kept across calls by the calling thread (grown, never shrunk): no allocation per step.
  struct Storage {
    std::vector<int32_t> slot;  // row -> index in `data`, -1 if not copied yet
    std::vector<int32_t> rows;
    std::vector<float> data;
  };
  const float* table;
  int64_t d;
  Storage& st;
  Overlay(const float* t, int64_t v, int64_t dim, Storage& storage)
      : table(t), d(dim), st(storage) {
    if (static_cast<int64_t>(st.slot.size()) < v) st.slot.assign(v, -1);
    if (static_cast<int64_t>(st.data.size()) < v * dim) st.data.resize(v * dim);
    st.rows.clear();
  }
  float* Row(int32_t r) {
    int32_t s = st.slot[r];
    if (s < 0) {
      s = st.slot[r] = static_cast<int32_t>(st.rows.size());
      st.rows.push_back(r);
      std::memcpy(st.data.data() + s * d, table + static_cast<int64_t>(r) * d,
                  sizeof(float) * d);
    }
    return st.data.data() + static_cast<int64_t>(s) * d;
  }
  // data := data - table (the thread's change of each row), while no one writes the table.
  void ToDelta() {
    for (size_t s = 0; s < st.rows.size(); ++s) {
      const float* base = table + static_cast<int64_t>(st.rows[s]) * d;
      float* row = st.data.data() + s * d;
      for (int64_t i = 0; i < d; ++i) row[i] -= base[i];
    }
  }
  // Adds the changes to the table and forgets the rows.
  void AddTo(float* out) {
    for (size_t s = 0; s < st.rows.size(); ++s) {
      Axpy(1.0f, st.data.data() + s * d, out + static_cast<int64_t>(st.rows[s]) * d, d);
      st.slot[st.rows[s]] = -1;
    }
    st.rows.clear();
  }
};

struct OverlayRows {
  Overlay e, c;
  float* E(int32_t r) { return e.Row(r); }
  float* C(int32_t r) { return c.Row(r); }
};

ffi::Error Word2VecStepImpl(ffi::Buffer<ffi::F32> e_in, ffi::Buffer<ffi::F32> c_in,
                            ffi::Buffer<ffi::S32> tokens, ffi::Buffer<ffi::S32> docs,
                            ffi::Buffer<ffi::S32> widths, ffi::Buffer<ffi::S32> negatives,
                            ffi::BufferR0<ffi::F32> lr_buf, ffi::BufferR0<ffi::S32> count_buf,
                            ffi::ResultBuffer<ffi::F32> e_out, ffi::ResultBuffer<ffi::F32> c_out,
                            ffi::ResultBufferR0<ffi::F32> loss_out,
                            ffi::ResultBufferR0<ffi::F32> pairs_out, int64_t cbow,
                            int64_t window, int64_t threads) {
  const auto e_dims = e_in.dimensions();
  if (e_dims.size() != 2 || c_in.dimensions().size() != 2 ||
      c_in.dimensions()[0] != e_dims[0] || c_in.dimensions()[1] != e_dims[1]) {
    return ffi::Error::InvalidArgument("E and C must be [V, D] tables of the same shape");
  }
  const int64_t V = e_dims[0], D = e_dims[1], L = window;
  const int64_t N = static_cast<int64_t>(widths.element_count());
  const auto neg_dims = negatives.dimensions();
  if (L < 1 || static_cast<int64_t>(tokens.element_count()) != N + 2 * L ||
      static_cast<int64_t>(docs.element_count()) != N + 2 * L) {
    return ffi::Error::InvalidArgument("tokens and docs must have N + 2 window entries");
  }
  if (neg_dims.size() != 3 || neg_dims[0] != N || (neg_dims[1] != 1 && neg_dims[1] != 2 * L)) {
    return ffi::Error::InvalidArgument("negatives must be [N, 1 or 2 window, k]");
  }
  const int64_t P = neg_dims[1], K = neg_dims[2];
  float* E = e_out->typed_data();
  float* C = c_out->typed_data();
  if (E != e_in.typed_data()) std::memcpy(E, e_in.typed_data(), sizeof(float) * V * D);
  if (C != c_in.typed_data()) std::memcpy(C, c_in.typed_data(), sizeof(float) * V * D);
  const int32_t* tok = tokens.typed_data();
  const int32_t* doc = docs.typed_data();
  const int32_t* width = widths.typed_data();
  const int32_t* neg = negatives.typed_data();
  const float lr = *lr_buf.typed_data();
  const int64_t count = std::min<int64_t>(std::max<int32_t>(*count_buf.typed_data(), 0), N);

  for (int64_t i = 0; i < N + 2 * L; ++i) {
    if (doc[i] >= 0 && (tok[i] < 0 || tok[i] >= V)) {
      return ffi::Error::InvalidArgument("token id " + std::to_string(tok[i]) +
                                         " outside [0, " + std::to_string(V) + ")");
    }
  }
  for (int64_t i = 0; i < N * P * K; ++i) {
    if (neg[i] < 0 || neg[i] >= V) {
      return ffi::Error::InvalidArgument("noise word id " + std::to_string(neg[i]) +
                                         " outside [0, " + std::to_string(V) + ")");
    }
  }

  double loss = 0.0, pairs = 0.0;
  if (threads <= 1 || count < 2) {
    TableRows rows{E, C, D};
    Train(rows, E, C, tok, doc, width, neg, lr, 0, count, L, P, K, D, cbow != 0, loss, pairs);
  } else {
    // Two threads, each running the sequential loop on half of the centers from the tables as
    // they were at the start of the step; then the tables get both halves' changes, first half
    // first. Deterministic: no thread ever sees the other's writes.
    const int64_t half = (count + 1) / 2;
    thread_local Overlay::Storage storage[4];
    OverlayRows first{Overlay(E, V, D, storage[0]), Overlay(C, V, D, storage[1])};
    OverlayRows second{Overlay(E, V, D, storage[2]), Overlay(C, V, D, storage[3])};
    double loss2 = 0.0, pairs2 = 0.0;
    std::thread worker([&] {
      Train(second, E, C, tok, doc, width, neg, lr, half, count, L, P, K, D, cbow != 0, loss2,
            pairs2);
      second.e.ToDelta();
      second.c.ToDelta();
    });
    Train(first, E, C, tok, doc, width, neg, lr, 0, half, L, P, K, D, cbow != 0, loss, pairs);
    first.e.ToDelta();
    first.c.ToDelta();
    worker.join();
    first.e.AddTo(E);
    first.c.AddTo(C);
    second.e.AddTo(E);
    second.c.AddTo(C);
    loss += loss2;
    pairs += pairs2;
  }
  *loss_out->typed_data() = static_cast<float>(loss);
  *pairs_out->typed_data() = static_cast<float>(pairs);
  return ffi::Error::Success();
}

}  // namespace

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
