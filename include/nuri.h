/*
 * nuri.h: the public C API of libnuri.
 *
 * Link with `pkg-config --cflags --libs nuri` (libnuri.so, or `--static` for libnuri.a). The
 * nuri command is this API's first user: `nuri run` and `nuri tokenize` use nothing else.
 *
 * Conventions
 * - Handles are opaque: their layout is private and may change in any release.
 * - Calls that can fail return a nuri_status; results come back through out parameters. On
 *   failure nuri_last_error() holds a message for the user (thread-local, valid until the next
 *   failing call in the same thread), and pointers it would have handed back are NULL.
 * - Every function that returns a pointer says who frees it: memory the library allocates for
 *   the caller (token arrays, texts) is freed with nuri_free().
 * - Parameter structs begin with `size_t struct_size`. Fill one with its _init function, passing
 *   sizeof of the struct as you compiled it, then set the fields you want:
 *       nuri_context_params cp;
 *       nuri_context_params_init(&cp, sizeof cp);
 *       cp.n_ctx = 2048;
 *   Fields are only ever appended, so a program built against an older header keeps working with
 *   a newer library (the fields it does not know keep their defaults). A program built against a
 *   newer header that sets a field this library does not have gets NURI_ERR_UNSUPPORTED naming
 *   the struct, never a silently ignored setting. Passing NULL for a params pointer means all
 *   defaults.
 * - ABI: only functions declared here are exported from libnuri.so (the list is
 *   include/nuri.sym, checked by the tests). Within one NURI_ABI_VERSION (the soname,
 *   libnuri.so.N) functions and enum values are only added, never changed or removed.
 *
 * Threads: see each section. In short, a model and a chat format are read-only once made and
 * may be shared by any number of threads; a context, a sampler chain and a detokenizer belong to
 * one thread at a time (use one per thread, or lock); a server runs its own threads.
 */
#ifndef NURI_H
#define NURI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define NURI_API __attribute__((visibility("default")))
#else
#define NURI_API
#endif

/* ---- version ---- */

#define NURI_VERSION_MAJOR 0
#define NURI_VERSION_MINOR 1
#define NURI_VERSION_PATCH 0
#define NURI_VERSION "0.1.0"
#define NURI_ABI_VERSION 0 // libnuri.so.0

/* The library's version at run time ("0.1.0"): compare with NURI_VERSION to find a header/library
 * mismatch. Static storage. Thread-safe. */
NURI_API const char *nuri_version(void);

/* ---- status ---- */

typedef enum nuri_status {
    NURI_OK = 0,
    NURI_ERR_INVALID_ARG, // the caller passed something wrong
    NURI_ERR_IO,          // the operating system refused (open, read, mmap)
    NURI_ERR_NOMEM,       // an allocation failed
    NURI_ERR_FORMAT,      // malformed input: a corrupt file, bad text, bad request
    NURI_ERR_UNSUPPORTED, // well-formed, but nuri does not run it (an architecture, a type)
    NURI_ERR_LIMIT,       // over an explicit limit (context length, sizes)
    NURI_ERR_NOT_FOUND,   // a key, tensor or file that is not there
    NURI_ERR_UNAVAILABLE, // a service nuri depends on (a database) cannot be reached now; retry
    NURI_ERR_CANCELLED,   // a callback asked to stop (model loading)
} nuri_status;

/* A short English name of a status ("malformed input"). Static storage. Thread-safe. */
NURI_API const char *nuri_status_name(nuri_status s);

/* The message of the last failure in this thread. Borrowed; valid until the next failure. */
NURI_API const char *nuri_last_error(void);

/* Frees memory the library allocated for the caller (token arrays, texts). NULL is fine. */
NURI_API void nuri_free(void *p);

/* ---- models ----
 * A model is read-only once opened: every call below on one model may run in any number of
 * threads at once, and contexts, chat formats and sampler chains made from it may be used in
 * parallel. Close it after everything made from it is freed. */

typedef struct nuri_model nuri_model;

/* Loading progress: fraction in [0, 1], non-decreasing, 1 last. Called on the loading thread.
 * Return false to cancel: nuri_model_open then fails with NURI_ERR_CANCELLED. */
