/*
 * test_pack_memory.c: packing weights at load (kernels/pack.h) keeps resident memory at about one
 * copy of the weights. The packed copy is written slab by slab and each slab's file pages are
 * given back (gguf_release_range), so neither the peak during loading nor the resident size after
 * it may approach two copies; and the model still decodes the same after the release (the
 * embedding rows come back from the page cache).
 *
 * Peak and resident sizes are read from /proc/self/status (VmHWM, VmRSS); the peak is reset with
 * /proc/self/clear_refs before loading, after glibc has been told to hand freed memory back. Under
 * AddressSanitizer (shadow memory) and on CPUs where
 * nothing is packed the sizes are not checked.
 */
#include "kernels/pack.h"
#include "kernels/types.h"
#include "model/mkmodel.h"
#include "model/model.h"
#include "test.h"

#include <malloc.h>
#include <stdio.h>
#include <unistd.h>

/* A field of /proc/self/status in KiB, or -1. */
static long status_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    const size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':') v = atol(line + n + 1);
    fclose(f);
    return v;
}

static bool reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return false;
    bool ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

#if defined(__SANITIZE_ADDRESS__)
enum { UNDER_ASAN = 1 };
#else
enum { UNDER_ASAN = 0 };
#endif

static char path[64];

/* The bytes of every layer matrix of m and of its output matrix (what gets packed), in KiB. */
static long matrices_kib(const nuri_model *m)
{
    uint64_t total = 0;
    for (int il = 0; il < m->hp.n_layer; il++) {
        const nuri_layer *L = &m->layers[il];
        const nuri_weight *ws[] = {&L->wq,       &L->wk,     &L->wv,      &L->wo,
                                   &L->ffn_gate, &L->ffn_up, &L->ffn_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) {
            uint64_t row;
            nuri_type_row_bytes(ws[i]->type, (uint64_t)ws[i]->n_in, &row);
            total += row * (uint64_t)ws[i]->n_out;
        }
    }
    uint64_t row;
    nuri_type_row_bytes(m->output.type, (uint64_t)m->output.n_in, &row);
    return (long)((total + row * (uint64_t)m->output.n_out) / 1024);
}

TEST(packed_load_keeps_about_one_copy_resident)
{
    // a "small"-shape Q8_0 model with 24 layers: about 80 MB of matrices (2 layers under
    // AddressSanitizer, where only the logits are checked)
    nuri_mkmodel_params p = {.arch = "llama",
                             .shape = "small",
                             .type = "Q8_0",
                             .seed = 3,
                             .n_layer = UNDER_ASAN ? 2 : 24};
    REQUIRE(nuri_mkmodel(&p, path) == NURI_OK);

    // the reference: the same file without packing, decoded once
    nuri_model *m;
    REQUIRE(nuri_model_load(path, &m) == NURI_OK);
    const bool packed = m->layers[0].wq.packed != NULL;
    CHECK(packed == nuri_pack_supported(NURI_TYPE_Q8_0));
    const long mat = matrices_kib(m);
    nuri_ctx *c;
    nuri_ctx_params cp = {.n_ctx = 64, .n_threads = 1};
    REQUIRE(nuri_ctx_new(m, &cp, &c) == NURI_OK);
    const int32_t toks[4] = {1, 200, 300, 400};
    REQUIRE(nuri_ctx_decode(c, toks, 4, 0, false) == NURI_OK);
    const int32_t n_vocab = m->hp.n_vocab;
    float *l0 = malloc(sizeof(float) * (size_t)n_vocab);
    REQUIRE(l0);
    memcpy(l0, nuri_ctx_logits(c, 0), sizeof(float) * (size_t)n_vocab);
    nuri_ctx_free(c);
    nuri_model_free(m);

    if (UNDER_ASAN) {
        printf("  (AddressSanitizer: sizes not checked)\n");
    } else if (!packed) {
        printf("  (nothing is packed on this CPU: sizes not checked)\n");
    } else if (malloc_trim(0), !reset_peak()) { // freed heap memory back to the OS first
        printf("  (cannot reset the peak RSS here: sizes not checked)\n");
    } else {
        const long before = status_kib("VmRSS");
        REQUIRE(nuri_model_load(path, &m) == NURI_OK);
        const long peak = status_kib("VmHWM") - before, after = status_kib("VmRSS") - before;
        printf("  matrices %ld KiB; loading added peak %ld KiB, resident %ld KiB\n", mat, peak,
               after);
        // one copy plus slack (one 1024-row slab, pages at slab edges, the allocator); two copies
        // would be 2 * mat
        CHECKF(peak < mat + mat / 4, "peak during load %ld KiB for %ld KiB of matrices", peak, mat);
        CHECKF(after < mat + mat / 8, "resident after load %ld KiB for %ld KiB of matrices", after,
               mat);
        CHECKF(after > mat / 2, "resident after load %ld KiB: was anything packed?", after);
        nuri_model_free(m);
    }

    // after the file's pages were given back, the model computes the same logits
    REQUIRE(nuri_model_load(path, &m) == NURI_OK);
    REQUIRE(nuri_ctx_new(m, &cp, &c) == NURI_OK);
    REQUIRE(nuri_ctx_decode(c, toks, 4, 0, false) == NURI_OK);
    CHECK(!memcmp(l0, nuri_ctx_logits(c, 0), sizeof(float) * (size_t)n_vocab));
    nuri_ctx_free(c);
    nuri_model_free(m);
    free(l0);
}

int main(void)
{
    // a fixed threshold: large buffers always come from mmap and go back to the OS when freed
    // (glibc's adaptive threshold would serve the second load from the first one's freed heap)
    if (!UNDER_ASAN) mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    snprintf(path, sizeof path, "/tmp/nuri-pack-memory-%d.gguf", (int)getpid());
    RUN(packed_load_keeps_about_one_copy_resident);
    unlink(path);
    TEST_DONE();
}
