// AVX2 + FMA row kernels of the CPU backend (see warp_simd.h). Only the functions marked
// FW_AVX2 use AVX2 instructions; the host code calls them after simd_available(), so the
// extension still loads and runs (scalar path) on a CPU without AVX2.
//
// Eight output pixels per step: the flow, the tap coordinates, weights and validity are
// computed once per pixel in vector registers and shared by every channel; the four taps
// of a channel are masked gathers (a tap outside the image is never read and counts 0).
// The image gradient is a scatter in a fixed order (see backward_row_avx2), so it is
// deterministic. Semantics are those of ../warp_math.h, step by step.
#include "warp_simd.h"

#include <immintrin.h>
#include <stdlib.h>

#include <atomic>

namespace fastwarp {
namespace cpu {

bool simd_available() {
  static const bool ok = [] {
    const char* off = getenv("FASTWARP_CPU_SIMD");
    if (off != nullptr && off[0] == '0') return false;  // FASTWARP_CPU_SIMD=0: scalar path only
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return ok;
}

namespace {
std::atomic<int64_t> g_simd_calls{0};
}  // namespace

void note_simd_call() { g_simd_calls.fetch_add(1, std::memory_order_relaxed); }
int64_t simd_calls() { return g_simd_calls.load(std::memory_order_relaxed); }

#define FW_AVX2 __attribute__((target("avx2,fma"))) static inline

namespace {

constexpr int kLanes = 8;

// Lanes [0, n) of a step, as an integer mask for maskload/maskstore and a float mask.
FW_AVX2 __m256i lane_mask(int n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}

FW_AVX2 __m256 load_row(const float* p, int64_t stride, int64_t x, int n, __m256i lanes) {
  if (stride == 1) return n == kLanes ? _mm256_loadu_ps(p + x) : _mm256_maskload_ps(p + x, lanes);
  alignas(32) float tmp[kLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int i = 0; i < n; ++i) tmp[i] = p[(x + i) * stride];
  return _mm256_load_ps(tmp);
}

FW_AVX2 void store_row(float* p, int64_t stride, int64_t x, int n, __m256i lanes, __m256 v) {
  if (stride == 1) {
    if (n == kLanes) {
      _mm256_storeu_ps(p + x, v);
    } else {
      _mm256_maskstore_ps(p + x, lanes, v);
    }
    return;
  }
  alignas(32) float tmp[kLanes];
  _mm256_store_ps(tmp, v);
  for (int i = 0; i < n; ++i) p[(x + i) * stride] = tmp[i];
}

// detail::Axis for eight coordinates (see warp_math.h for the semantics).
struct AxisV {
  __m256 frac;  // weight of the upper tap
  __m256 grad;  // d coordinate / d flow: 1, or 0 where border clamps or the size is 1
  __m256 v0;    // lower tap inside (all-ones lanes)
  __m256 v1;    // upper tap inside
  __m256i i0;   // lower tap index (0 where neither tap is inside)
};

FW_AVX2 AxisV make_axis(__m256 pos, __m256 d, int64_t size, int padding) {
  const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
  AxisV a;
  __m256 c;
  a.grad = one;
  if (size == 1) {
    c = _mm256_mul_ps(d, zero);
    a.grad = zero;
  } else {
    c = _mm256_add_ps(pos, d);
  }
  const __m256 last = _mm256_set1_ps(static_cast<float>(size - 1));
  if (padding == 0) {
    const __m256 inside = _mm256_and_ps(_mm256_cmp_ps(c, zero, _CMP_GT_OQ), _mm256_cmp_ps(c, last, _CMP_LT_OQ));
    a.grad = _mm256_and_ps(a.grad, inside);
    // max returns its second operand when the first is NaN: NaN clamps to 0.
    c = _mm256_min_ps(_mm256_max_ps(c, zero), last);
  }
  const __m256 f = _mm256_floor_ps(c);
  a.frac = _mm256_sub_ps(c, f);
  a.v0 = _mm256_and_ps(_mm256_cmp_ps(f, zero, _CMP_GE_OQ), _mm256_cmp_ps(f, last, _CMP_LE_OQ));
  a.v1 = _mm256_and_ps(_mm256_cmp_ps(f, _mm256_set1_ps(-1.0f), _CMP_GE_OQ),
                       _mm256_cmp_ps(f, _mm256_sub_ps(last, one), _CMP_LE_OQ));
  a.i0 = _mm256_and_si256(_mm256_cvttps_epi32(f), _mm256_castps_si256(_mm256_or_ps(a.v0, a.v1)));
  return a;
}

// The taps of eight output pixels: weights, gather masks and offsets.
struct TapsV {
  AxisV x, y;
  __m256 w_nw, w_ne, w_sw, w_se;
  __m256 m_nw, m_ne, m_sw, m_se;  // tap inside the image and lane in the row
  __m256i off;                    // offset of the nw tap: y0 * s_h + x0 * s_w
};

FW_AVX2 TapsV make_taps(const RowArgs& a, int64_t x, __m256 dx, __m256 dy, __m256 lanes_f) {
  TapsV t;
  const __m256 px = _mm256_add_ps(_mm256_set1_ps(static_cast<float>(x)), _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7));
  t.x = make_axis(px, dx, a.W, a.padding);
  t.y = make_axis(_mm256_set1_ps(static_cast<float>(a.y)), dy, a.H, a.padding);
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 gx = _mm256_sub_ps(one, t.x.frac), gy = _mm256_sub_ps(one, t.y.frac);
  t.w_nw = _mm256_mul_ps(gx, gy);
  t.w_ne = _mm256_mul_ps(t.x.frac, gy);
  t.w_sw = _mm256_mul_ps(gx, t.y.frac);
  t.w_se = _mm256_mul_ps(t.x.frac, t.y.frac);
  t.m_nw = _mm256_and_ps(lanes_f, _mm256_and_ps(t.y.v0, t.x.v0));
  t.m_ne = _mm256_and_ps(lanes_f, _mm256_and_ps(t.y.v0, t.x.v1));
  t.m_sw = _mm256_and_ps(lanes_f, _mm256_and_ps(t.y.v1, t.x.v0));
  t.m_se = _mm256_and_ps(lanes_f, _mm256_and_ps(t.y.v1, t.x.v1));
  t.off = _mm256_add_epi32(_mm256_mullo_epi32(t.y.i0, _mm256_set1_epi32(static_cast<int32_t>(a.s_h))),
                           _mm256_mullo_epi32(t.x.i0, _mm256_set1_epi32(static_cast<int32_t>(a.s_w))));
  return t;
}

// One step of a row: lanes [x, x + n) of the output row, their taps and mask (1 for warp).
struct Step {
  int n;
  __m256i lanes;
  TapsV t;
  __m256 m;
};

FW_AVX2 Step begin_step(const RowArgs& a, int64_t x) {
  Step s;
  s.n = a.W - x < kLanes ? static_cast<int>(a.W - x) : kLanes;
  s.lanes = lane_mask(s.n);
  const __m256 dx = load_row(a.dx.p, a.dx.stride, x, s.n, s.lanes);
  const __m256 dy = load_row(a.dy.p, a.dy.stride, x, s.n, s.lanes);
  s.t = make_taps(a, x, dx, dy, _mm256_castsi256_ps(s.lanes));
  s.m = a.mask.p != nullptr ? load_row(a.mask.p, a.mask.stride, x, s.n, s.lanes) : _mm256_set1_ps(1.0f);
  return s;
}

struct QuadV {
  __m256 nw, ne, sw, se;
};

FW_AVX2 QuadV gather_quad(const float* plane, const TapsV& t, int64_t s_h, int64_t s_w) {
  const __m256 zero = _mm256_setzero_ps();
  const __m256i dw = _mm256_set1_epi32(static_cast<int32_t>(s_w));
  const __m256i dh = _mm256_set1_epi32(static_cast<int32_t>(s_h));
  QuadV q;
  q.nw = _mm256_mask_i32gather_ps(zero, plane, t.off, t.m_nw, 4);
  q.ne = _mm256_mask_i32gather_ps(zero, plane, _mm256_add_epi32(t.off, dw), t.m_ne, 4);
  q.sw = _mm256_mask_i32gather_ps(zero, plane, _mm256_add_epi32(t.off, dh), t.m_sw, 4);
  q.se = _mm256_mask_i32gather_ps(zero, plane, _mm256_add_epi32(_mm256_add_epi32(t.off, dh), dw), t.m_se, 4);
  return q;
}

// Two horizontally adjacent floats per lane, (x0, x0 + 1) of one row, as 64-bit gathers:
// half the gathered elements of gather_quad, for images contiguous along x (s_w == 1).
// Returns the left values in *left and the right ones in *right; lanes off in `mask` read 0.
FW_AVX2 void gather_pairs(const float* plane, __m256i off, __m256 mask, __m256* left, __m256* right) {
  const double* base = reinterpret_cast<const double*>(plane);
  const __m256i mi = _mm256_castps_si256(mask);
  const __m256d m_lo = _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(mi)));
  const __m256d m_hi = _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm256_extracti128_si256(mi, 1)));
  __m256 a, b;
  if (_mm256_movemask_ps(mask) == 0xFF) {
    // Every lane loads: eight scalar 64-bit loads beat the two gathers on the CPUs we
    // measured (AMD Zen 4).
    alignas(32) int32_t o[kLanes];
    _mm256_store_si256(reinterpret_cast<__m256i*>(o), off);
    auto pair = [plane](int32_t i) {
      long long v;
      __builtin_memcpy(&v, plane + i, sizeof(v));
      return v;
    };
    a = _mm256_castsi256_ps(_mm256_setr_epi64x(pair(o[0]), pair(o[1]), pair(o[2]), pair(o[3])));
    b = _mm256_castsi256_ps(_mm256_setr_epi64x(pair(o[4]), pair(o[5]), pair(o[6]), pair(o[7])));
  } else {
    const __m256d zero = _mm256_setzero_pd();
    a = _mm256_castpd_ps(_mm256_mask_i32gather_pd(zero, base, _mm256_castsi256_si128(off), m_lo, 4));
    b = _mm256_castpd_ps(_mm256_mask_i32gather_pd(zero, base, _mm256_extracti128_si256(off, 1), m_hi, 4));
  }
  // a = [l0 r0 l1 r1 | l2 r2 l3 r3], b = [l4 r4 l5 r5 | l6 r6 l7 r7]
  const __m256 l = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));  // [l0 l1 l4 l5 | l2 l3 l6 l7]
  const __m256 r = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
  *left = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(l), _MM_SHUFFLE(3, 1, 2, 0)));
  *right = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(r), _MM_SHUFFLE(3, 1, 2, 0)));
}

