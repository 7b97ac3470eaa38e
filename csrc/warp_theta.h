// Per-pixel math of the frame-space composite (the ops' `theta` argument), shared by the
// CPU and CUDA kernels; ATen-free like warp_math.h, whose taps and quads it reuses.
//
// docs/design.md, "Frame-space composite": the flow/texture/mask grid (h x w) is placed on
// the image by an affine theta [2, 3]: an output pixel centre (x, y) sits at
//   (u, v) = theta @ (x, y, 1)
// on the grid. Pixels with -0.5 <= u <= w - 0.5 and -0.5 <= v <= h - 0.5 form the
// footprint; outside it the output is the image, bit for bit. Inside, flow, texture and
// mask are sampled bilinearly at (u, v) with the coordinate clamped to the grid
// (grid_sample, align_corners=True, padding_mode="border"); the flow is in grid pixels and
// moves the image by L^-1 @ flow (L = theta[:, :2]); then
//   out = mask * bilinear(image, (x, y) + L^-1 flow) + (1 - mask) * texture.
// A uint8 image (an OpenCV frame) is read and written as integers, with float32 math and
// the result rounded to the nearest integer (ties to even) after clamping to [0, 255].
#pragma once

#include "warp_math.h"

namespace fastwarp {
namespace detail {

// theta of one image and the inverse of its linear part (computed in double).
template <typename acc_t>
struct GridMap {
  acc_t a00, a01, a02, a10, a11, a12;  // image px -> grid px
  acc_t i00, i01, i10, i11;            // L^-1: grid px -> image px

  FW_HOST_DEVICE static GridMap make(const double* t) {
    GridMap g;
    g.a00 = static_cast<acc_t>(t[0]);
    g.a01 = static_cast<acc_t>(t[1]);
    g.a02 = static_cast<acc_t>(t[2]);
    g.a10 = static_cast<acc_t>(t[3]);
    g.a11 = static_cast<acc_t>(t[4]);
    g.a12 = static_cast<acc_t>(t[5]);
    const double det = t[0] * t[4] - t[1] * t[3];  // checked non-zero before any kernel runs
    g.i00 = static_cast<acc_t>(t[4] / det);
    g.i01 = static_cast<acc_t>(-t[1] / det);
    g.i10 = static_cast<acc_t>(-t[3] / det);
    g.i11 = static_cast<acc_t>(t[0] / det);
    return g;
  }

  FW_HOST_DEVICE acc_t u(int64_t x, int64_t y) const {
    return a00 * static_cast<acc_t>(x) + a01 * static_cast<acc_t>(y) + a02;
  }
  FW_HOST_DEVICE acc_t v(int64_t x, int64_t y) const {
    return a10 * static_cast<acc_t>(x) + a11 * static_cast<acc_t>(y) + a12;
  }
};

// Whether a grid position lies in the footprint (false for NaN).
template <typename acc_t>
FW_HOST_DEVICE bool in_footprint(acc_t u, acc_t v, int64_t h, int64_t w) {
  return u >= acc_t(-0.5) && u <= static_cast<acc_t>(w) - acc_t(0.5) && v >= acc_t(-0.5) &&
         v <= static_cast<acc_t>(h) - acc_t(0.5);
}

// One axis of a border-clamped bilinear sample of the grid (grid_sample, align_corners=True).
template <typename acc_t>
struct GridAxis {
  int64_t i0, i1;
  acc_t l0, l1;

  FW_HOST_DEVICE static GridAxis make(acc_t c, int64_t size) {
    GridAxis a;
    const acc_t hi = static_cast<acc_t>(size - 1);
    if (!(c > acc_t(0))) c = acc_t(0);  // NaN lands on 0, as grid_sample's clamp
    if (c > hi) c = hi;
    const acc_t f = fw_floor(c);
    a.i0 = static_cast<int64_t>(f);
    a.i1 = a.i0 + 1 < size ? a.i0 + 1 : a.i0;
    a.l1 = c - f;
    a.l0 = acc_t(1) - a.l1;
    return a;
  }
};

template <typename acc_t>
struct GridSample {
  GridAxis<acc_t> x, y;

