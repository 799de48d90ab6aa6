// CPU kernels of ivr::crop_and_resize and its backward.
//
// Two layouts: an NCHW image is sampled plane by plane (channel-major, so a plane stays in
// cache while every box reads it); a channels-last image (NHWC, TensorFlow's layout) is
// sampled one channel vector per sample, which vectorises, and gives a channels-last output.
// Where the CPU has AVX-512 the kernels of crop_avx512.h run instead of the portable loops
// below (same results to the bit).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>

#include "../checks.h"
#include "channels.h"
#include "crop_avx512.h"
#include "planes.h"
#include "work.h"

namespace ivr {
namespace {

// box_ind as contiguous int64, range-checked in one pass (instead of two ATen reductions and
// their .item() calls: about 2 us less per forward and 10 per forward and backward).
at::Tensor checked_box_ind(const at::Tensor& box_ind, int64_t batch) {
  auto ind = box_ind.to(at::kLong).contiguous();
  const int64_t* b = ind.data_ptr<int64_t>();
  const int64_t k = ind.numel();
  if (k) {
    const auto [lo, hi] = std::minmax_element(b, b + k);
    TORCH_CHECK(*lo >= 0 && *hi < batch, "ivr::crop_and_resize: box_ind must lie in [0, ", batch,
                "), got values in [", *lo, ", ", *hi, "]");
  }
  return ind;
}

// Channels-last but not plain contiguous: C == 1 or H == W == 1 count as NCHW.
bool is_nhwc(const at::Tensor& t) {
  return !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast);
}

template <typename T, typename S>
void crop_nhwc(const S* src, int64_t h, int64_t w, int64_t c, const int64_t* b,
               const cpu::BoxTaps<T>& taps, int64_t k, int64_t oh, int64_t ow, S fill, S* dst) {
  cpu::parallel_ranges(k * oh, 1, k * oh * ow * c, [&](int64_t begin, int64_t end) {
    for (int64_t ri = begin; ri < end; ++ri) {
      const int64_t r = ri / oh, i = ri % oh;
      const auto& ty = taps.y[r];
      const auto& tx = taps.x[r];
      S* row = dst + ri * ow * c;  // (K, oh, ow, C)
      if (i < ty.first || i >= ty.last) {
        std::fill(row, row + ow * c, fill);
        continue;
      }
      const S* top = src + (b[r] * h + ty.lo[i]) * w * c;
      const S* bottom = src + (b[r] * h + ty.hi[i]) * w * c;
      for (int64_t j = 0; j < ow; ++j) {
        S* o = row + j * c;
        if (j < tx.first || j >= tx.last) {
          std::fill(o, o + c, fill);
          continue;
        }
        cpu::lerp_channels<T>(top + tx.lo[j] * c, top + tx.hi[j] * c, bottom + tx.lo[j] * c,
                              bottom + tx.hi[j] * c, tx.lerp[j], ty.lerp[i], o, c);
      }
    }
  });
}

template <typename T, typename S>
void scatter_nhwc(const S* g, int64_t h, int64_t w, int64_t c, const int64_t* b,
                  const cpu::BoxTaps<T>& taps, int64_t k, int64_t oh, int64_t ow, S* dst) {
  // One task per block of channels: no two tasks touch the same gradient element.
  const int64_t block = 64;
  cpu::parallel_ranges((c + block - 1) / block, 1, (k * oh * ow + h * w) * c,
                       [&](int64_t begin, int64_t end) {
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t c0 = blk * block, n = std::min(block, c - c0);
      for (int64_t r = 0; r < k; ++r) {
        const auto& ty = taps.y[r];
        const auto& tx = taps.x[r];
        for (int64_t i = ty.first; i < ty.last; ++i) {
          S* top = dst + (b[r] * h + ty.lo[i]) * w * c + c0;
          S* bottom = dst + (b[r] * h + ty.hi[i]) * w * c + c0;
          for (int64_t j = tx.first; j < tx.last; ++j) {
            cpu::scatter_channels<T>(g + ((r * oh + i) * ow + j) * c + c0, tx.lerp[j],
                                     ty.lerp[i], top + tx.lo[j] * c, top + tx.hi[j] * c,
                                     bottom + tx.lo[j] * c, bottom + tx.hi[j] * c, n);
          }
        }
      }
    }
  });
}

