# nuri build. `make` builds build/libnuri.a, build/libnuri.so.0 and build/nuri; `make test` builds
# and runs the tests; `make SAN=1 test` does the same under ASan + UBSan in build-san/ (without
# the shared library: a sanitized .so needs the sanitizer runtime in every program that loads it).
# CI adds WERROR=1. `make install PREFIX=/usr/local DESTDIR=` installs the command, both libraries,
# include/nuri.h, nuri.pc and the man page.
#
# Library objects are compiled -fPIC -fvisibility=hidden: libnuri.so exports only what
# include/nuri.h marks NURI_API (listed in include/nuri.sym; tests/install.test.sh checks both).
#
# Sources are found, not listed: every src/**/*.c except src/cli/ goes into libnuri, src/cli/*.c into
# the nuri command, each tests/test_*.c becomes one test program. The web chat page
# (src/serve/web/index.html, with marked and DOMPurify where installed) is embedded into libnuri as a byte array generated with od and sed. Files named *_avx2.c and
# *_avx512.c (and *_amx.c: AVX-512 + AMX) are compiled with those instruction sets; the code calling them checks the CPU first.
#
# `make MPI=1` also builds $(BUILD)/nuri-mpi: the same nuri linked with OpenMPI (mpicc, Debian's
# libopenmpi-dev), for pipelines across processes (`mpirun -np N nuri-mpi run ... --pp N`). Only
# src/dist/dist.c differs: compiled again with -DNURI_MPI as dist_mpi.o and linked before
# libnuri.a, it replaces the one-process dist.o there. The default build needs no MPI.

CC ?= cc
MPICC ?= mpicc
MPI ?= 0
SAN ?= 0
WERROR ?= 0
OPT ?= -O2

ifeq ($(SAN),1)
BUILD ?= build-san
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT = -O1
else
BUILD ?= build
SANFLAGS =
endif

# libpq's header lives in PostgreSQL's own include directory
PG_INCLUDE := $(shell pg_config --includedir 2>/dev/null || echo /usr/include/postgresql)

CFLAGS_ALL = -std=c11 -D_GNU_SOURCE $(OPT) -g -Wall -Wextra -Wshadow -Wno-unused-parameter \
	-fPIC -fvisibility=hidden -Iinclude -Isrc -I$(PG_INCLUDE) -pthread -MMD -MP $(SANFLAGS) $(CFLAGS)
ifeq ($(WERROR),1)
CFLAGS_ALL += -Werror
endif
LIBS = -ljansson -lpcre2-8 -lsqlite3 -lpq -lcurl -ledit -lm -lpthread
LDFLAGS_ALL = $(SANFLAGS) -pthread $(LDFLAGS)

AVX2_FLAGS = -mavx2 -mfma -mf16c -mbmi2
AVX512_FLAGS = $(AVX2_FLAGS) -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16
AMX_FLAGS = $(AVX512_FLAGS) -mamx-tile -mamx-int8

LIB_SRC := $(shell find src -name '*.c' -not -path 'src/cli/*' | sort)
CLI_SRC := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/web_index.o
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

ABI = 0
SONAME = libnuri.so.$(ABI)
ifeq ($(SAN),1)
SHARED_LIB =
else
SHARED_LIB = $(BUILD)/$(SONAME)
endif

.PHONY: all test clean format format-check fuzz install abi-check
all: $(BUILD)/libnuri.a $(SHARED_LIB) $(BUILD)/nuri $(TEST_BIN)
ifeq ($(MPI),1)
all: $(BUILD)/nuri-mpi
endif

$(BUILD)/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(AVX2_FLAGS) -c $< -o $@

$(BUILD)/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(AVX512_FLAGS) -c $< -o $@

$(BUILD)/%_amx.o: %_amx.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(AMX_FLAGS) -c $< -o $@

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

