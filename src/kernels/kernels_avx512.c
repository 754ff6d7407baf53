/* kernels_avx512.c: AVX-512 (F/BW/VL/DQ/VNNI) kernels (placeholder until the SIMD variants land). */
#include "kernels/kernels_impl.h"

void kernels_avx512_fill(nuri_kernel_traits *tab)
{
    (void)tab;
}
