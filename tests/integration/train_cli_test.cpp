// `kiln train` through the binary, the way a user makes a model: a tokenizer trained on
// tiny-shakespeare, the text prepared into shards, a small Llama trained on them; the model
// kiln exports runs in `kiln run` with the tokenizer inside it; a run resumed from its
// checkpoint ends where the uninterrupted run ends; and bad input is refused in one line.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.h"

namespace kiln {
namespace {

using Result = test::KilnRun;

Result kiln(const std::string& args) { return test::run_kiln(args, true, 300); }

using test::expect_clean_error;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// tiny-shakespeare through kiln tokenizer train and kiln data prepare, once per test process.
const std::string& prepared_data() {
  static const std::string dir = [] {
    const std::string corpus = test::data_file("tinyshakespeare.txt");
    if (corpus.empty()) return std::string();
    const std::string tok = test::temp_dir() + "/tok";
    const std::string data = test::temp_dir() + "/data";
    const Result t = kiln("tokenizer train -q --vocab-size 512 --out " + tok + " " + corpus);
    EXPECT_EQ(t.code, 0) << t.out;
    const Result d = kiln("data prepare -q --tokenizer " + tok + "/tokenizer.gguf --paragraphs --out " + data + " " +
                          corpus);
    EXPECT_EQ(d.code, 0) << d.out;
    return data;
  }();
  return dir;
}

const char* kSmallModel = "--dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 256 -c 64 -b 8 -t 2";

TEST(TrainCli, TrainsAModelThatKilnRunsWithItsTokenizer) {
  const std::string& data = prepared_data();
  if (data.empty()) GTEST_SKIP() << "shared data file tinyshakespeare.txt not found (set KILN_DATA_DIR)";
  const std::string out = test::temp_dir() + "/run";
  const Result r = kiln("train --data " + data + " --out " + out + " " + kSmallModel +
                        " --steps 150 --lr 1e-2 --eval-every 50 --eval-windows 16 --name tiny-bard --progress json");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("model: 2 layers, dim 64, 4/2 heads, ffn 256, vocab 512"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("validation loss"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"stage\":\"train\""), std::string::npos) << r.out;  // JSON progress off a terminal
  for (const char* f : {"model.gguf", "checkpoint.kiln", "loss.svg", "train_log.jsonl"})
    EXPECT_TRUE(std::filesystem::is_regular_file(out + "/" + f)) << f;
  EXPECT_NE(read_file(out + "/loss.svg").find(">validation</text>"), std::string::npos);
  // The log's losses fall: a model that learned something of the play.
  std::ifstream log(out + "/train_log.jsonl");
  std::string first, line, last;
  std::getline(log, first);
  while (std::getline(log, line)) last = line;
  auto loss_of = [](const std::string& l) { return std::stod(l.substr(l.find("\"loss\":") + 7)); };
  EXPECT_LT(loss_of(last), loss_of(first) - 1.2) << first << "\n" << last;
  // kiln run reads the model and its tokenizer: a text prompt, text out.
  const Result run = kiln("run " + out + "/model.gguf -p 'ROMEO:' -n 16 --temp 0 -q");
  ASSERT_EQ(run.code, 0) << run.out;
  EXPECT_GT(run.out.size(), 10u) << run.out;
  const Result info = kiln("inspect " + out + "/model.gguf");
  EXPECT_NE(info.out.find("tiny-bard"), std::string::npos) << info.out;
}

TEST(TrainCli, AResumedRunEndsWhereTheWholeRunEnds) {
  const std::string& data = prepared_data();
  if (data.empty()) GTEST_SKIP() << "shared data file tinyshakespeare.txt not found (set KILN_DATA_DIR)";
  const std::string whole = test::temp_dir() + "/whole";
  const std::string parts = test::temp_dir() + "/parts";
  const std::string common = std::string(kSmallModel) + " --lr 1e-2 --eval-every 0 -q";
  ASSERT_EQ(kiln("train --data " + data + " --out " + whole + " " + common + " --steps 20").code, 0);
  // The same run in two parts: 12 steps of a 20-step schedule, then resumed to its end.
  const Result first = kiln("train --data " + data + " --out " + parts + " " + common + " --steps 20 --save-every 12 --stop-after 12");
  ASSERT_EQ(first.code, 0) << first.out;
  EXPECT_NE(first.out.find("stopped at step 12 of 20"), std::string::npos) << first.out;
  const Result second = kiln("train --out " + parts + " --resume -t 2 -q");
  ASSERT_EQ(second.code, 0) << second.out;
  EXPECT_EQ(read_file(whole + "/model.gguf"), read_file(parts + "/model.gguf"));
  // A resumed run keeps its options: changing one is refused.
  expect_clean_error(kiln("train --out " + parts + " --resume --lr 1e-2"), "--lr cannot change");
}

std::vector<double> logged_losses(const std::string& log_path) {
  std::ifstream log(log_path);
  std::vector<double> losses;
  for (std::string line; std::getline(log, line);) {
    const std::size_t at = line.find("\"loss\":");
    if (at != std::string::npos) losses.push_back(std::stod(line.substr(at + 7)));
  }
  return losses;
}

// `mpirun -np 2 kiln train` splits every batch over two ranks and averages their gradients: the
// same global batches as one process, so the same losses to rounding (each rank sums its half).
TEST(TrainCli, TwoMpiRanksTrainAsOneProcess) {
  const std::string& data = prepared_data();
  if (data.empty()) GTEST_SKIP() << "shared data file tinyshakespeare.txt not found (set KILN_DATA_DIR)";
  std::string mpirun;
  if (test::run_command("command -v mpirun", &mpirun) != 0 || mpirun.empty())
    GTEST_SKIP() << "mpirun not on PATH (Debian: openmpi-bin)";
  mpirun.erase(mpirun.find_last_not_of("\n") + 1);
  const std::string one = test::temp_dir() + "/one-rank";
  const std::string two = test::temp_dir() + "/two-ranks";
  const std::string run = "train --data " + data + " --dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 256 -c 64 -b 8 "
                          "--steps 20 --lr 1e-2 --eval-every 10 --eval-windows 8 --precision f32 -q";
  const Result single = kiln(run + " -t 2 --out " + one);
  ASSERT_EQ(single.code, 0) << single.out;
  Result ranks;
  ranks.code = test::run_command("timeout 300 " + mpirun + " -np 2 --oversubscribe --allow-run-as-root --bind-to none " +
                                     test::kiln_binary() + " " + run + " -t 1 --out " + two + " < /dev/null",
                                 &ranks.out, /*merge_stderr=*/true);
  ASSERT_EQ(ranks.code, 0) << ranks.out;
  EXPECT_NE(ranks.out.find("2 ranks x 1 threads"), std::string::npos) << ranks.out;
  // Rank 0 alone prints and writes.
  std::size_t summaries = 0;
  for (std::size_t at = ranks.out.find("trained 20 steps"); at != std::string::npos;
       at = ranks.out.find("trained 20 steps", at + 1))
    ++summaries;
  EXPECT_EQ(summaries, 1u) << ranks.out;
  const std::vector<double> a = logged_losses(one + "/train_log.jsonl"), b = logged_losses(two + "/train_log.jsonl");
  ASSERT_EQ(a.size(), 20u);
  ASSERT_EQ(b.size(), 20u);
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(b[i], a[i], 1e-4 * a[i]) << "step " << i + 1;
  // A batch that does not divide over the ranks is refused, naming the rank, and ends the job.
  std::string odd_run = run;
  odd_run.replace(odd_run.find("-b 8"), 4, "-b 7");
  Result odd;
  odd.code = test::run_command("timeout 120 " + mpirun + " -np 2 --oversubscribe --allow-run-as-root --bind-to none " +
                                   test::kiln_binary() + " " + odd_run + " -t 1 --out " + test::temp_dir() +
                                   "/odd < /dev/null",
                               &odd.out, /*merge_stderr=*/true);
  EXPECT_NE(odd.code, 0) << odd.out;
  EXPECT_NE(odd.out.find("must divide evenly over 2 ranks"), std::string::npos) << odd.out;
}

// --metrics-port: while the run goes, /metrics answers in the Prometheus text format with the
// run's progress (promtool accepts the page when it is installed).
TEST(TrainCli, MetricsAreServedWhileTraining) {
  const std::string& data = prepared_data();
  if (data.empty()) GTEST_SKIP() << "shared data file tinyshakespeare.txt not found (set KILN_DATA_DIR)";
  const std::string out = test::temp_dir() + "/metrics-run";
  const std::string log = test::temp_dir() + "/metrics-run.out";
  // Long enough to be scraped: it is killed once the page has been read.
  const std::string start = "(timeout 120 " + test::kiln_binary() + " train --data " + data + " --out " + out + " " + kSmallModel +
                            " --steps 100000 -q --metrics-port -1 --name scraped > " + log + " 2>&1 & echo $!)";
  std::string pid;
  ASSERT_EQ(test::run_command(start, &pid), 0);
  std::string port;
  for (int i = 0; i < 100 && port.empty(); ++i) {
    std::string text;
    test::run_command("sleep 0.1; cat " + log, &text);
    const std::size_t at = text.find("http://127.0.0.1:");
    if (at != std::string::npos && text.find("/metrics", at) != std::string::npos)
      port = text.substr(at + 17, text.find('/', at + 17) - (at + 17));
  }
  ASSERT_FALSE(port.empty()) << "no metrics address printed";
  std::string page;
  for (int i = 0; i < 50; ++i) {
    test::run_command("sleep 0.1; curl -s http://127.0.0.1:" + port + "/metrics", &page);
    if (page.find("kiln_train_step{run=\"scraped\"} ") != std::string::npos &&
        page.find("kiln_train_step{run=\"scraped\"} 0") == std::string::npos)
      break;
  }
  EXPECT_NE(page.find("# TYPE kiln_train_loss gauge"), std::string::npos) << page;
  EXPECT_NE(page.find("kiln_train_target_steps{run=\"scraped\"} 100000"), std::string::npos) << page;
  EXPECT_NE(page.find("kiln_train_tokens_total{run=\"scraped\"}"), std::string::npos) << page;
  EXPECT_NE(page.find("kiln_train_step_duration_seconds_bucket"), std::string::npos) << page;
  EXPECT_NE(page.find("kiln_build_info"), std::string::npos) << page;
  std::string promtool;
  if (test::run_command("command -v promtool", &promtool) == 0 && !promtool.empty()) {
    std::string check;
    const std::string file = test::temp_dir() + "/train-metrics.txt";
    std::ofstream(file) << page;
    EXPECT_EQ(test::run_command("promtool check metrics < " + file, &check, true), 0) << check;
  }
  std::string health;
  test::run_command("curl -s http://127.0.0.1:" + port + "/health", &health);
  EXPECT_EQ(health, "ok\n");
  test::run_command("kill " + pid, nullptr);
}

TEST(TrainCli, RefusesBadInput) {
  const std::string& data = prepared_data();
  if (data.empty()) GTEST_SKIP() << "shared data file tinyshakespeare.txt not found (set KILN_DATA_DIR)";
  const std::string dir = test::temp_dir();
  expect_clean_error(kiln("train --data " + dir + "/nowhere --out " + dir + "/x"), "nowhere");
  expect_clean_error(kiln("train --data " + data + " --out " + dir + "/x --dim 66 --heads 4"),
                     "must be a multiple of --heads");
  expect_clean_error(kiln("train --data " + data + " --out " + dir + "/x --precision f8"), "--precision");
  expect_clean_error(kiln("train --out " + dir + "/never-trained --resume"), "does not exist");
  // A folder that holds a run is not overwritten by a new one.
  const std::string run = dir + "/taken";
  ASSERT_EQ(kiln("train --data " + data + " --out " + run + " " + kSmallModel + " --steps 2 -q").code, 0);
  expect_clean_error(kiln("train --data " + data + " --out " + run + " " + kSmallModel + " --steps 2"),
                     "continue it with --resume");
  // A damaged shard is named.
  const std::string broken = dir + "/broken";
  std::filesystem::copy(data, broken, std::filesystem::copy_options::recursive);
  for (const auto& e : std::filesystem::directory_iterator(broken))
    if (e.path().extension() == ".tokens") {
      std::filesystem::resize_file(e.path(), std::filesystem::file_size(e.path()) / 2);
      break;
    }
  expect_clean_error(kiln("train --data " + broken + " --out " + dir + "/y " + kSmallModel), ".tokens");
  // A damaged checkpoint is refused, not resumed from.
  const std::string ckpt = run + "/checkpoint.kiln";
  std::string bytes = read_file(ckpt);
  bytes[bytes.size() - 5] ^= 0x40;
  std::ofstream(ckpt, std::ios::binary) << bytes;
  expect_clean_error(kiln("train --out " + run + " --resume --steps 4"), "checkpoint.kiln");
}

}  // namespace
}  // namespace kiln
