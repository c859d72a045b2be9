#pragma once
// The inputs of `kiln data prepare` turned into documents. Inputs are text files, JSONL files
// (`.jsonl` or `.ndjson`: one JSON object per line, the document in a string field) and folders,
// walked recursively in sorted path order so that the same inputs always give the same
// documents in the same order. A text file is one document, or with `paragraphs` one document
// per run of lines between blank lines. Files are memory-mapped and read one document at a time:
// nothing holds more of the corpus than the document being handed out.
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::data {

struct CorpusOptions {
  std::string jsonl_field = "text";  // the field of each JSONL record that holds its text
  bool paragraphs = false;           // split text files at blank lines
};

struct CorpusFile {
  std::string path;
  std::uint64_t bytes = 0;
  bool jsonl = false;
};

// Every file the inputs name: a file as given, a folder's regular files recursively in sorted
// order (hidden files and folders, whose names start with '.', are skipped). Throws kiln::Error
// naming an input that does not exist or holds no file.
std::vector<CorpusFile> list_corpus_files(const std::vector<std::string>& inputs);

// Calls `fn` with each non-empty document of `file`, in file order; the view is valid during
// the call only. Throws kiln::Error naming the file and line of a JSONL record that is not an
// object with a string field `options.jsonl_field`.
void for_each_document(const CorpusFile& file, const CorpusOptions& options,
                       const std::function<void(std::string_view)>& fn);

// SHA-256 of a whole file, as 64 hex digits (the file is mapped, not read into memory).
std::string file_sha256_hex(const std::string& path);

}  // namespace kiln::data