// gather_quad for s_w == 1: lanes whose two x taps are both inside the row (x0 in
// [0, W - 2]) load each row's pair at once; the others (a sample on the left or right
// edge, one x tap outside) take per-tap gathers, so nothing outside the row is read.
FW_AVX2 QuadV gather_quad_rows(const float* plane, const TapsV& t, int64_t s_h) {
  const __m256 pair = _mm256_and_ps(t.x.v0, t.x.v1);
  QuadV q;
  const __m256i dh = _mm256_set1_epi32(static_cast<int32_t>(s_h));
  gather_pairs(plane, t.off, _mm256_and_ps(pair, t.m_nw), &q.nw, &q.ne);
  gather_pairs(plane, _mm256_add_epi32(t.off, dh), _mm256_and_ps(pair, t.m_sw), &q.sw, &q.se);
  const __m256 edge = _mm256_andnot_ps(pair, _mm256_or_ps(_mm256_or_ps(t.m_nw, t.m_ne), _mm256_or_ps(t.m_sw, t.m_se)));
  if (_mm256_movemask_ps(edge) != 0) {
    const __m256 zero = _mm256_setzero_ps();
    const __m256i dw = _mm256_set1_epi32(1);
    q.nw = _mm256_or_ps(q.nw, _mm256_mask_i32gather_ps(zero, plane, t.off, _mm256_andnot_ps(pair, t.m_nw), 4));
    q.ne = _mm256_or_ps(q.ne, _mm256_mask_i32gather_ps(zero, plane, _mm256_add_epi32(t.off, dw),
                                                       _mm256_andnot_ps(pair, t.m_ne), 4));
    q.sw = _mm256_or_ps(q.sw, _mm256_mask_i32gather_ps(zero, plane, _mm256_add_epi32(t.off, dh),
                                                       _mm256_andnot_ps(pair, t.m_sw), 4));
    q.se = _mm256_or_ps(q.se, _mm256_mask_i32gather_ps(zero, plane, _mm256_add_epi32(_mm256_add_epi32(t.off, dh), dw),
                                                       _mm256_andnot_ps(pair, t.m_se), 4));
  }
  return q;
}

FW_AVX2 QuadV load_quad(const float* plane, const TapsV& t, int64_t s_h, int64_t s_w) {
  return s_w == 1 ? gather_quad_rows(plane, t, s_h) : gather_quad(plane, t, s_h, s_w);
}

FW_AVX2 __m256 interpolate(const QuadV& q, const TapsV& t) {
  __m256 v = _mm256_mul_ps(t.w_nw, q.nw);
  v = _mm256_add_ps(v, _mm256_mul_ps(t.w_ne, q.ne));
  v = _mm256_add_ps(v, _mm256_mul_ps(t.w_sw, q.sw));
  return _mm256_add_ps(v, _mm256_mul_ps(t.w_se, q.se));
}

// The bicubic row kernels (defined below).
FW_AVX2 void forward_row_cubic(const RowArgs& a, float* out, int64_t out_s_c, int64_t out_stride);
FW_AVX2 void backward_row_cubic(const RowArgs& a, const float* grad_out, int64_t go_s_c, int64_t go_stride,
                                const RowGrads& g);

}  // namespace

__attribute__((target("avx2,fma"))) void forward_row_avx2(const RowArgs& a, float* out, int64_t out_s_c,
                                                          int64_t out_stride) {
  if (a.cubic) {
    forward_row_cubic(a, out, out_s_c, out_stride);
    return;
  }
  const bool blend = a.mask.p != nullptr;
  const __m256 one = _mm256_set1_ps(1.0f);
  for (int64_t x = 0; x < a.W; x += kLanes) {
    const Step step = begin_step(a, x);
    const int n = step.n;
    const __m256i lanes = step.lanes;
    const TapsV& t = step.t;
    const __m256 m = step.m;
    for (int64_t c = 0; c < a.C; ++c) {
      __m256 v = interpolate(load_quad(a.image + c * a.s_c, t, a.s_h, a.s_w), t);
      if (blend) {
        const __m256 tex = load_row(a.texture + c * a.tex_s_c, a.tex_stride, x, n, lanes);
        v = _mm256_add_ps(_mm256_mul_ps(m, v), _mm256_mul_ps(_mm256_sub_ps(one, m), tex));
      }
      store_row(out + c * out_s_c, out_stride, x, n, lanes, v);
    }
  }
}

