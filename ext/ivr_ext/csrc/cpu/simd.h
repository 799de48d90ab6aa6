// AVX-512 vectors of float (16 lanes) or double (8 lanes) for the crop kernels, and the
// run-time choice between them and the portable loops.
//
// Every function that touches a vector is compiled for AVX-512 through a target attribute
// (the rest of the library stays at the baseline ISA) and runs only where the CPU has it.
// The arithmetic is lane-wise the scalar code's (bilinear.h, no fused multiply-add), so the
// vector kernels give the portable kernels' results to the bit.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define IVR_HAVE_AVX512 1
#include <immintrin.h>
#define IVR_AVX512 __attribute__((target("avx512f")))
#else
#define IVR_HAVE_AVX512 0
#endif

namespace ivr {
namespace cpu {

// Whether the AVX-512 kernels run: the CPU has AVX-512F and IVR_CPU_SIMD is not "off"
// (read at every call, so tests can compare both paths in one process).
inline bool avx512_enabled() {
#if IVR_HAVE_AVX512
  const char* env = std::getenv("IVR_CPU_SIMD");
  if (env && std::strcmp(env, "off") == 0) return false;
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
#else
  return false;
#endif
}

#if IVR_HAVE_AVX512

template <typename T>
struct Vec512;

template <>
struct Vec512<float> {
  using V = __m512;
  using Mask = __mmask16;
  static constexpr int64_t L = 16;
  IVR_AVX512 static Mask first(int64_t n) { return n >= L ? Mask(0xFFFF) : Mask((1u << n) - 1); }
  IVR_AVX512 static V zero() { return _mm512_setzero_ps(); }
  IVR_AVX512 static V set1(float x) { return _mm512_set1_ps(x); }
  IVR_AVX512 static V load(const float* p) { return _mm512_loadu_ps(p); }
  IVR_AVX512 static V load(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
  IVR_AVX512 static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  IVR_AVX512 static void store(float* p, V v, Mask m) { _mm512_mask_storeu_ps(p, m, v); }
  // Non-temporal store; p 64-byte aligned.
  IVR_AVX512 static void stream(float* p, V v) { _mm512_stream_ps(p, v); }
  IVR_AVX512 static V add(V a, V b) { return _mm512_add_ps(a, b); }
  IVR_AVX512 static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  IVR_AVX512 static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  // r[i] = row i of a 16 x 16 matrix -> r[i] = its column i. (The zero-masking forms with
  // every lane kept are the plain shuffles; the plain intrinsics start from
  // _mm512_undefined_ps, which GCC 12 reports as maybe uninitialised.)
  IVR_AVX512 static void transpose(V r[L]) {
    constexpr Mask all = 0xFFFF;
    V t[L];
    for (int i = 0; i < 16; i += 2) {
      t[i] = _mm512_maskz_unpacklo_ps(all, r[i], r[i + 1]);
      t[i + 1] = _mm512_maskz_unpackhi_ps(all, r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
      r[i] = _mm512_maskz_shuffle_ps(all, t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
      r[i + 1] = _mm512_maskz_shuffle_ps(all, t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
      r[i + 2] = _mm512_maskz_shuffle_ps(all, t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
      r[i + 3] = _mm512_maskz_shuffle_ps(all, t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; ++i) {
      t[i] = _mm512_maskz_shuffle_f32x4(all, r[i], r[i + 4], 0x88);
      t[i + 4] = _mm512_maskz_shuffle_f32x4(all, r[i], r[i + 4], 0xdd);
      t[i + 8] = _mm512_maskz_shuffle_f32x4(all, r[i + 8], r[i + 12], 0x88);
      t[i + 12] = _mm512_maskz_shuffle_f32x4(all, r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 8; ++i) {
      r[i] = _mm512_maskz_shuffle_f32x4(all, t[i], t[i + 8], 0x88);
      r[i + 8] = _mm512_maskz_shuffle_f32x4(all, t[i], t[i + 8], 0xdd);
    }
  }
};

template <>
struct Vec512<double> {
  using V = __m512d;
  using Mask = __mmask8;
  static constexpr int64_t L = 8;
  IVR_AVX512 static Mask first(int64_t n) { return n >= L ? Mask(0xFF) : Mask((1u << n) - 1); }
  IVR_AVX512 static V zero() { return _mm512_setzero_pd(); }
  IVR_AVX512 static V set1(double x) { return _mm512_set1_pd(x); }
  IVR_AVX512 static V load(const double* p) { return _mm512_loadu_pd(p); }
  IVR_AVX512 static V load(const double* p, Mask m) { return _mm512_maskz_loadu_pd(m, p); }
  IVR_AVX512 static void store(double* p, V v) { _mm512_storeu_pd(p, v); }
  IVR_AVX512 static void store(double* p, V v, Mask m) { _mm512_mask_storeu_pd(p, m, v); }
  IVR_AVX512 static void stream(double* p, V v) { _mm512_stream_pd(p, v); }
  IVR_AVX512 static V add(V a, V b) { return _mm512_add_pd(a, b); }
  IVR_AVX512 static V sub(V a, V b) { return _mm512_sub_pd(a, b); }
  IVR_AVX512 static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  // r[i] = row i of an 8 x 8 matrix -> r[i] = its column i (see Vec512<float>::transpose).
  IVR_AVX512 static void transpose(V r[L]) {
    constexpr Mask all = 0xFF;
    V t[L];
    for (int i = 0; i < 8; i += 2) {
      t[i] = _mm512_maskz_unpacklo_pd(all, r[i], r[i + 1]);
      t[i + 1] = _mm512_maskz_unpackhi_pd(all, r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
      r[i] = _mm512_maskz_shuffle_f64x2(all, t[i], t[i + 2], 0x88);
      r[i + 1] = _mm512_maskz_shuffle_f64x2(all, t[i + 1], t[i + 3], 0x88);
      r[i + 2] = _mm512_maskz_shuffle_f64x2(all, t[i], t[i + 2], 0xdd);
      r[i + 3] = _mm512_maskz_shuffle_f64x2(all, t[i + 1], t[i + 3], 0xdd);
    }
    for (int i = 0; i < 4; ++i) {
      t[i] = _mm512_maskz_shuffle_f64x2(all, r[i], r[i + 4], 0x88);
      t[i + 4] = _mm512_maskz_shuffle_f64x2(all, r[i], r[i + 4], 0xdd);
    }
    for (int i = 0; i < 8; ++i) r[i] = t[i];
  }
};

// bilinear() of bilinear.h, lane by lane, in the same operation order.
template <typename W>
IVR_AVX512 inline typename W::V vbilinear(typename W::V tl, typename W::V tr, typename W::V bl,
                                          typename W::V br, typename W::V xl,
                                          typename W::V yl) {
  const auto top = W::add(tl, W::mul(W::sub(tr, tl), xl));
  const auto bottom = W::add(bl, W::mul(W::sub(br, bl), xl));
  return W::add(top, W::mul(W::sub(bottom, top), yl));
}

// Between planes and vectors of lanes, an L x L transpose at a time:
// dst[p * dst_stride + l] = src[l * src_stride + p] for p < n, l < rows (any number of rows,
// L per transpose; the last transpose's lanes from rows on are 0).
template <typename W, typename T>
IVR_AVX512 inline void planes_to_vectors(const T* src, int64_t src_stride, int64_t rows, int64_t n,
                                         T* dst, int64_t dst_stride) {
  constexpr int64_t L = W::L;
  typename W::V r[L];
  for (int64_t l0 = 0; l0 < rows; l0 += L, src += L * src_stride, dst += L) {
    const int64_t group = std::min(L, rows - l0);
    for (int64_t p = 0; p < n; p += L) {
      const auto m = W::first(n - p);
      for (int64_t l = 0; l < L; ++l) {
        r[l] = l < group ? W::load(src + l * src_stride + p, m) : W::zero();
      }
      W::transpose(r);
      for (int64_t q = 0; q < L && p + q < n; ++q) W::store(dst + (p + q) * dst_stride, r[q]);
    }
  }
}

// The inverse: dst[l * dst_stride + p] = src[p * src_stride + l] for p < n, l < rows (any
// number of rows, L per transpose).
template <typename W, typename T>
IVR_AVX512 inline void vectors_to_planes(const T* src, int64_t src_stride, int64_t rows, int64_t n,
                                         T* dst, int64_t dst_stride) {
  constexpr int64_t L = W::L;
  typename W::V r[L];
  for (int64_t l0 = 0; l0 < rows; l0 += L, src += L, dst += L * dst_stride) {
    const int64_t group = std::min(L, rows - l0);
    for (int64_t p = 0; p < n; p += L) {
      const auto m = W::first(n - p);
      for (int64_t q = 0; q < L; ++q) {
        r[q] = p + q < n ? W::load(src + (p + q) * src_stride) : W::zero();
      }
      W::transpose(r);
      for (int64_t l = 0; l < group; ++l) W::store(dst + l * dst_stride + p, r[l], m);
    }
  }
}

#endif  // IVR_HAVE_AVX512

}  // namespace cpu
}  // namespace ivr
