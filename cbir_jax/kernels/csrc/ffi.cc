// XLA FFI binding of the native kernels, and the Python module `cbir_jax.kernels._native` that
// hands their handlers to `jax.ffi.register_ffi_target` (see cbir_jax/kernels/ffi.py).
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>

#include "hamming_topk.h"
#include "l2_gemv.h"
#include "l2_half.h"
#include "l2_topk.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// Calls fn(slot) for slot 0 on this thread and for further slots on XLA's intra-op pool. A pool
// task that starts after this thread has finished its own slot does nothing (the slots'
// work is handed out dynamically, so nothing is left undone), so waiting never depends on a
// pool thread becoming free: no deadlock when this call itself runs on the pool.
void RunOnPool(ffi::ThreadPool& pool, int64_t count, const std::function<void(int64_t)>& fn) {
  struct Shared {
    std::mutex mu;
    std::condition_variable done;
    bool closed = false;
    int64_t active = 0;
    int64_t next_slot = 1;
    const std::function<void(int64_t)>* fn = nullptr;
  };
  auto shared = std::make_shared<Shared>();
  shared->fn = &fn;
  for (int64_t i = 1; i < count; ++i) {
    pool.Schedule([shared]() {
      int64_t slot;
      {
        std::lock_guard<std::mutex> lock(shared->mu);
        if (shared->closed) return;
        slot = shared->next_slot++;
        ++shared->active;
      }
      (*shared->fn)(slot);
      std::lock_guard<std::mutex> lock(shared->mu);
      if (--shared->active == 0) shared->done.notify_all();
    });
  }
  fn(0);
  std::unique_lock<std::mutex> lock(shared->mu);
  shared->closed = true;
  shared->done.wait(lock, [&] { return shared->active == 0; });
}

ffi::Error L2TopKImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> queries,
                      ffi::Buffer<ffi::F32> database, ffi::Buffer<ffi::S32> n_valid,
                      ffi::Buffer<ffi::S32> offset, ffi::ResultBuffer<ffi::S32> keys,
                      ffi::ResultBuffer<ffi::S32> indices) {
  auto qdims = queries.dimensions(), xdims = database.dimensions(), kdims = keys->dimensions();
  if (qdims.size() != 2 || xdims.size() != 2 || kdims.size() != 2 || qdims[1] != xdims[1] ||
      kdims[0] != qdims[0] || n_valid.element_count() != 1 || offset.element_count() != 1) {
    return ffi::Error::InvalidArgument(
        "cbir_jax_l2_topk: expected queries (q, d), database (n, d), scalar n_valid and offset, "
        "results (q, k)");
  }
  const int64_t q = qdims[0], d = qdims[1], n = xdims[0], k = kdims[1];
  if (k < 1 || k > n) return ffi::Error::InvalidArgument("cbir_jax_l2_topk: k outside [1, n]");
  if (q == 0) return ffi::Error::Success();
  // The caller's thread plus the pool's: on a pool of P threads with the caller outside it,
  // P workers keep P cores busy (the caller mostly waits on the others at the end).
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  auto search = q <= cbir_jax::kGemvMaxQ ? cbir_jax::SearchL2Gemv : cbir_jax::SearchL2;
  search(
      queries.typed_data(), database.typed_data(), q, n, d, k, n_valid.typed_data()[0],
      offset.typed_data()[0], threads,
      [&pool](int64_t count, const std::function<void(int64_t)>& fn) {
        RunOnPool(pool, count, fn);
      },
      keys->typed_data(), indices->typed_data());
  return ffi::Error::Success();
}

ffi::Error HammingTopKImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::U32> queries,
                           ffi::Buffer<ffi::U32> database, ffi::Buffer<ffi::S32> n_valid,
                           ffi::Buffer<ffi::S32> offset, ffi::ResultBuffer<ffi::S32> keys,
                           ffi::ResultBuffer<ffi::S32> indices) {
  auto qdims = queries.dimensions(), xdims = database.dimensions(), kdims = keys->dimensions();
  if (qdims.size() != 2 || xdims.size() != 2 || kdims.size() != 2 || qdims[1] != xdims[1] ||
      kdims[0] != qdims[0] || n_valid.element_count() != 1 || offset.element_count() != 1) {
    return ffi::Error::InvalidArgument(
        "cbir_jax_hamming_topk: expected query codes (q, w), database codes (n, w), scalar "
        "n_valid and offset, results (q, k)");
  }
  const int64_t q = qdims[0], w = qdims[1], n = xdims[0], k = kdims[1];
  if (k < 1 || k > n) {
    return ffi::Error::InvalidArgument("cbir_jax_hamming_topk: k outside [1, n]");
  }
  if (q == 0) return ffi::Error::Success();
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  cbir_jax::SearchHamming(
      queries.typed_data(), database.typed_data(), q, n, w, k, n_valid.typed_data()[0],
      offset.typed_data()[0], threads,
      [&pool](int64_t count, const std::function<void(int64_t)>& fn) {
        RunOnPool(pool, count, fn);
      },
      keys->typed_data(), indices->typed_data());
  return ffi::Error::Success();
}

