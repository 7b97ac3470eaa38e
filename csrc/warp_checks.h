// Argument checks shared by every backend of fastwarp's ops (CPU and CUDA).
//
// Each message names the argument, what was expected and what arrived, e.g.
// "fastwarp.warp: flow.shape[1] must be 2 (dx, dy), got 3". The Python fake kernels
// (fastwarp/ops/checks.py) raise the same messages, so eager and traced calls agree.
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <string>

#include "warp_math.h"
#include "warp_theta.h"

namespace fastwarp {

inline std::string shape_str(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) {
    if (i) s += ", ";
    s += std::to_string(t.size(i));
  }
  return s + "]";
}

inline detail::Padding parse_padding(const char* op, c10::string_view padding_mode) {
  if (padding_mode == "border") return detail::Padding::Border;
  if (padding_mode == "zeros") return detail::Padding::Zeros;
  TORCH_CHECK_VALUE(false, op, ": padding_mode must be 'border' or 'zeros', got '", std::string(padding_mode), "'");
}

inline detail::Interp parse_mode(const char* op, c10::string_view mode) {
  if (mode == "bilinear") return detail::Interp::Bilinear;
  if (mode == "bicubic") return detail::Interp::Bicubic;
  TORCH_CHECK_VALUE(false, op, ": mode must be 'bilinear' or 'bicubic', got '", std::string(mode), "'");
}

// `flow` is null when `t` is the flow itself (whose size may be at most the image's);
// texture and mask must have the flow's spatial size.
inline void check_tensor(const char* op, const char* name, const at::Tensor& t, const at::Tensor& image,
                         const at::Tensor* flow = nullptr) {
  TORCH_CHECK_VALUE(t.dim() == 4, op, ": ", name, " must be a 4-D tensor, got ", t.dim(), "-D with shape ",
                    shape_str(t));
  TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), op, ": ", name,
                   " must be a floating-point tensor (float16, bfloat16, float32 or float64), got ",
                   t.scalar_type());
  TORCH_CHECK_TYPE(t.scalar_type() == image.scalar_type(), op, ": ", name, ".dtype must match image.dtype (",
                   image.scalar_type(), "), got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.device() == image.device(), op, ": ", name, " must be on the image's device (",
                    image.device(), "), got ", t.device());
  TORCH_CHECK_VALUE(t.size(0) == image.size(0), op, ": batch mismatch: image has N=", image.size(0), " but ",
                    name, " has N=", t.size(0));
  if (flow == nullptr) {
    TORCH_CHECK_VALUE(t.size(2) >= 1 && t.size(2) <= image.size(2) && t.size(3) >= 1 && t.size(3) <= image.size(3),
                      op, ": flow's spatial size [h, w] must be at least [1, 1] and at most the image's [H, W] = [",
                      image.size(2), ", ", image.size(3), "], got [", t.size(2), ", ", t.size(3), "]");
  } else {
    TORCH_CHECK_VALUE(t.size(2) == flow->size(2) && t.size(3) == flow->size(3), op, ": ", name,
                      " must have the flow's spatial size [h, w] = [", flow->size(2), ", ", flow->size(3), "], got [",
                      t.size(2), ", ", t.size(3), "]");
  }
}

