// Host emulation of fastwarp's tuned CUDA kernels (csrc/cuda/warp_fast.cuh), for
// tests/test_cuda_host.py, which compiles this file with the host C++ compiler and calls it
// through ctypes. Every per-pixel, per-tile and per-window computation comes from
// csrc/cuda/warp_fast_math.h and csrc/warp_math.h, the headers the kernels use; only what
// the CUDA execution model provides is emulated here: the grid (a loop over blocks, in a given
// order), the threads of a block (a loop, in a shuffled order), the block's warp-shuffle
// reduction, shared memory (a vector), barriers (the phases of the loop) and atomics (plain
// adds; global ones applied at the end in a shuffled order, any interleaving of the blocks'
// atomics being possible on the device).
//
// C ABI only (no torch headers): it builds in a few seconds. Storage types: float, double and,
// where the compiler has it, _Float16 (the layout of CUDA's __half, float math).
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../csrc/cuda/warp_fast_math.h"

using namespace fastwarp::detail;

namespace {

enum DType : int { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2 };

Strides4 strides4(const int64_t* s) { return Strides4{s[0], s[1], s[2], s[3]}; }
Strides4i strides4i(const int32_t* s) { return Strides4i{s[0], s[1], s[2], s[3]}; }

// splitmix64: the permutations of the emulated execution order.
struct Rng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  template <typename T>
  void shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[next() % i]);
  }
};

struct Grid {
  TileShape shape;
  int32_t tiles_x, tiles_y;
  int64_t blocks;
};

Grid grid_of(int64_t N, int64_t H, int64_t W) {
  Grid g;
  g.shape = tile_shape(H, W);
  g.tiles_x = static_cast<int32_t>((W + g.shape.tw - 1) / g.shape.tw);
  g.tiles_y = static_cast<int32_t>((H + g.shape.th - 1) / g.shape.th);
  g.blocks = N * g.tiles_x * g.tiles_y;
  return g;
}

// The blocks in `order` (a permutation of 0..blocks-1), or 0..blocks-1 when null.
std::vector<uint32_t> block_order(const uint32_t* order, int64_t blocks) {
  std::vector<uint32_t> v(static_cast<size_t>(blocks));
  for (int64_t b = 0; b < blocks; ++b) v[b] = order != nullptr ? order[b] : static_cast<uint32_t>(b);
  return v;
}

// ---- tiled forward -------------------------------------------------------------------

template <typename scalar_t, typename acc_t, bool kBlend, int kC, int kVec>
void forward_grid(const TiledArgs<scalar_t>& a, int64_t N, const uint32_t* order, int64_t* pixels_done) {
  const Grid g = grid_of(N, a.H, a.W);
  for (uint32_t b : block_order(order, g.blocks)) {
    const TilePos tp = tile_position(b, g.tiles_x, g.tiles_y, g.shape.tw, g.shape.th);
    for (int32_t ty = 0; ty < g.shape.th; ++ty) {
      for (int32_t tx = 0; tx < g.shape.tw; ++tx) {
        const int32_t x = tp.x0 + tx, y = tp.y0 + ty;
        if (x >= a.W || y >= a.H) continue;  // the kernel's early return
        tiled_forward_pixel<scalar_t, acc_t, kBlend, kC, kVec>(a, tp.n, y, x);
        ++*pixels_done;
      }
    }
  }
}

template <typename scalar_t, typename acc_t, bool kBlend>
int forward_dispatch_c(const TiledArgs<scalar_t>& a, int kC, int kVec, int64_t N, const uint32_t* order,
                       int64_t* done) {
  if (kVec == 4) {
    if constexpr (sizeof(scalar_t) <= 4) {
      if (kC == 4) return forward_grid<scalar_t, acc_t, kBlend, 4, 4>(a, N, order, done), 0;
      if (kC == 0) return forward_grid<scalar_t, acc_t, kBlend, 0, 4>(a, N, order, done), 0;
    }
    return -1;
  }
  if (kVec != 1) return -1;
  switch (kC) {
    case 0: return forward_grid<scalar_t, acc_t, kBlend, 0, 1>(a, N, order, done), 0;
    case 1: return forward_grid<scalar_t, acc_t, kBlend, 1, 1>(a, N, order, done), 0;
    case 3: return forward_grid<scalar_t, acc_t, kBlend, 3, 1>(a, N, order, done), 0;
    case 4: return forward_grid<scalar_t, acc_t, kBlend, 4, 1>(a, N, order, done), 0;
    default: return -1;
  }
}