typedef bool (*nuri_progress_fn)(float fraction, void *user_data);

typedef struct nuri_load_params {
    size_t struct_size;
    /* With a progress callback the weights are read in from the file (page by page, reporting
     * as they come) before the model is bound, so the first token does not wait for the disk.
     * Without one, they are mapped and read on first use. Default NULL. */
    nuri_progress_fn progress;
    void *progress_user_data;
    /* Only the vocabulary and the metadata (tokenizing, chat templates; the file may be a
     * vocabulary-only GGUF): a context cannot be made from such a model. Default false. */
    bool vocab_only;
} nuri_load_params;

NURI_API void nuri_load_params_init(nuri_load_params *p, size_t struct_size);

/* Opens a GGUF model file, checked whole (hyperparameters, every weight, the vocabulary). params
 * may be NULL. Caller closes with nuri_model_close. Errors name the key or tensor at fault. */
NURI_API nuri_status nuri_model_open(const char *path, const nuri_load_params *params,
                                     nuri_model **out);
NURI_API void nuri_model_close(nuri_model *m); // NULL is fine

/* Model information. Strings: static storage, or borrowed until nuri_model_close. */
NURI_API const char *nuri_model_arch(const nuri_model *m);    // "llama", "qwen3"; "" vocab-only
NURI_API int32_t nuri_model_n_vocab(const nuri_model *m);     // tokens
NURI_API int32_t nuri_model_n_ctx_train(const nuri_model *m); // tokens it was trained on; 0: vocab
/* Warnings found while loading the vocabulary (an unknown pre-tokenizer and the fallback used),
 * one per line; NULL when none. Borrowed until nuri_model_close. */
NURI_API const char *nuri_model_warnings(const nuri_model *m);
NURI_API int32_t nuri_model_n_embd(const nuri_model *m);
NURI_API int32_t nuri_model_n_layer(const nuri_model *m);
NURI_API uint64_t nuri_model_n_params(const nuri_model *m); // weight elements, all of them
NURI_API int32_t nuri_model_token_bos(const nuri_model *m); // -1 if none
NURI_API int32_t nuri_model_token_eos(const nuri_model *m); // -1 if none
/* A string value of the file's metadata ("general.name", "tokenizer.chat_template"): *value
 * borrowed until nuri_model_close, not NUL-terminated, *len bytes. NURI_ERR_NOT_FOUND when the key
 * is absent, NURI_ERR_INVALID_ARG when its value is not a string. */
NURI_API nuri_status nuri_model_meta_string(const nuri_model *m, const char *key,
                                            const char **value, size_t *len);
/* Whether generating id ends the model's turn (EOS, EOT, EOM and their kin). */
NURI_API bool nuri_model_token_is_eog(const nuri_model *m, int32_t id);

/* ---- tokens and text ---- (thread-safe: they only read the model) */

#define NURI_TOKENIZE_ADD_SPECIAL 1u   // add BOS / EOS as the vocabulary asks
#define NURI_TOKENIZE_PARSE_SPECIAL 2u // control-token text (<|im_start|>) becomes the token

/* Tokenizes text[0..len) (any bytes). *ids: caller frees with nuri_free (NULL when *n_ids is 0). */
NURI_API nuri_status nuri_model_tokenize(const nuri_model *m, const char *text, size_t len,
                                         unsigned flags, int32_t **ids, size_t *n_ids);

#define NURI_DETOKENIZE_SPECIAL 1u     // render control tokens' text (<|im_end|>)
#define NURI_DETOKENIZE_STRIP_SPACE 2u // drop the space SentencePiece tokenizing added first

/* The bytes of one token (*piece borrowed until nuri_model_close; not NUL-terminated; possibly
 * part of a UTF-8 character). NURI_ERR_INVALID_ARG for an id outside the vocabulary. */
NURI_API nuri_status nuri_model_token_piece(const nuri_model *m, int32_t id, unsigned flags,
                                            const char **piece, size_t *len);

/* The text of ids[0..n): *text NUL-terminated, caller frees with nuri_free. A UTF-8 character
 * left incomplete at the end becomes U+FFFD. */