# The page: src/serve/web/index.html with, at its `/* nuri:libs */` line, the browser builds of
# marked and DOMPurify (scripts/setup installs them into src/serve/web/node_modules; without them
# the page is built without them and shows plain text). Inside the one <script> element, every
# `<!--` and `<script`/`</script` of the libraries becomes `\x3C...` (the same string to JS) so
# the HTML parser cannot end or escape the element early; source map comments are dropped.
WEB_SRC = src/serve/web/index.html
WEB_LIBS = $(wildcard src/serve/web/node_modules/marked/lib/marked.umd.js \
	src/serve/web/node_modules/dompurify/dist/purify.min.js)
WEB_MARK = ^\/\* nuri:libs \*\/$$
# npm gives installed files an old fixed mtime: a checksum file that changes when the libraries
# do (installed, removed, another version) makes the page follow them
WEB_LIBS_SUM = $(BUILD)/web/libs.sum
$(shell mkdir -p $(BUILD)/web; cksum $(WEB_LIBS) </dev/null | cmp -s - $(WEB_LIBS_SUM) || \
	cksum $(WEB_LIBS) </dev/null >$(WEB_LIBS_SUM))
$(BUILD)/web/index.html build-fuzz/web/index.html: $(WEB_SRC) $(WEB_LIBS) $(WEB_LIBS_SUM)
	@mkdir -p $(dir $@)
	{ sed '/$(WEB_MARK)/,$$d' $(WEB_SRC); \
	  for f in $(WEB_LIBS); do \
	    sed -e '/^\/\/# sourceMappingURL=/d' -e 's/<!--/\\x3C!--/g' \
	        -e 's/<\(\/\?script\)/\\x3C\1/gI' "$$f"; echo; \
	  done; \
	  sed '1,/$(WEB_MARK)/d' $(WEB_SRC); } >$@.tmp
	mv $@.tmp $@

# The page as `const unsigned char serve_web_index_html[]` (its bytes and a NUL) and its length.
define embed_page
	@mkdir -p $(dir $@)
	{ echo '/* generated from $< by the Makefile: do not edit */'; \
	  echo '#include <stddef.h>'; \
	  echo 'const unsigned char serve_web_index_html[] = {'; \
	  od -An -v -tx1 $< | sed -e 's/ \([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	  echo '0x00};'; \
	  echo 'const size_t serve_web_index_html_len = sizeof serve_web_index_html - 1;'; } >$@.tmp
	mv $@.tmp $@
endef

$(BUILD)/gen/web_index.c: $(BUILD)/web/index.html
	$(embed_page)

$(BUILD)/gen/web_index.o: $(BUILD)/gen/web_index.c
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/libnuri.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# The shared library: the same objects; --no-undefined so a missing dependency fails here, not in
# a user's program. libnuri.so is the link-time name (a symlink, as installed).
$(BUILD)/$(SONAME): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--no-undefined $(LDFLAGS_ALL) -o $@ $^ $(LIBS)
	ln -sf $(SONAME) $(BUILD)/libnuri.so

$(BUILD)/nuri: $(CLI_OBJ) $(BUILD)/libnuri.a
	$(CC) $(LDFLAGS_ALL) -o $@ $(CLI_OBJ) $(BUILD)/libnuri.a $(LIBS)

$(BUILD)/src/dist/dist_mpi.o: src/dist/dist.c
	@mkdir -p $(dir $@)
	$(MPICC) $(CFLAGS_ALL) -DNURI_MPI -c $< -o $@

$(BUILD)/nuri-mpi: $(CLI_OBJ) $(BUILD)/src/dist/dist_mpi.o $(BUILD)/libnuri.a
	$(MPICC) $(LDFLAGS_ALL) -o $@ $(CLI_OBJ) $(BUILD)/src/dist/dist_mpi.o $(BUILD)/libnuri.a $(LIBS)

$(BUILD)/tests/%: tests/%.c $(BUILD)/libnuri.a tests/test.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests -o $@ $< $(BUILD)/libnuri.a $(LDFLAGS_ALL) $(LIBS)

test: all
	BUILD=$(BUILD) tests/run.sh

# Installing. nuri.pc's Libs.private names libnuri.a's own dependencies, so that
# `pkg-config --static --libs nuri` links a static program.
PREFIX ?= /usr/local
DESTDIR ?=
NURI_VERSION := $(shell sed -n 's/^\#define NURI_VERSION "\(.*\)"/\1/p' include/nuri.h)

