#!/usr/bin/env python3
"""Reference token ids and texts from sentencepiece (Debian's python3-sentencepiece), as JSON.

  spm_reference.py MODEL encode STRINGS.json       -> [[ids of each string], ...]
  spm_reference.py MODEL encode-lines FILE N       -> [[ids of line 1], ...] for the first N lines
                                                      (each without its line break)
  spm_reference.py MODEL decode IDS.json           -> ["text of each id list", ...]

STRINGS.json holds a JSON list of strings; IDS.json a list of id lists. Exits 3 when the
sentencepiece module is missing, so the caller can skip instead of failing.
"""
import json
import sys

try:
    import sentencepiece
except ImportError:
    sys.stderr.write("python module sentencepiece not found\n")
    sys.exit(3)


def main():
    model, command, arg = sys.argv[1], sys.argv[2], sys.argv[3]
    sp = sentencepiece.SentencePieceProcessor(model_file=model)
    if command == "encode":
        with open(arg, encoding="utf-8") as f:
            strings = json.load(f)
        result = [sp.encode(s) for s in strings]
    elif command == "encode-lines":
        n = int(sys.argv[4])
        with open(arg, encoding="utf-8", newline="") as f:
            lines = f.read().split("\n")[:n]
        result = [sp.encode(line) for line in lines]
    elif command == "decode":
        with open(arg, encoding="utf-8") as f:
            id_lists = json.load(f)
        result = [sp.decode(ids) for ids in id_lists]
    else:
        sys.stderr.write(f"unknown command {command}\n")
        sys.exit(2)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
