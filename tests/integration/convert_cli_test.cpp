// kiln convert end to end: Hugging Face-layout checkpoints written by PyTorch
// (tests/interop/hf_llama_checkpoint.py: safetensors, sharded safetensors, torch.save) convert to
// GGUFs whose logits equal a float64 PyTorch forward of the original weights (which tests the
// names, the q/k permutation, GQA, qwen2's biases and tied embeddings); a llama2.c checkpoint
// gains a tokenizer and keeps its greedy ids; bad folders are refused in one line, leaving no
// output.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "format/gguf_file.h"
#include "model/llama_model.h"
#include "tokenizer/load_tokenizer.h"
#include "tokenizer/vocab.h"
#include "test_support.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

template <typename T>
std::vector<T> read_array(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<T> v(bytes.size() / sizeof(T));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(T));
  return v;
}

// Writes the checkpoint with PyTorch into a fresh folder; skips the test when torch is missing.
std::string make_checkpoint(const std::string& name, const std::string& arch, const std::string& weights) {
  const std::string tok = test::data_file("llama2-tokenizer.model");
  if (tok.empty()) return "";
  const std::string dir = test::temp_dir() + "/" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string script = std::string(std::getenv("KILN_SOURCE_DIR")) + "/tests/interop/hf_llama_checkpoint.py";
  std::string out;
  const int code =
      test::run_command("/usr/bin/python3 " + script + " " + dir + " " + arch + " " + weights + " " + tok, &out, true);
  if (code == 77 * 256 || code == 77) return "skip";
  EXPECT_EQ(code, 0) << out;
  return dir;
}

// Logits of every prompt position from kiln's forward of `gguf`, (T, vocab).
std::vector<float> kiln_logits(const std::string& gguf, const std::vector<std::int32_t>& tokens) {
  std::unique_ptr<LlamaModel> model = LlamaModel::load(gguf);
  ThreadPool pool(2);
  KvCache cache = model->make_kv_cache(static_cast<int>(tokens.size()) + 1, DType::F32);
  const int seq = cache.add_sequence();
  Batch b;
  for (std::size_t i = 0; i < tokens.size(); ++i) b.add(tokens[i], static_cast<int>(i), seq, true);
  std::vector<float> logits(tokens.size() * static_cast<std::size_t>(model->config().n_vocab));
  model->forward(b, cache, pool, logits.data());
  return logits;
}

void expect_reference_logits(const std::string& dir, const std::string& gguf) {
  const std::vector<std::int32_t> tokens = read_array<std::int32_t>(dir + "/tokens.i32");
  const std::vector<float> want = read_array<float>(dir + "/logits.f32");
  const std::vector<float> got = kiln_logits(gguf, tokens);
  ASSERT_EQ(got.size(), want.size());
  double max_abs = 0, max_diff = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    max_abs = std::max(max_abs, std::fabs(static_cast<double>(want[i])));
    max_diff = std::max(max_diff, std::fabs(static_cast<double>(got[i]) - want[i]));
  }
  EXPECT_LT(max_diff, 1e-4 * max_abs) << "max |kiln - torch| " << max_diff << " over logits up to " << max_abs;
  // And the greedy choice at every position.
  const std::size_t V = got.size() / tokens.size();
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    const auto argmax = [&](const std::vector<float>& l) {
      return std::max_element(l.begin() + static_cast<std::ptrdiff_t>(t * V), l.begin() + static_cast<std::ptrdiff_t>((t + 1) * V)) -
             l.begin();
    };
    EXPECT_EQ(argmax(got), argmax(want)) << "position " << t;
  }
}

#define KILN_CHECKPOINT(var, name, arch, weights)                                      \
  const std::string var = make_checkpoint(name, arch, weights);                        \
  if (var.empty()) GTEST_SKIP() << "shared data file llama2-tokenizer.model not found"; \
  if (var == "skip") GTEST_SKIP() << "PyTorch (python3-torch) is not importable"

TEST(ConvertCli, HfLlamaSafetensorsMatchesPyTorchForward) {
  KILN_CHECKPOINT(dir, "llama_st", "llama", "safetensors");
  const std::string out = dir + "/model.gguf";
  const test::KilnRun r = test::run_kiln("convert " + dir + " " + out + " --progress none");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("32000 tokens"));
  expect_reference_logits(dir, out);
  auto g = GgufFile::open(out);
  EXPECT_EQ(g->get_string("general.architecture"), "llama");
  EXPECT_EQ(g->get_int("llama.attention.head_count_kv"), 2);
  EXPECT_EQ(g->get_string("tokenizer.ggml.model"), "llama");
  EXPECT_THAT(g->get_string("tokenizer.chat_template").value_or(""), HasSubstr("for m in messages"));
  EXPECT_EQ(g->get_int("tokenizer.ggml.eos_token_id"), 2);
  EXPECT_NE(g->find_tensor("output.weight"), nullptr);
}

