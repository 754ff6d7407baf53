/*
 * kernels_iq_avx2.c: the AVX2 dot products of the IQ2 / IQ3 / IQ1 grid types (kernels_iq_x86.h,
 * int8 products by vpmaddubsw + vpmaddwd). Only called when nuri_cpu_isa() found AVX2.
 */
#include "kernels/kernels_iq_x86.h"

void kernels_iq_avx2_fill(nuri_kernel_traits *tab)
{
    kernels_iq_x86_fill(tab);
}
