#!/usr/bin/env python3
"""vocab_from_hf.py: a vocabulary-only GGUF file from a Hugging Face byte-level BPE tokenizer.

Usage:
    python3 tools/vocab_from_hf.py --pre exaone4 --arch exaone4 \
        [--template chat_template.jinja] [--name NAME] HF_DIR OUT.gguf

HF_DIR holds the model repository's vocab.json, merges.txt and tokenizer_config.json (the
"GPT2Tokenizer" layout) and, optionally, config.json. The output is what llama.cpp's
convert_hf_to_gguf.py --vocab-only writes for such a model, and what nuri's tokenizer and
`nuri mkmodel --vocab` read:

  tokenizer.ggml.model       "gpt2" (byte-level BPE)
  tokenizer.ggml.pre         --pre (the pre-tokenizer's name, e.g. "exaone4")
  tokenizer.ggml.tokens      vocab.json's keys in id order (the GPT-2 byte-to-unicode text)
  tokenizer.ggml.token_type  NORMAL; an added token (tokenizer_config.json's added_tokens_decoder)
                             is CONTROL when it is "special" or looks special (<|...|>), else
                             USER_DEFINED (as convert_hf_to_gguf.py decides)
  tokenizer.ggml.merges      merges.txt without its "#version" line
  tokenizer.ggml.{bos,eos,unknown,padding}_token_id
                             the ids of tokenizer_config.json's bos/eos/unk/pad_token texts, else
                             config.json's *_token_id
  tokenizer.ggml.add_bos_token / add_eos_token
                             as tokenizer_config.json says, when it says
  tokenizer.chat_template    --template's bytes, unchanged

and, from config.json, the architecture's hyperparameters (llama.cpp reads them even for a
vocabulary-only load). No tensors. Python 3 standard library only; nothing is normalized or
rewritten: the token texts are the tokenizer's own bytes.
"""
import argparse
import json
import os
import struct
import sys

# GGUF value types and token types (the GGUF specification; llama.cpp's gguf-py uses the same)
T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY = 4, 5, 6, 7, 8, 9
TOK_NORMAL, TOK_CONTROL, TOK_USER_DEFINED, TOK_UNUSED = 1, 3, 4, 5


def gguf_str(s):
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gguf_kv(key, vtype, value):
    out = gguf_str(key) + struct.pack("<I", vtype)
    if vtype == T_UINT32:
        return out + struct.pack("<I", value)
    if vtype == T_FLOAT32:
        return out + struct.pack("<f", value)
    if vtype == T_BOOL:
        return out + struct.pack("<B", 1 if value else 0)
    if vtype == T_STRING:
        return out + gguf_str(value)
    etype, items = value  # an array: (element type, elements)
    out += struct.pack("<IQ", etype, len(items))
    if etype == T_STRING:
        return out + b"".join(gguf_str(x) for x in items)
    if etype == T_INT32:
        return out + struct.pack("<%di" % len(items), *items)
    raise ValueError("array element type %d" % etype)


def looks_special(text):
    # convert_hf_to_gguf.py's does_token_look_special: added tokens some models forget to flag
    return (text in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
            or (text.startswith("<|") and text.endswith("|>"))
            or (text.startswith("<\uff5c") and text.endswith("\uff5c>"))
            or (text.startswith("<unused") and text.endswith(">")))