NURI_API nuri_status nuri_model_detokenize(const nuri_model *m, const int32_t *ids, size_t n,
                                           unsigned flags, char **text, size_t *len);

/* A streaming detokenizer: feed ids one at a time, get back only whole UTF-8 characters. One
 * thread at a time. */
typedef struct nuri_detokenizer nuri_detokenizer;
NURI_API nuri_status nuri_detokenizer_new(const nuri_model *m, unsigned flags,
                                          nuri_detokenizer **out);
/* The bytes now ready (*len of them). Borrowed until the next call on d. An invalid id: NULL. */
NURI_API const char *nuri_detokenizer_feed(nuri_detokenizer *d, int32_t id, size_t *len);
/* Ends the stream: what is held comes out as U+FFFD. Borrowed until the next call on d. */
NURI_API const char *nuri_detokenizer_flush(nuri_detokenizer *d, size_t *len);
NURI_API void nuri_detokenizer_free(nuri_detokenizer *d); // NULL is fine

/* ---- chat templates ----
 * A chat format renders messages with the model's chat template (a Jinja subset; ChatML when the
 * model has none). Read-only once made: calls on one chat format may run in parallel. */

typedef struct nuri_chat nuri_chat;

/* template_src[0..len) replaces the model's template when not NULL. Caller frees with
 * nuri_chat_free (before closing the model). */
NURI_API nuri_status nuri_chat_new(const nuri_model *m, const char *template_src, size_t len,
                                   nuri_chat **out);
NURI_API void nuri_chat_free(nuri_chat *c); // NULL is fine
/* Reads a template file for nuri_chat_new (*src: caller frees with nuri_free). */
NURI_API nuri_status nuri_chat_template_load(const char *path, char **src, size_t *len);
/* True when the model has no chat template and none was given, so ChatML is used. */
NURI_API bool nuri_chat_is_fallback(const nuri_chat *c);

/* Messages are n pairs roles[i] ("system", "user", "assistant", "tool") and contents[i] (UTF-8,
 * NUL-terminated). add_generation_prompt opens the assistant's turn.
 * nuri_chat_apply renders the text (*text NUL-terminated; caller frees with nuri_free).
 * nuri_chat_tokens renders and tokenizes it for the model: the template's own markup becomes
 * control tokens, while special-token text inside the messages stays ordinary text, so a user
 * cannot forge a turn (*ids: caller frees with nuri_free). */
NURI_API nuri_status nuri_chat_apply(const nuri_chat *c, const char *const *roles,
                                     const char *const *contents, size_t n,
                                     bool add_generation_prompt, char **text, size_t *len);
NURI_API nuri_status nuri_chat_tokens(const nuri_chat *c, const char *const *roles,
                                      const char *const *contents, size_t n,
                                      bool add_generation_prompt, int32_t **ids, size_t *n_ids);

/* Whether generating id ends the answer (the model's end tokens and the template's). */
NURI_API bool nuri_chat_ends_turn(const nuri_chat *c, int32_t id);
/* Text that also ends an answer (*n of them; may be 0). Borrowed until nuri_chat_free. */
NURI_API const char *const *nuri_chat_stop_strings(const nuri_chat *c, size_t *n);

/* Streaming stop strings: text[0..len) is the answer so far, of which n_emitted bytes were shown.
 * Returns how many bytes from the start may be shown now (what may still begin a stop string is
 * held back); *hit is set when a stop string was found: the answer is then text[0..returned). */
NURI_API size_t nuri_stop_strings_scan(const char *text, size_t len, size_t n_emitted,
                                       const char *const *stops, size_t n_stops, bool *hit);

/* ---- contexts ----
 * A context holds a KV cache shared by n_seq sequences, and runs the model's forward pass. One
 * thread at a time per context (the forward pass itself uses n_threads workers); contexts of one
 * model may run in parallel. */

typedef struct nuri_context nuri_context;

