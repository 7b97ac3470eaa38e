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

}  // namespace

__attribute__((target("avx2,fma"))) void forward_row_avx2(const RowArgs& a, float* out, int64_t out_s_c,
                                                          int64_t out_stride) {
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

__attribute__((target("avx2,fma"))) void forward_row_nhwc_avx2(const RowArgs& a, float* out, int64_t out_stride) {
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
