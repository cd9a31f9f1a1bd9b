// Exact squared-L2 top-k for a few queries (q <= kGemvMaxQ): the database read once, in place.
//
// At one to a few queries the search is a matrix-vector product bound by memory bandwidth, and
// l2_topk.h's GEMM path would spend its time packing tiles and multiplying zero query rows. Here
// each database row is read straight from the array: per row, one 16-lane accumulator per query
// (and one for the row's norm) runs over the dimensions in blocks of 16, and the accumulators of
// 16 consecutive rows are reduced by a fixed tree of lane shuffles into one vector of 16 row
// sums (ReduceRows), then filtered against each query's k-th distance like the GEMM path.
//
// Arithmetic (also what the half-precision re-ranking uses, so the two agree bit for bit):
//   dot(a, b): lane j of block-wise FMA chains over dimensions j, j + 16, ..., the last block
//   zero-padded, then HSum's tree: h8[j] = v[j] + v[j + 8], h4[j] = h8[j] + h8[j + 4],
//   h2[j] = h4[j] + h4[j + 2], sum = h2[0] + h2[1];
//   distance = (dot(q, q) + dot(x, x)) + dot(q, x) * -2.
// Identical rows get identical distances (the tree treats every row alike). The GEMM path sums
// in dimension order, so distances may differ from it in the last bits; each path is exact for
// its own float32 distances, with the same keys and tie rule.
#ifndef CBIR_JAX_KERNELS_NATIVE_L2_GEMV_H_
#define CBIR_JAX_KERNELS_NATIVE_L2_GEMV_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <utility>
#include <vector>

#include "l2_topk.h"

