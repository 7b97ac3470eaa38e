// CUDA device code of fastwarp::warp and fastwarp::warp_blend (no ATen: nvcc compiles it
// on its own, see compile_check.cu; a TensorRT plugin can include it).
//
// The generic kernels: one thread per output pixel (grid-stride), all channels in a loop, so
// the flow, the mask and the tap coordinates are read and computed once per pixel; 64-bit
// index math and any strides. The per-pixel math is the CPU kernel's (../warp_math.h). The
// host uses them where the tuned kernels of warp_fast.cuh do not apply (or when
// FASTWARP_CUDA_GENERIC=1), and the record kernel for the deterministic fallback.
#pragma once

#include "../warp_math.h"

namespace fastwarp {
namespace detail {

struct PixelIndex {
  int64_t n, y, x;
};

__device__ __forceinline__ PixelIndex unravel_pixel(int64_t i, int64_t H, int64_t W) {
  PixelIndex p;
  p.x = i % W;
  const int64_t r = i / W;
  p.y = r % H;
  p.n = r / H;
  return p;
}

template <typename scalar_t, typename acc_t, bool kBlend>
__global__ void warp_forward_cuda_kernel(WarpInputs<scalar_t> in, scalar_t* out, Strides4 s_out, int64_t total) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const PixelIndex p = unravel_pixel(i, in.H, in.W);
    warp_forward_pixel<scalar_t, acc_t, kBlend>(in, out, s_out, p.n, p.y, p.x);
  }
}

// Image-gradient scatter with global atomics (the default, fastest path).
template <typename acc_t>
struct AtomicScatter {
  acc_t* base;
  Strides4 s;
  __device__ __forceinline__ void operator()(int64_t n, int64_t c, int, bool valid, int64_t ty, int64_t tx,
                                             acc_t v) const {
    if (valid) atomicAdd(base + n * s.n + c * s.c + ty * s.h + tx * s.w, v);
  }
};

// Deterministic path: every (pixel, tap) records its target pixel and per-channel value;
// the host side sums the records with a sort-based reduction whose order is fixed.
template <typename acc_t>
struct RecordScatter {
  int64_t* index;  // [total * taps]: flat target pixel n * H * W + y * W + x
  acc_t* value;    // [total * taps, C]
  int64_t C, H, W;
  int64_t taps;    // taps_per_pixel: 4 bilinear, 16 bicubic
  int64_t pixel;
  __device__ __forceinline__ void operator()(int64_t n, int64_t c, int tap, bool valid, int64_t ty, int64_t tx,
                                             acc_t v) const {
    const int64_t slot = pixel * taps + tap;
    if (c == 0) index[slot] = valid ? (n * H + ty) * W + tx : 0;
    value[slot * C + c] = valid ? v : acc_t(0);
  }
};

template <typename scalar_t, typename acc_t, bool kBlend>
__global__ void warp_backward_cuda_kernel(WarpInputs<scalar_t> in, const scalar_t* grad_out, Strides4 s_gout,
                                          WarpGrads<scalar_t, acc_t> g, int64_t total) {
  AtomicScatter<acc_t> scatter{g.image, g.s_image};
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const PixelIndex p = unravel_pixel(i, in.H, in.W);
    warp_backward_pixel<scalar_t, acc_t, kBlend>(in, grad_out, s_gout, g, p.n, p.y, p.x, scatter);
  }
}

template <typename scalar_t, typename acc_t, bool kBlend>
__global__ void warp_backward_record_cuda_kernel(WarpInputs<scalar_t> in, const scalar_t* grad_out,
                                                 Strides4 s_gout, WarpGrads<scalar_t, acc_t> g, int64_t* rec_index,
                                                 acc_t* rec_value, int64_t total) {
  RecordScatter<acc_t> scatter{rec_index, rec_value, in.C, in.H, in.W, taps_per_pixel(in.interp), 0};
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const PixelIndex p = unravel_pixel(i, in.H, in.W);
    scatter.pixel = i;
    warp_backward_pixel<scalar_t, acc_t, kBlend>(in, grad_out, s_gout, g, p.n, p.y, p.x, scatter);
  }
}

// Gradient of the flow/texture/mask upsampling: one thread per h x w element, a gather
// over the H x W per-pixel gradients (no atomics, so it is deterministic too).
template <typename scalar_t, typename acc_t>
__global__ void upsample_adjoint_cuda_kernel(const scalar_t* grad_hi, Strides4 s_hi, scalar_t* grad_lo, Strides4 s_lo,
                                             int64_t K, int64_t h, int64_t w, int64_t H, int64_t W, int64_t total) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
    const int64_t j = e % w, i = (e / w) % h, k = (e / (w * h)) % K, n = e / (w * h * K);
    const acc_t v = upsample_adjoint_at<scalar_t, acc_t>(grad_hi + n * s_hi.n + k * s_hi.c, s_hi.h, s_hi.w, i, j, h,
                                                         w, H, W);
    grad_lo[n * s_lo.n + k * s_lo.c + i * s_lo.h + j * s_lo.w] = static_cast<scalar_t>(v);
  }
}

}  // namespace detail
}  // namespace fastwarp
