// Tuned CUDA device code of fastwarp::warp and fastwarp::warp_blend (no ATen: nvcc compiles
// it on its own, see compile_check.cu). The host (warp_kernel.cu) chooses these kernels when
// their conditions hold and falls back to the generic ones in warp_kernel.cuh otherwise.
//
// Tiles: every tiled kernel runs one block of kTileThreads = 256 threads per tile of
// blockDim.x x blockDim.y output pixels of one image (16 x 16 unless the image is narrower
// or shorter), one pixel per thread, the tile found from blockIdx.x with one 32-bit
// division per thread instead of a 64-bit unravel per pixel. 2-D tiles rather than a
// grid-stride loop over pixels because (1) the taps of a smooth flow for a 16 x 16 tile fall
// in about 17 x 17 image pixels, so the rows y0 and y0 + 1 that neighbouring warps read are
// the same L1 lines, and (2) the backward's shared-memory window of the image gradient
// needs the block's taps to be close together: a 16 x 16 tile with a 2-pixel halo needs a
// 20 x 20 window (1.56 x the tile), a 256 x 1 row would need 260 x 5 (5 x).
#pragma once

#include "../warp_math.h"
#include "warp_fast_math.h"

namespace fastwarp {
namespace detail {

// Dynamic shared memory of every kernel here (one declaration, 16-byte aligned).
template <typename T>
__device__ __forceinline__ T* dynamic_smem() {
  extern __shared__ __align__(16) unsigned char fw_dynamic_smem[];
  return reinterpret_cast<T*>(fw_dynamic_smem);
}

// The tile of this block: blockIdx.x = (n * tiles_y + tile_row) * tiles_x + tile_col.
__device__ __forceinline__ TilePos tile_of_block(int32_t tiles_x, int32_t tiles_y) {
  return tile_position(blockIdx.x, tiles_x, tiles_y, blockDim.x, blockDim.y);
}

// Forward, fast path: one thread per output pixel of the block's tile, tiled_forward_pixel
// (warp_fast_math.h) for every channel.
template <typename scalar_t, typename acc_t, bool kBlend, int kC, int kVec>
__global__ void __launch_bounds__(kTileThreads) warp_forward_tiled_kernel(const TiledArgs<scalar_t> a) {
  const TilePos tp = tile_of_block(a.tiles_x, a.tiles_y);
  const int32_t x = tp.x0 + static_cast<int32_t>(threadIdx.x);
  const int32_t y = tp.y0 + static_cast<int32_t>(threadIdx.y);
  if (x >= a.W || y >= a.H) return;  // no barrier in this kernel
  tiled_forward_pixel<scalar_t, acc_t, kBlend, kC, kVec>(a, tp.n, y, x);
}

// SharedScatter's and the flush's adds on the device: atomics (shared or global memory).
struct AtomicAdder {
  template <typename word>
  __device__ __forceinline__ void operator()(word* p, word v) const {
    atomicAdd(p, v);
  }
};

// Backward, tiled: warp_backward_pixel (the same per-pixel math and gradient writes as the
// generic kernel) with SharedScatter (warp_fast_math.h). With the window enabled, the block first finds its
// tile's mean flow (a block reduction), places the window on the displaced tile, zeroes it,
// runs the pixels, and flushes every nonzero window element with one global atomic: the 4 C
// global atomics per pixel become about C per pixel for a smooth flow (the taps of a
// 16 x 16 tile cover ~17 x 17 pixels; a CPU emulation counted 0.9-1.1 global atomics per
// pixel and channel for translations, zooms, rotations and smooth flows, 1.7 for i.i.d.
// 4-pixel noise), and contention on pixels that many of a tile's samples share (zoom-out, a
// tile pushed against the border) is resolved in shared memory first.
// `acc` is the [N, C, H, W] accumulation buffer (strides s_acc) of Accum's words; g.image
// must be non-null when the image gradient is wanted (warp_backward_pixel only tests it;
// the scatter writes `acc`).
template <typename scalar_t, typename acc_t, bool kBlend, typename Accum>
__global__ void __launch_bounds__(kTileThreads)
    warp_backward_tiled_kernel(WarpInputs<scalar_t> in, const scalar_t* grad_out, Strides4 s_gout,
                               WarpGrads<scalar_t, acc_t> g, typename Accum::word* acc, Strides4 s_acc,
                               Accum accum, WindowParams wp, int32_t tiles_x, int32_t tiles_y) {
  using word = typename Accum::word;
  constexpr int kWarps = kTileThreads / 32;
  __shared__ float s_sum[3][kWarps];
  __shared__ int64_t s_origin[2];

  const TilePos tp = tile_of_block(tiles_x, tiles_y);
  const int64_t n = tp.n;
  const int64_t y = tp.y0 + static_cast<int64_t>(threadIdx.y);
  const int64_t x = tp.x0 + static_cast<int64_t>(threadIdx.x);
  const bool inside = y < in.H && x < in.W;
  const int tid = static_cast<int>(threadIdx.y * blockDim.x + threadIdx.x);

  SharedScatter<acc_t, Accum, AtomicAdder> scatter{accum, acc, s_acc, nullptr, 0, 0, 0, 0, AtomicAdder{}};
  word* win = dynamic_smem<word>();
  const int32_t area = wp.wh * wp.ww;
  const int32_t win_size = static_cast<int32_t>(in.C) * area;  // host: fits the shared budget

  if (wp.enabled) {  // uniform over the grid: the barriers below are reached by every thread
    // Mean displacement of the tile's pixels (finite, clamped to the image size: a heuristic).
    float sdx = 0.0f, sdy = 0.0f, cnt = 0.0f;
    if (inside) {
      window_displacement<scalar_t, acc_t>(in, n, y, x, &sdx, &sdy);
      cnt = 1.0f;
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
      sdx += __shfl_down_sync(0xffffffffu, sdx, off);
      sdy += __shfl_down_sync(0xffffffffu, sdy, off);
      cnt += __shfl_down_sync(0xffffffffu, cnt, off);
    }
    if ((tid & 31) == 0) {
      s_sum[0][tid >> 5] = sdx;
      s_sum[1][tid >> 5] = sdy;
      s_sum[2][tid >> 5] = cnt;
    }
    for (int32_t e = tid; e < win_size; e += kTileThreads) win[e] = word(0);
    __syncthreads();
    if (tid == 0) {
      float mdx, mdy;
      tile_mean_flow(s_sum, &mdx, &mdy);
      s_origin[0] = window_origin(tp.y0, blockDim.y, mdy, wp.wh, in.H);
      s_origin[1] = window_origin(tp.x0, blockDim.x, mdx, wp.ww, in.W);
    }
    __syncthreads();
    scatter.window = win;
    scatter.wy0 = s_origin[0];
    scatter.wx0 = s_origin[1];
    scatter.wh = wp.wh;
    scatter.ww = wp.ww;
  }

  if (inside) warp_backward_pixel<scalar_t, acc_t, kBlend>(in, grad_out, s_gout, g, n, y, x, scatter);

  if (wp.enabled) {
    __syncthreads();
    const int32_t C = static_cast<int32_t>(in.C);
    for (int32_t e = tid; e < win_size; e += kTileThreads) {
      flush_window_element(win, e, C, wp, acc + n * s_acc.n, s_acc, scatter.wy0, scatter.wx0, AtomicAdder{});
    }
  }
}

// max |x| over `total` elements (a dense tensor's storage), as the bits of a non-negative
// float, into *result (which the caller zeroes). The bit patterns of non-negative floats
// order as the values do, NaN above +Inf, so a NaN or Inf anywhere shows in the result.
// Max is order-independent: deterministic.
template <typename scalar_t>
__global__ void abs_max_bits_kernel(const scalar_t* data, int64_t total, unsigned int* result) {
  unsigned int m = 0u;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const unsigned int b = __float_as_uint(static_cast<float>(data[i])) & 0x7fffffffu;
    m = b > m ? b : m;
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const unsigned int o = __shfl_down_sync(0xffffffffu, m, off);
    m = o > m ? o : m;
  }
  if ((threadIdx.x & 31u) == 0u) atomicMax(result, m);
}

// The deterministic image gradient from its fixed-point sums: q * 2^-exponent rounded to
// float (one rounding; the power-of-two factor is exact), then to scalar_t as
// finish_grad_image's .to(dtype) would. `q` and `out` have the same dense layout.
template <typename scalar_t>
__global__ void fixed_point_to_scalar_kernel(const unsigned long long* q, scalar_t* out, float inv_scale,
                                             int64_t total) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    out[i] = static_cast<scalar_t>(fixed_point_decode(q[i], inv_scale));
  }
}