namespace cbir_jax {

// Queries up to this count take this path (measured against the GEMM path: docs/BENCHMARKS.md).
constexpr int64_t kGemvMaxQ = 16;
// Rows per tile handed to a worker.
constexpr int64_t kGemvTileRows = 2048;

typedef int32_t v16i __attribute__((vector_size(64)));

#if defined(__clang__)
#define CBIR_SHUFFLE2(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define CBIR_SHUFFLE2(a, b, ...) __builtin_shuffle(a, b, v16i{__VA_ARGS__})
#endif

// Sum of v's 16 lanes in HSum's order (see the header comment).
inline float HSum(v16 v) {
  float h8[8], h4[4], h2[2];
  for (int j = 0; j < 8; ++j) h8[j] = v[j] + v[j + 8];
  for (int j = 0; j < 4; ++j) h4[j] = h8[j] + h8[j + 4];
  for (int j = 0; j < 2; ++j) h2[j] = h4[j] + h4[j + 2];
  return h2[0] + h2[1];
}

// Lane r = HSum(a[r]), bit for bit: each level adds the same lane pairs HSum adds.
inline v16 ReduceRows(const v16* a) {
  v16 s[8], u[4], w[2];
  for (int i = 0; i < 8; ++i) {
    s[i] = CBIR_SHUFFLE2(a[2 * i], a[2 * i + 1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21,
                         22, 23) +
           CBIR_SHUFFLE2(a[2 * i], a[2 * i + 1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27,
                         28, 29, 30, 31);
  }
  for (int i = 0; i < 4; ++i) {
    u[i] = CBIR_SHUFFLE2(s[2 * i], s[2 * i + 1], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24,
                         25, 26, 27) +
           CBIR_SHUFFLE2(s[2 * i], s[2 * i + 1], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28,
                         29, 30, 31);
  }
  for (int i = 0; i < 2; ++i) {
    w[i] = CBIR_SHUFFLE2(u[2 * i], u[2 * i + 1], 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24,
                         25, 28, 29) +
           CBIR_SHUFFLE2(u[2 * i], u[2 * i + 1], 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26,
                         27, 30, 31);
  }
  return CBIR_SHUFFLE2(w[0], w[1], 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30) +
         CBIR_SHUFFLE2(w[0], w[1], 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}

// Block p of a row of d floats, zero-padded past d.
inline v16 LoadBlock(const float* row, int64_t p, int64_t d) {
  v16 v = {};
  if (16 * p + 16 <= d) {
    std::memcpy(&v, row + 16 * p, sizeof(v));
    return v;
  }
  const int64_t c = std::min<int64_t>(16, d - 16 * p);
  std::memcpy(&v, row + 16 * p, c * sizeof(float));
  return v;
}

// The 16-lane FMA accumulator of dot(a, b) (a is given as zero-padded blocks).
inline v16 DotLanes(const v16* a_blocks, const float* b, int64_t d) {
  v16 acc = {};
  const int64_t blocks = (d + 15) / 16;
  for (int64_t p = 0; p < blocks; ++p) acc += LoadBlock(b, p, d) * a_blocks[p];
  return acc;
}

// The GEMV path's float32 distance of one (query, row) pair, bit for bit.
inline float GemvDistance(const v16* q_blocks, float qq, const float* x, int64_t d) {
  const int64_t blocks = (d + 15) / 16;
  v16 xx = {}, qx = {};
  for (int64_t p = 0; p < blocks; ++p) {
    const v16 xb = LoadBlock(x, p, d);
    xx += xb * xb;
    qx += xb * q_blocks[p];
  }
  return (qq + HSum(xx)) + HSum(qx) * -2.0f;
}

// Zero-padded blocks of each query and its squared norm, in the GEMV arithmetic.
struct GemvQueries {
  GemvQueries(const float* queries, int64_t q, int64_t d)
      : blocks((d + 15) / 16), data(q * blocks), qq(q) {
    for (int64_t i = 0; i < q; ++i) {
      for (int64_t p = 0; p < blocks; ++p) data[i * blocks + p] = LoadBlock(queries + i * d, p, d);
      qq[i] = HSum(DotLanes(&data[i * blocks], queries + i * d, d));
    }
  }
  const v16* query(int64_t i) const { return &data[i * blocks]; }
  int64_t blocks;
  std::vector<v16> data;
  std::vector<float> qq;
};

inline void OfferGemv(WorkerState* w, int64_t k, int64_t qi, int32_t key, int32_t row) {
  TopKHeap heap(&w->keys[qi * k], &w->idx[qi * k], k);
  if (heap.Offer(key, row, &w->size[qi])) w->bound[qi] = FilterBound(heap.RootKey());
}

// Scores rows [row0, row0 + rows) for every query into the worker's heaps. Q, the query count,
// is a template argument so that the per-row accumulators stay in registers.
template <int Q>
void GemvTile(const GemvQueries& qs, const float* database, int64_t d, int64_t k, int64_t row0,
              int64_t rows, WorkerState* w) {
  constexpr int64_t q = Q;
  const int64_t blocks = qs.blocks;
  // acc[(qi + 1) * 16 + r]: query qi's accumulator of row r; acc[r]: the row's norm.
  v16 acc[(Q + 1) * 16];
  int64_t r0 = 0;
  for (; r0 + 16 <= rows; r0 += 16) {
    for (int r = 0; r < 16; ++r) {
      const float* x = database + (row0 + r0 + r) * d;
      v16 xx = {};
      v16 qx[Q] = {};
      for (int64_t p = 0; p < blocks; ++p) {
        const v16 xb = LoadBlock(x, p, d);
        xx += xb * xb;
#pragma GCC unroll 16
        for (int64_t qi = 0; qi < q; ++qi) qx[qi] += xb * qs.data[qi * blocks + p];
      }
      acc[r] = xx;
      for (int64_t qi = 0; qi < q; ++qi) acc[(qi + 1) * 16 + r] = qx[qi];
    }
    const v16 norms = ReduceRows(acc);
    for (int64_t qi = 0; qi < q; ++qi) {
      const v16 dist = (qs.qq[qi] + norms) + ReduceRows(&acc[(qi + 1) * 16]) * -2.0f;
      uint32_t mask = PassMask(dist, w->bound[qi]);
      while (mask) {
        const int lane = __builtin_ctz(mask);
        mask &= mask - 1;
        // Offers in row order; a row whose distance no longer passes is rejected by the heap.
        OfferGemv(w, k, qi, FloatKey(dist[lane]), static_cast<int32_t>(row0 + r0 + lane));
      }
    }
  }
  for (; r0 < rows; ++r0) {  // the tile's last rows, one at a time, same arithmetic
    const float* x = database + (row0 + r0) * d;
    for (int64_t qi = 0; qi < q; ++qi) {
      const float dist = GemvDistance(qs.query(qi), qs.qq[qi], x, d);
      if (!(dist > w->bound[qi])) {
        OfferGemv(w, k, qi, FloatKey(dist), static_cast<int32_t>(row0 + r0));
      }
    }
  }
}

using GemvTileFn = void (*)(const GemvQueries&, const float*, int64_t, int64_t, int64_t, int64_t,
                           WorkerState*);

template <int... Qs>
GemvTileFn GemvTileFor(int64_t q, std::integer_sequence<int, Qs...>) {
  GemvTileFn fns[] = {&GemvTile<Qs + 1>...};
  return fns[q - 1];
}

// The whole search for q <= kGemvMaxQ queries; arguments as SearchL2's.
inline void SearchL2Gemv(const float* queries, const float* database, int64_t q, int64_t n,
                         int64_t d, int64_t k, int64_t n_valid, int32_t offset,
                         int64_t max_workers,
                         const std::function<void(int64_t, const std::function<void(int64_t)>&)>&
                             run_workers,
                         int32_t* out_keys, int32_t* out_idx) {
  n_valid = std::clamp<int64_t>(n_valid, 0, n);
  const GemvQueries qs(queries, q, d);
  if (q == 0) return;
  const GemvTileFn tile_fn = GemvTileFor(q, std::make_integer_sequence<int, kGemvMaxQ>());
  const int64_t tiles = (n_valid + kGemvTileRows - 1) / kGemvTileRows;
  const int64_t workers = std::max<int64_t>(1, std::min(max_workers, tiles));
  std::vector<WorkerState> state(workers);
  std::atomic<int64_t> next{0};
  run_workers(workers, [&](int64_t slot) {
    WorkerState* w = &state[slot];
    w->keys.assign(q * k, kPadKey);
    w->idx.assign(q * k, 0);
    w->size.assign(q, 0);
    w->bound.assign(q, std::nanf(""));
    for (int64_t t = next.fetch_add(1); t < tiles; t = next.fetch_add(1)) {
      const int64_t row0 = t * kGemvTileRows;
      tile_fn(qs, database, d, k, row0, std::min(kGemvTileRows, n_valid - row0), w);
    }
  });
  MergeWorkers(state, q, k, offset, out_keys, out_idx);
}

}  // namespace cbir_jax

#endif  // CBIR_JAX_KERNELS_NATIVE_L2_GEMV_H_
