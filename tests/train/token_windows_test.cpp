// TokenWindows over a prepared data folder (windows cross shard boundaries, skip other splits'
// shards, targets are the inputs shifted by one; missing, short and mismatched splits refused in
// one line) and WindowSampler (a permutation per epoch, fixed by the seed and epoch alone, resumed
// exactly from a cursor).
#include "train/token_windows.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <set>
#include <vector>

#include "core/error.h"
#include "data/corpus.h"
#include "data/data_shard.h"
#include "data/manifest.h"
#include "test_support.h"

namespace kiln::train {
namespace {

constexpr std::uint32_t kVocab = 1000;

data::TokenizerHash hash_of(std::uint8_t seed) {
  data::TokenizerHash h{};
  for (std::size_t i = 0; i < h.size(); ++i) h[i] = static_cast<std::uint8_t>(i * 13 + seed);
  return h;
}

struct ShardSpec {
  std::string split;
  std::vector<std::vector<std::int32_t>> documents;
  data::TokenizerHash hash = hash_of(1);
  std::uint32_t vocab = kVocab;
};

// A fresh folder holding the shards (shard_<i>.tokens) and a manifest listing them in order,
// with tokenizer hash hash_of(1) and vocabulary kVocab.
std::string write_folder(const std::string& name, const std::vector<ShardSpec>& shards) {
  const std::string dir = test::temp_dir() + "/" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  data::Manifest manifest;
  manifest.tokenizer_hash = hash_of(1);
  manifest.vocab_size = kVocab;
  manifest.tokenizer_path = "vocab.json";
  for (std::size_t i = 0; i < shards.size(); ++i) {
    const std::string file = "shard_" + std::to_string(i) + ".tokens";
    data::ShardWriter w(dir + "/" + file, shards[i].vocab, shards[i].hash);
    for (const auto& d : shards[i].documents) w.add_document(d);
    w.finish();
    data::ManifestShard m;
    m.file = file;
    m.split = shards[i].split;
    m.tokens = w.n_tokens();
    m.documents = w.n_documents();
    m.bytes = std::filesystem::file_size(dir + "/" + file);
    m.sha256 = data::file_sha256_hex(dir + "/" + file);
    manifest.shards.push_back(m);
  }
  data::write_manifest(dir + "/" + data::kManifestName, manifest);
  return dir;
}

std::vector<std::int32_t> range(std::int32_t first, std::int32_t n) {
  std::vector<std::int32_t> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), first);
  return v;
}

// The train stream is 1, 2, ..., 25 over shards of 7 (two documents), 0, 5 and 13 tokens, with
// val shards (ids from 500) listed between them.
std::string write_sample_folder() {
  return write_folder("sample", {{"train", {range(1, 3), range(4, 4)}},
                                 {"val", {range(500, 6)}},
                                 {"train", {}},
                                 {"train", {range(8, 5)}},
                                 {"val", {range(506, 3), range(509, 2)}},
                                 {"train", {range(13, 13)}}});
}

// Runs f and returns the kiln::Error's message, checking that it is one line ("" when none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    return what;
  }
  return "";
}

TEST(TokenWindows, WindowsCrossShardBoundariesAndTargetsAreShiftedInputs) {
  const std::string dir = write_sample_folder();
  for (int context : {1, 2, 4, 5, 7, 24}) {
    const TokenWindows windows = TokenWindows::open(dir, "train", context);
    EXPECT_EQ(windows.n_tokens(), 25u);
    EXPECT_EQ(windows.context(), context);
    ASSERT_EQ(windows.n_windows(), 24u / static_cast<std::uint64_t>(context)) << "context " << context;
    std::vector<int> tokens(static_cast<std::size_t>(context)), targets(tokens.size());
    for (std::uint64_t w = 0; w < windows.n_windows(); ++w) {
      windows.read_window(w, tokens.data(), targets.data());
      for (int i = 0; i < context; ++i) {
        // Stream position p holds id p + 1.
        const int p = static_cast<int>(w) * context + i;
        ASSERT_EQ(tokens[static_cast<std::size_t>(i)], p + 1) << "context " << context << " window " << w;
        ASSERT_EQ(targets[static_cast<std::size_t>(i)], p + 2) << "context " << context << " window " << w;
      }
    }
    EXPECT_NE(error_of([&] { windows.read_window(windows.n_windows(), tokens.data(), targets.data()); }), "");
  }
}