__attribute__((target("avx2,fma"))) void backward_row_avx2(const RowArgs& a, const float* grad_out, int64_t go_s_c,
                                                           int64_t go_stride, const RowGrads& g) {
  if (a.cubic) {
    backward_row_cubic(a, grad_out, go_s_c, go_stride, g);
    return;
  }
  const bool blend = a.mask.p != nullptr;
  const bool need_flow = g.flow_x.p != nullptr;
  const bool need_mask = blend && g.mask.p != nullptr;
  const bool need_values = need_flow || need_mask;
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  alignas(32) int32_t target[kLanes];
  alignas(32) float val[4][kLanes];
  for (int64_t x = 0; x < a.W; x += kLanes) {
    const Step step = begin_step(a, x);
    const int n = step.n;
    const __m256i lanes = step.lanes;
    const TapsV& t = step.t;
    const __m256 m = step.m;
    int bits[4] = {0, 0, 0, 0};
    if (g.image != nullptr) {
      // Offsets into the accumulation buffer (contiguous along x).
      _mm256_store_si256(reinterpret_cast<__m256i*>(target),
                         _mm256_add_epi32(_mm256_mullo_epi32(t.y.i0, _mm256_set1_epi32(static_cast<int32_t>(g.gi_s_h))),
                                          t.x.i0));
      bits[0] = _mm256_movemask_ps(t.m_nw);
      bits[1] = _mm256_movemask_ps(t.m_ne);
      bits[2] = _mm256_movemask_ps(t.m_sw);
      bits[3] = _mm256_movemask_ps(t.m_se);
    }
    const int64_t tap_off[4] = {0, 1, g.gi_s_h, g.gi_s_h + 1};
    const int all_inside = bits[0] & bits[1] & bits[2] & bits[3];
    __m256 gdx = zero, gdy = zero, gmask = zero;
    for (int64_t c = 0; c < a.C; ++c) {
      __m256 go = load_row(grad_out + c * go_s_c, go_stride, x, n, lanes);
      QuadV q{zero, zero, zero, zero};
      if (need_values) q = load_quad(a.image + c * a.s_c, t, a.s_h, a.s_w);
      if (blend) {
        if (g.texture != nullptr) {
          store_row(g.texture + c * g.gt_s_c, g.gt_stride, x, n, lanes, _mm256_mul_ps(go, _mm256_sub_ps(one, m)));
        }
        if (need_mask) {
          const __m256 tex = load_row(a.texture + c * a.tex_s_c, a.tex_stride, x, n, lanes);
          gmask = _mm256_add_ps(gmask, _mm256_mul_ps(go, _mm256_sub_ps(interpolate(q, t), tex)));
        }
        go = _mm256_mul_ps(go, m);
      }
      if (g.image != nullptr) {
        _mm256_store_ps(val[0], _mm256_mul_ps(t.w_nw, go));
        _mm256_store_ps(val[1], _mm256_mul_ps(t.w_ne, go));
        _mm256_store_ps(val[2], _mm256_mul_ps(t.w_sw, go));
        _mm256_store_ps(val[3], _mm256_mul_ps(t.w_se, go));
        // Left taps of every lane, then right taps: with a smooth flow, lane i's right
        // taps are lane i + 1's left ones, and a lane-by-lane order would chain each add
        // on the store just before it. Lanes with a tap outside the image come last.
        float* plane = g.image + c * g.gi_s_c;
        const int64_t below = g.gi_s_h;
        for (int i = 0; i < n; ++i) {
          if (!((all_inside >> i) & 1)) continue;
          float* p = plane + target[i];
          p[0] += val[0][i];
          p[below] += val[2][i];
        }
        for (int i = 0; i < n; ++i) {
          if (!((all_inside >> i) & 1)) continue;
          float* p = plane + target[i];
          p[1] += val[1][i];
          p[below + 1] += val[3][i];
        }
        if (all_inside != (1 << n) - 1) {
          for (int i = 0; i < n; ++i) {
            if ((all_inside >> i) & 1) continue;
            float* p = plane + target[i];
            for (int k = 0; k < 4; ++k) {
              if ((bits[k] >> i) & 1) p[tap_off[k]] += val[k][i];
            }
          }
        }
      }
      if (need_flow) {
        const __m256 d_dx = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(one, t.y.frac), _mm256_sub_ps(q.ne, q.nw)),
                                          _mm256_mul_ps(t.y.frac, _mm256_sub_ps(q.se, q.sw)));
        const __m256 d_dy = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(one, t.x.frac), _mm256_sub_ps(q.sw, q.nw)),
                                          _mm256_mul_ps(t.x.frac, _mm256_sub_ps(q.se, q.ne)));
        gdx = _mm256_add_ps(gdx, _mm256_mul_ps(go, d_dx));
        gdy = _mm256_add_ps(gdy, _mm256_mul_ps(go, d_dy));
      }
    }
    if (need_flow) {
      store_row(g.flow_x.p, g.flow_x.stride, x, n, lanes,
                _mm256_mul_ps(_mm256_mul_ps(gdx, t.x.grad), _mm256_set1_ps(g.flow_scale_x)));
      store_row(g.flow_y.p, g.flow_y.stride, x, n, lanes,
                _mm256_mul_ps(_mm256_mul_ps(gdy, t.y.grad), _mm256_set1_ps(g.flow_scale_y)));
    }
    if (need_mask) store_row(g.mask.p, g.mask.stride, x, n, lanes, gmask);
  }
}

namespace {

// Per-lane copies of a step's taps, for the per-pixel channel loops of the NHWC kernels.
struct LaneTaps {
  alignas(32) float w[4][kLanes];    // nw, ne, sw, se weights
  alignas(32) float fx[kLanes], fy[kLanes], gx[kLanes], gy[kLanes];
  alignas(32) int32_t off[kLanes];   // nw tap offset in the image
  alignas(32) int32_t yi[kLanes], xi[kLanes];
  int bits[4];                       // tap inside the image, per lane
  int all_inside;

  __attribute__((target("avx2,fma"))) void set(const TapsV& t) {
    _mm256_store_ps(w[0], t.w_nw);
    _mm256_store_ps(w[1], t.w_ne);
    _mm256_store_ps(w[2], t.w_sw);
    _mm256_store_ps(w[3], t.w_se);
    _mm256_store_ps(fx, t.x.frac);
    _mm256_store_ps(fy, t.y.frac);
    _mm256_store_ps(gx, t.x.grad);
    _mm256_store_ps(gy, t.y.grad);
    _mm256_store_si256(reinterpret_cast<__m256i*>(off), t.off);
    _mm256_store_si256(reinterpret_cast<__m256i*>(yi), t.y.i0);
    _mm256_store_si256(reinterpret_cast<__m256i*>(xi), t.x.i0);
    bits[0] = _mm256_movemask_ps(t.m_nw);
    bits[1] = _mm256_movemask_ps(t.m_ne);
    bits[2] = _mm256_movemask_ps(t.m_sw);
    bits[3] = _mm256_movemask_ps(t.m_se);
    all_inside = bits[0] & bits[1] & bits[2] & bits[3];
  }
};

// Channels [c0, c0 + k) of one pixel (k <= 4; the rest of the vector is 0).
FW_AVX2 __m128 chan_mask(int k) {
  return _mm_castsi128_ps(_mm_cmpgt_epi32(_mm_set1_epi32(k), _mm_setr_epi32(0, 1, 2, 3)));
}
FW_AVX2 __m128 load_chans(const float* p, int k, __m128 m) {
  return k == 4 ? _mm_loadu_ps(p) : _mm_maskload_ps(p, _mm_castps_si128(m));
}
FW_AVX2 void store_chans(float* p, int k, __m128 v) {
  if (k == 4) {
    _mm_storeu_ps(p, v);
    return;
  }
  alignas(16) float tmp[4];
  _mm_store_ps(tmp, v);
  for (int j = 0; j < k; ++j) p[j] = tmp[j];
}
// A strided run of k channel values (texture rows may have any layout).
FW_AVX2 __m128 load_strided(const float* p, int64_t stride, int k) {
  alignas(16) float tmp[4] = {0, 0, 0, 0};
  for (int j = 0; j < k; ++j) tmp[j] = p[j * stride];
  return _mm_load_ps(tmp);
}
FW_AVX2 void store_strided(float* p, int64_t stride, int k, __m128 v) {
  alignas(16) float tmp[4];
  _mm_store_ps(tmp, v);
  for (int j = 0; j < k; ++j) p[j * stride] = tmp[j];
}

// The four taps of lane i, channels [c0, c0 + k); taps outside the image read 0.
struct Quad4 {
  __m128 nw, ne, sw, se;
};
FW_AVX2 Quad4 load_quad4(const RowArgs& a, const LaneTaps& L, int i, int64_t c0, int k, __m128 m) {
  const float* p = a.image + L.off[i] + c0;
  const int64_t o[4] = {0, a.s_w, a.s_h, a.s_h + a.s_w};
  __m128 v[4];
  if ((L.all_inside >> i) & 1) {
    for (int q = 0; q < 4; ++q) v[q] = load_chans(p + o[q], k, m);
  } else {
    for (int q = 0; q < 4; ++q) v[q] = ((L.bits[q] >> i) & 1) ? load_chans(p + o[q], k, m) : _mm_setzero_ps();
  }
  return Quad4{v[0], v[1], v[2], v[3]};
}

FW_AVX2 __m128 interpolate4(const Quad4& q, const LaneTaps& L, int i) {
  __m128 v = _mm_mul_ps(_mm_set1_ps(L.w[0][i]), q.nw);
  v = _mm_add_ps(v, _mm_mul_ps(_mm_set1_ps(L.w[1][i]), q.ne));
  v = _mm_add_ps(v, _mm_mul_ps(_mm_set1_ps(L.w[2][i]), q.sw));
  return _mm_add_ps(v, _mm_mul_ps(_mm_set1_ps(L.w[3][i]), q.se));
}

FW_AVX2 float hsum(__m128 v) {
  __m128 s = _mm_add_ps(v, _mm_movehl_ps(v, v));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

}  // namespace

// --- bicubic (mode="bicubic"): warp_math.h's CubicAxis / CubicTaps / Patch -------------------
//
// Eight output pixels per step, as the bilinear kernels: the 4 x 4 taps' weights and indices
// once per step, then per channel
//   - NCHW, contiguous along x (s_w == 1): each of a pixel's 4 tap rows is one 4-float load
//     (lanes whose x taps are clamped or outside take their 4 values tap by tap), two pixels
//     per register; the 16 products are summed per pixel with the 2-D weights laid out
//     alike, and three horizontal adds give the eight results;
//   - channels_last (NHWC): per pixel, the 16 taps' channel vectors (4 at a time);
//   - any other strides: masked gathers of the 16 taps.
// The sums run in another order than the scalar path's (and with fused multiply-adds):
// the results agree to float32 rounding. A non-finite coordinate gives NaN weights, so NaN
// out, as in the scalar path; its taps' indices are clamped first, so nothing outside the
// image is read.

namespace {

FW_AVX2 void cubic_weights_v(__m256 t, __m256* w, __m256* dw) {
  const __m256 A = _mm256_set1_ps(-0.75f), one = _mm256_set1_ps(1.0f), two = _mm256_set1_ps(2.0f);
  const __m256 A5 = _mm256_set1_ps(5.0f * -0.75f), A8 = _mm256_set1_ps(8.0f * -0.75f);
  const __m256 A4 = _mm256_set1_ps(4.0f * -0.75f);
  const __m256 B2 = _mm256_set1_ps(-0.75f + 2.0f), B3 = _mm256_set1_ps(-0.75f + 3.0f);
  const __m256 x0 = _mm256_add_ps(t, one), x1 = t, x2 = _mm256_sub_ps(one, t), x3 = _mm256_sub_ps(two, t);
  w[0] = _mm256_fmsub_ps(_mm256_fmadd_ps(_mm256_fmsub_ps(A, x0, A5), x0, A8), x0, A4);
  w[1] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_fmsub_ps(B2, x1, B3), x1), x1, one);
  w[2] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_fmsub_ps(B2, x2, B3), x2), x2, one);
  w[3] = _mm256_fmsub_ps(_mm256_fmadd_ps(_mm256_fmsub_ps(A, x3, A5), x3, A8), x3, A4);
  if (dw != nullptr) {
    const __m256 A3 = _mm256_set1_ps(3.0f * -0.75f), A10 = _mm256_set1_ps(10.0f * -0.75f);
    const __m256 C3 = _mm256_set1_ps(3.0f * (-0.75f + 2.0f)), C2 = _mm256_set1_ps(2.0f * (-0.75f + 3.0f));
    const __m256 neg = _mm256_set1_ps(-0.0f);
    dw[0] = _mm256_fmadd_ps(_mm256_fmsub_ps(A3, x0, A10), x0, A8);
    dw[1] = _mm256_mul_ps(_mm256_fmsub_ps(C3, x1, C2), x1);
    dw[2] = _mm256_xor_ps(_mm256_mul_ps(_mm256_fmsub_ps(C3, x2, C2), x2), neg);
    dw[3] = _mm256_xor_ps(_mm256_fmadd_ps(_mm256_fmsub_ps(A3, x3, A10), x3, A8), neg);
  }
}

