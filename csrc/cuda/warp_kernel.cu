// CUDA kernels of fastwarp::warp and fastwarp::warp_blend: host launchers. The device code
// is in warp_fast.cuh (tuned paths) and warp_kernel.cuh (generic paths), both ATen-free; the
// per-pixel math is ../warp_math.h's, shared with the CPU kernels.
//
// Paths, chosen here per call (FASTWARP_CUDA_GENERIC=1 in the environment forces the generic
// path of every op, to compare against or to rule the tuned kernels out):
//
// Forward
//   tiled    warp_forward_tiled_kernel: when every tensor's largest element offset is
//            < 2^31 and H, W <= 2^30 (32-bit index math). One block per 16 x 16 tile of
//            output pixels (narrower/shorter for small images), one thread per pixel; C
//            templated for 1, 3 and 4 (runtime C otherwise). channels_last image and output
//            with C % 4 == 0 and 4-element-aligned pointers and strides (not float64):
//            the taps' channels and the output are read/written as 4-element vectors.
//   generic  warp_forward_cuda_kernel: 64-bit, any strides, grid-stride over pixels.
// Backward (flow/texture/mask gradients are per-pixel writes in every path; all paths run
// warp_backward_pixel, only the image-gradient scatter differs)
//   atomic   (default) warp_backward_tiled_kernel with a float accumulation buffer in the
//            image's memory format: each block adds the taps that land in a shared-memory
//            window (its tile displaced by the tile's mean flow, plus a 2-pixel halo) with
//            shared atomics and flushes the window with one global atomic per nonzero
//            element; other taps use global atomics. No window for float64, or when the
//            window would exceed 32 KiB (large C). Generic fallback:
//            warp_backward_cuda_kernel (global atomics, grid-stride).
//   fixed    (torch.use_deterministic_algorithms(True), float32/float16/bfloat16): the same
//            kernel accumulating 64-bit fixed-point integers (exact, order-independent). One
//            reduction (max |grad_output|, max |mask|) and one host synchronisation choose
//            the scale (choose_fixed_point_scale, warp_fast_math.h: overflow proof and
//            precision); then one conversion kernel writes the gradient.
//   record   (deterministic fallback: float64, a non-finite grad_output or mask, extreme
//            magnitudes, a huge image, CUDA graph capture, FASTWARP_CUDA_GENERIC): every
//            (pixel, tap) records its target and values, summed by a sort-based
//            index_put_(accumulate=True).
// Upsampling adjoint (flow/texture/mask smaller than the image): a deterministic gather;
//   upsample_adjoint_table_kernel caches the upsampling weights of the H rows and W columns
//   in shared memory when they fit (H + W <= ~3000), else upsample_adjoint_cuda_kernel.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>

#include "../warp_entry.h"
#include "warp_fast.cuh"
#include "warp_kernel.cuh"

