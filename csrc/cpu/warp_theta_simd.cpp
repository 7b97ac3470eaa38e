// AVX2 row kernel of the frame-space composite's forward (see warp_simd.h,
// theta_forward_row_avx2): eight output pixels per step, with the per-pixel semantics of
// ../warp_theta.h (theta_forward_pixel), operation for operation and without fused
// multiply-adds, so the result equals the scalar path's. Only the functions marked
// target("avx2") use AVX2; the host calls them after simd_available().
//
// Per step: the grid position (u, v) of each pixel, the footprint test, the grid taps
// (clamped, shared by the flow, mask and texture planes: masked gathers), the flow in image
// pixels through L^-1, the image taps (border padding: clamped, so always inside) and,
// per channel, gathers of the four taps (float32, or uint8 bytes read as the low byte of an
// aligned-back 32-bit load), the blend, and the store of the lanes in the footprint.
//
// mode="bicubic" (theta_forward_row_cubic): the same grid part, then detail::CubicAxis per
// axis (Keys' weights, each of the 4 tap indices clamped into the image) and the 4 x 4 taps
// summed as Patch::interpolate does (each row left to right, then the rows top to bottom,
// from 0). A channels_last uint8 frame with 2..4 channels gathers each tap's channels at
// once (one 32-bit word per tap, the pixel's bytes shifted down), so a 3-channel frame
// takes 16 gathers per eight pixels instead of 48.
#include "warp_simd.h"

#include <immintrin.h>

namespace fastwarp {
namespace cpu {
namespace {

#define FW_THETA_AVX2 __attribute__((target("avx2"))) static inline

struct GridAxisV {
  __m256i i0, i1;
  __m256 l0, l1;
};

// detail::GridAxis::make for eight coordinates.
FW_THETA_AVX2 GridAxisV grid_axis(__m256 c, int64_t size) {
  const __m256 hi = _mm256_set1_ps(static_cast<float>(size - 1));
  c = _mm256_max_ps(c, _mm256_setzero_ps());  // NaN -> 0 (max returns its second operand)
  c = _mm256_min_ps(c, hi);
  const __m256 f = _mm256_floor_ps(c);
  GridAxisV a;
  a.i0 = _mm256_cvttps_epi32(f);
  a.i1 = _mm256_min_epi32(_mm256_add_epi32(a.i0, _mm256_set1_epi32(1)), _mm256_set1_epi32(static_cast<int>(size - 1)));
  a.l1 = _mm256_sub_ps(c, f);
  a.l0 = _mm256_sub_ps(_mm256_set1_ps(1.0f), a.l1);
  return a;
}

// detail::Axis::make for border padding on an axis of size >= 2: the coordinate clamped
// into [0, size - 1]; the lower tap always inside, the upper one inside unless at the end.
struct AxisV {
  __m256i i0, i1;
  __m256 frac;
  __m256 v1;  // upper tap inside (all-ones lanes)
};

FW_THETA_AVX2 AxisV border_axis(__m256 pos, __m256 d, int64_t size) {
  const __m256 hi = _mm256_set1_ps(static_cast<float>(size - 1));
  __m256 c = _mm256_add_ps(pos, d);
  c = _mm256_max_ps(c, _mm256_setzero_ps());  // !(c > 0) -> 0, NaN included
  c = _mm256_min_ps(c, hi);                   // !(c < hi) -> hi
  const __m256 f = _mm256_floor_ps(c);
  AxisV a;
  a.i0 = _mm256_cvttps_epi32(f);
  a.v1 = _mm256_cmp_ps(f, _mm256_sub_ps(hi, _mm256_set1_ps(1.0f)), _CMP_LE_OQ);
  a.i1 = _mm256_min_epi32(_mm256_add_epi32(a.i0, _mm256_set1_epi32(1)), _mm256_set1_epi32(static_cast<int>(size - 1)));
  a.frac = _mm256_sub_ps(c, f);
  return a;
}

FW_THETA_AVX2 __m256 gather(const float* base, __m256i offsets, __m256 lanes) {
  return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), base, offsets, lanes, 4);
}

// uint8 values at byte offsets: 32-bit loads ending at the byte (so no load passes the
// last byte of the plane), the byte shifted down; offsets below 3 load from 0 instead.
FW_THETA_AVX2 __m256 gather_u8(const uint8_t* base, __m256i offsets, __m256 lanes) {
  const __m256i start = _mm256_max_epi32(_mm256_sub_epi32(offsets, _mm256_set1_epi32(3)), _mm256_setzero_si256());
  const __m256i shift = _mm256_slli_epi32(_mm256_sub_epi32(offsets, start), 3);
  const __m256i words = _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), reinterpret_cast<const int*>(base), start,
                                                    _mm256_castps_si256(lanes), 1);
  const __m256i bytes = _mm256_and_si256(_mm256_srlv_epi32(words, shift), _mm256_set1_epi32(0xff));
  return _mm256_cvtepi32_ps(bytes);
}