// Checks the arguments of warp (texture and mask undefined) or warp_blend.
inline detail::Padding check_warp_args(const char* op, const at::Tensor& image, const at::Tensor& flow,
                                       const at::Tensor* texture, const at::Tensor* mask,
                                       c10::string_view padding_mode, c10::string_view mode,
                                       detail::Interp* interp) {
  const detail::Padding padding = parse_padding(op, padding_mode);
  *interp = parse_mode(op, mode);
  TORCH_CHECK_VALUE(image.dim() == 4, op, ": image must be a 4-D tensor [N, C, H, W], got ", image.dim(),
                    "-D with shape ", shape_str(image));
  TORCH_CHECK_TYPE(at::isFloatingType(image.scalar_type()), op,
                   ": image must be a floating-point tensor (float16, bfloat16, float32 or float64), got ",
                   image.scalar_type());
  TORCH_CHECK_VALUE(image.size(2) >= 1 && image.size(3) >= 1, op,
                    ": image height and width must be at least 1, got shape ", shape_str(image));
  if (flow.dim() == 4) {
    TORCH_CHECK_VALUE(flow.size(1) == 2, op, ": flow.shape[1] must be 2 (dx, dy), got ", flow.size(1));
  }
  check_tensor(op, "flow", flow, image);
  if (texture != nullptr) {
    if (texture->dim() == 4) {
      TORCH_CHECK_VALUE(texture->size(1) == image.size(1), op, ": texture.shape[1] must equal image channels C=",
                        image.size(1), ", got ", texture->size(1));
    }
    check_tensor(op, "texture", *texture, image, &flow);
  }
  if (mask != nullptr) {
    if (mask->dim() == 4) {
      TORCH_CHECK_VALUE(mask->size(1) == 1, op, ": mask.shape[1] must be 1, got ", mask->size(1));
    }
    check_tensor(op, "mask", *mask, image, &flow);
  }
  return padding;
}

// The frame-space composite (`theta`, docs/design.md): the maps' grid has any size; the
// image may be uint8 (an OpenCV frame, inference only) with float32 maps. Returns theta
// as contiguous CPU doubles [N, 2, 3], after checking that each linear part is invertible.
inline at::Tensor check_theta_args(const char* op, const at::Tensor& image, const at::Tensor& flow,
                                   const at::Tensor* texture, const at::Tensor* mask, const at::Tensor& theta,
                                   c10::string_view padding_mode, c10::string_view mode, detail::Padding* padding,
                                   detail::Interp* interp, bool allow_uint8) {
  *padding = parse_padding(op, padding_mode);
  *interp = parse_mode(op, mode);
  TORCH_CHECK_VALUE(image.dim() == 4, op, ": image must be a 4-D tensor [N, C, H, W], got ", image.dim(),
                    "-D with shape ", shape_str(image));
  const bool u8 = image.scalar_type() == at::kByte;
  TORCH_CHECK_TYPE(at::isFloatingType(image.scalar_type()) || (u8 && allow_uint8), op,
                   ": image must be a floating-point tensor (float16, bfloat16, float32 or float64)",
                   allow_uint8 ? " or a uint8 frame" : "", ", got ", image.scalar_type());
  TORCH_CHECK_VALUE(image.size(2) >= 1 && image.size(3) >= 1, op,
                    ": image height and width must be at least 1, got shape ", shape_str(image));
  const at::ScalarType map_type = u8 ? at::kFloat : image.scalar_type();
  auto check_map = [&](const char* name, const at::Tensor& t, int64_t channels, const char* what) {
    TORCH_CHECK_VALUE(t.dim() == 4, op, ": ", name, " must be a 4-D tensor, got ", t.dim(), "-D with shape ",
                      shape_str(t));
    TORCH_CHECK_VALUE(t.size(1) == channels, op, ": ", name, ".shape[1] must be ", what, ", got ", t.size(1));
    TORCH_CHECK_TYPE(t.scalar_type() == map_type, op, ": ", name, ".dtype must ",
                     u8 ? "be float32 with a uint8 image" : "match image.dtype", " (", map_type, "), got ",
                     t.scalar_type());
    TORCH_CHECK_VALUE(t.device() == image.device(), op, ": ", name, " must be on the image's device (",
                      image.device(), "), got ", t.device());
    TORCH_CHECK_VALUE(t.size(0) == image.size(0), op, ": batch mismatch: image has N=", image.size(0), " but ",
                      name, " has N=", t.size(0));
    TORCH_CHECK_VALUE(t.size(2) == flow.size(2) && t.size(3) == flow.size(3) && t.size(2) >= 1 && t.size(3) >= 1,
                      op, ": ", name, " must have the flow's spatial size [h, w] = [", flow.size(2), ", ",
                      flow.size(3), "] (at least [1, 1]), got [", t.size(2), ", ", t.size(3), "]");
  };
  TORCH_CHECK_VALUE(flow.dim() == 4, op, ": flow must be a 4-D tensor, got ", flow.dim(), "-D with shape ",
                    shape_str(flow));
  check_map("flow", flow, 2, "2 (dx, dy)");
  if (texture != nullptr) {
    const std::string want = "the image's channels C=" + std::to_string(image.size(1));
    check_map("texture", *texture, image.size(1), want.c_str());
  }
  if (mask != nullptr) check_map("mask", *mask, 1, "1");
  TORCH_CHECK_VALUE(theta.dim() == 3 && theta.size(0) == image.size(0) && theta.size(1) == 2 && theta.size(2) == 3,
                    op, ": theta must have shape [N, 2, 3] = [", image.size(0), ", 2, 3], got ", shape_str(theta));
  TORCH_CHECK_TYPE(theta.scalar_type() == map_type || theta.scalar_type() == at::kDouble, op,
                   ": theta.dtype must be the maps' dtype (", map_type, ") or float64, got ", theta.scalar_type());
  TORCH_CHECK_VALUE(theta.device() == image.device(), op, ": theta must be on the image's device (", image.device(),
                    "), got ", theta.device());
  at::Tensor host = theta.to(at::kCPU, at::kDouble).contiguous();
  const double* t = host.const_data_ptr<double>();
  for (int64_t n = 0; n < host.size(0); ++n) {
    const double* tn = t + 6 * n;
    bool finite = true;
    for (int k = 0; k < 6; ++k) finite = finite && std::isfinite(tn[k]);
    const double det = tn[0] * tn[4] - tn[1] * tn[3];
    TORCH_CHECK_VALUE(finite && det != 0.0 && std::isfinite(det), op, ": theta[", n,
                      "] must be finite with an invertible linear part theta[", n, ", :, :2] (determinant ", det,
                      ")");
  }
  return host;
}

