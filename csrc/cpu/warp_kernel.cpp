// CPU kernels of fastwarp::warp and fastwarp::warp_blend, forward and backward.
//
// One task per block of output rows (at::parallel_for). Two row implementations:
//   - float32 on a CPU with AVX2 + FMA: the vectorised row kernels of warp_simd.h (eight
//     pixels per step, bilinear or bicubic taps), fed with flow/mask/texture rows at the
//     image's resolution: the tensors' own rows, or rows upsampled here from a smaller grid
//     into a per-task buffer (no per-pixel allocation);
//   - everything else (float64, float16, bfloat16, no AVX2, offsets beyond int32): the
//     scalar per-pixel math shared with CUDA (warp_math.h).
// The image gradient is a scatter, so it is summed race-free: a thread owns whole images
// when the batch is large enough to keep every thread busy, else each thread accumulates
// its rows into a private buffer that is summed afterwards. float16/bfloat16 compute and
// accumulate in float32 until the final store (with a smaller grid the per-pixel map
// gradients stay float32 through the upsampling adjoint, see BackwardSetup).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <type_traits>
#include <vector>

#include "../warp_entry.h"
#include "warp_simd.h"

namespace fastwarp {
namespace {

using detail::Strides4;

// Rows per task: enough pixels that scheduling costs little next to the work.
int64_t row_grain(int64_t W) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(W, 1)); }

template <typename acc_t>
struct AddScatter {
  acc_t* base;
  Strides4 s;
  void operator()(int64_t n, int64_t c, int /*tap*/, bool valid, int64_t ty, int64_t tx, acc_t v) const {
    if (valid) base[n * s.n + c * s.c + ty * s.h + tx * s.w] += v;
  }
};

// Rows of flow, mask and texture at the image's resolution for the vectorised kernels:
// views into the tensors when their grid is the image's, else rows upsampled from the
// smaller grid (detail::LowRes semantics, value by value) into a per-task buffer.
class RowSource {
 public:
  RowSource(const detail::WarpInputs<float>& in, bool blend)
      : in_(in), blend_(blend), identity_(in.h == in.H && in.w == in.W) {
    if (identity_) return;
    xs_.reserve(in.W);
    for (int64_t x = 0; x < in.W; ++x) xs_.push_back(detail::UpAxis<float>::make(x, in.w, in.W));
    sx_ = static_cast<float>(in.W) / static_cast<float>(in.w);
    sy_ = static_cast<float>(in.H) / static_cast<float>(in.h);
  }

  // A per-task buffer for rows(); empty when no upsampling is needed.
  std::vector<float> buffer() const {
    return std::vector<float>(identity_ ? 0 : (3 + in_.C) * in_.W);
  }

  // Fills a's flow/mask/texture rows for output row (n, y).
  void rows(int64_t n, int64_t y, cpu::RowArgs& a, std::vector<float>& buf) const {
    const auto& in = in_;
    if (identity_) {
      const float* fl = in.flow + n * in.s_flow.n + y * in.s_flow.h;
      a.dx = {fl, in.s_flow.w};
      a.dy = {fl + in.s_flow.c, in.s_flow.w};
      if (blend_) {
        a.mask = {in.mask + n * in.s_mask.n + y * in.s_mask.h, in.s_mask.w};
        a.texture = in.texture + n * in.s_texture.n + y * in.s_texture.h;
        a.tex_s_c = in.s_texture.c;
        a.tex_stride = in.s_texture.w;
      }
      return;
    }
    const auto ay = detail::UpAxis<float>::make(y, in.h, in.H);
    float* row = buf.data();
    const float* fl = in.flow + n * in.s_flow.n;
    upsample(fl, in.s_flow, ay, sx_, row);
    upsample(fl + in.s_flow.c, in.s_flow, ay, sy_, row + in.W);
    a.dx = {row, 1};
    a.dy = {row + in.W, 1};
    if (blend_) {
      upsample(in.mask + n * in.s_mask.n, in.s_mask, ay, 1.0f, row + 2 * in.W);
      a.mask = {row + 2 * in.W, 1};
      for (int64_t c = 0; c < in.C; ++c) {
        upsample(in.texture + n * in.s_texture.n + c * in.s_texture.c, in.s_texture, ay, 1.0f, row + (3 + c) * in.W);
      }
      a.texture = row + 3 * in.W;
      a.tex_s_c = in.W;
      a.tex_stride = 1;
    }
  }