def token_text(value):
    # tokenizer_config.json writes special tokens as a string or as {"content": ...}
    return value.get("content") if isinstance(value, dict) else value


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("hf_dir")
    ap.add_argument("out")
    ap.add_argument("--pre", required=True, help="tokenizer.ggml.pre, e.g. exaone4")
    ap.add_argument("--arch", required=True, help="general.architecture, e.g. exaone4")
    ap.add_argument("--template", help="chat template file for tokenizer.chat_template")
    ap.add_argument("--name", help="general.name (default: the directory's name)")
    a = ap.parse_args()

    def load(name, required=True):
        path = os.path.join(a.hf_dir, name)
        if not required and not os.path.exists(path):
            return None
        with open(path, "rb") as f:
            return f.read()

    vocab = json.loads(load("vocab.json"))
    tcfg = json.loads(load("tokenizer_config.json"))
    cfg_bytes = load("config.json", required=False)
    cfg = json.loads(cfg_bytes) if cfg_bytes else {}
    merges = load("merges.txt").decode("utf-8").split("\n")
    if merges and merges[0].startswith("#version"):
        merges = merges[1:]
    merges = [m for m in merges if m]
    for m in merges:
        if len(m.split(" ")) != 2:
            sys.exit("merges.txt: not a pair: %r" % m)

    added = {int(k): v for k, v in tcfg.get("added_tokens_decoder", {}).items()}
    n_vocab = max(cfg.get("vocab_size", 0), max(vocab.values()) + 1, max(added, default=-1) + 1)
    tokens = [None] * n_vocab
    for text, i in vocab.items():
        if tokens[i] is not None:
            sys.exit("vocab.json: id %d appears twice" % i)
        tokens[i] = text
    types = [TOK_NORMAL] * n_vocab
    for i, t in added.items():
        if tokens[i] is not None and tokens[i] != t["content"]:
            sys.exit("id %d: vocab.json has %r, added_tokens_decoder %r" % (i, tokens[i], t["content"]))
        tokens[i] = t["content"]
        types[i] = TOK_CONTROL if t.get("special") or looks_special(t["content"]) else TOK_USER_DEFINED
    for i in range(n_vocab):
        if tokens[i] is None:  # as convert_hf_to_gguf.py fills holes
            tokens[i], types[i] = "[PAD%d]" % i, TOK_UNUSED
    ids = {t: i for i, t in enumerate(tokens)}

    kv = []
    arch = a.arch
    kv.append(gguf_kv("general.architecture", T_STRING, arch))
    kv.append(gguf_kv("general.name", T_STRING, a.name or os.path.basename(os.path.normpath(a.hf_dir))))
    hp = [  # (config.json key, GGUF key suffix, type)
        ("max_position_embeddings", "context_length", T_UINT32),
        ("hidden_size", "embedding_length", T_UINT32),
        ("num_hidden_layers", "block_count", T_UINT32),
        ("intermediate_size", "feed_forward_length", T_UINT32),
        ("num_attention_heads", "attention.head_count", T_UINT32),
        ("num_key_value_heads", "attention.head_count_kv", T_UINT32),
        ("head_dim", "attention.key_length", T_UINT32),
        ("head_dim", "attention.value_length", T_UINT32),
        ("rope_theta", "rope.freq_base", T_FLOAT32),
        ("rms_norm_eps", "attention.layer_norm_rms_epsilon", T_FLOAT32),
    ]
    for ck, gk, vt in hp:
        if cfg.get(ck) is not None:
            kv.append(gguf_kv("%s.%s" % (arch, gk), vt, cfg[ck]))
    if cfg.get("vocab_size") is not None:
        kv.append(gguf_kv("%s.vocab_size" % arch, T_UINT32, cfg["vocab_size"]))

    kv.append(gguf_kv("tokenizer.ggml.model", T_STRING, "gpt2"))
    kv.append(gguf_kv("tokenizer.ggml.pre", T_STRING, a.pre))
    kv.append(gguf_kv("tokenizer.ggml.tokens", T_ARRAY, (T_STRING, tokens)))
    kv.append(gguf_kv("tokenizer.ggml.token_type", T_ARRAY, (T_INT32, types)))
    kv.append(gguf_kv("tokenizer.ggml.merges", T_ARRAY, (T_STRING, merges)))
    for name, key in (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("unk", "unknown_token_id"),
                      ("pad", "padding_token_id")):
        text = token_text(tcfg.get(name + "_token"))
        i = ids.get(text) if text is not None else cfg.get(name + "_token_id")
        if isinstance(i, list):
            i = i[0]
        if i is not None:
            kv.append(gguf_kv("tokenizer.ggml." + key, T_UINT32, i))
    for name in ("add_bos_token", "add_eos_token"):
        if name in tcfg:
            kv.append(gguf_kv("tokenizer.ggml." + name, T_BOOL, bool(tcfg[name])))
    if a.template:
        with open(a.template, "rb") as f:
            kv.append(gguf_kv("tokenizer.chat_template", T_STRING, f.read()))

    with open(a.out, "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv)))  # version 3, no tensors
        for x in kv:
            f.write(x)
    n_ctl = types.count(TOK_CONTROL)
    n_usr = types.count(TOK_USER_DEFINED)
    print("%s: %d tokens (%d control, %d user-defined), %d merges, %d bytes"
          % (a.out, n_vocab, n_ctl, n_usr, len(merges), os.path.getsize(a.out)))


if __name__ == "__main__":
    main()
