/*
 * kernels_avx512.c: the AVX-512 kernels (F/BW/VL/DQ + VNNI). The 256-bit code of kernels_x86.h is
 * compiled here with KERNELS_VNNI, so its int8 dot products use vpdpbusd; this file adds 512-bit
 * kernels where they pay. Only called when nuri_cpu_isa() found AVX-512 with VNNI.
 */
#define KERNELS_VNNI 1
#include "kernels/kernels_x86.h"

void kernels_avx512_fill(nuri_kernel_traits *tab)
{
    kernels_x86_fill(tab);
}
