// Helpers of the tuned CUDA kernels (warp_fast.cuh): 32-bit index versions of
// warp_math.h's memory accesses, the shared-memory window placement, the fixed-point scale
// of the deterministic backward and the upsampling weight table of the adjoint.
//
// No CUDA intrinsics and no ATen: besides nvcc, a plain C++ compiler can include this
// header, so its functions can be checked against warp_math.h on a machine with no GPU.
// The semantics (which taps are valid, the weights, the upsampling) stay warp_math.h's:
// everything here takes its Taps, LowRes and UpAxis and only changes how offsets are
// computed (32-bit) or where values are cached.
#pragma once

#include <math.h>
#include <stdint.h>

#include "../warp_math.h"

namespace fastwarp {
namespace detail {

// Threads per block of every tiled kernel: a tile of tw x th = 256 output pixels.
constexpr int kTileThreads = 256;

// Element strides that fit 32 bits (the host checks every tensor's largest offset < 2^31).
struct Strides4i {
  int32_t n, c, h, w;
};

// One call of the tiled forward, with 32-bit strides. texture and mask are null for warp.
template <typename scalar_t>
struct TiledArgs {
  const scalar_t* image;
  Strides4i s_image;
  const scalar_t* flow;
  Strides4i s_flow;
  const scalar_t* texture;
  Strides4i s_texture;
  const scalar_t* mask;
  Strides4i s_mask;
  scalar_t* out;
  Strides4i s_out;
  int32_t C, H, W, h, w;
  int32_t tiles_x, tiles_y;  // tiles per row and per column of one image
  Padding padding;
};

// LowRes::sample with 32-bit offsets: the same reads, weights and order of operations.
// Every index LowRes produces lies inside the h x w plane, so each offset is at most the
// tensor's largest offset (< 2^31).
template <typename acc_t, typename scalar_t>
FW_HOST_DEVICE acc_t lowres_sample32(const LowRes<acc_t>& lr, const scalar_t* plane, int32_t sh, int32_t sw) {
  if (lr.identity) {
    return static_cast<acc_t>(plane[static_cast<int32_t>(lr.y) * sh + static_cast<int32_t>(lr.x) * sw]);
  }
  const int32_t r0 = static_cast<int32_t>(lr.ay.i0) * sh, r1 = static_cast<int32_t>(lr.ay.i1) * sh;
  const int32_t c0 = static_cast<int32_t>(lr.ax.i0) * sw, c1 = static_cast<int32_t>(lr.ax.i1) * sw;
  const acc_t top = lr.ax.l0 * static_cast<acc_t>(plane[r0 + c0]) + lr.ax.l1 * static_cast<acc_t>(plane[r0 + c1]);
  const acc_t bottom = lr.ax.l0 * static_cast<acc_t>(plane[r1 + c0]) + lr.ax.l1 * static_cast<acc_t>(plane[r1 + c1]);
  return lr.ay.l0 * top + lr.ay.l1 * bottom;
}

// The four taps of load_quad as 32-bit offsets within a channel plane (or, channels_last,
// the offsets of the taps' first channel), computed once per pixel and reused for every
// channel. Same validity as load_quad; an offset is computed only for a valid tap, whose
// indices are then inside the image (x0 and y0 may be -1 only for an invalid lower tap),
// so it is below the image's largest offset (< 2^31).
struct TapOffsets32 {
  int32_t nw, ne, sw, se;
  bool vnw, vne, vsw, vse;

  template <typename acc_t>
  FW_HOST_DEVICE static TapOffsets32 make(const Taps<acc_t>& t, int32_t sh, int32_t sw) {
    TapOffsets32 o;
    const int32_t x0 = static_cast<int32_t>(t.x.i0), y0 = static_cast<int32_t>(t.y.i0);
    o.vnw = t.y.v0 && t.x.v0;
    o.vne = t.y.v0 && t.x.v1;
    o.vsw = t.y.v1 && t.x.v0;
    o.vse = t.y.v1 && t.x.v1;
    o.nw = o.vnw ? y0 * sh + x0 * sw : 0;
    o.ne = o.vne ? y0 * sh + (x0 + 1) * sw : 0;
    o.sw = o.vsw ? (y0 + 1) * sh + x0 * sw : 0;
    o.se = o.vse ? (y0 + 1) * sh + (x0 + 1) * sw : 0;
    return o;
  }

