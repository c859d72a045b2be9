// Encode throughput on War and Peace (3.2 MB), line by line as spm_encode reads it:
//   BM_SpmEncode      kiln's SentencePiece BPE with the Llama-2 vocabulary of the shared GGUF
//   BM_BpeEncode      kiln's byte-level BPE with the Llama-3.2 vocabulary
//   BM_SpmEncodeTool  sentencepiece's own spm_encode on the same file (its user CPU time)
// and one long word without spaces (random letters), 64 KiB and 1 MiB, against War and Peace's
// bytes per second: the long-word paths should stay within a small factor of ordinary text
//   BM_SpmLongWord/<bytes>, BM_BpeLongWord/<bytes>
// bytes_per_second is the figure to compare. The shared data folder is KILN_DATA_DIR, else
// ../shared/data beside the repository.
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "format/gguf_file.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/load_tokenizer.h"

namespace {

std::string data_dir() {
  if (const char* dir = std::getenv("KILN_DATA_DIR")) return dir;
  const std::string here = __FILE__;  // <repo>/bench/tokenizer_bench.cpp
  return here.substr(0, here.rfind('/')) + "/../../shared/data";
}

const std::vector<std::string>& book_lines(std::size_t* bytes) {
  static std::size_t total = 0;
  static const std::vector<std::string> lines = [] {
    std::vector<std::string> out;
    std::ifstream in(data_dir() + "/war-and-peace.txt", std::ios::binary);
    for (std::string line; std::getline(in, line);) {
      total += line.size() + 1;
      out.push_back(std::move(line));
    }
    return out;
  }();
  *bytes = total;
  return lines;
}

void encode_book(benchmark::State& state, const kiln::Tokenizer& tok) {
  std::size_t bytes = 0;
  const std::vector<std::string>& lines = book_lines(&bytes);
  if (lines.empty()) {
    state.SkipWithError("war-and-peace.txt not found (set KILN_DATA_DIR)");
    return;
  }
  std::size_t ids = 0;
  for (auto _ : state) {
    for (const std::string& line : lines) ids += tok.encode(line, false, false).size();
  }
  benchmark::DoNotOptimize(ids);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
  state.counters["ids/line"] = static_cast<double>(ids) / static_cast<double>(state.iterations() * lines.size());
}

const kiln::Tokenizer& spm_tokenizer();

void BM_SpmEncode(benchmark::State& state) { encode_book(state, spm_tokenizer()); }

void BM_BpeEncode(benchmark::State& state) {
  static const std::unique_ptr<kiln::Tokenizer> tok = kiln::load_tokenizer_file(data_dir() + "/llama3.2-tokenizer");
  encode_book(state, *tok);
}

// sentencepiece's command-line encoder, timed by the user CPU time of the child process (what
// `/usr/bin/time spm_encode ...` reports), so that all three numbers come from the same run.
void BM_SpmEncodeTool(benchmark::State& state) {
  std::size_t bytes = 0;
  if (book_lines(&bytes).empty()) {
    state.SkipWithError("war-and-peace.txt not found (set KILN_DATA_DIR)");
    return;
  }
  const std::string command = "spm_encode --model=" + data_dir() + "/llama2-tokenizer.model --output_format=id < " +
                              data_dir() + "/war-and-peace.txt > /dev/null";
  for (auto _ : state) {
    rusage before{}, after{};
    getrusage(RUSAGE_CHILDREN, &before);
    if (std::system(command.c_str()) != 0) {
      state.SkipWithError("spm_encode failed (apt install sentencepiece)");
      return;
    }
    getrusage(RUSAGE_CHILDREN, &after);
    auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6; };
    state.SetIterationTime(seconds(after.ru_utime) - seconds(before.ru_utime));
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
}

const kiln::Tokenizer& spm_tokenizer() {
  static const std::unique_ptr<kiln::Tokenizer> tok =
      kiln::load_tokenizer(*kiln::GgufFile::open(data_dir() + "/llama-2-tiny-random.gguf"));
  return *tok;
}

void encode_long_word(benchmark::State& state, const kiln::Tokenizer& tok) {
  std::mt19937 rng(7);
  std::string word(static_cast<std::size_t>(state.range(0)), 'a');
  for (char& c : word) c = static_cast<char>('a' + std::uniform_int_distribution<int>(0, 25)(rng));
  std::size_t ids = 0;
  for (auto _ : state) ids += tok.encode(word, false, false).size();
  benchmark::DoNotOptimize(ids);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * word.size()));
}

void BM_SpmLongWord(benchmark::State& state) { encode_long_word(state, spm_tokenizer()); }

void BM_BpeLongWord(benchmark::State& state) {
  static const std::unique_ptr<kiln::Tokenizer> tok = kiln::load_tokenizer_file(data_dir() + "/llama3.2-tokenizer");
  encode_long_word(state, *tok);
}

BENCHMARK(BM_SpmEncode)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_BpeEncode)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_SpmEncodeTool)->Unit(benchmark::kMillisecond)->UseManualTime()->Iterations(2);
BENCHMARK(BM_SpmLongWord)->Arg(64 << 10)->Arg(1 << 20)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_BpeLongWord)->Arg(64 << 10)->Arg(1 << 20)->Unit(benchmark::kMillisecond);

}  // namespace
