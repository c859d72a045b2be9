// The token shard format: what the writer writes reads back exactly (2- and 4-byte ids, empty
// documents, offsets), and every kind of corruption is refused by the reader with one clear
// kiln::Error naming the field, never a crash.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "data/data_shard.h"
#include "test_support.h"
#include "tokenizer/load_tokenizer.h"
#include "tokenizer/vocab.h"

namespace kiln::data {
namespace {

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

TokenizerHash some_hash() {
  TokenizerHash h{};
  for (std::size_t i = 0; i < h.size(); ++i) h[i] = static_cast<std::uint8_t>(i * 7 + 1);
  return h;
}

// Writes a shard of three documents {5,6,7}, {}, {99}: 4 tokens, 2-byte ids.
std::string write_sample(const std::string& name, std::uint32_t vocab = 100) {
  const std::string path = test::temp_dir() + "/" + name;
  ShardWriter w(path, vocab, some_hash());
  const std::vector<std::int32_t> a{5, 6, 7}, b{}, c{static_cast<std::int32_t>(vocab - 1)};
  w.add_document(a);
  w.add_document(b);
  w.add_document(c);
  w.finish();
  return path;
}

void put_u32(std::string& s, std::size_t at, std::uint32_t v) { std::memcpy(&s[at], &v, 4); }
void put_u64(std::string& s, std::size_t at, std::uint64_t v) { std::memcpy(&s[at], &v, 8); }

// Opens `bytes` as a shard and returns the error message ("" when it opened).
std::string open_error(const std::string& bytes) {
  const std::string path = test::temp_dir() + "/corrupt.tokens";
  write_bytes(path, bytes);
  try {
    ShardReader::open(path);
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    EXPECT_NE(what.find(path), std::string::npos) << what;
    return what;
  }
  return "";
}

TEST(DataShard, RoundTripTwoByteIds) {
  const std::string path = write_sample("a.tokens");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  // 72 header + 8 tokens bytes (no padding needed) + 4 offsets of 8 bytes.
  EXPECT_EQ(std::filesystem::file_size(path), 72u + 8u + 32u);
  const ShardReader r = ShardReader::open(path);
  EXPECT_EQ(r.header().token_bytes, 2u);
  EXPECT_EQ(r.header().vocab_size, 100u);
  EXPECT_EQ(r.header().tokenizer_hash, some_hash());
  ASSERT_EQ(r.n_tokens(), 4u);
  ASSERT_EQ(r.n_documents(), 3u);
  std::vector<std::int32_t> all(4);
  r.read_tokens(0, all);
  EXPECT_EQ(all, (std::vector<std::int32_t>{5, 6, 7, 99}));
  EXPECT_EQ(r.document_begin(0), 0u);
  EXPECT_EQ(r.document_begin(1), 3u);
  EXPECT_EQ(r.document_begin(2), 3u);
  EXPECT_EQ(r.document_begin(3), 4u);
  EXPECT_THROW(r.document_begin(4), Error);
  std::vector<std::int32_t> past(2);
  EXPECT_THROW(r.read_tokens(3, past), Error);
}

TEST(DataShard, RoundTripFourByteIdsWithPadding) {
  const std::string path = test::temp_dir() + "/wide.tokens";
  ShardWriter w(path, 70000, some_hash());
  const std::vector<std::int32_t> doc{69999, 0, 65536};
  w.add_document(doc);
  w.finish();
  const ShardReader r = ShardReader::open(path);
  EXPECT_EQ(r.header().token_bytes, 4u);
  EXPECT_EQ(r.token(0), 69999u);
  EXPECT_EQ(r.token(2), 65536u);
  // 12 token bytes padded to 16.
  EXPECT_EQ(std::filesystem::file_size(path), 72u + 16u + 16u);
  EXPECT_EQ(token_width_for_vocab(65536), 2u);
  EXPECT_EQ(token_width_for_vocab(65537), 4u);
}

TEST(DataShard, WriterRefusesIdsOutsideTheVocabularyAndCleansUp) {
  const std::string path = test::temp_dir() + "/bad.tokens";
  {
    ShardWriter w(path, 10, some_hash());
    const std::vector<std::int32_t> bad{3, 10};
    EXPECT_THROW(w.add_document(bad), Error);
    const std::vector<std::int32_t> negative{-1};
    EXPECT_THROW(w.add_document(negative), Error);
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(DataShard, EveryCorruptionIsAClearError) {
  const std::string good = read_bytes(write_sample("good.tokens"));
  EXPECT_EQ(open_error(good), "");
  auto with = [&](auto edit) {
    std::string s = good;
    edit(s);
    return open_error(s);
  };
  auto has = [](const std::string& msg, const char* needle) {
    return msg.find(needle) != std::string::npos;
  };
  EXPECT_TRUE(has(open_error(good.substr(0, 40)), "shorter than the 72-byte header"));
  EXPECT_TRUE(has(with([](std::string& s) { s[0] = 'X'; }), "bad magic"));
  EXPECT_TRUE(has(with([](std::string& s) { put_u32(s, 8, 2); }), "unsupported token shard version 2"));
  EXPECT_TRUE(has(with([](std::string& s) { put_u32(s, 12, 3); }), "token width 3 bytes"));
  EXPECT_TRUE(has(with([](std::string& s) { put_u32(s, 12, 4); }), "does not match the vocabulary size"));
  EXPECT_TRUE(has(with([](std::string& s) { put_u32(s, 32, 0); }), "vocabulary size is 0"));
  EXPECT_TRUE(has(with([](std::string& s) { put_u32(s, 36, 1); }), "reserved"));
  EXPECT_TRUE(has(with([](std::string& s) { put_u64(s, 16, ~0ull); }), "truncated?"));
  EXPECT_TRUE(has(with([](std::string& s) { put_u64(s, 24, ~0ull); }), "truncated?"));
  EXPECT_TRUE(has(with([](std::string& s) { put_u64(s, 24, 1ull << 61); }), "truncated?"));
  EXPECT_TRUE(has(with([](std::string& s) { put_u64(s, 16, 5); }), "truncated?"));
  EXPECT_TRUE(has(with([](std::string& s) { s += std::string(8, '\0'); }), "file is 120 bytes"));
  EXPECT_TRUE(has(with([](std::string& s) { put_u64(s, 72 + 8, 1); }), "document offset 0 is 1"));
  EXPECT_TRUE(has(with([](std::string& s) { put_u64(s, 72 + 8 + 16, 1); }), "document offset 2 is 1"));
  EXPECT_TRUE(has(with([](std::string& s) { put_u64(s, 72 + 8 + 24, 3); }), "document offset 3 is 3"));
  EXPECT_TRUE(has(with([](std::string& s) { s[72 + 6] = 100; }), "outside the vocabulary of 100"));
  // Every truncation, header or body, is refused.
  for (std::size_t n = 0; n < good.size(); ++n) EXPECT_NE(open_error(good.substr(0, n)), "") << n << " bytes";
}

TEST(DataShard, NonZeroPaddingIsRefused) {
  const std::string path = test::temp_dir() + "/pad.tokens";
  ShardWriter w(path, 100, some_hash());
  const std::vector<std::int32_t> doc{1};
  w.add_document(doc);
  w.finish();
  std::string s = read_bytes(path);
  s[72 + 3] = 1;
  EXPECT_NE(open_error(s).find("padding after the tokens is not zero"), std::string::npos);
}

TEST(DataShard, TokenizerHashCoversWhatEncodingDependsOn) {
  KILN_REQUIRE_DATA(gguf, "llama-2-tiny-random.gguf");
  const Vocab base = load_vocab_file(gguf);
  const TokenizerHash h = tokenizer_hash(base);
  EXPECT_EQ(tokenizer_hash(load_vocab_file(gguf)), h);
  EXPECT_EQ(parse_hash_hex(hash_hex(h), "x"), h);
  EXPECT_THROW(parse_hash_hex("zz", "x"), Error);
  Vocab v = base;
  v.source = "elsewhere";
  EXPECT_EQ(tokenizer_hash(v), h) << "where the vocabulary came from must not matter";
  v = base;
  v.scores[100] += 1;
  EXPECT_NE(tokenizer_hash(v), h);
  v = base;
  v.tokens[200] += "x";
  EXPECT_NE(tokenizer_hash(v), h);
  v = base;
  v.add_bos = !v.add_bos;
  EXPECT_NE(tokenizer_hash(v), h);
  v = base;
  v.eos_id = 5;
  EXPECT_NE(tokenizer_hash(v), h);
}

}  // namespace
}  // namespace kiln::data
