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

struct TilePos {
  int32_t n, y0, x0;
};

// The tile of this block: blockIdx.x = (n * tiles_y + tile_row) * tiles_x + tile_col.
__device__ __forceinline__ TilePos tile_of_block(int32_t tiles_x, int32_t tiles_y) {
  uint32_t t = blockIdx.x;
  const uint32_t col = t % static_cast<uint32_t>(tiles_x);
  t /= static_cast<uint32_t>(tiles_x);
  const uint32_t row = t % static_cast<uint32_t>(tiles_y);
  TilePos p;
  p.n = static_cast<int32_t>(t / static_cast<uint32_t>(tiles_y));
  p.y0 = static_cast<int32_t>(row * blockDim.y);
  p.x0 = static_cast<int32_t>(col * blockDim.x);
  return p;
}

// kVec consecutive elements, loaded or stored at once (the address must be aligned to the
// vector: the host checks the pointers and strides).
template <typename T, int N>
struct alignas(sizeof(T) * N) AlignedVec {
  T val[N];
};

// One tap's kVec consecutive channels (channels_last), 0 for a tap outside the image.
template <int kVec, typename acc_t, typename scalar_t>
__device__ __forceinline__ void load_tap_channels(const scalar_t* p, int32_t offset, bool valid, acc_t* dst) {
  if (valid) {
    const AlignedVec<scalar_t, kVec> v = *reinterpret_cast<const AlignedVec<scalar_t, kVec>*>(p + offset);
#pragma unroll
    for (int j = 0; j < kVec; ++j) dst[j] = static_cast<acc_t>(v.val[j]);
  } else {
#pragma unroll
    for (int j = 0; j < kVec; ++j) dst[j] = acc_t(0);
  }
}

// Forward, fast path: warp_forward_pixel's math with 32-bit offsets (every tensor's largest
// offset < 2^31, checked on the host), the tap offsets computed once per pixel and reused for
// every channel, the channel loop unrolled for kC = 1, 3 or 4 (kC = 0: runtime C).
// kVec = 4: channels_last image and output with C % 4 == 0, pointers and strides aligned to 4
// elements (host-checked): each tap's channels are read, and the output written, 4 at a time
// (16 bytes in float32, 8 in half precision).
template <typename scalar_t, typename acc_t, bool kBlend, int kC, int kVec>
__global__ void __launch_bounds__(kTileThreads) warp_forward_tiled_kernel(const TiledArgs<scalar_t> a) {
  static_assert(kVec == 1 || kVec == 4, "vectors of 1 or 4 channels");
  static_assert(kVec == 1 || kC % kVec == 0, "a fixed C must be a multiple of the vector");
  const TilePos tp = tile_of_block(a.tiles_x, a.tiles_y);
  const int32_t x = tp.x0 + static_cast<int32_t>(threadIdx.x);
  const int32_t y = tp.y0 + static_cast<int32_t>(threadIdx.y);
  if (x >= a.W || y >= a.H) return;  // no barrier in this kernel
  const int32_t n = tp.n;

  const LowRes<acc_t> lr = LowRes<acc_t>::make(y, x, a.h, a.w, a.H, a.W);
  const scalar_t* fl = a.flow + n * a.s_flow.n;
  const acc_t dx = lowres_sample32(lr, fl, a.s_flow.h, a.s_flow.w) * lr.sx;
  const acc_t dy = lowres_sample32(lr, fl + a.s_flow.c, a.s_flow.h, a.s_flow.w) * lr.sy;
  const Taps<acc_t> t = make_taps<acc_t>(x, y, dx, dy, a.W, a.H, a.padding);
  acc_t m = acc_t(1);
  const scalar_t* tex = nullptr;
  if (kBlend) {
    m = lowres_sample32(lr, a.mask + n * a.s_mask.n, a.s_mask.h, a.s_mask.w);
    tex = a.texture + n * a.s_texture.n;
  }
  const TapOffsets32 o = TapOffsets32::make(t, a.s_image.h, a.s_image.w);
  const scalar_t* img = a.image + n * a.s_image.n;
  scalar_t* out = a.out + n * a.s_out.n + y * a.s_out.h + x * a.s_out.w;
  const int32_t C = kC > 0 ? kC : a.C;

  if constexpr (kVec > 1) {
    // channels_last: s_image.c == s_out.c == 1.
    for (int32_t c = 0; c < C; c += kVec) {
      acc_t nw[kVec], ne[kVec], sw[kVec], se[kVec];
      load_tap_channels<kVec>(img + c, o.nw, o.vnw, nw);
      load_tap_channels<kVec>(img + c, o.ne, o.vne, ne);
      load_tap_channels<kVec>(img + c, o.sw, o.vsw, sw);
      load_tap_channels<kVec>(img + c, o.se, o.vse, se);
      AlignedVec<scalar_t, kVec> r;
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        const Quad<acc_t> q{nw[j], ne[j], sw[j], se[j]};
        acc_t v = q.interpolate(t);
        if (kBlend) {
          const acc_t tx = lowres_sample32(lr, tex + (c + j) * a.s_texture.c, a.s_texture.h, a.s_texture.w);
          v = m * v + (acc_t(1) - m) * tx;
        }
        r.val[j] = static_cast<scalar_t>(v);
      }
      *reinterpret_cast<AlignedVec<scalar_t, kVec>*>(out + c) = r;
    }
  } else {
#pragma unroll
    for (int32_t c = 0; c < C; ++c) {
      acc_t v = o.load<acc_t>(img + c * a.s_image.c).interpolate(t);
      if (kBlend) {
        const acc_t tx = lowres_sample32(lr, tex + c * a.s_texture.c, a.s_texture.h, a.s_texture.w);
        v = m * v + (acc_t(1) - m) * tx;
      }
      out[c * a.s_out.c] = static_cast<scalar_t>(v);
    }
  }
}

