/*
 * kernels_iq_avx512.c: the IQ2 / IQ3 / IQ1 kernels of kernels_iq_x86.h compiled with AVX-512
 * VNNI (the prompt gemm's vpdpwssd on 512-bit registers). Only called when nuri_cpu_isa() found
 * AVX-512 with VNNI.
 */
#define KERNELS_VNNI 1
#include "kernels/kernels_iq_x86.h"

void kernels_iq_avx512_fill(nuri_kernel_traits *tab)
{
    kernels_iq_x86_fill(tab);
}
