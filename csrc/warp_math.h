// Per-pixel math of fastwarp's warp and warp_blend, shared by the CPU and CUDA kernels.
//
// ATen-free on purpose: nvcc compiles this header on its own (CI compile-checks the CUDA
// device code on machines with no GPU), and a TensorRT plugin can include it unchanged.
//
// Semantics (docs/design.md, "The ops"): backward warping with pixel centres at integer
// coordinates, exactly F.grid_sample(mode="bilinear", align_corners=True) on
// base_grid + normalised flow, including its treatment of size-1 dimensions and
// non-finite coordinates on CPU:
//   border: the coordinate is clamped into [0, size - 1]; NaN clamps to 0.
//   zeros:  out-of-range taps read 0; a NaN or infinite coordinate gives NaN weights
//           (so a NaN output), a huge finite one gives 0.
#pragma once

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define FW_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FW_HOST_DEVICE inline
#endif

namespace fastwarp {
namespace detail {

enum class Padding : int { Border = 0, Zeros = 1 };

// The image taps (the ops' `mode`): grid_sample's bilinear (2 x 2) and bicubic (4 x 4, Keys'
// cubic convolution with a = -0.75). Only the image taps change: the maps' own upsampling
// and their sampling at theta grid positions stay bilinear.
enum class Interp : int { Bilinear = 0, Bicubic = 1 };

// Element strides of a 4-D tensor, in elements (not bytes). Any layout works: contiguous
// NCHW, channels_last, or a strided view.
struct Strides4 {
  int64_t n, c, h, w;
};

#if defined(__CUDA_ARCH__)
FW_HOST_DEVICE float fw_floor(float v) { return floorf(v); }
FW_HOST_DEVICE double fw_floor(double v) { return floor(v); }
#else
// Baseline x86-64 (SSE2) has no rounding instruction, and the compiler's inline floorf
// sequence made the CPU kernel ~25% slower than with SSE4.1's roundss. Truncation is exact
// where it is defined: every float of magnitude >= 2^23 (double: 2^52) is an integer, and
// NaN and infinities are their own floor, so those are returned unchanged.
FW_HOST_DEVICE float fw_floor(float v) {
  if (!(fabsf(v) < 8388608.0f)) return v;
  const float t = static_cast<float>(static_cast<int32_t>(v));
  return t > v ? t - 1.0f : t;
}
FW_HOST_DEVICE double fw_floor(double v) {
  if (!(fabs(v) < 4503599627370496.0)) return v;
  const double t = static_cast<double>(static_cast<int64_t>(v));
  return t > v ? t - 1.0 : t;
}
#endif

// One axis of a bilinear sample: the lower tap index, which taps are inside the image,
// the fractional position (weight of the upper tap) and d(coordinate)/d(flow).
template <typename acc_t>
struct Axis {
  int64_t i0;  // lower tap index; meaningful only where v0 or v1 holds
  bool v0;     // lower tap i0 inside [0, size - 1]
  bool v1;     // upper tap i0 + 1 inside [0, size - 1]
  acc_t frac;  // weight of the upper tap; the lower tap gets 1 - frac
  acc_t grad;  // d coordinate / d flow: 0 where border clamps or the size is 1

  FW_HOST_DEVICE static Axis make(acc_t pos, acc_t d, int64_t size, Padding padding) {
    Axis a;
    acc_t c;
    a.grad = acc_t(1);
    if (size == 1) {
      // align_corners=True maps every finite normalised coordinate of a size-1 axis onto
      // its only pixel (grid_sample's unnormalise multiplies by size - 1 = 0); infinite
      // or NaN flow still yields NaN there, as it does in grid_sample.
      c = d * acc_t(0);
      a.grad = acc_t(0);
    } else {
      c = pos + d;
    }
    if (padding == Padding::Border) {
      const acc_t hi = static_cast<acc_t>(size - 1);
      // Written so that NaN lands on 0, as grid_sample's CPU clamp does. The gradient is
      // zero on the bounds themselves (grid_sample's clip mask uses strict inequalities).
      if (!(c > acc_t(0))) {
        c = acc_t(0);
        a.grad = acc_t(0);
      } else if (!(c < hi)) {
        c = hi;
        a.grad = acc_t(0);
      }
    }
    const acc_t f = fw_floor(c);
    a.frac = c - f;
    const acc_t last = static_cast<acc_t>(size - 1);
    // Range tests on the floating value first: converting NaN or a huge value to an
    // integer is undefined behaviour, and no such tap may ever be dereferenced.
    a.v0 = f >= acc_t(0) && f <= last;
    a.v1 = f >= acc_t(-1) && f <= last - acc_t(1);
    a.i0 = (a.v0 || a.v1) ? static_cast<int64_t>(f) : 0;
    return a;
  }
};

// The four bilinear taps of one output pixel, in grid_sample's nw/ne/sw/se order.
template <typename acc_t>
struct Taps {
  Axis<acc_t> x, y;

