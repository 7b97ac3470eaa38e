// Row kernels of the CPU backend, vectorised over output pixels (8 float32 lanes, AVX2 +
// FMA), with runtime dispatch: the extension is built for baseline x86-64, and
// simd_available() says whether this CPU can run the AVX2 functions (warp_simd.cpp, the
// only translation unit compiled for AVX2, through function target attributes).
//
// A row kernel computes one output row (n, y) of warp / warp_blend, or its backward, with
// the per-pixel semantics of ../warp_math.h (the scalar path, which the tests compare
// with the float64 reference), bilinear or (RowArgs::cubic) bicubic image taps. Flow, mask
// and texture come in as rows of W values at the image's resolution: either the tensors'
// own rows or rows the caller upsampled from the smaller grid (resolution independence),
// so the kernels never see the grid size.
//
// ATen-free: only pointers, element strides and sizes.
#pragma once

#include <stdint.h>

namespace fastwarp {
namespace cpu {

// True when the CPU supports AVX2 and FMA (checked once), unless the environment sets
// FASTWARP_CPU_SIMD=0 (the scalar path only: for tests and comparisons).
bool simd_available();

// Counts the kernel calls that chose the vectorised path (note_simd_call, from the host
// code's choice), so tests that compare the two paths can check that one of them really
// ran vectorised: torch.ops.fastwarp._cpu_simd_calls().
void note_simd_call();
int64_t simd_calls();

// A strided row of W float values: element x at p[x * stride].
struct RowIn {
  const float* p;
  int64_t stride;
};
struct RowOut {
  float* p;
  int64_t stride;
};

// One output row (n, y). Image plane c of the sample is at image + c * s_c, pixel (yy, xx)
// at yy * s_h + xx * s_w; every such offset must fit in int32 (see offsets_fit_int32).
struct RowArgs {
  const float* image;
  int64_t s_c, s_h, s_w;
  int64_t C, H, W;
  int64_t y;
  int padding;  // detail::Padding: 0 border, 1 zeros
  RowIn dx, dy;         // flow in image pixels (already scaled for a smaller grid)
  RowIn mask;           // warp_blend only, else p == nullptr
  const float* texture; // warp_blend only: channel c's row at texture + c * tex_s_c
  int64_t tex_s_c, tex_stride;
  bool cubic;  // mode="bicubic": the 4 x 4 taps of warp_math.h's CubicTaps
};

// out row of channel c at out + c * out_s_c, element x at x * out_stride.
void forward_row_avx2(const RowArgs& a, float* out, int64_t out_s_c, int64_t out_stride);

// Backward of one output row. grad_out like out. Image-gradient taps are added into
// grad_image (plane c at grad_image + c * gi_s_c, pixel at yy * gi_s_h + xx, i.e. the
// accumulation buffer is contiguous along x); null when not wanted. grad_flow_x/_y,
// grad_mask and grad_texture (plane c at + c * gt_s_c) receive this row's per-pixel
// gradients, scaled by flow_scale_x/_y for the flow; a null p means not wanted.
struct RowGrads {
  float* image;
  int64_t gi_s_c, gi_s_h;
  RowOut flow_x, flow_y, mask;
  float* texture;
  int64_t gt_s_c, gt_stride;
  float flow_scale_x, flow_scale_y;
};
void backward_row_avx2(const RowArgs& a, const float* grad_out, int64_t go_s_c, int64_t go_stride,
                       const RowGrads& g);

// The same for channels_last images (a.s_c == 1, a.s_w == C, C >= 2): vectorised over
// channels, four at a time, per pixel (the taps' coordinates still eight pixels at a
// time). out, grad_out and the image-gradient buffer are channels_last too (channel
// stride 1, pixel stride out_stride / go_stride / C); g.gi_s_h is the buffer's row stride.
void forward_row_nhwc_avx2(const RowArgs& a, float* out, int64_t out_stride);
void backward_row_nhwc_avx2(const RowArgs& a, const float* grad_out, int64_t go_stride, const RowGrads& g);

// The frame-space composite's forward (../warp_theta.h, theta_forward_pixel; bilinear or,
// with `cubic`, bicubic image taps) for pixels [x0, x1) of output row y of one image: border
// padding, image and output uint8 or float32 with float32 maps, every offset within int32
// (the caller checks), both image sides >= 2. Pixels outside the footprint are not
// written. warp_theta_simd.cpp.
struct ThetaRowArgs {
  const void* image;  // image n's element (0, 0, 0)
  bool u8;            // uint8 image and output, else float32
  int64_t s_c, s_h, s_w, C, H, W;
  const float* flow;  // image n's maps
  int64_t f_s_c, f_s_h, f_s_w;
  const float* mask;  // null for warp
  int64_t m_s_h, m_s_w;
  const float* texture;
  int64_t t_s_c, t_s_h, t_s_w;
  int64_t h, w;
  float t[6];    // theta, as GridMap<float> holds it
  float inv[4];  // L^-1: i00, i01, i10, i11
  int64_t y, x0, x1;
  void* out;  // output row y's element (c = 0, x = 0)
  int64_t o_s_c, o_s_w;
  bool cubic;  // mode="bicubic": the image's 4 x 4 taps (warp_theta.h's cubic branch)
};
void theta_forward_row_avx2(const ThetaRowArgs& a);

// Whether every tap offset of an image with these sizes and strides fits in int32 (the
// gathers index with 32-bit offsets).
inline bool offsets_fit_int32(int64_t H, int64_t W, int64_t s_h, int64_t s_w) {
  if (s_h < 0 || s_w < 0) return false;
  const int64_t max_off = (H - 1) * s_h + (W - 1) * s_w;
  return max_off < (int64_t(1) << 31) - 1;
}

}  // namespace cpu
}  // namespace fastwarp
