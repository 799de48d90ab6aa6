// CPU kernels of ivr::paste_and_sum and its backward.
//
// paste_and_sum(maps, boxes, (Hm, Wm)) = sum_k crop_and_resize(maps, boxes, arange(K),
// (Hm, Wm), 0)[k], computed by accumulating each region's kept samples straight into the
// (C, Hm, Wm) output: nothing of size K x C x Hm x Wm is ever allocated.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "../checks.h"
#include "planes.h"
#include "work.h"

namespace ivr {
namespace {

at::Tensor paste_and_sum_cpu(const at::Tensor& maps, const at::Tensor& boxes, int64_t out_h,
                             int64_t out_w) {
  check_paste(maps, boxes, out_h, out_w);
  const int64_t k = maps.size(0), c = maps.size(1), mh = maps.size(2), mw = maps.size(3);
  auto out = at::zeros({c, out_h, out_w}, maps.options());
  if (k == 0 || c == 0) return out;
  const auto src_t = maps.contiguous();
  AT_DISPATCH_FLOATING_TYPES(maps.scalar_type(), "ivr::paste_and_sum", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto bx = cpu::boxes_as(boxes, maps.scalar_type());
    const cpu::BoxTaps<T> taps(bx.data_ptr<T>(), k, mh, mw, out_h, out_w);
    const scalar_t* src = src_t.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    // One task per channel: regions are summed in order into that channel's plane.
    cpu::parallel_ranges(c, 1, k * c * out_h * out_w, [&](int64_t begin, int64_t end) {
      for (int64_t ch = begin; ch < end; ++ch) {
        for (int64_t r = 0; r < k; ++r) {
          cpu::add_plane<T>(src + (r * c + ch) * mh * mw, mw, taps.y[r], taps.x[r],
                            dst + ch * out_h * out_w);
        }
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> paste_and_sum_backward_cpu(const at::Tensor& grad,
                                                              const at::Tensor& maps,
                                                              const at::Tensor& boxes,
                                                              bool maps_grad, bool boxes_grad) {
  const int64_t out_h = grad.size(-2), out_w = grad.size(-1);
  check_paste(maps, boxes, out_h, out_w);
  const int64_t k = maps.size(0), c = maps.size(1), mh = maps.size(2), mw = maps.size(3);
  TORCH_CHECK(grad.dim() == 3 && grad.size(0) == c,
              "ivr::_paste_and_sum_backward: grad must be (C, Hm, Wm)");
  auto gmaps = maps_grad ? at::zeros_like(maps, at::MemoryFormat::Contiguous) : at::empty({0}, maps.options());
  auto gboxes = boxes_grad ? at::zeros_like(boxes, at::MemoryFormat::Contiguous) : at::empty({0}, boxes.options());
  if (k == 0 || c == 0) return {gmaps, gboxes};
  const auto g = grad.contiguous();
  const auto src_t = maps.contiguous();
  AT_DISPATCH_FLOATING_TYPES(maps.scalar_type(), "ivr::_paste_and_sum_backward", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto bx = cpu::boxes_as(boxes, maps.scalar_type());
    const cpu::BoxTaps<T> taps(bx.data_ptr<T>(), k, mh, mw, out_h, out_w);
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const int64_t plane = out_h * out_w;
    if (maps_grad) {
      scalar_t* dst = gmaps.data_ptr<scalar_t>();
      cpu::parallel_ranges(k * c, 16, k * c * plane, [&](int64_t begin, int64_t end) {
        for (int64_t kc = begin; kc < end; ++kc) {
          const int64_t r = kc / c, ch = kc % c;
          cpu::scatter_plane<T>(gp + ch * plane, taps.y[r], taps.x[r], mw, dst + kc * mh * mw);
        }
      });
    }
    if (boxes_grad) {
      const scalar_t* src = src_t.data_ptr<scalar_t>();
      auto out = at::empty({k, 4}, bx.options());
      T* o = out.data_ptr<T>();
      cpu::parallel_ranges(k, 1, k * c * plane, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          cpu::box_grad<T>(src + r * c * mh * mw, mh * mw, gp, plane, c, mw, taps.y[r],
                           taps.x[r], o + r * 4);
        }
      });
      gboxes.copy_(out);
    }
  });
  return {gmaps, gboxes};
}

}  // namespace

TORCH_LIBRARY_IMPL(ivr, CPU, m) {
  m.impl("paste_and_sum", &paste_and_sum_cpu);
  m.impl("_paste_and_sum_backward", &paste_and_sum_backward_cpu);
}

}  // namespace ivr