  FW_HOST_DEVICE acc_t w_nw() const { return (acc_t(1) - x.frac) * (acc_t(1) - y.frac); }
  FW_HOST_DEVICE acc_t w_ne() const { return x.frac * (acc_t(1) - y.frac); }
  FW_HOST_DEVICE acc_t w_sw() const { return (acc_t(1) - x.frac) * y.frac; }
  FW_HOST_DEVICE acc_t w_se() const { return x.frac * y.frac; }
};

template <typename acc_t>
FW_HOST_DEVICE Taps<acc_t> make_taps(int64_t px, int64_t py, acc_t dx, acc_t dy, int64_t W, int64_t H,
                                     Padding padding) {
  Taps<acc_t> t;
  t.x = Axis<acc_t>::make(static_cast<acc_t>(px), dx, W, padding);
  t.y = Axis<acc_t>::make(static_cast<acc_t>(py), dy, H, padding);
  return t;
}

// The four tap values of one channel plane; taps outside the image read 0.
template <typename acc_t>
struct Quad {
  acc_t nw, ne, sw, se;

  FW_HOST_DEVICE acc_t interpolate(const Taps<acc_t>& t) const {
    return t.w_nw() * nw + t.w_ne() * ne + t.w_sw() * sw + t.w_se() * se;
  }
  // d(sample)/d(x) and d(sample)/d(y) in pixels, before the clamp factor Axis::grad.
  FW_HOST_DEVICE acc_t d_dx(const Taps<acc_t>& t) const {
    return (acc_t(1) - t.y.frac) * (ne - nw) + t.y.frac * (se - sw);
  }
  FW_HOST_DEVICE acc_t d_dy(const Taps<acc_t>& t) const {
    return (acc_t(1) - t.x.frac) * (sw - nw) + t.x.frac * (se - ne);
  }
};

template <typename acc_t, typename scalar_t>
FW_HOST_DEVICE Quad<acc_t> load_quad(const scalar_t* plane, int64_t sh, int64_t sw, const Taps<acc_t>& t) {
  const int64_t x0 = t.x.i0, y0 = t.y.i0;
  Quad<acc_t> q;
  q.nw = (t.y.v0 && t.x.v0) ? static_cast<acc_t>(plane[y0 * sh + x0 * sw]) : acc_t(0);
  q.ne = (t.y.v0 && t.x.v1) ? static_cast<acc_t>(plane[y0 * sh + (x0 + 1) * sw]) : acc_t(0);
  q.sw = (t.y.v1 && t.x.v0) ? static_cast<acc_t>(plane[(y0 + 1) * sh + x0 * sw]) : acc_t(0);
  q.se = (t.y.v1 && t.x.v1) ? static_cast<acc_t>(plane[(y0 + 1) * sh + (x0 + 1) * sw]) : acc_t(0);
  return q;
}

// --- bicubic taps (mode="bicubic"): F.grid_sample(mode="bicubic", align_corners=True) ---
//
// For a sample coordinate c on an axis: f = floor(c), t = c - f, taps at f - 1 .. f + 2 with
// Keys' weights (a = -0.75, as PyTorch's get_cubic_upsample_coefficients). Padding per tap:
// border clamps each tap's index into [0, size - 1] (so the edge pixel may get several
// weights), zeros reads 0 outside. grid_sample does not clamp the coordinate itself for
// bicubic: a non-finite coordinate gives NaN weights (a NaN output) in both padding modes.

// The four weights of a cubic tap row at fraction t, and their derivatives d w / d t.
template <typename acc_t>
FW_HOST_DEVICE void cubic_weights(acc_t t, acc_t* w, acc_t* dw) {
  const acc_t A = acc_t(-0.75);
  const acc_t x0 = t + acc_t(1), x1 = t, x2 = acc_t(1) - t, x3 = acc_t(2) - t;
  // |x| in [1, 2): ((A x - 5A) x + 8A) x - 4A; |x| < 1: ((A + 2) x - (A + 3)) x x + 1
  w[0] = ((A * x0 - acc_t(5) * A) * x0 + acc_t(8) * A) * x0 - acc_t(4) * A;
  w[1] = ((A + acc_t(2)) * x1 - (A + acc_t(3))) * x1 * x1 + acc_t(1);
  w[2] = ((A + acc_t(2)) * x2 - (A + acc_t(3))) * x2 * x2 + acc_t(1);
  w[3] = ((A * x3 - acc_t(5) * A) * x3 + acc_t(8) * A) * x3 - acc_t(4) * A;
  if (dw != nullptr) {
    // d/dx of each piece, times dx/dt (+1 for x0, x1; -1 for x2, x3).
    dw[0] = (acc_t(3) * A * x0 - acc_t(10) * A) * x0 + acc_t(8) * A;
    dw[1] = (acc_t(3) * (A + acc_t(2)) * x1 - acc_t(2) * (A + acc_t(3))) * x1;
    dw[2] = -((acc_t(3) * (A + acc_t(2)) * x2 - acc_t(2) * (A + acc_t(3))) * x2);
    dw[3] = -((acc_t(3) * A * x3 - acc_t(10) * A) * x3 + acc_t(8) * A);
  }
}

// One axis of a bicubic sample: the four tap indices, which read the image, their weights
// and d weight / d coordinate, and d coordinate / d flow (0 on a size-1 axis).
template <typename acc_t>
struct CubicAxis {
  int64_t i[4];
  bool v[4];
  acc_t w[4], dw[4];
  acc_t grad;

