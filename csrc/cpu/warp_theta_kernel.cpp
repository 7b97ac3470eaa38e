// CPU kernels of the frame-space composite: fastwarp::warp_theta and
// fastwarp::warp_blend_theta, forward and backward (docs/design.md, "Frame-space composite";
// per-pixel math in ../warp_theta.h).
//
// Forward: the output starts as a copy of the image (so every pixel outside the grid's
// footprint is the image, bit for bit); only the footprint's bounding box is visited, one
// task per block of rows. A uint8 image (an OpenCV frame viewed as channels_last
// [1, 3, H, W]) takes float32 maps and float32 math, rounded to the nearest integer.
// Backward (floating images): every pixel, rows split across threads, each thread
// scattering into its own zeroed buffers (image gradient and grid gradients), summed in a
// fixed order afterwards, so the result is deterministic.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <tuple>
#include <type_traits>

#include "../warp_entry.h"
#include "warp_simd.h"

namespace fastwarp {
namespace {

using detail::Strides4;

// Rows per task. The forward's vectorised rows take ~10 ns a pixel: a task of 2^17 pixels
// (a face of ~360 px runs on one thread) costs far more than waking a thread, while on the
// real-time path, where ONNX Runtime's and MediaPipe's threads share the cores, handing a
// small face to a second thread made 1 ms composites take 13 ms at the 95th percentile.
int64_t theta_grain(int64_t width, int64_t pixels = 16384) {
  return std::max<int64_t>(1, pixels / std::max<int64_t>(width, 1));
}

// Whether the AVX2 row kernel serves this call: float32 maps, a float32 or uint8 image
// (uint8: dense, as its byte gathers read up to 3 bytes before a tap), border padding,
// both image sides >= 2, every offset within int32; bilinear or bicubic image taps.
template <typename img_t, typename map_t>
bool theta_simd(const detail::ThetaInputs<img_t, map_t>& in, const Strides4& so, bool dense) {
  constexpr bool types = std::is_same<map_t, float>::value &&
                         (std::is_same<img_t, float>::value || std::is_same<img_t, uint8_t>::value);
  if (!types || !cpu::simd_available() || in.padding != detail::Padding::Border || in.H < 2 || in.W < 2) return false;
  if (std::is_same<img_t, uint8_t>::value && !(dense && in.H * in.W >= 4)) return false;
  const int64_t ch = in.C - 1;
  auto fits = [](int64_t v) { return v >= 0 && v < (int64_t(1) << 31) - 1; };
  return fits((in.H - 1) * in.s_image.h + (in.W - 1) * in.s_image.w + ch * in.s_image.c) &&
         fits((in.h - 1) * in.s_flow.h + (in.w - 1) * in.s_flow.w + in.s_flow.c) &&
         (in.mask == nullptr || (fits((in.h - 1) * in.s_mask.h + (in.w - 1) * in.s_mask.w) &&
                                 fits((in.h - 1) * in.s_texture.h + (in.w - 1) * in.s_texture.w +
                                      ch * in.s_texture.c))) &&
         fits(std::max(so.c, so.w) * std::max<int64_t>(in.W, in.C));
}

template <typename img_t, typename map_t>
cpu::ThetaRowArgs theta_row_args(const detail::ThetaInputs<img_t, map_t>& in, const detail::GridMap<float>& gm,
                                 int64_t n) {
  cpu::ThetaRowArgs r{};
  r.image = in.image + n * in.s_image.n;
  r.u8 = std::is_same<img_t, uint8_t>::value;
  r.s_c = in.s_image.c, r.s_h = in.s_image.h, r.s_w = in.s_image.w;
  r.C = in.C, r.H = in.H, r.W = in.W;
  r.flow = reinterpret_cast<const float*>(in.flow + n * in.s_flow.n);
  r.f_s_c = in.s_flow.c, r.f_s_h = in.s_flow.h, r.f_s_w = in.s_flow.w;
  if (in.mask != nullptr) {
    r.mask = reinterpret_cast<const float*>(in.mask + n * in.s_mask.n);
    r.m_s_h = in.s_mask.h, r.m_s_w = in.s_mask.w;
    r.texture = reinterpret_cast<const float*>(in.texture + n * in.s_texture.n);
    r.t_s_c = in.s_texture.c, r.t_s_h = in.s_texture.h, r.t_s_w = in.s_texture.w;
  }
  r.h = in.h, r.w = in.w;
  const float t[6] = {gm.a00, gm.a01, gm.a02, gm.a10, gm.a11, gm.a12};
  const float inv[4] = {gm.i00, gm.i01, gm.i10, gm.i11};
  std::copy(t, t + 6, r.t);
  std::copy(inv, inv + 4, r.inv);
  r.cubic = in.interp == detail::Interp::Bicubic;
  return r;
}

template <typename img_t, typename map_t, bool kBlend>
void forward_impl(const detail::ThetaInputs<img_t, map_t>& in, at::Tensor& out, bool dense) {
  using acc_t = at::opmath_type<map_t>;
  img_t* o = out.mutable_data_ptr<img_t>();
  const Strides4 so = strides4(out);
  const bool simd = theta_simd(in, so, dense);
  if (simd) cpu::note_simd_call();
  for (int64_t n = 0; n < in.N; ++n) {
    const double* t = in.theta + 6 * n;
    const auto gm = detail::GridMap<acc_t>::make(t);
    int64_t x0, x1, y0, y1;
    detail::footprint_box(t, in.h, in.w, in.H, in.W, &x0, &x1, &y0, &y1);
    if (x1 <= x0 || y1 <= y0) continue;
    at::parallel_for(y0, y1, theta_grain(x1 - x0, simd ? (1 << 17) : 16384), [&](int64_t begin, int64_t end) {
      if (simd) {
        cpu::ThetaRowArgs r = theta_row_args(in, detail::GridMap<float>::make(t), n);
        r.x0 = x0, r.x1 = x1, r.o_s_c = so.c, r.o_s_w = so.w;
        for (int64_t y = begin; y < end; ++y) {
          r.y = y;
          r.out = o + n * so.n + y * so.h;
          cpu::theta_forward_row_avx2(r);
        }
        return;
      }
      for (int64_t y = begin; y < end; ++y)
        for (int64_t x = x0; x < x1; ++x) detail::theta_forward_pixel<img_t, map_t, acc_t, kBlend>(in, gm, o, so, n, y, x);
    });
  }
}

template <typename acc_t>
struct PlaneAdd {  // image gradient: one thread's buffer [C, H, W] (channels_last or not)
  acc_t* base;
  Strides4 s;
  void operator()(int64_t /*n*/, int64_t c, int64_t ty, int64_t tx, acc_t v) const {
    base[c * s.c + ty * s.h + tx * s.w] += v;
  }
};

template <typename acc_t>
struct GridBufAdd {  // grid gradients: one thread's buffer [K, h, w], K = 3 + C
  acc_t* base;
  int64_t h, w;
  bool flow, mask, texture;
  void operator()(int64_t /*n*/, int64_t k, int64_t gy, int64_t gx, acc_t v) const {
    if ((k < 2 && !flow) || (k == 2 && !mask) || (k >= 3 && !texture)) return;
    base[(k * h + gy) * w + gx] += v;
  }
};

struct CpuThetaBackend {
  template <bool kBlend>
  static at::Tensor theta_forward(const char* op, const at::Tensor& image, const at::Tensor& flow,
                                  const at::Tensor* texture, const at::Tensor* mask, const at::Tensor& theta,
                                  c10::string_view padding_mode, c10::string_view mode) {
    detail::Padding padding;
    detail::Interp interp;
    const at::Tensor host =
        check_theta_args(op, image, flow, texture, mask, theta, padding_mode, mode, &padding, &interp, true);
    at::Tensor out = image.clone(at::MemoryFormat::Preserve);  // a frame keeps its layout
    if (out.numel() == 0) return out;
    const double* t = host.const_data_ptr<double>();
    const bool dense = image.is_non_overlapping_and_dense();
    if (image.scalar_type() == at::kByte) {
      forward_impl<uint8_t, float, kBlend>(theta_inputs<uint8_t, float>(image, flow, texture, mask, t, padding, interp), out,
                                           dense);
      return out;
    }
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "fastwarp_theta_forward_cpu", [&] {
      forward_impl<scalar_t, scalar_t, kBlend>(theta_inputs<scalar_t, scalar_t>(image, flow, texture, mask, t, padding, interp),
                                               out, dense);
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
    const at::ScalarType acc_type = at::toOpMathType(image.scalar_type());
    const int64_t N = image.size(0), C = image.size(1), H = image.size(2), W = image.size(3);
    const int64_t h = flow.size(2), w = flow.size(3), K = 3 + C;
    const bool need_flow = need[1], need_tex = kBlend && need[2], need_mask = kBlend && need[3];
    const auto fmt = image.suggest_memory_format();
    const auto acc_opts = image.options().dtype(acc_type);
    at::Tensor gimage = need[0] ? at::zeros({N, C, H, W}, acc_opts).contiguous(fmt) : at::Tensor();
    at::Tensor ggrid = (need_flow || need_tex || need_mask) ? at::zeros({N, K, h, w}, acc_opts) : at::Tensor();
    if (N * C * H * W > 0 && (need[0] || ggrid.defined())) {
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "fastwarp_theta_backward_cpu",
                                      [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto in = theta_inputs<scalar_t, scalar_t>(image, flow, texture, mask, host.const_data_ptr<double>(),
                                                         padding, interp);
        const scalar_t* go = grad_output.const_data_ptr<scalar_t>();
        const Strides4 s_go = strides4(grad_output);
        const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
        // Per-thread buffers, zeroed; a thread's rows scatter only into its own.
        at::Tensor img_parts = need[0] ? at::zeros({threads, C, H, W}, acc_opts).contiguous(fmt) : at::Tensor();
        at::Tensor grid_parts = ggrid.defined() ? at::zeros({threads, K, h, w}, acc_opts) : at::Tensor();
        for (int64_t n = 0; n < N; ++n) {
          if (n > 0) {
            if (img_parts.defined()) img_parts.zero_();
            if (grid_parts.defined()) grid_parts.zero_();
          }
          const auto gm = detail::GridMap<acc_t>::make(in.theta + 6 * n);
          at::parallel_for(0, H, theta_grain(W), [&](int64_t begin, int64_t end) {
            const int64_t tid = at::get_thread_num();
            PlaneAdd<acc_t> image_add{nullptr, {}};
            acc_t scratch = acc_t(0);
            if (img_parts.defined()) {
              image_add.base = img_parts.mutable_data_ptr<acc_t>() + tid * img_parts.stride(0);
              image_add.s = Strides4{0, img_parts.stride(1), img_parts.stride(2), img_parts.stride(3)};
            } else {
              image_add.base = &scratch;  // not wanted: every tap lands on one discarded scalar
              image_add.s = Strides4{0, 0, 0, 0};
            }
            GridBufAdd<acc_t> grid_add{grid_parts.defined() ? grid_parts.mutable_data_ptr<acc_t>() + tid * K * h * w
                                                            : nullptr,
                                       h, w, need_flow, need_mask, need_tex};
            for (int64_t y = begin; y < end; ++y)
              for (int64_t x = 0; x < W; ++x)
                detail::theta_backward_pixel<scalar_t, acc_t, kBlend>(in, gm, go, s_go, n, y, x, need_flow, need_mask,
                                                                      image_add, grid_add);
          });
          if (need[0]) gimage.select(0, n).copy_(img_parts.sum(0));
          if (ggrid.defined()) ggrid.select(0, n).copy_(grid_parts.sum(0));
        }
      });
    }
    return finish_theta_grads(gimage, ggrid, image, flow, texture, mask, need);
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fastwarp, CPU, m) { ThetaEntryPoints<CpuThetaBackend>::register_kernels(m); }

}  // namespace fastwarp
