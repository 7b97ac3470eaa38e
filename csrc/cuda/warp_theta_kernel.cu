// CUDA kernels of the frame-space composite: fastwarp::warp_theta and
// fastwarp::warp_blend_theta, forward and backward (docs/design.md, "Frame-space composite";
// per-pixel math in ../warp_theta.h, shared with the CPU kernels).
//
// Forward: the output starts as a copy of the image (pixels outside the grid's footprint
// are the image, bit for bit); one launch per image covers its footprint's bounding box,
// one thread per pixel, theta passed by value. A uint8 frame takes float32 maps.
// Backward (floating images): every pixel records its contributions (image taps, or its own
// pixel outside the footprint; the grid taps of flow, mask and texture), summed by
// index_put_(accumulate=True): deterministic, no atomics. Not the real-time path (that is
// the forward), so it favours one simple path over speed.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <tuple>

#include "../warp_entry.h"

namespace fastwarp {
namespace {

using detail::Strides4;

constexpr int kThreads = 256;

struct Theta6 {
  double t[6];
};

template <typename img_t, typename map_t, bool kBlend>
__global__ void theta_forward_cuda_kernel(detail::ThetaInputs<img_t, map_t> in, Theta6 theta, img_t* out,
                                          Strides4 so, int64_t n, int64_t x0, int64_t bw, int64_t y0,
                                          int64_t total) {
  using acc_t = at::opmath_type<map_t>;
  const auto gm = detail::GridMap<acc_t>::make(theta.t);
  for (int64_t q = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; q < total;
       q += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    detail::theta_forward_pixel<img_t, map_t, acc_t, kBlend>(in, gm, out, so, n, y0 + q / bw, x0 + q % bw);
  }
}

// Records of one pixel's contributions (see the file comment); image slots taps p .. taps p +
// taps - 1 (taps_per_pixel: 4 bilinear, 16 bicubic), grid slots 4 p .. 4 p + 3.
template <typename acc_t>
struct RecordImage {
  int64_t* index;
  acc_t* value;
  int64_t C, H, W, slot;
  int tap;
  int64_t channel;
  __device__ void operator()(int64_t n, int64_t c, int64_t ty, int64_t tx, acc_t v) {
    // Per channel the valid taps arrive in a fixed order (nw, ne, sw, se, the same ones in
    // every channel; or the pixel itself outside the footprint): the first channel assigns
    // the slots, every channel writes its values into them.
    if (c != channel) {
      channel = c;
      tap = 0;
    }
    if (c == 0) index[slot + tap] = (n * H + ty) * W + tx;
    value[(slot + tap) * C + c] = v;
    ++tap;
  }
};

template <typename acc_t>
struct RecordGrid {
  int64_t* index;
  acc_t* value;
  int64_t K, h, w, slot;
  bool flow, mask, texture;
  __device__ void operator()(int64_t n, int64_t k, int64_t gy, int64_t gx, acc_t v) {
    if ((k < 2 && !flow) || (k == 2 && !mask) || (k >= 3 && !texture)) return;
    // GridSample::scatter visits the taps in the order (y0, x0), (y0, x1), (y1, x0), (y1, x1),
    // skipping zero weights, so the tap is recovered from the position, not a counter.
    const int64_t flat = (n * h + gy) * w + gx;
    for (int t = 0; t < 4; ++t) {
      if (index[slot + t] == flat) {
        value[(slot + t) * K + k] += v;
        return;
      }
    }
  }
};

template <typename scalar_t, bool kBlend>
__global__ void theta_backward_cuda_kernel(detail::ThetaInputs<scalar_t, scalar_t> in, const double* theta,
                                           const scalar_t* grad_out, Strides4 s_gout, int64_t* img_index,
                                           at::opmath_type<scalar_t>* img_value, int64_t* grid_index,
                                           at::opmath_type<scalar_t>* grid_value, bool need_image, bool need_flow,
                                           bool need_mask, bool need_texture, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t K = 3 + in.C;
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < total;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t x = p % in.W, y = (p / in.W) % in.H, n = p / (in.W * in.H);
    const auto gm = detail::GridMap<acc_t>::make(theta + 6 * n);
    const int64_t slot = 4 * p;
    // The grid taps' targets, as GridSample::make computes them (clamped; harmless where the
    // pixel is outside the footprint: its values stay 0).
    const auto gs = detail::GridSample<acc_t>::make(gm.u(x, y), gm.v(x, y), in.h, in.w);
    const bool grid = need_flow || need_mask || need_texture;
    if (grid) {
      grid_index[slot + 0] = (n * in.h + gs.y.i0) * in.w + gs.x.i0;
      grid_index[slot + 1] = (n * in.h + gs.y.i0) * in.w + gs.x.i1;
      grid_index[slot + 2] = (n * in.h + gs.y.i1) * in.w + gs.x.i0;
      grid_index[slot + 3] = (n * in.h + gs.y.i1) * in.w + gs.x.i1;
    }
    RecordImage<acc_t> image_add{img_index, img_value, in.C, in.H, in.W, detail::taps_per_pixel(in.interp) * p, 0, 0};
    struct Skip {
      __device__ void operator()(int64_t, int64_t, int64_t, int64_t, acc_t) {}
    };
    RecordGrid<acc_t> grid_add{grid_index, grid_value, K, in.h, in.w, slot, need_flow, need_mask, need_texture};
    if (need_image) {
      detail::theta_backward_pixel<scalar_t, acc_t, kBlend>(in, gm, grad_out, s_gout, n, y, x, need_flow, need_mask,
                                                            image_add, grid_add);
    } else {
      Skip skip;
      detail::theta_backward_pixel<scalar_t, acc_t, kBlend>(in, gm, grad_out, s_gout, n, y, x, need_flow, need_mask,
                                                            skip, grid_add);
    }
  }
}

int blocks_for(int64_t total) {
  return static_cast<int>(std::min<int64_t>((total + kThreads - 1) / kThreads, 65535));
}

template <typename img_t, typename map_t, bool kBlend>
void launch_forward(const detail::ThetaInputs<img_t, map_t>& in, const double* host, at::Tensor& out,
                    cudaStream_t stream) {
  const Strides4 so = strides4(out);
  for (int64_t n = 0; n < in.N; ++n) {
    Theta6 t;
    for (int k = 0; k < 6; ++k) t.t[k] = host[6 * n + k];
    int64_t x0, x1, y0, y1;
    detail::footprint_box(t.t, in.h, in.w, in.H, in.W, &x0, &x1, &y0, &y1);
    const int64_t total = (x1 - x0) * (y1 - y0);
    if (total == 0) continue;
    theta_forward_cuda_kernel<img_t, map_t, kBlend><<<blocks_for(total), kThreads, 0, stream>>>(
        in, t, out.mutable_data_ptr<img_t>(), so, n, x0, x1 - x0, y0, total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

struct CudaThetaBackend {
  template <bool kBlend>
  static at::Tensor theta_forward(const char* op, const at::Tensor& image, const at::Tensor& flow,
                                  const at::Tensor* texture, const at::Tensor* mask, const at::Tensor& theta,
                                  c10::string_view padding_mode, c10::string_view mode) {
    detail::Padding padding;
    detail::Interp interp;
    const at::Tensor host =
        check_theta_args(op, image, flow, texture, mask, theta, padding_mode, mode, &padding, &interp, true);
    const c10::cuda::CUDAGuard guard(image.device());
    at::Tensor out = image.clone(at::MemoryFormat::Preserve);
    if (out.numel() == 0) return out;
    const auto stream = c10::cuda::getCurrentCUDAStream();
    const double* t = host.const_data_ptr<double>();
    if (image.scalar_type() == at::kByte) {
      launch_forward<uint8_t, float, kBlend>(theta_inputs<uint8_t, float>(image, flow, texture, mask, t, padding, interp), t, out,
                                             stream);
      return out;
    }
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "fastwarp_theta_forward_cuda", [&] {
      launch_forward<scalar_t, scalar_t, kBlend>(theta_inputs<scalar_t, scalar_t>(image, flow, texture, mask, t, padding, interp),
                                                 t, out, stream);
    });
    return out;
  }

  template <bool kBlend>
  static std::array<at::Tensor, 4> theta_backward(const char* op, const at::Tensor& grad_output,
                                                  const at::Tensor& image, const at::Tensor& flow,
                                                  const at::Tensor* texture, const at::Tensor* mask,
                                                  const at::Tensor& theta, c10::string_view padding_mode,
                                                  c10::string_view mode, std::array<bool, 4> need) {
    detail::Padding padding;
    detail::Interp interp;
    const at::Tensor host = check_theta_backward(op, grad_output, image, flow, texture, mask, theta, padding_mode, mode,
                                                 &padding, &interp);
    const c10::cuda::CUDAGuard guard(image.device());
    const int64_t N = image.size(0), C = image.size(1), H = image.size(2), W = image.size(3);
    const int64_t h = flow.size(2), w = flow.size(3), K = 3 + C, total = N * H * W;
    const bool need_flow = need[1], need_tex = kBlend && need[2], need_mask = kBlend && need[3];
    const bool need_grid = need_flow || need_tex || need_mask;
    const at::ScalarType acc_type = at::toOpMathType(image.scalar_type());
    const auto acc_opts = image.options().dtype(acc_type);
    const auto idx_opts = image.options().dtype(at::kLong);
    const int64_t taps = detail::taps_per_pixel(interp);
    at::Tensor img_index = need[0] ? at::zeros({total * taps}, idx_opts) : at::Tensor();
    at::Tensor img_value = need[0] ? at::zeros({total * taps, C}, acc_opts) : at::Tensor();
    at::Tensor grid_index = need_grid ? at::zeros({total * 4}, idx_opts) : at::Tensor();
    at::Tensor grid_value = need_grid ? at::zeros({total * 4, K}, acc_opts) : at::Tensor();
    if (total * C > 0 && (need[0] || need_grid)) {
      const at::Tensor theta_dev = host.to(image.device());
      const auto stream = c10::cuda::getCurrentCUDAStream();
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "fastwarp_theta_backward_cuda",
                                      [&] {
        using acc_t = at::opmath_type<scalar_t>;
        theta_backward_cuda_kernel<scalar_t, kBlend><<<blocks_for(total), kThreads, 0, stream>>>(
            theta_inputs<scalar_t, scalar_t>(image, flow, texture, mask, nullptr, padding, interp),
            theta_dev.const_data_ptr<double>(),
            grad_output.const_data_ptr<scalar_t>(), strides4(grad_output),
            need[0] ? img_index.mutable_data_ptr<int64_t>() : nullptr,
            need[0] ? img_value.mutable_data_ptr<acc_t>() : nullptr,
            need_grid ? grid_index.mutable_data_ptr<int64_t>() : nullptr,
            need_grid ? grid_value.mutable_data_ptr<acc_t>() : nullptr, need[0], need_flow, need_mask, need_tex,
            total);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    }
    at::Tensor gimage, ggrid;
    if (need[0]) {
      gimage = at::zeros({total, C}, acc_opts).index_put_({img_index}, img_value, true);
      gimage = gimage.view({N, H, W, C}).permute({0, 3, 1, 2});
    }
    if (need_grid) {
      ggrid = at::zeros({N * h * w, K}, acc_opts).index_put_({grid_index}, grid_value, true);
      ggrid = ggrid.view({N, h, w, K}).permute({0, 3, 1, 2});
    }
    return finish_theta_grads(gimage, ggrid, image, flow, texture, mask, need);
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fastwarp, CUDA, m) { ThetaEntryPoints<CudaThetaBackend>::register_kernels(m); }

}  // namespace fastwarp
