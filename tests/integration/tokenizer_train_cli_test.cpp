// `kiln tokenizer train` through the binary: a vocabulary learned from tiny-shakespeare in
// seconds, whose tokenizer.json, directory and GGUF every other command takes as its tokenizer
// (and which give the same ids), and bad input of every kind refused with one clear line.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "test_support.h"

namespace kiln {
namespace {

using Result = test::KilnRun;

Result kiln(const std::string& args) { return test::run_kiln(args); }

using test::expect_clean_error;

TEST(TokenizerTrainCli, TrainsOnTinyShakespeareAndEveryCommandUsesTheResult) {
  KILN_REQUIRE_DATA(corpus, "tinyshakespeare.txt");
  const std::string out = test::temp_dir() + "/shakespeare-tok";
  const Result r = kiln("tokenizer train --vocab-size 2000 --special '<|eot_id|>' --out " + out + " " + corpus);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("2000 tokens"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("merges 1741 / 1741"), std::string::npos) << r.out;  // progress on stderr
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "tokenizer.gguf"}) {
    EXPECT_TRUE(std::filesystem::is_regular_file(out + "/" + f)) << f;
  }
  const std::string text = "'First Citizen:\nBefore we proceed any further, hear me speak.<|eot_id|>'";
  const Result by_dir = kiln("tokenize --ids " + out + " " + text);
  const Result by_json = kiln("tokenize --ids " + out + "/tokenizer.json " + text);
  const Result by_gguf = kiln("tokenize --ids " + out + "/tokenizer.gguf " + text);
  ASSERT_EQ(by_gguf.code, 0) << by_gguf.out;
  EXPECT_EQ(by_dir.out, by_gguf.out);
  EXPECT_EQ(by_json.out, by_gguf.out);
  // BOS (id 1997), words of the play as single tokens, and the special token at the end (1999).
  EXPECT_EQ(by_gguf.out.rfind("1997,", 0), 0u) << by_gguf.out;
  EXPECT_NE(by_gguf.out.find(",1999"), std::string::npos) << by_gguf.out;
  const Result listed = kiln("tokenize " + out + "/tokenizer.gguf 'First Citizen'");
  EXPECT_NE(listed.out.find("'First'"), std::string::npos) << listed.out;
  EXPECT_NE(listed.out.find("' Citizen'"), std::string::npos) << listed.out;
  // Ids back to the text.
  const Result back = kiln("detokenize " + out + "/tokenizer.gguf 1997,5,6,7");
  EXPECT_EQ(back.code, 0) << back.out;
  // The same input trains the same vocabulary again, byte for byte.
  const std::string again = test::temp_dir() + "/again.json";
  ASSERT_EQ(kiln("tokenizer train -q --vocab-size 2000 --special '<|eot_id|>' --out " + again + " " + corpus).code, 0);
  std::ifstream a(out + "/tokenizer.json"), b(again);
  const std::string sa((std::istreambuf_iterator<char>(a)), {}), sb((std::istreambuf_iterator<char>(b)), {});
  EXPECT_EQ(sa, sb);
  EXPECT_TRUE(std::filesystem::is_regular_file(test::temp_dir() + "/again.gguf"));
}

TEST(TokenizerTrainCli, RefusesBadInput) {
  const std::string dir = test::temp_dir();
  const std::string text = dir + "/small.txt";
  std::ofstream(text) << "hello world\n";
  expect_clean_error(kiln("tokenizer train --vocab-size 4096 --out " + dir + "/x " + dir + "/missing.txt"),
                     "missing.txt");
  expect_clean_error(kiln("tokenizer train --vocab-size 100 --out " + dir + "/x " + text), "vocab-size");
  expect_clean_error(kiln("tokenizer train --vocab-size 300 --pattern klingon --out " + dir + "/x " + text), "klingon");
  expect_clean_error(kiln("tokenizer train --vocab-size 300 --out " + dir + "/x"), "inputs");
  expect_clean_error(kiln("tokenizer train --vocab-size 300 --special '<|begin_of_text|>' --out " + dir + "/x " + text),
                     "<|begin_of_text|>");
  expect_clean_error(kiln("tokenizer"), "");
}

}  // namespace
}  // namespace kiln