// GridTaps::sample: ly0 * (lx0 * p00 + lx1 * p01) + ly1 * (lx0 * p10 + lx1 * p11).
struct GridTapsV {
  __m256i o00, o01, o10, o11;
  GridAxisV x, y;
};

FW_THETA_AVX2 GridTapsV grid_taps(const GridAxisV& gx, const GridAxisV& gy, int64_t sh, int64_t sw) {
  const __m256i vsh = _mm256_set1_epi32(static_cast<int>(sh)), vsw = _mm256_set1_epi32(static_cast<int>(sw));
  const __m256i r0 = _mm256_mullo_epi32(gy.i0, vsh), r1 = _mm256_mullo_epi32(gy.i1, vsh);
  const __m256i c0 = _mm256_mullo_epi32(gx.i0, vsw), c1 = _mm256_mullo_epi32(gx.i1, vsw);
  GridTapsV t;
  t.o00 = _mm256_add_epi32(r0, c0);
  t.o01 = _mm256_add_epi32(r0, c1);
  t.o10 = _mm256_add_epi32(r1, c0);
  t.o11 = _mm256_add_epi32(r1, c1);
  t.x = gx;
  t.y = gy;
  return t;
}

FW_THETA_AVX2 __m256 grid_sample(const GridTapsV& t, const float* plane, __m256 lanes) {
  const __m256 top = _mm256_add_ps(_mm256_mul_ps(t.x.l0, gather(plane, t.o00, lanes)),
                                   _mm256_mul_ps(t.x.l1, gather(plane, t.o01, lanes)));
  const __m256 bottom = _mm256_add_ps(_mm256_mul_ps(t.x.l0, gather(plane, t.o10, lanes)),
                                      _mm256_mul_ps(t.x.l1, gather(plane, t.o11, lanes)));
  return _mm256_add_ps(_mm256_mul_ps(t.y.l0, top), _mm256_mul_ps(t.y.l1, bottom));
}

// detail::cubic_weights for eight fractions t, operation for operation (A = -0.75; the
// products of constants are exact, as the scalar path's).
FW_THETA_AVX2 void cubic_weights(__m256 t, __m256* w) {
  const __m256 A = _mm256_set1_ps(-0.75f), A5 = _mm256_set1_ps(5.0f * -0.75f);
  const __m256 A8 = _mm256_set1_ps(8.0f * -0.75f), A4 = _mm256_set1_ps(4.0f * -0.75f);
  const __m256 B2 = _mm256_set1_ps(-0.75f + 2.0f), B3 = _mm256_set1_ps(-0.75f + 3.0f);
  const __m256 one = _mm256_set1_ps(1.0f), two = _mm256_set1_ps(2.0f);
  const __m256 x0 = _mm256_add_ps(t, one), x1 = t, x2 = _mm256_sub_ps(one, t), x3 = _mm256_sub_ps(two, t);
  // |x| in [1, 2): ((A x - 5A) x + 8A) x - 4A; |x| < 1: ((A + 2) x - (A + 3)) x x + 1
  w[0] = _mm256_sub_ps(
      _mm256_mul_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_mul_ps(A, x0), A5), x0), A8), x0), A4);
  w[1] = _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_mul_ps(B2, x1), B3), x1), x1), one);
  w[2] = _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_mul_ps(B2, x2), B3), x2), x2), one);
  w[3] = _mm256_sub_ps(
      _mm256_mul_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_mul_ps(A, x3), A5), x3), A8), x3), A4);
}

