/* randn_avx2.c: nuri_randn (randn.h) in 4 lanes; compiled with AVX2 (the caller checks the CPU). */
#include "model/randn.h"

#include <immintrin.h>

#define RANDN_W 4
#define RANDN_SQRT(x) ((randn_vd)_mm256_sqrt_pd((__m256d)(x)))
#define RANDN_NAME nuri_randn_avx2
#include "model/randn_impl.h"