template <typename scalar_t, typename acc_t>
int forward_typed(int blend, int kC, int kVec, const void* image, const int32_t* s_image, const void* flow,
                  const int32_t* s_flow, const void* texture, const int32_t* s_texture, const void* mask,
                  const int32_t* s_mask, void* out, const int32_t* s_out, int32_t N, int32_t C, int32_t H, int32_t W,
                  int32_t h, int32_t w, int padding, const uint32_t* order, int64_t* done) {
  TiledArgs<scalar_t> a{};
  a.image = static_cast<const scalar_t*>(image);
  a.s_image = strides4i(s_image);
  a.flow = static_cast<const scalar_t*>(flow);
  a.s_flow = strides4i(s_flow);
  if (blend) {
    a.texture = static_cast<const scalar_t*>(texture);
    a.s_texture = strides4i(s_texture);
    a.mask = static_cast<const scalar_t*>(mask);
    a.s_mask = strides4i(s_mask);
  }
  a.out = static_cast<scalar_t*>(out);
  a.s_out = strides4i(s_out);
  a.C = C;
  a.H = H;
  a.W = W;
  a.h = h;
  a.w = w;
  const Grid g = grid_of(N, H, W);
  a.tiles_x = g.tiles_x;
  a.tiles_y = g.tiles_y;
  a.padding = padding ? Padding::Zeros : Padding::Border;
  return blend ? forward_dispatch_c<scalar_t, acc_t, true>(a, kC, kVec, N, order, done)
               : forward_dispatch_c<scalar_t, acc_t, false>(a, kC, kVec, N, order, done);
}

// ---- tiled backward ------------------------------------------------------------------

// Counters of one emulated backward: taps added in a window, taps sent to global memory, the
// window flush's global adds, and adds (of either kind) that would have left their buffer.
struct Stats {
  int64_t window_adds, global_adds, flush_adds, stray_adds;
};

// The adds of SharedScatter and flush_window_element: a word inside the current block's
// window is added at once (shared memory of one block); any other address must be an element
// of the accumulation buffer [acc, acc + acc_extent] and is deferred (a global atomic that
// any other block's atomics may precede or follow).
template <typename word>
struct HostAdder {
  word* win_begin;
  word* win_end;
  word* acc;
  int64_t acc_extent;
  std::vector<std::pair<word*, word>>* deferred;
  Stats* stats;
  bool flushing;

  void operator()(word* p, word v) const {
    if (p >= win_begin && p < win_end) {
      *p += v;
      ++stats->window_adds;
      return;
    }
    if (p < acc || p > acc + acc_extent) {
      ++stats->stray_adds;
      return;
    }
    deferred->emplace_back(p, v);
    ++(flushing ? stats->flush_adds : stats->global_adds);
  }
};

// Wraps SharedScatter: also adds each valid value, in double, into `exact` (the [N, C, H, W]
// contiguous float64 sum of the values scattered onto each image element) and counts them.
template <typename acc_t, typename Inner>
struct ShadowScatter {
  Inner inner;
  double* exact;
  int64_t* count;
  int64_t C, H, W;

  void operator()(int64_t n, int64_t c, int tap, bool valid, int64_t ty, int64_t tx, acc_t v) const {
    if (valid && exact != nullptr) {
      const int64_t i = ((n * C + c) * H + ty) * W + tx;
      exact[i] += static_cast<double>(v);
      count[i] += 1;
    }
    inner(n, c, tap, valid, ty, tx, v);
  }
};

// The kernel's warp-shuffle sum of one warp's 32 values as lane 0 ends up with it.
float warp_sum(const float* v) {
  float r[32];
  memcpy(r, v, sizeof r);
  for (int off = 16; off > 0; off >>= 1) {
    for (int lane = 0; lane < 32; ++lane) r[lane] += lane + off < 32 ? r[lane + off] : r[lane];
  }
  return r[0];
}

