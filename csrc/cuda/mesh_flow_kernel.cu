// CUDA kernels of fastwarp::mesh_flow and fastwarp::mesh_flow_backward (docs/design.md,
// "mesh_flow"; per-pixel math and the containment rule in ../mesh_flow.h, shared with the
// CPU kernels, whose products the device code rounds alike: __fmul_rn / __dmul_rn).
//
// Forward: one thread per pixel, looping over the triangles in index order; the first that
// holds the pixel (the lowest index) gives its flow. Backward, two launches adding with
// atomicAdd: per pixel, b_j g into its triangle's sums S [N, T, 6]; per triangle, -A^T S_j
// (plus S_j for the source vertices) into its three vertices' gradients. The order of the
// additions varies from run to run, so float32 gradients vary in their last bits
// (nondeterministic; the CPU backward is the deterministic one).
//
// The triangles' range check reads their values (one device-to-host copy per call); during
// a CUDA graph capture, which forbids it, the check is skipped and the kernels ignore a
// triangle with an index outside [0, V) (and a pixel whose triangle_index is outside [0, T)).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <tuple>

#include "../mesh_flow.h"
#include "../mesh_flow_checks.h"

namespace fastwarp {
namespace {

constexpr int kThreads = 256;

int blocks_for(int64_t total) {
  return static_cast<int>(std::min<int64_t>((total + kThreads - 1) / kThreads, 65535));
}

template <typename scalar_t>
__global__ void mesh_flow_forward_cuda_kernel(detail::MeshInputs<scalar_t> in, scalar_t* flow, int32_t* index,
                                              int64_t total) {
  const int64_t HW = in.H * in.W;
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < total;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = p / HW, q = p % HW;
    const scalar_t px = static_cast<scalar_t>(q % in.W), py = static_cast<scalar_t>(q / in.W);
    int32_t best = -1;
    scalar_t fx = scalar_t(0), fy = scalar_t(0);
    for (int64_t t = 0; t < in.T; ++t) {
      if (!in.in_range(t)) continue;
      const auto D = in.dest(n, t);
      scalar_t b[3];
      if (D.valid() && D.contains(px, py, b)) {
        best = static_cast<int32_t>(t);
        in.flow(n, t, b, &fx, &fy);
        break;
      }
    }
    flow[n * 2 * HW + q] = fx;
    flow[n * 2 * HW + HW + q] = fy;
    index[p] = best;
  }
}

template <typename scalar_t>
__global__ void mesh_flow_sums_cuda_kernel(detail::MeshInputs<scalar_t> in, const scalar_t* grad_flow,
                                           const int32_t* index, scalar_t* sums, int64_t total) {
  const int64_t HW = in.H * in.W;
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < total;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = p / HW, q = p % HW, t = index[p];
    if (t < 0 || t >= in.T || !in.in_range(t)) continue;
    const auto D = in.dest(n, t);
    if (!D.valid()) continue;  // only a triangle_index not made by the forward points here
    scalar_t b[3];
    D.barycentric(static_cast<scalar_t>(q % in.W), static_cast<scalar_t>(q / in.W), b);
    const scalar_t g[2] = {grad_flow[n * 2 * HW + q], grad_flow[n * 2 * HW + HW + q]};
    scalar_t* s = sums + (n * in.T + t) * 6;
    for (int j = 0; j < 3; ++j) {
      atomicAdd(s + 2 * j, b[j] * g[0]);
      atomicAdd(s + 2 * j + 1, b[j] * g[1]);
    }
  }
}

template <typename scalar_t>
__global__ void mesh_flow_vertex_grads_cuda_kernel(detail::MeshInputs<scalar_t> in, const scalar_t* sums,
                                                   scalar_t* grad_vertices, scalar_t* grad_displacement,
                                                   int64_t total) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = e / in.T, t = e % in.T;
    if (!in.in_range(t)) continue;
    const scalar_t* s = sums + e * 6;
    scalar_t gdest[6];
    if (!in.dest_grads(n, t, s, gdest)) continue;
    const int64_t* tri = in.triangles + 3 * t;
    for (int j = 0; j < 3; ++j) {
      for (int c = 0; c < 2; ++c) {
        const int64_t at = (n * in.V + tri[j]) * 2 + c;
        atomicAdd(grad_displacement + at, gdest[2 * j + c]);
        atomicAdd(grad_vertices + at, gdest[2 * j + c] + s[2 * j + c]);
      }
    }
  }
}