  // load_quad of one channel plane: taps outside the image read 0.
  template <typename acc_t, typename scalar_t>
  FW_HOST_DEVICE Quad<acc_t> load(const scalar_t* plane) const {
    Quad<acc_t> q;
    q.nw = vnw ? static_cast<acc_t>(plane[nw]) : acc_t(0);
    q.ne = vne ? static_cast<acc_t>(plane[ne]) : acc_t(0);
    q.sw = vsw ? static_cast<acc_t>(plane[sw]) : acc_t(0);
    q.se = vse ? static_cast<acc_t>(plane[se]) : acc_t(0);
    return q;
  }
};

// Where a block's shared-memory window of the image gradient starts along one axis.
// The block's tile covers [tile0, tile0 + tile_len); displaced by the tile's mean flow its
// taps cover about [floor(tile0 + mean), floor(tile0 + mean) + tile_len]; the window (win_len
// <= size samples) is centred on that span and kept inside [0, size). Only a performance
// choice: taps outside the window go to global memory, so any origin is correct.
FW_HOST_DEVICE int64_t window_origin(int64_t tile0, int64_t tile_len, float mean_disp, int64_t win_len,
                                     int64_t size) {
  const float lo = floorf(static_cast<float>(tile0) + mean_disp);
  const float slack = static_cast<float>(win_len - tile_len - 1);
  float o = lo - floorf(0.5f * slack);
  const int64_t last = size - win_len;  // >= 0: the host clips the window to the image
  if (!(o > 0.0f)) o = 0.0f;            // also catches NaN (mean_disp is finite by construction)
  if (o > static_cast<float>(last)) o = static_cast<float>(last);
  int64_t r = static_cast<int64_t>(o);
  return r > last ? last : (r < 0 ? 0 : r);
}

// Fixed-point scale of the deterministic image gradient: each scattered value v becomes the
// integer rint(v * 2^exponent), accumulated with 64-bit integer atomics (exact and
// associative, so the result does not depend on the order), and the sum is multiplied by
// 2^-exponent at the end.
//
// Overflow bound. A scattered value is v = w * go * m: w one of the four bilinear weights
// (w in [0, 1] whenever the tap is valid: both fractions are then finite and in [0, 1]),
// go one grad_output element (|go| <= G) and m the (upsampled) mask, 1 for warp (|m| <= M:
// an upsampled value is a convex combination of mask values). An output pixel's four valid
// taps are four distinct image pixels, so a target image element (n, c, y, x) receives at
// most one value from each of the H * W output pixels (n, c, *, *), and
//   sum |v| <= H * W * G * M * (1 + a few float roundings) < bound / 2,  bound = 2 H W G M.
// With scale = 2^exponent < 2^61 / bound (exponent = 61 - e, bound < 2^e), and rint adding at
// most 1/2 per value:  sum |q| < 2^60 + H * W / 2 < 2^62, so the exact integer sum fits an
// int64. (Intermediate wrap-around of the unsigned atomics would not matter either: the sum is
// computed modulo 2^64 and only the final value must fit.)
//
// Precision. Each value is off by at most 2^-(exponent+1) <= bound * 2^-61 = H W G M * 2^-60
// (exact when |v| * scale >= 2^24), so a target receiving K values is off by at most
// K * H * W * G * M * 2^-60: for a 512 x 512 image (2^18 pixels) and K = 16 that is
// 2^-38 * G * M, far below one float32 rounding (2^-24 relative) of a gradient of size G * M.
// In the worst case, K = H * W (every sample clamped onto one pixel, whose gradient can then
// reach H W G M), the error is H W * 2^-60 of that largest possible value.
//
// Not usable (ok = false; the caller keeps the sort-based path): G or M not finite (a NaN or
// infinite gradient or mask), G * M >= 2^126 (a float product could overflow), or the scale
// would leave float32's normal range.
struct FixedPointScale {
  bool ok;
  int exponent;  // scale = 2^exponent, in [-126, 126]
};

inline FixedPointScale choose_fixed_point_scale(float max_abs_value, float max_abs_mask, int64_t pixels) {
  FixedPointScale r{false, 0};
  if (!(isfinite(max_abs_value) && isfinite(max_abs_mask)) || pixels <= 0) return r;
  const double gm = static_cast<double>(max_abs_value) * static_cast<double>(max_abs_mask);
  if (!(gm < 0x1p126)) return r;
  const double bound = 2.0 * static_cast<double>(pixels) * gm;
  int exponent = 0;  // bound == 0: every value is 0, any scale works
  if (bound > 0.0) {
    int e = 0;
    frexp(bound, &e);  // bound = f * 2^e, f in [0.5, 1): bound < 2^e
    exponent = 61 - e;
  }
  if (exponent > 126) exponent = 126;  // smaller scale than allowed: still no overflow
  if (exponent < -126) return r;
  r.ok = true;
  r.exponent = exponent;
  return r;
}

// UpAxis::make(dst, in, out) of one output sample, cached (in shared memory) by the table
// version of the upsampling adjoint; weight() is UpAxis::weight on the cached values.
template <typename acc_t>
struct UpTab {
  int32_t i0, i1;
  acc_t l0, l1;

  FW_HOST_DEVICE static UpTab make(int64_t dst, int64_t in, int64_t out) {
    const UpAxis<acc_t> a = UpAxis<acc_t>::make(dst, in, out);
    UpTab t;
    t.i0 = static_cast<int32_t>(a.i0);
    t.i1 = static_cast<int32_t>(a.i1);
    t.l0 = a.l0;
    t.l1 = a.l1;
    return t;
  }

  FW_HOST_DEVICE acc_t weight(int64_t i) const {
    return (i0 == i ? l0 : acc_t(0)) + (i1 == i ? l1 : acc_t(0));
  }
};

}  // namespace detail
}  // namespace fastwarp