define nuri_pc
prefix=$(PREFIX)
libdir=$${prefix}/lib
includedir=$${prefix}/include

Name: nuri
Description: LLM inference and serving engine (GGUF models)
Version: $(NURI_VERSION)
Cflags: -I$${includedir}
Libs: -L$${libdir} -lnuri
Libs.private: $(LIBS)
endef
export nuri_pc

ifeq ($(SAN),1)
install:
	@echo "make install: needs the optimized build (SAN=1 builds no shared library)" >&2; exit 1
else
install: $(BUILD)/nuri $(BUILD)/libnuri.a $(BUILD)/$(SONAME) docs/nuri.1
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig \
		$(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(BUILD)/nuri $(DESTDIR)$(PREFIX)/bin/nuri
	install -m 755 $(BUILD)/$(SONAME) $(DESTDIR)$(PREFIX)/lib/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/libnuri.so
	install -m 644 $(BUILD)/libnuri.a $(DESTDIR)$(PREFIX)/lib/libnuri.a
	install -m 644 include/nuri.h $(DESTDIR)$(PREFIX)/include/nuri.h
	printf '%s\n' "$$nuri_pc" >$(DESTDIR)$(PREFIX)/lib/pkgconfig/nuri.pc
	install -m 644 docs/nuri.1 $(DESTDIR)$(PREFIX)/share/man/man1/nuri.1
endif

# The ABI check: the symbols libnuri.so exports must be exactly include/nuri.sym.
abi-check: $(BUILD)/$(SONAME)
	nm -D --defined-only $(BUILD)/$(SONAME) | awk '{print $$3}' | LC_ALL=C sort | \
		diff -u include/nuri.sym -

# libFuzzer targets (clang): fuzz/fuzz_<name>.c -> build-fuzz/fuzz_<name>. The library is rebuilt
# with clang and the sanitizers in build-fuzz/. The ISA-specific kernel files are compiled without
# sanitizers or coverage: no fuzz target parses through them, and clang takes many minutes to
# instrument their intrinsics-heavy loops (the scalar kernels stay instrumented).
FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_CC = clang
FUZZ_FLAGS = -std=c11 -D_GNU_SOURCE -O1 -g -Iinclude -Isrc -I$(PG_INCLUDE) -fsanitize=address,undefined \
	-fno-sanitize-recover=undefined
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=build-fuzz/%.o) build-fuzz/gen/web_index.o
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=build-fuzz/%)
fuzz: $(FUZZ_BIN)

FUZZ_KERNEL_FLAGS = -std=c11 -D_GNU_SOURCE -O2 -g -Iinclude -Isrc -I$(PG_INCLUDE)

build-fuzz/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_KERNEL_FLAGS) $(AVX2_FLAGS) -MMD -MP -c $< -o $@

build-fuzz/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_KERNEL_FLAGS) $(AVX512_FLAGS) -MMD -MP -c $< -o $@

build-fuzz/%_amx.o: %_amx.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_KERNEL_FLAGS) $(AMX_FLAGS) -MMD -MP -c $< -o $@

build-fuzz/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

build-fuzz/gen/web_index.c: build-fuzz/web/index.html
	$(embed_page)

build-fuzz/gen/web_index.o: build-fuzz/gen/web_index.c
	$(FUZZ_CC) $(FUZZ_FLAGS) -c $< -o $@

build-fuzz/libnuri.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

build-fuzz/fuzz_%: fuzz/fuzz_%.c build-fuzz/libnuri.a $(wildcard fuzz/*.h)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer -Ifuzz -o $@ $< build-fuzz/libnuri.a $(LIBS)

format:
	clang-format -i $$(find src include tests fuzz bench -name '*.[ch]')

format-check:
	clang-format --dry-run -Werror $$(find src include tests fuzz bench -name '*.[ch]')

clean:
	rm -rf build build-san build-fuzz

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(BUILD)/src/dist/dist_mpi.d $(wildcard build-fuzz/src/*/*.d)
