// Argument checks shared by every backend (caller errors: TORCH_CHECK messages).
#pragma once

#include <ATen/ATen.h>

namespace ivr {

inline void check_boxes(const at::Tensor& boxes, int64_t k, const char* op) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, op, ": boxes must be (K, 4), got ",
              boxes.sizes());
  TORCH_CHECK(k < 0 || boxes.size(0) == k, op, ": boxes has ", boxes.size(0), " rows, expected ",
              k);
  TORCH_CHECK(boxes.is_floating_point(), op, ": boxes must be floating point, got ",
              boxes.scalar_type());
}

inline void check_crop(const at::Tensor& image, const at::Tensor& boxes, const at::Tensor& box_ind,
                       int64_t crop_h, int64_t crop_w) {
  const char* op = "ivr::crop_and_resize";
  TORCH_CHECK(image.dim() == 4, op, ": image must be (B, C, H, W), got ", image.sizes());
  TORCH_CHECK(image.size(2) > 0 && image.size(3) > 0, op, ": image has an empty H or W");
  TORCH_CHECK(image.is_floating_point(), op, ": image must be floating point");
  check_boxes(boxes, -1, op);
  TORCH_CHECK(box_ind.dim() == 1 && box_ind.size(0) == boxes.size(0), op,
              ": box_ind must be (K,) with K = boxes.size(0), got ", box_ind.sizes());
  TORCH_CHECK(!box_ind.is_floating_point() && box_ind.scalar_type() != at::kBool, op,
              ": box_ind must be an integer tensor");
  TORCH_CHECK(crop_h > 0 && crop_w > 0, op, ": crop size must be positive, got ", crop_h, "x",
              crop_w);
  TORCH_CHECK(image.device() == boxes.device() && image.device() == box_ind.device(), op,
              ": image, boxes and box_ind must be on one device");
}

inline void check_paste(const at::Tensor& maps, const at::Tensor& boxes, int64_t out_h,
                        int64_t out_w) {
  const char* op = "ivr::paste_and_sum";
  TORCH_CHECK(maps.dim() == 4, op, ": maps must be (K, C, h, w), got ", maps.sizes());
  TORCH_CHECK(maps.size(2) > 0 && maps.size(3) > 0, op, ": maps have an empty h or w");
  TORCH_CHECK(maps.is_floating_point(), op, ": maps must be floating point");
  check_boxes(boxes, maps.size(0), op);
  TORCH_CHECK(out_h > 0 && out_w > 0, op, ": output size must be positive, got ", out_h, "x",
              out_w);
  TORCH_CHECK(maps.device() == boxes.device(), op, ": maps and boxes must be on one device");
}

}  // namespace ivr
