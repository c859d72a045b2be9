// Training checkpoints: a round trip is bit-exact (parameters, both moments, config, step, seed,
// cursor, run information); a checkpoint of another model, a truncated file and a flipped byte
// anywhere (header or tensors) are refused with one line naming the file; writing leaves no
// temporary file and replaces an existing checkpoint by rename, never in place.
#include "train/checkpoint.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "test_support.h"

namespace kiln::train {
namespace {

LlamaConfig small_config() {
  LlamaConfig c;
  c.arch = "llama";
  c.name = "tiny";
  c.n_vocab = 40;
  c.n_embd = 16;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_head_kv = 2;
  c.head_dim = 4;
  c.n_ff = 24;
  c.n_ctx_train = 64;
  c.n_rot = 4;
  // Values without a short decimal form, to show that floats round-trip exactly.
  c.rms_eps = 1.1e-6f;
  c.rope_theta = 123456.789f;
  c.rope_scale = 0.1f;
  return c;
}

// Three buffers of random bits: every float pattern (NaNs with payloads, -0, subnormals) must
// come back unchanged.
struct Buffers {
  std::vector<float> params, m, v;
  explicit Buffers(std::int64_t n, std::uint32_t seed = 0) : params(n), m(n), v(n) {
    std::mt19937 rng(seed);
    for (auto* b : {&params, &m, &v})
      for (float& x : *b) {
        const std::uint32_t bits = rng();
        std::memcpy(&x, &bits, 4);
      }
  }
  bool operator==(const Buffers& o) const {
    const std::size_t bytes = params.size() * sizeof(float);
    return params.size() == o.params.size() && std::memcmp(params.data(), o.params.data(), bytes) == 0 &&
           std::memcmp(m.data(), o.m.data(), bytes) == 0 && std::memcmp(v.data(), o.v.data(), bytes) == 0;
  }
};

CheckpointState sample_state(const LlamaConfig& config) {
  CheckpointState s;
  s.config = config;
  s.step = 12345;
  s.seed = 0x8000000000000005ull;  // above int64's range
  s.cursor = {3, 17};
  s.run = {{"options", {{"lr", 3e-4}, {"batch", 8}, {"data", "/data/tiny"}}},
           {"loss", {10.5, 4.25, static_cast<double>(0.1f)}},
           {"note", "ünïcode"}};
  return s;
}

std::string fresh_dir(const std::string& name) {
  const std::string dir = test::temp_dir() + "/" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

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

std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// Where the tensors start: the prefix's header length, rounded up past the 56-byte prefix to 64.
std::uint64_t data_offset_of(const std::string& bytes) {
  std::uint64_t header_bytes;
  std::memcpy(&header_bytes, bytes.data() + 16, 8);
  return (56 + header_bytes + 63) / 64 * 64;
}

TEST(Checkpoint, RoundTripIsBitExact) {
  LlamaConfig tied = small_config();
  tied.tied_output = true;
  tied.rope_layout = RopeLayout::Halves;
  tied.arch = "mistral";
  for (const LlamaConfig& config : {small_config(), tied}) {
    const ParameterTable table(config);
    const Buffers saved(table.total(), 7);
    const std::string path = fresh_dir("round_trip") + "/run.ckpt";
    const CheckpointState state = sample_state(config);
    write_checkpoint(path, state, table, saved.params.data(), saved.m.data(), saved.v.data());
    EXPECT_EQ(std::filesystem::file_size(path) % 4, 0u);

    const CheckpointState back = read_checkpoint_state(path);
    const LlamaConfig& c = back.config;
    EXPECT_EQ(c.arch, config.arch);
    EXPECT_EQ(c.name, config.name);
    EXPECT_EQ(c.n_vocab, config.n_vocab);
    EXPECT_EQ(c.n_embd, config.n_embd);
    EXPECT_EQ(c.n_layer, config.n_layer);
    EXPECT_EQ(c.n_head, config.n_head);
    EXPECT_EQ(c.n_head_kv, config.n_head_kv);
    EXPECT_EQ(c.head_dim, config.head_dim);
    EXPECT_EQ(c.n_ff, config.n_ff);
    EXPECT_EQ(c.n_ctx_train, config.n_ctx_train);
    EXPECT_EQ(c.n_rot, config.n_rot);
    EXPECT_EQ(std::memcmp(&c.rms_eps, &config.rms_eps, 4), 0);
    EXPECT_EQ(std::memcmp(&c.rope_theta, &config.rope_theta, 4), 0);
    EXPECT_EQ(std::memcmp(&c.rope_scale, &config.rope_scale, 4), 0);
    EXPECT_EQ(c.rope_layout, config.rope_layout);
    EXPECT_EQ(c.qkv_bias, config.qkv_bias);
    EXPECT_EQ(c.tied_output, config.tied_output);
    EXPECT_EQ(back.step, state.step);
    EXPECT_EQ(back.seed, state.seed);
    EXPECT_EQ(back.cursor.epoch, state.cursor.epoch);
    EXPECT_EQ(back.cursor.position, state.cursor.position);
    EXPECT_EQ(back.run, state.run);

    // A model built from the state alone loads the tensors.
    const ParameterTable rebuilt(back.config);
    Buffers loaded(rebuilt.total(), 99);
    read_checkpoint_tensors(path, rebuilt, loaded.params.data(), loaded.m.data(), loaded.v.data());
    EXPECT_TRUE(loaded == saved);
  }
}

TEST(Checkpoint, RefusesAnotherModel) {
  const LlamaConfig config = small_config();
  const ParameterTable table(config);
  const Buffers saved(table.total());
  const std::string path = fresh_dir("another") + "/run.ckpt";
  write_checkpoint(path, sample_state(config), table, saved.params.data(), saved.m.data(), saved.v.data());

  LlamaConfig wider = config;
  wider.n_embd = 32;
  wider.head_dim = 8;
  wider.n_rot = 8;
  const ParameterTable wider_table(wider);
  Buffers out(wider_table.total());
  std::string what =
      error_of([&] { read_checkpoint_tensors(path, wider_table, out.params.data(), out.m.data(), out.v.data()); });
  EXPECT_NE(what.find("checkpoint " + path + " is for another model"), std::string::npos) << what;
  EXPECT_NE(what.find("n_embd 16 (this model: 32)"), std::string::npos) << what;
  EXPECT_NE(what.find("head_dim 4 (this model: 8)"), std::string::npos) << what;

  // The same tensor shapes with another rope base are another model too.
  LlamaConfig other_rope = config;
  other_rope.rope_theta = 10000.0f;
  const ParameterTable other_rope_table(other_rope);
  Buffers same_size(other_rope_table.total());
  what = error_of([&] {
    read_checkpoint_tensors(path, other_rope_table, same_size.params.data(), same_size.m.data(), same_size.v.data());
  });
  EXPECT_NE(what.find("rope_theta"), std::string::npos) << what;

  // The name alone does not matter.
  LlamaConfig renamed = config;
  renamed.name = "another name";
  const ParameterTable renamed_table(renamed);
  read_checkpoint_tensors(path, renamed_table, same_size.params.data(), same_size.m.data(), same_size.v.data());
  EXPECT_TRUE(same_size == saved);

  // Nor is a checkpoint written with a state whose config is not the table's.
  CheckpointState mismatched = sample_state(wider);
  EXPECT_NE(error_of([&] {
              write_checkpoint(path + "2", mismatched, table, saved.params.data(), saved.m.data(), saved.v.data());
            }),
            "");
  EXPECT_FALSE(std::filesystem::exists(path + "2"));
}

TEST(Checkpoint, RefusesATruncatedFile) {
  const LlamaConfig config = small_config();
  const ParameterTable table(config);
  const Buffers saved(table.total());
  const std::string dir = fresh_dir("truncated");
  const std::string path = dir + "/run.ckpt";
  write_checkpoint(path, sample_state(config), table, saved.params.data(), saved.m.data(), saved.v.data());
  const std::string whole = read_bytes(path);
  const std::uint64_t data = data_offset_of(whole);
  const std::string cut_path = dir + "/cut.ckpt";
  for (std::uint64_t size :
       {std::uint64_t{0}, std::uint64_t{8}, std::uint64_t{55}, std::uint64_t{56}, std::uint64_t{200}, data - 1, data,
        data + 4, whole.size() / 2, static_cast<std::uint64_t>(whole.size()) - 1}) {
    write_bytes(cut_path, whole.substr(0, size));
    const std::string what = error_of([&] { read_checkpoint_state(cut_path); });
    EXPECT_NE(what.find(cut_path), std::string::npos) << "size " << size << ": " << what;
    Buffers out(table.total());
    EXPECT_NE(
        error_of([&] { read_checkpoint_tensors(cut_path, table, out.params.data(), out.m.data(), out.v.data()); }), "")
        << "size " << size;
  }
  write_bytes(cut_path, whole + std::string(12, '\0'));  // one float too many in each buffer's worth
  EXPECT_NE(error_of([&] { read_checkpoint_state(cut_path); }), "");
  EXPECT_NE(error_of([&] { read_checkpoint_state(dir + "/missing.ckpt"); }), "");
}

TEST(Checkpoint, RefusesAFlippedByteInTheTensors) {
  const LlamaConfig config = small_config();
  const ParameterTable table(config);
  const Buffers saved(table.total());
  const std::string dir = fresh_dir("flipped_tensor");
  const std::string path = dir + "/run.ckpt";
  write_checkpoint(path, sample_state(config), table, saved.params.data(), saved.m.data(), saved.v.data());
  const std::string whole = read_bytes(path);
  const std::uint64_t data = data_offset_of(whole);
  const std::uint64_t buffer_bytes = static_cast<std::uint64_t>(table.total()) * 4;
  // In params, in m, in v, and the very last byte.
  for (std::uint64_t at :
       {data, data + buffer_bytes + 101, data + 2 * buffer_bytes + 7, static_cast<std::uint64_t>(whole.size()) - 1}) {
    std::string bytes = whole;
    bytes[at] = static_cast<char>(bytes[at] ^ 0x10);
    const std::string bad = dir + "/bad.ckpt";
    write_bytes(bad, bytes);
    EXPECT_EQ(read_checkpoint_state(bad).step, 12345);  // the header is intact
    Buffers out(table.total());
    const std::string what =
        error_of([&] { read_checkpoint_tensors(bad, table, out.params.data(), out.m.data(), out.v.data()); });
    EXPECT_NE(what.find("tensor data does not match its SHA-256"), std::string::npos) << "byte " << at << ": " << what;
  }
}

TEST(Checkpoint, RefusesAFlippedByteAnywhereBeforeTheTensors) {
  const LlamaConfig config = small_config();
  const ParameterTable table(config);
  const Buffers saved(table.total());
  const std::string dir = fresh_dir("flipped_header");
  const std::string path = dir + "/run.ckpt";
  write_checkpoint(path, sample_state(config), table, saved.params.data(), saved.m.data(), saved.v.data());
  const std::string whole = read_bytes(path);
  const std::uint64_t data = data_offset_of(whole);
  const std::string bad = dir + "/bad.ckpt";
  // Every byte of the prefix, the JSON header and the padding.
  for (std::uint64_t at = 0; at < data; ++at) {
    std::string bytes = whole;
    bytes[at] = static_cast<char>(bytes[at] ^ 0x01);
    write_bytes(bad, bytes);
    const std::string what = error_of([&] { read_checkpoint_state(bad); });
    ASSERT_NE(what.find(bad), std::string::npos) << "byte " << at << ": " << what;
  }
  write_bytes(bad, whole);
  EXPECT_EQ(read_checkpoint_state(bad).step, 12345);
}

TEST(Checkpoint, LeavesNoTemporaryFile) {
  const LlamaConfig config = small_config();
  const ParameterTable table(config);
  const Buffers saved(table.total());
  const std::string dir = fresh_dir("no_temp");
  write_checkpoint(dir + "/run.ckpt", sample_state(config), table, saved.params.data(), saved.m.data(), saved.v.data());
  EXPECT_EQ(files_in(dir), std::vector<std::string>{"run.ckpt"});
  // A failed write leaves nothing either.
  const std::string what = error_of([&] {
    write_checkpoint(dir + "/missing_folder/run.ckpt", sample_state(config), table, saved.params.data(), saved.m.data(),
                     saved.v.data());
  });
  EXPECT_NE(what.find("missing_folder"), std::string::npos) << what;
  CheckpointState not_object = sample_state(config);
  not_object.run = nlohmann::json::array();
  EXPECT_NE(error_of([&] {
              write_checkpoint(dir + "/other.ckpt", not_object, table, saved.params.data(), saved.m.data(),
                               saved.v.data());
            }),
            "");
  EXPECT_EQ(files_in(dir), std::vector<std::string>{"run.ckpt"});
}

TEST(Checkpoint, ReplacesAnExistingCheckpointAtomically) {
  const LlamaConfig config = small_config();
  const ParameterTable table(config);
  const Buffers first(table.total(), 1), second(table.total(), 2);
  const std::string dir = fresh_dir("replace");
  const std::string path = dir + "/run.ckpt";
  CheckpointState state = sample_state(config);
  write_checkpoint(path, state, table, first.params.data(), first.m.data(), first.v.data());
  const std::string first_bytes = read_bytes(path);

  // A reader that opened the first checkpoint keeps reading it whole: the second one is a new
  // file renamed over the name, not a rewrite of the old file's bytes.
  const int old_fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(old_fd, 0);
  struct stat before {};
  ASSERT_EQ(::fstat(old_fd, &before), 0);
  state.step = 20000;
  state.cursor = {4, 0};
  write_checkpoint(path, state, table, second.params.data(), second.m.data(), second.v.data());
  std::string old_bytes(first_bytes.size(), '\0');
  EXPECT_EQ(::pread(old_fd, old_bytes.data(), old_bytes.size(), 0), static_cast<ssize_t>(old_bytes.size()));
  ::close(old_fd);
  EXPECT_EQ(old_bytes, first_bytes);
  struct stat after {};
  ASSERT_EQ(::stat(path.c_str(), &after), 0);
  EXPECT_NE(after.st_ino, before.st_ino);

  const CheckpointState back = read_checkpoint_state(path);
  EXPECT_EQ(back.step, 20000);
  EXPECT_EQ(back.cursor.epoch, 4u);
  Buffers loaded(table.total());
  read_checkpoint_tensors(path, table, loaded.params.data(), loaded.m.data(), loaded.v.data());
  EXPECT_TRUE(loaded == second);
  EXPECT_EQ(files_in(dir), std::vector<std::string>{"run.ckpt"});
}

}  // namespace
}  // namespace kiln::train