template <typename T, typename S>
void box_grad_nhwc(const S* src, const S* g, int64_t h, int64_t w, int64_t c, const int64_t* b,
                   const cpu::BoxTaps<T>& taps, int64_t k, int64_t oh, int64_t ow, T* out) {
  cpu::parallel_ranges(k, 1, k * oh * ow * c, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const auto& ty = taps.y[r];
      const auto& tx = taps.x[r];
      std::vector<T> gy(oh, T(0)), gx(ow, T(0));
      for (int64_t i = ty.first; i < ty.last; ++i) {
        const S* top = src + (b[r] * h + ty.lo[i]) * w * c;
        const S* bottom = src + (b[r] * h + ty.hi[i]) * w * c;
        for (int64_t j = tx.first; j < tx.last; ++j) {
          T dy, dx;
          cpu::grad_channels<T>(top + tx.lo[j] * c, top + tx.hi[j] * c, bottom + tx.lo[j] * c,
                                bottom + tx.hi[j] * c, g + ((r * oh + i) * ow + j) * c,
                                tx.lerp[j], ty.lerp[i], c, &dy, &dx);
          gy[i] += dy;
          gx[j] += dx;
        }
      }
      cpu::coords_to_box(gy, gx, ty, tx, out + r * 4);
    }
  });
}