  FW_HOST_DEVICE static CubicAxis make(acc_t pos, acc_t d, int64_t size, Padding padding, bool want_dw) {
    CubicAxis a;
    acc_t c;
    a.grad = acc_t(1);
    if (size == 1) {
      c = d * acc_t(0);  // as Axis::make: every finite coordinate lands on the only pixel
      a.grad = acc_t(0);
    } else {
      c = pos + d;
    }
    const acc_t f = fw_floor(c);
    cubic_weights<acc_t>(c - f, a.w, want_dw ? a.dw : nullptr);
    const acc_t last = static_cast<acc_t>(size - 1);
    for (int k = 0; k < 4; ++k) {
      acc_t p = f + static_cast<acc_t>(k - 1);
      // Range tests and clamps on the floating value before any conversion (NaN, huge).
      if (padding == Padding::Border) {
        if (!(p > acc_t(0))) p = acc_t(0);  // NaN lands on 0; its weights are NaN anyway
        if (p > last) p = last;
        a.v[k] = true;
        a.i[k] = static_cast<int64_t>(p);
      } else {
        a.v[k] = p >= acc_t(0) && p <= last;
        a.i[k] = a.v[k] ? static_cast<int64_t>(p) : 0;
      }
    }
    return a;
  }
};

// Image taps one output pixel reads (and scatters its gradient to): the deterministic
// backward paths size their records by it.
FW_HOST_DEVICE int taps_per_pixel(Interp interp) { return interp == Interp::Bicubic ? 16 : 4; }

template <typename acc_t>
struct CubicTaps {
  CubicAxis<acc_t> x, y;
};

template <typename acc_t>
FW_HOST_DEVICE CubicTaps<acc_t> make_cubic_taps(int64_t px, int64_t py, acc_t dx, acc_t dy, int64_t W, int64_t H,
                                                Padding padding, bool want_dw) {
  CubicTaps<acc_t> t;
  t.x = CubicAxis<acc_t>::make(static_cast<acc_t>(px), dx, W, padding, want_dw);
  t.y = CubicAxis<acc_t>::make(static_cast<acc_t>(py), dy, H, padding, want_dw);
  return t;
}

// The 16 tap values of one channel plane (rows by y tap), taps outside the image read 0.
template <typename acc_t>
struct Patch {
  acc_t v[4][4];

