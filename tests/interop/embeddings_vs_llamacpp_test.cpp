// kiln's embeddings and llama.cpp's (node-llama-cpp@3.21.1's embedding API, LlamaEmbeddingContext)
// on the same GGUF must be the same vectors: cosine >= 0.9999 for every text, with each pooling.
// node-llama-cpp takes the pooling from the file (<arch>.pooling_type; without it, none: the last
// token's vector), so each pooling runs on a copy of the model with the key set, which kiln embed
// reads too. Both sides tokenize the text themselves (BOS and EOS as the vocabulary says), and
// the token counts must agree. Models: kiln's default (byte-level BPE, trained) and the Llama-2
// test model (SentencePiece, random weights).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <sstream>

#include "format/gguf_file.h"
#include "format/gguf_writer.h"
#include "test_support.h"

namespace kiln {
namespace {

const std::vector<std::string> kTexts = {"Hello world",
                                         "The quick brown fox jumps over the lazy dog.",
                                         "It was in July, 1805, and Anna Pavlovna Scherer was receiving her guests",
                                         "ROMEO: But, soft! what light through yonder window breaks?",
                                         "  leading spaces and\ttabs\nand newlines",
                                         "1 2 3 4 5 6 7 8 9 10"};

double cosine(const std::vector<double>& a, const std::vector<double>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) ab += a[i] * b[i], aa += a[i] * a[i], bb += b[i] * b[i];
  return ab / std::sqrt(aa * bb);
}

// A copy of `model` whose metadata asks for `pooling_type` (llama.cpp's values: 1 mean, 2 cls, 3 last).
std::string with_pooling(const std::string& model, const std::string& name, int pooling_type) {
  const std::string out = test::temp_dir() + "/" + name + "-pooling" + std::to_string(pooling_type) + ".gguf";
  std::unique_ptr<GgufFile> file = GgufFile::open(model);
  GgufWriter w;
  copy_gguf_into(*file, w);
  const std::string arch = file->get_string("general.architecture").value_or("llama");
  w.set_metadata(arch + ".pooling_type", gguf_value::u32(static_cast<std::uint32_t>(pooling_type)));
  w.write(out);
  return out;
}

struct Vectors {
  std::vector<std::vector<double>> vectors;
  std::vector<int> tokens;
};

Vectors llamacpp_embeddings(const std::string& model) {
  const std::string src = std::getenv("KILN_SOURCE_DIR");
  std::string cmd =
      "cd " + test::shell_quote(src) + " && node tests/interop/llamacpp_embed.mjs " + test::shell_quote(model);
  for (const std::string& t : kTexts) cmd += " " + test::shell_quote(t);
  std::string out;
  EXPECT_EQ(test::run_command(cmd, &out), 0) << cmd << "\n" << out;
  const nlohmann::json j = nlohmann::json::parse(out);
  return {j["vectors"].get<std::vector<std::vector<double>>>(), j["tokens"].get<std::vector<int>>()};
}

Vectors kiln_embeddings(const std::string& model, const std::string& flags) {
  std::string args = "embed " + test::shell_quote(model) + " -q -t 2 " + flags;
  for (const std::string& t : kTexts) args += " " + test::shell_quote(t);
  const test::KilnRun r = test::run_kiln(args, false);
  EXPECT_EQ(r.code, 0) << args << "\n" << r.out;
  Vectors v;
  std::stringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    const nlohmann::json j = nlohmann::json::parse(line);
    EXPECT_EQ(j["index"].get<std::size_t>(), v.vectors.size());
    v.vectors.push_back(j["embedding"].get<std::vector<double>>());
    v.tokens.push_back(j["tokens"].get<int>());
  }
  return v;
}

void expect_same_vectors(const Vectors& kiln, const Vectors& ref) {
  ASSERT_EQ(kiln.vectors.size(), kTexts.size());
  ASSERT_EQ(ref.vectors.size(), kTexts.size());
  EXPECT_EQ(kiln.tokens, ref.tokens) << "the texts were tokenized differently";
  for (std::size_t i = 0; i < kTexts.size(); ++i) {
    ASSERT_EQ(kiln.vectors[i].size(), ref.vectors[i].size()) << kTexts[i];
    const double c = cosine(kiln.vectors[i], ref.vectors[i]);
    EXPECT_GE(c, 0.9999) << kTexts[i];
    // Unnormalised on both sides: the lengths agree too.
    double nk = 0, nr = 0;
    for (std::size_t k = 0; k < ref.vectors[i].size(); ++k)
      nk += kiln.vectors[i][k] * kiln.vectors[i][k], nr += ref.vectors[i][k] * ref.vectors[i][k];
    EXPECT_NEAR(std::sqrt(nk), std::sqrt(nr), 1e-3 * std::sqrt(nr)) << kTexts[i];
  }
}

class EmbeddingsVsLlamaCpp : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const char* src = std::getenv("KILN_SOURCE_DIR");
    ASSERT_NE(src, nullptr);
    struct stat st {};
    if (::stat((std::string(src) + "/node_modules/node-llama-cpp").c_str(), &st) != 0)
      GTEST_SKIP() << "node-llama-cpp is not installed (run scripts/install-deps.sh)";
    if (GetParam() == "default") {
      model_ = std::string(src) + "/models/kiln-default.gguf";
    } else {
      model_ = test::data_file(GetParam());
      if (model_.empty()) GTEST_SKIP() << "shared data file " << GetParam() << " not found (set KILN_DATA_DIR)";
    }
    name_ = GetParam() == "default" ? "default" : "llama2";
  }
  std::string model_, name_;
};

TEST_P(EmbeddingsVsLlamaCpp, PoolingFromTheFileMeanClsLast) {
  for (int type : {1, 2, 3}) {
    SCOPED_TRACE("pooling_type " + std::to_string(type));
    const std::string copy = with_pooling(model_, name_, type);
    // kiln embed reads the pooling from the copy's metadata, as llama.cpp does.
    expect_same_vectors(kiln_embeddings(copy, "--normalize -1"), llamacpp_embeddings(copy));
  }
}

TEST_P(EmbeddingsVsLlamaCpp, WithoutAPoolingTypeLlamaCppTakesTheLastToken) {
  expect_same_vectors(kiln_embeddings(model_, "--normalize -1 --pooling last"), llamacpp_embeddings(model_));
}

INSTANTIATE_TEST_SUITE_P(Models, EmbeddingsVsLlamaCpp, ::testing::Values("default", "llama-2-tiny-random.gguf"));

}  // namespace
}  // namespace kiln
