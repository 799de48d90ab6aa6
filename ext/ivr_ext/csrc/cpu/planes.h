// Per-plane loops shared by the CPU crop_and_resize and paste_and_sum kernels.
//
// Both ops resample an input plane (in_h x in_w) at the samples of one box's output grid
// (out_h x out_w): crop reads an image plane at a box, paste reads a region map at its
// inverse box and sums over regions. Their backward passes are the same two loops: scatter
// the output gradient onto the input plane, and reduce it to the box coordinates.
//
// Along each axis the sample coordinates are monotone, so the kept samples form one
// interval [first, last): the loops run over the kept rectangle only, with the taps of a box
// stored as flat arrays (no per-sample branches, nothing the compiler must reload).
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include <algorithm>
#include <vector>

#include "../bilinear.h"

namespace ivr {
namespace cpu {

// One box's taps along one axis.
template <typename T>
struct AxisTaps {
  std::vector<int64_t> lo, hi;  // floor and ceil of each sample coordinate
  std::vector<T> lerp;          // weight of hi
  std::vector<T> d1, d2;        // d coordinate / d box edge 1 and 2 (for box gradients)
  int64_t first = 0, last = 0;  // kept samples: [first, last)
};

template <typename T>
AxisTaps<T> axis_taps(T b1, T b2, int64_t in_size, int64_t out_size) {
  AxisTaps<T> a;
  a.lo.resize(out_size);
  a.hi.resize(out_size);
  a.lerp.resize(out_size);
  a.d1.resize(out_size);
  a.d2.resize(out_size);
  a.first = out_size;
  for (int64_t i = 0; i < out_size; ++i) {
    const Tap<T> t = make_tap<T>(sample_coord<T>(b1, b2, in_size, out_size, i), in_size);
    a.lo[i] = t.lo;
    a.hi[i] = t.hi;
    a.lerp[i] = t.lerp;
    coord_grad<T>(in_size, out_size, i, &a.d1[i], &a.d2[i]);
    if (t.valid) {
      a.first = std::min(a.first, i);
      a.last = i + 1;
    }
  }
  if (a.first >= a.last) a.first = a.last = 0;
  return a;
}

// Row (y) and column (x) taps of every box: boxes (K, 4) [y1, x1, y2, x2].
template <typename T>
struct BoxTaps {
  std::vector<AxisTaps<T>> y, x;
  BoxTaps(const T* boxes, int64_t k, int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w) {
    y.reserve(k);
    x.reserve(k);
    for (int64_t b = 0; b < k; ++b) {
      y.push_back(axis_taps<T>(boxes[b * 4 + 0], boxes[b * 4 + 2], in_h, out_h));
      x.push_back(axis_taps<T>(boxes[b * 4 + 1], boxes[b * 4 + 3], in_w, out_w));
    }
  }
};

// out (oh x ow) = samples of plane (row stride in_w); dropped samples get `fill`.
template <typename T, typename S>
void sample_plane(const S* plane, int64_t in_w, const AxisTaps<T>& ty, const AxisTaps<T>& tx,
                  S fill, S* __restrict__ out) {
  const int64_t oh = static_cast<int64_t>(ty.lo.size()), ow = static_cast<int64_t>(tx.lo.size());
  const int64_t* __restrict__ xlo = tx.lo.data();
  const int64_t* __restrict__ xhi = tx.hi.data();
  const T* __restrict__ xl = tx.lerp.data();
  for (int64_t i = 0; i < oh; ++i) {
    S* __restrict__ row = out + i * ow;
    if (i < ty.first || i >= ty.last) {
      std::fill(row, row + ow, fill);
      continue;
    }
    const S* top = plane + ty.lo[i] * in_w;
    const S* bottom = plane + ty.hi[i] * in_w;
    const T yl = ty.lerp[i];
    std::fill(row, row + tx.first, fill);
    for (int64_t j = tx.first; j < tx.last; ++j) {
      row[j] = static_cast<S>(bilinear<T>(top[xlo[j]], top[xhi[j]], bottom[xlo[j]],
                                          bottom[xhi[j]], xl[j], yl));
    }
    std::fill(row + tx.last, row + ow, fill);
  }
}

// out (oh x ow) += kept samples of plane.
template <typename T, typename S>
void add_plane(const S* plane, int64_t in_w, const AxisTaps<T>& ty, const AxisTaps<T>& tx,
               S* __restrict__ out) {
  const int64_t ow = static_cast<int64_t>(tx.lo.size());
  const int64_t* __restrict__ xlo = tx.lo.data();
  const int64_t* __restrict__ xhi = tx.hi.data();
  const T* __restrict__ xl = tx.lerp.data();
  for (int64_t i = ty.first; i < ty.last; ++i) {
    S* __restrict__ row = out + i * ow;
    const S* top = plane + ty.lo[i] * in_w;
    const S* bottom = plane + ty.hi[i] * in_w;
    const T yl = ty.lerp[i];
    for (int64_t j = tx.first; j < tx.last; ++j) {
      row[j] = static_cast<S>(static_cast<T>(row[j]) + bilinear<T>(top[xlo[j]], top[xhi[j]],
                                                                  bottom[xlo[j]], bottom[xhi[j]],
                                                                  xl[j], yl));
    }
  }
}

// plane_grad (row stride in_w) += the transposed resampling of grad (oh x ow), TF's order.
template <typename T, typename S>
void scatter_plane(const S* __restrict__ grad, const AxisTaps<T>& ty, const AxisTaps<T>& tx,
                   int64_t in_w, S* __restrict__ plane_grad) {
  const int64_t ow = static_cast<int64_t>(tx.lo.size());
  const int64_t* __restrict__ xlo = tx.lo.data();
  const int64_t* __restrict__ xhi = tx.hi.data();
  const T* __restrict__ xl = tx.lerp.data();
  for (int64_t i = ty.first; i < ty.last; ++i) {
    S* top = plane_grad + ty.lo[i] * in_w;
    S* bottom = plane_grad + ty.hi[i] * in_w;
    const T yl = ty.lerp[i];
    for (int64_t j = tx.first; j < tx.last; ++j) {
      const T g = static_cast<T>(grad[i * ow + j]);
      const T dt = (1 - yl) * g;
      const T db = yl * g;
      top[xlo[j]] += static_cast<S>((1 - xl[j]) * dt);
      top[xhi[j]] += static_cast<S>(xl[j] * dt);
      bottom[xlo[j]] += static_cast<S>((1 - xl[j]) * db);
      bottom[xhi[j]] += static_cast<S>(xl[j] * db);
    }
  }
}

// d loss / d [y1, x1, y2, x2] from d loss / d each row's and each column's coordinate.
template <typename T>
void coords_to_box(const std::vector<T>& gy, const std::vector<T>& gx, const AxisTaps<T>& ty,
                   const AxisTaps<T>& tx, T* out) {
  out[0] = out[1] = out[2] = out[3] = T(0);
  for (int64_t i = ty.first; i < ty.last; ++i) {
    out[0] += gy[i] * ty.d1[i];
    out[2] += gy[i] * ty.d2[i];
  }
  for (int64_t j = tx.first; j < tx.last; ++j) {
    out[1] += gx[j] * tx.d1[j];
    out[3] += gx[j] * tx.d2[j];
  }
}

// Gradient of one box's [y1, x1, y2, x2] from `channels` planes and their output gradients:
// d loss / d sample coordinate per row and per column, times d coordinate / d box edge.
template <typename T, typename S>
void box_grad(const S* planes, int64_t plane_stride, const S* grads, int64_t grad_stride,
              int64_t channels, int64_t in_w, const AxisTaps<T>& ty, const AxisTaps<T>& tx,
              T* out) {
  const int64_t oh = static_cast<int64_t>(ty.lo.size()), ow = static_cast<int64_t>(tx.lo.size());
  std::vector<T> gy(oh, T(0)), gx(ow, T(0));
  for (int64_t c = 0; c < channels; ++c) {
    const S* plane = planes + c * plane_stride;
    const S* grad = grads + c * grad_stride;
    for (int64_t i = ty.first; i < ty.last; ++i) {
      const S* top = plane + ty.lo[i] * in_w;
      const S* bottom = plane + ty.hi[i] * in_w;
      const T yl = ty.lerp[i];
      T row_sum = 0;
      for (int64_t j = tx.first; j < tx.last; ++j) {
        T dy, dx;
        bilinear_grad<T>(top[tx.lo[j]], top[tx.hi[j]], bottom[tx.lo[j]], bottom[tx.hi[j]],
                         tx.lerp[j], yl, &dy, &dx);
        const T g = static_cast<T>(grad[i * ow + j]);
        row_sum += dy * g;
        gx[j] += dx * g;
      }
      gy[i] += row_sum;
    }
  }
  coords_to_box(gy, gx, ty, tx, out);
}

// Boxes as a contiguous (K, 4) tensor of the op-math type of `dtype`.
inline at::Tensor boxes_as(const at::Tensor& boxes, at::ScalarType dtype) {
  const auto math = dtype == at::kDouble ? at::kDouble : at::kFloat;
  return boxes.to(math).contiguous();
}

}  // namespace cpu
}  // namespace ivr