  FW_HOST_DEVICE acc_t interpolate(const CubicTaps<acc_t>& t) const {
    acc_t out = acc_t(0);
    for (int r = 0; r < 4; ++r) {
      const acc_t row = t.x.w[0] * v[r][0] + t.x.w[1] * v[r][1] + t.x.w[2] * v[r][2] + t.x.w[3] * v[r][3];
      out += t.y.w[r] * row;
    }
    return out;
  }
  // d(sample)/d(x) and d(sample)/d(y) in pixels, before the factor CubicAxis::grad.
  FW_HOST_DEVICE void gradient(const CubicTaps<acc_t>& t, acc_t* gx, acc_t* gy) const {
    acc_t sx = acc_t(0), sy = acc_t(0);
    for (int r = 0; r < 4; ++r) {
      const acc_t row = t.x.w[0] * v[r][0] + t.x.w[1] * v[r][1] + t.x.w[2] * v[r][2] + t.x.w[3] * v[r][3];
      const acc_t drow = t.x.dw[0] * v[r][0] + t.x.dw[1] * v[r][1] + t.x.dw[2] * v[r][2] + t.x.dw[3] * v[r][3];
      sx += t.y.w[r] * drow;
      sy += t.y.dw[r] * row;
    }
    *gx = sx;
    *gy = sy;
  }
};

template <typename acc_t, typename scalar_t>
FW_HOST_DEVICE Patch<acc_t> load_patch(const scalar_t* plane, int64_t sh, int64_t sw, const CubicTaps<acc_t>& t) {
  Patch<acc_t> p;
  for (int r = 0; r < 4; ++r)
    for (int k = 0; k < 4; ++k)
      p.v[r][k] = (t.y.v[r] && t.x.v[k]) ? static_cast<acc_t>(plane[t.y.i[r] * sh + t.x.i[k] * sw]) : acc_t(0);
  return p;
}

// One axis of the bilinear upsampling of the flow/texture/mask grid (size `in`) onto the
// image grid (size `out` >= in): F.interpolate(mode="bilinear", align_corners=False) as
// PyTorch computes it (area_pixel_compute_source_index, then guard_index_and_lambda).
template <typename acc_t>
struct UpAxis {
  int64_t i0, i1;  // the two source samples
  acc_t l0, l1;    // their weights

  FW_HOST_DEVICE static UpAxis make(int64_t dst, int64_t in, int64_t out) {
    UpAxis a;
    const acc_t scale = static_cast<acc_t>(in) / static_cast<acc_t>(out);
    acc_t src = scale * (static_cast<acc_t>(dst) + acc_t(0.5)) - acc_t(0.5);
    if (src < acc_t(0)) src = acc_t(0);
    a.i0 = static_cast<int64_t>(src);  // src >= 0 and finite: truncation is floor
    if (a.i0 > in - 1) a.i0 = in - 1;
    a.i1 = a.i0 + (a.i0 < in - 1 ? 1 : 0);
    acc_t l1 = src - static_cast<acc_t>(a.i0);
    l1 = l1 < acc_t(0) ? acc_t(0) : (l1 > acc_t(1) ? acc_t(1) : l1);
    a.l1 = l1;
    a.l0 = acc_t(1) - l1;
    return a;
  }

  // Weight of source sample i in output sample dst (0 if dst does not read i).
  FW_HOST_DEVICE static acc_t weight(int64_t i, int64_t dst, int64_t in, int64_t out) {
    const UpAxis a = make(dst, in, out);
    return (a.i0 == i ? a.l0 : acc_t(0)) + (a.i1 == i ? a.l1 : acc_t(0));
  }

  // Output samples [*lo, *hi) that may read source sample i: a superset (the weight
  // decides), from the inverse map dst = (src + 0.5) * out / in - 0.5 with src in
  // [i - 1, i + 1), widened by two samples against rounding.
  FW_HOST_DEVICE static void readers(int64_t i, int64_t in, int64_t out, int64_t* lo, int64_t* hi) {
    const double inv = static_cast<double>(out) / static_cast<double>(in);
    int64_t a = static_cast<int64_t>((static_cast<double>(i) - 0.5) * inv - 0.5) - 2;
    int64_t b = static_cast<int64_t>((static_cast<double>(i) + 1.5) * inv - 0.5) + 3;
    *lo = a < 0 ? 0 : a;
    *hi = b > out ? out : b;
  }
};

// Where output pixel (y, x) reads the flow/texture/mask grid (h x w): the pixel itself
// when that grid has the image's size, else its bilinear upsampling, with the flow's
// values scaled from pixels of the h x w grid to pixels of the image (W / w, H / h).
template <typename acc_t>
struct LowRes {
  bool identity;
  int64_t y, x;
  UpAxis<acc_t> ay, ax;
  acc_t sx, sy;  // flow scale: W / w and H / h (exactly 1 when identity)