typedef struct nuri_context_params {
    size_t struct_size;
    int32_t n_ctx;     // token slots for all sequences together (0: min(trained context, 4096))
    int32_t n_batch;   // most tokens per forward pass (0: 512)
    int32_t n_threads; // forward pass threads (0: 1)
    int32_t n_logits;  // rows of logits kept per decode (0: 1), up to n_batch
    int32_t n_seq;     // sequences, ids 0..n_seq-1 (0: 1)
    // the KV cache's types: "f16" (NULL), "q8_0" or "q4_0" (as llama.cpp's -ctk / -ctv; a
    // quantized V is weighted with F32 probabilities, as llama.cpp's flash attention does)
    const char *kv_type_k;
    const char *kv_type_v;
} nuri_context_params;

NURI_API void nuri_context_params_init(nuri_context_params *p, size_t struct_size);
/* Caller frees with nuri_context_free (before closing the model). params may be NULL. */
NURI_API nuri_status nuri_context_new(const nuri_model *m, const nuri_context_params *params,
                                      nuri_context **out);
NURI_API void nuri_context_free(nuri_context *c); // NULL is fine
NURI_API int32_t nuri_context_n_ctx(const nuri_context *c);

/* One forward pass over a batch of n tokens: token[i] at position pos[i] of sequence seq[i] (NULL
 * seq: all 0), with logits kept for the tokens whose logits[i] is non-zero (NULL: only the last
 * token), in rows 0, 1, ... in batch order. A sequence's tokens must have consecutive positions,
 * the first no greater than its length (writing at p forgets what it held from p on). Errors
 * leave the cache as it was: NURI_ERR_INVALID_ARG (an id, position or sequence), NURI_ERR_LIMIT
 * (no room: shrink or clear a sequence; more logits rows than n_logits). */
NURI_API nuri_status nuri_context_decode(nuri_context *c, int32_t n, const int32_t *token,
                                         const int32_t *pos, const int32_t *seq,
                                         const int8_t *logits);
/* One sequence's tokens[0..n) at positions pos0, pos0 + 1, ...; logits for all of them
 * (all_logits, n <= n_logits) or only the last. A long prompt runs in chunks of n_batch: a
 * failure in a later chunk keeps what the earlier ones wrote (the sequence's length says). */
NURI_API nuri_status nuri_context_decode_seq(nuri_context *c, int32_t seq, const int32_t *tokens,
                                             int32_t n, int32_t pos0, bool all_logits);
/* Row `row` of the last decode's logits: n_vocab floats, borrowed until the next decode; NULL
 * when there is no such row. */
NURI_API const float *nuri_context_logits(const nuri_context *c, int32_t row);

NURI_API int32_t nuri_context_seq_len(const nuri_context *c, int32_t seq); // tokens held; -1: no
NURI_API nuri_status nuri_context_seq_clear(nuri_context *c, int32_t seq);
/* Keeps positions [0, n) of seq. A model with a recurrent state (qwen35, qwen35moe) cannot go
 * back: there only n == 0 or n == the length is accepted, else NURI_ERR_UNSUPPORTED. */
NURI_API nuri_status nuri_context_seq_truncate(nuri_context *c, int32_t seq, int32_t n);
/* dst (cleared first) starts with src's first n tokens, sharing their cache pages (a recurrent
 * state comes along only with the whole of src; a shorter dst must restart at position 0). */
NURI_API nuri_status nuri_context_seq_fork(nuri_context *c, int32_t src, int32_t dst, int32_t n);

/* ---- sampling ----
 * A sampler chain turns logits into a token: grammar (if any), penalties, temperature, top-k,
 * top-p, min-p, then a seeded draw (greedy at temperature 0). One thread at a time per chain. */

typedef struct nuri_sampler_chain nuri_sampler_chain;

typedef struct nuri_sampling_params {
    size_t struct_size;
    float temperature;        // >= 0; 0 = greedy (default 1)
    int32_t top_k;            // >= 0; 0 = off (default)
    float top_p;              // (0, 1]; 1 = off (default)
    float min_p;              // [0, 1]; 0 = off (default)
    float repetition_penalty; // > 0; 1 = off (default)
    float frequency_penalty;  // 0 = off (default)
    float presence_penalty;   // 0 = off (default)
    int32_t penalty_last_n;   // tokens the penalties look back over (default 64)
    uint64_t seed;            // default 0
    /* Constrained output: a GBNF grammar (llama.cpp's syntax) or a JSON Schema, as text; at most
     * one; default NULL. Copied at creation. */
    const char *grammar;
    const char *json_schema;
} nuri_sampling_params;

