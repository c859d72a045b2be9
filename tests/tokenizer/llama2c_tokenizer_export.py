#!/usr/bin/env python3
"""Writes a SentencePiece model as llama2.c's tokenizer.bin, the way llama2.c's tokenizer.py
exports it: u32 max_token_length, then per piece f32 score, u32 length and the UTF-8 bytes, with
U+2581 written as a space and BOS / EOS as "\\n<s>\\n" / "\\n</s>\\n".
Usage: llama2c_tokenizer_export.py MODEL OUT  (needs Debian's python3-sentencepiece)
"""
import struct
import sys

import sentencepiece


def main():
    sp = sentencepiece.SentencePieceProcessor(model_file=sys.argv[1])
    texts, scores = [], []
    for i in range(sp.get_piece_size()):
        piece = sp.id_to_piece(i)
        if i == sp.bos_id():
            piece = "\n<s>\n"
        elif i == sp.eos_id():
            piece = "\n</s>\n"
        texts.append(piece.replace("\u2581", " ").encode("utf-8"))
        scores.append(sp.get_score(i))
    with open(sys.argv[2], "wb") as f:
        f.write(struct.pack("<I", max(len(t) for t in texts)))
        for text, score in zip(texts, scores):
            f.write(struct.pack("<fI", score, len(text)))
            f.write(text)


if __name__ == "__main__":
    main()