TEST(TokenWindows, ReadsOnlyItsSplitsShardsInManifestOrder) {
  const TokenWindows val = TokenWindows::open(write_sample_folder(), "val", 3);
  EXPECT_EQ(val.n_tokens(), 11u);
  EXPECT_EQ(val.n_windows(), 3u);
  EXPECT_EQ(val.manifest().vocab_size, kVocab);
  std::vector<int> tokens(3), targets(3);
  val.read_window(1, tokens.data(), targets.data());
  EXPECT_EQ(tokens, (std::vector<int>{503, 504, 505}));
  EXPECT_EQ(targets, (std::vector<int>{504, 505, 506}));
  val.read_window(2, tokens.data(), targets.data());
  EXPECT_EQ(tokens, (std::vector<int>{506, 507, 508}));
  EXPECT_EQ(targets, (std::vector<int>{507, 508, 509}));
}

TEST(TokenWindows, RefusesAMissingSplit) {
  const std::string dir = write_folder("train_only", {{"train", {range(1, 50)}}});
  const std::string what = error_of([&] { TokenWindows::open(dir, "val", 4); });
  EXPECT_NE(what.find(dir), std::string::npos) << what;
  EXPECT_NE(what.find("no \"val\" shard"), std::string::npos) << what;
  EXPECT_NE(error_of([&] { TokenWindows::open(test::temp_dir() + "/no_such_folder", "train", 4); }), "");
}

TEST(TokenWindows, RefusesASplitShorterThanOneWindow) {
  const std::string dir = write_folder("short", {{"train", {range(1, 10)}}, {"train", {range(11, 6)}}});
  EXPECT_EQ(TokenWindows::open(dir, "train", 15).n_windows(), 1u);  // 16 tokens: exactly one window
  const std::string what = error_of([&] { TokenWindows::open(dir, "train", 16); });
  EXPECT_NE(what.find(dir), std::string::npos) << what;
  EXPECT_NE(what.find("16 tokens"), std::string::npos) << what;
  EXPECT_NE(error_of([&] { TokenWindows::open(dir, "train", 0); }), "");
}

TEST(TokenWindows, RefusesAShardOfAnotherTokenizer) {
  ShardSpec other{"train", {range(1, 20)}};
  other.hash = hash_of(2);
  const std::string dir = write_folder("other_hash", {{"train", {range(1, 20)}}, other});
  const std::string what = error_of([&] { TokenWindows::open(dir, "train", 4); });
  EXPECT_NE(what.find("shard_1.tokens"), std::string::npos) << what;
  EXPECT_NE(what.find("tokenizer sha256"), std::string::npos) << what;

  ShardSpec bigger{"train", {range(1, 20)}};
  bigger.vocab = kVocab + 1;
  const std::string dir2 = write_folder("other_vocab", {bigger});
  const std::string what2 = error_of([&] { TokenWindows::open(dir2, "train", 4); });
  EXPECT_NE(what2.find("vocabulary size 1001"), std::string::npos) << what2;
  // A shard of another split is not opened, so its tokenizer does not matter to this one.
  ShardSpec val{"val", {range(1, 20)}};
  val.hash = hash_of(3);
  EXPECT_EQ(TokenWindows::open(write_folder("other_val", {{"train", {range(1, 20)}}, val}), "train", 4).n_windows(),
            4u);
}

TEST(TokenWindows, RefusesADamagedShard) {
  const std::string dir = write_folder("damaged", {{"train", {range(1, 40)}}});
  std::filesystem::resize_file(dir + "/shard_0.tokens", 80);
  const std::string what = error_of([&] { TokenWindows::open(dir, "train", 4); });
  EXPECT_NE(what.find("shard_0.tokens"), std::string::npos) << what;
}

