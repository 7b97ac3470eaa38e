// Per-pixel math of fastwarp's warp and warp_blend, shared by the CPU and CUDA kernels.
//
// ATen-free on purpose: nvcc compiles this header on its own (CI compile-checks the CUDA
// device code on machines with no GPU), and a TensorRT plugin can include it unchanged.
//
// Semantics (DESIGN.md, "The ops"): backward warping with pixel centres at integer
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

// Pointers and strides of one call. texture and mask are null for plain warp.
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
  Padding padding;
};

// Forward of one output pixel (n, y, x), all channels:
//   warp:       out = bilinear(image, x + dx, y + dy)
//   warp_blend: out = mask * bilinear(...) + (1 - mask) * texture
template <typename scalar_t, typename acc_t, bool kBlend>
FW_HOST_DEVICE void warp_forward_pixel(const WarpInputs<scalar_t>& in, scalar_t* out, const Strides4& s_out,
                                       int64_t n, int64_t y, int64_t x) {
  const scalar_t* fl = in.flow + n * in.s_flow.n + y * in.s_flow.h + x * in.s_flow.w;
  const Taps<acc_t> t = make_taps<acc_t>(x, y, static_cast<acc_t>(fl[0]), static_cast<acc_t>(fl[in.s_flow.c]),
                                         in.W, in.H, in.padding);
  acc_t m = acc_t(1);
  if (kBlend) m = static_cast<acc_t>(in.mask[n * in.s_mask.n + y * in.s_mask.h + x * in.s_mask.w]);
  const scalar_t* img_n = in.image + n * in.s_image.n;
  scalar_t* out_px = out + n * s_out.n + y * s_out.h + x * s_out.w;
  for (int64_t c = 0; c < in.C; ++c) {
    acc_t v = load_quad<acc_t>(img_n + c * in.s_image.c, in.s_image.h, in.s_image.w, t).interpolate(t);
    if (kBlend) {
      const acc_t tex = static_cast<acc_t>(
          in.texture[n * in.s_texture.n + c * in.s_texture.c + y * in.s_texture.h + x * in.s_texture.w]);
      v = m * v + (acc_t(1) - m) * tex;
    }
    out_px[c * s_out.c] = static_cast<scalar_t>(v);
  }
}

// Gradient outputs of one backward call. grad_image is an accumulation buffer in acc_t
// (float32 for half/bfloat16 inputs): the image gradient is a scatter of many taps.
// A null pointer means that gradient was not asked for.
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
};

// Backward of one output pixel (n, y, x). The image-gradient scatter goes through
// `scatter(n, c, tap, valid, ty, tx, value)` (tap 0..3 = nw, ne, sw, se), so each backend
// chooses how taps that several pixels share are summed: plain adds on a CPU thread's own
// buffer, atomics on CUDA, or recorded (index, value) pairs for a deterministic reduction.
template <typename scalar_t, typename acc_t, bool kBlend, typename Scatter>
FW_HOST_DEVICE void warp_backward_pixel(const WarpInputs<scalar_t>& in, const scalar_t* grad_out,
                                        const Strides4& s_gout, const WarpGrads<scalar_t, acc_t>& g, int64_t n,
                                        int64_t y, int64_t x, Scatter& scatter) {
  const scalar_t* fl = in.flow + n * in.s_flow.n + y * in.s_flow.h + x * in.s_flow.w;
  const Taps<acc_t> t = make_taps<acc_t>(x, y, static_cast<acc_t>(fl[0]), static_cast<acc_t>(fl[in.s_flow.c]),
                                         in.W, in.H, in.padding);
  acc_t m = acc_t(1);
  if (kBlend) m = static_cast<acc_t>(in.mask[n * in.s_mask.n + y * in.s_mask.h + x * in.s_mask.w]);
  const bool need_values = g.flow != nullptr || (kBlend && g.mask != nullptr);
  const scalar_t* img_n = in.image + n * in.s_image.n;
  const scalar_t* go_px = grad_out + n * s_gout.n + y * s_gout.h + x * s_gout.w;
  acc_t gdx = acc_t(0), gdy = acc_t(0), gmask = acc_t(0);
  const acc_t w_nw = t.w_nw(), w_ne = t.w_ne(), w_sw = t.w_sw(), w_se = t.w_se();
  for (int64_t c = 0; c < in.C; ++c) {
    acc_t go = static_cast<acc_t>(go_px[c * s_gout.c]);
    Quad<acc_t> q;
    if (need_values) q = load_quad<acc_t>(img_n + c * in.s_image.c, in.s_image.h, in.s_image.w, t);
    if (kBlend) {
      const int64_t toff = n * in.s_texture.n + c * in.s_texture.c + y * in.s_texture.h + x * in.s_texture.w;
      if (g.texture != nullptr) {
        g.texture[n * g.s_texture.n + c * g.s_texture.c + y * g.s_texture.h + x * g.s_texture.w] =
            static_cast<scalar_t>(go * (acc_t(1) - m));
      }
      if (g.mask != nullptr) gmask += go * (q.interpolate(t) - static_cast<acc_t>(in.texture[toff]));
      go = go * m;  // gradient reaching the warped image
    }
    if (g.image != nullptr) {
      scatter(n, c, 0, t.y.v0 && t.x.v0, t.y.i0, t.x.i0, w_nw * go);
      scatter(n, c, 1, t.y.v0 && t.x.v1, t.y.i0, t.x.i0 + 1, w_ne * go);
      scatter(n, c, 2, t.y.v1 && t.x.v0, t.y.i0 + 1, t.x.i0, w_sw * go);
      scatter(n, c, 3, t.y.v1 && t.x.v1, t.y.i0 + 1, t.x.i0 + 1, w_se * go);
    }
    if (g.flow != nullptr) {
      gdx += go * q.d_dx(t);
      gdy += go * q.d_dy(t);
    }
  }
  if (g.flow != nullptr) {
    scalar_t* gf = g.flow + n * g.s_flow.n + y * g.s_flow.h + x * g.s_flow.w;
    gf[0] = static_cast<scalar_t>(gdx * t.x.grad);
    gf[g.s_flow.c] = static_cast<scalar_t>(gdy * t.y.grad);
  }
  if (kBlend && g.mask != nullptr) {
    g.mask[n * g.s_mask.n + y * g.s_mask.h + x * g.s_mask.w] = static_cast<scalar_t>(gmask);
  }
}

}  // namespace detail
}  // namespace fastwarp