NURI_API void nuri_sampling_params_init(nuri_sampling_params *p, size_t struct_size);
/* Validates the parameters (the message names the one at fault, or the grammar's error) and
 * makes a chain for the model's vocabulary. Caller frees with nuri_sampler_chain_free. */
NURI_API nuri_status nuri_sampler_chain_new(const nuri_model *m, const nuri_sampling_params *params,
                                            nuri_sampler_chain **out);
NURI_API void nuri_sampler_chain_free(nuri_sampler_chain *s); // NULL is fine
/* Draws a token from logits (n_vocab floats, not modified). It does not take it: call accept. */
NURI_API nuri_status nuri_sampler_chain_sample(nuri_sampler_chain *s, const float *logits,
                                               int32_t *token);
/* Takes token as generated (penalty history, grammar). */
NURI_API nuri_status nuri_sampler_chain_accept(nuri_sampler_chain *s, int32_t token);
/* Forgets the history and the grammar's progress; reseeds. */
NURI_API void nuri_sampler_chain_reset(nuri_sampler_chain *s);
/* With a grammar: whether nothing more may follow the accepted text (generation must end), and
 * whether it may end here. Without one: false, true. */
NURI_API bool nuri_sampler_chain_must_end(const nuri_sampler_chain *s, int32_t last_token);
NURI_API bool nuri_sampler_chain_can_end(const nuri_sampler_chain *s);

/* ---- speculative decoding ----
 * A speculator generates one sequence's tokens like nuri_sampler_chain_sample + accept + a decode
 * per token, but drafts several tokens ahead (by prompt lookup: the last 1-3 tokens found earlier
 * in the sequence and what followed them; or with a smaller draft model of the same vocabulary)
 * and checks a whole draft in one forward pass. Greedy, and with any deterministic draft (lookup,
 * draft_greedy), the tokens are exactly those of plain sampling with the same seed; a draft model
 * sampling at temperature > 0 is checked by rejection sampling, which keeps the distribution of
 * the output but not the stream a seed gives. One thread at a time, like its context. */

typedef struct nuri_speculator nuri_speculator;

typedef struct nuri_speculate_params {
    size_t struct_size;
    int32_t draft_max;       // tokens per draft, 1..32 (default 8)
    int32_t draft_min;       // a shorter draft is not checked (default 0)
    bool lookup;             // draft by prompt lookup, tried before the draft model (default false)
    const nuri_model *draft; // a draft model with the same vocabulary (default NULL: none)
    int32_t draft_threads;   // its forward threads (default 0: 1)
    bool draft_greedy;       // the draft model drafts its argmax at any temperature (default false)
    float draft_p_min;       // the draft stops at a token its model gives less (default 0: never)
} nuri_speculate_params;

NURI_API void nuri_speculate_params_init(nuri_speculate_params *p, size_t struct_size);
/* For sequence seq of c, sampling with s (both borrowed: free the speculator first). c needs
 * n_logits >= draft_max + 1. A draft model gets its own context, as long as c's. Fails naming the
 * first difference when the draft model's vocabulary is not the model's. Caller frees with
 * nuri_speculator_free. */
NURI_API nuri_status nuri_speculator_new(nuri_context *c, int32_t seq, nuri_sampler_chain *s,
                                         const nuri_speculate_params *params,
                                         nuri_speculator **out);
NURI_API void nuri_speculator_free(nuri_speculator *sp); // NULL is fine
/* The sequence holds tokens[0..n) and the last decode of c left the logits after tokens[n - 1]
 * (in row 0). Call before the first nuri_speculator_next, and again after nuri_speculator_end. */
NURI_API nuri_status nuri_speculator_begin(nuri_speculator *sp, const int32_t *tokens, int32_t n);
/* The next token, sampled and accepted by the chain. remaining (>= 1): the tokens the caller may
 * still take, this one included; drafts stop there and at the end of the context. */
NURI_API nuri_status nuri_speculator_next(nuri_speculator *sp, int32_t remaining, int32_t *token);
/* Drops the KV of drafted tokens not taken; returns how many tokens the sequence holds (the last
 * token generated is not among them when it was not decoded yet). */
