// CUDA kernels of ivr::paste_and_sum and its backward, mirroring
// cpu/paste_and_sum_kernel.cpp.
//
// paste_and_sum(maps, boxes, (Hm, Wm)) = sum_k crop_and_resize(maps, boxes, arange(K),
// (Hm, Wm), 0)[k]. Every kernel here is a gather (one thread or block per output element,
// no atomics), so all of them are deterministic; the forward and the map gradient also add
// their terms in the CPU kernel's order, so float32/float64 results equal the CPU's bit for
// bit. Nothing of size K x C x Hm x Wm is allocated.
#include "cuda_helpers.h"

namespace ivr {
namespace {

using cuda::axis_tap;

// One thread per output element (ch, y, x), summing the regions in order k = 0..K-1 (as
// cpu::add_plane does per region). The sum is kept in op-math type and rounded once, so half
// and bfloat16 match the reference (computed in float) rather than a 16-bit running sum.
// Every thread reads all K boxes: the same addresses across a warp, served by broadcast.
template <typename scalar_t, typename T>
__global__ void paste_kernel(const scalar_t* maps, const T* boxes, int64_t k, int64_t c,
                             int64_t mh, int64_t mw, int64_t out_h, int64_t out_w, int64_t n,
                             scalar_t* out) {
  IVR_CUDA_LOOP(idx, n) {
    const int64_t x = idx % out_w, y = (idx / out_w) % out_h, ch = idx / (out_h * out_w);
    T acc = T(0);
    for (int64_t r = 0; r < k; ++r) {
      const T* box = boxes + r * 4;
      const Tap<T> ty = axis_tap<T>(box, 0, mh, out_h, y);
      if (!ty.valid) continue;  // extrapolation value 0: a dropped sample adds nothing
      const Tap<T> tx = axis_tap<T>(box, 1, mw, out_w, x);
      if (!tx.valid) continue;
      acc = acc + interpolate<T>(maps + (r * c + ch) * mh * mw, mw, ty, tx);
    }
    out[idx] = static_cast<scalar_t>(acc);
  }
}

// One thread per map-gradient element (r, ch, a, b): the transpose of region r's resampling
// applied to grad[ch], gathered over the output cells whose taps touch (a, b). Each region
// has its own map, so unlike the crop backward no two regions write one element.
template <typename scalar_t, typename T>
__global__ void paste_maps_grad_kernel(const scalar_t* grad, const T* boxes, int64_t c,
                                       int64_t mh, int64_t mw, int64_t out_h, int64_t out_w,
                                       int64_t n, scalar_t* maps_grad) {
  IVR_CUDA_LOOP(idx, n) {
    const int64_t b = idx % mw, a = (idx / mw) % mh;
    const int64_t ch = (idx / (mh * mw)) % c, r = idx / (mh * mw * c);
    const T acc = cuda::gather_pixel_grad<T>(T(0), grad + ch * out_h * out_w, boxes + r * 4, mh,
                                             mw, out_h, out_w, a, b);
    maps_grad[idx] = static_cast<scalar_t>(acc);
  }
}

at::Tensor paste_and_sum_cuda(const at::Tensor& maps, const at::Tensor& boxes, int64_t out_h,
                              int64_t out_w) {
  check_paste(maps, boxes, out_h, out_w);
  const c10::cuda::CUDAGuard guard(maps.device());
  const int64_t k = maps.size(0), c = maps.size(1), mh = maps.size(2), mw = maps.size(3);
  if (k == 0 || c == 0) return at::zeros({c, out_h, out_w}, maps.options());  // empty sum
  auto out = at::empty({c, out_h, out_w}, maps.options());  // the kernel writes every element
  const auto src = maps.contiguous();
  const int64_t n = out.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, maps.scalar_type(),
                                  "ivr::paste_and_sum", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto bx = cuda::boxes_as(boxes, maps.scalar_type());
    paste_kernel<scalar_t, T><<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::stream()>>>(
        src.data_ptr<scalar_t>(), bx.data_ptr<T>(), k, c, mh, mw, out_h, out_w, n,
        out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> paste_and_sum_backward_cuda(const at::Tensor& grad,
                                                               const at::Tensor& maps,
                                                               const at::Tensor& boxes,
                                                               bool maps_grad, bool boxes_grad) {
  TORCH_CHECK(grad.dim() == 3, "ivr::_paste_and_sum_backward: grad must be (C, Hm, Wm)");
  const int64_t out_h = grad.size(1), out_w = grad.size(2);
  check_paste(maps, boxes, out_h, out_w);
  const int64_t k = maps.size(0), c = maps.size(1), mh = maps.size(2), mw = maps.size(3);
  TORCH_CHECK(grad.size(0) == c, "ivr::_paste_and_sum_backward: grad must be (C, Hm, Wm)");
  // The dispatcher picks this kernel if any argument is on CUDA: a CPU grad would be read
  // through a host pointer on the device.
  TORCH_CHECK(grad.device() == maps.device(),
              "ivr::_paste_and_sum_backward: grad and maps must be on one device");
  const c10::cuda::CUDAGuard guard(maps.device());
  // The map-gradient kernel writes every element: no zero fill needed.
  auto gmaps = maps_grad ? at::empty(maps.sizes(), maps.options()) : at::empty({0}, maps.options());
  auto gboxes = boxes_grad ? at::zeros_like(boxes, at::MemoryFormat::Contiguous)
                           : at::empty({0}, boxes.options());
  if (k == 0 || c == 0) return {gmaps, gboxes};
  const auto g = grad.contiguous();
  const auto src = maps.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, maps.scalar_type(),
                                  "ivr::_paste_and_sum_backward", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto bx = cuda::boxes_as(boxes, maps.scalar_type());
    if (maps_grad) {
      const int64_t n = gmaps.numel();
      paste_maps_grad_kernel<scalar_t, T>
          <<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::stream()>>>(
              g.data_ptr<scalar_t>(), bx.data_ptr<T>(), c, mh, mw, out_h, out_w, n,
              gmaps.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    if (boxes_grad) {
      // Box r reads its own map's C planes; all boxes share the one (C, Hm, Wm) gradient.
      gboxes.copy_(cuda::box_grad<scalar_t, T>(src.data_ptr<scalar_t>(), nullptr, k,
                                               g.data_ptr<scalar_t>(), 0, bx, c, mh, mw, out_h,
                                               out_w));
    }
  });
  return {gmaps, gboxes};
}

}  // namespace

TORCH_LIBRARY_IMPL(ivr, CUDA, m) {
  m.impl("paste_and_sum", &paste_and_sum_cuda);
  m.impl("_paste_and_sum_backward", &paste_and_sum_backward_cuda);
}

}  // namespace ivr