// detail::CubicAxis for eight coordinates.
struct CubicAxisV {
  __m256 w[4], dw[4];  // tap weights and d weight / d coordinate
  __m256 grad;         // d coordinate / d flow: 0 on a size-1 axis
  __m256i i[4];        // tap indices clamped into [0, size - 1] (always addressable)
  __m256 v[4];         // tap reads the image (all-ones lanes): every tap for border
  __m256i first;       // tap 0's unclamped index, floor(c) - 1, within [-4, size + 1]
  __m256 interior;     // all four taps inside the image, none clamped
};

__attribute__((always_inline)) FW_AVX2 CubicAxisV make_cubic_axis(__m256 pos, __m256 d, int64_t size, int padding,
                                                                  bool want_dw) {
  CubicAxisV a;
  __m256 c;
  if (size == 1) {
    c = _mm256_mul_ps(d, _mm256_setzero_ps());  // NaN for a non-finite flow, as the scalar path
    a.grad = _mm256_setzero_ps();
  } else {
    c = _mm256_add_ps(pos, d);
    a.grad = _mm256_set1_ps(1.0f);
  }
  const __m256 f = _mm256_floor_ps(c);
  cubic_weights_v(_mm256_sub_ps(c, f), a.w, want_dw ? a.dw : nullptr);
  // floor(c) clamped into [-3, size + 2] (NaN -> -3) before the conversion: every tap keeps
  // its clamp (border) or its validity (zeros), a NaN's taps land on 0 / read nothing.
  const __m256 fc =
      _mm256_min_ps(_mm256_max_ps(f, _mm256_set1_ps(-3.0f)), _mm256_set1_ps(static_cast<float>(size + 2)));
  const __m256i i1 = _mm256_cvttps_epi32(fc);
  const __m256i last = _mm256_set1_epi32(static_cast<int32_t>(size - 1));
  const __m256i zero = _mm256_setzero_si256(), minus1 = _mm256_set1_epi32(-1);
  const __m256 all = _mm256_castsi256_ps(_mm256_cmpeq_epi32(zero, zero));
  a.first = _mm256_add_epi32(i1, minus1);
  for (int k = 0; k < 4; ++k) {
    const __m256i ik = _mm256_add_epi32(i1, _mm256_set1_epi32(k - 1));
    a.i[k] = _mm256_min_epi32(_mm256_max_epi32(ik, zero), last);
    a.v[k] = padding == 0 ? all
                          : _mm256_castsi256_ps(_mm256_andnot_si256(_mm256_cmpgt_epi32(ik, last),
                                                                    _mm256_cmpgt_epi32(ik, minus1)));
  }
  a.interior = _mm256_castsi256_ps(_mm256_andnot_si256(
      _mm256_cmpgt_epi32(_mm256_add_epi32(a.first, _mm256_set1_epi32(3)), last), _mm256_cmpgt_epi32(a.first, minus1)));
  return a;
}

struct CubicStep {
  int n;
  __m256i lanes;
  CubicAxisV x, y;
  __m256 m;
};

__attribute__((always_inline)) FW_AVX2 CubicStep begin_cubic_step(const RowArgs& a, int64_t x, bool want_dw) {
  CubicStep s;
  s.n = a.W - x < kLanes ? static_cast<int>(a.W - x) : kLanes;
  s.lanes = lane_mask(s.n);
  const __m256 dx = load_row(a.dx.p, a.dx.stride, x, s.n, s.lanes);
  const __m256 dy = load_row(a.dy.p, a.dy.stride, x, s.n, s.lanes);
  const __m256 px = _mm256_add_ps(_mm256_set1_ps(static_cast<float>(x)), _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7));
  s.x = make_cubic_axis(px, dx, a.W, a.padding, want_dw);
  s.y = make_cubic_axis(_mm256_set1_ps(static_cast<float>(a.y)), dy, a.H, a.padding, want_dw);
  s.m = a.mask.p != nullptr ? load_row(a.mask.p, a.mask.stride, x, s.n, s.lanes) : _mm256_set1_ps(1.0f);
  return s;
}

// [v0 of lanes j, j + 4 | ...]: four vectors of eight lanes transposed into pairs of
// pixels: out[j] = (v[0..3] of lane j | v[0..3] of lane j + 4).
FW_AVX2 void transpose_pairs(const __m256* v, __m256* out) {
  const __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
  const __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
  out[0] = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  out[1] = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  out[2] = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  out[3] = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
}

// Lane j's value (j < 4) in the low half and lane j + 4's in the high half, four times each.
template <int j>
FW_AVX2 __m256 spread(__m256 v) {
  return _mm256_permute_ps(v, j * 0x55);
}

// The inverse of transpose_pairs' layout for sums: s[j] holds lane j's four terms (low
// half) and lane j + 4's (high half); returns the eight lanes' sums.
FW_AVX2 __m256 sum_pairs(const __m256* s) {
  return _mm256_hadd_ps(_mm256_hadd_ps(s[0], s[1]), _mm256_hadd_ps(s[2], s[3]));
}

// Per-lane data of one step of the NCHW kernels (s_w == 1) for the 4-float row loads.
struct CubicRows {
  alignas(32) int32_t off[4][kLanes];  // tap row r's first tap: ro + xs (fast steps)
  alignas(32) int32_t ro[4][kLanes];   // tap row r's offset (index clamped) * s_h
  alignas(32) int32_t xs[kLanes];      // tap 0's x index (unclamped)
  alignas(32) int32_t xi[4][kLanes];   // the x taps' clamped indices
  alignas(32) int32_t xm[4][kLanes];   // x taps read (zeros), transpose_pairs' layout
  int row_ok[4];                       // lanes whose tap row r reads the image (and live)
  int interior;                        // lanes whose four x taps are inside, unclamped
  bool fast;                           // every lane interior, every row read
  bool border;

  __attribute__((target("avx2,fma"))) void set(const RowArgs& a, const CubicStep& s) {
    const __m256i vsh = _mm256_set1_epi32(static_cast<int32_t>(a.s_h));
    const __m256 lanes = _mm256_castsi256_ps(s.lanes);
    __m256 rows = lanes;
    for (int r = 0; r < 4; ++r) rows = _mm256_and_ps(rows, s.y.v[r]);
    interior = _mm256_movemask_ps(_mm256_and_ps(lanes, s.x.interior));
    fast = (interior & _mm256_movemask_ps(rows)) == 0xFF;
    border = a.padding == 0;
    __m256i ro_v[4];
    for (int r = 0; r < 4; ++r) ro_v[r] = _mm256_mullo_epi32(s.y.i[r], vsh);
    if (fast) {
      for (int r = 0; r < 4; ++r)
        _mm256_store_si256(reinterpret_cast<__m256i*>(off[r]), _mm256_add_epi32(ro_v[r], s.x.first));
      return;
    }
    for (int r = 0; r < 4; ++r) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(ro[r]), ro_v[r]);
      row_ok[r] = _mm256_movemask_ps(_mm256_and_ps(lanes, s.y.v[r]));
      _mm256_store_si256(reinterpret_cast<__m256i*>(xi[r]), s.x.i[r]);
    }
    _mm256_store_si256(reinterpret_cast<__m256i*>(xs), s.x.first);
    if (!border) {
      __m256 xm_v[4];
      transpose_pairs(s.x.v, xm_v);
      for (int j = 0; j < 4; ++j) _mm256_store_si256(reinterpret_cast<__m256i*>(xm[j]), _mm256_castps_si256(xm_v[j]));
    }
  }
};