// detail::CubicAxis::make with border padding on an axis of size >= 2, as element offsets:
// taps floor(c) - 1 .. floor(c) + 2, each clamped into [0, size - 1], times the stride. The
// coordinate is not clamped (a non-finite one gives NaN weights); floor(c) is clamped into
// [-2, size + 1] before the conversion (NaN -> -2, every tap 0 as the scalar clamp puts a
// NaN tap on 0), which leaves every clamped tap as it was.
struct CubicAxisV {
  __m256 w[4];
  __m256i off[4];
};

FW_THETA_AVX2 CubicAxisV cubic_axis(__m256 c, int64_t size, int64_t stride) {
  CubicAxisV a;
  const __m256 f = _mm256_floor_ps(c);
  cubic_weights(_mm256_sub_ps(c, f), a.w);
  const __m256 fc =
      _mm256_min_ps(_mm256_max_ps(f, _mm256_set1_ps(-2.0f)), _mm256_set1_ps(static_cast<float>(size + 1)));
  const __m256i i = _mm256_cvttps_epi32(fc);
  const __m256i last = _mm256_set1_epi32(static_cast<int>(size - 1)), vs = _mm256_set1_epi32(static_cast<int>(stride));
  for (int k = 0; k < 4; ++k) {
    const __m256i ik = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(i, _mm256_set1_epi32(k - 1)),
                                                         _mm256_setzero_si256()), last);
    a.off[k] = _mm256_mullo_epi32(ik, vs);
  }
  return a;
}

