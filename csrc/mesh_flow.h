// Per-pixel math of mesh_flow, shared by the CPU and CUDA kernels; ATen-free like
// warp_math.h (nvcc compiles it on its own).
//
// docs/design.md, "mesh_flow": a triangle mesh with source vertices L (pixels of the flow's
// grid, pixel centres at integers) and destination vertices D = L + d (d: each vertex's
// forward motion). For each pixel p, the lowest-index destination triangle t holding p and
// p's barycentric coordinates b in it give the backward flow
//   flow(p) = sum_k b_k L_k - p                  (0 where no triangle holds p)
// i.e. the piecewise-affine map from the destination mesh back to the source mesh, minus p,
// computed as -sum_k b_k d_k (equal: sum_k b_k D_k = p and sum_k b_k = 1), so a mesh that
// does not move gives exactly 0 (the identity edit is bit-exact) and a translation exactly
// -d up to the rounding of sum_k b_k.
//
// Containment (identical in every backend and in fastwarp/ops/reference.py):
//   area2 = (x1 - x0) (y2 - y0) - (x2 - x0) (y1 - y0)    (twice D's signed area)
//   w0 = (x1 - px) (y2 - py) - (x2 - px) (y1 - py)     and cyclically w1, w2
//   b_k = w_k / area2, all in the working precision (the inputs' dtype), in this order,
//   products rounded on their own (no fused multiply-add: on the device __fmul_rn/__dmul_rn).
// p is in t when t is valid (|area2| >= kMinArea2: 1e-8 in float32, 1e-12 in float64, and
// finite: a triangle with a non-finite vertex is never valid), p lies in t's bounding box
// (min_k x_k <= px <= max_k x_k, likewise y) and b_0, b_1, b_2 >= 0. Either orientation.
//
// Gradients: with A the 2x2 Jacobian of t's destination -> source affine map,
// A = [L1 - L0, L2 - L0] [D1 - D0, D2 - D0]^-1, d flow / d D_j = -b_j A (p = sum b_k D_k and
// sum b_k = 1 held fixed) and d flow / d L_j = b_j I (direct). So with S_j = sum over t's
// pixels of b_j g(p) (g: the flow's gradient), the displacement's gradient at vertex t_j is
// -A^T S_j and the source vertices' is -A^T S_j + S_j.
#pragma once

#include <float.h>
#include <stdint.h>

#include "warp_math.h"

namespace fastwarp {
namespace detail {

template <typename acc_t>
struct MeshLimits;
template <>
struct MeshLimits<float> {
  static constexpr float kMinArea2 = 1e-8f;
  static constexpr float kMax = FLT_MAX;
};
template <>
struct MeshLimits<double> {
  static constexpr double kMinArea2 = 1e-12;
  static constexpr double kMax = DBL_MAX;
};

// A product rounded on its own: the compiler may not fuse it into a multiply-add (which
// could move a pixel on an edge into the neighbouring triangle on one backend only).
FW_HOST_DEVICE float mesh_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
FW_HOST_DEVICE double mesh_mul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

// One destination triangle of one batch item.
template <typename acc_t>
struct MeshTriangle {
  acc_t x0, y0, x1, y1, x2, y2;  // destination vertices D_k
  acc_t area2;                   // twice the signed area
  acc_t xmin, xmax, ymin, ymax;  // bounding box

  FW_HOST_DEVICE static MeshTriangle make(acc_t x0, acc_t y0, acc_t x1, acc_t y1, acc_t x2, acc_t y2) {
    MeshTriangle t;
    t.x0 = x0, t.y0 = y0, t.x1 = x1, t.y1 = y1, t.x2 = x2, t.y2 = y2;
    t.area2 = mesh_mul(x1 - x0, y2 - y0) - mesh_mul(x2 - x0, y1 - y0);
    t.xmin = x0 < x1 ? x0 : x1;
    t.xmin = x2 < t.xmin ? x2 : t.xmin;
    t.xmax = x0 > x1 ? x0 : x1;
    t.xmax = x2 > t.xmax ? x2 : t.xmax;
    t.ymin = y0 < y1 ? y0 : y1;
    t.ymin = y2 < t.ymin ? y2 : t.ymin;
    t.ymax = y0 > y1 ? y0 : y1;
    t.ymax = y2 > t.ymax ? y2 : t.ymax;
    return t;
  }

  // Not degenerate and finite (NaN fails both comparisons).
  FW_HOST_DEVICE bool valid() const {
    const acc_t a = area2 < acc_t(0) ? -area2 : area2;
    return a >= MeshLimits<acc_t>::kMinArea2 && a <= MeshLimits<acc_t>::kMax;
  }

