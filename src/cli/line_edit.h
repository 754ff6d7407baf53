/*
 * line_edit.h: the line editor of `nuri chat` at a terminal, on Debian's libedit: in-line editing
 * (Left/Right, Backspace, Home/End, Ctrl-A/E/K/U/W, ...), history on Up/Down, and characters that
 * take two columns (Hangul, CJK) edited and redrawn by display width: the locale's LC_CTYPE is set
 * from the environment, and to C.UTF-8 when that is not UTF-8, since the input is UTF-8 either way.
 *
 * Input is read by our own function (ppoll + read on fd 0), so that a Ctrl-C (SIGINT) ends the wait
 * for a key: line_edit_read then returns LINE_EDIT_INTERRUPTED with the line discarded. Only for a
 * terminal on fd 0; anything else is read as plain lines by cmd_chat.c.
 */
#ifndef NURI_CLI_LINE_EDIT_H
#define NURI_CLI_LINE_EDIT_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct line_edit line_edit;

enum {
    LINE_EDIT_OK = 1,
    LINE_EDIT_EOF = 0,          // Ctrl-D on an empty line
    LINE_EDIT_INTERRUPTED = -1, // *interrupted was set (Ctrl-C) while waiting for a key
    LINE_EDIT_ERROR = -2,       // errno says why
};

/* A line editor on fd 0 / stdout. interrupted: the flag the SIGINT handler raises (borrowed for
 * the editor's life). history_path: a file the history is read from now and written to after
 * every line (NULL: history for this run only). NULL if libedit cannot start (errno set). Free
 * with line_edit_free, which restores the terminal. */
line_edit *line_edit_new(volatile sig_atomic_t *interrupted, const char *history_path);
void line_edit_free(line_edit *le);

/* Reads one line with the prompt shown. On LINE_EDIT_OK *line (borrowed until the next call)
 * holds the line as UTF-8 without its '\n'. A line that is not empty goes into the history. */
int line_edit_read(line_edit *le, const char *prompt, char **line, size_t *len);

#endif
