// Autograd kernels of crop_and_resize and paste_and_sum, one for every device: the forward
// saves its inputs and the backward calls the op's own backward op, which is not
// differentiable: asked for a graph of the gradient (create_graph, a double backward), it
// raises instead of handing back a gradient that silently counts as constant. In C++ rather
// than through torch.library's Python registration, whose Python hooks cost 37 us per
// forward and about 60 us per forward and backward (bench/README.md).
#include <ATen/core/grad_mode.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace ivr {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The op below autograd: the backend kernel, or the fake one while tracing.
template <typename Signature>
c10::TypedOperatorHandle<Signature> op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

using Tensor = at::Tensor;
using CropSignature = Tensor(const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t,
                             double);
using CropBackwardSignature = std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&,
                                                         const Tensor&, const Tensor&, bool, bool);
using PasteSignature = Tensor(const Tensor&, const Tensor&, int64_t, int64_t);
using PasteBackwardSignature = std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&,
                                                          const Tensor&, bool, bool);

// Raises where the gradient's own graph is asked for.
void check_no_double_backward(const char* name, std::initializer_list<at::Tensor> inputs) {
  if (!at::GradMode::is_enabled()) return;
  for (const auto& t : inputs) {
    TORCH_CHECK(!t.requires_grad(), name, " has no double backward (its gradient is not "
                "differentiable): compute its gradients without create_graph=True");
  }
}

class CropAndResize : public torch::autograd::Function<CropAndResize> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& image,
                            const at::Tensor& boxes, const at::Tensor& box_ind, int64_t crop_h,
                            int64_t crop_w, double extrapolation_value) {
    static const auto crop = op<CropSignature>("ivr::crop_and_resize");
    ctx->save_for_backward({image, boxes, box_ind});
    at::AutoDispatchBelowADInplaceOrView guard;
    return crop.call(image, boxes, box_ind, crop_h, crop_w, extrapolation_value);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto crop_backward = op<CropBackwardSignature>("ivr::_crop_and_resize_backward");
    const auto saved = ctx->get_saved_variables();
    check_no_double_backward("ivr::crop_and_resize", {grads[0], saved[0], saved[1]});
    const bool need_image = ctx->needs_input_grad(0), need_boxes = ctx->needs_input_grad(1);
    auto [g_image, g_boxes] =
        crop_backward.call(grads[0], saved[0], saved[1], saved[2], need_image, need_boxes);
    return {need_image ? g_image : at::Tensor(), need_boxes ? g_boxes : at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

class PasteAndSum : public torch::autograd::Function<PasteAndSum> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& maps, const at::Tensor& boxes,
                            int64_t out_h, int64_t out_w) {
    static const auto paste = op<PasteSignature>("ivr::paste_and_sum");
    ctx->save_for_backward({maps, boxes});
    at::AutoDispatchBelowADInplaceOrView guard;
    return paste.call(maps, boxes, out_h, out_w);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto paste_backward = op<PasteBackwardSignature>("ivr::_paste_and_sum_backward");
    const auto saved = ctx->get_saved_variables();
    check_no_double_backward("ivr::paste_and_sum", {grads[0], saved[0], saved[1]});
    const bool need_maps = ctx->needs_input_grad(0), need_boxes = ctx->needs_input_grad(1);
    auto [g_maps, g_boxes] =
        paste_backward.call(grads[0], saved[0], saved[1], need_maps, need_boxes);
    return {need_maps ? g_maps : at::Tensor(), need_boxes ? g_boxes : at::Tensor(),
            at::Tensor(), at::Tensor()};
  }
};

at::Tensor crop_and_resize_autograd(const at::Tensor& image, const at::Tensor& boxes,
                                    const at::Tensor& box_ind, int64_t crop_h, int64_t crop_w,
                                    double extrapolation_value) {
  return CropAndResize::apply(image, boxes, box_ind, crop_h, crop_w, extrapolation_value);
}

at::Tensor paste_and_sum_autograd(const at::Tensor& maps, const at::Tensor& boxes, int64_t out_h,
                                  int64_t out_w) {
  return PasteAndSum::apply(maps, boxes, out_h, out_w);
}

}  // namespace

TORCH_LIBRARY_IMPL(ivr, Autograd, m) {
  m.impl("crop_and_resize", &crop_and_resize_autograd);
  m.impl("paste_and_sum", &paste_and_sum_autograd);
}

}  // namespace ivr
