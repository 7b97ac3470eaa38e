// Argument checks of mesh_flow and mesh_flow_backward, shared by the CPU and CUDA kernels.
// The messages are those of fastwarp/ops/checks.py (check_mesh_flow_*), so eager, compiled and
// Triton calls fail alike: "fastwarp.mesh_flow: vertices.shape[2] must be 2 (x, y), got 3".
#pragma once

#include <ATen/ATen.h>

#include "warp_checks.h"

namespace fastwarp {

// Shapes, dtypes and devices; `size` is not checked when null (the backward op has none).
inline void check_mesh_flow_args(const char* op, const at::Tensor& vertices, const at::Tensor& displacement,
                                 const at::Tensor& triangles, const at::IntArrayRef* size) {
  TORCH_CHECK_VALUE(vertices.dim() == 3, op, ": vertices must be a 3-D tensor [N, V, 2], got ", vertices.dim(),
                    "-D with shape ", shape_str(vertices));
  TORCH_CHECK_VALUE(vertices.size(2) == 2, op, ": vertices.shape[2] must be 2 (x, y), got ", vertices.size(2));
  TORCH_CHECK_TYPE(vertices.scalar_type() == at::kFloat || vertices.scalar_type() == at::kDouble, op,
                   ": vertices must be a float32 or float64 tensor, got ", vertices.scalar_type());
  TORCH_CHECK_VALUE(displacement.sizes() == vertices.sizes(), op, ": displacement must have the vertices' shape ",
                    shape_str(vertices), ", got ", shape_str(displacement));
  TORCH_CHECK_TYPE(displacement.scalar_type() == vertices.scalar_type(), op,
                   ": displacement.dtype must match vertices.dtype (", vertices.scalar_type(), "), got ",
                   displacement.scalar_type());
  TORCH_CHECK_VALUE(displacement.device() == vertices.device(), op, ": displacement must be on the vertices' device (",
                    vertices.device(), "), got ", displacement.device());
  TORCH_CHECK_VALUE(triangles.dim() == 2, op, ": triangles must be a 2-D tensor [T, 3], got ", triangles.dim(),
                    "-D with shape ", shape_str(triangles));
  TORCH_CHECK_VALUE(triangles.size(1) == 3, op, ": triangles.shape[1] must be 3 (vertex indices), got ",
                    triangles.size(1));
  TORCH_CHECK_TYPE(triangles.scalar_type() == at::kInt || triangles.scalar_type() == at::kLong, op,
                   ": triangles must be an int32 or int64 tensor, got ", triangles.scalar_type());
  TORCH_CHECK_VALUE(triangles.device() == vertices.device(), op, ": triangles must be on the vertices' device (",
                    vertices.device(), "), got ", triangles.device());
  if (size != nullptr) {
    const at::IntArrayRef s = *size;
    TORCH_CHECK_VALUE(s.size() == 2 && s[0] >= 1 && s[1] >= 1, op, ": size must be (H, W) with H >= 1 and W >= 1, got ",
                      s);
  }
}

// The backward op's: the forward's, then triangle_index [N, H, W] int32 and grad_flow
// [N, 2, H, W] in the vertices' dtype, on the vertices' device.
inline void check_mesh_flow_backward_args(const char* op, const at::Tensor& grad_flow, const at::Tensor& vertices,
                                          const at::Tensor& displacement, const at::Tensor& triangles,
                                          const at::Tensor& triangle_index) {
  check_mesh_flow_args(op, vertices, displacement, triangles, nullptr);
  const int64_t N = vertices.size(0);
  TORCH_CHECK_VALUE(triangle_index.dim() == 3 && triangle_index.size(0) == N, op,
                    ": triangle_index must have shape [N, H, W] with N=", N, ", got ", shape_str(triangle_index));
  TORCH_CHECK_TYPE(triangle_index.scalar_type() == at::kInt, op, ": triangle_index must be an int32 tensor, got ",
                   triangle_index.scalar_type());
  TORCH_CHECK_VALUE(triangle_index.device() == vertices.device(), op,
                    ": triangle_index must be on the vertices' device (", vertices.device(), "), got ",
                    triangle_index.device());
  const int64_t H = triangle_index.size(1), W = triangle_index.size(2);
  TORCH_CHECK_VALUE(grad_flow.dim() == 4 && grad_flow.size(0) == N && grad_flow.size(1) == 2 &&
                        grad_flow.size(2) == H && grad_flow.size(3) == W,
                    op, ": grad_flow must have the flow's shape [", N, ", 2, ", H, ", ", W, "], got ",
                    shape_str(grad_flow));
  TORCH_CHECK_TYPE(grad_flow.scalar_type() == vertices.scalar_type(), op,
                   ": grad_flow.dtype must match vertices.dtype (", vertices.scalar_type(), "), got ",
                   grad_flow.scalar_type());
  TORCH_CHECK_VALUE(grad_flow.device() == vertices.device(), op, ": grad_flow must be on the vertices' device (",
                    vertices.device(), "), got ", grad_flow.device());
}

// The checks that read values (one device-to-host copy on CUDA): every vertex index in
// [0, V); with triangle_index, every entry in [-1, T).
inline void check_mesh_flow_values(const char* op, const at::Tensor& vertices, const at::Tensor& triangles,
                                   const at::Tensor* triangle_index) {
  const int64_t V = vertices.size(1), T = triangles.size(0);
  if (triangles.numel() > 0) {
    const auto mm = at::aminmax(triangles);
    const int64_t lo = std::get<0>(mm).item<int64_t>(), hi = std::get<1>(mm).item<int64_t>();
    TORCH_CHECK_VALUE(lo >= 0 && hi < V, op, ": triangles must hold vertex indices in [0, V) = [0, ", V,
                      "), got values from ", lo, " to ", hi);
  }
  if (triangle_index != nullptr && triangle_index->numel() > 0) {
    const auto mm = at::aminmax(*triangle_index);
    const int64_t lo = std::get<0>(mm).item<int64_t>(), hi = std::get<1>(mm).item<int64_t>();
    TORCH_CHECK_VALUE(lo >= -1 && hi < T, op, ": triangle_index must hold triangle indices in [-1, T) = [-1, ", T,
                      "), got values from ", lo, " to ", hi);
  }
}

}  // namespace fastwarp
