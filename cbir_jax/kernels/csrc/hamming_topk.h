// Exact Hamming top-k of packed codes: XOR + population count, filtered against each query's
// current k-th distance while the distances are still in registers.
//
// Same contract as the JAX kernels (hamming.py): codes are (rows, w) uint32 words, every bit
// counts, distances are int32, ties go to the lower database index. The database is cut into
// tiles handed out dynamically to the workers; each worker keeps a max-heap of (distance,
// index) per query (l2_topk.h's TopKHeap) and the heaps are merged at the end. A worker takes
// tiles in increasing order, so once a query's heap is full only a strictly smaller distance
// can enter it: the filter is `distance < bound`, with bound INT32_MAX until the heap is full.
//
// With AVX-512 VPOPCNTDQ and codes of 1, 2, 4 or 8 64-bit words (64 .. 512 bits), 8 rows are
// scored per step: XOR against the query tiled over a 512-bit vector, vpopcntq, and the words of
// a row summed by log2(words) levels of even/odd lane pairs, which keeps the rows in order.
// Elsewhere a portable loop (which GCC vectorises for single-word codes).
#ifndef CBIR_JAX_KERNELS_NATIVE_HAMMING_TOPK_H_
#define CBIR_JAX_KERNELS_NATIVE_HAMMING_TOPK_H_

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

#if defined(__AVX512F__) && defined(__AVX512VPOPCNTDQ__)
#include <immintrin.h>
#define CBIR_JAX_HAMMING_AVX512 1
#endif

#include "l2_topk.h"

namespace cbir_jax {

struct HammingProblem {
  const uint32_t* queries;   // (q, w)
  const uint32_t* database;  // (n, w)
  int64_t q, n, w, k;
  int64_t n_valid;
  int64_t tile;  // rows per tile
};

class HammingTopK {
 public:
  explicit HammingTopK(const HammingProblem& p) : p_(p) {}

  void InitWorker(WorkerState* w) const {
    w->keys.assign(p_.q * p_.k, kPadKey);
    w->idx.assign(p_.q * p_.k, 0);
    w->size.assign(p_.q, 0);
  }

  // Scores rows [row0, row0 + tile) clipped to n_valid, every query, into the worker's heaps.
  void Tile(int64_t row0, WorkerState* w, std::vector<int32_t>* bounds) const {
    const int64_t rows = std::min(p_.tile, p_.n_valid - row0);
    if (rows <= 0) return;
    if (bounds->empty()) bounds->assign(p_.q, INT32_MAX);
    const uint32_t* x = p_.database + row0 * p_.w;
    for (int64_t qi = 0; qi < p_.q; ++qi) {
      const uint32_t* q = p_.queries + qi * p_.w;
      int32_t* bound = &(*bounds)[qi];
#if defined(CBIR_JAX_HAMMING_AVX512)
      if (p_.w % 2 == 0) {
        switch (p_.w / 2) {
          case 1: Scan512<1>(q, x, rows, row0, qi, w, bound); continue;
          case 2: Scan512<2>(q, x, rows, row0, qi, w, bound); continue;
          case 4: Scan512<4>(q, x, rows, row0, qi, w, bound); continue;
          case 8: Scan512<8>(q, x, rows, row0, qi, w, bound); continue;
          default: break;
        }
      }
#endif
      ScanPortable(q, x, 0, rows, row0, qi, w, bound);
    }
  }

 private:
  void Offer(WorkerState* w, int64_t qi, int32_t key, int32_t row, int32_t* bound) const {
    TopKHeap heap(&w->keys[qi * p_.k], &w->idx[qi * p_.k], p_.k);
    if (heap.Offer(key, row, &w->size[qi])) *bound = heap.RootKey();
  }

