/* randn_avx512.c: nuri_randn (randn.h) in 8 lanes; compiled with AVX-512 (the caller checks). */
#include "model/randn.h"

#include <immintrin.h>

#define RANDN_W 8
#define RANDN_SQRT(x) ((randn_vd)_mm512_sqrt_pd((__m512d)(x)))
#define RANDN_NAME nuri_randn_avx512
#include "model/randn_impl.h"