// Stores lanes [0, n) of channel c's values where the lane is in the footprint; uint8:
// store_pixel's clamp (NaN -> 0) and rounding half to even.
FW_THETA_AVX2 void store_lanes(const ThetaRowArgs& a, int64_t c, int64_t x, int n, const float* keep, __m256 val) {
  alignas(32) float vals[8];
  if (a.u8) {
    val = _mm256_min_ps(_mm256_max_ps(val, _mm256_setzero_ps()), _mm256_set1_ps(255.0f));
    val = _mm256_round_ps(val, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  _mm256_store_ps(vals, val);
  if (a.u8) {
    uint8_t* out = static_cast<uint8_t*>(a.out) + c * a.o_s_c;
    for (int i = 0; i < n; ++i)
      if (keep[i] != 0.0f) out[(x + i) * a.o_s_w] = static_cast<uint8_t>(vals[i]);
  } else {
    float* out = static_cast<float*>(a.out) + c * a.o_s_c;
    for (int i = 0; i < n; ++i)
      if (keep[i] != 0.0f) out[(x + i) * a.o_s_w] = vals[i];
  }
}

// The blend with the texture (warp_blend) and the store of channel c's values.
FW_THETA_AVX2 void finish(const ThetaRowArgs& a, const GridTapsV& tt, __m256 m, __m256 inside, const float* keep,
                          int64_t x, int n, int64_t c, __m256 val) {
  if (a.mask != nullptr) {
    const __m256 tex = grid_sample(tt, a.texture + c * a.t_s_c, inside);
    val = _mm256_add_ps(_mm256_mul_ps(m, val), _mm256_mul_ps(_mm256_sub_ps(_mm256_set1_ps(1.0f), m), tex));
  }
  store_lanes(a, c, x, n, keep, val);
}

// Per row: the constants of the grid part (theta, L^-1, the footprint's bounds); per block of
// eight lanes at x: what the bilinear and bicubic image taps share, operation for operation
// as ThetaPixel::make (the lanes' x, the footprint test, the flow's grid taps, the image
// displacement dx, dy through L^-1, the mask m and the texture's grid taps).
struct ThetaLanes {
  __m256 a00, a01y, a02, a10, a11y, a12, i00, i01, i10, i11, lo, u_hi, v_hi;
  __m256i lane_idx;
};

struct ThetaBlock {
  int n;  // lanes in the row: min(8, x1 - x)
  __m256 xv, inside, dx, dy, m;
  GridTapsV tt;
};

FW_THETA_AVX2 ThetaLanes theta_lanes(const ThetaRowArgs& a, float y) {
  ThetaLanes l;
  // u = a00 x + a01 y + a02 as GridMap::u computes it: ((a00 x) + (a01 y)) + a02.
  l.a00 = _mm256_set1_ps(a.t[0]);
  l.a01y = _mm256_set1_ps(a.t[1] * y);
  l.a02 = _mm256_set1_ps(a.t[2]);
  l.a10 = _mm256_set1_ps(a.t[3]);
  l.a11y = _mm256_set1_ps(a.t[4] * y);
  l.a12 = _mm256_set1_ps(a.t[5]);
  l.i00 = _mm256_set1_ps(a.inv[0]);
  l.i01 = _mm256_set1_ps(a.inv[1]);
  l.i10 = _mm256_set1_ps(a.inv[2]);
  l.i11 = _mm256_set1_ps(a.inv[3]);
  l.lo = _mm256_set1_ps(-0.5f);
  l.u_hi = _mm256_set1_ps(static_cast<float>(a.w) - 0.5f);
  l.v_hi = _mm256_set1_ps(static_cast<float>(a.h) - 0.5f);
  l.lane_idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return l;
}

// The block at x; false (b unset) when no lane lies in the footprint.
FW_THETA_AVX2 bool theta_block(const ThetaRowArgs& a, const ThetaLanes& l, int64_t x, ThetaBlock* b) {
  b->n = static_cast<int>(a.x1 - x < 8 ? a.x1 - x : 8);
  const __m256 valid = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(b->n), l.lane_idx));
  b->xv = _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(x)), l.lane_idx));
  const __m256 u = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(l.a00, b->xv), l.a01y), l.a02);
  const __m256 v = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(l.a10, b->xv), l.a11y), l.a12);
  __m256 inside = _mm256_and_ps(_mm256_cmp_ps(u, l.lo, _CMP_GE_OQ), _mm256_cmp_ps(u, l.u_hi, _CMP_LE_OQ));
  inside = _mm256_and_ps(inside, _mm256_and_ps(_mm256_cmp_ps(v, l.lo, _CMP_GE_OQ), _mm256_cmp_ps(v, l.v_hi, _CMP_LE_OQ)));
  b->inside = _mm256_and_ps(inside, valid);
  if (_mm256_movemask_ps(b->inside) == 0) return false;
  const GridTapsV ft = grid_taps(grid_axis(u, a.w), grid_axis(v, a.h), a.f_s_h, a.f_s_w);
  const __m256 fx = grid_sample(ft, a.flow, b->inside);
  const __m256 fy = grid_sample(ft, a.flow + a.f_s_c, b->inside);
  b->dx = _mm256_add_ps(_mm256_mul_ps(l.i00, fx), _mm256_mul_ps(l.i01, fy));
  b->dy = _mm256_add_ps(_mm256_mul_ps(l.i10, fx), _mm256_mul_ps(l.i11, fy));
  b->m = _mm256_set1_ps(1.0f);
  b->tt = GridTapsV{};
  if (a.mask != nullptr) {
    b->m = grid_sample(a.m_s_h == a.f_s_h && a.m_s_w == a.f_s_w ? ft : grid_taps(ft.x, ft.y, a.m_s_h, a.m_s_w),
                       a.mask, b->inside);
    b->tt = (a.t_s_h == a.f_s_h && a.t_s_w == a.f_s_w) ? ft : grid_taps(ft.x, ft.y, a.t_s_h, a.t_s_w);
  }
  return true;
}

}  // namespace

__attribute__((target("avx2"))) static void theta_forward_row_cubic(const ThetaRowArgs& a);