// Gradient of the flow/texture/mask upsampling, table version: upsample_adjoint_table_at
// (upsample_adjoint_at's readers, weights, skips and summation order) with every UpAxis::make(dst) of the
// H rows and W columns computed once per block into shared memory (dynamic, (H + W)
// UpTab entries, host-checked to fit) instead of once per (element, row, column).
template <typename scalar_t, typename acc_t>
__global__ void upsample_adjoint_table_kernel(const scalar_t* grad_hi, Strides4 s_hi, scalar_t* grad_lo,
                                              Strides4 s_lo, int64_t K, int64_t h, int64_t w, int64_t H, int64_t W,
                                              int64_t total) {
  UpTab<acc_t>* tab_y = dynamic_smem<UpTab<acc_t>>();
  UpTab<acc_t>* tab_x = tab_y + H;
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) tab_y[i] = UpTab<acc_t>::make(i, h, H);
  for (int64_t i = threadIdx.x; i < W; i += blockDim.x) tab_x[i] = UpTab<acc_t>::make(i, w, W);
  __syncthreads();
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
    const int64_t j = e % w, i = (e / w) % h, k = (e / (w * h)) % K, n = e / (w * h * K);
    const acc_t sum = upsample_adjoint_table_at<scalar_t, acc_t>(grad_hi + n * s_hi.n + k * s_hi.c, s_hi.h, s_hi.w,
                                                                   i, j, h, w, H, W, tab_y, tab_x);
    grad_lo[n * s_lo.n + k * s_lo.c + i * s_lo.h + j * s_lo.w] = static_cast<scalar_t>(sum);
  }
}

}  // namespace detail
}  // namespace fastwarp
