// Exact float32 squared-L2 top-k for a few queries from a bfloat16 copy of the database.
//
// The scan reads the bfloat16 copy (half the bytes) and computes approximate distances d~ to
// the rounded rows x~: (|q|^2 + |x~|^2) - 2 q.x~, with q.x~ in the GEMV arithmetic (l2_gemv.h)
// and |x~|^2 stored per row (float64, rounded to nearest: within the bound below). A row can enter a query's top k only
// if a rigorous lower bound of its float32 distance f(q, x) does not exceed the current k-th
// float32 distance T; such rows are re-scored exactly from the float32 row (GemvDistance, the
// same function as the float32 GEMV path) and offered to the heap. The results are therefore
// identical to the float32 search, bit for bit, whatever the rounding.
//
// The bound (per row, with u = 2^-24): let nu >= |x~| and delta >= |x - x~| (computed in
// float64 at index time, rounded up), s >= |q|, and gamma = 1.01 (d + 6) u / (1 - (d + 6) u).
// Any float32 evaluation of |q|^2 + |y|^2 - 2 q.y summing d products in any order, plus the two
// final additions, errs by at most gamma (|q| + |y|)^2 (the standard gamma_n bound of a sum of
// d terms; Cauchy-Schwarz bounds sum |q_i y_i| by |q| |y|). With E = gamma (s + nu + delta)^2,
// which covers y = x~ and y = x:
//   |q - x~| >= sqrt(max(0, d~ - E)),  |q - x| >= |q - x~| - delta,  f(q, x) >= |q - x|^2 - E.
// So f(q, x) > T whenever sqrt(max(0, d~ - E)) > delta + sqrt(T + E): such rows are skipped.
// The test itself is evaluated in float32 with its right side scaled by (1 + 2^-16), far above
// its own few roundings (the 1.01 in gamma covers the rounding of E).
#ifndef CBIR_JAX_KERNELS_NATIVE_L2_HALF_H_
#define CBIR_JAX_KERNELS_NATIVE_L2_HALF_H_

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <utility>
#include <vector>

#include "l2_gemv.h"
#include "l2_topk.h"

