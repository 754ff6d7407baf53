/*
 * kernels.c: picks the kernels for this CPU: CPU feature detection (CPUID + XGETBV, capped by the
 * NURI_ISA environment variable) and one traits table per instruction set.
 *
 * The AVX2 and AVX-512 tables start as copies of the scalar one and the *_avx2.c / *_avx512.c files
 * override what they implement, so a missing variant falls back to the reference. A table is only
 * handed out when the CPU (and the OS, via XGETBV) supports its instructions.
 */
#include "kernels/kernels_impl.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define KERNELS_X86 1
#else
#define KERNELS_X86 0
#endif

/* ---- per-thread scratch ---- */

typedef struct scratch_set {
    uint8_t *buf[KERNELS_SCRATCH_COUNT];
} scratch_set;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static bool scratch_key_ok;

static void scratch_free(void *p)
{
    scratch_set *s = p;
    for (int i = 0; i < KERNELS_SCRATCH_COUNT; i++) free(s->buf[i]);
    free(s);
}

static void scratch_key_make(void)
{
    scratch_key_ok = pthread_key_create(&scratch_key, scratch_free) == 0;
}

uint8_t *kernels_thread_scratch(int which, size_t bytes)
{
    pthread_once(&scratch_once, scratch_key_make);
    if (!scratch_key_ok) return NULL;
    scratch_set *s = pthread_getspecific(scratch_key);
    if (!s) {
        if (!(s = calloc(1, sizeof *s))) return NULL;
        if (pthread_setspecific(scratch_key, s) != 0) {
            free(s);
            return NULL;
        }
    }
    if (!s->buf[which]) s->buf[which] = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    return s->buf[which];
}

/* ---- CPU features ---- */

#if KERNELS_X86
static uint64_t read_xcr0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (uint64_t)hi << 32 | lo;
}
#endif

/* The best ISA the hardware and OS support, ignoring NURI_ISA. */
static nuri_isa detect_isa(void)
{
#if KERNELS_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return NURI_ISA_SCALAR;
    bool osxsave = c & (1u << 27), avx = c & (1u << 28), fma = c & (1u << 12),
         f16c = c & (1u << 29);
    if (!osxsave || !avx) return NURI_ISA_SCALAR;
    uint64_t xcr0 = read_xcr0();
    if ((xcr0 & 0x6) != 0x6) return NURI_ISA_SCALAR; // OS saves SSE + AVX state
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return NURI_ISA_SCALAR;
    bool avx2 = b & (1u << 5), bmi2 = b & (1u << 8);
    if (!(avx2 && fma && f16c && bmi2)) return NURI_ISA_SCALAR;
    bool f = b & (1u << 16), dq = b & (1u << 17), bw = b & (1u << 30), vl = b & (1u << 31);
    bool vnni = c & (1u << 11);
    bool os512 = (xcr0 & 0xe0) == 0xe0; // opmask + upper ZMM state
    if (f && dq && bw && vl && vnni && os512) return NURI_ISA_AVX512;
    return NURI_ISA_AVX2;
#else
    return NURI_ISA_SCALAR;
#endif
}

static nuri_isa isa_cpu;  // set once by init()
static nuri_isa isa_used; // isa_cpu capped by NURI_ISA
static nuri_kernel_traits tables[3][NURI_TYPE_COUNT];
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init(void)
{
    isa_cpu = detect_isa();
    isa_used = isa_cpu;
    const char *env = getenv("NURI_ISA");
    if (env) {
        nuri_isa cap = isa_cpu;
        if (!strcmp(env, "scalar"))
            cap = NURI_ISA_SCALAR;
        else if (!strcmp(env, "avx2"))
            cap = NURI_ISA_AVX2;
        else if (!strcmp(env, "avx512"))
            cap = NURI_ISA_AVX512;
        if (cap < isa_used) isa_used = cap;
    }
    for (int i = 0; i < 3; i++) {
        memcpy(tables[i], kernels_ref_table, sizeof tables[i]);
        kernels_iq_fill(tables[i]);
    }
#if KERNELS_X86
    kernels_avx2_fill(tables[NURI_ISA_AVX2]);
    kernels_avx512_fill(tables[NURI_ISA_AVX512]);
    kernels_iq_avx2_fill(tables[NURI_ISA_AVX2]);
    kernels_iq_avx512_fill(tables[NURI_ISA_AVX512]);
#endif
}

nuri_isa nuri_cpu_isa(void)
{
    pthread_once(&init_once, init);
    return isa_used;
}

const char *nuri_isa_name(nuri_isa isa)
{
    switch (isa) {
    case NURI_ISA_SCALAR:
        return "scalar";
    case NURI_ISA_AVX2:
        return "avx2";
    case NURI_ISA_AVX512:
        return "avx512";
    }
    return "unknown";
}

/* ---- tables ---- */

const nuri_kernel_traits *nuri_kernels_isa(uint32_t type, nuri_isa isa)
{
    pthread_once(&init_once, init);
    if (type >= NURI_TYPE_COUNT || (unsigned)isa > NURI_ISA_AVX512 || isa > isa_cpu) return NULL;
    const nuri_kernel_traits *t = &tables[isa][type];
    return t->to_float ? t : NULL;
}

const nuri_kernel_traits *nuri_kernels(uint32_t type)
{
    return nuri_kernels_isa(type, nuri_cpu_isa());
}

void nuri_gemm(const nuri_kernel_traits *k, int64_t n, const void *w, size_t w_stride, int64_t r0,
               int64_t r1, const void *x, size_t x_stride, int64_t n_t, float *y, int64_t y_stride)
{
    if (k->gemm) {
        k->gemm(n, w, w_stride, r0, r1, x, x_stride, n_t, y, y_stride);
        return;
    }
    // tokens in tiles, so a tile of activations stays in cache while the rows stream by
    enum { TILE = 16 };
    for (int64_t tb = 0; tb < n_t; tb += TILE) {
        int64_t te = tb + TILE < n_t ? tb + TILE : n_t;
        for (int64_t r = r0; r < r1; r++) {
            const char *wr = (const char *)w + (size_t)r * w_stride;
            for (int64_t t = tb; t < te; t++)
                k->vec_dot(n, &y[t * y_stride + r], wr, (const char *)x + (size_t)t * x_stride);
        }
    }
}
