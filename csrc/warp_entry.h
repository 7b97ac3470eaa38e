// Glue every backend of fastwarp's ops shares: the op entry points (one per schema) and
// the setup of a backward call. A backend is a struct with
//   template <bool kBlend> static at::Tensor forward(const char* op, image, flow,
//                                                    const at::Tensor* texture, const at::Tensor* mask,
//                                                    c10::string_view padding_mode, c10::string_view mode);
//   template <bool kBlend> static std::array<at::Tensor, 4> backward(const char* op, grad_output, image, flow,
//                                                    texture, mask, padding_mode, mode, std::array<bool, 4> need);
// (texture and mask are null for plain warp) and
//   static void upsample_adjoint(const at::Tensor& grad_hi, const at::Tensor& grad_lo);
// (the gradient of the bilinear upsampling, detail::upsample_adjoint_at at every element
// of grad_lo), and registers itself with WarpEntryPoints<Backend>::register_kernels(m) in
// its TORCH_LIBRARY_IMPL block.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <array>
#include <tuple>

#include "warp_checks.h"

namespace fastwarp {

// A validated backward call with its per-pixel gradients (flow, texture, mask) allocated;
// the image gradient is each backend's own business (a scatter). A gradient not asked for
// is an empty tensor of shape [0], a fresh one each (the schema's outputs must not alias).
//
// When flow, texture and mask are smaller than the image (resolution independence), the
// kernels write their per-output-pixel gradients into H x W buffers (`*_hi`, in the
// accumulation dtype: float32 for half/bfloat16) and finish() reduces each onto its h x w
// tensor with the backend's upsample_adjoint, still in that dtype, then rounds once to the
// tensor's dtype: half precision sums in float32 until the final store, as the Triton
// backend and the image gradient do.
struct BackwardSetup {
  detail::Padding padding;
  detail::Interp interp;
  at::ScalarType acc_type;  // float32 for half/bfloat16 inputs
  at::Tensor grad_flow, grad_texture, grad_mask;
  at::Tensor flow_hi, texture_hi, mask_hi;  // defined only when the grid is smaller; acc_type
  at::Tensor options_source;

  at::Tensor none() const { return options_source.new_empty({0}); }

  template <typename scalar_t, typename acc_t>
  detail::WarpGrads<scalar_t, acc_t> grads() const {
    detail::WarpGrads<scalar_t, acc_t> g{};
    // The kernels write the gradient itself (scalar_t) or its H x W buffer (acc_t).
    auto bind = [](const at::Tensor& grad, const at::Tensor& hi, scalar_t** p, acc_t** p_acc, detail::Strides4* s) {
      if (grad.numel() == 0) return;
      if (hi.defined()) {
        *p_acc = hi.mutable_data_ptr<acc_t>();
        *s = strides4(hi);
      } else {
        *p = grad.mutable_data_ptr<scalar_t>();
        *s = strides4(grad);
      }
    };
    bind(grad_flow, flow_hi, &g.flow, &g.flow_acc, &g.s_flow);
    bind(grad_texture, texture_hi, &g.texture, &g.texture_acc, &g.s_texture);
    bind(grad_mask, mask_hi, &g.mask, &g.mask_acc, &g.s_mask);
    return g;
  }

  // After the kernels: the h x w gradients from their H x W buffers.
  template <typename Backend>
  void finish() const {
    reduce<Backend>(flow_hi, grad_flow);
    reduce<Backend>(texture_hi, grad_texture);
    reduce<Backend>(mask_hi, grad_mask);
  }

