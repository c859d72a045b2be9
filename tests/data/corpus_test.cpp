// Inputs to documents (files, sorted folders, JSONL, paragraphs) and the train/validation choice.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/sha256.h"
#include "data/corpus.h"
#include "data/corpus_prepare.h"
#include "test_support.h"

namespace kiln::data {
namespace {

void write(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

std::vector<std::string> documents(const CorpusFile& f, const CorpusOptions& o) {
  std::vector<std::string> docs;
  for_each_document(f, o, [&](std::string_view d) { docs.emplace_back(d); });
  return docs;
}

TEST(Corpus, FoldersAreWalkedRecursivelyInSortedOrderSkippingHiddenFiles) {
  const std::string dir = test::temp_dir() + "/walk";
  write(dir + "/b.txt", "b");
  write(dir + "/a/z.txt", "z");
  write(dir + "/a/c.jsonl", "{}");
  write(dir + "/.hidden/x.txt", "x");
  write(dir + "/.skip.txt", "x");
  const std::vector<CorpusFile> files = list_corpus_files({dir});
  ASSERT_EQ(files.size(), 3u);
  EXPECT_EQ(files[0].path, dir + "/a/c.jsonl");
  EXPECT_TRUE(files[0].jsonl);
  EXPECT_EQ(files[1].path, dir + "/a/z.txt");
  EXPECT_EQ(files[2].path, dir + "/b.txt");
  EXPECT_EQ(files[2].bytes, 1u);
  EXPECT_THROW(list_corpus_files({dir + "/missing"}), Error);
}

TEST(Corpus, ParagraphsAreRunsOfLinesBetweenBlankLines) {
  const std::string path = test::temp_dir() + "/p.txt";
  write(path, "\n\nfirst line\nsecond line\n\n  \n\nthird\r\n\nlast");
  CorpusOptions o;
  const CorpusFile f{path, 0, false};
  EXPECT_EQ(documents(f, o), std::vector<std::string>{"\n\nfirst line\nsecond line\n\n  \n\nthird\r\n\nlast"});
  o.paragraphs = true;
  EXPECT_EQ(documents(f, o), (std::vector<std::string>{"first line\nsecond line", "third\r", "last"}));
}

TEST(Corpus, JsonlRecordsGiveTheirTextFieldAndBadLinesNameTheirLine) {
  const std::string path = test::temp_dir() + "/r.jsonl";
  write(path, "{\"text\": \"one\", \"id\": 1}\n\n{\"text\": \"\"}\n{\"body\": \"b\", \"text\": \"two\\nlines\"}\n");
  CorpusOptions o;
  const CorpusFile f{path, 0, true};
  EXPECT_EQ(documents(f, o), (std::vector<std::string>{"one", "two\nlines"}));
  o.jsonl_field = "body";
  try {
    documents(f, o);
    ADD_FAILURE() << "a record without the field was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), path + ":1: the record has no field \"body\"");
  }
  write(path, "{\"text\": \"ok\"}\n{\"text\": 3}\n");
  o.jsonl_field = "text";
  EXPECT_THROW(documents(f, o), Error);
  write(path, "[1]\n");
  EXPECT_THROW(documents(f, o), Error);
  write(path, "{\"text\": \"unterminated\n");
  EXPECT_THROW(documents(f, o), Error);
}

TEST(Corpus, ValidationChoiceFollowsTheSeededHashNotTheOrder) {
  int val = 0, moved = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const auto d = sha256("document " + std::to_string(i));
    const bool v = is_validation_document(d, 0, 0.05);
    EXPECT_EQ(v, is_validation_document(d, 0, 0.05));
    val += v;
    moved += v != is_validation_document(d, 1, 0.05);
    EXPECT_FALSE(is_validation_document(d, 0, 0.0));
    EXPECT_TRUE(is_validation_document(d, 0, 1.0));
  }
  // 5% of 20000 is 1000, sd ~31.
  EXPECT_GT(val, 850);
  EXPECT_LT(val, 1150);
  EXPECT_GT(moved, 1500) << "another seed must choose another set";
}

}  // namespace
}  // namespace kiln::data
