// Launch helpers and the box-gradient kernel shared by the CUDA crop_and_resize and
// paste_and_sum kernels (the CUDA counterpart of cpu/planes.h).
//
// Bit-exactness with the CPU kernels rests on two things: every coordinate goes through
// bilinear.h (sample_coord / make_tap, whose mul/add are explicitly rounded), and setup.py
// compiles with --fmad=false, so the plain `a * b + c` of interpolate_grad and of the
// kernels below is not contracted into an FMA either. Don't drop that flag, and don't add
// --use_fast_math: it makes `/` approximate (sample_coord divides) and flushes denormals.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
// Not ATen/cuda/CUDAContext.h (at::cuda::getCurrentCUDAStream): it pulls in cuBLAS and
// cuSPARSE headers, which a minimal CUDA toolkit lacks. c10's stream API is the same one.
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cub/block/block_reduce.cuh>

#include <algorithm>
#include <type_traits>

#include "../bilinear.h"
#include "../checks.h"

namespace ivr {
namespace cuda {

// Element-wise kernels: grid-stride loops, so the grid can be capped. Indices are int64:
// K * C * h * w passes 2^31 for large crops and batches.
constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;
// Box-gradient kernel: exactly this many threads per block (cub::BlockReduce is sized for it).
constexpr int kBoxThreads = 256;
constexpr int64_t kMaxBoxBlocks = 65535;

#define IVR_CUDA_LOOP(i, n)                                                               \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

// Kernels run on the caller's current stream (not the default stream), on its device.
inline cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream(); }

inline int blocks_for(int64_t n) {
  return static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks));
}

// Boxes as a contiguous (K, 4) tensor of the op-math type of `dtype` (cpu::boxes_as): the
// coordinates of a half/bfloat16 input are computed from float boxes, of a double input
// from double boxes, whatever dtype the boxes came in.
inline at::Tensor boxes_as(const at::Tensor& boxes, at::ScalarType dtype) {
  const auto math = dtype == at::kDouble ? at::kDouble : at::kFloat;
  return boxes.to(math).contiguous();
}

// Tap of sample i along one axis of a box [y1, x1, y2, x2] (axis 0: y, 1: x).
template <typename T>
__device__ __forceinline__ Tap<T> axis_tap(const T* box, int axis, int64_t in_size,
                                           int64_t out_size, int64_t i) {
  return make_tap<T>(sample_coord<T>(box[axis], box[axis + 2], in_size, out_size, i), in_size);
}

// acc + d loss / d plane[a, b] through one box's resampling of the plane: the gather form of
// cpu::scatter_plane. Sums the output cells (i, j) whose taps touch pixel (a, b), with the
// same weights and in the same order as scatter_plane's adds to that pixel (rows, columns,
// then TF's top-left, top-right, bottom-left, bottom-right), so one thread per pixel and no
// atomics reproduce the CPU's float32/float64 result bit for bit.
template <typename T, typename S>
__device__ T gather_pixel_grad(T acc, const S* grad, const T* box, int64_t in_h, int64_t in_w,
                               int64_t oh, int64_t ow, int64_t a, int64_t b) {
  for (int64_t i = 0; i < oh; ++i) {
    const Tap<T> ty = axis_tap<T>(box, 0, in_h, oh, i);
    const bool top = ty.valid && ty.lo == a, bottom = ty.valid && ty.hi == a;
    if (!top && !bottom) continue;
    for (int64_t j = 0; j < ow; ++j) {
      const Tap<T> tx = axis_tap<T>(box, 1, in_w, ow, j);
      const bool left = tx.valid && tx.lo == b, right = tx.valid && tx.hi == b;
      if (!left && !right) continue;
      const T g = static_cast<T>(grad[i * ow + j]);
      const T wt = (1 - ty.lerp) * g, wb = ty.lerp * g;
      // At an integer coordinate lo == hi: both adds of that axis land here (weights 1, 0).
      if (top && left) acc += (1 - tx.lerp) * wt;
      if (top && right) acc += tx.lerp * wt;
      if (bottom && left) acc += (1 - tx.lerp) * wb;
      if (bottom && right) acc += tx.lerp * wb;
    }
  }
  return acc;
}

