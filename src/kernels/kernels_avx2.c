/* kernels_avx2.c: AVX2 + FMA + F16C kernels (placeholder until the SIMD variants land). */
#include "kernels/kernels_impl.h"

void kernels_avx2_fill(nuri_kernel_traits *tab)
{
    (void)tab;
}