template <typename scalar_t, typename acc_t, bool kBlend, typename Accum>
void backward_grid(const WarpInputs<scalar_t>& in, const scalar_t* go, const Strides4& s_go,
                   const WarpGrads<scalar_t, acc_t>& g, typename Accum::word* acc, const Strides4& s_acc,
                   int64_t acc_extent, Accum accum, bool window, bool acc_channels_last, const uint32_t* order,
                   uint64_t seed, int64_t* origins, double* exact, int64_t* count, Stats* stats) {
  using word = typename Accum::word;
  constexpr int kWarps = kTileThreads / 32;
  const Grid grid = grid_of(in.N, in.H, in.W);
  const int tw = grid.shape.tw, th = grid.shape.th;
  const WindowParams wp = window && acc != nullptr
                              ? window_params(tw, th, in.H, in.W, in.C, static_cast<int64_t>(sizeof(word)),
                                              acc_channels_last)
                              : WindowParams{0, 0, false, false};
  std::vector<std::pair<word*, word>> deferred;
  Rng rng{seed};
  std::vector<int> threads(kTileThreads);
  const int32_t area = wp.wh * wp.ww;
  const int32_t win_size = static_cast<int32_t>(in.C) * area;
  std::vector<word> win(static_cast<size_t>(win_size > 0 ? win_size : 1));
  HostAdder<word> add{win.data(), win.data() + win_size, acc, acc_extent, &deferred, stats, false};

  for (uint32_t b : block_order(order, grid.blocks)) {
    const TilePos tp = tile_position(b, grid.tiles_x, grid.tiles_y, tw, th);
    const int64_t n = tp.n;
    SharedScatter<acc_t, Accum, HostAdder<word>> scatter{accum, acc, s_acc, nullptr, 0, 0, 0, 0, add};
    if (wp.enabled) {
      float sums[3][kWarps];
      for (int warp = 0; warp < kWarps; ++warp) {
        float lanes[3][32];
        for (int lane = 0; lane < 32; ++lane) {
          const int tid = warp * 32 + lane;
          const int64_t y = tp.y0 + tid / tw, x = tp.x0 + tid % tw;
          float dx = 0.0f, dy = 0.0f, cnt = 0.0f;
          if (y < in.H && x < in.W) {
            window_displacement<scalar_t, acc_t>(in, n, y, x, &dx, &dy);
            cnt = 1.0f;
          }
          lanes[0][lane] = dx;
          lanes[1][lane] = dy;
          lanes[2][lane] = cnt;
        }
        for (int k = 0; k < 3; ++k) sums[k][warp] = warp_sum(lanes[k]);
      }
      std::fill(win.begin(), win.end(), word(0));
      float mdx, mdy;
      tile_mean_flow(sums, &mdx, &mdy);
      scatter.window = win.data();
      scatter.wy0 = window_origin(tp.y0, th, mdy, wp.wh, in.H);
      scatter.wx0 = window_origin(tp.x0, tw, mdx, wp.ww, in.W);
      scatter.wh = wp.wh;
      scatter.ww = wp.ww;
      if (origins != nullptr) {
        origins[2 * b] = scatter.wy0;
        origins[2 * b + 1] = scatter.wx0;
      }
    }
    for (int i = 0; i < kTileThreads; ++i) threads[i] = i;
    if (seed != 0) rng.shuffle(threads);
    ShadowScatter<acc_t, SharedScatter<acc_t, Accum, HostAdder<word>>> shadow{scatter, exact, count,
                                                                                in.C, in.H, in.W};
    for (int tid : threads) {
      const int64_t y = tp.y0 + tid / tw, x = tp.x0 + tid % tw;
      if (y < in.H && x < in.W) warp_backward_pixel<scalar_t, acc_t, kBlend>(in, go, s_go, g, n, y, x, shadow);
    }
    if (wp.enabled) {
      HostAdder<word> flush_add = add;
      flush_add.flushing = true;
      std::vector<int32_t> elems(static_cast<size_t>(win_size));
      for (int32_t e = 0; e < win_size; ++e) elems[e] = e;
      if (seed != 0) rng.shuffle(elems);
      for (int32_t e : elems) {
        flush_window_element(win.data(), e, static_cast<int32_t>(in.C), wp, acc + n * s_acc.n, s_acc, scatter.wy0,
                             scatter.wx0, flush_add);
      }
    }
  }
  if (seed != 0) rng.shuffle(deferred);
  for (const auto& d : deferred) *d.first += d.second;
}