TEST(ConvertCli, HfLlamaShardedSafetensorsMatchesPyTorchForward) {
  KILN_CHECKPOINT(dir, "llama_sharded", "llama", "sharded");
  const std::string out = dir + "/model.gguf";
  const test::KilnRun r = test::run_kiln("convert " + dir + " " + out + " --type F32 --progress none");
  ASSERT_EQ(r.code, 0) << r.out;
  expect_reference_logits(dir, out);
}

TEST(ConvertCli, HfQwen2TorchSaveMatchesPyTorchForward) {
  KILN_CHECKPOINT(dir, "qwen2_pt", "qwen2", "torch");
  const std::string out = dir + "/model.gguf";
  const test::KilnRun r = test::run_kiln("convert " + dir + " " + out + " --progress none");
  ASSERT_EQ(r.code, 0) << r.out;
  expect_reference_logits(dir, out);
  auto g = GgufFile::open(out);
  EXPECT_EQ(g->get_string("general.architecture"), "qwen2");
  EXPECT_EQ(g->find_tensor("output.weight"), nullptr);  // tied
  EXPECT_NE(g->find_tensor("blk.0.attn_q.bias"), nullptr);
}

TEST(ConvertCli, QuantizedTypesPlanAsQuantizeDoes) {
  KILN_CHECKPOINT(dir, "llama_q8", "llama", "safetensors");
  const std::string out = dir + "/model-q8_0.gguf";
  const test::KilnRun r = test::run_kiln("convert " + dir + " " + out + " --type Q8_0 --progress none");
  ASSERT_EQ(r.code, 0) << r.out;
  auto g = GgufFile::open(out);
  EXPECT_EQ(g->find_tensor("blk.0.attn_q.weight")->dtype, DType::Q8_0);
  EXPECT_EQ(g->find_tensor("blk.0.attn_norm.weight")->dtype, DType::F32);
  EXPECT_EQ(g->get_int("general.file_type"), 7);
  // The quantized model still answers like the original, to within quantization error.
  const std::vector<std::int32_t> tokens = read_array<std::int32_t>(dir + "/tokens.i32");
  const std::vector<float> want = read_array<float>(dir + "/logits.f32");
  const std::vector<float> got = kiln_logits(out, tokens);
  // (Random weights through q8_0 weights and q8_0 activations: a few percent of the logits' scale.)
  double num = 0, den = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  EXPECT_LT(std::sqrt(num / den), 0.1);
}

TEST(ConvertCli, BadFoldersAreRefusedWithoutOutput) {
  KILN_CHECKPOINT(dir, "llama_bad", "llama", "safetensors");
  const std::string out = dir + "/bad.gguf";
  const auto refuse = [&](const std::string& needle) {
    const test::KilnRun r = test::run_kiln("convert " + dir + " " + out + " --progress none");
    test::expect_clean_error(r, needle);
    EXPECT_FALSE(fs::exists(out));
  };
  const std::string config = dir + "/config.json";
  std::string original;
  test::run_command("cat " + config, &original);
  const auto write_config = [&](const std::string& from, const std::string& to) {
    std::string text = original;
    const std::size_t at = text.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    text.replace(at, from.size(), to);
    std::ofstream(config, std::ios::trunc) << text;
  };
  write_config("\"LlamaForCausalLM\"", "\"GPTNeoXForCausalLM\"");
  refuse("architectures[0] = 'GPTNeoXForCausalLM'");
  write_config("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3");
  refuse("blk.2.");
  write_config("\"num_attention_heads\": 4", "\"num_attention_heads\": 3");
  refuse("num_attention_heads");
  write_config("\"vocab_size\": 32000", "\"vocab_size\": 100");
  refuse("the tokenizer has 32000 tokens");
  write_config("\"hidden_size\": 64,", "");
  refuse("missing field hidden_size");
  std::ofstream(config, std::ios::trunc) << original;
  fs::remove(dir + "/model.safetensors");
  refuse(dir);
}

