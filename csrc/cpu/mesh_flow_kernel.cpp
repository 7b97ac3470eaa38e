// CPU kernels of fastwarp::mesh_flow and fastwarp::mesh_flow_backward (docs/design.md,
// "mesh_flow"; per-pixel math and the containment rule in ../mesh_flow.h).
//
// Forward, per batch item (items in parallel): the destination triangles once, then each
// valid triangle's bounding box scanned in index order, a pixel taking the first triangle
// that holds it (so the lowest index wins); then the flow of every pixel from its triangle.
// Backward, per batch item (items in parallel, each sequential: deterministic): every
// pixel adds b_j g into its triangle's sums S (float64), then each triangle, in index order,
// turns its sums into its three vertices' gradients.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

#include "../mesh_flow.h"
#include "../mesh_flow_checks.h"

namespace fastwarp {
namespace {

template <typename scalar_t>
detail::MeshInputs<scalar_t> mesh_inputs(const at::Tensor& vertices, const at::Tensor& displacement,
                                         const at::Tensor& triangles, int64_t H, int64_t W) {
  return detail::MeshInputs<scalar_t>{vertices.const_data_ptr<scalar_t>(), displacement.const_data_ptr<scalar_t>(),
                                      triangles.const_data_ptr<int64_t>(), vertices.size(0), vertices.size(1),
                                      triangles.size(0), H, W};
}

// Pixel columns (or rows) ceil(lo)..floor(hi) within [0, size): [*first, *last], empty when last < first.
template <typename scalar_t>
void pixel_span(scalar_t lo, scalar_t hi, int64_t size, int64_t* first, int64_t* last) {
  const scalar_t top = static_cast<scalar_t>(size - 1);
  *first = static_cast<int64_t>(std::min(std::max(std::ceil(lo), scalar_t(0)), top + 1));
  *last = static_cast<int64_t>(std::max(std::min(std::floor(hi), top), scalar_t(-1)));
}

template <typename scalar_t>
void forward_item(const detail::MeshInputs<scalar_t>& in, int64_t n, scalar_t* flow, int32_t* index) {
  const int64_t H = in.H, W = in.W, HW = H * W;
  int32_t* idx = index + n * HW;
  std::fill(idx, idx + HW, -1);
  std::vector<detail::MeshTriangle<scalar_t>> tris(in.T);
  for (int64_t t = 0; t < in.T; ++t) {
    const auto D = in.dest(n, t);
    tris[t] = D;
    if (!D.valid()) continue;
    int64_t x0, x1, y0, y1;
    pixel_span(D.xmin, D.xmax, W, &x0, &x1);
    pixel_span(D.ymin, D.ymax, H, &y0, &y1);
    for (int64_t y = y0; y <= y1; ++y) {
      for (int64_t x = x0; x <= x1; ++x) {
        if (idx[y * W + x] >= 0) continue;  // a lower index holds it
        scalar_t b[3];
        if (D.contains(static_cast<scalar_t>(x), static_cast<scalar_t>(y), b)) idx[y * W + x] = static_cast<int32_t>(t);
      }
    }
  }
  scalar_t* fx = flow + n * 2 * HW;
  scalar_t* fy = fx + HW;
  for (int64_t y = 0; y < H; ++y) {
    for (int64_t x = 0; x < W; ++x) {
      const int64_t p = y * W + x, t = idx[p];
      if (t < 0) {
        fx[p] = fy[p] = scalar_t(0);
        continue;
      }
      scalar_t b[3];
      tris[t].barycentric(static_cast<scalar_t>(x), static_cast<scalar_t>(y), b);
      in.flow(n, t, b, fx + p, fy + p);
    }
  }
}

std::tuple<at::Tensor, at::Tensor> mesh_flow_forward_kernel(const at::Tensor& vertices, const at::Tensor& displacement,
                                                            const at::Tensor& triangles, at::IntArrayRef size) {
  const char* op = "fastwarp.mesh_flow";
  check_mesh_flow_args(op, vertices, displacement, triangles, &size);
  check_mesh_flow_values(op, vertices, triangles, nullptr);
  const int64_t N = vertices.size(0), H = size[0], W = size[1];
  at::Tensor flow = at::empty({N, 2, H, W}, vertices.options());
  at::Tensor index = at::empty({N, H, W}, vertices.options().dtype(at::kInt));
  if (N == 0) return {flow, index};
  const at::Tensor v = vertices.contiguous(), d = displacement.contiguous();
  const at::Tensor tri = triangles.to(at::kLong).contiguous();
  AT_DISPATCH_FLOATING_TYPES(vertices.scalar_type(), "fastwarp_mesh_flow_cpu", [&] {
    const auto in = mesh_inputs<scalar_t>(v, d, tri, H, W);
    scalar_t* f = flow.mutable_data_ptr<scalar_t>();
    int32_t* idx = index.mutable_data_ptr<int32_t>();
    at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) forward_item(in, n, f, idx);
    });
  });
  return {flow, index};
}

