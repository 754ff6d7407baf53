/*
 * line_edit.c: see line_edit.h.
 */
#include "cli/line_edit.h"

#include <errno.h>
#include <histedit.h>
#include <langinfo.h>
#include <locale.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#include <wchar.h>

enum { HISTORY_MAX = 1000 }; // lines kept (and saved)

struct line_edit {
    EditLine *el;
    HistoryW *hist;
    char *history_path; // NULL: not saved
    volatile sig_atomic_t *interrupted;
    const char *prompt; // shown by prompt_fn (borrowed for one read)
    bool was_interrupted;
    mbstate_t mb; // UTF-8 bytes read so far of the character being read
    char *out;    // the last line, UTF-8
    size_t out_cap;
    struct termios saved; // the terminal as it was, put back by line_edit_free
    bool have_saved;
};

/* Between lines (while an answer streams) the terminal neither echoes nor collects a line: what is
 * typed ahead waits, unechoed, for libedit to read and show it once, and a Ctrl-D stays a key for
 * libedit, not the tty's end of file. Ctrl-C still raises SIGINT (ISIG). */
static void quiet_between_lines(line_edit *le)
{
    if (!le->have_saved) return;
    struct termios t;
    if (tcgetattr(0, &t) != 0) return;
    t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON);
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    tcsetattr(0, TCSANOW, &t); // TCSANOW: what was typed ahead is kept
}

static char *prompt_fn(EditLine *el)
{
    line_edit *le = NULL;
    el_get(el, EL_CLIENTDATA, &le);
    return (char *)(le && le->prompt ? le->prompt : "");
}

/* libedit's read-a-character hook: waits for input with SIGINT blocked except inside ppoll, so a
 * Ctrl-C that lands between the check of the flag and the wait still ends the wait; a Ctrl-C byte
 * (when the terminal does not make it a signal) counts the same. Returns 1 with a character, 0 at
 * end of input, -1 when interrupted or on an error. */
static int getc_fn(EditLine *el, wchar_t *wc)
{
    line_edit *le = NULL;
    el_get(el, EL_CLIENTDATA, &le);
    for (;;) {
        sigset_t block, old;
        sigemptyset(&block);
        sigaddset(&block, SIGINT);
        pthread_sigmask(SIG_BLOCK, &block, &old);
        if (*le->interrupted) {
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            le->was_interrupted = true;
            errno = EINTR;
            return -1;
        }
        struct pollfd pfd = {.fd = 0, .events = POLLIN};
        int pr = ppoll(&pfd, 1, NULL, &old);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (pr < 0) {
            if (errno == EINTR) continue; // the flag is looked at above
            return -1;
        }
        unsigned char b;
        ssize_t got = read(0, &b, 1);
        if (got < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (got == 0) return 0;
        if (b == 3) { // ^C as a byte
            *le->interrupted = *le->interrupted + 1;
            continue;
        }
        char c = (char)b;
        size_t r = mbrtowc(wc, &c, 1, &le->mb);
        if (r == (size_t)-2) continue; // more bytes of this character to come
        if (r == (size_t)-1) {         // not UTF-8: start over with the next byte
            memset(&le->mb, 0, sizeof le->mb);
            continue;
        }
        return 1;
    }
}

line_edit *line_edit_new(volatile sig_atomic_t *interrupted, const char *history_path)
{
    // the terminal's bytes are UTF-8 (what nuri reads and writes): libedit needs a UTF-8
    // LC_CTYPE to decode them and to know that a Hangul syllable takes two columns
    if (!setlocale(LC_CTYPE, "") || strcmp(nl_langinfo(CODESET), "UTF-8"))
        setlocale(LC_CTYPE, "C.UTF-8");
    line_edit *le = calloc(1, sizeof *le);
    if (!le) return NULL;
    le->interrupted = interrupted;
    le->have_saved = tcgetattr(0, &le->saved) == 0;
    le->hist = history_winit();
    le->el = el_init("nuri", stdin, stdout, stderr);
    if (!le->hist || !le->el) {
        line_edit_free(le);
        return NULL;
    }
    HistEventW ev;
    history_w(le->hist, &ev, H_SETSIZE, HISTORY_MAX);
    history_w(le->hist, &ev, H_SETUNIQUE, 1); // the same line twice in a row is kept once
    if (history_path) {
        le->history_path = strdup(history_path);
        history_w(le->hist, &ev, H_LOAD, history_path); // none yet is fine
    }
    el_set(le->el, EL_CLIENTDATA, le);
    el_set(le->el, EL_EDITOR, "emacs");
    el_set(le->el, EL_PROMPT, prompt_fn);
    el_wset(le->el, EL_HIST, history_w, le->hist);
    el_set(le->el, EL_GETCFN, getc_fn);
    el_source(le->el, NULL); // the user's ~/.editrc, if any
    quiet_between_lines(le);
    return le;
}

void line_edit_free(line_edit *le)
{
    if (!le) return;
    if (le->el) el_end(le->el);
    if (le->hist) history_wend(le->hist);
    if (le->have_saved) tcsetattr(0, TCSANOW, &le->saved);
    free(le->history_path);
    free(le->out);
    free(le);
}

int line_edit_read(line_edit *le, const char *prompt, char **line, size_t *len)
{
    le->prompt = prompt;
    le->was_interrupted = false;
    memset(&le->mb, 0, sizeof le->mb);
    int count = 0;
    const wchar_t *w = el_wgets(le->el, &count);
    quiet_between_lines(le);
    if (le->was_interrupted) {
        // what was typed is dropped: the next read starts an empty line
        el_reset(le->el);
        const LineInfoW *li = el_wline(le->el);
        el_cursor(le->el, (int)(li->lastchar - li->cursor));
        el_wdeletestr(le->el, (int)(li->lastchar - li->buffer));
        return LINE_EDIT_INTERRUPTED;
    }
    if (!w) return count < 0 ? LINE_EDIT_ERROR : LINE_EDIT_EOF;
    // to UTF-8 (the locale's encoding, made UTF-8 above)
    size_t n = wcslen(w), cap = n * MB_CUR_MAX + 1;
    if (cap > le->out_cap) {
        char *o = realloc(le->out, cap);
        if (!o) return LINE_EDIT_ERROR;
        le->out = o;
        le->out_cap = cap;
    }
    mbstate_t st;
    memset(&st, 0, sizeof st);
    const wchar_t *src = w;
    size_t k = wcsrtombs(le->out, &src, cap, &st);
    if (k == (size_t)-1) return LINE_EDIT_ERROR;
    while (k && (le->out[k - 1] == '\n' || le->out[k - 1] == '\r')) k--;
    le->out[k] = 0;
    if (k) {
        // the history holds the line without its newline; libedit shows it as it is
        HistEventW ev;
        size_t wn = n;
        while (wn && (w[wn - 1] == L'\n' || w[wn - 1] == L'\r')) wn--;
        wchar_t *copy = malloc((wn + 1) * sizeof *copy);
        if (copy) {
            wmemcpy(copy, w, wn);
            copy[wn] = 0;
            history_w(le->hist, &ev, H_ENTER, copy);
            free(copy);
            if (le->history_path) history_w(le->hist, &ev, H_SAVE, le->history_path);
        }
    }
    *line = le->out;
    *len = k;
    return LINE_EDIT_OK;
}
