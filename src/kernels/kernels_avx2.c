/*
 * kernels_avx2.c: the AVX2 + FMA + F16C kernels (the 256-bit code of kernels_x86.h, with int8
 * products by vpmaddubsw + vpmaddwd). Only called when nuri_cpu_isa() found AVX2.
 */
#include "kernels/kernels_x86.h"

void kernels_avx2_fill(nuri_kernel_traits *tab)
{
    kernels_x86_fill(tab);
}