__attribute__((target("avx2"))) void theta_forward_row_avx2(const ThetaRowArgs& a) {
  if (a.cubic) {
    theta_forward_row_cubic(a);
    return;
  }
  const float y = static_cast<float>(a.y);
  const ThetaLanes lanes = theta_lanes(a, y);
  const __m256 yv = _mm256_set1_ps(y);
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256i vs_h = _mm256_set1_epi32(static_cast<int>(a.s_h)), vs_w = _mm256_set1_epi32(static_cast<int>(a.s_w));
  alignas(32) float keep[8];
  ThetaBlock b;
  for (int64_t x = a.x0; x < a.x1; x += 8) {
    if (!theta_block(a, lanes, x, &b)) continue;
    const __m256 inside = b.inside;
    const AxisV tx = border_axis(b.xv, b.dx, a.W), ty = border_axis(yv, b.dy, a.H);
    // Taps::w_nw() etc.
    const __m256 ox = _mm256_sub_ps(one, tx.frac), oy = _mm256_sub_ps(one, ty.frac);
    const __m256 w_nw = _mm256_mul_ps(ox, oy), w_ne = _mm256_mul_ps(tx.frac, oy);
    const __m256 w_sw = _mm256_mul_ps(ox, ty.frac), w_se = _mm256_mul_ps(tx.frac, ty.frac);
    const __m256i r0 = _mm256_mullo_epi32(ty.i0, vs_h), r1 = _mm256_mullo_epi32(ty.i1, vs_h);
    const __m256i c0 = _mm256_mullo_epi32(tx.i0, vs_w), c1 = _mm256_mullo_epi32(tx.i1, vs_w);
    const __m256i o_nw = _mm256_add_epi32(r0, c0), o_ne = _mm256_add_epi32(r0, c1);
    const __m256i o_sw = _mm256_add_epi32(r1, c0), o_se = _mm256_add_epi32(r1, c1);
    const __m256 in_ne = _mm256_and_ps(inside, tx.v1), in_sw = _mm256_and_ps(inside, ty.v1);
    const __m256 in_se = _mm256_and_ps(in_ne, ty.v1);
    _mm256_store_ps(keep, inside);
    for (int64_t c = 0; c < a.C; ++c) {
      __m256 nw, ne, sw, se;
      if (a.u8) {
        const uint8_t* plane = static_cast<const uint8_t*>(a.image) + c * a.s_c;
        nw = gather_u8(plane, o_nw, inside);
        ne = gather_u8(plane, o_ne, in_ne);
        sw = gather_u8(plane, o_sw, in_sw);
        se = gather_u8(plane, o_se, in_se);
      } else {
        const float* plane = static_cast<const float*>(a.image) + c * a.s_c;
        nw = gather(plane, o_nw, inside);
        ne = gather(plane, o_ne, in_ne);
        sw = gather(plane, o_sw, in_sw);
        se = gather(plane, o_se, in_se);
      }
      // Quad::interpolate: ((w_nw nw + w_ne ne) + w_sw sw) + w_se se
      __m256 val = _mm256_add_ps(_mm256_mul_ps(w_nw, nw), _mm256_mul_ps(w_ne, ne));
      val = _mm256_add_ps(val, _mm256_mul_ps(w_sw, sw));
      val = _mm256_add_ps(val, _mm256_mul_ps(w_se, se));
      finish(a, b.tt, b.m, inside, keep, x, b.n, c, val);
    }
  }
}