  // b_k = w_k / area2 (of a valid triangle).
  FW_HOST_DEVICE void barycentric(acc_t px, acc_t py, acc_t* b) const {
    const acc_t w0 = mesh_mul(x1 - px, y2 - py) - mesh_mul(x2 - px, y1 - py);
    const acc_t w1 = mesh_mul(x2 - px, y0 - py) - mesh_mul(x0 - px, y2 - py);
    const acc_t w2 = mesh_mul(x0 - px, y1 - py) - mesh_mul(x1 - px, y0 - py);
    b[0] = w0 / area2;
    b[1] = w1 / area2;
    b[2] = w2 / area2;
  }

  // Whether pixel (px, py) is in this (valid) triangle, with its barycentric coordinates.
  FW_HOST_DEVICE bool contains(acc_t px, acc_t py, acc_t* b) const {
    if (!(px >= xmin && px <= xmax && py >= ymin && py <= ymax)) return false;
    barycentric(px, py, b);
    return b[0] >= acc_t(0) && b[1] >= acc_t(0) && b[2] >= acc_t(0);
  }
};

// The inputs of one call: contiguous [N, V, 2] vertices and displacement, [T, 3] int64 triangles.
template <typename scalar_t>
struct MeshInputs {
  const scalar_t* vertices;
  const scalar_t* displacement;
  const int64_t* triangles;
  int64_t N, V, T, H, W;

  // Whether triangle t's vertex indices lie in [0, V): checked before the kernels run, but
  // on CUDA during a graph capture (no device-to-host copy allowed) the kernels skip such a
  // triangle instead of reading outside the vertices.
  FW_HOST_DEVICE bool in_range(int64_t t) const {
    const int64_t* tri = triangles + 3 * t;
    return tri[0] >= 0 && tri[0] < V && tri[1] >= 0 && tri[1] < V && tri[2] >= 0 && tri[2] < V;
  }

  // Triangle t of batch item n in the destination mesh.
  FW_HOST_DEVICE MeshTriangle<scalar_t> dest(int64_t n, int64_t t) const {
    const int64_t* tri = triangles + 3 * t;
    const scalar_t* L = vertices + n * V * 2;
    const scalar_t* d = displacement + n * V * 2;
    const int64_t a = 2 * tri[0], b = 2 * tri[1], c = 2 * tri[2];
    return MeshTriangle<scalar_t>::make(L[a] + d[a], L[a + 1] + d[a + 1], L[b] + d[b], L[b + 1] + d[b + 1],
                                        L[c] + d[c], L[c + 1] + d[c + 1]);
  }

  // The flow of a pixel in triangle t (barycentric coordinates b): -sum_k b_k d_k.
  FW_HOST_DEVICE void flow(int64_t n, int64_t t, const scalar_t* b, scalar_t* fx, scalar_t* fy) const {
    const int64_t* tri = triangles + 3 * t;
    const scalar_t* d = displacement + n * V * 2;
    const int64_t a = 2 * tri[0], c1 = 2 * tri[1], c2 = 2 * tri[2];
    *fx = -(b[0] * d[a] + b[1] * d[c1] + b[2] * d[c2]);
    *fy = -(b[0] * d[a + 1] + b[1] * d[c1 + 1] + b[2] * d[c2 + 1]);
  }

  // The destination vertices' gradients of triangle t from its sums S (S[2 j + c] = sum of
  // b_j g_c over its pixels): gdest[2 j + c] = (-A^T S_j)_c. False (and nothing written)
  // when t is not valid.
  template <typename sum_t>
  FW_HOST_DEVICE bool dest_grads(int64_t n, int64_t t, const sum_t* S, sum_t* gdest) const {
    const MeshTriangle<scalar_t> D = dest(n, t);
    if (!D.valid()) return false;
    const int64_t* tri = triangles + 3 * t;
    const scalar_t* L = vertices + n * V * 2;
    const int64_t a = 2 * tri[0], b = 2 * tri[1], c = 2 * tri[2];
    // P = [L1 - L0, L2 - L0], E = [D1 - D0, D2 - D0] (columns), det E = area2, A = P E^-1.
    const sum_t p00 = L[b] - L[a], p01 = L[c] - L[a], p10 = L[b + 1] - L[a + 1], p11 = L[c + 1] - L[a + 1];
    const sum_t e00 = D.x1 - D.x0, e01 = D.x2 - D.x0, e10 = D.y1 - D.y0, e11 = D.y2 - D.y0;
    const sum_t det = D.area2;
    const sum_t a00 = (p00 * e11 - p01 * e10) / det, a01 = (p01 * e00 - p00 * e01) / det;
    const sum_t a10 = (p10 * e11 - p11 * e10) / det, a11 = (p11 * e00 - p10 * e01) / det;
    for (int j = 0; j < 3; ++j) {
      const sum_t s0 = S[2 * j], s1 = S[2 * j + 1];
      gdest[2 * j] = -(a00 * s0 + a10 * s1);
      gdest[2 * j + 1] = -(a01 * s0 + a11 * s1);
    }
    return true;
  }
};

}  // namespace detail
}  // namespace fastwarp