namespace fastwarp {
namespace {

using detail::Strides4;
using detail::Strides4i;

constexpr int kThreads = 256;
constexpr int64_t kMaxTableBytes = 48 * 1024;     // shared memory for the adjoint's weight table
constexpr int64_t kMaxTiledSide = int64_t(1) << 30;

int64_t num_blocks(int64_t total) {
  int device = 0, sms = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  // Grid-stride loops: enough resident blocks to fill every SM, no more.
  return std::max<int64_t>(1, std::min<int64_t>((total + kThreads - 1) / kThreads, int64_t(sms) * 16));
}

// FASTWARP_CUDA_GENERIC set to anything but "" or "0": generic kernels only.
bool force_generic() {
  const char* v = std::getenv("FASTWARP_CUDA_GENERIC");
  return v != nullptr && v[0] != '\0' && std::strcmp(v, "0") != 0;
}

// Every element offset of `t` (non-negative strides) is < 2^31.
bool offsets_fit_int32(const at::Tensor& t) {
  if (t.numel() == 0) return true;
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  int64_t largest = 0;
  for (int64_t d = 0; d < t.dim(); ++d) {
    const int64_t s = t.stride(d), extent = t.size(d) - 1;
    if (s < 0) return false;
    if (s > 0 && extent > (kMax - largest) / s) return false;
    largest += extent * s;
  }
  return largest <= kMax;
}

Strides4i strides4i(const at::Tensor& t) {  // only after offsets_fit_int32(t)
  return Strides4i{static_cast<int32_t>(t.stride(0)), static_cast<int32_t>(t.stride(1)),
                   static_cast<int32_t>(t.stride(2)), static_cast<int32_t>(t.stride(3))};
}

// Tiles of kThreads pixels (detail::tile_shape): 16 x 16, narrower for W < 16, wider and
// shorter for small H.
struct Tiling {
  int tw, th;
  int64_t tiles_x, tiles_y, blocks;
  bool usable;  // grid and 32-bit tile coordinates in range
};

Tiling tiling(int64_t N, int64_t H, int64_t W) {
  static_assert(detail::kTileThreads == kThreads, "the tiled kernels' block size");
  const detail::TileShape shape = detail::tile_shape(H, W);
  Tiling t{};
  t.tw = shape.tw;
  t.th = shape.th;
  t.tiles_x = (W + t.tw - 1) / t.tw;
  t.tiles_y = (H + t.th - 1) / t.th;
  t.usable = H <= kMaxTiledSide && W <= kMaxTiledSide && t.tiles_x <= std::numeric_limits<int32_t>::max() &&
             t.tiles_y <= std::numeric_limits<int32_t>::max() &&
             N <= std::numeric_limits<int32_t>::max() / std::max<int64_t>(1, t.tiles_x * t.tiles_y);
  t.blocks = t.usable ? N * t.tiles_x * t.tiles_y : 0;
  return t;
}

// Zeros in a memory format (at::zeros has no memory-format argument and would ignore it).
at::Tensor zeros_in_format(at::IntArrayRef sizes, const at::TensorOptions& options, at::MemoryFormat fmt) {
  return at::empty(sizes, options.memory_format(fmt)).zero_();
}

// 4-element vectors of channels: channels_last-style strides (channel stride 1), C and every
// other stride a multiple of 4, the pointer aligned to 4 elements.
bool vec4_ok(const at::Tensor& t, int64_t elem_size) {
  return t.size(1) % 4 == 0 && t.stride(1) == 1 && t.stride(0) % 4 == 0 && t.stride(2) % 4 == 0 &&
         t.stride(3) % 4 == 0 && reinterpret_cast<std::uintptr_t>(t.const_data_ptr()) % (4 * elem_size) == 0;
}

template <typename scalar_t, typename acc_t, bool kBlend, int kC, int kVec>
void launch_forward_tiled(const detail::TiledArgs<scalar_t>& a, const Tiling& tl, cudaStream_t stream) {
  detail::warp_forward_tiled_kernel<scalar_t, acc_t, kBlend, kC, kVec>
      <<<static_cast<unsigned int>(tl.blocks), dim3(tl.tw, tl.th), 0, stream>>>(a);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t, typename acc_t, bool kBlend>
void forward_tiled(const detail::TiledArgs<scalar_t>& a, bool vec4, const Tiling& tl, cudaStream_t stream) {
  if constexpr (sizeof(scalar_t) <= 4) {
    if (vec4) {
      if (a.C == 4) return launch_forward_tiled<scalar_t, acc_t, kBlend, 4, 4>(a, tl, stream);
      return launch_forward_tiled<scalar_t, acc_t, kBlend, 0, 4>(a, tl, stream);
    }
  }
  switch (a.C) {
    case 1: return launch_forward_tiled<scalar_t, acc_t, kBlend, 1, 1>(a, tl, stream);
    case 3: return launch_forward_tiled<scalar_t, acc_t, kBlend, 3, 1>(a, tl, stream);
    case 4: return launch_forward_tiled<scalar_t, acc_t, kBlend, 4, 1>(a, tl, stream);
    default: return launch_forward_tiled<scalar_t, acc_t, kBlend, 0, 1>(a, tl, stream);
  }
}

// The tiled backward; `window` asks for the shared-memory window (granted when the image
// gradient is wanted and it fits the budget).
template <typename scalar_t, typename acc_t, bool kBlend, typename Accum>
void launch_backward_tiled(const detail::WarpInputs<scalar_t>& in, const scalar_t* go, Strides4 s_go,
                           const detail::WarpGrads<scalar_t, acc_t>& g, typename Accum::word* acc, Strides4 s_acc,
                           Accum accum, bool window, bool acc_channels_last, const Tiling& tl,
                           cudaStream_t stream) {
  // detail::window_params: the tile plus a 2-pixel halo, within a 32 KiB budget.
  const int64_t word_bytes = static_cast<int64_t>(sizeof(typename Accum::word));
  const detail::WindowParams wp = window && acc != nullptr
                                      ? detail::window_params(tl.tw, tl.th, in.H, in.W, in.C, word_bytes,
                                                              acc_channels_last)
                                      : detail::WindowParams{0, 0, false, false};
  const int64_t smem = wp.enabled ? in.C * wp.wh * wp.ww * word_bytes : 0;
  detail::warp_backward_tiled_kernel<scalar_t, acc_t, kBlend, Accum>
      <<<static_cast<unsigned int>(tl.blocks), dim3(tl.tw, tl.th), smem, stream>>>(
          in, go, s_go, g, acc, s_acc, accum, wp, static_cast<int32_t>(tl.tiles_x), static_cast<int32_t>(tl.tiles_y));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// max |t| as float bits into *result (zeroed by the caller).
template <typename scalar_t>
void abs_max_bits(const at::Tensor& t, unsigned int* result, cudaStream_t stream) {
  // A dense tensor's elements fill [data, data + numel) in some order: read it flat.
  const at::Tensor dense = t.is_non_overlapping_and_dense() ? t : t.contiguous();
  const int64_t total = dense.numel();
  if (total == 0) return;
  detail::abs_max_bits_kernel<scalar_t><<<num_blocks(total), kThreads, 0, stream>>>(
      dense.const_data_ptr<scalar_t>(), total, result);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

float float_of_bits(int32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// The fixed-point scale of a deterministic backward: max |grad_output| and max |mask| on the
// device, then one synchronisation to bring them to the host.
template <typename scalar_t>
detail::FixedPointScale fixed_point_scale(const at::Tensor& grad_output, const at::Tensor* mask, int64_t pixels,
                                          cudaStream_t stream) {
  at::Tensor bits = at::zeros({2}, grad_output.options().dtype(at::kInt));
  unsigned int* b = reinterpret_cast<unsigned int*>(bits.mutable_data_ptr<int32_t>());
  abs_max_bits<scalar_t>(grad_output, b, stream);
  if (mask != nullptr) abs_max_bits<scalar_t>(*mask, b + 1, stream);
  const at::Tensor host = bits.cpu();
  const int32_t* hb = host.const_data_ptr<int32_t>();
  const float g = float_of_bits(hb[0]);
  const float m = mask != nullptr ? float_of_bits(hb[1]) : 1.0f;
  return detail::choose_fixed_point_scale(g, m, pixels);
}

struct CudaBackend {
  template <bool kBlend>
  static at::Tensor forward(const char* op, const at::Tensor& image, const at::Tensor& flow, const at::Tensor* texture,
                            const at::Tensor* mask, c10::string_view padding_mode, c10::string_view mode) {
    detail::Interp interp;
    const detail::Padding padding = check_warp_args(op, image, flow, texture, mask, padding_mode, mode, &interp);
    const c10::cuda::CUDAGuard guard(image.device());
    at::Tensor out = empty_like_format(image, image);
    if (out.numel() == 0) return out;
    const int64_t N = image.size(0), C = image.size(1), H = image.size(2), W = image.size(3);
    const int64_t total = N * H * W;
    const auto stream = c10::cuda::getCurrentCUDAStream();
    const Tiling tl = tiling(N, H, W);
    // Bicubic taps take the generic per-pixel kernel (warp_math.h); the tiled path is bilinear.
    const bool tiled = !force_generic() && interp == detail::Interp::Bilinear && tl.usable &&
                       offsets_fit_int32(image) && offsets_fit_int32(flow) &&
                       offsets_fit_int32(out) && (texture == nullptr || offsets_fit_int32(*texture)) &&
                       (mask == nullptr || offsets_fit_int32(*mask));
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "fastwarp_forward_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      if (tiled) {
        detail::TiledArgs<scalar_t> a{};
        a.image = image.const_data_ptr<scalar_t>();
        a.s_image = strides4i(image);
        a.flow = flow.const_data_ptr<scalar_t>();
        a.s_flow = strides4i(flow);
        if (kBlend) {
          a.texture = texture->const_data_ptr<scalar_t>();
          a.s_texture = strides4i(*texture);
          a.mask = mask->const_data_ptr<scalar_t>();
          a.s_mask = strides4i(*mask);
        }
        a.out = out.mutable_data_ptr<scalar_t>();
        a.s_out = strides4i(out);
        a.C = static_cast<int32_t>(C);
        a.H = static_cast<int32_t>(H);
        a.W = static_cast<int32_t>(W);
        a.h = static_cast<int32_t>(flow.size(2));
        a.w = static_cast<int32_t>(flow.size(3));
        a.tiles_x = static_cast<int32_t>(tl.tiles_x);
        a.tiles_y = static_cast<int32_t>(tl.tiles_y);
        a.padding = padding;
        const int64_t elem = static_cast<int64_t>(sizeof(scalar_t));
        const bool vec4 = vec4_ok(image, elem) && vec4_ok(out, elem);
        forward_tiled<scalar_t, acc_t, kBlend>(a, vec4, tl, stream);
      } else {
        const auto in = warp_inputs<scalar_t>(image, flow, texture, mask, padding, interp);
        detail::warp_forward_cuda_kernel<scalar_t, acc_t, kBlend><<<num_blocks(total), kThreads, 0, stream>>>(
            in, out.mutable_data_ptr<scalar_t>(), strides4(out), total);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
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
    const c10::cuda::CUDAGuard guard(image.device());
    const int64_t N = image.size(0), C = image.size(1), H = image.size(2), W = image.size(3);
    const int64_t total = N * H * W;
    const bool generic = force_generic();
    const bool deterministic = need[0] && at::globalContext().deterministicAlgorithms();
    const auto fmt = image.suggest_memory_format();
    const Tiling tl = tiling(N, H, W);
    // Bicubic taps reach two pixels beyond the tiles' one-pixel halo: the generic kernels.
    const bool tiled = !generic && setup.interp == detail::Interp::Bilinear && tl.usable;
    // The image gradient, once computed; zeros when there is nothing to scatter.
    at::Tensor grad_image;
    const bool image_grad = need[0] && image.numel() > 0;

    // total > 0 (not total * C): with C == 0 the flow and mask gradients are still written (0).
    if (total > 0 && (image_grad || need[1] || need[2] || need[3])) {
      const auto stream = c10::cuda::getCurrentCUDAStream();
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "fastwarp_backward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        using FloatAcc = detail::FloatAccum<acc_t>;
        const auto in = warp_inputs<scalar_t>(image, flow, texture, mask, setup.padding, setup.interp);
        detail::WarpGrads<scalar_t, acc_t> g = setup.grads<scalar_t, acc_t>();
        const scalar_t* go = grad_output.const_data_ptr<scalar_t>();
        const Strides4 s_go = strides4(grad_output);

        if (!image_grad) {  // flow, texture and mask gradients only: no scatter
          if (tiled) {
            launch_backward_tiled<scalar_t, acc_t, kBlend, FloatAcc>(in, go, s_go, g, nullptr, Strides4{}, FloatAcc{},
                                                                     false, false, tl, stream);
          } else {
            detail::warp_backward_cuda_kernel<scalar_t, acc_t, kBlend><<<num_blocks(total), kThreads, 0, stream>>>(
                in, go, s_go, g, total);
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          }
          return;
        }

        if (deterministic) {
          if constexpr (std::is_same_v<acc_t, float>) {
            // The scale needs one synchronisation, which a CUDA graph capture forbids.
            const bool capturing =
                c10::cuda::currentStreamCaptureStatusMayInitCtx() != c10::cuda::CaptureStatus::None;
            const detail::FixedPointScale scale =
                tiled && !capturing ? fixed_point_scale<scalar_t>(grad_output, kBlend ? mask : nullptr, H * W, stream)
                                    : detail::FixedPointScale{false, 0};
            if (scale.ok) {
              at::Tensor q = zeros_in_format(image.sizes(), image.options().dtype(at::kLong), fmt);
              auto* qp = reinterpret_cast<unsigned long long*>(q.mutable_data_ptr<int64_t>());
              g.image = reinterpret_cast<acc_t*>(qp);  // warp_backward_pixel only tests it for null
              g.s_image = strides4(q);
              const detail::FixedAccum accum{std::ldexp(1.0f, scale.exponent)};
              launch_backward_tiled<scalar_t, acc_t, kBlend, detail::FixedAccum>(
                  in, go, s_go, g, qp, strides4(q), accum, true, q.stride(1) == 1 && C > 1, tl, stream);
              grad_image = at::empty(image.sizes(), image.options().memory_format(fmt));
              TORCH_INTERNAL_ASSERT(grad_image.strides() == q.strides() && q.is_non_overlapping_and_dense());
              const int64_t numel = q.numel();
              detail::fixed_point_to_scalar_kernel<scalar_t><<<num_blocks(numel), kThreads, 0, stream>>>(
                  qp, grad_image.mutable_data_ptr<scalar_t>(), std::ldexp(1.0f, -scale.exponent), numel);
              C10_CUDA_KERNEL_LAUNCH_CHECK();
              return;
            }
          }
          // Record path: [N*H*W, C] rows that a sort-based index_put_ fills in a fixed order.
          at::Tensor acc = at::zeros({N * H * W, C}, image.options().dtype(setup.acc_type));
          const at::Tensor acc_nchw = acc.view({N, H, W, C}).permute({0, 3, 1, 2});
          g.image = acc.mutable_data_ptr<acc_t>();
          g.s_image = strides4(acc_nchw);
          const int64_t taps = detail::taps_per_pixel(setup.interp);
          at::Tensor rec_index = at::empty({total * taps}, image.options().dtype(at::kLong));
          at::Tensor rec_value = at::empty({total * taps, C}, image.options().dtype(setup.acc_type));
          detail::warp_backward_record_cuda_kernel<scalar_t, acc_t, kBlend><<<num_blocks(total), kThreads, 0, stream>>>(
              in, go, s_go, g, rec_index.mutable_data_ptr<int64_t>(), rec_value.mutable_data_ptr<acc_t>(), total);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
          acc.index_put_({rec_index}, rec_value, /*accumulate=*/true);
          grad_image = finish_grad_image(acc_nchw, image);
          return;
        }

        // Atomic path: an acc_t buffer in the image's memory format.
        at::Tensor acc = zeros_in_format(image.sizes(), image.options().dtype(setup.acc_type), fmt);
        g.image = acc.mutable_data_ptr<acc_t>();
        g.s_image = strides4(acc);
        if (tiled) {
          // float64 (not a performance target) keeps to global atomics.
          launch_backward_tiled<scalar_t, acc_t, kBlend, FloatAcc>(in, go, s_go, g, g.image, g.s_image, FloatAcc{},
                                                                   std::is_same_v<acc_t, float>,
                                                                   acc.stride(1) == 1 && C > 1, tl, stream);
        } else {
          detail::warp_backward_cuda_kernel<scalar_t, acc_t, kBlend><<<num_blocks(total), kThreads, 0, stream>>>(
              in, go, s_go, g, total);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
        grad_image = finish_grad_image(acc, image);
      });
    }
    if (need[0] && !grad_image.defined()) grad_image = zeros_in_format(image.sizes(), image.options(), fmt);
    if (!need[0]) grad_image = setup.none();
    setup.finish<CudaBackend>();
    return {grad_image, setup.grad_flow, setup.grad_texture, setup.grad_mask};
  }

  static void upsample_adjoint(const at::Tensor& grad_hi, const at::Tensor& grad_lo) {
    const int64_t total = grad_lo.numel();
    if (total == 0) return;
    const int64_t H = grad_hi.size(2), W = grad_hi.size(3);
    const auto stream = c10::cuda::getCurrentCUDAStream();
    const bool generic = force_generic();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_lo.scalar_type(), "fastwarp_adjoint_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const int64_t table_bytes = (H + W) * static_cast<int64_t>(sizeof(detail::UpTab<acc_t>));
      if (!generic && table_bytes <= kMaxTableBytes) {
        detail::upsample_adjoint_table_kernel<scalar_t, acc_t><<<num_blocks(total), kThreads, table_bytes, stream>>>(
            grad_hi.const_data_ptr<scalar_t>(), strides4(grad_hi), grad_lo.mutable_data_ptr<scalar_t>(),
            strides4(grad_lo), grad_lo.size(1), grad_lo.size(2), grad_lo.size(3), H, W, total);
      } else {
        detail::upsample_adjoint_cuda_kernel<scalar_t, acc_t><<<num_blocks(total), kThreads, 0, stream>>>(
            grad_hi.const_data_ptr<scalar_t>(), strides4(grad_hi), grad_lo.mutable_data_ptr<scalar_t>(),
            strides4(grad_lo), grad_lo.size(1), grad_lo.size(2), grad_lo.size(3), H, W, total);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fastwarp, CUDA, m) { WarpEntryPoints<CudaBackend>::register_kernels(m); }

}  // namespace fastwarp