// How a scattered image-gradient value is accumulated.
// FloatAccum: in acc_t itself (float atomics: fast, order-dependent rounding).
template <typename acc_t>
struct FloatAccum {
  using word = acc_t;
  __device__ __forceinline__ word encode(acc_t v) const { return v; }
};

// FixedAccum: as the 64-bit integer rint(v * scale) (choose_fixed_point_scale in
// warp_fast_math.h: the bound that makes it exact and the precision). Integer addition is
// associative, so the sum is bit-identical whatever the order of the atomics. float only.
struct FixedAccum {
  using word = unsigned long long;
  float scale;  // a power of two: v * scale is exact
  __device__ __forceinline__ word encode(float v) const {
    return static_cast<word>(__float2ll_rn(v * scale));  // two's complement; sums wrap mod 2^64
  }
};

// Window placement of one block (host-chosen sizes; enabled only when the image gradient is
// asked for and C * wh * ww words fit the shared-memory budget).
struct WindowParams {
  int32_t wh, ww;      // window size, <= the image's (and >= the tile's where the image allows)
  bool enabled;
  bool channels_last;  // flush in the accumulation buffer's memory order: channels fastest
};

// The Scatter of warp_backward_pixel (see warp_math.h) for the tiled backward: a tap whose
// target lies in the block's window [wy0, wy0 + wh) x [wx0, wx0 + ww) adds into shared memory
// (layout [C][wh][ww]), any other into the global buffer; the window is flushed once per block
// (warp_backward_tiled_kernel). Zero contributions are skipped (adding +-0 changes no sum).
// Each shared element only ever receives taps, which are valid image pixels, so the flush
// of the nonzero elements writes only inside the image whatever the window's origin.
template <typename acc_t, typename Accum>
struct SharedScatter {
  using word = typename Accum::word;
  Accum accum;
  word* global;  // [N, C, H, W] accumulation buffer, element strides s
  Strides4 s;
  word* window;  // shared [C][wh][ww]; wh = ww = 0 sends every tap to global
  int64_t wy0, wx0, wh, ww;

  __device__ __forceinline__ void operator()(int64_t n, int64_t c, int, bool valid, int64_t ty, int64_t tx,
                                             acc_t v) const {
    if (!valid) return;
    const word q = accum.encode(v);
    if (q == word(0)) return;
    const uint64_t ry = static_cast<uint64_t>(ty - wy0), rx = static_cast<uint64_t>(tx - wx0);
    if (ry < static_cast<uint64_t>(wh) && rx < static_cast<uint64_t>(ww)) {
      atomicAdd(window + (c * wh + static_cast<int64_t>(ry)) * ww + static_cast<int64_t>(rx), q);
    } else {
      atomicAdd(global + n * s.n + c * s.c + ty * s.h + tx * s.w, q);
    }
  }
};

