// `kiln distill` through the binary: a teacher trained by kiln train on tiny-shakespeare, a
// half-depth student distilled from it on the fly and from a top-k cache (lowering its KL from
// the teacher, with both validation losses reported), a Q8_0 teacher, a run resumed from its
// checkpoint ending where the whole run ends, and bad input refused in one line before any work:
// a teacher of another vocabulary, a cache of another teacher or other data.
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

// The data (tiny-shakespeare, a 512-token vocabulary) and a teacher trained on it, once.
struct Prepared {
  std::string data, teacher, tok;
};
const Prepared& prepared() {
  static const Prepared p = [] {
    Prepared x;
    const std::string corpus = test::data_file("tinyshakespeare.txt");
    if (corpus.empty()) return x;
    x.tok = test::temp_dir() + "/tok";
    x.data = test::temp_dir() + "/data";
    EXPECT_EQ(kiln("tokenizer train -q --vocab-size 512 --out " + x.tok + " " + corpus).code, 0);
    EXPECT_EQ(kiln("data prepare -q --tokenizer " + x.tok + "/tokenizer.gguf --paragraphs --out " + x.data + " " + corpus)
                  .code,
              0);
    const Result t = kiln("train -q --data " + x.data + " --out " + test::temp_dir() +
                          "/teacher --dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 256 -c 64 -b 8 --steps 80 --lr 1e-2 "
                          "--eval-every 0 -t 2");
    EXPECT_EQ(t.code, 0) << t.out;
    x.teacher = test::temp_dir() + "/teacher/model.gguf";
    return x;
  }();
  return p;
}

std::string write_student_config(const std::string& name) {
  const std::string path = test::temp_dir() + "/" + name;
  std::ofstream(path) << R"({"dim": 64, "layers": 1, "heads": 4, "kv_heads": 2, "ffn": 128})";
  return path;
}

// (kl, val_kl) of the log's first and last lines.
double field_of(const std::string& line, const std::string& key) {
  const std::size_t at = line.find("\"" + key + "\":");
  return at == std::string::npos ? -1 : std::stod(line.substr(at + key.size() + 3));
}
std::vector<std::string> log_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

const char* kRun = " -c 64 -b 8 --lr 1e-2 -t 2 --progress json";