namespace {

// Patch::interpolate of channels [0, kC) of a uint8 image with channels contiguous per
// pixel (s_c == 1, 2 <= kC <= 4): per tap, the 32-bit word ending at the pixel's last
// channel (starting at 0 instead where that would start before the plane), shifted so the
// pixel's channel 0 is its low byte.
template <int kC>
FW_THETA_AVX2 void cubic_u8_pixels(const uint8_t* base, const CubicAxisV& cx, const CubicAxisV& cy, __m256 inside,
                                   __m256* val) {
  const __m256i mask = _mm256_castps_si256(inside), bytes = _mm256_set1_epi32(0xff);
  for (int c = 0; c < kC; ++c) val[c] = _mm256_setzero_ps();
  for (int r = 0; r < 4; ++r) {
    __m256 row[kC];
    for (int k = 0; k < 4; ++k) {
      const __m256i off = _mm256_add_epi32(cy.off[r], cx.off[k]);
      const __m256i start = _mm256_max_epi32(_mm256_add_epi32(off, _mm256_set1_epi32(kC - 4)), _mm256_setzero_si256());
      __m256i word = _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), reinterpret_cast<const int*>(base), start,
                                                 mask, 1);
      if (kC < 4) word = _mm256_srlv_epi32(word, _mm256_slli_epi32(_mm256_sub_epi32(off, start), 3));
      for (int c = 0; c < kC; ++c) {
        const __m256i b = c == 0 ? _mm256_and_si256(word, bytes)
                                 : _mm256_and_si256(_mm256_srli_epi32(word, 8 * c), bytes);
        const __m256 v = _mm256_mul_ps(cx.w[k], _mm256_cvtepi32_ps(b));
        row[c] = k == 0 ? v : _mm256_add_ps(row[c], v);
      }
    }
    for (int c = 0; c < kC; ++c) val[c] = _mm256_add_ps(val[c], _mm256_mul_ps(cy.w[r], row[c]));
  }
}

// Patch::interpolate of one channel plane.
FW_THETA_AVX2 __m256 cubic_plane(const ThetaRowArgs& a, int64_t c, const CubicAxisV& cx, const CubicAxisV& cy,
                                 __m256 inside) {
  __m256 val = _mm256_setzero_ps();
  for (int r = 0; r < 4; ++r) {
    __m256 row = _mm256_setzero_ps();
    for (int k = 0; k < 4; ++k) {
      const __m256i off = _mm256_add_epi32(cy.off[r], cx.off[k]);
      const __m256 v = a.u8 ? gather_u8(static_cast<const uint8_t*>(a.image) + c * a.s_c, off, inside)
                            : gather(static_cast<const float*>(a.image) + c * a.s_c, off, inside);
      const __m256 p = _mm256_mul_ps(cx.w[k], v);
      row = k == 0 ? p : _mm256_add_ps(row, p);
    }
    val = _mm256_add_ps(val, _mm256_mul_ps(cy.w[r], row));
  }
  return val;
}

}  // namespace

__attribute__((target("avx2"))) static void theta_forward_row_cubic(const ThetaRowArgs& a) {
  const float y = static_cast<float>(a.y);
  const ThetaLanes lanes = theta_lanes(a, y);
  const __m256 yv = _mm256_set1_ps(y);
  // A uint8 frame with its channels together: one word gather per tap for every channel.
  const int words = (a.u8 && a.s_c == 1 && a.C >= 2 && a.C <= 4) ? static_cast<int>(a.C) : 0;
  alignas(32) float keep[8];
  ThetaBlock b;
  for (int64_t x = a.x0; x < a.x1; x += 8) {
    if (!theta_block(a, lanes, x, &b)) continue;
    const __m256 inside = b.inside;
    const int n = b.n;
    const CubicAxisV cx = cubic_axis(_mm256_add_ps(b.xv, b.dx), a.W, a.s_w);
    const CubicAxisV cy = cubic_axis(_mm256_add_ps(yv, b.dy), a.H, a.s_h);
    const GridTapsV& tt = b.tt;
    const __m256 m = b.m;
    _mm256_store_ps(keep, inside);
    if (words != 0) {
      __m256 val[4];
      const uint8_t* base = static_cast<const uint8_t*>(a.image);
      if (words == 2) cubic_u8_pixels<2>(base, cx, cy, inside, val);
      if (words == 3) cubic_u8_pixels<3>(base, cx, cy, inside, val);
      if (words == 4) cubic_u8_pixels<4>(base, cx, cy, inside, val);
      for (int c = 0; c < words; ++c) finish(a, tt, m, inside, keep, x, n, c, val[c]);
    } else {
      for (int64_t c = 0; c < a.C; ++c) finish(a, tt, m, inside, keep, x, n, c, cubic_plane(a, c, cx, cy, inside));
    }
  }
}

}  // namespace cpu
}  // namespace fastwarp
