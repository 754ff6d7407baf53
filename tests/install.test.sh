#!/usr/bin/env bash
# install.test.sh: nuri as a C library, as a user gets it: `make install PREFIX=...` into a
# temporary tree, the examples/ compiled against that tree with nothing but
# `pkg-config --cflags --libs nuri`, run, and compared with the installed `nuri run`; the
# symbols libnuri.so exports compared with include/nuri.sym (the ABI check).
#
# The sanitizer build has no shared library (a sanitized .so needs the sanitizer runtime in every
# program that loads it): there this script says it skips, and CI's optimized pass runs it.
set -u
cd "$(dirname "$0")/.."
NURI=${NURI:-build/nuri}
B=$(dirname "$NURI")
M=tests/data/models/llama-tiny-Q8_0.gguf
passed=0
failed=0
if [ "$(basename "$B")" = build-san ]; then
    echo "skip install.test.sh: the SAN=1 build makes no libnuri.so (the optimized pass runs it)"
    echo "0 passed, 0 failed"
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
check() { # name, then a command that must succeed
    local name=$1
    shift
    if "$@" >"$tmp/out" 2>&1; then
        passed=$((passed + 1))
        echo "ok   $name"
    else
        failed=$((failed + 1))
        echo "FAIL $name"
        sed 's/^/    /' "$tmp/out" | head -8
    fi
}

P=$tmp/prefix
if ! make -s --no-print-directory install BUILD="$B" PREFIX="$P" >"$tmp/install.log" 2>&1; then
    echo "FAIL make install"
    sed 's/^/    /' "$tmp/install.log" | tail -8
    echo "0 passed, 1 failed"
    exit 1
fi
export PKG_CONFIG_PATH=$P/lib/pkgconfig
export LD_LIBRARY_PATH=$P/lib
NURI_I=$P/bin/nuri # the installed command

installed_tree() {
    for f in bin/nuri lib/libnuri.so.0 lib/libnuri.a include/nuri.h lib/pkgconfig/nuri.pc \
        share/man/man1/nuri.1; do
        [ -f "$P/$f" ] || { echo "missing $f"; return 1; }
    done
    [ "$(readlink "$P/lib/libnuri.so")" = libnuri.so.0 ] || { echo "libnuri.so link"; return 1; }
    readelf -d "$P/lib/libnuri.so.0" | grep -q 'SONAME.*\[libnuri\.so\.0\]' || return 1
    [ "$(pkg-config --modversion nuri)" = "$("$NURI_I" version | cut -d' ' -f2)" ] || return 1
    # the static library's own dependencies, for `pkg-config --static`
    pkg-config --static --libs nuri | grep -q -- '-ljansson.*-lsqlite3' || return 1
}
check "make install puts the command, both libraries, nuri.h, nuri.pc and the man page" \
    installed_tree

destdir_staging() {
    make -s --no-print-directory install BUILD="$B" PREFIX=/opt/nuri DESTDIR="$tmp/stage" || return 1
    [ -f "$tmp/stage/opt/nuri/lib/libnuri.so.0" ] &&
        grep -qx 'prefix=/opt/nuri' "$tmp/stage/opt/nuri/lib/pkgconfig/nuri.pc"
}
check "DESTDIR stages the tree, and nuri.pc names the final PREFIX" destdir_staging

abi_symbols() {
    nm -D --defined-only "$P/lib/libnuri.so.0" | awk '{print $3}' | LC_ALL=C sort >"$tmp/exported"
    diff -u include/nuri.sym "$tmp/exported" || return 1
    # and the list is the header's: every NURI_API function, nothing else
    grep -oE 'NURI_API [^;]*\bnuri_[a-z0-9_]+\(' "$P/include/nuri.h" |
        grep -oE 'nuri_[a-z0-9_]+\($' | tr -d '(' | LC_ALL=C sort >"$tmp/declared"
    diff -u "$tmp/declared" "$tmp/exported"
}
check "ABI: libnuri.so exports exactly include/nuri.sym, the NURI_API functions of nuri.h" \
    abi_symbols

header_languages() {
    # the installed header alone, as C99 and as C++, warning-free
    printf '#include <nuri.h>\nint main(void) { return nuri_version() == 0; }\n' >"$tmp/h.c"
    # shellcheck disable=SC2046
    cc -std=c99 -Wall -Wextra -pedantic -Werror -c "$tmp/h.c" -o "$tmp/h.o" \
        $(pkg-config --cflags nuri) || return 1
    # shellcheck disable=SC2046
    g++ -x c++ -Wall -Wextra -pedantic -Werror -c "$tmp/h.c" -o "$tmp/h.o" \
        $(pkg-config --cflags nuri)
}
check "the installed nuri.h compiles alone as C99 and as C++" header_languages

