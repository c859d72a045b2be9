#!/usr/bin/env python3
"""An independent byte-level BPE for Llama 3, tiktoken's way, as a reference for kiln's tests.

It shares nothing with kiln's implementation: it reads only encoder.json (no merge list: as in
tiktoken, a token's id is its merge rank, and a word is merged by repeatedly joining the
adjacent pair whose joined bytes form the lowest-ranked token), and it cuts text into words with
a hand-written matcher for Llama 3's expression
    (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+
over the standard library's unicodedata (Python's `re` has no \\p{L}; the `regex` module may be
missing). \\s is Unicode's White_Space property, as in tiktoken.

  bpe_reference.py ENCODER_JSON encode STRINGS.json      -> [[ids of each string], ...]
  bpe_reference.py ENCODER_JSON encode-lines FILE N      -> [[ids of line 1], ...], first N lines
                                                           (0: all), each without its line break
  bpe_reference.py ENCODER_JSON split STRINGS.json       -> [[words of each string], ...]

Specials are not handled: the strings are plain text. Output is JSON on stdout.
"""
import json
import sys
import unicodedata

WHITE_SPACE = set("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | {
    chr(c) for c in range(0x2000, 0x200B)
}
# Case-insensitive letters of the contractions: PCRE2, Rust's regex and Oniguruma all fold
# U+017F LATIN SMALL LETTER LONG S to s.
CASELESS = {"s": "sS\u017f", "t": "tT", "r": "rR", "e": "eE", "v": "vV", "m": "mM", "l": "lL", "d": "dD"}
CONTRACTIONS = ["s", "t", "re", "ve", "m", "ll", "d"]


def is_letter(c):
    return unicodedata.category(c)[0] == "L"


def is_number(c):
    return unicodedata.category(c)[0] == "N"


def is_space(c):
    return c in WHITE_SPACE


def match_at(text, i):
    """Length of the match of Llama 3's expression at position i, or 0 if none."""
    n = len(text)
    c = text[i]
    # (?i:'s|'t|'re|'ve|'m|'ll|'d)
    if c == "'":
        for suffix in CONTRACTIONS:
            end = i + 1 + len(suffix)
            if end <= n and all(text[i + 1 + k] in CASELESS[ch] for k, ch in enumerate(suffix)):
                return 1 + len(suffix)
    # [^\r\n\p{L}\p{N}]?\p{L}+
    j = i
    if c not in "\r\n" and not is_letter(c) and not is_number(c) and i + 1 < n and is_letter(text[i + 1]):
        j = i + 1
    if is_letter(text[j]):
        while j < n and is_letter(text[j]):
            j += 1
        return j - i
    # \p{N}{1,3}
    if is_number(c):
        j = i
        while j < n and j - i < 3 and is_number(text[j]):
            j += 1
        return j - i
    # ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    j = i + 1 if c == " " else i

    def other(ch):
        return not is_space(ch) and not is_letter(ch) and not is_number(ch)

    if j < n and other(text[j]):
        while j < n and other(text[j]):
            j += 1
        while j < n and text[j] in "\r\n":
            j += 1
        return j - i
    if not is_space(c):
        return 0
    run_end = i
    while run_end < n and is_space(text[run_end]):
        run_end += 1
    # \s*[\r\n]+ : the whitespace run up to and including its last line break
    last_break = max((k for k in range(i, run_end) if text[k] in "\r\n"), default=-1)
    if last_break >= 0:
        return last_break + 1 - i
    # \s+(?!\S) : the run, or all of it but its last character when a non-space follows
    if run_end == n:
        return run_end - i
    if run_end - i >= 2:
        return run_end - 1 - i
    # \s+
    return run_end - i


def split_words(text):
    words, i = [], 0
    while i < len(text):
        length = match_at(text, i)
        assert length > 0, f"no match at {i} in {text!r}"
        words.append(text[i : i + length])
        i += length
    return words


def bytes_to_unicode():
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


class Encoder:
    def __init__(self, encoder_json):
        with open(encoder_json, encoding="utf-8") as f:
            encoder = json.load(f)
        byte_of = {ch: b for b, ch in bytes_to_unicode().items()}
        self.ranks = {bytes(byte_of[ch] for ch in text): rank for text, rank in encoder.items()}
        self.cache = {}

    def encode_word(self, word):
        if word in self.ranks:
            return [self.ranks[word]]
        parts = [word[k : k + 1] for k in range(len(word))]
        while len(parts) > 1:
            best, best_at = None, -1
            for k in range(len(parts) - 1):
                rank = self.ranks.get(parts[k] + parts[k + 1])
                if rank is not None and (best is None or rank < best):
                    best, best_at = rank, k
            if best is None:
                break
            parts[best_at : best_at + 2] = [parts[best_at] + parts[best_at + 1]]
        return [self.ranks[p] for p in parts]

    def encode(self, text):
        ids = []
        for word in split_words(text):
            cached = self.cache.get(word)
            if cached is None:
                cached = self.encode_word(word.encode("utf-8"))
                self.cache[word] = cached
            ids.extend(cached)
        return ids


def main():
    encoder_json, command, arg = sys.argv[1], sys.argv[2], sys.argv[3]
    if command == "split":
        with open(arg, encoding="utf-8") as f:
            json.dump([split_words(s) for s in json.load(f)], sys.stdout)
        return
    encoder = Encoder(encoder_json)
    if command == "encode":
        with open(arg, encoding="utf-8") as f:
            strings = json.load(f)
    elif command == "encode-lines":
        n = int(sys.argv[4])
        with open(arg, encoding="utf-8", newline="") as f:
            strings = f.read().split("\n")
        if n > 0:
            strings = strings[:n]
    else:
        sys.stderr.write(f"unknown command {command}\n")
        sys.exit(2)
    json.dump([encoder.encode(s) for s in strings], sys.stdout)


if __name__ == "__main__":
    main()
