"""Fake (meta) and autocast kernels of the ivr ops. Their autograd kernels are C++
(csrc/autograd.cpp): the backward passes are their own ops, which have no autograd
themselves (double backward raises)."""

import torch

ops = torch.ops.ivr


def _layout(image):
    """The CPU kernels keep a channels-last image channels-last (C == 1 or H == W == 1
    count as contiguous); the CUDA kernels always return contiguous tensors."""
    nhwc = (image.device.type == "cpu" and not image.is_contiguous()
            and image.is_contiguous(memory_format=torch.channels_last))
    return torch.channels_last if nhwc else torch.contiguous_format


@torch.library.register_fake("ivr::crop_and_resize")
def _crop_fake(image, boxes, box_ind, crop_h, crop_w, extrapolation_value):
    torch._check(image.dim() == 4, lambda: "image must be (B, C, H, W)")
    torch._check(boxes.dim() == 2 and boxes.shape[1] == 4, lambda: "boxes must be (K, 4)")
    return torch.empty((boxes.shape[0], image.shape[1], crop_h, crop_w), dtype=image.dtype,
                       device=image.device, memory_format=_layout(image))


@torch.library.register_fake("ivr::_crop_and_resize_backward")
def _crop_backward_fake(grad, image, boxes, box_ind, image_grad, boxes_grad):
    g_image = (torch.empty(image.shape, dtype=image.dtype, device=image.device,
                           memory_format=_layout(image)) if image_grad else image.new_empty(0))
    return g_image, boxes.new_empty(boxes.shape if boxes_grad else (0,))


@torch.library.register_fake("ivr::paste_and_sum")
def _paste_fake(maps, boxes, out_h, out_w):
    torch._check(maps.dim() == 4, lambda: "maps must be (K, C, h, w)")
    return maps.new_empty((maps.shape[1], out_h, out_w))


@torch.library.register_fake("ivr::_paste_and_sum_backward")
def _paste_backward_fake(grad, maps, boxes, maps_grad, boxes_grad):
    return (maps.new_empty(maps.shape if maps_grad else (0,)),
            boxes.new_empty(boxes.shape if boxes_grad else (0,)))


# Under autocast (ivr's runtime.amp = bf16 | fp16) the two ops run in float32, as
# torchvision's roi_align does: float16/bfloat16 inputs on the autocast device are upcast
# (float64 stays float64), the op runs with autocast off and returns float32. So the CPU
# kernels (float32/float64 only) serve mixed precision too, and the memory's pasted sum of
# updates is not rounded to 8 bits of mantissa. Gradients flow back through the upcast.
AUTOCAST_OPS = ("ivr::crop_and_resize", "ivr::paste_and_sum")
if hasattr(torch.library, "register_autocast"):  # torch >= 2.5
    for _device in ("cpu", "cuda"):
        if torch.amp.is_autocast_available(_device):
            for _op in AUTOCAST_OPS:
                torch.library.register_autocast(_op, _device, torch.float32)