TEST(DistillCli, DistilsAHalfDepthStudentOnTheFlyAndFromACache) {
  const Prepared& p = prepared();
  if (p.data.empty()) GTEST_SKIP() << "shared data file tinyshakespeare.txt not found (set KILN_DATA_DIR)";
  const std::string student = write_student_config("student.json");
  const std::string out = test::temp_dir() + "/fly";
  const Result r = kiln("distill --teacher " + p.teacher + " --student " + student + " --data " + p.data + " --out " + out +
                        kRun + " --steps 40 --eval-every 20 --eval-windows 16");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("model: 1 layers, dim 64"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("alpha 0, temperature 1, every id on the fly"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"stage\":\"train\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("validation: cross-entropy"), std::string::npos) << r.out;
  for (const char* f : {"model.gguf", "checkpoint.kiln", "loss.svg", "train_log.jsonl"})
    EXPECT_TRUE(std::filesystem::is_regular_file(out + "/" + f)) << f;
  const std::vector<std::string> lines = log_lines(out + "/train_log.jsonl");
  ASSERT_EQ(lines.size(), 40u);
  EXPECT_LT(field_of(lines.back(), "kl"), field_of(lines.front(), "kl") * 0.6) << lines.front() << "\n" << lines.back();
  EXPECT_GT(field_of(lines.back(), "val_kl"), 0) << lines.back();
  EXPECT_GT(field_of(lines.back(), "val_distill_loss"), 0) << lines.back();
  // The student runs with the data's tokenizer inside it.
  const Result run = kiln("run " + out + "/model.gguf -p 'ROMEO:' -n 8 --temp 0 -q");
  EXPECT_EQ(run.code, 0) << run.out;

  // The cache: one teacher pass, then a student reads it.
  const std::string cache = test::temp_dir() + "/cache";
  const Result c = kiln("distill cache --teacher " + p.teacher + " --data " + p.data + " --out " + cache +
                        " -c 64 --top-k 16 --windows-per-shard 64 -t 2 --progress none");
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_TRUE(std::filesystem::is_regular_file(cache + "/train-00000.topk"));
  EXPECT_TRUE(std::filesystem::is_regular_file(cache + "/val-00000.topk"));
  const std::string cached = test::temp_dir() + "/cached";
  const Result rc = kiln("distill --teacher " + p.teacher + " --student " + student + " --data " + p.data + " --cache " +
                         cache + " --out " + cached + kRun + " --steps 40 --eval-every 0 --eval-windows 16");
  ASSERT_EQ(rc.code, 0) << rc.out;
  EXPECT_NE(rc.out.find("top 16 from the cache"), std::string::npos) << rc.out;
  const std::vector<std::string> cl = log_lines(cached + "/train_log.jsonl");
  ASSERT_EQ(cl.size(), 40u);
  EXPECT_LT(field_of(cl.back(), "kl"), field_of(cl.front(), "kl") * 0.6) << cl.front() << "\n" << cl.back();

  // A quantized teacher runs through the same inference forward.
  const std::string q8 = test::temp_dir() + "/teacher-q8_0.gguf";
  ASSERT_EQ(kiln("quantize " + p.teacher + " " + q8 + " Q8_0").code, 0);
  const Result rq = kiln("distill --teacher " + q8 + " --student " + student + " --data " + p.data + " --out " +
                         test::temp_dir() + "/from-q8" + kRun + " --steps 3 --eval-every 0 --eval-windows 4 --top-k 16");
  EXPECT_EQ(rq.code, 0) << rq.out;
  EXPECT_NE(rq.out.find("top 16 on the fly"), std::string::npos) << rq.out;

  // Refused before any work: a cache of another teacher (the distilled student as teacher), a
  // cache written for other windows, a --top-k beside a cache.
  expect_clean_error(kiln("distill --teacher " + out + "/model.gguf --student " + student + " --data " + p.data +
                          " --cache " + cache + " --out " + test::temp_dir() + "/x1" + kRun),
                     "was written by another teacher");
  expect_clean_error(kiln("distill --teacher " + p.teacher + " --student " + student + " --data " + p.data + " --cache " +
                          cache + " --out " + test::temp_dir() + "/x2 -c 32 -b 8"),
                     "not --context 32");
  expect_clean_error(kiln("distill --teacher " + p.teacher + " --student " + student + " --data " + p.data + " --cache " +
                          cache + " --top-k 4 --out " + test::temp_dir() + "/x3" + kRun),
                     "--top-k is the cache's");
}

TEST(DistillCli, AResumedRunEndsWhereTheWholeRunEnds) {
  const Prepared& p = prepared();
  if (p.data.empty()) GTEST_SKIP() << "shared data file tinyshakespeare.txt not found (set KILN_DATA_DIR)";
  const std::string student = write_student_config("student-resume.json");
  const std::string whole = test::temp_dir() + "/d-whole", parts = test::temp_dir() + "/d-parts";
  const std::string common = " --teacher " + p.teacher + " --student " + student + " --data " + p.data +
                             " -c 64 -b 8 --lr 1e-2 --eval-every 0 --top-k 8 -q -t 2 --steps 12";
  ASSERT_EQ(kiln("distill --out " + whole + common).code, 0);
  const Result first = kiln("distill --out " + parts + common + " --stop-after 7");
  ASSERT_EQ(first.code, 0) << first.out;
  EXPECT_NE(first.out.find("stopped at step 7 of 12"), std::string::npos) << first.out;
  const Result second = kiln("distill --out " + parts + " --resume -t 2 -q");
  ASSERT_EQ(second.code, 0) << second.out;
  EXPECT_EQ(read_file(whole + "/model.gguf"), read_file(parts + "/model.gguf"));
  expect_clean_error(kiln("distill --out " + parts + " --resume --alpha 0.1"), "--alpha cannot change");
  // A kiln train run is not continued by distill, nor the other way round.
  expect_clean_error(kiln("distill --out " + test::temp_dir() + "/teacher --resume"), "continue it with kiln train");
}

TEST(DistillCli, RefusesATeacherOfAnotherVocabulary) {
  const Prepared& p = prepared();
  if (p.data.empty()) GTEST_SKIP() << "shared data file tinyshakespeare.txt not found (set KILN_DATA_DIR)";
  const std::string tiny = test::data_file("llama-2-tiny-random.gguf");
  if (tiny.empty()) GTEST_SKIP() << "shared data file llama-2-tiny-random.gguf not found";
  const std::string student = write_student_config("student-vocab.json");
  const Result r = kiln("distill --teacher " + tiny + " --student " + student + " --data " + p.data + " --out " +
                        test::temp_dir() + "/v1 -c 64");
  expect_clean_error(r, "has another vocabulary");
  EXPECT_FALSE(std::filesystem::exists(test::temp_dir() + "/v1/checkpoint.kiln"));
  // A student GGUF of another vocabulary than teacher and data.
  expect_clean_error(kiln("distill --teacher " + p.teacher + " --student " + tiny + " --data " + p.data + " --out " +
                          test::temp_dir() + "/v2 -c 64"),
                     "vocabulary");
  expect_clean_error(kiln("distill cache --teacher " + tiny + " --data " + p.data + " --out " + test::temp_dir() + "/v3"),
                     "has another vocabulary");
  expect_clean_error(kiln("distill --teacher " + p.teacher + " --student " + student + " --data " + p.data + " --out " +
                          test::temp_dir() + "/v4 -c 64 --alpha 1.5"),
                     "--alpha 1.5 must be between 0 and 1");
}

}  // namespace
}  // namespace kiln
