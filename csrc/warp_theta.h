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

// A grid sample's four element offsets for one pair of strides, computed once and read
// from several planes of those strides (the flow's two, the texture's C, the mask); the
// same arithmetic, in the same order, as GridSample::sample.
template <typename acc_t>
struct GridTaps {
  int64_t o00, o01, o10, o11;
  acc_t lx0, lx1, ly0, ly1;

  FW_HOST_DEVICE static GridTaps make(const GridSample<acc_t>& gs, int64_t sh, int64_t sw) {
    GridTaps g;
    g.o00 = gs.y.i0 * sh + gs.x.i0 * sw;
    g.o01 = gs.y.i0 * sh + gs.x.i1 * sw;
    g.o10 = gs.y.i1 * sh + gs.x.i0 * sw;
    g.o11 = gs.y.i1 * sh + gs.x.i1 * sw;
    g.lx0 = gs.x.l0;
    g.lx1 = gs.x.l1;
    g.ly0 = gs.y.l0;
    g.ly1 = gs.y.l1;
    return g;
  }

  template <typename map_t>
  FW_HOST_DEVICE acc_t sample(const map_t* plane) const {
    const acc_t top = lx0 * static_cast<acc_t>(plane[o00]) + lx1 * static_cast<acc_t>(plane[o01]);
    const acc_t bottom = lx0 * static_cast<acc_t>(plane[o10]) + lx1 * static_cast<acc_t>(plane[o11]);
    return ly0 * top + ly1 * bottom;
  }
};

// The image's four taps of one pixel as offsets within a channel plane (-1: outside, reads
// 0), computed once and read from every channel; load_quad's values.
struct QuadOffsets {
  int64_t nw, ne, sw, se;

  template <typename acc_t>
  FW_HOST_DEVICE static QuadOffsets make(const Taps<acc_t>& t, int64_t sh, int64_t sw_) {
    QuadOffsets q;
    const int64_t x0 = t.x.i0, y0 = t.y.i0;
    q.nw = (t.y.v0 && t.x.v0) ? y0 * sh + x0 * sw_ : -1;
    q.ne = (t.y.v0 && t.x.v1) ? y0 * sh + (x0 + 1) * sw_ : -1;
    q.sw = (t.y.v1 && t.x.v0) ? (y0 + 1) * sh + x0 * sw_ : -1;
    q.se = (t.y.v1 && t.x.v1) ? (y0 + 1) * sh + (x0 + 1) * sw_ : -1;
    return q;
  }

  template <typename acc_t, typename scalar_t>
  FW_HOST_DEVICE Quad<acc_t> load(const scalar_t* plane) const {
    Quad<acc_t> q;
    q.nw = nw >= 0 ? static_cast<acc_t>(plane[nw]) : acc_t(0);
    q.ne = ne >= 0 ? static_cast<acc_t>(plane[ne]) : acc_t(0);
    q.sw = sw >= 0 ? static_cast<acc_t>(plane[sw]) : acc_t(0);
    q.se = se >= 0 ? static_cast<acc_t>(plane[se]) : acc_t(0);
    return q;
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
  // Ties to even by hand: libm's nearbyintf/rintf are calls on baseline x86-64 (no
  // SSE4.1 roundss), and one per channel dominated the uint8 composite. v is in [0, 255].
  int t = static_cast<int>(v + 0.5f);  // v + 0.5 >= 0: truncation is floor
  if (static_cast<float>(t) - v == 0.5f && (t & 1)) --t;
  return static_cast<uint8_t>(t);
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
  Interp interp;
};

// One output pixel's reads, shared by the forward and the backward: whether it lies in
// the footprint and, if so, its grid sample, its image taps (the flow sampled there, in
// image pixels through L^-1) and its mask (1 for warp).
template <typename acc_t>
struct ThetaPixel {
  bool inside;
  GridSample<acc_t> gs;
  GridTaps<acc_t> flow_taps;  // the grid taps for the flow's strides
  Taps<acc_t> t;
  acc_t dx, dy;  // the image displacement (L^-1 flow) in image pixels
  acc_t m;

  // The grid taps for a map of strides s: the flow's when the strides match (the usual
  // case: maps of one layout), else computed.
  FW_HOST_DEVICE GridTaps<acc_t> taps_for(const Strides4& s) const {
    return (s.h == flow_h && s.w == flow_w) ? flow_taps : GridTaps<acc_t>::make(gs, s.h, s.w);
  }
  int64_t flow_h, flow_w;