// Tap row r of lane j: its four x taps' values (taps outside the image read 0).
FW_AVX2 __m128 row_taps(const float* plane, const CubicRows& R, int r, int j) {
  if (!((R.row_ok[r] >> j) & 1)) return _mm_setzero_ps();
  const float* p = plane + R.ro[r][j];
  if ((R.interior >> j) & 1) return _mm_loadu_ps(p + R.xs[j]);
  if (R.border) return _mm_setr_ps(p[R.xi[0][j]], p[R.xi[1][j]], p[R.xi[2][j]], p[R.xi[3][j]]);
  // zeros: the four taps from tap 0 on, those outside the row masked off (never read; the
  // address is formed as an integer, as it may lie before the plane).
  const __m128i m = _mm_load_si128(reinterpret_cast<const __m128i*>(&R.xm[j & 3][(j >> 2) * 4]));
  return _mm_maskload_ps(reinterpret_cast<const float*>(reinterpret_cast<uintptr_t>(p) +
                                                        static_cast<intptr_t>(R.xs[j]) * 4), m);
}

FW_AVX2 __m256 row_pair(const float* plane, const CubicRows& R, int r, int j) {
  return _mm256_set_m128(row_taps(plane, R, r, j + 4), row_taps(plane, R, r, j));
}

// Lanes j and j + 4 of tap row r where every lane is interior (CubicRows::fast).
FW_AVX2 __m256 row_pair_fast(const float* plane, const CubicRows& R, int r, int j) {
  return _mm256_loadu2_m128(plane + R.off[r][j + 4], plane + R.off[r][j]);
}

// The 2-D weights wy[r] * wx[k] in transpose_pairs' layout: W[r][j].
FW_AVX2 void pair_weights(const CubicStep& s, __m256 (*W)[4]) {
  __m256 X[4];
  transpose_pairs(s.x.w, X);
  for (int r = 0; r < 4; ++r) {
    W[r][0] = _mm256_mul_ps(X[0], spread<0>(s.y.w[r]));
    W[r][1] = _mm256_mul_ps(X[1], spread<1>(s.y.w[r]));
    W[r][2] = _mm256_mul_ps(X[2], spread<2>(s.y.w[r]));
    W[r][3] = _mm256_mul_ps(X[3], spread<3>(s.y.w[r]));
  }
}

// Patch::interpolate of one plane for the eight lanes (NCHW, s_w == 1).
FW_AVX2 __m256 cubic_sample_rows(const float* plane, const CubicRows& R, const __m256 (*W)[4]) {
  __m256 S[4];
  if (R.fast) {
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) S[j] = _mm256_mul_ps(W[0][j], row_pair_fast(plane, R, 0, j));
#pragma GCC unroll 4
    for (int r = 1; r < 4; ++r)
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) S[j] = _mm256_fmadd_ps(W[r][j], row_pair_fast(plane, R, r, j), S[j]);
  } else {
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) S[j] = _mm256_mul_ps(W[0][j], row_pair(plane, R, 0, j));
#pragma GCC unroll 4
    for (int r = 1; r < 4; ++r)
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) S[j] = _mm256_fmadd_ps(W[r][j], row_pair(plane, R, r, j), S[j]);
  }
  return sum_pairs(S);
}

// Patch::interpolate of one plane with masked gathers (any strides).
FW_AVX2 __m256 cubic_sample_gather(const float* plane, const CubicStep& s, const __m256i* ro, const __m256i* co) {
  const __m256 lanes = _mm256_castsi256_ps(s.lanes);
  __m256 out = _mm256_setzero_ps();
  for (int r = 0; r < 4; ++r) {
    const __m256 mr = _mm256_and_ps(lanes, s.y.v[r]);
    __m256 row = _mm256_setzero_ps();
    for (int k = 0; k < 4; ++k) {
      const __m256 v = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), plane, _mm256_add_epi32(ro[r], co[k]),
                                                _mm256_and_ps(mr, s.x.v[k]), 4);
      row = _mm256_fmadd_ps(s.x.w[k], v, row);
    }
    out = _mm256_fmadd_ps(s.y.w[r], row, out);
  }
  return out;
}

// The blend with the texture (warp_blend) and the store of one channel's row.
FW_AVX2 void cubic_store(const RowArgs& a, const CubicStep& s, int64_t x, int64_t c, __m256 v, float* out,
                         int64_t out_s_c, int64_t out_stride) {
  if (a.mask.p != nullptr) {
    const __m256 tex = load_row(a.texture + c * a.tex_s_c, a.tex_stride, x, s.n, s.lanes);
    v = _mm256_add_ps(_mm256_mul_ps(s.m, v), _mm256_mul_ps(_mm256_sub_ps(_mm256_set1_ps(1.0f), s.m), tex));
  }
  store_row(out + c * out_s_c, out_stride, x, s.n, s.lanes, v);
}

FW_AVX2 void forward_row_cubic(const RowArgs& a, float* out, int64_t out_s_c, int64_t out_stride) {
  CubicRows R{};
  for (int64_t x = 0; x < a.W; x += kLanes) {
    const CubicStep s = begin_cubic_step(a, x, false);
    if (a.s_w == 1) {
      R.set(a, s);
      __m256 W[4][4];
      pair_weights(s, W);
      for (int64_t c = 0; c < a.C; ++c)
        cubic_store(a, s, x, c, cubic_sample_rows(a.image + c * a.s_c, R, W), out, out_s_c, out_stride);
    } else {
      __m256i ro[4], co[4];
      for (int k = 0; k < 4; ++k) {
        ro[k] = _mm256_mullo_epi32(s.y.i[k], _mm256_set1_epi32(static_cast<int32_t>(a.s_h)));
        co[k] = _mm256_mullo_epi32(s.x.i[k], _mm256_set1_epi32(static_cast<int32_t>(a.s_w)));
      }
      for (int64_t c = 0; c < a.C; ++c)
        cubic_store(a, s, x, c, cubic_sample_gather(a.image + c * a.s_c, s, ro, co), out, out_s_c, out_stride);
    }
  }
}

// Per-lane copies of a step's 16 taps for the NHWC kernels.
struct CubicLanes {
  alignas(32) float w[16][kLanes];      // wy[r] * wx[k], tap 4 r + k
  alignas(32) int32_t ro[4][kLanes];    // row offsets (clamped index * s_h)
  alignas(32) int32_t co[4][kLanes];    // column offsets (clamped index * s_w)
  int valid[16];                        // lanes where tap 4 r + k reads the image
  int all_valid;                        // lanes where all 16 do

  __attribute__((target("avx2,fma"))) void set(const RowArgs& a, const CubicStep& s) {
    all_valid = 0xFF;
    for (int r = 0; r < 4; ++r) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(ro[r]),
                         _mm256_mullo_epi32(s.y.i[r], _mm256_set1_epi32(static_cast<int32_t>(a.s_h))));
      _mm256_store_si256(reinterpret_cast<__m256i*>(co[r]),
                         _mm256_mullo_epi32(s.x.i[r], _mm256_set1_epi32(static_cast<int32_t>(a.s_w))));
      for (int k = 0; k < 4; ++k) {
        _mm256_store_ps(w[4 * r + k], _mm256_mul_ps(s.y.w[r], s.x.w[k]));
        valid[4 * r + k] = _mm256_movemask_ps(_mm256_and_ps(s.y.v[r], s.x.v[k]));
        all_valid &= valid[4 * r + k];
      }
    }
  }
};