 private:
  template <typename Backend>
  static void reduce(const at::Tensor& hi, const at::Tensor& grad) {
    if (!hi.defined()) return;
    if (hi.scalar_type() == grad.scalar_type()) {
      Backend::upsample_adjoint(hi, grad);
      return;
    }
    // Half precision: the adjoint in the accumulation dtype, then one rounding.
    at::Tensor lo = at::empty_like(grad, grad.options().dtype(hi.scalar_type()));
    Backend::upsample_adjoint(hi, lo);
    grad.copy_(lo);
  }
};

inline BackwardSetup setup_backward(const char* op, const at::Tensor& grad_output, const at::Tensor& image,
                                    const at::Tensor& flow, const at::Tensor* texture, const at::Tensor* mask,
                                    c10::string_view padding_mode, c10::string_view mode, std::array<bool, 4> need) {
  BackwardSetup s;
  s.padding = check_warp_args(op, image, flow, texture, mask, padding_mode, mode, &s.interp);
  TORCH_CHECK_VALUE(grad_output.sizes() == image.sizes(), op, ": grad_output must have the output's shape ",
                    shape_str(image), ", got ", shape_str(grad_output));
  TORCH_CHECK_TYPE(grad_output.scalar_type() == image.scalar_type(), op,
                   ": grad_output.dtype must match image.dtype (", image.scalar_type(), "), got ",
                   grad_output.scalar_type());
  s.acc_type = at::toOpMathType(image.scalar_type());
  s.options_source = image;
  s.grad_flow = need[1] ? at::empty_like(flow) : s.none();
  s.grad_texture = (texture != nullptr && need[2]) ? at::empty_like(*texture) : s.none();
  s.grad_mask = (mask != nullptr && need[3]) ? at::empty_like(*mask) : s.none();
  if (flow.size(2) != image.size(2) || flow.size(3) != image.size(3)) {
    const int64_t N = image.size(0), H = image.size(2), W = image.size(3);
    const auto opts = image.options().dtype(s.acc_type).memory_format(image.suggest_memory_format());
    if (s.grad_flow.numel() > 0) s.flow_hi = at::empty({N, 2, H, W}, opts);
    if (s.grad_texture.numel() > 0) s.texture_hi = at::empty({N, image.size(1), H, W}, opts);
    if (s.grad_mask.numel() > 0) s.mask_hi = at::empty({N, 1, H, W}, opts);
  }
  return s;
}

// The image gradient from its accumulation buffer: the image's dtype and memory format.
inline at::Tensor finish_grad_image(const at::Tensor& acc, const at::Tensor& image) {
  return acc.to(image.scalar_type()).contiguous(image.suggest_memory_format());
}

template <typename Backend>
struct WarpEntryPoints {
  static at::Tensor warp(const at::Tensor& image, const at::Tensor& flow, c10::string_view padding_mode, c10::string_view mode) {
    return Backend::template forward<false>("fastwarp.warp", image, flow, nullptr, nullptr, padding_mode, mode);
  }

  static at::Tensor warp_blend(const at::Tensor& image, const at::Tensor& flow, const at::Tensor& texture,
                               const at::Tensor& mask, c10::string_view padding_mode, c10::string_view mode) {
    return Backend::template forward<true>("fastwarp.warp_blend", image, flow, &texture, &mask, padding_mode, mode);
  }

  static std::tuple<at::Tensor, at::Tensor> warp_backward(const at::Tensor& grad_output, const at::Tensor& image,
                                                          const at::Tensor& flow, c10::string_view padding_mode, c10::string_view mode,
                                                          std::array<bool, 2> output_mask) {
    auto g = Backend::template backward<false>("fastwarp.warp_backward", grad_output, image, flow, nullptr, nullptr,
                                               padding_mode, mode, {output_mask[0], output_mask[1], false, false});
    return {g[0], g[1]};
  }

  static std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> warp_blend_backward(
      const at::Tensor& grad_output, const at::Tensor& image, const at::Tensor& flow, const at::Tensor& texture,
      const at::Tensor& mask, c10::string_view padding_mode, c10::string_view mode, std::array<bool, 4> output_mask) {
    auto g = Backend::template backward<true>("fastwarp.warp_blend_backward", grad_output, image, flow, &texture,
                                              &mask, padding_mode, mode, output_mask);
    return {g[0], g[1], g[2], g[3]};
  }

  static void register_kernels(torch::Library& m) {
    m.impl("warp", &warp);
    m.impl("warp_backward", &warp_backward);
    m.impl("warp_blend", &warp_blend);
    m.impl("warp_blend_backward", &warp_blend_backward);
  }
};

// The frame-space composite's ops (warp_theta, warp_blend_theta and their backward ops),
// for a backend with
//   template <bool kBlend> static at::Tensor theta_forward(op, image, flow, texture, mask, theta, padding_mode, mode);
//   template <bool kBlend> static std::array<at::Tensor, 4> theta_backward(op, grad_output, image, flow,
//                                                    texture, mask, theta, padding_mode, mode, need);
template <typename Backend>
struct ThetaEntryPoints {
  static at::Tensor warp(const at::Tensor& image, const at::Tensor& flow, const at::Tensor& theta,
                         c10::string_view padding_mode, c10::string_view mode) {
    return Backend::template theta_forward<false>("fastwarp.warp", image, flow, nullptr, nullptr, theta, padding_mode, mode);
  }

