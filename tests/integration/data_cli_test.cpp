// kiln data prepare / inspect end to end on the shared texts with the Llama-2 vocabulary: token
// counts equal kiln tokenize's, duplicates are dropped, the split depends on the documents and
// the seed only, shards stay within --shard-tokens, a folder of another tokenizer is refused,
// and damaged shards are reported in one line.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_support.h"

namespace kiln {
namespace {

using Result = test::KilnRun;

Result kiln(const std::string& args, bool merge_stderr = true) { return test::run_kiln(args, merge_stderr); }

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
void write_file(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

nlohmann::json manifest(const std::string& dir) { return nlohmann::json::parse(read_file(dir + "/manifest.json")); }

using test::expect_clean_error;

std::uint64_t tokenize_count(const std::string& tok, const std::string& file) {
  Result r = kiln("tokenize " + tok + " --no-parse-special --count -f " + file, false);
  EXPECT_EQ(r.code, 0) << r.out;
  return std::stoull(r.out);
}

class DataCli : public ::testing::Test {
 protected:
  void SetUp() override {
    tok_ = test::data_file("llama-2-tiny-random.gguf");
    shakespeare_ = test::data_file("tinyshakespeare.txt");
    war_ = test::data_file("war-and-peace.txt");
    if (tok_.empty() || shakespeare_.empty() || war_.empty())
      GTEST_SKIP() << "shared data (llama-2-tiny-random.gguf, tinyshakespeare.txt, war-and-peace.txt) not found";
    dir_ = test::temp_dir() + "/" + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
  }
  std::string tok_, shakespeare_, war_, dir_;
};

TEST_F(DataCli, TokenCountsEqualKilnTokenize) {
  Result r = kiln("data prepare --tokenizer " + tok_ + " --out " + dir_ + "/out --val-fraction 0 " + shakespeare_ + " " + war_);
  ASSERT_EQ(r.code, 0) << r.out;
  const nlohmann::json m = manifest(dir_ + "/out");
  const std::uint64_t expected = tokenize_count(tok_, shakespeare_) + tokenize_count(tok_, war_);
  EXPECT_EQ(m["splits"]["train"]["tokens"].get<std::uint64_t>(), expected);
  EXPECT_EQ(m["splits"]["train"]["documents"].get<std::uint64_t>(), 2u);
  EXPECT_EQ(m["splits"]["val"]["tokens"].get<std::uint64_t>(), 0u);
  ASSERT_EQ(m["sources"].size(), 2u);
  EXPECT_EQ(m["sources"][0]["bytes"].get<std::uint64_t>(), std::filesystem::file_size(shakespeare_));
  EXPECT_EQ(m["sources"][0]["sha256"].get<std::string>().size(), 64u);
  Result j = kiln("data inspect " + dir_ + "/out --json --verify", false);
  ASSERT_EQ(j.code, 0) << j.out;
  const nlohmann::json stats = nlohmann::json::parse(j.out)["stats"];
  EXPECT_EQ(stats["total_tokens"].get<std::uint64_t>(), expected);
  EXPECT_EQ(stats["top_tokens"].size(), 20u);
  EXPECT_TRUE(stats.contains("byte_fallback_tokens"));
}

// --eos ends every document with the tokenizer's end-of-sequence token: one more token per
// document, and each document's last token is EOS (</s> = 2 in the Llama-2 vocabulary).
TEST_F(DataCli, EosEndsEveryDocument) {
  const std::string in = dir_ + "/in.txt";
  write_file(in, "First paragraph, two lines\nof it.\n\nSecond one.\n\nThird.\n");
  ASSERT_EQ(kiln("data prepare -q --tokenizer " + tok_ + " --paragraphs --val-fraction 0 --out " + dir_ + "/plain " + in).code, 0);
  Result r = kiln("data prepare -q --tokenizer " + tok_ + " --paragraphs --eos --val-fraction 0 --out " + dir_ + "/eos " + in);
  ASSERT_EQ(r.code, 0) << r.out;
  const nlohmann::json plain = manifest(dir_ + "/plain"), eos = manifest(dir_ + "/eos");
  EXPECT_EQ(eos["splits"]["train"]["documents"].get<std::uint64_t>(), 3u);
  EXPECT_EQ(eos["splits"]["train"]["tokens"].get<std::uint64_t>(), plain["splits"]["train"]["tokens"].get<std::uint64_t>() + 3);
  EXPECT_TRUE(eos["runs"][0]["eos"].get<bool>());
  Result inspect = kiln("data inspect " + dir_ + "/eos --json", false);
  ASSERT_EQ(inspect.code, 0) << inspect.out;
  bool found = false;
  const nlohmann::json stats = nlohmann::json::parse(inspect.out)["stats"];
  for (const auto& t : stats["top_tokens"])
    if (t["id"].get<int>() == 2) found = t["count"].get<std::uint64_t>() == 3;
  EXPECT_TRUE(found) << inspect.out;
}

TEST_F(DataCli, ExactDuplicatesAreRemovedAcrossFilesAndRuns) {
  const std::string in = dir_ + "/in";
  write_file(in + "/a.txt", "The same text.\n");
  write_file(in + "/sub/b.txt", "The same text.\n");
  write_file(in + "/c.txt", "Other text.\n");
  Result r = kiln("data prepare --tokenizer " + tok_ + " --out " + dir_ + "/out " + in);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("removed 1 exact duplicates"), std::string::npos) << r.out;
  nlohmann::json m = manifest(dir_ + "/out");
  EXPECT_EQ(m["duplicates_removed"].get<int>(), 1);
  EXPECT_EQ(m["splits"]["train"]["documents"].get<int>() + m["splits"]["val"]["documents"].get<int>(), 2);
  // A second run over the same folder adds nothing new: every document is a duplicate.
  r = kiln("data prepare --tokenizer " + tok_ + " --out " + dir_ + "/out " + in + "/c.txt");
  ASSERT_EQ(r.code, 0) << r.out;
  m = manifest(dir_ + "/out");
  EXPECT_EQ(m["duplicates_removed"].get<int>(), 2);
  EXPECT_EQ(m["runs"].size(), 2u);
  EXPECT_EQ(m["splits"]["train"]["documents"].get<int>() + m["splits"]["val"]["documents"].get<int>(), 2);
}

TEST_F(DataCli, SplitDependsOnDocumentsAndSeedNotOrder) {
  // The paragraphs of tiny-shakespeare, and the same paragraphs in reverse order.
  const std::string text = read_file(shakespeare_);
  std::vector<std::string> paragraphs;
  for (std::size_t pos = 0; pos < text.size();) {
    std::size_t end = text.find("\n\n", pos);
    if (end == std::string::npos) end = text.size();
    if (end > pos) paragraphs.push_back(text.substr(pos, end - pos));
    pos = end + 2;
  }
  std::string reversed;
  for (auto it = paragraphs.rbegin(); it != paragraphs.rend(); ++it) reversed += *it + "\n\n";
  write_file(dir_ + "/reversed.txt", reversed);
  const std::string common = "data prepare --tokenizer " + tok_ + " --paragraphs --val-fraction 0.1 ";
  ASSERT_EQ(kiln(common + "--out " + dir_ + "/a " + shakespeare_).code, 0);
  ASSERT_EQ(kiln(common + "--out " + dir_ + "/b " + shakespeare_).code, 0);
  ASSERT_EQ(kiln(common + "--out " + dir_ + "/r " + dir_ + "/reversed.txt").code, 0);
  ASSERT_EQ(kiln(common + "--seed 7 --out " + dir_ + "/s " + shakespeare_).code, 0);
  const nlohmann::json a = manifest(dir_ + "/a"), r = manifest(dir_ + "/r"), s = manifest(dir_ + "/s");
  EXPECT_EQ(read_file(dir_ + "/a/val-00000.tokens"), read_file(dir_ + "/b/val-00000.tokens"));
  EXPECT_EQ(a["splits"], r["splits"]) << "the split must not depend on document order";
  EXPECT_NE(a["splits"]["val"], s["splits"]["val"]) << "another seed must choose another validation set";
  const double val_docs = a["splits"]["val"]["documents"].get<double>();
  const double all_docs = val_docs + a["splits"]["train"]["documents"].get<double>();
  EXPECT_GT(val_docs / all_docs, 0.08);
  EXPECT_LT(val_docs / all_docs, 0.12);
}

TEST_F(DataCli, ShardsStayWithinShardTokensAndJsonlIsRead) {
  std::string jsonl;
  const std::string text = read_file(shakespeare_).substr(0, 200000);
  for (std::size_t pos = 0; pos < text.size(); pos += 5000)
    jsonl += nlohmann::json{{"body", text.substr(pos, 5000)}}.dump() + "\n";
  write_file(dir_ + "/in.jsonl", jsonl);
  Result r = kiln("data prepare --tokenizer " + tok_ + " --out " + dir_ + "/out --jsonl-field body --val-fraction 0 "
                  "--shard-tokens 10000 " + dir_ + "/in.jsonl");
  ASSERT_EQ(r.code, 0) << r.out;
  const nlohmann::json m = manifest(dir_ + "/out");
  EXPECT_EQ(m["splits"]["train"]["documents"].get<int>(), 40);
  EXPECT_GT(m["shards"].size(), 4u);
  for (const auto& s : m["shards"]) EXPECT_LE(s["tokens"].get<int>(), 10000) << s.dump();
  expect_clean_error(kiln("data prepare --tokenizer " + tok_ + " --out " + dir_ + "/bad " + dir_ + "/in.jsonl"),
                     "in.jsonl:1: the record has no field \"text\"");
}

TEST_F(DataCli, AnotherTokenizersFolderIsRefused) {
  const std::string other = test::data_file("llama3.2-tokenizer");
  if (other.empty()) GTEST_SKIP() << "shared data llama3.2-tokenizer not found";
  ASSERT_EQ(kiln("data prepare --tokenizer " + tok_ + " --out " + dir_ + "/out " + shakespeare_).code, 0);
  const std::string before = read_file(dir_ + "/out/manifest.json");
  expect_clean_error(kiln("data prepare --tokenizer " + other + " --out " + dir_ + "/out " + war_),
                     "refusing to add shards");
  EXPECT_EQ(read_file(dir_ + "/out/manifest.json"), before);
  // The same tokenizer adds new shards beside the old ones.
  ASSERT_EQ(kiln("data prepare --tokenizer " + tok_ + " --val-fraction 0 --out " + dir_ + "/out " + war_).code, 0);
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/out/train-00001.tokens"));
  EXPECT_EQ(manifest(dir_ + "/out")["sources"].size(), 2u);
}

TEST_F(DataCli, AMissingInputFailsBeforeTheFolderIsCreated) {
  expect_clean_error(kiln("data prepare --tokenizer " + tok_ + " --out " + dir_ + "/out " + dir_ + "/missing.txt"),
                     "missing.txt: no such file or folder");
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/out"));
}

TEST_F(DataCli, DamagedShardsAreReportedInOneLine) {
  ASSERT_EQ(kiln("data prepare --tokenizer " + tok_ + " --val-fraction 0 --out " + dir_ + "/out " + shakespeare_).code, 0);
  const std::string shard = dir_ + "/out/train-00000.tokens";
  const std::string good = read_file(shard);
  // A flipped token byte (same size): --verify catches it by hash.
  std::string flipped = good;
  flipped[100] = static_cast<char>(flipped[100] ^ 1);
  write_file(shard, flipped);
  expect_clean_error(kiln("data inspect " + dir_ + "/out --verify"), "does not match the manifest");
  // A truncated shard fails whether or not --verify is given.
  write_file(shard, good.substr(0, good.size() / 2));
  expect_clean_error(kiln("data inspect " + dir_ + "/out"), "truncated?");
  write_file(shard, good.substr(0, 50));
  expect_clean_error(kiln("data inspect " + dir_ + "/out"), "shorter than the 72-byte header");
  std::filesystem::remove(shard);
  expect_clean_error(kiln("data inspect " + dir_ + "/out"), "train-00000.tokens");
  write_file(shard, good);
  Result ok = kiln("data inspect " + dir_ + "/out --verify");
  EXPECT_EQ(ok.code, 0) << ok.out;
  EXPECT_NE(ok.out.find("verified:   1 shards"), std::string::npos) << ok.out;
}

}  // namespace
}  // namespace kiln