  FW_HOST_DEVICE static LowRes make(int64_t y, int64_t x, int64_t h, int64_t w, int64_t H, int64_t W) {
    LowRes r;
    r.identity = (h == H && w == W);
    r.y = y;
    r.x = x;
    if (r.identity) {
      r.sx = acc_t(1);
      r.sy = acc_t(1);
    } else {
      r.ay = UpAxis<acc_t>::make(y, h, H);
      r.ax = UpAxis<acc_t>::make(x, w, W);
      r.sx = static_cast<acc_t>(W) / static_cast<acc_t>(w);
      r.sy = static_cast<acc_t>(H) / static_cast<acc_t>(h);
    }
    return r;
  }

  template <typename scalar_t>
  FW_HOST_DEVICE acc_t sample(const scalar_t* plane, int64_t sh, int64_t sw) const {
    if (identity) return static_cast<acc_t>(plane[y * sh + x * sw]);
    const acc_t top = ax.l0 * static_cast<acc_t>(plane[ay.i0 * sh + ax.i0 * sw]) +
                      ax.l1 * static_cast<acc_t>(plane[ay.i0 * sh + ax.i1 * sw]);
    const acc_t bottom = ax.l0 * static_cast<acc_t>(plane[ay.i1 * sh + ax.i0 * sw]) +
                         ax.l1 * static_cast<acc_t>(plane[ay.i1 * sh + ax.i1 * sw]);
    return ay.l0 * top + ay.l1 * bottom;
  }
};

// Gradient of the upsampling at one element (i, k) of an h x w plane: the adjoint of
// F.interpolate(bilinear, align_corners=False), as a gather over the H x W gradient
// plane `g` (so it needs no atomics and its summation order is fixed).
template <typename scalar_t, typename acc_t>
FW_HOST_DEVICE acc_t upsample_adjoint_at(const scalar_t* g, int64_t sh, int64_t sw, int64_t i, int64_t k, int64_t h,
                                         int64_t w, int64_t H, int64_t W) {
  int64_t y_lo, y_hi, x_lo, x_hi;
  UpAxis<acc_t>::readers(i, h, H, &y_lo, &y_hi);
  UpAxis<acc_t>::readers(k, w, W, &x_lo, &x_hi);
  acc_t sum = acc_t(0);
  for (int64_t y = y_lo; y < y_hi; ++y) {
    const acc_t wy = UpAxis<acc_t>::weight(i, y, h, H);
    if (wy == acc_t(0)) continue;
    acc_t row = acc_t(0);
    for (int64_t x = x_lo; x < x_hi; ++x) {
      const acc_t wx = UpAxis<acc_t>::weight(k, x, w, W);
      if (wx != acc_t(0)) row += wx * static_cast<acc_t>(g[y * sh + x * sw]);
    }
    sum += wy * row;
  }
  return sum;
}

// Pointers and strides of one call. texture and mask are null for plain warp. flow,
// texture and mask share the grid h x w (h <= H, w <= W).
template <typename scalar_t>
struct WarpInputs {
  const scalar_t* image;
  Strides4 s_image;
  const scalar_t* flow;
  Strides4 s_flow;
  const scalar_t* texture;
  Strides4 s_texture;
  const scalar_t* mask;
  Strides4 s_mask;
  int64_t N, C, H, W;
  int64_t h, w;
  Padding padding;
  Interp interp;
};

// Forward of one output pixel (n, y, x), all channels:
//   warp:       out = bilinear(image, x + dx, y + dy)
//   warp_blend: out = mask * bilinear(...) + (1 - mask) * texture
// with dx, dy, mask and texture read through LowRes (upsampled when h x w < H x W).
template <typename scalar_t, typename acc_t, bool kBlend>
FW_HOST_DEVICE void warp_forward_pixel(const WarpInputs<scalar_t>& in, scalar_t* out, const Strides4& s_out,
                                       int64_t n, int64_t y, int64_t x) {
  const LowRes<acc_t> lr = LowRes<acc_t>::make(y, x, in.h, in.w, in.H, in.W);
  const scalar_t* fl = in.flow + n * in.s_flow.n;
  const acc_t dx = lr.sample(fl, in.s_flow.h, in.s_flow.w) * lr.sx;
  const acc_t dy = lr.sample(fl + in.s_flow.c, in.s_flow.h, in.s_flow.w) * lr.sy;
  acc_t m = acc_t(1);
  if (kBlend) m = lr.sample(in.mask + n * in.s_mask.n, in.s_mask.h, in.s_mask.w);
  const scalar_t* img_n = in.image + n * in.s_image.n;
  scalar_t* out_px = out + n * s_out.n + y * s_out.h + x * s_out.w;
  const bool cubic = in.interp == Interp::Bicubic;
  Taps<acc_t> t;
  CubicTaps<acc_t> ct;
  if (cubic) {
    ct = make_cubic_taps<acc_t>(x, y, dx, dy, in.W, in.H, in.padding, false);
  } else {
    t = make_taps<acc_t>(x, y, dx, dy, in.W, in.H, in.padding);
  }
  for (int64_t c = 0; c < in.C; ++c) {
    const scalar_t* plane = img_n + c * in.s_image.c;
    acc_t v = cubic ? load_patch<acc_t>(plane, in.s_image.h, in.s_image.w, ct).interpolate(ct)
                    : load_quad<acc_t>(plane, in.s_image.h, in.s_image.w, t).interpolate(t);
    if (kBlend) {
      const acc_t tex = lr.sample(in.texture + n * in.s_texture.n + c * in.s_texture.c, in.s_texture.h,
                                  in.s_texture.w);
      v = m * v + (acc_t(1) - m) * tex;
    }
    out_px[c * s_out.c] = static_cast<scalar_t>(v);
  }
}

// Gradient outputs of one backward call. grad_image is an accumulation buffer in acc_t
// (float32 for half/bfloat16 inputs): the image gradient is a scatter of many taps.
// flow, texture and mask receive the gradient at each output pixel (n, y, x): the
// tensors' own gradients (`flow`, `texture`, `mask`, scalar_t) when their grid is the
// image's, else H x W buffers in acc_t (`flow_acc`, ..., same strides fields) whose
// upsample_adjoint_at gives the h x w gradients. Half precision thus keeps one rule: every
// sum in float32 until the final store (a per-pixel value rounded to half before the
// adjoint sums it would add one rounding per term). A null pointer (both of a pair) means
// not asked for; at most one of a pair is set.
template <typename scalar_t, typename acc_t>
struct WarpGrads {
  acc_t* image;
  Strides4 s_image;
  scalar_t* flow;
  Strides4 s_flow;
  scalar_t* texture;
  Strides4 s_texture;
  scalar_t* mask;
  Strides4 s_mask;
  acc_t* flow_acc;
  acc_t* texture_acc;
  acc_t* mask_acc;