// Channels [c0, c0 + k) of lane i's Patch::interpolate.
// max_off: the image's last element (offset of pixel (H - 1, W - 1), channel C - 1).
FW_AVX2 __m128 cubic_sample4(const RowArgs& a, const CubicLanes& L, int i, int64_t c0, int k, __m128 cm,
                             int64_t max_off) {
  const float* img = a.image + c0;
  __m128 acc = _mm_setzero_ps();
  if ((L.all_valid >> i) & 1) {
    // Fewer than 4 channels left: plain 4-float loads where the last tap's 4th float is still
    // inside the image (the surplus lanes are never stored), else masked loads.
    if (k == 4 || int64_t(L.ro[3][i]) + L.co[3][i] + c0 + 3 <= max_off) {
      for (int r = 0; r < 4; ++r) {
        const float* row = img + L.ro[r][i];
        for (int q = 0; q < 4; ++q)
          acc = _mm_fmadd_ps(_mm_set1_ps(L.w[4 * r + q][i]), _mm_loadu_ps(row + L.co[q][i]), acc);
      }
      return acc;
    }
    for (int r = 0; r < 4; ++r) {
      const float* row = img + L.ro[r][i];
      for (int q = 0; q < 4; ++q)
        acc = _mm_fmadd_ps(_mm_set1_ps(L.w[4 * r + q][i]), load_chans(row + L.co[q][i], k, cm), acc);
    }
    return acc;
  }
  for (int r = 0; r < 4; ++r) {
    const float* row = img + L.ro[r][i];
    for (int q = 0; q < 4; ++q) {
      const __m128 wv = _mm_set1_ps(L.w[4 * r + q][i]);
      // A tap outside the image reads 0 (its weight still multiplies it: NaN stays NaN).
      const __m128 v = ((L.valid[4 * r + q] >> i) & 1) ? load_chans(row + L.co[q][i], k, cm) : _mm_setzero_ps();
      acc = _mm_fmadd_ps(wv, v, acc);
    }
  }
  return acc;
}

FW_AVX2 void forward_row_nhwc_cubic(const RowArgs& a, float* out, int64_t out_stride) {
  const bool blend = a.mask.p != nullptr;
  const int64_t max_off = (a.H - 1) * a.s_h + (a.W - 1) * a.s_w + (a.C - 1) * a.s_c;
  CubicLanes L;
  alignas(32) float m[kLanes];
  for (int64_t x = 0; x < a.W; x += kLanes) {
    const CubicStep s = begin_cubic_step(a, x, false);
    L.set(a, s);
    _mm256_store_ps(m, s.m);
    for (int i = 0; i < s.n; ++i) {
      float* o = out + (x + i) * out_stride;
      for (int64_t c0 = 0; c0 < a.C; c0 += 4) {
        const int k = a.C - c0 < 4 ? static_cast<int>(a.C - c0) : 4;
        const __m128 cm = chan_mask(k);
        __m128 v = cubic_sample4(a, L, i, c0, k, cm, max_off);
        if (blend) {
          const __m128 mi = _mm_set1_ps(m[i]);
          const __m128 tex = load_strided(a.texture + c0 * a.tex_s_c + (x + i) * a.tex_stride, a.tex_s_c, k);
          v = _mm_add_ps(_mm_mul_ps(mi, v), _mm_mul_ps(_mm_sub_ps(_mm_set1_ps(1.0f), mi), tex));
        }
        store_chans(o + c0, k, v);
      }
    }
  }
}

}  // namespace

// --- bicubic backward --------------------------------------------------------------------
//
// Per step the forward's taps (with the weights' derivatives), per channel the 16 values
// where the flow or mask gradient needs them (Patch::interpolate and Patch::gradient), and
// the image gradient scattered over the 16 taps in a fixed order: where every lane's taps
// are inside (unclamped), each tap row of a lane is one 4-float add (the accumulation
// buffer is contiguous along x), else tap by tap. Deterministic like the bilinear kernels.

namespace {

// Weights of Patch::gradient in transpose_pairs' layout: DX[r][j] = wy[r] * dwx[k],
// DY[r][j] = dwy[r] * wx[k].
FW_AVX2 void pair_grad_weights(const CubicStep& s, __m256 (*DX)[4], __m256 (*DY)[4]) {
  __m256 X[4], XD[4];
  transpose_pairs(s.x.w, X);
  transpose_pairs(s.x.dw, XD);
  for (int r = 0; r < 4; ++r) {
    DX[r][0] = _mm256_mul_ps(XD[0], spread<0>(s.y.w[r]));
    DX[r][1] = _mm256_mul_ps(XD[1], spread<1>(s.y.w[r]));
    DX[r][2] = _mm256_mul_ps(XD[2], spread<2>(s.y.w[r]));
    DX[r][3] = _mm256_mul_ps(XD[3], spread<3>(s.y.w[r]));
    DY[r][0] = _mm256_mul_ps(X[0], spread<0>(s.y.dw[r]));
    DY[r][1] = _mm256_mul_ps(X[1], spread<1>(s.y.dw[r]));
    DY[r][2] = _mm256_mul_ps(X[2], spread<2>(s.y.dw[r]));
    DY[r][3] = _mm256_mul_ps(X[3], spread<3>(s.y.dw[r]));
  }
}

// One plane's Patch::interpolate (*val) and Patch::gradient (*sx, *sy) for the eight lanes,
// from 4-float tap rows (s_w == 1).
template <bool kFast>
FW_AVX2 void cubic_values_rows(const float* plane, const CubicRows& R, const __m256 (*W)[4], const __m256 (*DX)[4],
                               const __m256 (*DY)[4], __m256* val, __m256* sx, __m256* sy) {
  __m256 S[4], SX[4], SY[4];
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    const __m256 v = kFast ? row_pair_fast(plane, R, 0, j) : row_pair(plane, R, 0, j);
    S[j] = _mm256_mul_ps(W[0][j], v);
    SX[j] = _mm256_mul_ps(DX[0][j], v);
    SY[j] = _mm256_mul_ps(DY[0][j], v);
  }
#pragma GCC unroll 4
  for (int r = 1; r < 4; ++r) {
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      const __m256 v = kFast ? row_pair_fast(plane, R, r, j) : row_pair(plane, R, r, j);
      S[j] = _mm256_fmadd_ps(W[r][j], v, S[j]);
      SX[j] = _mm256_fmadd_ps(DX[r][j], v, SX[j]);
      SY[j] = _mm256_fmadd_ps(DY[r][j], v, SY[j]);
    }
  }
  *val = sum_pairs(S);
  *sx = sum_pairs(SX);
  *sy = sum_pairs(SY);
}

// The same with masked gathers of the 16 taps (any strides).
FW_AVX2 void cubic_values_gather(const float* plane, const CubicStep& s, const __m256i* ro, const __m256i* co,
                                 __m256* val, __m256* sx, __m256* sy) {
  const __m256 lanes = _mm256_castsi256_ps(s.lanes);
  __m256 v0 = _mm256_setzero_ps(), gx = v0, gy = v0;
  for (int r = 0; r < 4; ++r) {
    const __m256 mr = _mm256_and_ps(lanes, s.y.v[r]);
    __m256 row = _mm256_setzero_ps(), drow = _mm256_setzero_ps();
    for (int k = 0; k < 4; ++k) {
      const __m256 v = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), plane, _mm256_add_epi32(ro[r], co[k]),
                                                _mm256_and_ps(mr, s.x.v[k]), 4);
      row = _mm256_fmadd_ps(s.x.w[k], v, row);
      drow = _mm256_fmadd_ps(s.x.dw[k], v, drow);
    }
    v0 = _mm256_fmadd_ps(s.y.w[r], row, v0);
    gx = _mm256_fmadd_ps(s.y.w[r], drow, gx);
    gy = _mm256_fmadd_ps(s.y.dw[r], row, gy);
  }
  *val = v0;
  *sx = gx;
  *sy = gy;
}

// Where one step's image-gradient taps go in the accumulation buffer (contiguous along x,
// row stride gi_s_h).
struct CubicScatter {
  alignas(32) int32_t off[4][kLanes];  // tap row r's first tap (fast steps)
  alignas(32) int32_t ro[4][kLanes];   // tap row r (clamped) * gi_s_h
  alignas(32) int32_t xi[4][kLanes];   // x tap k (clamped)
  int valid[16];                       // lanes where tap 4 r + k reads (and is live)
  bool fast;                           // every lane's 16 taps inside, unclamped

  __attribute__((target("avx2,fma"))) void set(const CubicStep& s, int64_t gi_s_h) {
    const __m256 lanes = _mm256_castsi256_ps(s.lanes);
    __m256 rows = lanes;
    for (int r = 0; r < 4; ++r) rows = _mm256_and_ps(rows, s.y.v[r]);
    const __m256i vs = _mm256_set1_epi32(static_cast<int32_t>(gi_s_h));
    fast = _mm256_movemask_ps(_mm256_and_ps(rows, s.x.interior)) == 0xFF;
    for (int r = 0; r < 4; ++r) {
      const __m256i ro_v = _mm256_mullo_epi32(s.y.i[r], vs);
      if (fast) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(off[r]), _mm256_add_epi32(ro_v, s.x.first));
        continue;
      }
      _mm256_store_si256(reinterpret_cast<__m256i*>(ro[r]), ro_v);
      _mm256_store_si256(reinterpret_cast<__m256i*>(xi[r]), s.x.i[r]);
      const __m256 mr = _mm256_and_ps(lanes, s.y.v[r]);
      for (int k = 0; k < 4; ++k) valid[4 * r + k] = _mm256_movemask_ps(_mm256_and_ps(mr, s.x.v[k]));
    }
  }
};