ffi::Error L2HalfTopKImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> queries,
                          ffi::Buffer<ffi::U16> half, ffi::Buffer<ffi::F32> full,
                          ffi::Buffer<ffi::F32> err, ffi::Buffer<ffi::F32> norm,
                          ffi::Buffer<ffi::F32> sq, ffi::ResultBuffer<ffi::S32> keys, ffi::ResultBuffer<ffi::S32> indices,
                          ffi::ResultBuffer<ffi::S32> rescored) {
  auto qdims = queries.dimensions(), hdims = half.dimensions(), fdims = full.dimensions(),
       kdims = keys->dimensions();
  if (qdims.size() != 2 || hdims.size() != 2 || fdims.size() != 2 || kdims.size() != 2 ||
      hdims[0] != fdims[0] || hdims[1] != fdims[1] || qdims[1] != hdims[1] ||
      err.element_count() != hdims[0] || norm.element_count() != hdims[0] ||
      sq.element_count() != hdims[0] ||
      kdims[0] != qdims[0] || qdims[0] > cbir_jax::kGemvMaxQ || rescored->element_count() != 1) {
    return ffi::Error::InvalidArgument(
        "cbir_jax_l2_half_topk: expected queries (q <= 16, d), bfloat16 and float32 database "
        "(n, d), row bounds (n,), results (q, k) and (1,)");
  }
  const int64_t q = qdims[0], d = qdims[1], n = hdims[0], k = kdims[1];
  if (k < 1 || k > n) return ffi::Error::InvalidArgument("cbir_jax_l2_half_topk: k outside [1, n]");
  rescored->typed_data()[0] = 0;
  if (q == 0) return ffi::Error::Success();
  const double m = static_cast<double>(d) + 6.0, u = std::ldexp(1.0, -24);
  const float gamma = static_cast<float>(1.01 * m * u / (1.0 - m * u));
  const cbir_jax::HalfProblem p{half.typed_data(), full.typed_data(), err.typed_data(),
                                norm.typed_data(), sq.typed_data(), n, d, k, gamma};
  const int64_t count = cbir_jax::SearchL2Half(
      queries.typed_data(), p, q, std::max<int64_t>(1, pool.num_threads()),
      [&pool](int64_t c, const std::function<void(int64_t)>& fn) { RunOnPool(pool, c, fn); },
      keys->typed_data(), indices->typed_data());
  rescored->typed_data()[0] = static_cast<int32_t>(std::min<int64_t>(count, INT32_MAX));
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(CbirJaxL2HalfTopK, L2HalfTopKImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::U16>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(CbirJaxHammingTopK, HammingTopKImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::U32>>()
                                  .Arg<ffi::Buffer<ffi::U32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(CbirJaxL2TopK, L2TopKImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>());

namespace {

PyObject* Targets(PyObject*, PyObject*) {
  PyObject* targets = PyDict_New();
  if (targets == nullptr) return nullptr;
  const std::pair<const char*, void*> handlers[] = {
      {"cbir_jax_l2_topk", reinterpret_cast<void*>(&CbirJaxL2TopK)},
      {"cbir_jax_hamming_topk", reinterpret_cast<void*>(&CbirJaxHammingTopK)},
      {"cbir_jax_l2_half_topk", reinterpret_cast<void*>(&CbirJaxL2HalfTopK)}};
  for (const auto& [name, fn] : handlers) {
    PyObject* capsule = PyCapsule_New(fn, nullptr, nullptr);
    if (capsule == nullptr || PyDict_SetItemString(targets, name, capsule) != 0) {
      Py_XDECREF(capsule);
      Py_DECREF(targets);
      return nullptr;
    }
    Py_DECREF(capsule);
  }
  return targets;
}

PyObject* Simd(PyObject*, PyObject*) {
#if defined(__AVX512F__)
  return PyUnicode_FromString("avx512");
#elif defined(__AVX2__)
  return PyUnicode_FromString("avx2");
#elif defined(__ARM_NEON)
  return PyUnicode_FromString("neon");
#else
  return PyUnicode_FromString("generic");
#endif
}

PyMethodDef kMethods[] = {
    {"targets", Targets, METH_NOARGS,
     "{name: PyCapsule} of the XLA FFI handlers, for jax.ffi.register_ffi_target."},
    {"simd", Simd, METH_NOARGS, "The vector instruction set the kernels were compiled for."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef kModule = {PyModuleDef_HEAD_INIT, "_native",
                       "Native XLA FFI kernels of cbir_jax (CPU).", -1, kMethods};

}  // namespace

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&kModule); }