  FW_HOST_DEVICE bool want_flow() const { return flow != nullptr || flow_acc != nullptr; }
  FW_HOST_DEVICE bool want_texture() const { return texture != nullptr || texture_acc != nullptr; }
  FW_HOST_DEVICE bool want_mask() const { return mask != nullptr || mask_acc != nullptr; }
};

// Writes a per-pixel gradient: into the acc_t buffer when there is one, else rounded once
// to the tensor's dtype.
template <typename scalar_t, typename acc_t>
FW_HOST_DEVICE void store_grad(scalar_t* p, acc_t* p_acc, int64_t offset, acc_t v) {
  if (p_acc != nullptr) {
    p_acc[offset] = v;
  } else {
    p[offset] = static_cast<scalar_t>(v);
  }
}

// The image taps of one output pixel for the backward, bilinear or bicubic, behind one
// interface (so warp_backward_pixel has one body): `load` a channel plane's tap values,
// `interpolate` them, their `gradient` d(sample)/d(x, y) in pixels, `scatter` a gradient to
// the taps (tap 0..3 = nw, ne, sw, se; bicubic 4 * row + column, 0..15), and the clamp
// factors `grad_x`, `grad_y` (Axis::grad, CubicAxis::grad).
template <typename acc_t>
struct BilinearTaps {
  Taps<acc_t> t;
  acc_t w_nw, w_ne, w_sw, w_se;
  using Values = Quad<acc_t>;

