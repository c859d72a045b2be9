#include "data/corpus.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <system_error>

#include "core/error.h"
#include "core/mapped_file.h"
#include "core/sha256.h"

namespace kiln::data {
namespace fs = std::filesystem;
namespace {

bool is_jsonl(const fs::path& p) {
  const std::string ext = p.extension().string();
  return ext == ".jsonl" || ext == ".ndjson";
}

CorpusFile describe(const fs::path& p) {
  std::error_code ec;
  const std::uint64_t bytes = fs::file_size(p, ec);
  if (ec) fail("{}: cannot read its size: {}", p.string(), ec.message());
  return {p.string(), bytes, is_jsonl(p)};
}

bool blank(std::string_view line) {
  return std::all_of(line.begin(), line.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

}  // namespace

std::vector<CorpusFile> list_corpus_files(const std::vector<std::string>& inputs) {
  std::vector<CorpusFile> files;
  for (const std::string& input : inputs) {
    std::error_code ec;
    const fs::file_status st = fs::status(input, ec);
    if (ec || !fs::exists(st)) fail("{}: no such file or folder", input);
    if (fs::is_regular_file(st)) {
      files.push_back(describe(input));
      continue;
    }
    if (!fs::is_directory(st)) fail("{}: not a file or folder", input);
    std::vector<fs::path> found;
    fs::recursive_directory_iterator it(input, fs::directory_options::none, ec), end;
    if (ec) fail("{}: cannot list: {}", input, ec.message());
    for (; it != end; it.increment(ec)) {
      if (ec) fail("{}: cannot list: {}", input, ec.message());
      const std::string name = it->path().filename().string();
      if (!name.empty() && name[0] == '.') {
        if (it->is_directory()) it.disable_recursion_pending();
        continue;
      }
      if (it->is_regular_file()) found.push_back(it->path());
    }
    if (found.empty()) fail("{}: the folder holds no files", input);
    std::sort(found.begin(), found.end());
    for (const fs::path& p : found) files.push_back(describe(p));
  }
  return files;
}

void for_each_document(const CorpusFile& file, const CorpusOptions& options,
                       const std::function<void(std::string_view)>& fn) {
  const MappedFile mapped(file.path, LoadMode::map);
  const std::string_view all(reinterpret_cast<const char*>(mapped.data()), mapped.size());
  if (!file.jsonl && !options.paragraphs) {
    if (!all.empty()) fn(all);
    return;
  }
  std::size_t line_no = 0;
  std::size_t paragraph_begin = std::string_view::npos, paragraph_end = 0;
  for (std::size_t pos = 0; pos < all.size();) {
    std::size_t eol = all.find('\n', pos);
    if (eol == std::string_view::npos) eol = all.size();
    const std::string_view line = all.substr(pos, eol - pos);
    ++line_no;
    if (file.jsonl) {
      if (!blank(line)) {
        nlohmann::json record = nlohmann::json::parse(line, nullptr, false);
        if (record.is_discarded()) fail("{}:{}: not a JSON value", file.path, line_no);
        if (!record.is_object()) fail("{}:{}: expected a JSON object", file.path, line_no);
        const auto f = record.find(options.jsonl_field);
        if (f == record.end()) fail("{}:{}: the record has no field \"{}\"", file.path, line_no, options.jsonl_field);
        if (!f->is_string()) fail("{}:{}: field \"{}\" is not a string", file.path, line_no, options.jsonl_field);
        const std::string& text = f->get_ref<const std::string&>();
        if (!text.empty()) fn(text);
      }
    } else if (blank(line)) {
      if (paragraph_begin != std::string_view::npos) fn(all.substr(paragraph_begin, paragraph_end - paragraph_begin));
      paragraph_begin = std::string_view::npos;
    } else {
      if (paragraph_begin == std::string_view::npos) paragraph_begin = pos;
      paragraph_end = eol;  // a paragraph is its lines joined by their newlines, without the last one
    }
    pos = eol + 1;
  }
  if (paragraph_begin != std::string_view::npos) fn(all.substr(paragraph_begin, paragraph_end - paragraph_begin));
}

std::string file_sha256_hex(const std::string& path) {
  const MappedFile mapped(path, LoadMode::map);
  return sha256_hex(std::string_view(reinterpret_cast<const char*>(mapped.data()), mapped.size()));
}

}  // namespace kiln::data