template <typename scalar_t, typename acc_t>
int backward_typed(int blend, int fixed, int exponent, int window, int acc_channels_last, const void* image,
                   const int64_t* s_image, const void* flow, const int64_t* s_flow, const void* texture,
                   const int64_t* s_texture, const void* mask, const int64_t* s_mask, const void* grad_out,
                   const int64_t* s_go, int64_t N, int64_t C, int64_t H, int64_t W, int64_t h, int64_t w, int padding,
                   void* acc, const int64_t* s_acc, int64_t acc_extent, void* grad_flow, const int64_t* s_gflow,
                   void* grad_texture, const int64_t* s_gtex, void* grad_mask, const int64_t* s_gmask,
                   const uint32_t* order, uint64_t seed, int64_t* origins, double* exact, int64_t* count,
                   int64_t* stats_out) {
  WarpInputs<scalar_t> in{};
  in.image = static_cast<const scalar_t*>(image);
  in.s_image = strides4(s_image);
  in.flow = static_cast<const scalar_t*>(flow);
  in.s_flow = strides4(s_flow);
  if (blend) {
    in.texture = static_cast<const scalar_t*>(texture);
    in.s_texture = strides4(s_texture);
    in.mask = static_cast<const scalar_t*>(mask);
    in.s_mask = strides4(s_mask);
  }
  in.N = N;
  in.C = C;
  in.H = H;
  in.W = W;
  in.h = h;
  in.w = w;
  in.padding = padding ? Padding::Zeros : Padding::Border;
  WarpGrads<scalar_t, acc_t> g{};
  // As the kernel: g.image is only tested for null; the scatter writes `acc`.
  g.image = static_cast<acc_t*>(acc);
  if (acc != nullptr) g.s_image = strides4(s_acc);
  g.flow = static_cast<scalar_t*>(grad_flow);
  if (grad_flow != nullptr) g.s_flow = strides4(s_gflow);
  g.texture = static_cast<scalar_t*>(grad_texture);
  if (grad_texture != nullptr) g.s_texture = strides4(s_gtex);
  g.mask = static_cast<scalar_t*>(grad_mask);
  if (grad_mask != nullptr) g.s_mask = strides4(s_gmask);
  const scalar_t* go = static_cast<const scalar_t*>(grad_out);
  const Strides4 sgo = strides4(s_go);
  const Strides4 sacc = acc != nullptr ? strides4(s_acc) : Strides4{};
  Stats stats{0, 0, 0, 0};
  if (fixed) {
    if constexpr (!std::is_same_v<acc_t, float>) {
      return -1;  // FixedAccum is float only
    } else {
      const FixedAccum accum{ldexpf(1.0f, exponent)};
      auto* q = static_cast<unsigned long long*>(acc);
      if (blend) {
        backward_grid<scalar_t, acc_t, true>(in, go, sgo, g, q, sacc, acc_extent, accum, window, acc_channels_last,
                                             order, seed, origins, exact, count, &stats);
      } else {
        backward_grid<scalar_t, acc_t, false>(in, go, sgo, g, q, sacc, acc_extent, accum, window, acc_channels_last,
                                              order, seed, origins, exact, count, &stats);
      }
    }
  } else {
    auto* a = static_cast<acc_t*>(acc);
    if (blend) {
      backward_grid<scalar_t, acc_t, true>(in, go, sgo, g, a, sacc, acc_extent, FloatAccum<acc_t>{}, window,
                                           acc_channels_last, order, seed, origins, exact, count, &stats);
    } else {
      backward_grid<scalar_t, acc_t, false>(in, go, sgo, g, a, sacc, acc_extent, FloatAccum<acc_t>{}, window,
                                            acc_channels_last, order, seed, origins, exact, count, &stats);
    }
  }
  stats_out[0] = stats.window_adds;
  stats_out[1] = stats.global_adds;
  stats_out[2] = stats.flush_adds;
  stats_out[3] = stats.stray_adds;
  return 0;
}

// ---- upsampling adjoint --------------------------------------------------------------