namespace cbir_jax {

typedef uint16_t v16h __attribute__((vector_size(32)));
typedef uint32_t v16u __attribute__((vector_size(64)));

// Block p of a row of d bfloat16 values as float32, zero-padded past d.
inline v16 LoadBf16Block(const uint16_t* row, int64_t p, int64_t d) {
  v16h h = {};
  if (16 * p + 16 <= d) {
    std::memcpy(&h, row + 16 * p, sizeof(h));
  } else {
    std::memcpy(&h, row + 16 * p, (d - 16 * p) * sizeof(uint16_t));
  }
  const v16u bits = __builtin_convertvector(h, v16u) << 16;
  v16 v;
  std::memcpy(&v, &bits, sizeof(v));
  return v;
}

inline v16 VSqrt(v16 v) {
#if defined(__AVX512F__)
  __m512 x;
  std::memcpy(&x, &v, sizeof(x));
  x = _mm512_sqrt_ps(x);  // correctly rounded, like std::sqrt
  std::memcpy(&v, &x, sizeof(v));
#else
  for (int l = 0; l < 16; ++l) v[l] = std::sqrt(v[l]);
#endif
  return v;
}

// Lanes where !(a > b) (NaN passes), as a bit mask.
inline uint32_t NotGreaterMask(v16 a, v16 b) {
#if defined(__AVX512F__)
  __m512 x, y;
  std::memcpy(&x, &a, sizeof(x));
  std::memcpy(&y, &b, sizeof(y));
  return _mm512_cmp_ps_mask(x, y, _CMP_NGT_UQ);
#else
  uint32_t mask = 0;
  for (int l = 0; l < 16; ++l) mask |= static_cast<uint32_t>(!(a[l] > b[l])) << l;
  return mask;
#endif
}

inline v16 VMax0(v16 v) {
  for (int l = 0; l < 16; ++l) v[l] = v[l] > 0.0f ? v[l] : 0.0f;
  return v;
}

struct HalfProblem {
  const uint16_t* half;  // (n, d) bfloat16 bits
  const float* full;     // (n, d) float32
  const float* err;      // (n,) delta >= |x - x~|
  const float* norm;     // (n,) nu >= |x~|
  const float* sq;       // (n,) |x~|^2 rounded to nearest (computed in float64)
  int64_t n, d, k;
  float gamma;
};

template <int Q>
void HalfTile(const GemvQueries& qs, const float* q_norms, const HalfProblem& p, int64_t row0,
              int64_t rows, WorkerState* w, int64_t* rescored) {
  const int64_t d = p.d, blocks = qs.blocks;
  v16 acc[(Q + 1) * 16];
  const float margin = 1.0f + 1.0f / 65536.0f;
  for (int64_t r0 = 0; r0 < rows; r0 += 16) {
    const int live = static_cast<int>(std::min<int64_t>(16, rows - r0));
    for (int r = 0; r < 16; ++r) {
      v16 qx[Q] = {};
      if (r < live) {
        const uint16_t* x = p.half + (row0 + r0 + r) * d;
        for (int64_t b = 0; b < blocks; ++b) {
          const v16 xb = LoadBf16Block(x, b, d);
#pragma GCC unroll 16
          for (int qi = 0; qi < Q; ++qi) qx[qi] += xb * qs.data[qi * blocks + b];
        }
      }
      for (int qi = 0; qi < Q; ++qi) acc[(qi + 1) * 16 + r] = qx[qi];
    }
    v16 norms = {}, nu = {}, delta = {};
    std::memcpy(&norms, p.sq + row0 + r0, live * sizeof(float));
    std::memcpy(&nu, p.norm + row0 + r0, live * sizeof(float));
    std::memcpy(&delta, p.err + row0 + r0, live * sizeof(float));
    for (int qi = 0; qi < Q; ++qi) {
      const v16 approx = (qs.qq[qi] + norms) + ReduceRows(&acc[(qi + 1) * 16]) * -2.0f;
      const v16 scale = q_norms[qi] + nu + delta;
      const v16 e = p.gamma * (scale * scale);
      const v16 lhs = VSqrt(VMax0(approx - e));
      const float t = w->bound[qi];  // NaN until the heap is full: every row passes
      const v16 rhs = (delta + VSqrt(t + e)) * margin;
      uint32_t mask = NotGreaterMask(lhs, rhs) & ((1u << live) - 1u);
      while (mask) {
        const int lane = __builtin_ctz(mask);
        mask &= mask - 1;
        const int64_t row = row0 + r0 + lane;
        const float dist = GemvDistance(qs.query(qi), qs.qq[qi], p.full + row * d, d);
        ++*rescored;
        if (!(dist > w->bound[qi])) {
          OfferGemv(w, p.k, qi, FloatKey(dist), static_cast<int32_t>(row));
        }
      }
    }
  }
}

using HalfTileFn = void (*)(const GemvQueries&, const float*, const HalfProblem&, int64_t,
                            int64_t, WorkerState*, int64_t*);

template <int... Qs>
HalfTileFn HalfTileFor(int64_t q, std::integer_sequence<int, Qs...>) {
  HalfTileFn fns[] = {&HalfTile<Qs + 1>...};
  return fns[q - 1];
}

// Top-k of q (1 <= q <= kGemvMaxQ) queries; keys/indices as SearchL2Gemv's (offset 0). Returns
// the number of rows re-scored in float32 (summed over queries).
inline int64_t SearchL2Half(const float* queries, const HalfProblem& p, int64_t q,
                            int64_t max_workers,
                            const std::function<void(int64_t, const std::function<void(int64_t)>&)>&
                                run_workers,
                            int32_t* out_keys, int32_t* out_idx) {
  const GemvQueries qs(queries, q, p.d);
  std::vector<float> q_norms(q);
  for (int64_t i = 0; i < q; ++i) {
    double s = 0.0;
    for (int64_t c = 0; c < p.d; ++c) s += double(queries[i * p.d + c]) * queries[i * p.d + c];
    q_norms[i] = std::nextafter(static_cast<float>(std::sqrt(s)), INFINITY);
  }
  const HalfTileFn tile_fn = HalfTileFor(q, std::make_integer_sequence<int, kGemvMaxQ>());
  const int64_t tiles = (p.n + kGemvTileRows - 1) / kGemvTileRows;
  const int64_t workers = std::max<int64_t>(1, std::min(max_workers, tiles));
  std::vector<WorkerState> state(workers);
  std::vector<int64_t> rescored(workers, 0);
  std::atomic<int64_t> next{0};
  run_workers(workers, [&](int64_t slot) {
    WorkerState* w = &state[slot];
    w->keys.assign(q * p.k, kPadKey);
    w->idx.assign(q * p.k, 0);
    w->size.assign(q, 0);
    w->bound.assign(q, std::nanf(""));
    for (int64_t t = next.fetch_add(1); t < tiles; t = next.fetch_add(1)) {
      const int64_t row0 = t * kGemvTileRows;
      tile_fn(qs, q_norms.data(), p, row0, std::min(kGemvTileRows, p.n - row0), w,
              &rescored[slot]);
    }
  });
  MergeWorkers(state, q, p.k, 0, out_keys, out_idx);
  int64_t total = 0;
  for (int64_t r : rescored) total += r;
  return total;
}

}  // namespace cbir_jax

#endif  // CBIR_JAX_KERNELS_NATIVE_L2_HALF_H_