template <typename scalar_t>
detail::MeshInputs<scalar_t> mesh_inputs(const at::Tensor& vertices, const at::Tensor& displacement,
                                         const at::Tensor& triangles, int64_t H, int64_t W) {
  return detail::MeshInputs<scalar_t>{vertices.const_data_ptr<scalar_t>(), displacement.const_data_ptr<scalar_t>(),
                                      triangles.const_data_ptr<int64_t>(), vertices.size(0), vertices.size(1),
                                      triangles.size(0), H, W};
}

bool capturing() {
  return c10::cuda::currentStreamCaptureStatusMayInitCtx() != c10::cuda::CaptureStatus::None;
}

std::tuple<at::Tensor, at::Tensor> mesh_flow_forward_kernel(const at::Tensor& vertices, const at::Tensor& displacement,
                                                            const at::Tensor& triangles, at::IntArrayRef size) {
  const char* op = "fastwarp.mesh_flow";
  check_mesh_flow_args(op, vertices, displacement, triangles, &size);
  const c10::cuda::CUDAGuard guard(vertices.device());
  if (!capturing()) check_mesh_flow_values(op, vertices, triangles, nullptr);
  const int64_t N = vertices.size(0), H = size[0], W = size[1], total = N * H * W;
  at::Tensor flow = at::empty({N, 2, H, W}, vertices.options());
  at::Tensor index = at::empty({N, H, W}, vertices.options().dtype(at::kInt));
  if (total == 0) return {flow, index};
  const at::Tensor v = vertices.contiguous(), d = displacement.contiguous();
  const at::Tensor tri = triangles.to(at::kLong).contiguous();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(vertices.scalar_type(), "fastwarp_mesh_flow_cuda", [&] {
    mesh_flow_forward_cuda_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
        mesh_inputs<scalar_t>(v, d, tri, H, W), flow.mutable_data_ptr<scalar_t>(), index.mutable_data_ptr<int32_t>(),
        total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {flow, index};
}

std::tuple<at::Tensor, at::Tensor> mesh_flow_backward_kernel(const at::Tensor& grad_flow, const at::Tensor& vertices,
                                                             const at::Tensor& displacement,
                                                             const at::Tensor& triangles,
                                                             const at::Tensor& triangle_index,
                                                             std::array<bool, 2> output_mask) {
  const char* op = "fastwarp.mesh_flow_backward";
  check_mesh_flow_backward_args(op, grad_flow, vertices, displacement, triangles, triangle_index);
  const c10::cuda::CUDAGuard guard(vertices.device());
  if (!capturing()) check_mesh_flow_values(op, vertices, triangles, &triangle_index);
  const int64_t N = vertices.size(0), T = triangles.size(0);
  const int64_t H = triangle_index.size(1), W = triangle_index.size(2), total = N * H * W;
  // Both gradients are accumulated together (the vertices' is the displacement's plus S_j).
  at::Tensor grad_vertices = at::zeros(vertices.sizes(), vertices.options());
  at::Tensor grad_displacement = at::zeros(vertices.sizes(), vertices.options());
  if (total > 0 && T > 0 && (output_mask[0] || output_mask[1])) {
    const at::Tensor v = vertices.contiguous(), d = displacement.contiguous();
    const at::Tensor tri = triangles.to(at::kLong).contiguous();
    const at::Tensor g = grad_flow.contiguous(), idx = triangle_index.contiguous();
    at::Tensor sums = at::zeros({N, T, 6}, vertices.options());
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(vertices.scalar_type(), "fastwarp_mesh_flow_backward_cuda", [&] {
      const auto in = mesh_inputs<scalar_t>(v, d, tri, H, W);
      mesh_flow_sums_cuda_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
          in, g.const_data_ptr<scalar_t>(), idx.const_data_ptr<int32_t>(), sums.mutable_data_ptr<scalar_t>(), total);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      mesh_flow_vertex_grads_cuda_kernel<scalar_t><<<blocks_for(N * T), kThreads, 0, stream>>>(
          in, sums.const_data_ptr<scalar_t>(), grad_vertices.mutable_data_ptr<scalar_t>(),
          grad_displacement.mutable_data_ptr<scalar_t>(), N * T);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  // A gradient not asked for is an empty tensor of its own (the schema's outputs must not alias).
  return {output_mask[0] ? grad_vertices : vertices.new_empty({0}),
          output_mask[1] ? grad_displacement : vertices.new_empty({0})};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastwarp, CUDA, m) {
  m.impl("mesh_flow", &mesh_flow_forward_kernel);
  m.impl("mesh_flow_backward", &mesh_flow_backward_kernel);
}

}  // namespace fastwarp