template <typename scalar_t, typename acc_t>
void adjoint_typed(int table, const void* grad_hi, const int64_t* s_hi_, void* grad_lo, const int64_t* s_lo_,
                   int64_t N, int64_t K, int64_t h, int64_t w, int64_t H, int64_t W) {
  const auto* gh = static_cast<const scalar_t*>(grad_hi);
  auto* gl = static_cast<scalar_t*>(grad_lo);
  const Strides4 s_hi = strides4(s_hi_), s_lo = strides4(s_lo_);
  // One block's shared table: H row entries, then W column entries (tab_x = tab_y + H).
  std::vector<UpTab<acc_t>> tab(static_cast<size_t>(H + W));
  for (int64_t i = 0; i < H; ++i) tab[i] = UpTab<acc_t>::make(i, h, H);
  for (int64_t i = 0; i < W; ++i) tab[H + i] = UpTab<acc_t>::make(i, w, W);
  const int64_t total = N * K * h * w;
  for (int64_t e = 0; e < total; ++e) {  // the kernel's element order and unravel
    const int64_t j = e % w, i = (e / w) % h, k = (e / (w * h)) % K, n = e / (w * h * K);
    const scalar_t* g = gh + n * s_hi.n + k * s_hi.c;
    const acc_t sum = table ? upsample_adjoint_table_at<scalar_t, acc_t>(g, s_hi.h, s_hi.w, i, j, h, w, H, W,
                                                                         tab.data(), tab.data() + H)
                            : upsample_adjoint_at<scalar_t, acc_t>(g, s_hi.h, s_hi.w, i, j, h, w, H, W);
    gl[n * s_lo.n + k * s_lo.c + i * s_lo.h + j * s_lo.w] = static_cast<scalar_t>(sum);
  }
}

#if defined(__FLT16_MAX__)
#define FW_HAS_HALF 1
#else
#define FW_HAS_HALF 0
#endif

}  // namespace

#define FW_DISPATCH(dtype, FN, ...)                                                  \
  do {                                                                               \
    if ((dtype) == kFloat32) return FN<float, float>(__VA_ARGS__);                   \
    if ((dtype) == kFloat64) return FN<double, double>(__VA_ARGS__);                 \
    if (FW_HAS_HALF && (dtype) == kFloat16) return FN<fw_half_t, float>(__VA_ARGS__); \
    return -1;                                                                       \
  } while (0)

#if FW_HAS_HALF
using fw_half_t = _Float16;
#else
using fw_half_t = float;  // never dispatched to
#endif

