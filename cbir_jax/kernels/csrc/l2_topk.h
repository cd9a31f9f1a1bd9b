// Exact squared-L2 top-k with the products consumed while still in cache.
//
// The pure-JAX kernel (euclidean.py) writes each (q, chunk) block of products to memory and
// reads it back to select; here every 8-query x 32-row block of products lives in registers,
// is turned into distances and compared with each query's current k-th distance at once, and
// only the rare rows that pass are pushed into a per-query heap. Same results as the JAX
// kernel's contract: squared L2 as (|q|^2 + |x|^2) + (-2 q).x in float32 (q.x summed in
// dimension order by one FMA chain per pair, so identical rows give identical distances),
// int32 order keys (negatives -> 0, +inf after every finite value, NaN last), ties to the lower
// database index.
//
// No dependency on XLA: ffi.cc binds it to an XLA FFI custom call; the caller supplies the
// parallelism (RunWorkers).
#ifndef CBIR_JAX_KERNELS_NATIVE_L2_TOPK_H_
#define CBIR_JAX_KERNELS_NATIVE_L2_TOPK_H_

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <utility>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace cbir_jax {

// Keys, as topk.py defines them.
constexpr int32_t kPadKey = 0x7FFFFFFE;
constexpr int32_t kInfKey = 0x7F800000;
constexpr int32_t kNanKey = 0x7FC00000;

inline int32_t FloatKey(float d) {
  if (d < 0.0f) d = 0.0f;
  int32_t bits;
  std::memcpy(&bits, &d, sizeof(bits));
  bits &= 0x7FFFFFFF;
  return bits > kInfKey ? kNanKey : bits;
}

// Distance bound that lets every row whose key may beat `key` through the filter
// `!(distance > bound)`: the key's float itself, or NaN (everything passes) for NaN/pad keys.
inline float FilterBound(int32_t key) {
  if (key > kInfKey) return std::nanf("");
  float f;
  std::memcpy(&f, &key, sizeof(f));
  return f;
}

// Rows of the micro-kernel's block (queries) and columns (database rows, two 16-float vectors).
constexpr int kMR = 8;
constexpr int kNR = 32;

typedef float v16 __attribute__((vector_size(64)));

// Max-heap of the k best (key, index) pairs of one query; the root is the worst kept.
class TopKHeap {
 public:
  TopKHeap(int32_t* keys, int32_t* idx, int64_t k) : keys_(keys), idx_(idx), k_(k) {}

  static bool Worse(int32_t ka, int32_t ia, int32_t kb, int32_t ib) {
    return ka > kb || (ka == kb && ia > ib);
  }

  // Offers (key, index); returns whether the heap is full and its root (the filter bound) may
  // have changed.
  bool Offer(int32_t key, int32_t index, int64_t* size) {
    int64_t n = *size;
    if (n < k_) {
      int64_t i = n;
      while (i > 0) {
        int64_t parent = (i - 1) / 2;
        if (!Worse(key, index, keys_[parent], idx_[parent])) break;
        keys_[i] = keys_[parent];
        idx_[i] = idx_[parent];
        i = parent;
      }
      keys_[i] = key;
      idx_[i] = index;
      *size = n + 1;
      return *size == k_;
    }
    if (!Worse(keys_[0], idx_[0], key, index)) return false;
    int64_t i = 0;
    while (true) {
      int64_t child = 2 * i + 1;
      if (child >= k_) break;
      if (child + 1 < k_ && Worse(keys_[child + 1], idx_[child + 1], keys_[child], idx_[child])) {
        ++child;
      }
      if (!Worse(keys_[child], idx_[child], key, index)) break;
      keys_[i] = keys_[child];
      idx_[i] = idx_[child];
      i = child;
    }
    keys_[i] = key;
    idx_[i] = index;
    return true;
  }

  int32_t RootKey() const { return keys_[0]; }

 private:
  int32_t* keys_;
  int32_t* idx_;
  int64_t k_;
};

// One worker's running top-k of every query (heaps in place), over any set of database tiles.
struct WorkerState {
  std::vector<int32_t> keys, idx;  // (q, k)
  std::vector<int64_t> size;       // (q,)
  std::vector<float> bound;        // (q,) filter bound of each query
  std::vector<float> panel;        // packed tile
  std::vector<float> norms;        // tile row norms
};

// Merges the workers' heaps: keys/indices (q, k), ascending (key, index); slots without a row
// hold kPadKey and index `offset`.
inline void MergeWorkers(const std::vector<WorkerState>& workers, int64_t q, int64_t k,
                         int32_t offset, int32_t* out_keys, int32_t* out_idx) {
  std::vector<std::pair<int32_t, int32_t>> all;
  for (int64_t qi = 0; qi < q; ++qi) {
    all.clear();
    for (const WorkerState& w : workers) {
      if (w.size.empty()) continue;  // a worker slot that never ran
      for (int64_t s = 0; s < w.size[qi]; ++s) {
        all.emplace_back(w.keys[qi * k + s], w.idx[qi * k + s]);
      }
    }
    const int64_t take = std::min<int64_t>(k, all.size());
    std::partial_sort(all.begin(), all.begin() + take, all.end());
    for (int64_t s = 0; s < k; ++s) {
      out_keys[qi * k + s] = s < take ? all[s].first : kPadKey;
      out_idx[qi * k + s] = (s < take ? all[s].second : 0) + offset;
    }
  }
}

struct L2Problem {
  const float* queries;   // (q, d) row-major
  const float* database;  // (n, d) row-major
  int64_t q, n, d, k;
  int64_t n_valid;        // rows at or beyond are excluded
  int64_t tile;           // database rows per tile, a multiple of kNR
};

// Products of a kMR x kNR block: a = kMR query rows (stride lda), b = packed panel (d, kNR).
inline void MicroKernel(const float* a, int64_t lda, const float* b, int64_t d,
                        v16 (&acc)[kMR][2]) {
  v16 c[kMR][2];
#pragma GCC unroll 8
  for (int i = 0; i < kMR; ++i) c[i][0] = c[i][1] = v16{};
  for (int64_t p = 0; p < d; ++p) {
    v16 b0, b1;
    std::memcpy(&b0, b + p * kNR, sizeof(v16));
    std::memcpy(&b1, b + p * kNR + 16, sizeof(v16));
#pragma GCC unroll 8
    for (int i = 0; i < kMR; ++i) {
      float ai = a[i * lda + p];
      c[i][0] += b0 * ai;
      c[i][1] += b1 * ai;
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < kMR; ++i) {
    acc[i][0] = c[i][0];
    acc[i][1] = c[i][1];
  }
}

// Lanes of `dist` that pass `!(dist > bound)` (NaN passes), as a bit mask.
inline uint32_t PassMask(v16 dist, float bound) {
#if defined(__AVX512F__)
  __m512 v;
  std::memcpy(&v, &dist, sizeof(v));
  return _mm512_cmp_ps_mask(v, _mm512_set1_ps(bound), _CMP_NGT_UQ);
#else
  uint32_t mask = 0;
  float lanes[16];
  std::memcpy(lanes, &dist, sizeof(lanes));
  for (int l = 0; l < 16; ++l) mask |= static_cast<uint32_t>(!(lanes[l] > bound)) << l;
  return mask;
#endif
}

class L2TopK {
 public:
  // `padded_queries`: q rounded up to kMR rows (extra rows zero), row-major (., d).
  L2TopK(const L2Problem& p, const float* padded_queries, const float* query_norms)
      : p_(p), qpad_(padded_queries), qq_(query_norms) {}

  void InitWorker(WorkerState* w) const {
    w->keys.assign(p_.q * p_.k, kPadKey);
    w->idx.assign(p_.q * p_.k, 0);
    w->size.assign(p_.q, 0);
    w->bound.assign(p_.q, std::nanf(""));
    w->panel.resize(p_.tile * p_.d);
    w->norms.resize(p_.tile);
  }

  // Scores database rows [row0, row0 + tile) clipped to n_valid into the worker's heaps.
  void Tile(int64_t row0, WorkerState* w) const {
    const int64_t d = p_.d, rows = std::min(p_.tile, p_.n_valid - row0);
    if (rows <= 0) return;
    const int64_t panels = (rows + kNR - 1) / kNR;
    // Pack: panel j holds rows row0 + 32 j .. + 31 as (d, 32); rows past the end are zero with
    // an infinite norm (distance +inf or NaN), and are rejected by the row check below.
    float* packed = w->panel.data();
    for (int64_t j = 0; j < panels; ++j) {
      float* dst = packed + j * d * kNR;
      for (int r = 0; r < kNR; ++r) {
        int64_t row = j * kNR + r;
        float norm;
        if (row < rows) {
          const float* src = p_.database + (row0 + row) * d;
          float s = 0.0f;
          for (int64_t c = 0; c < d; ++c) {
            dst[c * kNR + r] = src[c];
            s += src[c] * src[c];
          }
          norm = s;
        } else {
          for (int64_t c = 0; c < d; ++c) dst[c * kNR + r] = 0.0f;
          norm = INFINITY;
        }
        w->norms[row] = norm;
      }
    }
    v16 acc[kMR][2];
    for (int64_t qb = 0; qb < p_.q; qb += kMR) {
      const float* a = qpad_ + qb * d;
      const int live = static_cast<int>(std::min<int64_t>(kMR, p_.q - qb));
      for (int64_t j = 0; j < panels; ++j) {
        MicroKernel(a, d, packed + j * d * kNR, d, acc);
        v16 xx[2];
        std::memcpy(&xx[0], &w->norms[j * kNR], sizeof(v16));
        std::memcpy(&xx[1], &w->norms[j * kNR + 16], sizeof(v16));
        for (int i = 0; i < live; ++i) {
          const int64_t qi = qb + i;
          const float bound = w->bound[qi];
          for (int h = 0; h < 2; ++h) {
            v16 dist = (qq_[qi] + xx[h]) + acc[i][h] * -2.0f;
            uint32_t mask = PassMask(dist, bound);
            while (mask) {
              int lane = __builtin_ctz(mask);
              mask &= mask - 1;
              int64_t row = j * kNR + h * 16 + lane;
              if (row >= rows) continue;
              Offer(w, qi, FloatKey(dist[lane]), static_cast<int32_t>(row0 + row));
            }
          }
        }
      }
    }
  }

  void Merge(const std::vector<WorkerState>& workers, int32_t offset, int32_t* out_keys,
             int32_t* out_idx) const {
    MergeWorkers(workers, p_.q, p_.k, offset, out_keys, out_idx);
  }

 private:
  void Offer(WorkerState* w, int64_t qi, int32_t key, int32_t row) const {
    TopKHeap heap(&w->keys[qi * p_.k], &w->idx[qi * p_.k], p_.k);
    if (heap.Offer(key, row, &w->size[qi])) {
      w->bound[qi] = FilterBound(heap.RootKey());
    }
  }

  L2Problem p_;
  const float* qpad_;
  const float* qq_;
};

// Database rows per tile: a packed tile of about `bytes` (kept in L2), a multiple of kNR.
inline int64_t TileRows(int64_t d, int64_t bytes = 192 * 1024) {
  int64_t rows = bytes / (4 * std::max<int64_t>(d, 1));
  rows = std::max<int64_t>(kNR, rows / kNR * kNR);
  return std::min<int64_t>(rows, 4096);
}

// Runs the whole search. `run_workers(count, fn)` calls fn(slot) for distinct slots in
// [0, count), at least one, possibly concurrently, and returns when every call has returned.
// Tiles are handed out dynamically, so slots that never run leave no work undone.
inline void SearchL2(const float* queries, const float* database, int64_t q, int64_t n, int64_t d,
                     int64_t k, int64_t n_valid, int32_t offset, int64_t max_workers,
                     const std::function<void(int64_t, const std::function<void(int64_t)>&)>&
                         run_workers,
                     int32_t* out_keys, int32_t* out_idx) {
  L2Problem p{queries, database, q, n, d, k, std::clamp<int64_t>(n_valid, 0, n), TileRows(d)};
  const int64_t qpad_rows = (q + kMR - 1) / kMR * kMR;
  std::vector<float> qpad(qpad_rows * d, 0.0f), qq(qpad_rows, 0.0f);
  for (int64_t i = 0; i < q; ++i) {
    float s = 0.0f;
    for (int64_t c = 0; c < d; ++c) {
      float v = queries[i * d + c];
      qpad[i * d + c] = v;
      s += v * v;
    }
    qq[i] = s;
  }
  L2TopK search(p, qpad.data(), qq.data());
  const int64_t tiles = (p.n_valid + p.tile - 1) / p.tile;
  const int64_t workers = std::max<int64_t>(1, std::min(max_workers, tiles));
  std::vector<WorkerState> state(workers);
  std::atomic<int64_t> next{0};
  run_workers(workers, [&](int64_t w) {
    search.InitWorker(&state[w]);
    for (int64_t t = next.fetch_add(1); t < tiles; t = next.fetch_add(1)) {
      search.Tile(t * p.tile, &state[w]);
    }
  });
  search.Merge(state, offset, out_keys, out_idx);
}

}  // namespace cbir_jax

#endif  // CBIR_JAX_KERNELS_NATIVE_L2_TOPK_H_
