// Schemas of ivr's compiled ops. Kernels register per backend (cpu/, cuda/), autograd kernels
// in autograd.cpp; fake (meta) and autocast kernels from Python (ivr_ext/_ops.py).
#include <Python.h>
#include <torch/library.h>

extern "C" {
// Importing ivr_ext._C loads this library, which runs the registrations below.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
}

TORCH_LIBRARY(ivr, m) {
  // image (B, C, H, W), boxes (K, 4) normalised [y1, x1, y2, x2], box_ind (K,) -> (K, C, h, w)
  m.def("crop_and_resize(Tensor image, Tensor boxes, Tensor box_ind, int crop_h, int crop_w, "
        "float extrapolation_value) -> Tensor");
  m.def("_crop_and_resize_backward(Tensor grad, Tensor image, Tensor boxes, Tensor box_ind, "
        "bool image_grad, bool boxes_grad) -> (Tensor, Tensor)");
  // maps (K, C, h, w), boxes (K, 4) inverse boxes -> (C, out_h, out_w), summed over regions
  m.def("paste_and_sum(Tensor maps, Tensor boxes, int out_h, int out_w) -> Tensor");
  m.def("_paste_and_sum_backward(Tensor grad, Tensor maps, Tensor boxes, bool maps_grad, "
        "bool boxes_grad) -> (Tensor, Tensor)");
}