template <typename scalar_t>
void backward_item(const detail::MeshInputs<scalar_t>& in, int64_t n, const scalar_t* grad_flow,
                   const int32_t* index, scalar_t* grad_vertices, scalar_t* grad_displacement) {
  const int64_t H = in.H, W = in.W, HW = H * W;
  std::vector<double> S(static_cast<size_t>(in.T) * 6, 0.0);
  std::vector<char> used(static_cast<size_t>(in.T), 0);
  const int32_t* idx = index + n * HW;
  const scalar_t* gx = grad_flow + n * 2 * HW;
  const scalar_t* gy = gx + HW;
  for (int64_t y = 0; y < H; ++y) {
    for (int64_t x = 0; x < W; ++x) {
      const int64_t p = y * W + x, t = idx[p];
      if (t < 0) continue;
      const auto D = in.dest(n, t);
      if (!D.valid()) continue;  // only a triangle_index not made by the forward points here
      scalar_t b[3];
      D.barycentric(static_cast<scalar_t>(x), static_cast<scalar_t>(y), b);
      double* s = S.data() + 6 * t;
      for (int j = 0; j < 3; ++j) {
        s[2 * j] += static_cast<double>(b[j]) * static_cast<double>(gx[p]);
        s[2 * j + 1] += static_cast<double>(b[j]) * static_cast<double>(gy[p]);
      }
      used[t] = 1;
    }
  }
  std::vector<double> gv(static_cast<size_t>(in.V) * 2, 0.0), gd(static_cast<size_t>(in.V) * 2, 0.0);
  for (int64_t t = 0; t < in.T; ++t) {
    if (!used[t]) continue;
    const double* s = S.data() + 6 * t;
    double gdest[6];
    if (!in.dest_grads(n, t, s, gdest)) continue;
    const int64_t* tri = in.triangles + 3 * t;
    for (int j = 0; j < 3; ++j) {
      for (int c = 0; c < 2; ++c) {
        gd[2 * tri[j] + c] += gdest[2 * j + c];
        gv[2 * tri[j] + c] += gdest[2 * j + c] + s[2 * j + c];
      }
    }
  }
  for (int64_t k = 0; k < 2 * in.V; ++k) {
    if (grad_vertices != nullptr) grad_vertices[n * 2 * in.V + k] = static_cast<scalar_t>(gv[k]);
    if (grad_displacement != nullptr) grad_displacement[n * 2 * in.V + k] = static_cast<scalar_t>(gd[k]);
  }
}

std::tuple<at::Tensor, at::Tensor> mesh_flow_backward_kernel(const at::Tensor& grad_flow, const at::Tensor& vertices,
                                                             const at::Tensor& displacement,
                                                             const at::Tensor& triangles,
                                                             const at::Tensor& triangle_index,
                                                             std::array<bool, 2> output_mask) {
  const char* op = "fastwarp.mesh_flow_backward";
  check_mesh_flow_backward_args(op, grad_flow, vertices, displacement, triangles, triangle_index);
  check_mesh_flow_values(op, vertices, triangles, &triangle_index);
  // A gradient not asked for is an empty tensor of its own (the schema's outputs must not alias).
  at::Tensor grad_vertices = output_mask[0] ? at::empty_like(vertices, at::MemoryFormat::Contiguous)
                                            : vertices.new_empty({0});
  at::Tensor grad_displacement = output_mask[1] ? at::empty_like(displacement, at::MemoryFormat::Contiguous)
                                                : vertices.new_empty({0});
  const int64_t N = vertices.size(0), H = triangle_index.size(1), W = triangle_index.size(2);
  if (N == 0 || !(output_mask[0] || output_mask[1])) return {grad_vertices, grad_displacement};
  const at::Tensor v = vertices.contiguous(), d = displacement.contiguous();
  const at::Tensor tri = triangles.to(at::kLong).contiguous();
  const at::Tensor g = grad_flow.contiguous(), idx = triangle_index.contiguous();
  AT_DISPATCH_FLOATING_TYPES(vertices.scalar_type(), "fastwarp_mesh_flow_backward_cpu", [&] {
    const auto in = mesh_inputs<scalar_t>(v, d, tri, H, W);
    scalar_t* gv = output_mask[0] ? grad_vertices.mutable_data_ptr<scalar_t>() : nullptr;
    scalar_t* gd = output_mask[1] ? grad_displacement.mutable_data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n)
        backward_item(in, n, g.const_data_ptr<scalar_t>(), idx.const_data_ptr<int32_t>(), gv, gd);
    });
  });
  return {grad_vertices, grad_displacement};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastwarp, CPU, m) {
  m.impl("mesh_flow", &mesh_flow_forward_kernel);
  m.impl("mesh_flow_backward", &mesh_flow_backward_kernel);
}

}  // namespace fastwarp
