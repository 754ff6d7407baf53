#!/usr/bin/env python3
"""hf_bpe_check.py: checks exaone4.ids.json (llama.cpp's ids) against a second, independent
tokenizer written here from the semantics of Hugging Face's `tokenizers` for EXAONE 4.0
("GPT2Tokenizer", byte-level BPE), run on the model's own files.

Usage: python3 tests/data/vocab/hf_bpe_check.py HF_DIR [tests/data/vocab/exaone4.ids.json]
HF_DIR holds vocab.json, merges.txt and tokenizer_config.json (see README.md for where they are).
Needs python3-regex (for \\p{L}); nothing else.

What it implements, in `tokenizers`' order:
 1. added tokens (tokenizer_config.json's added_tokens_decoder) are cut out first, leftmost-longest
    as the added-vocabulary trie does; special ones only when special-token text is parsed
    (split_special_tokens=False, the default: parse_special = true; with parse_special = false
    they stay text, as with split_special_tokens=True), non-special ones (EXAONE's runs of spaces
    and tabs, <think>, <tool_call>, ...) always;
 2. the ByteLevel pre-tokenizer (add_prefix_space false) with GPT-2's regex;
 3. BPE by merge rank over the GPT-2 byte-to-unicode text of each piece.
EXAONE 4.0's tokenizer.json was not reachable, so steps 2 and 3 are the GPT2Tokenizer semantics
that tokenizer_config.json names (tokenizer_class "GPT2Tokenizer"), which is also what llama.cpp's
"exaone4" pre-tokenizer means. Prints one line per case that differs, then a count.
"""
import json
import os
import sys

import regex

GPT2_RE = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def byte_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


class Tokenizer:
    def __init__(self, d):
        with open(os.path.join(d, "vocab.json"), encoding="utf-8") as f:
            self.vocab = json.load(f)
        with open(os.path.join(d, "merges.txt"), encoding="utf-8") as f:
            lines = [ln for ln in f.read().split("\n") if ln and not ln.startswith("#version")]
        self.rank = {tuple(ln.split(" ")): i for i, ln in enumerate(lines)}
        with open(os.path.join(d, "tokenizer_config.json"), encoding="utf-8") as f:
            added = json.load(f)["added_tokens_decoder"]
        self.added = {v["content"]: (int(k), v["special"]) for k, v in added.items()}
        self.b2u = byte_to_unicode()

    def bpe(self, word):
        parts = list(word)
        while len(parts) > 1:
            best = min(range(len(parts) - 1),
                       key=lambda i: self.rank.get((parts[i], parts[i + 1]), 1 << 30))
            if (parts[best], parts[best + 1]) not in self.rank:
                break
            parts[best:best + 2] = [parts[best] + parts[best + 1]]
        return [self.vocab[p] for p in parts]

    def plain(self, text):
        ids = []
        for m in GPT2_RE.finditer(text):
            ids += self.bpe("".join(self.b2u[b] for b in m.group().encode("utf-8")))
        return ids

    def encode(self, text, parse_special):
        usable = [t for t, (_, special) in self.added.items() if parse_special or not special]
        ids, start, i = [], 0, 0
        while i < len(text):
            best = max((t for t in usable if text.startswith(t, i)), key=len, default=None)
            if best is None:
                i += 1
                continue
            ids += self.plain(text[start:i]) + [self.added[best][0]]
            i += len(best)
            start = i
        return ids + self.plain(text[start:])


def main():
    d = sys.argv[1]
    path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "exaone4.ids.json")
    tok = Tokenizer(d)
    with open(path, encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    bad = 0
    for c in cases:
        got = tok.encode(c["text"], c["parse_special"])
        if got != c["ids"]:
            bad += 1
            k = next((k for k in range(min(len(got), len(c["ids"]))) if got[k] != c["ids"][k]), None)
            print("differs: %s (at id %s: hf %s, llama.cpp %s)" % (c["name"], k, got[k:k + 4] if k is not None else got[-4:],
                                                              c["ids"][k:k + 4] if k is not None else c["ids"][-4:]))
    print("%d cases, %d differ from the Hugging Face semantics" % (len(cases), bad))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
