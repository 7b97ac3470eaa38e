// Compile check of the ATen-free device code: instantiates every kernel for every storage
// type, so `nvcc -c` catches CUDA errors on machines with no GPU and no torch headers.
// Not part of the extension build.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "warp_fast.cuh"
#include "warp_kernel.cuh"

namespace fastwarp {
namespace detail {

// Generic kernels (warp_kernel.cuh).
#define FW_INSTANTIATE(scalar_t, acc_t)                                                                    \
  template __global__ void warp_forward_cuda_kernel<scalar_t, acc_t, false>(WarpInputs<scalar_t>, scalar_t*, \
                                                                            Strides4, int64_t);             \
  template __global__ void warp_forward_cuda_kernel<scalar_t, acc_t, true>(WarpInputs<scalar_t>, scalar_t*,  \
                                                                           Strides4, int64_t);              \
  template __global__ void warp_backward_cuda_kernel<scalar_t, acc_t, false>(                               \
      WarpInputs<scalar_t>, const scalar_t*, Strides4, WarpGrads<scalar_t, acc_t>, int64_t);                \
  template __global__ void warp_backward_cuda_kernel<scalar_t, acc_t, true>(                                \
      WarpInputs<scalar_t>, const scalar_t*, Strides4, WarpGrads<scalar_t, acc_t>, int64_t);                \
  template __global__ void warp_backward_record_cuda_kernel<scalar_t, acc_t, false>(                        \
      WarpInputs<scalar_t>, const scalar_t*, Strides4, WarpGrads<scalar_t, acc_t>, int64_t*, acc_t*, int64_t); \
  template __global__ void warp_backward_record_cuda_kernel<scalar_t, acc_t, true>(                         \
      WarpInputs<scalar_t>, const scalar_t*, Strides4, WarpGrads<scalar_t, acc_t>, int64_t*, acc_t*, int64_t); \
  template __global__ void upsample_adjoint_cuda_kernel<scalar_t, acc_t>(                                   \
      const scalar_t*, Strides4, scalar_t*, Strides4, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);

FW_INSTANTIATE(float, float)
FW_INSTANTIATE(double, double)
FW_INSTANTIATE(__half, float)
FW_INSTANTIATE(__nv_bfloat16, float)

// Tuned kernels (warp_fast.cuh), every combination the host launches.
#define FW_FWD_TILED(scalar_t, acc_t, blend, kC, kVec) \
  template __global__ void warp_forward_tiled_kernel<scalar_t, acc_t, blend, kC, kVec>(const TiledArgs<scalar_t>);

#define FW_BWD_TILED(scalar_t, acc_t, blend, Accum)                                                            \
  template __global__ void warp_backward_tiled_kernel<scalar_t, acc_t, blend, Accum>(                         \
      WarpInputs<scalar_t>, const scalar_t*, Strides4, WarpGrads<scalar_t, acc_t>, typename Accum::word*,     \
      Strides4, Accum, WindowParams, int32_t, int32_t);

#define FW_INSTANTIATE_FAST(scalar_t, acc_t)                                                                  \
  FW_FWD_TILED(scalar_t, acc_t, false, 0, 1)                                                                  \
  FW_FWD_TILED(scalar_t, acc_t, false, 1, 1)                                                                  \
  FW_FWD_TILED(scalar_t, acc_t, false, 3, 1)                                                                  \
  FW_FWD_TILED(scalar_t, acc_t, false, 4, 1)                                                                  \
  FW_FWD_TILED(scalar_t, acc_t, true, 0, 1)                                                                   \
  FW_FWD_TILED(scalar_t, acc_t, true, 1, 1)                                                                   \
  FW_FWD_TILED(scalar_t, acc_t, true, 3, 1)                                                                   \
  FW_FWD_TILED(scalar_t, acc_t, true, 4, 1)                                                                   \
  FW_BWD_TILED(scalar_t, acc_t, false, FloatAccum<acc_t>)                                                     \
  FW_BWD_TILED(scalar_t, acc_t, true, FloatAccum<acc_t>)                                                      \
  template __global__ void upsample_adjoint_table_kernel<scalar_t, acc_t>(                                    \
      const scalar_t*, Strides4, scalar_t*, Strides4, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);

// Storage types with float32 math: 4-channel vectors, the fixed-point deterministic
// backward and its reduction and conversion kernels.
#define FW_INSTANTIATE_FAST_FLOAT_MATH(scalar_t)                                                              \
  FW_FWD_TILED(scalar_t, float, false, 0, 4)                                                                  \
  FW_FWD_TILED(scalar_t, float, false, 4, 4)                                                                  \
  FW_FWD_TILED(scalar_t, float, true, 0, 4)                                                                   \
  FW_FWD_TILED(scalar_t, float, true, 4, 4)                                                                   \
  FW_BWD_TILED(scalar_t, float, false, FixedAccum)                                                            \
  FW_BWD_TILED(scalar_t, float, true, FixedAccum)                                                             \
  template __global__ void abs_max_bits_kernel<scalar_t>(const scalar_t*, int64_t, unsigned int*);            \
  template __global__ void fixed_point_to_scalar_kernel<scalar_t>(const unsigned long long*, scalar_t*, float, \
                                                                  int64_t);

FW_INSTANTIATE_FAST(float, float)
FW_INSTANTIATE_FAST(double, double)
FW_INSTANTIATE_FAST(__half, float)
FW_INSTANTIATE_FAST(__nv_bfloat16, float)

FW_INSTANTIATE_FAST_FLOAT_MATH(float)
FW_INSTANTIATE_FAST_FLOAT_MATH(__half)
FW_INSTANTIATE_FAST_FLOAT_MATH(__nv_bfloat16)

}  // namespace detail
}  // namespace fastwarp