// Adds the image gradient of one channel: go (the gradient reaching the warped image) times
// the 2-D weights W (transpose_pairs' layout) at the 16 taps of every lane.
FW_AVX2 void cubic_scatter(float* plane, const CubicScatter& G, const __m256 (*W)[4], __m256 go, int n) {
  __m256 g[4];
  g[0] = spread<0>(go);
  g[1] = spread<1>(go);
  g[2] = spread<2>(go);
  g[3] = spread<3>(go);
  if (G.fast) {
    // Lane j's four tap rows, then lane j + 4's, lane by lane pair: each tap row one add.
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
#pragma GCC unroll 4
      for (int r = 0; r < 4; ++r) {
        const __m256 v = _mm256_mul_ps(W[r][j], g[j]);
        float* p = plane + G.off[r][j];
        _mm_storeu_ps(p, _mm_add_ps(_mm_loadu_ps(p), _mm256_castps256_ps128(v)));
        float* q = plane + G.off[r][j + 4];
        _mm_storeu_ps(q, _mm_add_ps(_mm_loadu_ps(q), _mm256_extractf128_ps(v, 1)));
      }
    }
    return;
  }
  alignas(32) float v[4][4][kLanes];  // [r][j]: lane j's 4 taps, then lane j + 4's
  for (int r = 0; r < 4; ++r)
    for (int j = 0; j < 4; ++j) _mm256_store_ps(v[r][j], _mm256_mul_ps(W[r][j], g[j]));
  for (int i = 0; i < n; ++i) {
    const int j = i & 3, h = (i >> 2) * 4;
    for (int r = 0; r < 4; ++r) {
      float* p = plane + G.ro[r][i];
      for (int k = 0; k < 4; ++k)
        if ((G.valid[4 * r + k] >> i) & 1) p[G.xi[k][i]] += v[r][j][h + k];
    }
  }
}

FW_AVX2 void backward_row_cubic(const RowArgs& a, const float* grad_out, int64_t go_s_c, int64_t go_stride,
                                const RowGrads& g) {
  const bool blend = a.mask.p != nullptr;
  const bool need_flow = g.flow_x.p != nullptr;
  const bool need_mask = blend && g.mask.p != nullptr;
  const bool need_values = need_flow || need_mask;
  const bool rows = a.s_w == 1;
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  CubicRows R{};
  CubicScatter G{};
  __m256 W[4][4] = {}, DX[4][4] = {}, DY[4][4] = {};
  __m256i ro[4] = {}, co[4] = {};
  for (int64_t x = 0; x < a.W; x += kLanes) {
    const CubicStep s = begin_cubic_step(a, x, need_values);
    const int n = s.n;
    pair_weights(s, W);
    if (need_values) {
      if (rows) {
        R.set(a, s);
        pair_grad_weights(s, DX, DY);
      } else {
        for (int k = 0; k < 4; ++k) {
          ro[k] = _mm256_mullo_epi32(s.y.i[k], _mm256_set1_epi32(static_cast<int32_t>(a.s_h)));
          co[k] = _mm256_mullo_epi32(s.x.i[k], _mm256_set1_epi32(static_cast<int32_t>(a.s_w)));
        }
      }
    }
    if (g.image != nullptr) G.set(s, g.gi_s_h);
    __m256 gdx = zero, gdy = zero, gmask = zero;
    for (int64_t c = 0; c < a.C; ++c) {
      __m256 go = load_row(grad_out + c * go_s_c, go_stride, x, n, s.lanes);
      __m256 val = zero, sx = zero, sy = zero;
      if (need_values) {
        const float* plane = a.image + c * a.s_c;
        if (!rows) {
          cubic_values_gather(plane, s, ro, co, &val, &sx, &sy);
        } else if (R.fast) {
          cubic_values_rows<true>(plane, R, W, DX, DY, &val, &sx, &sy);
        } else {
          cubic_values_rows<false>(plane, R, W, DX, DY, &val, &sx, &sy);
        }
      }
      if (blend) {
        if (g.texture != nullptr) {
          store_row(g.texture + c * g.gt_s_c, g.gt_stride, x, n, s.lanes, _mm256_mul_ps(go, _mm256_sub_ps(one, s.m)));
        }
        if (need_mask) {
          const __m256 tex = load_row(a.texture + c * a.tex_s_c, a.tex_stride, x, n, s.lanes);
          gmask = _mm256_fmadd_ps(go, _mm256_sub_ps(val, tex), gmask);
        }
        go = _mm256_mul_ps(go, s.m);
      }
      if (g.image != nullptr) cubic_scatter(g.image + c * g.gi_s_c, G, W, go, n);
      if (need_flow) {
        gdx = _mm256_fmadd_ps(go, sx, gdx);
        gdy = _mm256_fmadd_ps(go, sy, gdy);
      }
    }
    if (need_flow) {
      store_row(g.flow_x.p, g.flow_x.stride, x, n, s.lanes,
                _mm256_mul_ps(_mm256_mul_ps(gdx, s.x.grad), _mm256_set1_ps(g.flow_scale_x)));
      store_row(g.flow_y.p, g.flow_y.stride, x, n, s.lanes,
                _mm256_mul_ps(_mm256_mul_ps(gdy, s.y.grad), _mm256_set1_ps(g.flow_scale_y)));
    }
    if (need_mask) store_row(g.mask.p, g.mask.stride, x, n, s.lanes, gmask);
  }
}

// Per-lane weights of Patch::gradient for the NHWC backward.
struct CubicLaneGrads {
  alignas(32) float wx[4][kLanes], wy[4][kLanes], dwx[4][kLanes], dwy[4][kLanes];
  alignas(32) float gx[kLanes], gy[kLanes];
  alignas(32) int32_t gro[4][kLanes];  // accumulation buffer: tap row r (clamped) * gi_s_h
  alignas(32) int32_t gco[4][kLanes];  // x tap k (clamped) * C

  __attribute__((target("avx2,fma"))) void set(const RowArgs& a, const CubicStep& s, int64_t gi_s_h) {
    for (int k = 0; k < 4; ++k) {
      _mm256_store_ps(wx[k], s.x.w[k]);
      _mm256_store_ps(wy[k], s.y.w[k]);
      _mm256_store_ps(dwx[k], s.x.dw[k]);
      _mm256_store_ps(dwy[k], s.y.dw[k]);
      _mm256_store_si256(reinterpret_cast<__m256i*>(gro[k]),
                         _mm256_mullo_epi32(s.y.i[k], _mm256_set1_epi32(static_cast<int32_t>(gi_s_h))));
      _mm256_store_si256(reinterpret_cast<__m256i*>(gco[k]),
                         _mm256_mullo_epi32(s.x.i[k], _mm256_set1_epi32(static_cast<int32_t>(a.C))));
    }
    _mm256_store_ps(gx, s.x.grad);
    _mm256_store_ps(gy, s.y.grad);
  }
};

