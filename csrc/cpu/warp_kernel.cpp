// CPU kernels of fastwarp::warp and fastwarp::warp_blend, forward and backward.
//
// One task per block of output rows (at::parallel_for); the per-pixel math is shared with
// CUDA (warp_math.h). The image gradient is a scatter, so it is summed race-free: a
// thread owns whole images when the batch is large enough to keep every thread busy,
// else each thread accumulates its rows into a private buffer that is summed afterwards.
// float16/bfloat16 compute and accumulate in float32.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>

#include "../warp_entry.h"

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

struct CpuBackend {
  template <bool kBlend>
  static at::Tensor forward(const char* op, const at::Tensor& image, const at::Tensor& flow, const at::Tensor* texture,
                            const at::Tensor* mask, c10::string_view padding_mode) {
    const detail::Padding padding = check_warp_args(op, image, flow, texture, mask, padding_mode);
    at::Tensor out = empty_like_format(image, image);
    if (out.numel() == 0) return out;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "fastwarp_forward_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const auto in = warp_inputs<scalar_t>(image, flow, texture, mask, padding);
      scalar_t* o = out.mutable_data_ptr<scalar_t>();
      const Strides4 so = strides4(out);
      const int64_t H = in.H, W = in.W;
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
                                            c10::string_view padding_mode, std::array<bool, 4> need) {
    const BackwardSetup setup = setup_backward(op, grad_output, image, flow, texture, mask, padding_mode, need);
    at::Tensor acc = need[0] ? at::zeros(image.sizes(), image.options().dtype(setup.acc_type)) : at::Tensor();
    const int64_t N = image.size(0), C = image.size(1), H = image.size(2), W = image.size(3);

    if (N * C * H * W > 0 && (need[0] || need[1] || need[2] || need[3])) {
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "fastwarp_backward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto in = warp_inputs<scalar_t>(image, flow, texture, mask, setup.padding);
        detail::WarpGrads<scalar_t, acc_t> g = setup.grads<scalar_t, acc_t>();
        const scalar_t* go = grad_output.const_data_ptr<scalar_t>();
        const Strides4 s_go = strides4(grad_output);
        auto rows = [&](AddScatter<acc_t>& scatter, int64_t n, int64_t y0, int64_t y1) {
          for (int64_t y = y0; y < y1; ++y)
            for (int64_t x = 0; x < W; ++x)
              detail::warp_backward_pixel<scalar_t, acc_t, kBlend>(in, go, s_go, g, n, y, x, scatter);
        };
        const int64_t nthreads = at::get_num_threads();
        if (!need[0]) {
          AddScatter<acc_t> unused{nullptr, {}};
          at::parallel_for(0, N * H, row_grain(W), [&](int64_t begin, int64_t end) {
            for (int64_t r = begin; r < end; ++r) rows(unused, r / H, r % H, r % H + 1);
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
          at::Tensor partial = at::empty({nthreads, C, H, W}, image.options().dtype(setup.acc_type));
          acc_t* pbase = partial.mutable_data_ptr<acc_t>();
          const Strides4 sp{0, H * W, W, 1};
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

  static void upsample_adjoint(const at::Tensor& grad_hi, const at::Tensor& grad_lo) {
    const int64_t N = grad_lo.size(0), K = grad_lo.size(1), h = grad_lo.size(2), w = grad_lo.size(3);
    const int64_t H = grad_hi.size(2), W = grad_hi.size(3);
    if (grad_lo.numel() == 0) return;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_lo.scalar_type(), "fastwarp_adjoint_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const scalar_t* hi = grad_hi.const_data_ptr<scalar_t>();
      scalar_t* lo = grad_lo.mutable_data_ptr<scalar_t>();
      const Strides4 sh = strides4(grad_hi), sl = strides4(grad_lo);
      at::parallel_for(0, N * K * h, row_grain(w * 16), [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          const int64_t i = r % h, nk = r / h, k = nk % K, n = nk / K;
          const scalar_t* plane = hi + n * sh.n + k * sh.c;
          for (int64_t j = 0; j < w; ++j) {
            lo[n * sl.n + k * sl.c + i * sl.h + j * sl.w] = static_cast<scalar_t>(
                detail::upsample_adjoint_at<scalar_t, acc_t>(plane, sh.h, sh.w, i, j, h, w, H, W));
          }
        }
      });
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fastwarp, CPU, m) { WarpEntryPoints<CpuBackend>::register_kernels(m); }

}  // namespace fastwarp