  FW_HOST_DEVICE static BilinearTaps make(int64_t x, int64_t y, acc_t dx, acc_t dy, int64_t W, int64_t H,
                                          Padding padding, bool /*want_dw*/) {
    BilinearTaps b;
    b.t = make_taps<acc_t>(x, y, dx, dy, W, H, padding);
    b.w_nw = b.t.w_nw();
    b.w_ne = b.t.w_ne();
    b.w_sw = b.t.w_sw();
    b.w_se = b.t.w_se();
    return b;
  }
  template <typename scalar_t>
  FW_HOST_DEVICE Values load(const scalar_t* plane, int64_t sh, int64_t sw) const {
    return load_quad<acc_t>(plane, sh, sw, t);
  }
  FW_HOST_DEVICE acc_t interpolate(const Values& q) const { return q.interpolate(t); }
  FW_HOST_DEVICE void gradient(const Values& q, acc_t* gx, acc_t* gy) const {
    *gx = q.d_dx(t);
    *gy = q.d_dy(t);
  }
  template <typename Scatter>
  FW_HOST_DEVICE void scatter(Scatter& s, int64_t n, int64_t c, acc_t go) const {
    s(n, c, 0, t.y.v0 && t.x.v0, t.y.i0, t.x.i0, w_nw * go);
    s(n, c, 1, t.y.v0 && t.x.v1, t.y.i0, t.x.i0 + 1, w_ne * go);
    s(n, c, 2, t.y.v1 && t.x.v0, t.y.i0 + 1, t.x.i0, w_sw * go);
    s(n, c, 3, t.y.v1 && t.x.v1, t.y.i0 + 1, t.x.i0 + 1, w_se * go);
  }
  FW_HOST_DEVICE acc_t grad_x() const { return t.x.grad; }
  FW_HOST_DEVICE acc_t grad_y() const { return t.y.grad; }
};

template <typename acc_t>
struct BicubicTaps {
  CubicTaps<acc_t> t;
  using Values = Patch<acc_t>;

