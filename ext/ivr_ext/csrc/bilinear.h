// TensorFlow's crop_and_resize sampling rule, shared by the CPU and CUDA kernels.
//
// A normalised box edge b maps to pixel b * (in - 1); out samples span the box edges
// inclusive (one sample: the box centre). A sample outside [0, in - 1] on either axis is
// dropped (crop: extrapolation value; paste: nothing). In-range samples interpolate between
// floor and ceil; at an integer coordinate both taps coincide, so the box gradient on that
// axis vanishes (TF's one-sided choice). The arithmetic below follows TF's operation order
// with explicitly rounded operations (no fused multiply-add), so float32 outputs are
// bit-identical to TF and to ivr's pure-PyTorch reference.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define IVR_HD __host__ __device__ __forceinline__
#else
#define IVR_HD inline
#endif

namespace ivr {

// Rounded multiply / add that the compiler may not fuse into an FMA.
IVR_HD float mul(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
IVR_HD float add(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
IVR_HD double mul(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
IVR_HD double add(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

// Sample coordinate i of out_size along an axis of in_size pixels, box edges b1, b2.
template <typename T>
IVR_HD T sample_coord(T b1, T b2, int64_t in_size, int64_t out_size, int64_t i) {
  const T span = static_cast<T>(in_size - 1);
  if (out_size > 1) {
    // TF: scale = ((b2 - b1) * span) / (out - 1); coord = b1 * span + i * scale
    const T scale = mul(b2 - b1, span) / static_cast<T>(out_size - 1);
    return add(mul(b1, span), mul(static_cast<T>(i), scale));
  }
  // TF computes 0.5 * (b1 + b2) * span in double and rounds once.
  return static_cast<T>(0.5 * static_cast<double>(b1 + b2) * static_cast<double>(in_size - 1));
}

// d coord / d b1 and d coord / d b2 (TF's box-gradient factors).
template <typename T>
IVR_HD void coord_grad(int64_t in_size, int64_t out_size, int64_t i, T* d1, T* d2) {
  const T span = static_cast<T>(in_size - 1);
  if (out_size > 1) {
    const T ratio = span / static_cast<T>(out_size - 1);
    *d2 = static_cast<T>(i) * ratio;
    *d1 = span - *d2;
  } else {
    *d1 = *d2 = static_cast<T>(0.5) * span;
  }
}

// The two taps of one sample and the weight of the upper tap.
template <typename T>
struct Tap {
  int64_t lo;
  int64_t hi;
  T lerp;
  bool valid;
};

template <typename T>
IVR_HD Tap<T> make_tap(T coord, int64_t in_size) {
  Tap<T> t;
  // NaN fails both comparisons: dropped.
  t.valid = coord >= static_cast<T>(0) && coord <= static_cast<T>(in_size - 1);
  if (!t.valid) {
    t.lo = t.hi = 0;
    t.lerp = static_cast<T>(0);
    return t;
  }
  const T f = floor(coord);
  t.lo = static_cast<int64_t>(f);
  t.hi = static_cast<int64_t>(ceil(coord));
  t.lerp = coord - f;
  return t;
}

// Bilinear value from the four corner values, in TF's order (x first, then y).
template <typename T>
IVR_HD T bilinear(T tl, T tr, T bl, T br, T xl, T yl) {
  const T top = add(tl, mul(tr - tl, xl));
  const T bottom = add(bl, mul(br - bl, xl));
  return add(top, mul(bottom - top, yl));
}

// d value / d coord_y and d value / d coord_x (zero across coinciding taps).
template <typename T>
IVR_HD void bilinear_grad(T tl, T tr, T bl, T br, T xl, T yl, T* dy, T* dx) {
  *dy = (1 - xl) * (bl - tl) + xl * (br - tr);
  *dx = (1 - yl) * (tr - tl) + yl * (br - bl);
}

// The same at taps ty, tx of a plane with row stride w.
template <typename T, typename S>
IVR_HD T interpolate(const S* plane, int64_t w, const Tap<T>& ty, const Tap<T>& tx) {
  return bilinear<T>(static_cast<T>(plane[ty.lo * w + tx.lo]), static_cast<T>(plane[ty.lo * w + tx.hi]),
                     static_cast<T>(plane[ty.hi * w + tx.lo]), static_cast<T>(plane[ty.hi * w + tx.hi]),
                     tx.lerp, ty.lerp);
}

template <typename T, typename S>
IVR_HD void interpolate_grad(const S* plane, int64_t w, const Tap<T>& ty, const Tap<T>& tx,
                             T* dy, T* dx) {
  bilinear_grad<T>(static_cast<T>(plane[ty.lo * w + tx.lo]), static_cast<T>(plane[ty.lo * w + tx.hi]),
                   static_cast<T>(plane[ty.hi * w + tx.lo]), static_cast<T>(plane[ty.hi * w + tx.hi]),
                   tx.lerp, ty.lerp, dy, dx);
}

}  // namespace ivr
