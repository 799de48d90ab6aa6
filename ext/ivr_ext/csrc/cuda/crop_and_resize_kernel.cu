// CUDA kernels of ivr::crop_and_resize and its backward (NCHW), mirroring
// cpu/crop_and_resize_kernel.cpp: same checks, same sampling math (bilinear.h), so the
// forward equals the CPU kernel bit for bit in float32 and float64; half and bfloat16 are
// computed in float and rounded once, like the pure-PyTorch reference.
//
// Determinism: the forward and the box gradient are; the image gradient is scattered with
// atomics (fast, order varies between runs) unless torch.use_deterministic_algorithms(True)
// is on, which selects a gather kernel that reproduces the CPU's sum exactly.
//
// box_ind is range-checked in the kernels (CUDA_KERNEL_ASSERT), not on the host as on the
// CPU: a host check would need a device-to-host sync. A bad index is a device-side assert,
// which poisons the CUDA context; callers that can't vouch for box_ind should check it.
#include "cuda_helpers.h"

namespace ivr {
namespace {

using cuda::axis_tap;

// One thread per output element (r, ch, i, j).
template <typename scalar_t, typename T>
__global__ void crop_kernel(const scalar_t* image, const int64_t* box_ind, const T* boxes,
                            int64_t batch, int64_t c, int64_t h, int64_t w, int64_t crop_h,
                            int64_t crop_w, scalar_t fill, int64_t n, scalar_t* out) {
  IVR_CUDA_LOOP(idx, n) {
    const int64_t j = idx % crop_w, i = (idx / crop_w) % crop_h;
    const int64_t ch = (idx / (crop_h * crop_w)) % c, r = idx / (crop_h * crop_w * c);
    const int64_t b = box_ind[r];
    CUDA_KERNEL_ASSERT(b >= 0 && b < batch);
    const T* box = boxes + r * 4;
    const Tap<T> ty = axis_tap<T>(box, 0, h, crop_h, i);
    const Tap<T> tx = axis_tap<T>(box, 1, w, crop_w, j);
    out[idx] = (ty.valid && tx.valid)
                   ? static_cast<scalar_t>(interpolate<T>(image + (b * c + ch) * h * w, w, ty, tx))
                   : fill;
  }
}

// One thread per grad element, scattered with atomics: boxes overlap, and several samples
// of one box share taps, so any image pixel may receive many adds. The four adds follow TF's
// (and cpu::scatter_plane's) weights; only the order in which they land varies from run to
// run, so the result is not bitwise repeatable (see the gather kernel below). The target is
// op-math typed: half/bfloat16 atomics would round the running sum to 16 bits at every add.
template <typename scalar_t, typename T>
__global__ void crop_image_grad_kernel(const scalar_t* grad, const int64_t* box_ind,
                                       const T* boxes, int64_t batch, int64_t c, int64_t h,
                                       int64_t w, int64_t crop_h, int64_t crop_w, int64_t n,
                                       T* image_grad) {
  IVR_CUDA_LOOP(idx, n) {
    const int64_t j = idx % crop_w, i = (idx / crop_w) % crop_h;
    const int64_t ch = (idx / (crop_h * crop_w)) % c, r = idx / (crop_h * crop_w * c);
    const int64_t b = box_ind[r];
    CUDA_KERNEL_ASSERT(b >= 0 && b < batch);
    const T* box = boxes + r * 4;
    const Tap<T> ty = axis_tap<T>(box, 0, h, crop_h, i);
    if (!ty.valid) continue;
    const Tap<T> tx = axis_tap<T>(box, 1, w, crop_w, j);
    if (!tx.valid) continue;
    const T g = static_cast<T>(grad[idx]);
    const T top = (1 - ty.lerp) * g;
    const T bottom = ty.lerp * g;
    T* plane = image_grad + (b * c + ch) * h * w;
    T* t = plane + ty.lo * w;
    T* bt = plane + ty.hi * w;
    // At an integer coordinate lo == hi and the two adds hit one cell (weights 1 and 0).
    gpuAtomicAdd(t + tx.lo, (1 - tx.lerp) * top);
    gpuAtomicAdd(t + tx.hi, tx.lerp * top);
    gpuAtomicAdd(bt + tx.lo, (1 - tx.lerp) * bottom);
    gpuAtomicAdd(bt + tx.hi, tx.lerp * bottom);
  }
}

// The deterministic alternative, used under torch.use_deterministic_algorithms(True): one
// thread per image-gradient element (bi, ch, a, b) gathering from every box on image bi, in
// box order, each box's cells in cpu::scatter_plane's order -- the CPU's sum, bit for bit in
// float32/float64. Costs K * crop_h tap computations per thread, so it is the slower path.
template <typename scalar_t, typename T>
__global__ void crop_image_grad_gather_kernel(const scalar_t* grad, const int64_t* box_ind,
                                              const T* boxes, int64_t k, int64_t batch,
                                              int64_t c, int64_t h, int64_t w, int64_t crop_h,
                                              int64_t crop_w, int64_t n, scalar_t* image_grad) {
  const int64_t crop = crop_h * crop_w;
  IVR_CUDA_LOOP(idx, n) {
    const int64_t x = idx % w, y = (idx / w) % h;
    const int64_t ch = (idx / (h * w)) % c, bi = idx / (h * w * c);
    T acc = T(0);
    for (int64_t r = 0; r < k; ++r) {
      const int64_t src = box_ind[r];
      CUDA_KERNEL_ASSERT(src >= 0 && src < batch);
      if (src != bi) continue;
      acc = cuda::gather_pixel_grad<T>(acc, grad + (r * c + ch) * crop, boxes + r * 4, h, w,
                                       crop_h, crop_w, y, x);
    }
    image_grad[idx] = static_cast<scalar_t>(acc);
  }
}

// The range of box_ind is checked in the kernels (see above), but an empty batch leaves no
// valid index at all: that much is known on the host, so say it here instead of tripping a
// device-side assert, which would leave the CUDA context unusable.
void check_batch_not_empty(const at::Tensor& image, int64_t k) {
  TORCH_CHECK(k == 0 || image.size(0) > 0, "ivr::crop_and_resize: box_ind must lie in [0, 0): ",
              k, " boxes but the image batch is empty");
}

at::Tensor crop_and_resize_cuda(const at::Tensor& image, const at::Tensor& boxes,
                                const at::Tensor& box_ind, int64_t crop_h, int64_t crop_w,
                                double extrapolation_value) {
  check_crop(image, boxes, box_ind, crop_h, crop_w);
  const c10::cuda::CUDAGuard guard(image.device());
  const int64_t k = boxes.size(0), c = image.size(1), h = image.size(2), w = image.size(3);
  auto out = at::empty({k, c, crop_h, crop_w}, image.options());
  if (k == 0 || c == 0) return out;
  check_batch_not_empty(image, k);
  const auto img = image.contiguous();
  const auto ind = box_ind.to(at::kLong).contiguous();
  const int64_t n = out.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(),
                                  "ivr::crop_and_resize", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto bx = cuda::boxes_as(boxes, image.scalar_type());
    // Via T, like the reference (half is computed in float, then converted): rounding a
    // double straight to half can differ from rounding it to float first.
    const auto fill = static_cast<scalar_t>(static_cast<T>(extrapolation_value));
    crop_kernel<scalar_t, T><<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::stream()>>>(
        img.data_ptr<scalar_t>(), ind.data_ptr<int64_t>(), bx.data_ptr<T>(), image.size(0), c, h,
        w, crop_h, crop_w, fill, n, out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> crop_and_resize_backward_cuda(
    const at::Tensor& grad, const at::Tensor& image, const at::Tensor& boxes,
    const at::Tensor& box_ind, bool image_grad, bool boxes_grad) {
  TORCH_CHECK(grad.dim() == 4,
              "ivr::_crop_and_resize_backward: grad must be (K, C, crop_h, crop_w)");
  const int64_t crop_h = grad.size(2), crop_w = grad.size(3);
  check_crop(image, boxes, box_ind, crop_h, crop_w);
  const int64_t k = boxes.size(0), c = image.size(1), h = image.size(2), w = image.size(3);
  TORCH_CHECK(grad.size(0) == k && grad.size(1) == c,
              "ivr::_crop_and_resize_backward: grad must be (K, C, crop_h, crop_w)");
  // The dispatcher picks this kernel if any argument is on CUDA: a CPU grad would be read
  // through a host pointer on the device.
  TORCH_CHECK(grad.device() == image.device(),
              "ivr::_crop_and_resize_backward: grad and image must be on one device");
  const c10::cuda::CUDAGuard guard(image.device());
  auto gimage = image_grad ? at::zeros_like(image, at::MemoryFormat::Contiguous)
                           : at::empty({0}, image.options());
  auto gboxes = boxes_grad ? at::zeros_like(boxes, at::MemoryFormat::Contiguous)
                           : at::empty({0}, boxes.options());
  if (k == 0 || c == 0) return {gimage, gboxes};
  check_batch_not_empty(image, k);
  const auto g = grad.contiguous();
  const auto img = image.contiguous();
  const auto ind = box_ind.to(at::kLong).contiguous();
  const int64_t batch = image.size(0), n = g.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(),
                                  "ivr::_crop_and_resize_backward", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto bx = cuda::boxes_as(boxes, image.scalar_type());
    const int64_t m = image_grad ? gimage.numel() : 0;  // 0 when B == 0: no launch
    if (m > 0 && at::globalContext().deterministicAlgorithms()) {
      crop_image_grad_gather_kernel<scalar_t, T>
          <<<cuda::blocks_for(m), cuda::kThreads, 0, cuda::stream()>>>(
              g.data_ptr<scalar_t>(), ind.data_ptr<int64_t>(), bx.data_ptr<T>(), k, batch, c, h,
              w, crop_h, crop_w, m, gimage.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    } else if (m > 0) {
      constexpr bool same = std::is_same_v<scalar_t, T>;
      auto target = same ? gimage : at::zeros(gimage.sizes(), bx.options());
      crop_image_grad_kernel<scalar_t, T>
          <<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::stream()>>>(
              g.data_ptr<scalar_t>(), ind.data_ptr<int64_t>(), bx.data_ptr<T>(), batch, c, h, w,
              crop_h, crop_w, n, target.data_ptr<T>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      if (!same) gimage.copy_(target);
    }
    if (boxes_grad) {
      // Box r reads image box_ind[r]'s C planes and its own (C, crop_h, crop_w) gradient.
      gboxes.copy_(cuda::box_grad<scalar_t, T>(img.data_ptr<scalar_t>(), ind.data_ptr<int64_t>(),
                                               batch, g.data_ptr<scalar_t>(), c * crop_h * crop_w,
                                               bx, c, h, w, crop_h, crop_w));
    }
  });
  return {gimage, gboxes};
}

}  // namespace

TORCH_LIBRARY_IMPL(ivr, CUDA, m) {
  m.impl("crop_and_resize", &crop_and_resize_cuda);
  m.impl("_crop_and_resize_backward", &crop_and_resize_backward_cuda);
}

}  // namespace ivr