at::Tensor crop_and_resize_cpu(const at::Tensor& image, const at::Tensor& boxes,
                               const at::Tensor& box_ind, int64_t crop_h, int64_t crop_w,
                               double extrapolation_value) {
  check_crop(image, boxes, box_ind, crop_h, crop_w);
  const int64_t k = boxes.size(0), c = image.size(1), h = image.size(2), w = image.size(3);
  const bool nhwc = is_nhwc(image);
  const auto format = nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  auto out = at::empty({k, c, crop_h, crop_w}, image.options().memory_format(format));
  if (k == 0 || c == 0) return out;
  const auto img = image.contiguous(format);
  const auto ind = checked_box_ind(box_ind, image.size(0));
  AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "ivr::crop_and_resize", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto bx = cpu::boxes_as(boxes, image.scalar_type());
    const cpu::BoxTaps<T> taps(bx.data_ptr<T>(), k, h, w, crop_h, crop_w);
    const scalar_t* src = img.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    const int64_t* b = ind.data_ptr<int64_t>();
    const auto fill = static_cast<scalar_t>(extrapolation_value);
#if IVR_HAVE_AVX512
    if (cpu::avx512_enabled()) {
      if (nhwc) {
        cpu::crop_nhwc_avx512<T>(src, h, w, c, b, taps, k, crop_h, crop_w, fill, dst);
      } else {
        cpu::crop_nchw_avx512<T, 1>(src, image.size(0), c, h, w, b, taps, k, crop_h, crop_w, fill,
                                       dst);
      }
      return;
    }
#endif
    if (nhwc) {
      crop_nhwc<T>(src, h, w, c, b, taps, k, crop_h, crop_w, fill, dst);
      return;
    }
    const int64_t grain = std::max<int64_t>(1, 4096 / (crop_h * crop_w));
    // Channel-major: consecutive tasks read the same image plane, which stays in L1 while
    // every box samples it (box-major would stream each box's window through all planes).
    cpu::parallel_ranges(k * c, grain, k * c * crop_h * crop_w, [&](int64_t begin, int64_t end) {
      for (int64_t ck = begin; ck < end; ++ck) {
        const int64_t ch = ck / k, r = ck % k;
        cpu::sample_plane<T>(src + (b[r] * c + ch) * h * w, w, taps.y[r], taps.x[r], fill,
                             dst + (r * c + ch) * crop_h * crop_w);
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> crop_and_resize_backward_cpu(
    const at::Tensor& grad, const at::Tensor& image, const at::Tensor& boxes,
    const at::Tensor& box_ind, bool image_grad, bool boxes_grad) {
  const int64_t crop_h = grad.size(2), crop_w = grad.size(3);
  check_crop(image, boxes, box_ind, crop_h, crop_w);
  const int64_t k = boxes.size(0), c = image.size(1), h = image.size(2), w = image.size(3);
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == k && grad.size(1) == c,
              "ivr::_crop_and_resize_backward: grad must be (K, C, crop_h, crop_w)");
  const bool nhwc = is_nhwc(image);
  const auto format = nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  auto gimage = image_grad ? at::empty_like(image, format) : at::empty({0}, image.options());
  auto gboxes = boxes_grad ? at::zeros_like(boxes, at::MemoryFormat::Contiguous)
                           : at::empty({0}, boxes.options());
  if (k == 0 || c == 0) return {gimage.zero_(), gboxes};
  const auto g = grad.contiguous(format);
  const auto img = image.contiguous(format);
  const auto ind = checked_box_ind(box_ind, image.size(0));
  AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "ivr::_crop_and_resize_backward", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto bx = cpu::boxes_as(boxes, image.scalar_type());
    const cpu::BoxTaps<T> taps(bx.data_ptr<T>(), k, h, w, crop_h, crop_w);
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const int64_t* b = ind.data_ptr<int64_t>();
    const int64_t crop = crop_h * crop_w, batch = image.size(0);
    if (image_grad) {
      scalar_t* dst = gimage.data_ptr<scalar_t>();
#if IVR_HAVE_AVX512
      if (cpu::avx512_enabled()) {  // writes every element of gimage
        if (nhwc) {
          cpu::crop_image_grad_avx512<T, 4, true>(gp, batch, c, h, w, b, taps, k, crop_h,
                                                  crop_w, dst);
        } else {
          cpu::crop_image_grad_avx512<T, 1, false>(gp, batch, c, h, w, b, taps, k, crop_h,
                                                   crop_w, dst);
        }
      } else
#endif
      {
        gimage.zero_();
        if (nhwc) {
          scatter_nhwc<T>(gp, h, w, c, b, taps, k, crop_h, crop_w, dst);
        } else {
          // One task per channel: every box writes only its own image's plane of that channel.
          cpu::parallel_ranges(c, 1, k * crop * c, [&](int64_t begin, int64_t end) {
            for (int64_t ch = begin; ch < end; ++ch) {
              for (int64_t r = 0; r < k; ++r) {
                cpu::scatter_plane<T>(gp + (r * c + ch) * crop, taps.y[r], taps.x[r], w,
                                      dst + (b[r] * c + ch) * h * w);
              }
            }
          });
        }
      }
    }
    if (boxes_grad) {
      const scalar_t* src = img.data_ptr<scalar_t>();
      auto out = at::empty({k, 4}, bx.options());
      T* o = out.data_ptr<T>();
      if (nhwc) {
        box_grad_nhwc<T>(src, gp, h, w, c, b, taps, k, crop_h, crop_w, o);
      } else {
        cpu::parallel_ranges(k, 1, k * c * crop, [&](int64_t begin, int64_t end) {
          for (int64_t r = begin; r < end; ++r) {
            cpu::box_grad<T>(src + b[r] * c * h * w, h * w, gp + r * c * crop, crop, c, w,
                             taps.y[r], taps.x[r], o + r * 4);
          }
        });
      }
      gboxes.copy_(out);
    }
  });
  return {gimage, gboxes};
}

}  // namespace

TORCH_LIBRARY_IMPL(ivr, CPU, m) {
  m.impl("crop_and_resize", &crop_and_resize_cpu);
  m.impl("_crop_and_resize_backward", &crop_and_resize_backward_cpu);
}

}  // namespace ivr
