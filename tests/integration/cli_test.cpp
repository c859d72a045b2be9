// The kiln binary end to end: subcommands run on the shared models, and bad input of every kind
// gets one clear line on stderr and a non-zero exit, never a crash or a hang.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <sstream>

#include "test_support.h"

namespace kiln {
namespace {

using Result = test::KilnRun;

Result kiln(const std::string& args, bool merge_stderr = true) { return test::run_kiln(args, merge_stderr); }

std::string write_file(const std::string& name, const std::string& bytes) {
  const std::string path = test::temp_dir() + "/" + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

// Exit codes of a crash (signal) are 128+; errors must be small positive numbers.
using test::expect_clean_error;

TEST(Cli, HelpListsEverySubcommand) {
  Result r = kiln("--help");
  EXPECT_EQ(r.code, 0);
  for (const char* sub : {"run", "bench", "inspect", "tokenize", "detokenize"}) EXPECT_NE(r.out.find(sub), std::string::npos) << sub;
  for (const char* sub : {"run", "bench", "inspect"}) {
    Result h = kiln(std::string(sub) + " --help");
    EXPECT_EQ(h.code, 0) << sub;
    EXPECT_NE(h.out.find("model"), std::string::npos) << sub << ": " << h.out;
  }
}

// The line of `flag` in a --help text ("" when absent), from the flag to the end of the line.
std::string help_line(const std::string& help, const std::string& flag) {
  std::stringstream ss(help);
  for (std::string line; std::getline(ss, line);) {
    const std::size_t at = line.find(flag);
    const std::size_t end = at + flag.size();
    if (at != std::string::npos && line.find_first_not_of(' ') == at && (end == line.size() || line[end] == ' '))
      return line.substr(at);
  }
  return "";
}

// Options several commands share are declared once: each reads the same in every command.
TEST(Cli, SharedOptionsReadTheSameInEveryCommand) {
  std::map<std::string, std::string> help;
  for (const char* sub : {"run", "chat", "bench", "serve", "eval perplexity", "eval kld", "eval compare", "imatrix", "quantize"}) {
    Result h = kiln(std::string(sub) + " --help");
    ASSERT_EQ(h.code, 0) << sub;
    help[sub] = h.out;
  }
  for (const auto& [sub, text] : help)
    EXPECT_NE(help_line(text, "-t,--threads INT=0").find("(0: all hardware threads)"), std::string::npos) << sub;
  for (const char* sub : {"run", "chat", "bench", "serve", "eval perplexity", "imatrix"})
    EXPECT_EQ(help_line(help[sub], "--no-mmap"), help_line(help["run"], "--no-mmap")) << sub;
  for (const char* flag : {"--temp", "--top-k", "--top-p", "--min-p", "--repeat-penalty", "--repeat-last-n",
                           "--presence-penalty", "--frequency-penalty", "-c,--ctx"}) {
    EXPECT_NE(help_line(help["run"], flag), "") << flag;
    EXPECT_EQ(help_line(help["chat"], flag), help_line(help["run"], flag)) << flag;
  }
  EXPECT_NE(help_line(help["run"], "--kv-type"), "");
  EXPECT_EQ(help_line(help["bench"], "--kv-type"), help_line(help["run"], "--kv-type"));
  for (const char* flag : {"--text", "--tokens", "-c,--ctx", "--chunks", "--no-bos"})
    EXPECT_NE(help_line(help["eval perplexity"], flag), "") << flag;
  for (const char* sub : {"eval kld", "eval compare", "imatrix"})
    for (const char* flag : {"--text", "--tokens", "-c,--ctx", "--chunks", "--no-bos"})
      EXPECT_EQ(help_line(help[sub], flag), help_line(help["eval perplexity"], flag)) << sub << " " << flag;
  // Every command with a long job shows its progress the same way (monitor/progress.h).
  EXPECT_NE(help_line(help["quantize"], "--progress"), "");
  for (const char* sub : {"bench", "eval perplexity", "eval kld", "eval compare", "imatrix", "quantize"})
    for (const char* flag : {"--progress", "-q,--quiet"})
      EXPECT_EQ(help_line(help[sub], flag), help_line(help["quantize"], flag)) << sub << " " << flag;
  const Result export_help = kiln("export onnx --help");  // single-threaded: no --threads
  ASSERT_EQ(export_help.code, 0);
  for (const char* flag : {"--progress", "-q,--quiet"})
    EXPECT_EQ(help_line(export_help.out, flag), help_line(help["quantize"], flag)) << "export onnx " << flag;
}

TEST(Cli, RunStories260kGreedyByIdsIsDeterministic) {
  KILN_REQUIRE_DATA(model, "stories260K.bin");
  Result a = kiln("run " + model + " --tokens 1 -n 40 --temp 0 --print-ids -q", false);
  Result b = kiln("run " + model + " --tokens 1 -n 40 --temp 0 --print-ids -q -t 1", false);
  ASSERT_EQ(a.code, 0) << a.out;
  EXPECT_EQ(a.out, b.out);
  std::stringstream ss(a.out);
  int v, count = 0;
  while (ss >> v) {
    EXPECT_GE(v, 0);
    EXPECT_LT(v, 512);
    ++count;
  }
  EXPECT_GE(count, 1);
  EXPECT_LE(count, 40);
}

TEST(Cli, RunSeedMakesSamplingReproducible) {
  KILN_REQUIRE_DATA(model, "stories260K.bin");
  const std::string args = "run " + model + " --tokens 1 -n 30 --temp 1.0 --print-ids -q --ignore-eos ";
  Result a = kiln(args + "--seed 7", false), b = kiln(args + "--seed 7", false), c = kiln(args + "--seed 8", false);
  ASSERT_EQ(a.code, 0) << a.out;
  EXPECT_EQ(a.out, b.out);
  EXPECT_NE(a.out, c.out);
}

TEST(Cli, RunTextPromptOnGgufStreamsText) {
  KILN_REQUIRE_DATA(model, "llama-2-tiny-random.gguf");
  Result r = kiln("run " + model + " -p 'Hello world' -n 8 --seed 1 -q --ignore-eos", false);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_FALSE(r.out.empty());
}

TEST(Cli, BenchPrintsJson) {
  KILN_REQUIRE_DATA(model, "stories260K.bin");
  Result r = kiln("bench " + model + " -p 16 -n 8 -r 2 --json", false);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("\"prefill_tok_s_mean\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"decode_tok_s_mean\""), std::string::npos) << r.out;
  // The read bandwidth decode is measured against: a real measurement, or null when skipped.
  const auto j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  ASSERT_TRUE(j["read_bandwidth_gb_s"].is_number()) << r.out;
  EXPECT_GT(j["read_bandwidth_gb_s"].get<double>(), 0.1);
  Result skipped = kiln("bench " + model + " -p 4 -n 2 -r 1 --json --no-bandwidth", false);
  ASSERT_EQ(skipped.code, 0) << skipped.out;
  EXPECT_TRUE(nlohmann::json::parse(skipped.out.substr(skipped.out.find('{')))["read_bandwidth_gb_s"].is_null())
      << skipped.out;
  EXPECT_EQ(j["load"], "map") << r.out;
}

TEST(Cli, NoMmapReadsTheWeightsIntoMemoryAndGivesTheSameTokens) {
  KILN_REQUIRE_DATA(model, "stories260K.bin");
  const std::string bench = "bench " + model + " -p 4 -n 2 -r 1 --json --no-bandwidth";
  Result flag = kiln(bench + " --no-mmap", false);
  Result env;
  env.code = test::run_command("KILN_LOAD=copy timeout 120 " + test::kiln_binary() + " " + bench, &env.out, false);
  for (const Result* r : {&flag, &env}) {
    ASSERT_EQ(r->code, 0) << r->out;
    EXPECT_EQ(nlohmann::json::parse(r->out.substr(r->out.find('{')))["load"], "copy") << r->out;
  }
  const std::string gen = "run " + model + " --tokens 1 -n 24 --temp 0 --print-ids -q";
  Result mapped = kiln(gen, false), copied = kiln(gen + " --no-mmap", false);
  ASSERT_EQ(mapped.code, 0) << mapped.out;
  ASSERT_EQ(copied.code, 0) << copied.out;
  EXPECT_EQ(mapped.out, copied.out);
}

TEST(Cli, BadInputGetsOneLineErrors) {
  expect_clean_error(kiln("run /nonexistent/model.gguf -p hi"), "nonexistent");
  expect_clean_error(kiln("inspect /nonexistent/model.gguf"), "nonexistent");
  expect_clean_error(kiln("run " + write_file("empty.gguf", "") + " -p hi"), "empty.gguf");
  expect_clean_error(kiln("run " + write_file("junk.bin", std::string(100, 'x')) + " --tokens 1"), "junk.bin");
  expect_clean_error(kiln("run " + write_file("badver.gguf", std::string("GGUF\x07\0\0\0", 8) + std::string(40, '\0')) +
                          " -p hi"),
                     "version");
  expect_clean_error(kiln("frobnicate"), "frobnicate");
  expect_clean_error(kiln("run"), "model");
}

TEST(Cli, BadFlagsAndPromptsAreRejected) {
  KILN_REQUIRE_DATA(model, "stories260K.bin");
  expect_clean_error(kiln("run " + model + " --tokens 1,x,3"), "--tokens");
  expect_clean_error(kiln("run " + model + " --tokens 1 --temp -1"), "temperature");
  expect_clean_error(kiln("run " + model + " --tokens 1 --top-p 2"), "top_p");
  expect_clean_error(kiln("run " + model + " --tokens 99999"), "out of range");
  expect_clean_error(kiln("run " + model + " -p hello"), "no tokenizer");
  expect_clean_error(kiln("run " + model + " --tokens 1 --kv-type q9"), "kv-type");
  expect_clean_error(kiln("run " + model + " --tokens 1 -n five"), "n-predict");
  // A prompt longer than the context.
  std::string many = "1";
  for (int i = 0; i < 40; ++i) many += ",5";
  expect_clean_error(kiln("run " + model + " --tokens " + many + " --ctx 16"), "context");
  expect_clean_error(kiln("bench " + model + " -p 0"), "-p");
}

TEST(Cli, TokenizeAndDetokenizeRoundTrip) {
  KILN_REQUIRE_DATA(gguf, "llama-2-tiny-random.gguf");
  Result r = kiln("tokenize " + gguf + " 'Hello world' --ids", false);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out, "1,15043,3186\n");  // <s> Hello world, as sentencepiece gives
  Result listing = kiln("tokenize " + gguf + " 'Hello world'", false);
  EXPECT_NE(listing.out.find("15043  ' Hello'"), std::string::npos) << listing.out;
  EXPECT_NE(listing.out.find("'<s>'"), std::string::npos) << listing.out;
  Result back = kiln("detokenize " + gguf + " 1,15043,3186", false);
  EXPECT_EQ(back.out, "Hello world\n");
  Result json = kiln("tokenize " + gguf + " 'a' --json --no-bos", false);
  EXPECT_NE(json.out.find("\"n_tokens\":"), std::string::npos) << json.out;