inline detail::Strides4 strides4(const at::Tensor& t) {
  return detail::Strides4{t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
}

// The fields WarpInputs and ThetaInputs share: pointers, strides and sizes of one call.
template <typename img_t, typename map_t, typename Inputs>
Inputs fill_inputs(const at::Tensor& image, const at::Tensor& flow, const at::Tensor* texture, const at::Tensor* mask,
                   detail::Padding padding, detail::Interp interp) {
  Inputs in{};
  in.image = image.const_data_ptr<img_t>();
  in.s_image = strides4(image);
  in.flow = flow.const_data_ptr<map_t>();
  in.s_flow = strides4(flow);
  if (texture != nullptr) {
    in.texture = texture->const_data_ptr<map_t>();
    in.s_texture = strides4(*texture);
  }
  if (mask != nullptr) {
    in.mask = mask->const_data_ptr<map_t>();
    in.s_mask = strides4(*mask);
  }
  in.N = image.size(0);
  in.C = image.size(1);
  in.H = image.size(2);
  in.W = image.size(3);
  in.h = flow.size(2);
  in.w = flow.size(3);
  in.padding = padding;
  in.interp = interp;
  return in;
}

template <typename scalar_t>
detail::WarpInputs<scalar_t> warp_inputs(const at::Tensor& image, const at::Tensor& flow, const at::Tensor* texture,
                                         const at::Tensor* mask, detail::Padding padding, detail::Interp interp) {
  return fill_inputs<scalar_t, scalar_t, detail::WarpInputs<scalar_t>>(image, flow, texture, mask, padding, interp);
}

// theta: CPU doubles [N, 6] (null for a kernel that reads theta from elsewhere).
template <typename img_t, typename map_t>
detail::ThetaInputs<img_t, map_t> theta_inputs(const at::Tensor& image, const at::Tensor& flow,
                                               const at::Tensor* texture, const at::Tensor* mask,
                                               const double* theta, detail::Padding padding, detail::Interp interp) {
  auto in = fill_inputs<img_t, map_t, detail::ThetaInputs<img_t, map_t>>(image, flow, texture, mask, padding, interp);
  in.theta = theta;
  return in;
}

// An output shaped like `like` in the image's memory format (channels_last stays so).
inline at::Tensor empty_like_format(const at::Tensor& like, const at::Tensor& image) {
  return at::empty(like.sizes(), like.options().memory_format(image.suggest_memory_format()));
}

}  // namespace fastwarp
