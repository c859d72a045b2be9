// kiln distill's pieces on a tiny teacher trained on a synthetic language (trainer_test's): the
// trainer with the distillation loss lowers the student's KL divergence from the teacher, on
// the fly and from a top-k cache; the cache reads back the teacher's top k exactly, a cache of
// k = vocabulary gives the full loss, and the cache reader refuses another teacher, other data,
// another window length and damaged shards, each in one line.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "core/error.h"
#include "data/corpus.h"
#include "data/data_shard.h"
#include "data/manifest.h"
#include "model/llama_model.h"
#include "test_support.h"
#include "train/distill_loss.h"
#include "train/teacher_cache.h"
#include "train/teacher_forward.h"
#include "train/tiny_llama_config.h"
#include "train/trainer.h"

namespace kiln::train {
namespace {

constexpr int kVocab = 32;
constexpr int kContext = 16;

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

std::string write_data(const std::string& name, unsigned seed) {
  const std::string dir = test::temp_dir() + "/" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  data::TokenizerHash hash{};
  hash[0] = 42;
  data::Manifest manifest;
  manifest.tokenizer_hash = hash;
  manifest.vocab_size = kVocab;
  std::mt19937 rng(seed);
  for (const char* split : {"train", "val"}) {
    const std::string file = std::string(split) + "_0.tokens";
    data::ShardWriter w(dir + "/" + file, kVocab, hash);
    const int docs = std::strcmp(split, "train") == 0 ? 120 : 12;
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

TrainOptions options(const std::string& data, const std::string& out, int steps) {
  TrainOptions o;
  o.data_dir = data;
  o.out_dir = out;
  o.batch = 4;
  o.context = kContext;
  o.steps = steps;
  o.lr = 1e-2f;
  o.min_lr = 1e-3f;
  o.warmup = 2;
  o.eval_every = 0;
  o.eval_windows = 16;
  o.seed = 3;
  return o;
}

template <class F>
void expect_error(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing: " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
  }
}

monitor::Progress quiet() { return monitor::Progress("test", monitor::ProgressMode::none); }

// The teacher: a 2-layer model trained for 60 steps, once per process.
struct Fixture {
  std::string data, teacher_path, teacher_sha;
  std::unique_ptr<LlamaModel> teacher;
};
Fixture& fixture() {
  static Fixture f = [] {
    Fixture x;
    x.data = write_data("distill-data", 5);
    ThreadPool pool(2);
    Trainer t(options(x.data, test::temp_dir() + "/distill-teacher", 60),
              test::tiny_llama_config({.n_vocab = kVocab, .n_embd = 32, .n_ff = 64, .n_ctx = kContext, .tied = true}),
              pool);
    t.init_random();
    monitor::Progress p = quiet();
    t.run(p);
    x.teacher_path = t.paths().model;
    x.teacher_sha = file_sha256_hex(x.teacher_path);
    x.teacher = LlamaModel::load(x.teacher_path);
    return x;
  }();
  return f;
}

LlamaConfig student_config() {
  return test::tiny_llama_config(
      {.n_vocab = kVocab, .n_embd = 16, .n_layer = 1, .n_head = 2, .n_head_kv = 1, .n_ff = 32, .n_ctx = kContext, .tied = true});
}

TeacherCacheKey cache_key(const Fixture& f, int k, float tau) {
  TeacherCacheKey key;
  key.teacher_sha256 = f.teacher_sha;
  key.teacher_name = "tiny teacher";
  key.tokenizer_hash = data::hash_hex(TokenWindows::open(f.data, "train", kContext).manifest().tokenizer_hash);
  key.n_vocab = kVocab;
  key.context = kContext;
  key.k = k;
  key.temperature = tau;
  return key;
}

std::string write_cache(const std::string& name, int k, float tau, std::uint64_t per_shard = 16) {
  Fixture& f = fixture();
  const std::string dir = test::temp_dir() + "/" + name;
  std::filesystem::remove_all(dir);
  const TokenWindows train = TokenWindows::open(f.data, "train", kContext), val = TokenWindows::open(f.data, "val", kContext);
  ThreadPool pool(2);
  TeacherForward forward(*f.teacher, pool);
  TeacherCacheWriteOptions o;
  o.top_k = k, o.temperature = tau, o.windows_per_shard = per_shard, o.sequences_per_forward = 5;
  monitor::Progress p = quiet();
  write_teacher_cache(dir, forward, cache_key(f, k, tau), {&train, &val}, o, p);
  return dir;
}

// Distils the student for `steps` with `loss` and returns the validation (before, after).
std::pair<LossValue, LossValue> distill(TrainingLoss& loss, const std::string& out, int steps) {
  Fixture& f = fixture();
  ThreadPool pool(2);
  std::filesystem::remove_all(out);
  Trainer t(options(f.data, out, steps), student_config(), pool);
  t.set_loss(loss);
  t.init_random();
  const LossValue before = t.validation();
  monitor::Progress p = quiet();
  const TrainResult r = t.run(p);
  EXPECT_EQ(r.steps_done, steps);
  return {before, t.validation()};
}

TEST(Distill, OnTheFlyLowersTheKlFromTheTeacher) {
  Fixture& f = fixture();
  ThreadPool pool(2);
  TeacherForward forward(*f.teacher, pool);
  DistillLoss loss({.alpha = 0.0f, .temperature = 2.0f}, forward, {{"sha256", f.teacher_sha}});
  const auto [before, after] = distill(loss, test::temp_dir() + "/distill-fly", 40);
  EXPECT_GT(before.kl, 0.05);
  EXPECT_LT(after.kl, before.kl * 0.5) << before.kl << " -> " << after.kl;
  EXPECT_LT(after.ce, before.ce);  // the teacher knows the language: following it teaches it
  EXPECT_NEAR(after.loss, 4.0 * after.kl, 1e-9);  // α = 0: the loss is τ²·KL
  // The checkpoint records the loss it was made with.
  const CheckpointState s = read_checkpoint_state(test::temp_dir() + "/distill-fly/checkpoint.kiln");
  EXPECT_EQ(s.run["loss"]["kind"], "distill");
  EXPECT_EQ(s.run["loss"]["teacher"]["sha256"], f.teacher_sha);
}

TEST(Distill, TheCacheHoldsTheTeachersTopKAndTrainsAsOnTheFly) {
  Fixture& f = fixture();
  const std::string dir = write_cache("cache-k8", 8, 2.0f);
  const TeacherCache cache = TeacherCache::open(dir);
  const TokenWindows train = TokenWindows::open(f.data, "train", kContext);
  cache.check_matches(f.teacher_sha, f.teacher_path, train.manifest(), f.data, kContext);
  EXPECT_EQ(cache.windows("train"), train.n_windows());
  EXPECT_TRUE(cache.has_split("val"));
  // Window 7 read back equals the teacher's top 8 of that window run alone.
  std::vector<int> tokens(kContext), targets(kContext), ids(kContext * 8);
  std::vector<float> lp(kContext * 8);
  train.read_window(7, tokens.data(), targets.data());
  cache.read_window("train", 7, ids.data(), lp.data());
  ThreadPool pool(2);
  TeacherForward forward(*f.teacher, pool);
  TeacherRows rows;
  forward.run(tokens.data(), 1, kContext, 2.0f, 8, rows);
  // (The cache ran five windows per forward, this one alone: the products may round apart.)
  EXPECT_EQ(rows.ids, ids);
  for (std::size_t i = 0; i < lp.size(); ++i) ASSERT_NEAR(rows.log_probs[i], lp[i], 1e-4) << i;
  DistillLoss loss({.alpha = 0.0f, .temperature = 2.0f}, cache, {{"sha256", f.teacher_sha}});
  const auto [before, after] = distill(loss, test::temp_dir() + "/distill-cached", 40);
  EXPECT_LT(after.kl, before.kl * 0.5) << before.kl << " -> " << after.kl;
}

TEST(Distill, ACacheOfEveryIdGivesTheFullLoss) {
  Fixture& f = fixture();
  const std::string dir = write_cache("cache-full", kVocab, 1.5f, 1000);
  const TeacherCache cache = TeacherCache::open(dir);
  ThreadPool pool(2);
  TeacherForward forward(*f.teacher, pool);
  DistillLoss cached({.alpha = 0.3f, .temperature = 1.5f}, cache, {});
  DistillLoss full({.alpha = 0.3f, .temperature = 1.5f}, forward, {});
  const TokenWindows val = TokenWindows::open(f.data, "val", kContext);
  // A random student's logits for two windows.
  std::vector<int> tokens(2 * kContext), targets(2 * kContext);
  const std::uint64_t windows[2] = {0, 1};
  for (int b = 0; b < 2; ++b) val.read_window(windows[b], tokens.data() + b * kContext, targets.data() + b * kContext);
  const TokenBatch batch{2, kContext, tokens.data(), targets.data()};
  std::mt19937 rng(9);
  std::normal_distribution<float> normal(0, 2);
  std::vector<float> z(2 * kContext * kVocab);
  for (float& v : z) v = normal(rng);
  std::vector<float> z2 = z;
  cached.prepare(val, windows, batch);
  full.prepare(val, windows, batch);
  const LossValue a = cached.apply(batch, z.data(), kVocab, 1.0f, true, pool);
  const LossValue b = full.apply(batch, z2.data(), kVocab, 1.0f, true, pool);
  EXPECT_NEAR(a.kl, b.kl, 1e-5);
  EXPECT_NEAR(a.loss, b.loss, 1e-5);
  for (std::size_t i = 0; i < z.size(); ++i) ASSERT_NEAR(z[i], z2[i], 1e-5) << i;
}

TEST(Distill, TheCacheReaderRefusesAnotherTeacherOtherDataAndDamage) {
  Fixture& f = fixture();
  const std::string dir = write_cache("cache-refuse", 4, 2.0f);
  const TeacherCache cache = TeacherCache::open(dir);
  const data::Manifest m = TokenWindows::open(f.data, "train", kContext).manifest();
  expect_error([&] { cache.check_matches(std::string(64, 'a'), "other.gguf", m, f.data, kContext); },
                                "another teacher");
  expect_error([&] { cache.check_matches(f.teacher_sha, f.teacher_path, m, f.data, 8); },
                                "not --context 8");
  const std::string other = write_data("distill-other-data", 6);
  const data::Manifest om = TokenWindows::open(other, "train", kContext).manifest();
  expect_error([&] { cache.check_matches(f.teacher_sha, f.teacher_path, om, other, kContext); },
                                "other data");
  expect_error([&] { DistillLoss({.temperature = 1.0f}, cache, {}); }, "temperature");

  // Damage, each to a copy: a truncated shard, a missing shard, an id outside the vocabulary.
  auto copy = [&](const std::string& name) {
    const std::string d = test::temp_dir() + "/" + name;
    std::filesystem::remove_all(d);
    std::filesystem::copy(dir, d);
    return d;
  };
  {
    const std::string d = copy("cache-truncated");
    std::filesystem::resize_file(d + "/train-00000.topk", std::filesystem::file_size(d + "/train-00000.topk") - 4);
    expect_error([&] { TeacherCache::open(d); }, "header describes");
  }
  {
    const std::string d = copy("cache-missing");
    std::filesystem::remove(d + "/train-00001.topk");
    expect_error([&] { TeacherCache::open(d); }, "train shards");
  }
  {
    const std::string d = copy("cache-bad-id");
    const TeacherCacheShard s = read_teacher_cache_shard(d + "/train-00000.topk");
    const std::uint64_t at = s.records_offset;
    {
      std::fstream io(d + "/train-00000.topk", std::ios::in | std::ios::out | std::ios::binary);
      io.seekp(static_cast<std::streamoff>(at));
      const std::uint32_t bad = kVocab + 3;
      io.write(reinterpret_cast<const char*>(&bad), 4);
    }
    const TeacherCache c = TeacherCache::open(d);
    std::vector<int> ids(kContext * 4);
    std::vector<float> lp(kContext * 4);
    expect_error([&] { c.read_window("train", 0, ids.data(), lp.data()); }, "outside the vocabulary");
    c.read_window("train", 1, ids.data(), lp.data());  // the other windows still read
  }
  expect_error([&] { TeacherCache::open(test::temp_dir()); }, "no teacher cache shard");
  expect_error([&] {
    const TokenWindows train = TokenWindows::open(f.data, "train", kContext);
    ThreadPool pool(1);
    TeacherForward forward(*f.teacher, pool);
    TeacherCacheWriteOptions o;
    o.top_k = 4, o.temperature = 2.0f;
    monitor::Progress p = quiet();
    write_teacher_cache(dir, forward, cache_key(f, 4, 2.0f), {&train}, o, p);
  }, "already holds a teacher cache");
}

}  // namespace
}  // namespace kiln::train
