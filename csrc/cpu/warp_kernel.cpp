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

#include "../warp_checks.h"

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

template <bool kBlend>
at::Tensor forward_kernel(const char* op, const at::Tensor& image, const at::Tensor& flow, const at::Tensor* texture,
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

void check_grad_output(const char* op, const at::Tensor& grad_output, const at::Tensor& image) {
  TORCH_CHECK_VALUE(grad_output.sizes() == image.sizes(), op, ": grad_output must have the output's shape ",
                    shape_str(image), ", got ", shape_str(grad_output));
  TORCH_CHECK_TYPE(grad_output.scalar_type() == image.scalar_type(), op, ": grad_output.dtype must match image.dtype (",
                   image.scalar_type(), "), got ", grad_output.scalar_type());
}

// Returns {grad_image, grad_flow, grad_texture, grad_mask}; a gradient not asked for is an
// empty tensor of shape [0].
template <bool kBlend>
std::array<at::Tensor, 4> backward_kernel(const char* op, const at::Tensor& grad_output, const at::Tensor& image,
                                          const at::Tensor& flow, const at::Tensor* texture, const at::Tensor* mask,
                                          c10::string_view padding_mode, std::array<bool, 4> need) {
  const detail::Padding padding = check_warp_args(op, image, flow, texture, mask, padding_mode);
  check_grad_output(op, grad_output, image);
  const at::ScalarType acc_type = at::toOpMathType(image.scalar_type());
  const auto none = image.new_empty({0});
  at::Tensor acc = need[0] ? at::zeros(image.sizes(), image.options().dtype(acc_type)) : at::Tensor();
  at::Tensor grad_flow = need[1] ? at::empty_like(flow) : none;
  at::Tensor grad_texture = (kBlend && need[2]) ? at::empty_like(*texture) : none;
  at::Tensor grad_mask = (kBlend && need[3]) ? at::empty_like(*mask) : none;
  const int64_t N = image.size(0), C = image.size(1), H = image.size(2), W = image.size(3);

  if (N * C * H * W > 0 && (need[0] || need[1] || need[2] || need[3])) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "fastwarp_backward_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const auto in = warp_inputs<scalar_t>(image, flow, texture, mask, padding);
      detail::WarpGrads<scalar_t, acc_t> g{};
      if (need[1]) {
        g.flow = grad_flow.mutable_data_ptr<scalar_t>();
        g.s_flow = strides4(grad_flow);
      }
      if (kBlend && need[2]) {
        g.texture = grad_texture.mutable_data_ptr<scalar_t>();
        g.s_texture = strides4(grad_texture);
      }
      if (kBlend && need[3]) {
        g.mask = grad_mask.mutable_data_ptr<scalar_t>();
        g.s_mask = strides4(grad_mask);
      }
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
        g.image = acc.mutable_data_ptr<acc_t>();
        AddScatter<acc_t> scatter{g.image, strides4(acc)};
        at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
          AddScatter<acc_t> local = scatter;
          for (int64_t n = begin; n < end; ++n) rows(local, n, 0, H);
        });
      } else {
        // Fewer images than threads: split each image's rows across threads, each
        // scattering into its own zeroed copy of the image gradient, then sum the copies.
        g.image = acc.mutable_data_ptr<acc_t>();  // marks the image gradient as wanted
        at::Tensor partial = at::empty({nthreads, C, H, W}, image.options().dtype(acc_type));
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
  at::Tensor grad_image = none;
  if (need[0]) grad_image = acc.to(image.scalar_type()).contiguous(image.suggest_memory_format());
  return {grad_image, grad_flow, grad_texture, grad_mask};
}

at::Tensor warp_forward_kernel(const at::Tensor& image, const at::Tensor& flow, c10::string_view padding_mode) {
  return forward_kernel<false>("fastwarp.warp", image, flow, nullptr, nullptr, padding_mode);
}

at::Tensor warp_blend_forward_kernel(const at::Tensor& image, const at::Tensor& flow, const at::Tensor& texture,
                                     const at::Tensor& mask, c10::string_view padding_mode) {
  return forward_kernel<true>("fastwarp.warp_blend", image, flow, &texture, &mask, padding_mode);
}

std::tuple<at::Tensor, at::Tensor> warp_backward_kernel(const at::Tensor& grad_output, const at::Tensor& image,
                                                        const at::Tensor& flow, c10::string_view padding_mode,
                                                        std::array<bool, 2> output_mask) {
  auto g = backward_kernel<false>("fastwarp.warp_backward", grad_output, image, flow, nullptr, nullptr, padding_mode,
                                  {output_mask[0], output_mask[1], false, false});
  return {g[0], g[1]};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> warp_blend_backward_kernel(
    const at::Tensor& grad_output, const at::Tensor& image, const at::Tensor& flow, const at::Tensor& texture,
    const at::Tensor& mask, c10::string_view padding_mode, std::array<bool, 4> output_mask) {
  auto g = backward_kernel<true>("fastwarp.warp_blend_backward", grad_output, image, flow, &texture, &mask,
                                 padding_mode, output_mask);
  return {g[0], g[1], g[2], g[3]};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastwarp, CPU, m) {
  m.impl("warp", &warp_forward_kernel);
  m.impl("warp_backward", &warp_backward_kernel);
  m.impl("warp_blend", &warp_blend_forward_kernel);
  m.impl("warp_blend_backward", &warp_blend_backward_kernel);
}

}  // namespace fastwarp