std::vector<std::uint64_t> draw(WindowSampler& sampler, std::uint64_t n) {
  std::vector<std::uint64_t> out;
  for (std::uint64_t i = 0; i < n; ++i) out.push_back(sampler.next());
  return out;
}

TEST(WindowSampler, EveryEpochIsAPermutationOfItsOwn) {
  const std::uint64_t n = 1000;
  WindowSampler sampler(n, 7);
  std::vector<std::vector<std::uint64_t>> epochs;
  for (int e = 0; e < 3; ++e) {
    EXPECT_EQ(sampler.cursor().epoch, static_cast<std::uint64_t>(e));
    EXPECT_EQ(sampler.cursor().position, 0u);
    epochs.push_back(draw(sampler, n));
    EXPECT_EQ(epochs.back(), sampler.permutation(static_cast<std::uint64_t>(e)));
    std::vector<std::uint64_t> sorted = epochs.back();
    std::sort(sorted.begin(), sorted.end());
    std::vector<std::uint64_t> all(n);
    std::iota(all.begin(), all.end(), 0);
    EXPECT_EQ(sorted, all) << "epoch " << e;
    EXPECT_NE(epochs.back(), all) << "epoch " << e << " was not shuffled";
  }
  EXPECT_EQ(sampler.cursor().epoch, 3u);
  EXPECT_NE(epochs[0], epochs[1]);
  EXPECT_NE(epochs[1], epochs[2]);
  WindowSampler other_seed(n, 8);
  EXPECT_NE(draw(other_seed, n), epochs[0]);
}

TEST(WindowSampler, TheOrderDependsOnTheSeedAndEpochAlone) {
  WindowSampler a(257, 123), b(257, 123);
  EXPECT_EQ(draw(a, 1000), draw(b, 1000));
  // Pinned: mt19937_64 through seed_seq and the written-out shuffle are the same on every
  // standard library, so a change here means checkpoints of earlier runs would resume differently.
  WindowSampler pinned(10, 42);
  const std::vector<std::uint64_t> first = draw(pinned, 10);
  EXPECT_EQ(first, (std::vector<std::uint64_t>{0, 6, 5, 1, 3, 9, 7, 8, 4, 2}));
}

TEST(WindowSampler, ResumesFromACursorExactly) {
  const std::uint64_t n = 300;
  WindowSampler run(n, 99);
  std::vector<std::uint64_t> order;
  std::vector<WindowCursor> cursors;
  for (int i = 0; i < 1000; ++i) {
    cursors.push_back(run.cursor());
    order.push_back(run.next());
  }
  for (std::size_t at : {0u, 1u, 299u, 300u, 301u, 650u, 999u}) {
    WindowSampler resumed(n, 99);
    resumed.set_cursor(cursors[at]);
    EXPECT_EQ(resumed.cursor().epoch, cursors[at].epoch);
    EXPECT_EQ(resumed.cursor().position, cursors[at].position);
    const std::vector<std::uint64_t> rest = draw(resumed, order.size() - at);
    EXPECT_TRUE(std::equal(rest.begin(), rest.end(), order.begin() + static_cast<std::ptrdiff_t>(at))) << "at " << at;
  }
  EXPECT_EQ(cursors[300].epoch, 1u);
  EXPECT_EQ(cursors[300].position, 0u);
  // Going back to an earlier epoch recomputes its order.
  WindowSampler back(n, 99);
  back.set_cursor({2, 5});
  back.next();
  back.set_cursor({0, 0});
  EXPECT_TRUE(std::equal(order.begin(), order.begin() + 10, draw(back, 10).begin()));
}

TEST(WindowSampler, RefusesACursorOutsideTheEpochAndNoWindows) {
  WindowSampler sampler(10, 1);
  EXPECT_NE(error_of([&] { sampler.set_cursor({0, 10}); }), "");
  EXPECT_NE(error_of([] { WindowSampler(0, 1); }), "");
  WindowSampler single(1, 5);
  EXPECT_EQ(draw(single, 3), (std::vector<std::uint64_t>{0, 0, 0}));
  EXPECT_EQ(single.cursor().epoch, 3u);
}

}  // namespace
}  // namespace kiln::train