extern "C" {

int fw_has_half() { return FW_HAS_HALF; }
int fw_tile_threads() { return kTileThreads; }
int64_t fw_window_halo() { return kWindowHalo; }
int64_t fw_max_window_bytes() { return kMaxWindowBytes; }
int fw_uptab_bytes(int dtype) { return dtype == kFloat64 ? sizeof(UpTab<double>) : sizeof(UpTab<float>); }

void fw_tile_shape(int64_t H, int64_t W, int32_t* tw_th) {
  const TileShape t = tile_shape(H, W);
  tw_th[0] = t.tw;
  tw_th[1] = t.th;
}

void fw_tile_position(uint32_t block, int32_t tiles_x, int32_t tiles_y, uint32_t tw, uint32_t th, int32_t* n_y0_x0) {
  const TilePos p = tile_position(block, tiles_x, tiles_y, tw, th);
  n_y0_x0[0] = p.n;
  n_y0_x0[1] = p.y0;
  n_y0_x0[2] = p.x0;
}

void fw_window_params(int32_t tw, int32_t th, int64_t H, int64_t W, int64_t C, int64_t word_bytes, int channels_last,
                      int32_t* wh_ww_enabled) {
  const WindowParams wp = window_params(tw, th, H, W, C, word_bytes, channels_last != 0);
  wh_ww_enabled[0] = wp.wh;
  wh_ww_enabled[1] = wp.ww;
  wh_ww_enabled[2] = wp.enabled;
}

int64_t fw_window_origin(int64_t tile0, int64_t tile_len, float mean_disp, int64_t win_len, int64_t size) {
  return window_origin(tile0, tile_len, mean_disp, win_len, size);
}

int fw_window_slot(int64_t c, int64_t ty, int64_t tx, int64_t wy0, int64_t wx0, int64_t wh, int64_t ww,
                   int64_t* slot) {
  return window_slot(c, ty, tx, wy0, wx0, wh, ww, slot);
}

void fw_window_flush_element(int32_t e, int32_t C, int32_t wh, int32_t ww, int channels_last, int32_t* c_ry_rx) {
  const WindowParams wp{wh, ww, true, channels_last != 0};
  window_flush_element(e, C, wp, c_ry_rx, c_ry_rx + 1, c_ry_rx + 2);
}

int fw_choose_fixed_point_scale(float max_abs_value, float max_abs_mask, int64_t pixels, int* exponent) {
  const FixedPointScale s = choose_fixed_point_scale(max_abs_value, max_abs_mask, pixels);
  *exponent = s.exponent;
  return s.ok;
}

void fw_fixed_point_encode(const float* v, int64_t count, float scale, uint64_t* q) {
  const FixedAccum accum{scale};
  for (int64_t i = 0; i < count; ++i) q[i] = accum.encode(v[i]);
}

void fw_fixed_point_decode(const uint64_t* q, int64_t count, float inv_scale, float* out) {
  for (int64_t i = 0; i < count; ++i) out[i] = fixed_point_decode(q[i], inv_scale);
}

int fw_uptab(int dtype, int64_t dst, int64_t in, int64_t out, int32_t* i0_i1, double* l0_l1) {
  if (dtype == kFloat64) {
    const UpTab<double> t = UpTab<double>::make(dst, in, out);
    i0_i1[0] = t.i0, i0_i1[1] = t.i1, l0_l1[0] = t.l0, l0_l1[1] = t.l1;
  } else {
    const UpTab<float> t = UpTab<float>::make(dst, in, out);
    i0_i1[0] = t.i0, i0_i1[1] = t.i1, l0_l1[0] = t.l0, l0_l1[1] = t.l1;
  }
  return 0;
}

// The tiled forward over its whole grid. Strides are int32 (TiledArgs); `order` (nullable)
// the block order; *pixels_done counts the pixels the threads computed.
int fw_forward_tiled(int dtype, int blend, int kC, int kVec, const void* image, const int32_t* s_image,
                     const void* flow, const int32_t* s_flow, const void* texture, const int32_t* s_texture,
                     const void* mask, const int32_t* s_mask, void* out, const int32_t* s_out, int32_t N, int32_t C,
                     int32_t H, int32_t W, int32_t h, int32_t w, int padding, const uint32_t* order,
                     int64_t* pixels_done) {
  FW_DISPATCH(dtype, forward_typed, blend, kC, kVec, image, s_image, flow, s_flow, texture, s_texture, mask, s_mask,
              out, s_out, N, C, H, W, h, w, padding, order, pixels_done);
}

// The tiled backward over its whole grid (warp_backward_tiled_kernel): FloatAccum (fixed = 0,
// acc a float/double buffer) or FixedAccum with scale 2^exponent (acc a uint64 buffer).
// acc_extent: the largest element offset of acc. origins (nullable): [blocks, 2] window
// origins. exact/count (nullable): contiguous [N, C, H, W] float64 sums and counts of the
// scattered values. stats: window adds, global adds, flush adds, stray adds.
int fw_backward_tiled(int dtype, int blend, int fixed, int exponent, int window, int acc_channels_last,
                      const void* image, const int64_t* s_image, const void* flow, const int64_t* s_flow,
                      const void* texture, const int64_t* s_texture, const void* mask, const int64_t* s_mask,
                      const void* grad_out, const int64_t* s_go, int64_t N, int64_t C, int64_t H, int64_t W, int64_t h,
                      int64_t w, int padding, void* acc, const int64_t* s_acc, int64_t acc_extent, void* grad_flow,
                      const int64_t* s_gflow, void* grad_texture, const int64_t* s_gtex, void* grad_mask,
                      const int64_t* s_gmask, const uint32_t* order, uint64_t seed, int64_t* origins, double* exact,
                      int64_t* count, int64_t* stats) {
  FW_DISPATCH(dtype, backward_typed, blend, fixed, exponent, window, acc_channels_last, image, s_image, flow, s_flow,
              texture, s_texture, mask, s_mask, grad_out, s_go, N, C, H, W, h, w, padding, acc, s_acc, acc_extent,
              grad_flow, s_gflow, grad_texture, s_gtex, grad_mask, s_gmask, order, seed, origins, exact, count,
              stats);
}

// The upsampling adjoint: table = 1, upsample_adjoint_table_kernel's per-element work;
// table = 0, the generic upsample_adjoint_at.
int fw_upsample_adjoint(int dtype, int table, const void* grad_hi, const int64_t* s_hi, void* grad_lo,
                        const int64_t* s_lo, int64_t N, int64_t K, int64_t h, int64_t w, int64_t H, int64_t W) {
  auto run = [&](auto tag) {
    using pair = decltype(tag);
    adjoint_typed<typename pair::first_type, typename pair::second_type>(table, grad_hi, s_hi, grad_lo, s_lo, N, K, h,
                                                                         w, H, W);
    return 0;
  };
  if (dtype == kFloat32) return run(std::pair<float, float>{});
  if (dtype == kFloat64) return run(std::pair<double, double>{});
  if (FW_HAS_HALF && dtype == kFloat16) return run(std::pair<fw_half_t, float>{});
  return -1;
}

}  // extern "C"