// Backward, tiled: warp_backward_pixel (the same per-pixel math and gradient writes as the
// generic kernel) with SharedScatter. With the window enabled, the block first finds its
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

  SharedScatter<acc_t, Accum> scatter{accum, acc, s_acc, nullptr, 0, 0, 0, 0};
  word* win = dynamic_smem<word>();
  const int32_t area = wp.wh * wp.ww;
  const int32_t win_size = static_cast<int32_t>(in.C) * area;  // host: fits the shared budget

  if (wp.enabled) {  // uniform over the grid: the barriers below are reached by every thread
    // Mean displacement of the tile's pixels (finite, clamped to the image size: a heuristic).
    float sdx = 0.0f, sdy = 0.0f, cnt = 0.0f;
    if (inside) {
      const LowRes<acc_t> lr = LowRes<acc_t>::make(y, x, in.h, in.w, in.H, in.W);
      const scalar_t* fl = in.flow + n * in.s_flow.n;
      const float dx = static_cast<float>(lr.sample(fl, in.s_flow.h, in.s_flow.w) * lr.sx);
      const float dy = static_cast<float>(lr.sample(fl + in.s_flow.c, in.s_flow.h, in.s_flow.w) * lr.sy);
      const float lx = static_cast<float>(in.W), ly = static_cast<float>(in.H);
      sdx = isfinite(dx) ? fminf(fmaxf(dx, -lx), lx) : 0.0f;
      sdy = isfinite(dy) ? fminf(fmaxf(dy, -ly), ly) : 0.0f;
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
      float tx = 0.0f, ty = 0.0f, tc = 0.0f;
      for (int i = 0; i < kWarps; ++i) {
        tx += s_sum[0][i];
        ty += s_sum[1][i];
        tc += s_sum[2][i];
      }
      const float mdx = tc > 0.0f ? tx / tc : 0.0f, mdy = tc > 0.0f ? ty / tc : 0.0f;
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
      int32_t c, p;  // channel, pixel of the window; e walks the buffer's memory order
      if (wp.channels_last) {
        c = e % C;
        p = e / C;
      } else {
        c = e / area;
        p = e - c * area;
      }
      const word v = win[c * area + p];
      if (v != word(0)) {
        const int32_t ry = p / wp.ww, rx = p - ry * wp.ww;
        atomicAdd(acc + n * s_acc.n + c * s_acc.c + (scatter.wy0 + ry) * s_acc.h + (scatter.wx0 + rx) * s_acc.w, v);
      }
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
    const float v = static_cast<float>(static_cast<long long>(q[i])) * inv_scale;
    out[i] = static_cast<scalar_t>(v);
  }
}

// Gradient of the flow/texture/mask upsampling, table version: upsample_adjoint_at (the
// same readers, weights, skips and summation order) with every UpAxis::make(dst) of the
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
    const scalar_t* g = grad_hi + n * s_hi.n + k * s_hi.c;
    int64_t y_lo, y_hi, x_lo, x_hi;
    UpAxis<acc_t>::readers(i, h, H, &y_lo, &y_hi);
    UpAxis<acc_t>::readers(j, w, W, &x_lo, &x_hi);
    acc_t sum = acc_t(0);
    for (int64_t yy = y_lo; yy < y_hi; ++yy) {
      const acc_t wy = tab_y[yy].weight(i);
      if (wy == acc_t(0)) continue;
      acc_t row = acc_t(0);
      for (int64_t xx = x_lo; xx < x_hi; ++xx) {
        const acc_t wx = tab_x[xx].weight(j);
        if (wx != acc_t(0)) row += wx * static_cast<acc_t>(g[yy * s_hi.h + xx * s_hi.w]);
      }
      sum += wy * row;
    }
    grad_lo[n * s_lo.n + k * s_lo.c + i * s_lo.h + j * s_lo.w] = static_cast<scalar_t>(sum);
  }
}

}  // namespace detail
}  // namespace fastwarp
