// CUDA kernels of fastwarp::warp and fastwarp::warp_blend: host launchers. The device
// code is in warp_kernel.cuh (ATen-free) and the per-pixel math in ../warp_math.h.
//
// The image gradient is a scatter: global atomics by default; when
// torch.use_deterministic_algorithms(True) is on, each (pixel, tap) records its target
// and value and a sort-based index_put_(accumulate=True) sums them in a fixed order.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <array>

#include "../warp_entry.h"
#include "warp_kernel.cuh"

namespace fastwarp {
namespace {

using detail::Strides4;

constexpr int kThreads = 256;

int64_t num_blocks(int64_t total) {
  int device = 0, sms = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  // Grid-stride loops: enough resident blocks to fill every SM, no more.
  return std::max<int64_t>(1, std::min<int64_t>((total + kThreads - 1) / kThreads, int64_t(sms) * 16));
}

struct CudaBackend {
  template <bool kBlend>
  static at::Tensor forward(const char* op, const at::Tensor& image, const at::Tensor& flow, const at::Tensor* texture,
                            const at::Tensor* mask, c10::string_view padding_mode) {
    const detail::Padding padding = check_warp_args(op, image, flow, texture, mask, padding_mode);
    const c10::cuda::CUDAGuard guard(image.device());
    at::Tensor out = empty_like_format(image, image);
    if (out.numel() == 0) return out;
    const int64_t total = image.size(0) * image.size(2) * image.size(3);
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "fastwarp_forward_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const auto in = warp_inputs<scalar_t>(image, flow, texture, mask, padding);
      detail::warp_forward_cuda_kernel<scalar_t, acc_t, kBlend><<<num_blocks(total), kThreads, 0, stream>>>(
          in, out.mutable_data_ptr<scalar_t>(), strides4(out), total);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    return out;
  }

  template <bool kBlend>
  static std::array<at::Tensor, 4> backward(const char* op, const at::Tensor& grad_output, const at::Tensor& image,
                                            const at::Tensor& flow, const at::Tensor* texture, const at::Tensor* mask,
                                            c10::string_view padding_mode, std::array<bool, 4> need) {
    const BackwardSetup setup = setup_backward(op, grad_output, image, flow, texture, mask, padding_mode, need);
    const c10::cuda::CUDAGuard guard(image.device());
    const int64_t N = image.size(0), C = image.size(1), H = image.size(2), W = image.size(3);
    const bool deterministic = need[0] && at::globalContext().deterministicAlgorithms();
    // Atomic path: an NCHW accumulation buffer. Deterministic path: [N*H*W, C] rows that a
    // sort-based index_put_ fills.
    at::Tensor acc;
    if (need[0]) acc = deterministic ? at::zeros({N * H * W, C}, image.options().dtype(setup.acc_type))
                                     : at::zeros(image.sizes(), image.options().dtype(setup.acc_type));
    const int64_t total = N * H * W;

    if (total * C > 0 && (need[0] || need[1] || need[2] || need[3])) {
      const auto stream = c10::cuda::getCurrentCUDAStream();
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "fastwarp_backward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto in = warp_inputs<scalar_t>(image, flow, texture, mask, setup.padding);
        detail::WarpGrads<scalar_t, acc_t> g = setup.grads<scalar_t, acc_t>();
        if (need[0]) {
          g.image = acc.mutable_data_ptr<acc_t>();
          g.s_image = strides4(deterministic ? acc.view({N, H, W, C}).permute({0, 3, 1, 2}) : acc);
        }
        const scalar_t* go = grad_output.const_data_ptr<scalar_t>();
        if (deterministic) {
          at::Tensor rec_index = at::empty({total * 4}, image.options().dtype(at::kLong));
          at::Tensor rec_value = at::empty({total * 4, C}, image.options().dtype(setup.acc_type));
          detail::warp_backward_record_cuda_kernel<scalar_t, acc_t, kBlend>
              <<<num_blocks(total), kThreads, 0, stream>>>(in, go, strides4(grad_output), g,
                                                           rec_index.mutable_data_ptr<int64_t>(),
                                                           rec_value.mutable_data_ptr<acc_t>(), total);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
          acc.index_put_({rec_index}, rec_value, /*accumulate=*/true);
        } else {
          detail::warp_backward_cuda_kernel<scalar_t, acc_t, kBlend><<<num_blocks(total), kThreads, 0, stream>>>(
              in, go, strides4(grad_output), g, total);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
      });
    }
    at::Tensor grad_image = setup.none();
    if (need[0]) grad_image = finish_grad_image(deterministic ? acc.view({N, H, W, C}).permute({0, 3, 1, 2}) : acc, image);
    setup.finish<CudaBackend>();
    return {grad_image, setup.grad_flow, setup.grad_texture, setup.grad_mask};
  }

  static void upsample_adjoint(const at::Tensor& grad_hi, const at::Tensor& grad_lo) {
    const int64_t total = grad_lo.numel();
    if (total == 0) return;
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_lo.scalar_type(), "fastwarp_adjoint_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      detail::upsample_adjoint_cuda_kernel<scalar_t, acc_t><<<num_blocks(total), kThreads, 0, stream>>>(
          grad_hi.const_data_ptr<scalar_t>(), strides4(grad_hi), grad_lo.mutable_data_ptr<scalar_t>(),
          strides4(grad_lo), grad_lo.size(1), grad_lo.size(2), grad_lo.size(3), grad_hi.size(2), grad_hi.size(3),
          total);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fastwarp, CUDA, m) { WarpEntryPoints<CudaBackend>::register_kernels(m); }

}  // namespace fastwarp
