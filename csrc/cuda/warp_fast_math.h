// Helpers of the tuned CUDA kernels (warp_fast.cuh): 32-bit index versions of
// warp_math.h's memory accesses, the tiles, the per-pixel work of the tiled forward, the
// shared-memory window of the backward (placement, routing of a tap, flush), the fixed-point
// encoding of the deterministic backward and the upsampling weight table of the adjoint.
//
// No CUDA intrinsics (one #if picks the device rounding intrinsic) and no ATen: besides
// nvcc, a plain C++ compiler can include this header, so its functions can be checked
// against the reference on a machine with no GPU (tests/test_cuda_host.py, which compiles
// tests/cuda_host/warp_fast_host.cpp and emulates the kernels' blocks with these functions).
// The semantics (which taps are valid, the weights, the upsampling) stay warp_math.h's:
// everything here takes its Taps, LowRes and UpAxis and only changes how offsets are
// computed (32-bit) or where values are cached.
#pragma once

#include <math.h>
#include <stdint.h>

#include "../warp_math.h"

#if defined(__CUDACC__)
#define FW_PRAGMA_UNROLL _Pragma("unroll")
#else
#define FW_PRAGMA_UNROLL
#endif

namespace fastwarp {
namespace detail {

// Threads per block of every tiled kernel: a tile of tw x th = 256 output pixels.
constexpr int kTileThreads = 256;

// Tile shape: 16 x 16, narrower for W < 16 (tw the smallest power of two >= W), then wider
// and shorter for a small H (th the smallest power of two >= H); tw * th = kTileThreads
// whenever tw or th was not cut short by both W and H small.
struct TileShape {
  int tw, th;
};

inline TileShape tile_shape(int64_t H, int64_t W) {
  const auto pow2_at_least = [](int64_t v) {
    int64_t p = 1;
    while (p < v && p < kTileThreads) p <<= 1;
    return p;
  };
  TileShape t;
  t.tw = static_cast<int>(pow2_at_least(W) < 16 ? pow2_at_least(W) : 16);
  t.th = kTileThreads / t.tw;
  const int64_t h2 = pow2_at_least(H);
  if (t.th > h2) {
    t.th = static_cast<int>(h2);
    t.tw = kTileThreads / t.th;
  }
  return t;
}

struct TilePos {
  int32_t n, y0, x0;
};

// The tile of block `block` (tiles of tw x th pixels): block = (n * tiles_y + tile_row) *
// tiles_x + tile_col, found with 32-bit divisions.
FW_HOST_DEVICE TilePos tile_position(uint32_t block, int32_t tiles_x, int32_t tiles_y, uint32_t tw, uint32_t th) {
  uint32_t t = block;
  const uint32_t col = t % static_cast<uint32_t>(tiles_x);
  t /= static_cast<uint32_t>(tiles_x);
  const uint32_t row = t % static_cast<uint32_t>(tiles_y);
  TilePos p;
  p.n = static_cast<int32_t>(t / static_cast<uint32_t>(tiles_y));
  p.y0 = static_cast<int32_t>(row * th);
  p.x0 = static_cast<int32_t>(col * tw);
  return p;
}

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

// kVec consecutive elements, loaded or stored at once (the address must be aligned to the
// vector: the host checks the pointers and strides).
template <typename T, int N>
struct alignas(sizeof(T) * N) AlignedVec {
  T val[N];
};

// One tap's kVec consecutive channels (channels_last), 0 for a tap outside the image.
template <int kVec, typename acc_t, typename scalar_t>
FW_HOST_DEVICE void load_tap_channels(const scalar_t* p, int32_t offset, bool valid, acc_t* dst) {
  if (valid) {
    const AlignedVec<scalar_t, kVec> v = *reinterpret_cast<const AlignedVec<scalar_t, kVec>*>(p + offset);
    FW_PRAGMA_UNROLL
    for (int j = 0; j < kVec; ++j) dst[j] = static_cast<acc_t>(v.val[j]);
  } else {
    FW_PRAGMA_UNROLL
    for (int j = 0; j < kVec; ++j) dst[j] = acc_t(0);
  }
}

// Output pixel (n, y, x) of the tiled forward (warp_forward_tiled_kernel), all channels:
// warp_forward_pixel's math with 32-bit offsets (every tensor's largest offset < 2^31, checked
// on the host), the tap offsets computed once per pixel and reused for every channel, the
// channel loop unrolled for kC = 1, 3 or 4 (kC = 0: runtime C). kVec = 4: channels_last image
// and output with C % 4 == 0, pointers and strides aligned to 4 elements (host-checked): each
// tap's channels are read, and the output written, 4 at a time.
template <typename scalar_t, typename acc_t, bool kBlend, int kC, int kVec>
FW_HOST_DEVICE void tiled_forward_pixel(const TiledArgs<scalar_t>& a, int32_t n, int32_t y, int32_t x) {
  static_assert(kVec == 1 || kVec == 4, "vectors of 1 or 4 channels");
  static_assert(kVec == 1 || kC % kVec == 0, "a fixed C must be a multiple of the vector");
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
      FW_PRAGMA_UNROLL
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
    FW_PRAGMA_UNROLL
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

// Shared-memory window of the tiled backward's image gradient (host-chosen sizes; enabled
// only when the image gradient is asked for and C * wh * ww words fit the budget).
struct WindowParams {
  int32_t wh, ww;      // window size, <= the image's (and >= the tile's where the image allows)
  bool enabled;
  bool channels_last;  // flush in the accumulation buffer's memory order: channels fastest
};

constexpr int64_t kWindowHalo = 2;               // window margin around the displaced tile, pixels
constexpr int64_t kMaxWindowBytes = 32 * 1024;   // shared memory for the window

// The window of a tw x th tile: the tile plus kWindowHalo on every side, clipped to the
// image, if C of them (words of word_bytes) fit kMaxWindowBytes; else disabled.
inline WindowParams window_params(int tw, int th, int64_t H, int64_t W, int64_t C, int64_t word_bytes,
                                  bool channels_last) {
  WindowParams wp{0, 0, false, false};
  if (C <= 0) return wp;
  const int64_t wh = th + 2 * kWindowHalo < H ? th + 2 * kWindowHalo : H;
  const int64_t ww = tw + 2 * kWindowHalo < W ? tw + 2 * kWindowHalo : W;
  if (C * wh * ww * word_bytes <= kMaxWindowBytes) {
    wp = WindowParams{static_cast<int32_t>(wh), static_cast<int32_t>(ww), true, channels_last};
  }
  return wp;
}

// Output pixel (n, y, x)'s displacement as the window placement uses it: finite, clamped to
// +-(W, H) (a heuristic: any window origin is correct).
template <typename scalar_t, typename acc_t>
FW_HOST_DEVICE void window_displacement(const WarpInputs<scalar_t>& in, int64_t n, int64_t y, int64_t x, float* dx,
                                        float* dy) {
  const LowRes<acc_t> lr = LowRes<acc_t>::make(y, x, in.h, in.w, in.H, in.W);
  const scalar_t* fl = in.flow + n * in.s_flow.n;
  const float fx = static_cast<float>(lr.sample(fl, in.s_flow.h, in.s_flow.w) * lr.sx);
  const float fy = static_cast<float>(lr.sample(fl + in.s_flow.c, in.s_flow.h, in.s_flow.w) * lr.sy);
  const float lx = static_cast<float>(in.W), ly = static_cast<float>(in.H);
  *dx = isfinite(fx) ? fminf(fmaxf(fx, -lx), lx) : 0.0f;
  *dy = isfinite(fy) ? fminf(fmaxf(fy, -ly), ly) : 0.0f;
}

// A tile's mean flow (mdx, mdy) from its warps' partial sums of dx, dy and of the pixels
// counted (sums[0..2][0..warps)), added in warp order; (0, 0) where no pixel counted.
template <int kWarps>
FW_HOST_DEVICE void tile_mean_flow(const float (&sums)[3][kWarps], float* mdx, float* mdy) {
  float sx = 0.0f, sy = 0.0f, sc = 0.0f;
  for (int i = 0; i < kWarps; ++i) {
    sx += sums[0][i];
    sy += sums[1][i];
    sc += sums[2][i];
  }
  *mdx = sc > 0.0f ? sx / sc : 0.0f;
  *mdy = sc > 0.0f ? sy / sc : 0.0f;
}

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
// (exact when |v| * scale >= 2^24; when the exponent is capped at 126, i.e. bound < 2^-65,
// the error is 2^-127 per value, more than bound * 2^-61), so a target receiving K values is off by at most
// K * H * W * G * M * 2^-60: for a 512 x 512 image (2^18 pixels) and K = 16 that is
// 2^-38 * G * M, far below one float32 rounding (2^-24 relative) of a gradient of size G * M.
// In the worst case, K = H * W (every sample clamped onto one pixel, whose gradient can then
// reach H W G M), the error is H W * 2^-60 of that largest possible value.
//
// Not usable (ok = false; the caller keeps the sort-based path): G or M not finite (a NaN or
// infinite gradient or mask), G * M >= 2^126 (a float product could overflow), or the scale
// would leave float32's normal range.
// Where a tap (channel c, image pixel (ty, tx)) lands in the window [wy0, wy0 + wh) x
// [wx0, wx0 + ww) (layout [C][wh][ww]): true and *slot, or false (the tap goes to global
// memory; also for wh = ww = 0, no window).
FW_HOST_DEVICE bool window_slot(int64_t c, int64_t ty, int64_t tx, int64_t wy0, int64_t wx0, int64_t wh, int64_t ww,
                                int64_t* slot) {
  const uint64_t ry = static_cast<uint64_t>(ty - wy0), rx = static_cast<uint64_t>(tx - wx0);
  if (ry < static_cast<uint64_t>(wh) && rx < static_cast<uint64_t>(ww)) {
    *slot = (c * wh + static_cast<int64_t>(ry)) * ww + static_cast<int64_t>(rx);
    return true;
  }
  return false;
}

// Element e of the window flush: e walks the accumulation buffer's memory order (channels
// fastest when channels_last), giving the channel c and window pixel (ry, rx); the element
// is window[c * wh * ww + ry * ww + rx].
FW_HOST_DEVICE void window_flush_element(int32_t e, int32_t C, const WindowParams& wp, int32_t* c, int32_t* ry,
                                         int32_t* rx) {
  const int32_t area = wp.wh * wp.ww;
  int32_t p;
  if (wp.channels_last) {
    *c = e % C;
    p = e / C;
  } else {
    *c = e / area;
    p = e - *c * area;
  }
  *ry = p / wp.ww;
  *rx = p - *ry * wp.ww;
}

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

// A scattered value as the 64-bit fixed-point integer rint(v * scale), two's complement
// (sums wrap mod 2^64; only the final sum must fit, see above). Round to nearest, ties to
// even, on both sides: __float2ll_rn on the device, llrintf in the default rounding mode on
// the host. scale is a power of two, so v * scale is exact.
FW_HOST_DEVICE unsigned long long fixed_point_encode(float v, float scale) {
#if defined(__CUDA_ARCH__)
  return static_cast<unsigned long long>(__float2ll_rn(v * scale));
#else
  return static_cast<unsigned long long>(llrintf(v * scale));
#endif
}

// A fixed-point sum back to float: one rounding (to float), then the exact power-of-two
// factor inv_scale = 2^-exponent.
FW_HOST_DEVICE float fixed_point_decode(unsigned long long q, float inv_scale) {
  return static_cast<float>(static_cast<long long>(q)) * inv_scale;
}

// How a scattered image-gradient value is accumulated.
// FloatAccum: in acc_t itself (float atomics: fast, order-dependent rounding).
template <typename acc_t>
struct FloatAccum {
  using word = acc_t;
  FW_HOST_DEVICE word encode(acc_t v) const { return v; }
};

// FixedAccum: as the 64-bit integer fixed_point_encode(v, scale) (choose_fixed_point_scale:
// the bound that makes it exact, and the precision). Integer addition is associative, so the
// sum is bit-identical whatever the order of the atomics. float only.
struct FixedAccum {
  using word = unsigned long long;
  float scale;  // a power of two: v * scale is exact
  FW_HOST_DEVICE word encode(float v) const { return fixed_point_encode(v, scale); }
};

// The Scatter of warp_backward_pixel (see warp_math.h) for the tiled backward: a tap whose
// target lies in the block's window (window_slot) adds into shared memory, any other into the
// global buffer; the window is flushed once per block (flush_window_element). Zero
// contributions are skipped (adding +-0 changes no sum). Each shared element only ever
// receives taps, which are valid image pixels, so the flush of the nonzero elements writes
// only inside the image whatever the window's origin. `Add` adds a word at an address: atomics
// on the device (warp_fast.cuh), a plain add in the host emulation.
template <typename acc_t, typename Accum, typename Add>
struct SharedScatter {
  using word = typename Accum::word;
  Accum accum;
  word* global;  // [N, C, H, W] accumulation buffer, element strides s
  Strides4 s;
  word* window;  // [C][wh][ww]; wh = ww = 0 sends every tap to global
  int64_t wy0, wx0, wh, ww;
  Add add;

  FW_HOST_DEVICE void operator()(int64_t n, int64_t c, int, bool valid, int64_t ty, int64_t tx, acc_t v) const {
    if (!valid) return;
    const word q = accum.encode(v);
    if (q == word(0)) return;
    int64_t slot;
    if (window_slot(c, ty, tx, wy0, wx0, wh, ww, &slot)) {
      add(window + slot, q);
    } else {
      add(global + n * s.n + c * s.c + ty * s.h + tx * s.w, q);
    }
  }
};

// Element e of a block's window flush (see window_flush_element): its nonzero word added to
// image n's accumulation buffer `acc_n` (strides s) at window origin (wy0, wx0).
template <typename word, typename Add>
FW_HOST_DEVICE void flush_window_element(const word* window, int32_t e, int32_t C, const WindowParams& wp,
                                         word* acc_n, const Strides4& s, int64_t wy0, int64_t wx0, const Add& add) {
  int32_t c, ry, rx;
  window_flush_element(e, C, wp, &c, &ry, &rx);
  const word v = window[c * wp.wh * wp.ww + ry * wp.ww + rx];
  if (v != word(0)) add(acc_n + c * s.c + (wy0 + ry) * s.h + (wx0 + rx) * s.w, v);
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

// upsample_adjoint_at (the same readers, weights, skips and summation order) at element
// (i, j) of an h x w plane, with the weights read from the tables of the H rows (tab_y) and
// W columns (tab_x) instead of recomputed: the gradient plane `g` (H x W, strides sh, sw).
template <typename grad_t, typename acc_t>
FW_HOST_DEVICE acc_t upsample_adjoint_table_at(const grad_t* g, int64_t sh, int64_t sw, int64_t i, int64_t j,
                                               int64_t h, int64_t w, int64_t H, int64_t W, const UpTab<acc_t>* tab_y,
                                               const UpTab<acc_t>* tab_x) {
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
      if (wx != acc_t(0)) row += wx * static_cast<acc_t>(g[yy * sh + xx * sw]);
    }
    sum += wy * row;
  }
  return sum;
}

}  // namespace detail
}  // namespace fastwarp