  KILN_REQUIRE_DATA(bpe, "llama3.2-tokenizer");
  Result l3 = kiln("tokenize " + bpe + " 'Hello world<|eot_id|>' --ids", false);
  EXPECT_EQ(l3.out, "128000,9906,1917,128009\n");
  Result plain = kiln("tokenize " + bpe + " '<|eot_id|>' --ids --no-parse-special --no-bos", false);
  EXPECT_EQ(plain.out.find("128009"), std::string::npos) << plain.out;
  Result piped = kiln("tokenize " + bpe + " 'naïve café 🙂' --ids | " + test::kiln_binary() + " detokenize " + bpe, false);
  EXPECT_EQ(piped.out, "naïve café 🙂\n");

  expect_clean_error(kiln("detokenize " + gguf + " 1,x"), "not a token id");
  expect_clean_error(kiln("detokenize " + gguf + " 99999999"), "outside the vocabulary");
  expect_clean_error(kiln("tokenize /nonexistent 'a'"), "nonexistent");
  expect_clean_error(kiln("tokenize " + gguf), "text");
}

TEST(Cli, ChatFollowsTheConversationAndResets) {
  KILN_REQUIRE_DATA(gguf, "llama-2-tiny-random.gguf");
  // Greedy: the reply to the same first message is the same after /reset, and a second turn
  // (which sees the first exchange through the template) is a different prompt.
  const std::string script = write_file("chat1.txt", "Hello there\nAnd then?\n/reset\nHello there\n/history\n");
  Result r = kiln("chat " + gguf + " -n 8 --temp 0 < " + script, false);
  ASSERT_EQ(r.code, 0) << r.out;
  std::vector<std::string> lines;
  std::stringstream ss(r.out);
  for (std::string l; std::getline(ss, l);) lines.push_back(l);
  ASSERT_GE(lines.size(), 6u) << r.out;
  EXPECT_EQ(lines[0], lines[3]) << r.out;         // same reply after /reset
  EXPECT_EQ(lines[2], "[conversation reset]");
  EXPECT_EQ(lines[4], "[user] Hello there");      // /history shows only the new exchange
  EXPECT_EQ(lines.size(), 6u) << r.out;

  const std::string script2 = write_file("chat2.txt", "Hello there, how are you today my friend?\nTell me more please\n");
  Result stats = kiln("chat " + gguf + " -n 8 --temp 0 --stats < " + script2);
  ASSERT_EQ(stats.code, 0) << stats.out;
  // The second turn reuses the first turn's blocks from the prefix cache.
  EXPECT_NE(stats.out.find("(16 from cache)"), std::string::npos) << stats.out;

  expect_clean_error(kiln("chat " + gguf + " --template nosuch </dev/null"), "nosuch");
  KILN_REQUIRE_DATA(bin, "stories260K.bin");
  expect_clean_error(kiln("chat " + bin + " </dev/null"), "tokenizer");
}

}  // namespace
}  // namespace kiln