TEST(ConvertCli, Llama2cCheckpointGainsATokenizerAndKeepsItsGreedyIds) {
  KILN_REQUIRE_DATA(bin, "stories260K.bin");
  KILN_REQUIRE_DATA(tok, "llama2-tokenizer.model");
  const std::string dir = test::temp_dir();
  const test::KilnRun plain = test::run_kiln("convert " + bin + " " + dir + "/s.gguf --progress none");
  ASSERT_EQ(plain.code, 0) << plain.out;
  EXPECT_THAT(plain.out, HasSubstr("no tokenizer"));
  // The checkpoint's vocabulary is 512 tokens: a 32000-token tokenizer belongs to another model.
  test::expect_clean_error(test::run_kiln("convert " + bin + " " + dir + "/t.gguf --tokenizer " + tok),
                           "the tokenizer belongs to another model");
  EXPECT_FALSE(fs::exists(dir + "/t.gguf"));
  const std::string ids = "1,403,407,261,378";
  const test::KilnRun a = test::run_kiln("run " + bin + " --tokens " + ids + " -n 24 --temp 0 --print-ids");
  const test::KilnRun b = test::run_kiln("run " + dir + "/s.gguf --tokens " + ids + " -n 24 --temp 0 --print-ids");
  ASSERT_EQ(a.code, 0) << a.out;
  ASSERT_EQ(b.code, 0) << b.out;
  EXPECT_EQ(a.out.substr(0, a.out.find("kiln run:")), b.out.substr(0, b.out.find("kiln run:")));
}

