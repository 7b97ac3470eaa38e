// Compile check of the ATen-free device code: instantiates every kernel for every storage
// type, so `nvcc -c` catches CUDA errors on machines with no GPU and no torch headers.
// Not part of the extension build.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "warp_kernel.cuh"

namespace fastwarp {
namespace detail {

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

}  // namespace detail
}  // namespace fastwarp