  template <typename img_t, typename map_t, bool kBlend>
  FW_HOST_DEVICE static ThetaPixel make(const ThetaInputs<img_t, map_t>& in, const GridMap<acc_t>& gm, int64_t n,
                                        int64_t y, int64_t x) {
    ThetaPixel p{};
    p.flow_h = in.s_flow.h;
    p.flow_w = in.s_flow.w;
    const acc_t u = gm.u(x, y), v = gm.v(x, y);
    p.inside = in_footprint(u, v, in.h, in.w);
    if (!p.inside) return p;
    p.gs = GridSample<acc_t>::make(u, v, in.h, in.w);
    p.flow_taps = GridTaps<acc_t>::make(p.gs, in.s_flow.h, in.s_flow.w);
    const map_t* fl = in.flow + n * in.s_flow.n;
    const acc_t fx = p.flow_taps.sample(fl);
    const acc_t fy = p.flow_taps.sample(fl + in.s_flow.c);
    p.dx = gm.i00 * fx + gm.i01 * fy;
    p.dy = gm.i10 * fx + gm.i11 * fy;
    p.t = make_taps<acc_t>(x, y, p.dx, p.dy, in.W, in.H, in.padding);
    p.m = acc_t(1);
    if (kBlend) p.m = p.taps_for(in.s_mask).sample(in.mask + n * in.s_mask.n);
    return p;
  }
};

// Forward of one output pixel (n, y, x), all channels, when it lies in the footprint
// (returns false, writing nothing, when it does not: the output already holds the image).
template <typename img_t, typename map_t, typename acc_t, bool kBlend>
FW_HOST_DEVICE bool theta_forward_pixel(const ThetaInputs<img_t, map_t>& in, const GridMap<acc_t>& gm, img_t* out,
                                        const Strides4& s_out, int64_t n, int64_t y, int64_t x) {
  const auto px = ThetaPixel<acc_t>::template make<img_t, map_t, kBlend>(in, gm, n, y, x);
  if (!px.inside) return false;
  const Taps<acc_t>& t = px.t;
  const acc_t m = px.m;
  const bool cubic = in.interp == Interp::Bicubic;
  const QuadOffsets quad = QuadOffsets::make(t, in.s_image.h, in.s_image.w);
  CubicTaps<acc_t> ct;
  if (cubic) ct = make_cubic_taps<acc_t>(x, y, px.dx, px.dy, in.W, in.H, in.padding, false);
  GridTaps<acc_t> tex_taps{};
  if (kBlend) tex_taps = px.taps_for(in.s_texture);
  const img_t* img_n = in.image + n * in.s_image.n;
  img_t* out_px = out + n * s_out.n + y * s_out.h + x * s_out.w;
  for (int64_t c = 0; c < in.C; ++c) {
    const img_t* plane = img_n + c * in.s_image.c;
    acc_t val = cubic ? load_patch<acc_t>(plane, in.s_image.h, in.s_image.w, ct).interpolate(ct)
                      : quad.load<acc_t>(plane).interpolate(t);
    if (kBlend) {
      const acc_t tex = tex_taps.sample(in.texture + n * in.s_texture.n + c * in.s_texture.c);
      val = m * val + (acc_t(1) - m) * tex;
    }
    out_px[c * s_out.c] = store_pixel<img_t, acc_t>(val);
  }
  return true;
}

// Backward of one output pixel (n, y, x) (floating images only). Outside the footprint the
// output is the image: its gradient passes to the image unchanged. Inside, the image
// gradient is the warp's 4-tap scatter (16 taps, rows then columns, for bicubic: only the
// valid ones, in the same order in every channel), and the flow, texture and mask gradients are the
// adjoint of the grid sample: `image_add(n, c, ty, tx, value)` and
// `grid_add(n, k, gy, gx, value)` with k = 0, 1 (flow dx, dy), 2 (mask), 3 + c (texture);
// a backend passes adders that ignore what is not wanted.
template <typename scalar_t, typename acc_t, bool kBlend, typename ImageAdd, typename GridAdd>
FW_HOST_DEVICE void theta_backward_pixel(const ThetaInputs<scalar_t, scalar_t>& in, const GridMap<acc_t>& gm,
                                         const scalar_t* grad_out, const Strides4& s_gout, int64_t n, int64_t y,
                                         int64_t x, bool need_flow, bool need_mask, ImageAdd& image_add,
                                         GridAdd& grid_add) {
  const scalar_t* go_px = grad_out + n * s_gout.n + y * s_gout.h + x * s_gout.w;
  const auto px = ThetaPixel<acc_t>::template make<scalar_t, scalar_t, kBlend>(in, gm, n, y, x);
  if (!px.inside) {
    for (int64_t c = 0; c < in.C; ++c) image_add(n, c, y, x, static_cast<acc_t>(go_px[c * s_gout.c]));
    return;
  }
  const GridSample<acc_t>& gs = px.gs;
  const Taps<acc_t>& t = px.t;
  const acc_t m = px.m;
  const bool need_values = need_flow || (kBlend && need_mask);
  const bool cubic = in.interp == Interp::Bicubic;
  CubicTaps<acc_t> ct;
  if (cubic) ct = make_cubic_taps<acc_t>(x, y, px.dx, px.dy, in.W, in.H, in.padding, need_flow);
  const scalar_t* img_n = in.image + n * in.s_image.n;
  acc_t gdx = acc_t(0), gdy = acc_t(0), gmask = acc_t(0);
  const acc_t w_nw = t.w_nw(), w_ne = t.w_ne(), w_sw = t.w_sw(), w_se = t.w_se();
  for (int64_t c = 0; c < in.C; ++c) {
    acc_t go = static_cast<acc_t>(go_px[c * s_gout.c]);
    Quad<acc_t> q{};
    Patch<acc_t> patch{};
    if (need_values) {
      if (cubic) {
        patch = load_patch<acc_t>(img_n + c * in.s_image.c, in.s_image.h, in.s_image.w, ct);
      } else {
        q = load_quad<acc_t>(img_n + c * in.s_image.c, in.s_image.h, in.s_image.w, t);
      }
    }
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
        gmask += go * ((cubic ? patch.interpolate(ct) : q.interpolate(t)) - tex);
      }
      go = go * m;
    }
    if (cubic) {
      for (int r = 0; r < 4; ++r) {
        const acc_t gr = ct.y.w[r] * go;
        for (int k = 0; k < 4; ++k) {
          if (ct.y.v[r] && ct.x.v[k]) image_add(n, c, ct.y.i[r], ct.x.i[k], ct.x.w[k] * gr);
        }
      }
      if (need_flow) {
        acc_t sx, sy;
        patch.gradient(ct, &sx, &sy);
        gdx += go * sx;
        gdy += go * sy;
      }
      continue;
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
    gdx *= cubic ? ct.x.grad : t.x.grad;
    gdy *= cubic ? ct.y.grad : t.y.grad;
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