  FW_HOST_DEVICE static BicubicTaps make(int64_t x, int64_t y, acc_t dx, acc_t dy, int64_t W, int64_t H,
                                         Padding padding, bool want_dw) {
    BicubicTaps b;
    b.t = make_cubic_taps<acc_t>(x, y, dx, dy, W, H, padding, want_dw);
    return b;
  }
  template <typename scalar_t>
  FW_HOST_DEVICE Values load(const scalar_t* plane, int64_t sh, int64_t sw) const {
    return load_patch<acc_t>(plane, sh, sw, t);
  }
  FW_HOST_DEVICE acc_t interpolate(const Values& q) const { return q.interpolate(t); }
  FW_HOST_DEVICE void gradient(const Values& q, acc_t* gx, acc_t* gy) const { q.gradient(t, gx, gy); }
  template <typename Scatter>
  FW_HOST_DEVICE void scatter(Scatter& s, int64_t n, int64_t c, acc_t go) const {
    for (int r = 0; r < 4; ++r) {
      const acc_t gr = t.y.w[r] * go;
      for (int k = 0; k < 4; ++k) s(n, c, 4 * r + k, t.y.v[r] && t.x.v[k], t.y.i[r], t.x.i[k], t.x.w[k] * gr);
    }
  }
  FW_HOST_DEVICE acc_t grad_x() const { return t.x.grad; }
  FW_HOST_DEVICE acc_t grad_y() const { return t.y.grad; }
};

// Backward of one output pixel (n, y, x) with the image taps `Sampler` (BilinearTaps or
// BicubicTaps). The image-gradient scatter goes through `scatter(n, c, tap, valid, ty, tx,
// value)` (tap 0..taps_per_pixel - 1), so each backend chooses how taps that several pixels
// share are summed: plain adds on a CPU thread's own buffer, atomics on CUDA, or recorded
// (index, value) pairs for a deterministic reduction.
template <typename Sampler, typename scalar_t, typename acc_t, bool kBlend, typename Scatter>
FW_HOST_DEVICE void warp_backward_pixel_with(const WarpInputs<scalar_t>& in, const scalar_t* grad_out,
                                             const Strides4& s_gout, const WarpGrads<scalar_t, acc_t>& g, int64_t n,
                                             int64_t y, int64_t x, Scatter& scatter) {
  const LowRes<acc_t> lr = LowRes<acc_t>::make(y, x, in.h, in.w, in.H, in.W);
  const scalar_t* fl = in.flow + n * in.s_flow.n;
  const acc_t dx = lr.sample(fl, in.s_flow.h, in.s_flow.w) * lr.sx;
  const acc_t dy = lr.sample(fl + in.s_flow.c, in.s_flow.h, in.s_flow.w) * lr.sy;
  const bool want_flow = g.want_flow(), want_mask = kBlend && g.want_mask(), want_texture = kBlend && g.want_texture();
  const Sampler t = Sampler::make(x, y, dx, dy, in.W, in.H, in.padding, want_flow);
  acc_t m = acc_t(1);
  if (kBlend) m = lr.sample(in.mask + n * in.s_mask.n, in.s_mask.h, in.s_mask.w);
  const bool need_values = want_flow || want_mask;
  const scalar_t* img_n = in.image + n * in.s_image.n;
  const scalar_t* go_px = grad_out + n * s_gout.n + y * s_gout.h + x * s_gout.w;
  acc_t gdx = acc_t(0), gdy = acc_t(0), gmask = acc_t(0);
  for (int64_t c = 0; c < in.C; ++c) {
    acc_t go = static_cast<acc_t>(go_px[c * s_gout.c]);
    typename Sampler::Values q{};
    if (need_values) q = t.load(img_n + c * in.s_image.c, in.s_image.h, in.s_image.w);
    if (kBlend) {
      if (want_texture) {
        store_grad(g.texture, g.texture_acc,
                   n * g.s_texture.n + c * g.s_texture.c + y * g.s_texture.h + x * g.s_texture.w,
                   go * (acc_t(1) - m));
      }
      if (want_mask) {
        const acc_t tex = lr.sample(in.texture + n * in.s_texture.n + c * in.s_texture.c, in.s_texture.h,
                                    in.s_texture.w);
        gmask += go * (t.interpolate(q) - tex);
      }
      go = go * m;  // gradient reaching the warped image
    }
    if (g.image != nullptr) t.scatter(scatter, n, c, go);
    if (want_flow) {
      acc_t sx, sy;
      t.gradient(q, &sx, &sy);
      gdx += go * sx;
      gdy += go * sy;
    }
  }
  if (want_flow) {
    const int64_t off = n * g.s_flow.n + y * g.s_flow.h + x * g.s_flow.w;
    store_grad(g.flow, g.flow_acc, off, gdx * t.grad_x() * lr.sx);
    store_grad(g.flow, g.flow_acc, off + g.s_flow.c, gdy * t.grad_y() * lr.sy);
  }
  if (want_mask) store_grad(g.mask, g.mask_acc, n * g.s_mask.n + y * g.s_mask.h + x * g.s_mask.w, gmask);
}

// Backward of one output pixel (n, y, x): warp_backward_pixel_with the call's image taps.
template <typename scalar_t, typename acc_t, bool kBlend, typename Scatter>
FW_HOST_DEVICE void warp_backward_pixel(const WarpInputs<scalar_t>& in, const scalar_t* grad_out,
                                        const Strides4& s_gout, const WarpGrads<scalar_t, acc_t>& g, int64_t n,
                                        int64_t y, int64_t x, Scatter& scatter) {
  if (in.interp == Interp::Bicubic) {
    warp_backward_pixel_with<BicubicTaps<acc_t>, scalar_t, acc_t, kBlend>(in, grad_out, s_gout, g, n, y, x, scatter);
  } else {
    warp_backward_pixel_with<BilinearTaps<acc_t>, scalar_t, acc_t, kBlend>(in, grad_out, s_gout, g, n, y, x, scatter);
  }
}

}  // namespace detail
}  // namespace fastwarp