  // Rows [from, rows) of the tile, one at a time.
  void ScanPortable(const uint32_t* q, const uint32_t* x, int64_t from, int64_t rows,
                    int64_t row0, int64_t qi, WorkerState* w, int32_t* bound) const {
    const int64_t words = p_.w;
    if (words == 1) {
      const uint32_t q0 = q[0];
      for (int64_t r = from; r < rows; ++r) {
        const int32_t dist = __builtin_popcount(q0 ^ x[r]);
        if (dist < *bound) Offer(w, qi, dist, static_cast<int32_t>(row0 + r), bound);
      }
      return;
    }
    for (int64_t r = from; r < rows; ++r) {
      const uint32_t* row = x + r * words;
      int32_t dist = 0;
      for (int64_t j = 0; j < words; ++j) dist += __builtin_popcount(q[j] ^ row[j]);
      if (dist < *bound) Offer(w, qi, dist, static_cast<int32_t>(row0 + r), bound);
    }
  }

#if defined(CBIR_JAX_HAMMING_AVX512)
  // Codes of W 64-bit words; 8 rows per step (W vectors of 8 words), the rest portably.
  template <int W>
  void Scan512(const uint32_t* q, const uint32_t* x, int64_t rows, int64_t row0, int64_t qi,
               WorkerState* w, int32_t* bound) const {
    uint64_t tiled[8];
    for (int l = 0; l < 8; ++l) std::memcpy(&tiled[l], q + 2 * (l % W), sizeof(uint64_t));
    const __m512i qv = _mm512_loadu_si512(tiled);
    const __m512i even = _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_set_epi64(15, 13, 11, 9, 7, 5, 3, 1);
    const uint64_t* x64 = reinterpret_cast<const uint64_t*>(x);
    const int64_t steps = rows / 8;
    for (int64_t s = 0; s < steps; ++s) {
      __m512i v[W];
#pragma GCC unroll 8
      for (int j = 0; j < W; ++j) {
        v[j] = _mm512_popcnt_epi64(
            _mm512_xor_si512(_mm512_loadu_si512(x64 + (s * 8 + j * (8 / W)) * W), qv));
      }
      // Each level adds adjacent lanes of consecutive vector pairs: rows stay in order.
#pragma GCC unroll 4
      for (int width = W; width > 1; width /= 2) {
#pragma GCC unroll 4
        for (int j = 0; j < width / 2; ++j) {
          v[j] = _mm512_add_epi64(_mm512_permutex2var_epi64(v[2 * j], even, v[2 * j + 1]),
                                  _mm512_permutex2var_epi64(v[2 * j], odd, v[2 * j + 1]));
        }
      }
      const __m256i dist = _mm512_cvtepi64_epi32(v[0]);
      uint32_t mask = _mm256_cmpgt_epi32_mask(_mm256_set1_epi32(*bound), dist);
      if (__builtin_expect(mask != 0, 0)) {
        int32_t lanes[8];
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(lanes), dist);
        while (mask) {
          const int lane = __builtin_ctz(mask);
          mask &= mask - 1;
          // The bound may have tightened since the mask was taken.
          if (lanes[lane] < *bound) {
            Offer(w, qi, lanes[lane], static_cast<int32_t>(row0 + s * 8 + lane), bound);
          }
        }
      }
    }
    ScanPortable(q, x, steps * 8, rows, row0, qi, w, bound);
  }
#endif

  HammingProblem p_;
};

// Rows per tile: about 32 KiB of codes (kept in L1/L2 while every query scans it).
inline int64_t HammingTileRows(int64_t words, int64_t q) {
  const int64_t bytes = q <= 8 ? 256 * 1024 : 32 * 1024;
  return std::max<int64_t>(64, bytes / (4 * std::max<int64_t>(words, 1)) / 64 * 64);
}

inline void SearchHamming(const uint32_t* queries, const uint32_t* database, int64_t q,
                          int64_t n, int64_t words, int64_t k, int64_t n_valid, int32_t offset,
                          int64_t max_workers,
                          const std::function<void(int64_t, const std::function<void(int64_t)>&)>&
                              run_workers,
                          int32_t* out_keys, int32_t* out_idx) {
  HammingProblem p{queries, database, q, n, words, k, std::clamp<int64_t>(n_valid, 0, n),
                   HammingTileRows(words, q)};
  HammingTopK search(p);
  const int64_t tiles = (p.n_valid + p.tile - 1) / p.tile;
  const int64_t workers = std::max<int64_t>(1, std::min(max_workers, tiles));
  std::vector<WorkerState> state(workers);
  std::atomic<int64_t> next{0};
  run_workers(workers, [&](int64_t w) {
    search.InitWorker(&state[w]);
    std::vector<int32_t> bounds;
    for (int64_t t = next.fetch_add(1); t < tiles; t = next.fetch_add(1)) {
      search.Tile(t * p.tile, &state[w], &bounds);
    }
  });
  MergeWorkers(state, q, k, offset, out_keys, out_idx);
}

}  // namespace cbir_jax

#endif  // CBIR_JAX_KERNELS_NATIVE_HAMMING_TOPK_H_