  float flow_scale_x() const { return identity_ ? 1.0f : sx_; }
  float flow_scale_y() const { return identity_ ? 1.0f : sy_; }

 private:
  // One row of LowRes::sample(plane) * scale.
  void upsample(const float* plane, const Strides4& s, const detail::UpAxis<float>& ay, float scale,
                float* dst) const {
    const float* r0 = plane + ay.i0 * s.h;
    const float* r1 = plane + ay.i1 * s.h;
    for (int64_t x = 0; x < in_.W; ++x) {
      const auto& ax = xs_[x];
      const float top = ax.l0 * r0[ax.i0 * s.w] + ax.l1 * r0[ax.i1 * s.w];
      const float bottom = ax.l0 * r1[ax.i0 * s.w] + ax.l1 * r1[ax.i1 * s.w];
      dst[x] = (ay.l0 * top + ay.l1 * bottom) * scale;
    }
  }

  const detail::WarpInputs<float>& in_;
  bool blend_, identity_;
  std::vector<detail::UpAxis<float>> xs_;
  float sx_ = 1.0f, sy_ = 1.0f;
};

// Whether the vectorised row kernels serve this call (bilinear or bicubic taps: RowArgs::cubic).
template <typename scalar_t>
bool use_simd(const detail::WarpInputs<scalar_t>& in) {
  const bool simd = std::is_same<scalar_t, float>::value && cpu::simd_available() &&
                    cpu::offsets_fit_int32(in.H, in.W, in.s_image.h, in.s_image.w) &&
                    cpu::offsets_fit_int32(in.H, in.W, in.W, 1);
  if (simd) cpu::note_simd_call();
  return simd;
}

// channels_last image (channels contiguous per pixel): the NHWC row kernels, vectorised
// over channels. C == 1 is both layouts; the NCHW kernels serve it.
template <typename scalar_t>
bool is_nhwc(const detail::WarpInputs<scalar_t>& in) {
  return in.C >= 2 && in.s_image.c == 1 && in.s_image.w == in.C;
}

cpu::RowArgs row_args(const detail::WarpInputs<float>& in, int64_t n, int64_t y) {
  cpu::RowArgs a{};
  a.image = in.image + n * in.s_image.n;
  a.s_c = in.s_image.c;
  a.s_h = in.s_image.h;
  a.s_w = in.s_image.w;
  a.C = in.C;
  a.H = in.H;
  a.W = in.W;
  a.y = y;
  a.padding = static_cast<int>(in.padding);
  a.cubic = in.interp == detail::Interp::Bicubic;
  return a;
}

// The vectorised paths; false (nothing done) for other dtypes, whose calls take the
// scalar per-pixel path.
template <typename scalar_t>
bool forward_simd(const detail::WarpInputs<scalar_t>&, scalar_t*, const Strides4&, bool) {
  return false;
}

bool forward_simd(const detail::WarpInputs<float>& in, float* out, const Strides4& so, bool blend) {
  if (!use_simd(in)) return false;
  const bool nhwc = is_nhwc(in) && so.c == 1;
  const RowSource source(in, blend);
  at::parallel_for(0, in.N * in.H, row_grain(in.W), [&](int64_t begin, int64_t end) {
    std::vector<float> buf = source.buffer();
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / in.H, y = r % in.H;
      cpu::RowArgs a = row_args(in, n, y);
      source.rows(n, y, a, buf);
      if (nhwc) {
        cpu::forward_row_nhwc_avx2(a, out + n * so.n + y * so.h, so.w);
      } else {
        cpu::forward_row_avx2(a, out + n * so.n + y * so.h, so.c, so.w);
      }
    }
  });
  return true;
}

