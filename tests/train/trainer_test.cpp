// The training loop (train/trainer.h) on a tiny model and a synthetic language: the loss falls
// and every output is written; a run interrupted and resumed from its checkpoint ends with the
// very parameters of the run that was not interrupted; a non-finite loss stops the run and
// leaves the last checkpoint as it was; a model that cannot fit in memory is refused before
// anything runs.
#include "train/trainer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "core/error.h"
#include "data/data_shard.h"
#include "data/corpus.h"
#include "data/manifest.h"
#include "model/llama_model.h"
#include "test_support.h"
#include "train/checkpoint.h"
#include "train/tiny_llama_config.h"

namespace kiln::train {
namespace {

constexpr int kVocab = 32;

// Documents of a small language a model can learn: each token follows from the one before by a
// fixed rule, with one token in eight drawn at random.
std::vector<std::int32_t> document(std::mt19937& rng, int length) {
  std::uniform_int_distribution<int> any(2, kVocab - 1), noise(0, 7);
  std::vector<std::int32_t> d{1};
  int t = any(rng);
  for (int i = 1; i < length; ++i) {
    d.push_back(t);
    t = noise(rng) == 0 ? any(rng) : 2 + (3 * t + 1) % (kVocab - 2);
  }
  return d;
}

std::string write_data(const std::string& name) {
  const std::string dir = test::temp_dir() + "/" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  data::TokenizerHash hash{};
  hash[0] = 42;
  data::Manifest manifest;
  manifest.tokenizer_hash = hash;
  manifest.vocab_size = kVocab;
  std::mt19937 rng(5);
  for (const char* split : {"train", "val"}) {
    const std::string file = std::string(split) + "_0.tokens";
    data::ShardWriter w(dir + "/" + file, kVocab, hash);
    const int docs = std::strcmp(split, "train") == 0 ? 200 : 20;
    for (int i = 0; i < docs; ++i) w.add_document(document(rng, 40));
    w.finish();
    data::ManifestShard s;
    s.file = file;
    s.split = split;
    s.tokens = w.n_tokens();
    s.documents = w.n_documents();
    s.bytes = std::filesystem::file_size(dir + "/" + file);
    s.sha256 = data::file_sha256_hex(dir + "/" + file);
    manifest.shards.push_back(s);
  }
  data::write_manifest(dir + "/" + data::kManifestName, manifest);
  return dir;
}

LlamaConfig tiny_config() { return test::tiny_llama_config({.n_vocab = kVocab, .n_ff = 64, .tied = true}); }

TrainOptions tiny_options(const std::string& data, const std::string& out) {
  TrainOptions o;
  o.data_dir = data;
  o.out_dir = out;
  o.batch = 4;
  o.accum = 2;
  o.context = 16;
  o.steps = 40;
  o.lr = 1e-2f;
  o.min_lr = 1e-3f;
  o.warmup = 4;
  o.eval_every = 10;
  o.eval_windows = 16;
  o.seed = 3;
  return o;
}

std::vector<float> params_of(Trainer& t) {
  const float* p = t.model().params();
  return std::vector<float>(p, p + t.model().table().total());
}

monitor::Progress quiet_progress() { return monitor::Progress("train", monitor::ProgressMode::none); }

TEST(Trainer, LossFallsAndEveryOutputIsWritten) {
  const std::string data = write_data("data-falls");
  const std::string out = test::temp_dir() + "/run-falls";
  ThreadPool pool(2);
  Trainer t(tiny_options(data, out), tiny_config(), pool);
  t.init_random();
  std::vector<StepRecord> steps;
  monitor::Progress progress = quiet_progress();
  const TrainResult r = t.run(progress, [&](const StepRecord& s) { steps.push_back(s); });
  ASSERT_EQ(steps.size(), 40u);
  EXPECT_EQ(r.steps_done, 40);
  EXPECT_NEAR(steps.front().loss, std::log(kVocab), 0.3);  // a fresh model guesses uniformly
  EXPECT_LT(steps.back().loss, steps.front().loss * 0.6);
  ASSERT_TRUE(r.last_val_loss.has_value());
  EXPECT_LT(*r.last_val_loss, std::log(kVocab) * 0.7);
  int evaluated = 0;
  for (const StepRecord& s : steps) evaluated += s.val_loss.has_value();
  EXPECT_EQ(evaluated, 4);
  // The learning rate warms up, then decays.
  EXPECT_LT(steps[0].lr, steps[3].lr);
  EXPECT_GT(steps[10].lr, steps[39].lr);

  const TrainPaths& paths = t.paths();
  EXPECT_TRUE(std::filesystem::exists(paths.loss_svg));
  std::ifstream log(paths.log);
  int lines = 0;
  for (std::string line; std::getline(log, line);) ++lines;
  EXPECT_EQ(lines, 40);
  const CheckpointState state = read_checkpoint_state(paths.checkpoint);
  EXPECT_EQ(state.step, 40);
  // The exported model runs in the inference forward.
  auto model = LlamaModel::load(paths.model);
  EXPECT_EQ(model->config().n_vocab, kVocab);
  EXPECT_EQ(model->config().n_layer, 2);
}

TEST(Trainer, AResumedRunEqualsTheUninterruptedOne) {
  const std::string data = write_data("data-resume");
  ThreadPool pool(2);
  std::vector<float> whole;
  std::vector<double> whole_losses;
  std::vector<float> at_15;  // the uninterrupted run's weights after step 15
  {
    Trainer t(tiny_options(data, test::temp_dir() + "/run-whole"), tiny_config(), pool);
    t.init_random();
    monitor::Progress progress = quiet_progress();
    t.run(progress, [&](const StepRecord& s) {
      whole_losses.push_back(s.loss);
      if (s.step == 15) at_15 = params_of(t);
    });
    whole = params_of(t);
  }
  const std::string out = test::temp_dir() + "/run-interrupted";
  TrainOptions o = tiny_options(data, out);
  o.save_every = 15;
  {
    Trainer t(o, tiny_config(), pool);
    t.init_random();
    monitor::Progress progress = quiet_progress();
    // Interrupted after step 17: the checkpoint of step 15 is what remains.
    EXPECT_THROW(t.run(progress,
                       [&](const StepRecord& s) {
                         if (s.step == 17) throw std::runtime_error("interrupted");
                       }),
                 std::runtime_error);
  }
  EXPECT_EQ(read_checkpoint_state(TrainPaths::in(out).checkpoint).step, 15);
  Trainer t(o, tiny_config(), pool);
  t.resume(TrainPaths::in(out).checkpoint);
  EXPECT_EQ(t.step(), 15);
  EXPECT_EQ(params_of(t), at_15);
  std::vector<double> resumed_losses;
  monitor::Progress progress = quiet_progress();
  t.run(progress, [&](const StepRecord& s) { resumed_losses.push_back(s.loss); });
  ASSERT_EQ(resumed_losses.size(), 25u);
  for (std::size_t i = 0; i < resumed_losses.size(); ++i) EXPECT_EQ(resumed_losses[i], whole_losses[15 + i]) << i;
  const std::vector<float> after = params_of(t);
  ASSERT_EQ(after.size(), whole.size());
  EXPECT_EQ(std::memcmp(after.data(), whole.data(), after.size() * sizeof(float)), 0);
}

TEST(Trainer, ANonFiniteLossStopsAndKeepsTheLastCheckpoint) {
  const std::string data = write_data("data-nan");
  const std::string out = test::temp_dir() + "/run-nan";
  ThreadPool pool(2);
  TrainOptions o = tiny_options(data, out);
  o.save_every = 2;
  Trainer t(o, tiny_config(), pool);
  t.init_random();
  monitor::Progress progress = quiet_progress();
  try {
    t.run(progress, [&](const StepRecord& s) {
      if (s.step == 3) t.model().params()[0] = std::nanf("");  // a weight goes bad after step 3
    });
    ADD_FAILURE() << "the run did not stop";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("step 4"), std::string::npos) << what;
    EXPECT_NE(what.find("checkpoint"), std::string::npos) << what;
  }
  EXPECT_EQ(read_checkpoint_state(TrainPaths::in(out).checkpoint).step, 2);
  EXPECT_EQ(t.step(), 3);
}

TEST(Trainer, AModelThatCannotFitIsRefusedBeforeStarting) {
  const std::string data = write_data("data-huge");
  ThreadPool pool(1);
  LlamaConfig huge = tiny_config();
  huge.n_embd = 16384, huge.n_head = 128, huge.n_head_kv = 8, huge.head_dim = 128, huge.n_rot = 128;
  huge.n_ff = 53248, huge.n_layer = 126;
  EXPECT_GT(training_memory_bytes(huge, 4, 16), 16ull * 400'000'000'000ull);
  try {
    Trainer t(tiny_options(data, test::temp_dir() + "/run-huge"), huge, pool);
    ADD_FAILURE() << "a 400B model was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("available"), std::string::npos) << e.what();
  }
  // The estimate covers the state (16 bytes a parameter) and grows with the batch.
  const LlamaConfig c = tiny_config();
  EXPECT_GE(training_memory_bytes(c, 1, 16), 16u * static_cast<std::uint64_t>(ParameterTable(c).total()));
  EXPECT_GT(training_memory_bytes(c, 8, 16), training_memory_bytes(c, 1, 16));
}

TEST(Trainer, InconsistentOptionsAreRefused) {
  const std::string data = write_data("data-bad");
  ThreadPool pool(1);
  TrainOptions o = tiny_options(data, test::temp_dir() + "/run-bad");
  o.context = 32;  // longer than the model's 16
  EXPECT_THROW(Trainer(o, tiny_config(), pool), Error);
  o = tiny_options(data, test::temp_dir() + "/run-bad");
  LlamaConfig small_vocab = tiny_config();
  small_vocab.n_vocab = 16;  // the data has 32
  EXPECT_THROW(Trainer(o, small_vocab, pool), Error);
  o.warmup = 100;  // more than the 40 steps
  EXPECT_THROW(Trainer(o, tiny_config(), pool), Error);
}

}  // namespace
}  // namespace kiln::train