NURI_API int32_t nuri_speculator_end(nuri_speculator *sp);
/* Since creation: forward passes of the model, tokens drafted and checked, and accepted. */
NURI_API void nuri_speculator_counts(const nuri_speculator *sp, int64_t *passes, int64_t *drafted,
                                     int64_t *accepted);

/* ---- generation ---- */

/* Called for each generated token with the text it completes (whole UTF-8 characters; may be
 * empty while a character or a possible stop string is incomplete), then once more with token -1
 * and whatever text was held (unless it asked to stop). Return false to stop. */
typedef bool (*nuri_token_fn)(int32_t token, const char *text, size_t len, void *user_data);

typedef struct nuri_generate_params {
    size_t struct_size;
    int32_t max_tokens; // tokens to generate at most (default 128)
    int32_t seq;        // the context's sequence to use (default 0)
    /* The chat format whose end tokens and stop strings end the answer; NULL: the model's end
     * tokens only (default). */
    const nuri_chat *chat;
    nuri_token_fn on_token;
    void *user_data;
} nuri_generate_params;

NURI_API void nuri_generate_params_init(nuri_generate_params *p, size_t struct_size);

/* Why generation ended (values are only ever appended). */
typedef enum nuri_end_reason {
    NURI_END_LENGTH = 0,  // max_tokens were generated
    NURI_END_TOKEN,       // the model ended its turn (an end token, not reported)
    NURI_END_STOP_STRING, // one of the chat format's stop strings (not reported)
    NURI_END_GRAMMAR,     // the grammar allows nothing more
    NURI_END_CALLBACK,    // on_token returned false
} nuri_end_reason;

/* Runs prompt[0..n_prompt) in sequence params->seq from position 0 (what it held is dropped),
 * then samples and decodes one token at a time until max_tokens, an end token, a stop string,
 * the grammar's end, or the callback says stop. *n_generated counts the tokens reported and *why
 * says why it ended (either may be NULL). The token stream is the same as `nuri run`'s. */
NURI_API nuri_status nuri_generate(nuri_context *c, nuri_sampler_chain *s, const int32_t *prompt,
                                   size_t n_prompt, const nuri_generate_params *params,
                                   int32_t *n_generated, nuri_end_reason *why);

/* ---- the server ----
 * The OpenAI-compatible HTTP server (`nuri serve`) as an object: it binds at once, loads the
 * model in the background, and serves from its own threads until stopped. Calls on one server
 * may come from any thread, but nuri_server_stop only once. */

typedef struct nuri_server nuri_server;

typedef struct nuri_server_params {
    size_t struct_size;
    const char *model_path;      // required
    const char *model_name;      // /v1/models' id (NULL: the file name without .gguf)
    const char *host;            // numeric IPv4 address to bind (NULL: 127.0.0.1)
    int port;                    // 0: any free port (nuri_server_port says which)
    int n_threads;               // forward pass threads (0: 1)
    int n_ctx;                   // KV cache tokens for all requests (0: sized from free memory)
    int max_seqs;                // requests decoded together (0: 8)
    const char *const *api_keys; // n_api_keys accepted bearer keys; none: no authentication
    int n_api_keys;
    const char *chat_template; // a template file replacing the model's, or NULL
    const char *store_path;    // SQLite file for the Responses/Conversations APIs, or NULL: off
} nuri_server_params;

NURI_API void nuri_server_params_init(nuri_server_params *p, size_t struct_size);
/* Binds and starts serving (the model loads in the background: /health answers 503 until it is
 * ready). Caller stops with nuri_server_stop. */
NURI_API nuri_status nuri_server_start(const nuri_server_params *params, nuri_server **out);
NURI_API int nuri_server_port(const nuri_server *s);
/* Waits until the model is loaded; its status (the reason on failure). */
NURI_API nuri_status nuri_server_wait_loaded(nuri_server *s);
/* Stops accepting, ends running requests (streams get an in-stream error) and frees everything. */
NURI_API void nuri_server_stop(nuri_server *s); // NULL is fine

#ifdef __cplusplus
}
#endif
#endif