template <typename scalar_t, typename acc_t>
bool backward_rows_simd(const detail::WarpInputs<scalar_t>&, const scalar_t*, const Strides4&,
                        const detail::WarpGrads<scalar_t, acc_t>&, acc_t*, const Strides4&, int64_t, int64_t, int64_t,
                        bool, bool) {
  return false;
}

// Rows [y0, y1) of image n; image-gradient taps go to gi (strides s_gi: contiguous along
// x, or channels_last for the NHWC kernels), null when not wanted.
bool backward_rows_simd(const detail::WarpInputs<float>& in, const float* go, const Strides4& s_go,
                        const detail::WarpGrads<float, float>& g, float* gi, const Strides4& s_gi, int64_t n,
                        int64_t y0, int64_t y1, bool blend, bool nhwc) {
  const RowSource source(in, blend);
  std::vector<float> buf = source.buffer();
  cpu::RowGrads rg{};
  if (gi != nullptr) {
    rg.image = gi + n * s_gi.n;
    rg.gi_s_c = s_gi.c;
    rg.gi_s_h = s_gi.h;
  }
  rg.flow_scale_x = source.flow_scale_x();
  rg.flow_scale_y = source.flow_scale_y();
  // float32: the tensors' own gradients and the H x W buffers have one type; take whichever is set.
  float* const g_flow = g.flow_acc != nullptr ? g.flow_acc : g.flow;
  float* const g_mask = g.mask_acc != nullptr ? g.mask_acc : g.mask;
  float* const g_texture = g.texture_acc != nullptr ? g.texture_acc : g.texture;
  for (int64_t y = y0; y < y1; ++y) {
    cpu::RowArgs a = row_args(in, n, y);
    source.rows(n, y, a, buf);
    if (g_flow != nullptr) {
      float* gf = g_flow + n * g.s_flow.n + y * g.s_flow.h;
      rg.flow_x = {gf, g.s_flow.w};
      rg.flow_y = {gf + g.s_flow.c, g.s_flow.w};
    }
    if (g_mask != nullptr) rg.mask = {g_mask + n * g.s_mask.n + y * g.s_mask.h, g.s_mask.w};
    if (g_texture != nullptr) {
      rg.texture = g_texture + n * g.s_texture.n + y * g.s_texture.h;
      rg.gt_s_c = g.s_texture.c;
      rg.gt_stride = g.s_texture.w;
    }
    if (nhwc) {
      cpu::backward_row_nhwc_avx2(a, go + n * s_go.n + y * s_go.h, s_go.w, rg);
    } else {
      cpu::backward_row_avx2(a, go + n * s_go.n + y * s_go.h, s_go.c, s_go.w, rg);
    }
  }
  return true;
}