# the examples, copied away from the source tree: only the installed header and libraries exist
mkdir -p "$tmp/ex"
cp examples/*.c "$tmp/ex/"
build_examples() {
    for e in generate chat serve; do
        # shellcheck disable=SC2046
        (cd "$tmp/ex" && cc -std=c11 -Wall -Wextra -Werror -o $e $e.c \
            $(pkg-config --cflags --libs nuri)) || return 1
    done
}
check "examples build with only pkg-config --cflags --libs nuri" build_examples

static_example() {
    # a tree with only the static library: pkg-config --static links it with its dependencies
    cp -r "$P" "$tmp/static"
    rm -f "$tmp/static/lib/libnuri.so" "$tmp/static/lib/libnuri.so.0"
    sed -i "s|^prefix=.*|prefix=$tmp/static|" "$tmp/static/lib/pkgconfig/nuri.pc"
    # shellcheck disable=SC2046
    (cd "$tmp/ex" && cc -std=c11 -o generate-static generate.c \
        $(PKG_CONFIG_PATH=$tmp/static/lib/pkgconfig pkg-config --static --cflags --libs nuri)) ||
        return 1
    ! ldd "$tmp/ex/generate-static" | grep -q libnuri || return 1
    a=$("$tmp/ex/generate-static" $M "static" 6 2>/dev/null) || return 1
    b=$("$NURI_I" run -m $M -p "static" -n 6) || return 1
    [ "$a" = "$b" ]
}
check "a static program links with pkg-config --static and libnuri.a alone" static_example

generate_same_text() {
    ldd "$tmp/ex/generate" | grep -q "$P/lib/libnuri.so.0" || { echo "not the installed .so"; return 1; }
    a=$("$tmp/ex/generate" $M "hello world" 24 2>"$tmp/gen.err") || return 1
    b=$("$NURI_I" run -m $M -p "hello world" -n 24) || return 1
    echo "example: $a"
    echo "nuri:    $b"
    [ "$a" = "$b" ] && [ ${#a} -gt 11 ] && grep -q 'progress calls' "$tmp/gen.err"
}
check "examples/generate prints what nuri run prints (greedy, same prompt)" generate_same_text

generate_same_tokens() {
    ids=$("$NURI_I" tokenize -m $M --ids "hello world" | tr -d '[] ') || return 1
    "$tmp/ex/generate" $M "hello world" 24 2>"$tmp/gen.err" >/dev/null || return 1
    a=$(sed -n 's/^tokens: //p' "$tmp/gen.err")
    b=$("$NURI_I" run -m $M --tokens "$ids" -n 24) || return 1
    echo "example: $a"
    echo "nuri:    $b"
    [ -n "$a" ] && [ "$a" = "$b" ]
}
check "examples/generate's token ids are nuri run --tokens' ids" generate_same_tokens

chat_same_answer() {
    a=$("$tmp/ex/chat" $M "hi there" 24 2>"$tmp/chat.err") || return 1
    b=$("$NURI_I" run -m $M --chat -p "hi there" -n 24 2>/dev/null) || return 1
    echo "example: $a"
    echo "nuri:    $b"
    [ "$a" = "$b" ] && [ ${#a} -gt 1 ] || return 1
    # the model has no template: ChatML, with the message inside its markers
    grep -qz $'<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n' "$tmp/chat.err"
}
check "examples/chat answers as nuri run --chat does, through the chat template" chat_same_answer

serve_answers() {
    out=$(timeout 60 "$tmp/ex/serve" $M) || return 1
    echo "$out" | head -3
    echo "$out" | grep -q '^HTTP/1.1 200' &&
        echo "$out" | grep -q '"object":"chat.completion"' &&
        echo "$out" | grep -q '"completion_tokens":8'
}
check "examples/serve embeds the server and answers a chat completion over HTTP" serve_answers

man_lists_commands() {
    man_text=$(cat "$P/share/man/man1/nuri.1")
    for c in $("$NURI_I" --help | awk '/^commands:/{on=1; next} on && !NF {exit} on {print $1}'); do
        grep -q "^\.B[I]* \"*$c\b" <<<"$man_text" || { echo "nuri.1 lacks '$c'"; return 1; }
    done
}
check "the man page describes every command nuri --help lists" man_lists_commands

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