// d loss / d [y1, x1, y2, x2] of every box, written to out (K, 4) in op-math type.
//
// Box r samples `channels` planes (in_h x in_w) starting at planes + src * channels * plane,
// src = box_ind[r] (crop) or r (paste: box_ind == nullptr), with output gradients (C, oh, ow)
// at grads + r * grad_box_stride (crop: each box its own; paste: stride 0, shared).
//
// One block per box, no atomics: each thread walks a fixed strided subset of the box's
// (channel, row, column) samples in a fixed order and keeps four partial sums, which a
// cub::BlockReduce (a fixed tree for a fixed block size) combines, so the result is the same
// on every run. cpu::box_grad first sums d value / d coord per sample row (column) and then
// multiplies by that row's coord_grad factors; here each sample's term is multiplied by its
// factors before summing: the same sum, grouped differently, so it matches the CPU to
// rounding (not bitwise).
template <typename scalar_t, typename T>
__global__ void __launch_bounds__(kBoxThreads)
    box_grad_kernel(const scalar_t* planes, const int64_t* box_ind, int64_t batch,
                    const scalar_t* grads, int64_t grad_box_stride, const T* boxes, int64_t k,
                    int64_t channels, int64_t in_h, int64_t in_w, int64_t oh, int64_t ow,
                    T* out) {
  using Reduce = cub::BlockReduce<T, kBoxThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  const int64_t plane = in_h * in_w, cells = oh * ow, n = channels * cells;
  for (int64_t r = blockIdx.x; r < k; r += gridDim.x) {  // uniform per block: syncs are safe
    int64_t src = r;
    if (box_ind != nullptr) {
      src = box_ind[r];
      CUDA_KERNEL_ASSERT(src >= 0 && src < batch);
    }
    const scalar_t* box_planes = planes + src * channels * plane;
    const scalar_t* box_grads = grads + r * grad_box_stride;
    const T* box = boxes + r * 4;
    T acc[4] = {T(0), T(0), T(0), T(0)};
    for (int64_t e = threadIdx.x; e < n; e += kBoxThreads) {
      const int64_t j = e % ow, i = (e / ow) % oh, ch = e / cells;
      const Tap<T> ty = axis_tap<T>(box, 0, in_h, oh, i);
      if (!ty.valid) continue;  // dropped samples carry no gradient (extrapolated / not pasted)
      const Tap<T> tx = axis_tap<T>(box, 1, in_w, ow, j);
      if (!tx.valid) continue;
      T dy, dx;
      interpolate_grad<T>(box_planes + ch * plane, in_w, ty, tx, &dy, &dx);
      const T g = static_cast<T>(box_grads[e]);  // e == ch * cells + i * ow + j
      const T gy = dy * g, gx = dx * g;
      T d1, d2;
      coord_grad<T>(in_h, oh, i, &d1, &d2);
      acc[0] += gy * d1;
      acc[2] += gy * d2;
      coord_grad<T>(in_w, ow, j, &d1, &d2);
      acc[1] += gx * d1;
      acc[3] += gx * d2;
    }
    for (int q = 0; q < 4; ++q) {
      const T total = Reduce(tmp).Sum(acc[q]);  // valid in thread 0 only
      if (threadIdx.x == 0) out[r * 4 + q] = total;
      __syncthreads();  // tmp is reused by the next reduction
    }
  }
}

// Launches box_grad_kernel and returns the (K, 4) op-math gradient (needs K > 0 and C > 0).
template <typename scalar_t, typename T>
at::Tensor box_grad(const scalar_t* planes, const int64_t* box_ind, int64_t batch,
                    const scalar_t* grads, int64_t grad_box_stride, const at::Tensor& bx,
                    int64_t channels, int64_t in_h, int64_t in_w, int64_t oh, int64_t ow) {
  const int64_t k = bx.size(0);
  auto out = at::empty({k, 4}, bx.options());
  const int blocks = static_cast<int>(std::min<int64_t>(k, kMaxBoxBlocks));
  box_grad_kernel<scalar_t, T><<<blocks, kBoxThreads, 0, stream()>>>(
      planes, box_ind, batch, grads, grad_box_stride, bx.data_ptr<T>(), k, channels, in_h, in_w,
      oh, ow, out.data_ptr<T>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace cuda
}  // namespace ivr