struct CpuBackend {
  template <bool kBlend>
  static at::Tensor forward(const char* op, const at::Tensor& image, const at::Tensor& flow, const at::Tensor* texture,
                            const at::Tensor* mask, c10::string_view padding_mode, c10::string_view mode) {
    detail::Interp interp;
    const detail::Padding padding = check_warp_args(op, image, flow, texture, mask, padding_mode, mode, &interp);
    at::Tensor out = empty_like_format(image, image);
    if (out.numel() == 0) return out;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "fastwarp_forward_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const auto in = warp_inputs<scalar_t>(image, flow, texture, mask, padding, interp);
      scalar_t* o = out.mutable_data_ptr<scalar_t>();
      const Strides4 so = strides4(out);
      const int64_t H = in.H, W = in.W;
      if (forward_simd(in, o, so, kBlend)) return;
      at::parallel_for(0, in.N * H, row_grain(W), [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          const int64_t n = r / H, y = r % H;
          for (int64_t x = 0; x < W; ++x) detail::warp_forward_pixel<scalar_t, acc_t, kBlend>(in, o, so, n, y, x);
        }
      });
    });
    return out;
  }

  template <bool kBlend>
  static std::array<at::Tensor, 4> backward(const char* op, const at::Tensor& grad_output, const at::Tensor& image,
                                            const at::Tensor& flow, const at::Tensor* texture, const at::Tensor* mask,
                                            c10::string_view padding_mode, c10::string_view mode,
                                            std::array<bool, 4> need) {
    const BackwardSetup setup =
        setup_backward(op, grad_output, image, flow, texture, mask, padding_mode, mode, need);
    const int64_t N = image.size(0), C = image.size(1), H = image.size(2), W = image.size(3);
    // The NHWC row kernels accumulate the image gradient in a channels_last buffer.
    bool nhwc = false;
    if (image.scalar_type() == at::kFloat) {
      const auto in = warp_inputs<float>(image, flow, texture, mask, setup.padding, setup.interp);
      nhwc = use_simd(in) && is_nhwc(in) && grad_output.stride(1) == 1;
    }
    const auto acc_format = nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
    // (at::zeros ignores a memory format: empty, then zero.)
    at::Tensor acc = need[0] ? at::empty(image.sizes(), image.options().dtype(setup.acc_type).memory_format(acc_format))
                                   .zero_()
                             : at::Tensor();

    // N * H * W, not N * C * H * W: with C == 0 the kernels still run and write the flow and
    // mask gradients (0: no channel contributes), which are otherwise uninitialised memory.
    if (N * H * W > 0 && (need[0] || need[1] || need[2] || need[3])) {
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "fastwarp_backward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto in = warp_inputs<scalar_t>(image, flow, texture, mask, setup.padding, setup.interp);
        detail::WarpGrads<scalar_t, acc_t> g = setup.grads<scalar_t, acc_t>();
        const scalar_t* go = grad_output.const_data_ptr<scalar_t>();
        const Strides4 s_go = strides4(grad_output);
        const bool simd = use_simd(in);
        // Rows [y0, y1) of image n; image-gradient taps go to scatter's buffer.
        auto rows = [&](AddScatter<acc_t>& scatter, int64_t n, int64_t y0, int64_t y1) {
          if (simd && backward_rows_simd(in, go, s_go, g, scatter.base, scatter.s, n, y0, y1, kBlend, nhwc)) return;
          for (int64_t y = y0; y < y1; ++y)
            for (int64_t x = 0; x < W; ++x)
              detail::warp_backward_pixel<scalar_t, acc_t, kBlend>(in, go, s_go, g, n, y, x, scatter);
        };
        const int64_t nthreads = at::get_num_threads();
        if (!need[0]) {
          AddScatter<acc_t> unused{nullptr, {}};
          at::parallel_for(0, N * H, row_grain(W), [&](int64_t begin, int64_t end) {
            for (int64_t r = begin; r < end;) {  // runs of rows within one image
              const int64_t n = r / H, y = r % H, y_end = std::min(H, y + (end - r));
              rows(unused, n, y, y_end);
              r += y_end - y;
            }
          });
        } else if (N >= nthreads) {
          // Each thread owns whole images, so their scatters never meet.
          g.image = acc.mutable_data_ptr<acc_t>();
          const AddScatter<acc_t> scatter{g.image, strides4(acc)};
          at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
            AddScatter<acc_t> local = scatter;
            for (int64_t n = begin; n < end; ++n) rows(local, n, 0, H);
          });
        } else {
          // Fewer images than threads: split each image's rows across threads, each
          // scattering into its own zeroed copy of the image gradient, then sum the copies.
          g.image = acc.mutable_data_ptr<acc_t>();  // marks the image gradient as wanted
          at::Tensor partial =
              at::empty({nthreads, C, H, W}, image.options().dtype(setup.acc_type).memory_format(acc_format));
          acc_t* pbase = partial.mutable_data_ptr<acc_t>();
          const Strides4 sp{0, partial.stride(1), partial.stride(2), partial.stride(3)};
          for (int64_t n = 0; n < N; ++n) {
            partial.zero_();
            at::parallel_for(0, H, row_grain(W), [&](int64_t begin, int64_t end) {
              AddScatter<acc_t> local{pbase + at::get_thread_num() * C * H * W, sp};
              rows(local, n, begin, end);
            });
            acc.select(0, n).copy_(partial.sum(0));
          }
        }
      });
    }
    at::Tensor grad_image = need[0] ? finish_grad_image(acc, image) : setup.none();
    setup.finish<CpuBackend>();
    return {grad_image, setup.grad_flow, setup.grad_texture, setup.grad_mask};
  }

  // The adjoint of the separable upsampling, one plane per task: rows first (each H x W
  // row scattered onto w columns), then columns (each of the H rows onto the h rows),
  // with the forward's own UpAxis weights. O(H W) per plane, in a fixed order.
  static void upsample_adjoint(const at::Tensor& grad_hi, const at::Tensor& grad_lo) {
    const int64_t N = grad_lo.size(0), K = grad_lo.size(1), h = grad_lo.size(2), w = grad_lo.size(3);
    const int64_t H = grad_hi.size(2), W = grad_hi.size(3);
    if (grad_lo.numel() == 0) return;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_lo.scalar_type(), "fastwarp_adjoint_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const scalar_t* hi = grad_hi.const_data_ptr<scalar_t>();
      scalar_t* lo = grad_lo.mutable_data_ptr<scalar_t>();
      const Strides4 sh = strides4(grad_hi), sl = strides4(grad_lo);
      std::vector<detail::UpAxis<acc_t>> xs, ys;
      for (int64_t x = 0; x < W; ++x) xs.push_back(detail::UpAxis<acc_t>::make(x, w, W));
      for (int64_t y = 0; y < H; ++y) ys.push_back(detail::UpAxis<acc_t>::make(y, h, H));
      at::parallel_for(0, N * K, 1, [&](int64_t begin, int64_t end) {
        std::vector<acc_t> rows(H * w), out(h * w);
        for (int64_t p = begin; p < end; ++p) {
          const int64_t n = p / K, k = p % K;
          const scalar_t* plane = hi + n * sh.n + k * sh.c;
          std::fill(rows.begin(), rows.end(), acc_t(0));
          std::fill(out.begin(), out.end(), acc_t(0));
          for (int64_t y = 0; y < H; ++y) {
            acc_t* r = rows.data() + y * w;
            for (int64_t x = 0; x < W; ++x) {
              // Zero weights are skipped, as in detail::upsample_adjoint_at, so a NaN
              // gradient reaches only the samples that pixel reads.
              const acc_t v = static_cast<acc_t>(plane[y * sh.h + x * sh.w]);
              if (xs[x].l0 != acc_t(0)) r[xs[x].i0] += xs[x].l0 * v;
              if (xs[x].l1 != acc_t(0)) r[xs[x].i1] += xs[x].l1 * v;
            }
          }
          for (int64_t y = 0; y < H; ++y) {
            const acc_t* r = rows.data() + y * w;
            acc_t* o0 = out.data() + ys[y].i0 * w;
            acc_t* o1 = out.data() + ys[y].i1 * w;
            if (ys[y].l0 != acc_t(0))
              for (int64_t j = 0; j < w; ++j) o0[j] += ys[y].l0 * r[j];
            if (ys[y].l1 != acc_t(0))
              for (int64_t j = 0; j < w; ++j) o1[j] += ys[y].l1 * r[j];
          }
          scalar_t* dst = lo + n * sl.n + k * sl.c;
          for (int64_t i = 0; i < h; ++i)
            for (int64_t j = 0; j < w; ++j) dst[i * sl.h + j * sl.w] = static_cast<scalar_t>(out[i * w + j]);
        }
      });
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fastwarp, CPU, m) { WarpEntryPoints<CpuBackend>::register_kernels(m); }

}  // namespace fastwarp