  static at::Tensor warp_blend(const at::Tensor& image, const at::Tensor& flow, const at::Tensor& texture,
                               const at::Tensor& mask, const at::Tensor& theta, c10::string_view padding_mode, c10::string_view mode) {
    return Backend::template theta_forward<true>("fastwarp.warp_blend", image, flow, &texture, &mask, theta,
                                                 padding_mode, mode);
  }

  static std::tuple<at::Tensor, at::Tensor> warp_backward(const at::Tensor& grad_output, const at::Tensor& image,
                                                          const at::Tensor& flow, const at::Tensor& theta,
                                                          c10::string_view padding_mode, c10::string_view mode,
                                                          std::array<bool, 2> output_mask) {
    auto g = Backend::template theta_backward<false>("fastwarp.warp_backward", grad_output, image, flow, nullptr,
                                                     nullptr, theta, padding_mode, mode,
                                                     {output_mask[0], output_mask[1], false, false});
    return {g[0], g[1]};
  }

  static std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> warp_blend_backward(
      const at::Tensor& grad_output, const at::Tensor& image, const at::Tensor& flow, const at::Tensor& texture,
      const at::Tensor& mask, const at::Tensor& theta, c10::string_view padding_mode, c10::string_view mode,
      std::array<bool, 4> output_mask) {
    auto g = Backend::template theta_backward<true>("fastwarp.warp_blend_backward", grad_output, image, flow,
                                                    &texture, &mask, theta, padding_mode, mode, output_mask);
    return {g[0], g[1], g[2], g[3]};
  }

  static void register_kernels(torch::Library& m) {
    m.impl("warp_theta", &warp);
    m.impl("warp_theta_backward", &warp_backward);
    m.impl("warp_blend_theta", &warp_blend);
    m.impl("warp_blend_theta_backward", &warp_blend_backward);
  }
};

// The checks of a theta backward call (the image floating), then grad_output's shape and
// dtype; returns theta as CPU doubles.
inline at::Tensor check_theta_backward(const char* op, const at::Tensor& grad_output, const at::Tensor& image,
                                       const at::Tensor& flow, const at::Tensor* texture, const at::Tensor* mask,
                                       const at::Tensor& theta, c10::string_view padding_mode, c10::string_view mode,
                                       detail::Padding* padding, detail::Interp* interp) {
  at::Tensor host = check_theta_args(op, image, flow, texture, mask, theta, padding_mode, mode, padding, interp, false);
  TORCH_CHECK_VALUE(grad_output.sizes() == image.sizes(), op, ": grad_output must have the output's shape ",
                    shape_str(image), ", got ", shape_str(grad_output));
  TORCH_CHECK_TYPE(grad_output.scalar_type() == image.scalar_type(), op,
                   ": grad_output.dtype must match image.dtype (", image.scalar_type(), "), got ",
                   grad_output.scalar_type());
  return host;
}

// The theta backward's results from its accumulated image gradient (acc dtype, the image's
// layout, or undefined) and grid gradients ([N, 3 + C, h, w]: flow dx, dy, mask, texture;
// or undefined): each in its tensor's dtype and memory format, empty where not asked for.
inline std::array<at::Tensor, 4> finish_theta_grads(const at::Tensor& grad_image, const at::Tensor& grid,
                                                    const at::Tensor& image, const at::Tensor& flow,
                                                    const at::Tensor* texture, const at::Tensor* mask,
                                                    std::array<bool, 4> need) {
  auto none = [&] { return image.new_empty({0}); };
  auto part = [&](const at::Tensor& like, int64_t start, int64_t length) {
    return grid.narrow(1, start, length).to(like.scalar_type()).contiguous(like.suggest_memory_format());
  };
  const int64_t C = image.size(1);
  return {need[0] ? grad_image.to(image.scalar_type()).contiguous(image.suggest_memory_format()) : none(),
          need[1] ? part(flow, 0, 2) : none(),
          (texture != nullptr && need[2]) ? part(*texture, 3, C) : none(),
          (mask != nullptr && need[3]) ? part(*mask, 2, 1) : none()};
}

}  // namespace fastwarp