FW_AVX2 void backward_row_nhwc_cubic(const RowArgs& a, const float* grad_out, int64_t go_stride, const RowGrads& g) {
  const bool blend = a.mask.p != nullptr;
  const int64_t max_off = (a.H - 1) * a.s_h + (a.W - 1) * a.s_w + (a.C - 1) * a.s_c;
  const bool need_flow = g.flow_x.p != nullptr;
  const bool need_mask = blend && g.mask.p != nullptr;
  const bool need_values = need_flow || need_mask;
  const __m128 one = _mm_set1_ps(1.0f);
  CubicLanes L;
  CubicLaneGrads D;
  alignas(32) float m[kLanes];
  for (int64_t x = 0; x < a.W; x += kLanes) {
    const CubicStep s = begin_cubic_step(a, x, need_values);
    L.set(a, s);
    D.set(a, s, g.gi_s_h);
    _mm256_store_ps(m, s.m);
    for (int i = 0; i < s.n; ++i) {
      const int64_t xx = x + i;
      const float* go_px = grad_out + xx * go_stride;
      const __m128 mi = _mm_set1_ps(blend ? m[i] : 1.0f);
      const bool all_valid = (L.all_valid >> i) & 1;
      __m128 gdx = _mm_setzero_ps(), gdy = _mm_setzero_ps(), gmask = _mm_setzero_ps();
      for (int64_t c0 = 0; c0 < a.C; c0 += 4) {
        const int k = a.C - c0 < 4 ? static_cast<int>(a.C - c0) : 4;
        const __m128 cm = chan_mask(k);
        __m128 go = load_chans(go_px + c0, k, cm);
        __m128 val = _mm_setzero_ps(), sx = _mm_setzero_ps(), sy = _mm_setzero_ps();
        if (need_values) {
          const float* img = a.image + c0;
          // As cubic_sample4: plain loads where every tap and its 4th float are inside.
          const bool wide = all_valid && (k == 4 || int64_t(L.ro[3][i]) + L.co[3][i] + c0 + 3 <= max_off);
          for (int r = 0; r < 4; ++r) {
            const float* rowp = img + L.ro[r][i];
            __m128 row = _mm_setzero_ps(), drow = _mm_setzero_ps();
            for (int q = 0; q < 4; ++q) {
              const __m128 v = wide ? _mm_loadu_ps(rowp + L.co[q][i])
                               : (all_valid || ((L.valid[4 * r + q] >> i) & 1)) ? load_chans(rowp + L.co[q][i], k, cm)
                                                                                : _mm_setzero_ps();
              row = _mm_fmadd_ps(_mm_set1_ps(D.wx[q][i]), v, row);
              drow = _mm_fmadd_ps(_mm_set1_ps(D.dwx[q][i]), v, drow);
            }
            val = _mm_fmadd_ps(_mm_set1_ps(D.wy[r][i]), row, val);
            sx = _mm_fmadd_ps(_mm_set1_ps(D.wy[r][i]), drow, sx);
            sy = _mm_fmadd_ps(_mm_set1_ps(D.dwy[r][i]), row, sy);
          }
        }
        if (blend) {
          if (g.texture != nullptr) {
            store_strided(g.texture + c0 * g.gt_s_c + xx * g.gt_stride, g.gt_s_c, k,
                          _mm_mul_ps(go, _mm_sub_ps(one, mi)));
          }
          if (need_mask) {
            const __m128 tex = load_strided(a.texture + c0 * a.tex_s_c + xx * a.tex_stride, a.tex_s_c, k);
            gmask = _mm_add_ps(gmask, _mm_mul_ps(go, _mm_sub_ps(val, tex)));
          }
          go = _mm_mul_ps(go, mi);
        }
        if (g.image != nullptr) {
          float* gi = g.image + c0;
          for (int r = 0; r < 4; ++r) {
            for (int q = 0; q < 4; ++q) {
              if (!all_valid && !((L.valid[4 * r + q] >> i) & 1)) continue;
              float* p = gi + D.gro[r][i] + D.gco[q][i];
              store_chans(p, k, _mm_add_ps(load_chans(p, k, cm), _mm_mul_ps(_mm_set1_ps(L.w[4 * r + q][i]), go)));
            }
          }
        }
        if (need_flow) {
          gdx = _mm_add_ps(gdx, _mm_mul_ps(go, sx));
          gdy = _mm_add_ps(gdy, _mm_mul_ps(go, sy));
        }
      }
      if (need_flow) {
        g.flow_x.p[xx * g.flow_x.stride] = hsum(gdx) * D.gx[i] * g.flow_scale_x;
        g.flow_y.p[xx * g.flow_y.stride] = hsum(gdy) * D.gy[i] * g.flow_scale_y;
      }
      if (need_mask) g.mask.p[xx * g.mask.stride] = hsum(gmask);
    }
  }
}

}  // namespace

__attribute__((target("avx2,fma"))) void forward_row_nhwc_avx2(const RowArgs& a, float* out, int64_t out_stride) {
  if (a.cubic) {
    forward_row_nhwc_cubic(a, out, out_stride);
    return;
  }
  const bool blend = a.mask.p != nullptr;
  LaneTaps L;
  alignas(32) float m[kLanes];
  for (int64_t x = 0; x < a.W; x += kLanes) {
    const Step step = begin_step(a, x);
    const int n = step.n;
    L.set(step.t);
    _mm256_store_ps(m, step.m);
    for (int i = 0; i < n; ++i) {
      float* o = out + (x + i) * out_stride;
      for (int64_t c0 = 0; c0 < a.C; c0 += 4) {
        const int k = a.C - c0 < 4 ? static_cast<int>(a.C - c0) : 4;
        const __m128 cm = chan_mask(k);
        __m128 v = interpolate4(load_quad4(a, L, i, c0, k, cm), L, i);
        if (blend) {
          const __m128 mi = _mm_set1_ps(m[i]);
          const __m128 tex = load_strided(a.texture + c0 * a.tex_s_c + (x + i) * a.tex_stride, a.tex_s_c, k);
          v = _mm_add_ps(_mm_mul_ps(mi, v), _mm_mul_ps(_mm_sub_ps(_mm_set1_ps(1.0f), mi), tex));
        }
        store_chans(o + c0, k, v);
      }
    }
  }
}

__attribute__((target("avx2,fma"))) void backward_row_nhwc_avx2(const RowArgs& a, const float* grad_out,
                                                                int64_t go_stride, const RowGrads& g) {
  if (a.cubic) {
    backward_row_nhwc_cubic(a, grad_out, go_stride, g);
    return;
  }
  const bool blend = a.mask.p != nullptr;
  const bool need_flow = g.flow_x.p != nullptr;
  const bool need_mask = blend && g.mask.p != nullptr;
  const bool need_values = need_flow || need_mask;
  const __m128 one = _mm_set1_ps(1.0f);
  LaneTaps L;
  alignas(32) float m[kLanes];
  for (int64_t x = 0; x < a.W; x += kLanes) {
    const Step step = begin_step(a, x);
    const int n = step.n;
    L.set(step.t);
    _mm256_store_ps(m, step.m);
    for (int i = 0; i < n; ++i) {
      const int64_t xx = x + i;
      const float* go_px = grad_out + xx * go_stride;
      // Accumulation-buffer address of the nw tap (meaningful where a tap is inside).
      float* gi = g.image != nullptr ? g.image + L.yi[i] * g.gi_s_h + L.xi[i] * a.C : nullptr;
      const int64_t gi_off[4] = {0, a.C, g.gi_s_h, g.gi_s_h + a.C};
      const __m128 mi = _mm_set1_ps(blend ? m[i] : 1.0f);
      __m128 gdx = _mm_setzero_ps(), gdy = _mm_setzero_ps(), gmask = _mm_setzero_ps();
      for (int64_t c0 = 0; c0 < a.C; c0 += 4) {
        const int k = a.C - c0 < 4 ? static_cast<int>(a.C - c0) : 4;
        const __m128 cm = chan_mask(k);
        __m128 go = load_chans(go_px + c0, k, cm);
        Quad4 q{_mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps()};
        if (need_values) q = load_quad4(a, L, i, c0, k, cm);
        if (blend) {
          if (g.texture != nullptr) {
            store_strided(g.texture + c0 * g.gt_s_c + xx * g.gt_stride, g.gt_s_c, k, _mm_mul_ps(go, _mm_sub_ps(one, mi)));
          }
          if (need_mask) {
            const __m128 tex = load_strided(a.texture + c0 * a.tex_s_c + xx * a.tex_stride, a.tex_s_c, k);
            gmask = _mm_add_ps(gmask, _mm_mul_ps(go, _mm_sub_ps(interpolate4(q, L, i), tex)));
          }
          go = _mm_mul_ps(go, mi);
        }
        if (gi != nullptr) {
          for (int t = 0; t < 4; ++t) {
            if (!((L.bits[t] >> i) & 1)) continue;
            float* p = gi + gi_off[t] + c0;
            store_chans(p, k, _mm_add_ps(load_chans(p, k, cm), _mm_mul_ps(_mm_set1_ps(L.w[t][i]), go)));
          }
        }
        if (need_flow) {
          const __m128 fx = _mm_set1_ps(L.fx[i]), fy = _mm_set1_ps(L.fy[i]);
          const __m128 d_dx = _mm_add_ps(_mm_mul_ps(_mm_sub_ps(one, fy), _mm_sub_ps(q.ne, q.nw)),
                                         _mm_mul_ps(fy, _mm_sub_ps(q.se, q.sw)));
          const __m128 d_dy = _mm_add_ps(_mm_mul_ps(_mm_sub_ps(one, fx), _mm_sub_ps(q.sw, q.nw)),
                                         _mm_mul_ps(fx, _mm_sub_ps(q.se, q.ne)));
          gdx = _mm_add_ps(gdx, _mm_mul_ps(go, d_dx));
          gdy = _mm_add_ps(gdy, _mm_mul_ps(go, d_dy));
        }
      }
      if (need_flow) {
        g.flow_x.p[xx * g.flow_x.stride] = hsum(gdx) * L.gx[i] * g.flow_scale_x;
        g.flow_y.p[xx * g.flow_y.stride] = hsum(gdy) * L.gy[i] * g.flow_scale_y;
      }
      if (need_mask) g.mask.p[xx * g.mask.stride] = hsum(gmask);
    }
  }
}

}  // namespace cpu
}  // namespace fastwarp
