// Schemas of fastwarp's ops, declared once; each backend registers its kernels in its own
// file (cpu/warp_kernel.cpp, cuda/warp_kernel.cu). Fake kernels and autograd are
// registered from Python (fastwarp/ops/registration.py).
#include <Python.h>
#include <torch/library.h>

#include <string>

#include "cpu/warp_simd.h"

#ifndef FASTWARP_CUDA_ARCHS
#define FASTWARP_CUDA_ARCHS ""
#endif

// `import fastwarp._C` loads this library, which runs the static registrations below;
// the module itself is empty (no pybind11 glue, as in pytorch/extension-cpp).
extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(fastwarp, m) {
  // How many CPU kernel calls chose the vectorised (AVX2) path so far in this process: tests
  // that compare it with the scalar path (FASTWARP_CPU_SIMD=0) check that it really ran.
  m.def("_cpu_simd_calls() -> int", [] { return fastwarp::cpu::simd_calls(); });
  // The CUDA architectures the kernels were compiled for ("8.0;9.0;12.1+PTX"; "" in a CPU-only
  // build): fastwarp.build_info().
  m.def("_cuda_archs() -> str", [] { return std::string(FASTWARP_CUDA_ARCHS); });
  m.def("warp(Tensor image, Tensor flow, str padding_mode=\"border\", str mode=\"bilinear\") -> Tensor");
  m.def(
      "warp_backward(Tensor grad_output, Tensor image, Tensor flow, str padding_mode, str mode, bool[2] output_mask) "
      "-> (Tensor, Tensor)");
  m.def(
      "warp_blend(Tensor image, Tensor flow, Tensor texture, Tensor mask, str padding_mode=\"border\", "
      "str mode=\"bilinear\") -> Tensor");
  m.def(
      "warp_blend_backward(Tensor grad_output, Tensor image, Tensor flow, Tensor texture, Tensor mask, "
      "str padding_mode, str mode, bool[4] output_mask) -> (Tensor, Tensor, Tensor, Tensor)");
  // The frame-space composite (docs/design.md): the maps' grid placed on the image by theta
  // [N, 2, 3]; the image may be a uint8 frame (forward only). Kernels: cpu/warp_theta_kernel.cpp,
  // cuda/warp_theta_kernel.cu; math: warp_theta.h.
  m.def(
      "warp_theta(Tensor image, Tensor flow, Tensor theta, str padding_mode=\"border\", str mode=\"bilinear\") "
      "-> Tensor");
  m.def(
      "warp_theta_backward(Tensor grad_output, Tensor image, Tensor flow, Tensor theta, str padding_mode, "
      "str mode, bool[2] output_mask) -> (Tensor, Tensor)");
  m.def(
      "warp_blend_theta(Tensor image, Tensor flow, Tensor texture, Tensor mask, Tensor theta, "
      "str padding_mode=\"border\", str mode=\"bilinear\") -> Tensor");
  m.def(
      "warp_blend_theta_backward(Tensor grad_output, Tensor image, Tensor flow, Tensor texture, Tensor mask, "
      "Tensor theta, str padding_mode, str mode, bool[4] output_mask) -> (Tensor, Tensor, Tensor, Tensor)");
  // A landmark mesh's motion rendered to a dense backward flow through its triangulation
  // (docs/design.md, "mesh_flow"): (flow [N, 2, H, W], triangle_index [N, H, W] int32).
  // Kernels: cpu/mesh_flow_kernel.cpp, cuda/mesh_flow_kernel.cu; math: mesh_flow.h.
  m.def("mesh_flow(Tensor vertices, Tensor displacement, Tensor triangles, SymInt[2] size) -> (Tensor, Tensor)");
  m.def(
      "mesh_flow_backward(Tensor grad_flow, Tensor vertices, Tensor displacement, Tensor triangles, "
      "Tensor triangle_index, bool[2] output_mask) -> (Tensor, Tensor)");
}