// GGUF -> Hugging Face folder -> GGUF: every tensor's bytes identical, the hyper-parameters, the
// vocabulary (tokens, types, merges or scores, special ids, flags) and the chat template the same.
void expect_gguf_round_trip(const std::string& model, const std::string& type = "auto") {
  const std::string dir = test::temp_dir() + "/rt_" + fs::path(model).stem().string();
  fs::remove_all(dir);
  const test::KilnRun to_hf = test::run_kiln("convert " + model + " " + dir + "/hf --to hf --progress none");
  ASSERT_EQ(to_hf.code, 0) << to_hf.out;
  for (const char* f : {"config.json", "generation_config.json", "model.safetensors"})
    EXPECT_TRUE(fs::exists(dir + "/hf/" + f)) << f;
  const test::KilnRun back =
      test::run_kiln("convert " + dir + "/hf " + dir + "/back.gguf --type " + type + " --progress none");
  ASSERT_EQ(back.code, 0) << back.out;
  auto a = GgufFile::open(model);
  auto b = GgufFile::open(dir + "/back.gguf");
  ASSERT_EQ(a->tensors().size(), b->tensors().size());
  for (const GgufTensorInfo& ta : a->tensors()) {
    const GgufTensorInfo* tb = b->find_tensor(ta.name);
    ASSERT_NE(tb, nullptr) << ta.name;
    EXPECT_EQ(ta.ne, tb->ne) << ta.name;
    EXPECT_EQ(ta.ggml_type, tb->ggml_type) << ta.name;
    ASSERT_EQ(ta.n_bytes, tb->n_bytes) << ta.name;
    EXPECT_EQ(std::memcmp(a->mapped_file().data() + a->data_offset() + ta.offset,
                          b->mapped_file().data() + b->data_offset() + tb->offset, ta.n_bytes),
              0)
        << ta.name << " differs after the round trip";
  }
  const std::string arch = *a->get_string("general.architecture");
  EXPECT_EQ(b->get_string("general.architecture"), arch);
  for (const std::string key : {"context_length", "embedding_length", "block_count", "feed_forward_length",
                                "attention.head_count", "attention.head_count_kv"})
    EXPECT_EQ(a->get_int(arch + "." + key), b->get_int(arch + "." + key)) << key;
  EXPECT_FLOAT_EQ(static_cast<float>(a->get_float(arch + ".rope.freq_base").value_or(10000)),
                  static_cast<float>(b->get_float(arch + ".rope.freq_base").value_or(10000)));
  if (a->find("tokenizer.ggml.tokens") == nullptr) return;
  EXPECT_EQ(a->get_array("tokenizer.ggml.tokens")->strings, b->get_array("tokenizer.ggml.tokens")->strings);
  EXPECT_EQ(a->get_array("tokenizer.ggml.token_type")->ints, b->get_array("tokenizer.ggml.token_type")->ints);
  EXPECT_EQ(a->get_string("tokenizer.ggml.model"), b->get_string("tokenizer.ggml.model"));
  EXPECT_EQ(a->get_string("tokenizer.ggml.pre"), b->get_string("tokenizer.ggml.pre"));
  if (const GgufArray* merges = a->get_array("tokenizer.ggml.merges"))
    EXPECT_EQ(merges->strings, b->get_array("tokenizer.ggml.merges")->strings);
  for (const std::string key : {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"})
    EXPECT_EQ(a->get_int(key), b->get_int(key)) << key;
  // Flags as the tokenizer reads them (an absent key has the model's default).
  const Vocab va = Vocab::from_gguf(*a), vb = Vocab::from_gguf(*b);
  EXPECT_EQ(va.add_bos, vb.add_bos);
  EXPECT_EQ(va.add_eos, vb.add_eos);
  EXPECT_EQ(va.add_space_prefix, vb.add_space_prefix);
  // A tokenizer.json has merges, not scores: a SentencePiece vocabulary comes back with scores
  // derived from the merge ranks, which must encode text exactly as the original's do.
  const std::unique_ptr<Tokenizer> ta = make_tokenizer(va), tb = make_tokenizer(vb);
  std::string text = "Hello world!  Numbers 12345, unicode café, 日本語, emoji 🙂.\n\tTabs and  spaces.";
  if (const std::string wp = test::data_file("war-and-peace.txt"); !wp.empty()) {
    std::ifstream in(wp, std::ios::binary);
    std::string book(20000, '\0');
    in.read(book.data(), static_cast<std::streamsize>(book.size()));
    text += book.substr(0, static_cast<std::size_t>(in.gcount()));
  }
  EXPECT_EQ(ta->encode(text, true, false), tb->encode(text, true, false));
  EXPECT_EQ(a->get_string("tokenizer.chat_template"), b->get_string("tokenizer.chat_template"));
}

TEST(ConvertCli, DefaultModelRoundTripsThroughAHuggingFaceFolder) {
  const std::string model = std::string(std::getenv("KILN_SOURCE_DIR")) + "/models/kiln-default.gguf";
  if (!fs::exists(model)) GTEST_SKIP() << model << " not found";
  expect_gguf_round_trip(model);
}

TEST(ConvertCli, Llama2VocabularyModelRoundTripsThroughAHuggingFaceFolder) {
  KILN_REQUIRE_DATA(model, "llama-2-tiny-random.gguf");
  expect_gguf_round_trip(model);
}

TEST(ConvertCli, Stories260kThroughAHuggingFaceFolderKeepsItsGreedyIds) {
  KILN_REQUIRE_DATA(bin, "stories260K.bin");
  const std::string dir = test::temp_dir() + "/stories_hf";
  fs::remove_all(dir);
  ASSERT_EQ(test::run_kiln("convert " + bin + " " + dir + "/hf --to hf --progress none").code, 0);
  EXPECT_FALSE(fs::exists(dir + "/hf/tokenizer.json"));  // the checkpoint has none
  const test::KilnRun back = test::run_kiln("convert " + dir + "/hf " + dir + "/s.gguf --progress none");
  ASSERT_EQ(back.code, 0) << back.out;
  EXPECT_THAT(back.out, HasSubstr("no tokenizer"));
  const std::string ids = "1,403,407,261,378";
  const test::KilnRun a = test::run_kiln("run " + bin + " --tokens " + ids + " -n 32 --temp 0 --print-ids");
  const test::KilnRun b = test::run_kiln("run " + dir + "/s.gguf --tokens " + ids + " -n 32 --temp 0 --print-ids");
  ASSERT_EQ(a.code, 0) << a.out;
  ASSERT_EQ(b.code, 0) << b.out;
  EXPECT_EQ(a.out.substr(0, a.out.find("kiln run:")), b.out.substr(0, b.out.find("kiln run:")));
  // A tokenizer of another size is refused, naming both.
  test::expect_clean_error(test::run_kiln("convert " + dir + "/hf " + dir + "/t.gguf --tokenizer " +
                                          test::data_file("llama2-tokenizer.model")),
                           "the tokenizer has 32000 tokens");
}

TEST(ConvertCli, ExistingOutputFolderIsRefused) {
  KILN_REQUIRE_DATA(bin, "stories260K.bin");
  const std::string dir = test::temp_dir() + "/busy";
  fs::create_directories(dir);
  std::ofstream(dir + "/keep.txt") << "x";
  test::expect_clean_error(test::run_kiln("convert " + bin + " " + dir + " --to hf"), "not an empty folder");
  EXPECT_TRUE(fs::exists(dir + "/keep.txt"));
}

}  // namespace
}  // namespace kiln