  FW_HOST_DEVICE static GridSample make(acc_t u, acc_t v, int64_t h, int64_t w) {
    GridSample s;
    s.x = GridAxis<acc_t>::make(u, w);
    s.y = GridAxis<acc_t>::make(v, h);
    return s;
  }

  template <typename map_t>
  FW_HOST_DEVICE acc_t sample(const map_t* plane, int64_t sh, int64_t sw) const {
    const acc_t top = x.l0 * static_cast<acc_t>(plane[y.i0 * sh + x.i0 * sw]) +
                      x.l1 * static_cast<acc_t>(plane[y.i0 * sh + x.i1 * sw]);
    const acc_t bottom = x.l0 * static_cast<acc_t>(plane[y.i1 * sh + x.i0 * sw]) +
                         x.l1 * static_cast<acc_t>(plane[y.i1 * sh + x.i1 * sw]);
    return y.l0 * top + y.l1 * bottom;
  }

  // The adjoint: value v spread over the four taps (zero weights skipped, so a NaN
  // gradient reaches only the samples this pixel reads).
  template <typename Add>
  FW_HOST_DEVICE void scatter(acc_t value, Add& add) const {
    const acc_t w[4] = {y.l0 * x.l0, y.l0 * x.l1, y.l1 * x.l0, y.l1 * x.l1};
    const int64_t ys[4] = {y.i0, y.i0, y.i1, y.i1};
    const int64_t xs[4] = {x.i0, x.i1, x.i0, x.i1};
    for (int k = 0; k < 4; ++k) {
      if (w[k] != acc_t(0)) add(ys[k], xs[k], w[k] * value);
    }
  }
};

// The value stored for a computed pixel: the image's dtype; uint8 clamped and rounded to
// the nearest integer, ties to even (as torch.round).
template <typename scalar_t, typename acc_t>
FW_HOST_DEVICE scalar_t store_pixel(acc_t v) {
  return static_cast<scalar_t>(v);
}

template <>
FW_HOST_DEVICE uint8_t store_pixel<uint8_t, float>(float v) {
  v = v > 0.0f ? (v < 255.0f ? v : 255.0f) : 0.0f;  // NaN -> 0
#if defined(__CUDA_ARCH__)
  return static_cast<uint8_t>(rintf(v));
#else
  return static_cast<uint8_t>(nearbyintf(v));  // the default rounding mode: ties to even
#endif
}

// Pointers and strides of one theta call: the image (img_t: floating, or uint8 with float
// maps) and the maps (map_t) on their h x w grid; theta as doubles, 6 per image.
template <typename img_t, typename map_t>
struct ThetaInputs {
  const img_t* image;
  Strides4 s_image;
  const map_t* flow;
  Strides4 s_flow;
  const map_t* texture;
  Strides4 s_texture;
  const map_t* mask;
  Strides4 s_mask;
  const double* theta;
  int64_t N, C, H, W;
  int64_t h, w;
  Padding padding;
};

// Forward of one output pixel (n, y, x), all channels, when it lies in the footprint
// (returns false, writing nothing, when it does not: the output already holds the image).
template <typename img_t, typename map_t, typename acc_t, bool kBlend>
FW_HOST_DEVICE bool theta_forward_pixel(const ThetaInputs<img_t, map_t>& in, const GridMap<acc_t>& gm, img_t* out,
                                        const Strides4& s_out, int64_t n, int64_t y, int64_t x) {
  const acc_t u = gm.u(x, y), v = gm.v(x, y);
  if (!in_footprint(u, v, in.h, in.w)) return false;
  const GridSample<acc_t> gs = GridSample<acc_t>::make(u, v, in.h, in.w);
  const map_t* fl = in.flow + n * in.s_flow.n;
  const acc_t fx = gs.sample(fl, in.s_flow.h, in.s_flow.w);
  const acc_t fy = gs.sample(fl + in.s_flow.c, in.s_flow.h, in.s_flow.w);
  const acc_t dx = gm.i00 * fx + gm.i01 * fy;
  const acc_t dy = gm.i10 * fx + gm.i11 * fy;
  const Taps<acc_t> t = make_taps<acc_t>(x, y, dx, dy, in.W, in.H, in.padding);
  acc_t m = acc_t(1);
  if (kBlend) m = gs.sample(in.mask + n * in.s_mask.n, in.s_mask.h, in.s_mask.w);
  const img_t* img_n = in.image + n * in.s_image.n;
  img_t* out_px = out + n * s_out.n + y * s_out.h + x * s_out.w;
  for (int64_t c = 0; c < in.C; ++c) {
    acc_t val = load_quad<acc_t>(img_n + c * in.s_image.c, in.s_image.h, in.s_image.w, t).interpolate(t);
    if (kBlend) {
      const acc_t tex = gs.sample(in.texture + n * in.s_texture.n + c * in.s_texture.c, in.s_texture.h,
                                  in.s_texture.w);
      val = m * val + (acc_t(1) - m) * tex;
    }
    out_px[c * s_out.c] = store_pixel<img_t, acc_t>(val);
  }
  return true;
}

// Backward of one output pixel (n, y, x) (floating images only). Outside the footprint the
// output is the image: its gradient passes to the image unchanged. Inside, the image
// gradient is the warp's 4-tap scatter, and the flow, texture and mask gradients are the
// adjoint of the grid sample: `image_add(n, c, ty, tx, value)` and
// `grid_add(n, k, gy, gx, value)` with k = 0, 1 (flow dx, dy), 2 (mask), 3 + c (texture);
// a backend passes adders that ignore what is not wanted.
template <typename scalar_t, typename acc_t, bool kBlend, typename ImageAdd, typename GridAdd>
FW_HOST_DEVICE void theta_backward_pixel(const ThetaInputs<scalar_t, scalar_t>& in, const GridMap<acc_t>& gm,
                                         const scalar_t* grad_out, const Strides4& s_gout, int64_t n, int64_t y,
                                         int64_t x, bool need_flow, bool need_mask, ImageAdd& image_add,
                                         GridAdd& grid_add) {
  const scalar_t* go_px = grad_out + n * s_gout.n + y * s_gout.h + x * s_gout.w;
  const acc_t u = gm.u(x, y), v = gm.v(x, y);
  if (!in_footprint(u, v, in.h, in.w)) {
    for (int64_t c = 0; c < in.C; ++c) image_add(n, c, y, x, static_cast<acc_t>(go_px[c * s_gout.c]));
    return;
  }
  const GridSample<acc_t> gs = GridSample<acc_t>::make(u, v, in.h, in.w);
  const scalar_t* fl = in.flow + n * in.s_flow.n;
  const acc_t fx = gs.sample(fl, in.s_flow.h, in.s_flow.w);
  const acc_t fy = gs.sample(fl + in.s_flow.c, in.s_flow.h, in.s_flow.w);
  const acc_t dx = gm.i00 * fx + gm.i01 * fy;
  const acc_t dy = gm.i10 * fx + gm.i11 * fy;
  const Taps<acc_t> t = make_taps<acc_t>(x, y, dx, dy, in.W, in.H, in.padding);
  acc_t m = acc_t(1);
  if (kBlend) m = gs.sample(in.mask + n * in.s_mask.n, in.s_mask.h, in.s_mask.w);
  const bool need_values = need_flow || (kBlend && need_mask);
  const scalar_t* img_n = in.image + n * in.s_image.n;
  acc_t gdx = acc_t(0), gdy = acc_t(0), gmask = acc_t(0);
  const acc_t w_nw = t.w_nw(), w_ne = t.w_ne(), w_sw = t.w_sw(), w_se = t.w_se();
  for (int64_t c = 0; c < in.C; ++c) {
    acc_t go = static_cast<acc_t>(go_px[c * s_gout.c]);
    Quad<acc_t> q{};
    if (need_values) q = load_quad<acc_t>(img_n + c * in.s_image.c, in.s_image.h, in.s_image.w, t);
    if (kBlend) {
      struct TexAdd {
        GridAdd& add;
        int64_t n, k;
        FW_HOST_DEVICE void operator()(int64_t gy, int64_t gx, acc_t val) { add(n, k, gy, gx, val); }
      } tex_add{grid_add, n, 3 + c};
      gs.scatter(go * (acc_t(1) - m), tex_add);
      if (need_mask) {
        const acc_t tex = gs.sample(in.texture + n * in.s_texture.n + c * in.s_texture.c, in.s_texture.h,
                                    in.s_texture.w);
        gmask += go * (q.interpolate(t) - tex);
      }
      go = go * m;
    }
    if (t.y.v0 && t.x.v0) image_add(n, c, t.y.i0, t.x.i0, w_nw * go);
    if (t.y.v0 && t.x.v1) image_add(n, c, t.y.i0, t.x.i0 + 1, w_ne * go);
    if (t.y.v1 && t.x.v0) image_add(n, c, t.y.i0 + 1, t.x.i0, w_sw * go);
    if (t.y.v1 && t.x.v1) image_add(n, c, t.y.i0 + 1, t.x.i0 + 1, w_se * go);
    if (need_flow) {
      gdx += go * q.d_dx(t);
      gdy += go * q.d_dy(t);
    }
  }
  if (need_flow) {
    // d(dx, dy)/d(fx, fy) = L^-1, so the grid flow's gradient is L^-T (gdx, gdy).
    gdx *= t.x.grad;
    gdy *= t.y.grad;
    struct FlowAdd {
      GridAdd& add;
      int64_t n, k;
      FW_HOST_DEVICE void operator()(int64_t gy, int64_t gx, acc_t val) { add(n, k, gy, gx, val); }
    };
    FlowAdd ax{grid_add, n, 0}, ay{grid_add, n, 1};
    gs.scatter(gm.i00 * gdx + gm.i10 * gdy, ax);
    gs.scatter(gm.i01 * gdx + gm.i11 * gdy, ay);
  }
  if (kBlend && need_mask) {
    struct MaskAdd {
      GridAdd& add;
      int64_t n;
      FW_HOST_DEVICE void operator()(int64_t gy, int64_t gx, acc_t val) { add(n, 2, gy, gx, val); }
    } mask_add{grid_add, n};
    gs.scatter(gmask, mask_add);
  }
}

// The bounding box of theta's footprint on an H x W image, as [*x0, *x1) x [*y0, *y1):
// the grid's corners mapped back through the inverse of theta (in double), widened by a
// pixel against rounding, clipped to the image. Every footprint pixel lies inside it.
inline void footprint_box(const double* t, int64_t h, int64_t w, int64_t H, int64_t W, int64_t* x0, int64_t* x1,
                          int64_t* y0, int64_t* y1) {
  const double det = t[0] * t[4] - t[1] * t[3];
  const double i00 = t[4] / det, i01 = -t[1] / det, i10 = -t[3] / det, i11 = t[0] / det;
  double xmin = 1e300, xmax = -1e300, ymin = 1e300, ymax = -1e300;
  const double us[2] = {-0.5, static_cast<double>(w) - 0.5}, vs[2] = {-0.5, static_cast<double>(h) - 0.5};
  for (double u : us) {
    for (double v : vs) {
      const double du = u - t[2], dv = v - t[5];
      const double x = i00 * du + i01 * dv, y = i10 * du + i11 * dv;
      xmin = x < xmin ? x : xmin;
      xmax = x > xmax ? x : xmax;
      ymin = y < ymin ? y : ymin;
      ymax = y > ymax ? y : ymax;
    }
  }
  auto clip = [](double v, int64_t lo, int64_t hi) -> int64_t {
    if (!(v > static_cast<double>(lo))) return lo;  // NaN -> lo
    if (v > static_cast<double>(hi)) return hi;
    return static_cast<int64_t>(v);
  };
  *x0 = clip(floor(xmin) - 1, 0, W);
  *x1 = clip(ceil(xmax) + 2, 0, W);
  *y0 = clip(floor(ymin) - 1, 0, H);
  *y1 = clip(ceil(ymax) + 2, 0, H);
  if (*x1 < *x0) *x1 = *x0;
  if (*y1 < *y0) *y1 = *y0;
}

}  // namespace detail
}  // namespace fastwarp
