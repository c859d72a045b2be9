// GET /metrics of a real `kiln serve` (the tiny random Llama 2): who may read it, that the page
// is valid (a strict reader of the format, and promtool where installed), that its counts match
// a known load exactly and agree with /stats, and that a real Prometheus scraping it every second
// on 127.0.0.1 answers PromQL about that load: exact counts of requests and tokens, and latency
// quantiles within the range the client measured (to the resolution of the buckets).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "../monitor/exposition.h"
#include "kiln_server.h"
#include "test_support.h"

namespace kiln {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using test::KilnServer;
using test::TestClient;

constexpr const char* kModel = "llama-2-tiny-random";
constexpr const char* kKey = "sk-metrics-test-0123456789";
// The first 8 hex digits of sha256("sk-metrics-test-0123456789") (coreutils' sha256sum).
constexpr const char* kKeyId = "9599f1b2";

std::string bearer() { return std::string("Authorization: Bearer ") + kKey + "\r\n"; }

test::ClientResponse get(int port, const std::string& path, const std::string& headers = "") {
  TestClient c(port);
  c.send(test::http_get(path, headers));
  return c.read_response(10000);
}

test::Exposition scrape(int port) {
  const test::ClientResponse r = get(port, "/metrics", bearer());
  EXPECT_EQ(r.status, 200) << r.body;
  return test::parse_exposition(r.body);
}

// One streamed completion as a client sees it: time to the first text, time to the end, usage.
struct Measured {
  int status = 0;
  double ttft_s = -1, e2e_s = 0;
  int prompt_tokens = 0, completion_tokens = 0;
};

Measured stream_completion(int port, const std::string& prompt, int max_tokens) {
  const json body = {{"model", kModel},
                     {"prompt", prompt},
                     {"max_tokens", max_tokens},
                     {"ignore_eos", true},
                     {"temperature", 0},
                     {"stream", true},
                     {"stream_options", {{"include_usage", true}}}};
  Measured m;
  TestClient c(port);
  const Clock::time_point t0 = Clock::now();
  c.send(test::http_post("/v1/completions", body.dump(), bearer()));
  // The first event that carries text (a token whose text is held back sends none).
  while (m.ttft_s < 0 && c.fill_for(30000))
    if (c.pending().find("\"text\":\"", c.pending().find("\r\n\r\n")) != std::string::npos)
      m.ttft_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const test::ClientResponse r = c.read_response(60000);
  m.e2e_s = std::chrono::duration<double>(Clock::now() - t0).count();
  m.status = r.status;
  std::istringstream in(r.body);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("data: {", 0) != 0) continue;
    const json chunk = json::parse(line.substr(6));
    if (chunk.contains("usage") && chunk["usage"].is_object()) {
      m.prompt_tokens = chunk["usage"]["prompt_tokens"];
      m.completion_tokens = chunk["usage"]["completion_tokens"];
    }
  }
  return m;
}

// A known load: `clients` clients at once, each sending `per_client` streamed completions of
// 1, 2 or 3 times `unit` tokens, end of sequence ignored, so every count is known in advance.
std::vector<Measured> drive_load(int port, int clients, int per_client, int unit) {
  std::vector<Measured> all;
  std::mutex mu;
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&, c] {
      for (int i = 0; i < per_client; ++i) {
        const std::string prompt = "Client " + std::to_string(c) + " asks question " + std::to_string(i) +
                                   std::string(static_cast<std::size_t>(c * 7 + i * 3), '!');
        Measured m = stream_completion(port, prompt, unit * (1 + (c + i) % 3));
        std::lock_guard lock(mu);
        all.push_back(m);
      }
    });
  for (auto& t : threads) t.join();
  return all;
}

TEST(ServeMetrics, ThePageNeedsTheKeyUnlessOpened) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  {
    KilnServer server(model_path, {"--api-key", kKey});
    ASSERT_GT(server.port(), 0) << server.log();
    EXPECT_EQ(get(server.port(), "/metrics").status, 401);
    EXPECT_EQ(get(server.port(), "/metrics", "Authorization: Bearer wrong\r\n").status, 401);
    const test::ClientResponse r = get(server.port(), "/metrics", bearer());
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.headers.at("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    // The refused scrapes are counted, under no key.
    const test::Exposition e = test::parse_exposition(get(server.port(), "/metrics", bearer()).body);
    EXPECT_EQ(e.sum("kiln_requests_total", {{"endpoint", "/metrics"}, {"status", "401"}}), 2);
    EXPECT_EQ(e.sum("kiln_api_key_requests_total", {{"endpoint", "/metrics"}, {"status", "200"}}), 1);
    // The counters of rare events exist at zero before their first event, so that rate() sees
    // the first 429 or cancellation (a series that appears with its first count hides it).
    for (const char* name : {"kiln_requests_rejected_total", "kiln_requests_cancelled_total", "kiln_requests_refused_total",
                             "kiln_requests_accepted_total"}) {
      EXPECT_TRUE(e.has(name)) << name;
      EXPECT_EQ(e.sum(name), 0) << name;
    }
  }
  {
    KilnServer server(model_path, {"--api-key", kKey, "--metrics-open"});
    ASSERT_GT(server.port(), 0) << server.log();
    EXPECT_EQ(get(server.port(), "/metrics").status, 200);
    EXPECT_NE(server.log().find("/metrics open"), std::string::npos) << server.log();
    EXPECT_EQ(get(server.port(), "/stats").status, 401);  // only /metrics opens
  }
  {
    KilnServer server(model_path, {});
    ASSERT_GT(server.port(), 0) << server.log();
    EXPECT_EQ(get(server.port(), "/metrics").status, 200);  // no key at all: everything is open
  }
}

TEST(ServeMetrics, CountsMatchAKnownLoadAndAgreeWithStats) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  KilnServer server(model_path, {"--api-key", kKey});
  ASSERT_GT(server.port(), 0) << server.log();
  const int port = server.port();
  const std::vector<Measured> load = drive_load(port, 3, 2, 8);
  int prompt_tokens = 0, completion_tokens = 0;
  for (const Measured& m : load) {
    ASSERT_EQ(m.status, 200);
    prompt_tokens += m.prompt_tokens;
    completion_tokens += m.completion_tokens;
  }
  EXPECT_EQ(completion_tokens, 2 * (8 + 16 + 24));  // (c + i) % 3 over c < 3, i < 2 takes each value twice
  // A request for a model that does not exist is counted without its name: a client cannot make
  // new series by inventing names.
  EXPECT_EQ(test::post(port, "/v1/completions", {{"model", "no-such-model"}, {"prompt", "x"}}).status, 401);
  TestClient c(port);
  c.send(test::http_post("/v1/completions", json{{"model", "no-such-model"}, {"prompt", "x"}}.dump(), bearer()));
  EXPECT_EQ(c.read_response().status, 404);

  const test::ClientResponse page = get(port, "/metrics", bearer());
  const test::Exposition e = test::parse_exposition(page.body);
  ASSERT_TRUE(e.errors.empty()) << e.errors.front();
  const std::map<std::string, std::string> model = {{"model", kModel}};
  EXPECT_EQ(e.sum("kiln_requests_total", {{"endpoint", "/v1/completions"}, {"model", kModel}, {"status", "200"}}), 6);
  EXPECT_EQ(e.sum("kiln_requests_total", {{"endpoint", "/v1/completions"}, {"model", ""}, {"status", "404"}}), 1);
  EXPECT_EQ(e.sum("kiln_requests_total", {{"endpoint", "/v1/completions"}, {"status", "401"}}), 1);
  EXPECT_EQ(page.body.find("no-such-model"), std::string::npos);
  EXPECT_EQ(e.sum("kiln_requests_accepted_total", model), 6);
  EXPECT_EQ(e.sum("kiln_requests_active", model), 0);
  EXPECT_EQ(e.sum("kiln_engine_requests_total", model), 6);
  EXPECT_EQ(e.sum("kiln_engine_requests_finished_total", {{"model", kModel}, {"reason", "length"}}), 6);
  EXPECT_EQ(e.sum("kiln_prompt_tokens_total", model), prompt_tokens);
  EXPECT_EQ(e.sum("kiln_generated_tokens_total", model), completion_tokens);
  EXPECT_EQ(e.sum("kiln_request_generation_tokens_sum", model), completion_tokens);
  EXPECT_EQ(e.sum("kiln_request_prompt_tokens_sum", model), prompt_tokens);
  for (const char* h : {"kiln_time_to_first_token_seconds", "kiln_e2e_request_latency_seconds",
                        "kiln_time_per_output_token_seconds", "kiln_request_queue_time_seconds"})
    EXPECT_EQ(e.sum(std::string(h) + "_count", model), 6) << h;
  EXPECT_EQ(e.sum("kiln_engine_step_tokens_count", model), e.sum("kiln_engine_steps_total", model));
  // Per API key: by its id, and the key itself is nowhere on the page.
  EXPECT_EQ(
      e.sum("kiln_api_key_requests_total", {{"key_id", kKeyId}, {"endpoint", "/v1/completions"}, {"status", "200"}}),
      6);
  EXPECT_EQ(e.sum("kiln_api_key_generated_tokens_total", {{"key_id", kKeyId}, {"model", kModel}}), completion_tokens);
  EXPECT_EQ(e.sum("kiln_api_key_prompt_tokens_total", {{"key_id", kKeyId}, {"model", kModel}}), prompt_tokens);
  EXPECT_EQ(page.body.find(kKey), std::string::npos);
  // The model registry, the process and the build.
  EXPECT_EQ(e.sum("kiln_model_loaded", model), 1);
  EXPECT_EQ(e.sum("kiln_models_loaded"), 1);
  EXPECT_GT(e.sum("kiln_model_load_seconds", model), 0);
  EXPECT_GT(e.sum("kiln_model_parameters", model), 0);
  EXPECT_GT(e.sum("process_resident_memory_bytes"), 1e6);
  EXPECT_EQ(e.sum("kiln_build_info"), 1);
  EXPECT_GE(e.sum("kiln_http_requests_total"), 9);

  // /stats is a view of the same registry.
  const json st = json::parse(get(port, "/stats", bearer()).body);
  EXPECT_EQ(st["models"][0]["engine"]["generated_tokens_total"], completion_tokens);
  EXPECT_EQ(st["models"][0]["engine"]["prompt_tokens_total"], prompt_tokens);
  EXPECT_EQ(st["models"][0]["engine"]["steps_total"].get<double>(), e.sum("kiln_engine_steps_total", model));
  EXPECT_EQ(st["requests"]["total"], 6);

  std::string out;
  if (test::run_command("command -v promtool", &out) != 0) {
    std::printf("[ SKIPPED  ] promtool check metrics: promtool is not installed (Debian's prometheus)\n");
    return;
  }
  const std::string file = test::temp_dir() + "/kiln_metrics.txt";
  std::ofstream(file) << page.body;
  EXPECT_EQ(test::run_command("promtool check metrics < " + file, &out, true), 0) << out;
}

// --- a real Prometheus -------------------------------------------------------------------------

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string url_encode(const std::string& s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// Prometheus as a child process on 127.0.0.1, scraping kiln every second with the API key.
class PrometheusServer {
 public:
  PrometheusServer(int kiln_port, const std::string& dir) : port_(free_port()) {
    std::ofstream(dir + "/key.txt") << kKey;
    std::ofstream(dir + "/prometheus.yml")
        << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
           "scrape_configs:\n  - job_name: kiln\n    scrape_interval: 1s\n"
           "    scrape_timeout: 1s\n    authorization:\n      credentials_file: "
        << dir << "/key.txt\n    static_configs:\n      - targets: ['127.0.0.1:" << kiln_port << "']\n";
    log_ = dir + "/prometheus.log";
    std::vector<std::string> args = {"/usr/bin/prometheus", "--config.file=" + dir + "/prometheus.yml",
                                     "--storage.tsdb.path=" + dir + "/data",
                                     "--web.listen-address=127.0.0.1:" + std::to_string(port_), "--log.level=warn"};
    pid_ = ::fork();
    if (pid_ == 0) {
      FILE* f = std::fopen(log_.c_str(), "w");
      ::dup2(fileno(f), 1);
      ::dup2(fileno(f), 2);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  ~PrometheusServer() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 500; ++i) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) return;
      std::this_thread::sleep_for(10ms);
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  std::string log() const {
    std::ifstream in(log_);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }

  // The instant query's result vector, or an empty array (no series, or Prometheus not up yet).
  json query(const std::string& promql) const {
    TestClient c(port_);
    if (!c.connected()) return json::array();
    c.send(test::http_get("/api/v1/query?query=" + url_encode(promql)));
    const test::ClientResponse r = c.read_response(5000);
    const json j = json::parse(r.body, nullptr, false);
    if (r.status != 200 || !j.is_object() || j.value("status", "") != "success") return json::array();
    return j["data"]["result"];
  }
  // The value of a query whose result is one sample; NaN when there is none.
  double value(const std::string& promql) const {
    const json r = query(promql);
    if (!r.is_array() || r.size() != 1) return std::nan("");
    return std::stod(r[0]["value"][1].get<std::string>());
  }
  // Polls until `promql` has the value `want` (Prometheus has scraped it), up to `timeout`.
  bool wait_for(const std::string& promql, double want, std::chrono::milliseconds timeout) const {
    const auto until = Clock::now() + timeout;
    while (Clock::now() < until) {
      if (value(promql) == want) return true;
      std::this_thread::sleep_for(200ms);
    }
    return false;
  }

 private:
  int port_;
  pid_t pid_ = -1;
  std::string log_;
};

// The bounds of the histogram's buckets, from the le labels of its series in Prometheus.
std::vector<double> bucket_bounds(const PrometheusServer& prom, const std::string& histogram) {
  std::vector<double> bounds;
  for (const json& s : prom.query(histogram + "_bucket")) {
    const std::string le = s["metric"]["le"];
    if (le != "+Inf") bounds.push_back(std::stod(le));
  }
  std::sort(bounds.begin(), bounds.end());
  return bounds;
}

// [lo, hi]: from the lower edge of the bucket below the one that holds `min` (the server's clock
// starts after the request has arrived, so its times sit a little below the client's) to the
// upper edge of the bucket that holds `max`. histogram_quantile interpolates within a bucket, so
// an estimate of values in [min, max] falls within it.
std::pair<double, double> bucket_range(const std::vector<double>& bounds, double min, double max) {
  std::size_t i = 0;
  while (i < bounds.size() && bounds[i] < min) ++i;  // bounds[i] is the upper edge of min's bucket
  const double lo = i >= 2 ? bounds[i - 2] : 0;
  std::size_t j = 0;
  while (j < bounds.size() && bounds[j] < max) ++j;
  const double hi = j < bounds.size() ? bounds[j] : std::numeric_limits<double>::infinity();
  return {lo, hi};
}

TEST(ServeMetrics, PrometheusScrapesAndAnswersPromQlAboutTheLoad) {
  KILN_REQUIRE_DATA(model_path, "llama-2-tiny-random.gguf");
  if (::access("/usr/bin/prometheus", X_OK) != 0)
    GTEST_SKIP() << "prometheus is not installed (scripts/install-deps.sh --test installs Debian's prometheus)";
  // One request runs at a time: with four clients the others wait, so times to first token
  // spread from a few milliseconds to the length of other requests, over several buckets.
  KilnServer server(model_path, {"--api-key", kKey, "--max-running", "1"});
  ASSERT_GT(server.port(), 0) << server.log();
  PrometheusServer prom(server.port(), test::temp_dir());
  // Prometheus is up and has scraped kiln at least once before any load: the counters' first
  // samples are 0, so increase() and rate() over the window see the whole load.
  ASSERT_TRUE(prom.wait_for("up{job=\"kiln\"}", 1, 20s)) << prom.log();
  ASSERT_TRUE(prom.wait_for("sum(kiln_generated_tokens_total)", 0, 10s)) << prom.log();

  const std::vector<Measured> load = drive_load(server.port(), 4, 3, 64);
  ASSERT_EQ(load.size(), 12u);
  int prompt_tokens = 0, completion_tokens = 0;
  double ttft_min = 1e9, ttft_max = 0, e2e_min = 1e9, e2e_max = 0, tpot_min = 1e9, tpot_max = 0;
  for (const Measured& m : load) {
    ASSERT_EQ(m.status, 200);
    ASSERT_GT(m.ttft_s, 0);
    prompt_tokens += m.prompt_tokens;
    completion_tokens += m.completion_tokens;
    ttft_min = std::min(ttft_min, m.ttft_s), ttft_max = std::max(ttft_max, m.ttft_s);
    e2e_min = std::min(e2e_min, m.e2e_s), e2e_max = std::max(e2e_max, m.e2e_s);
    const double tpot = (m.e2e_s - m.ttft_s) / (m.completion_tokens - 1);
    tpot_min = std::min(tpot_min, tpot), tpot_max = std::max(tpot_max, tpot);
  }
  EXPECT_EQ(completion_tokens, 4 * 64 * 6);  // every client's (c + i) % 3 takes each of 0, 1, 2 once
  // Prometheus has the final numbers once it has scraped after the last answer: a request's
  // answer is the last thing recorded of it (after its tokens, its finish and its key's counts).
  ASSERT_TRUE(prom.wait_for("sum(kiln_requests_total{endpoint=\"/v1/completions\",status=\"200\"})", 12, 15s))
      << prom.log();

  // Exact counts.
  EXPECT_EQ(prom.value("sum(kiln_generated_tokens_total)"), completion_tokens);
  EXPECT_EQ(prom.value("sum(kiln_prompt_tokens_total)"), prompt_tokens);
  EXPECT_EQ(prom.value("sum(kiln_request_generation_tokens_sum)"), completion_tokens);
  EXPECT_EQ(prom.value("sum(kiln_e2e_request_latency_seconds_count)"), 12);
  EXPECT_EQ(prom.value("sum(kiln_api_key_requests_total{key_id=\"" + std::string(kKeyId) +
                       "\",endpoint=\"/v1/completions\"})"),
            12);
  EXPECT_EQ(prom.value("sum(kiln_api_key_generated_tokens_total{key_id=\"" + std::string(kKeyId) + "\"})"),
            completion_tokens);
  EXPECT_EQ(prom.value("sum(kiln_requests_running) + sum(kiln_requests_waiting)"), 0);
  EXPECT_EQ(prom.value("count(kiln_build_info{version!=\"\",git_sha!=\"\",simd!=\"\"})"), 1);

  // Rates over the last minute: the window holds the samples from before the load (0) to after
  // it, and Prometheus extrapolates at most about one scrape interval past the last sample.
  const double rate = prom.value("sum(rate(kiln_generated_tokens_total[1m]))");
  EXPECT_GE(rate * 60, completion_tokens * 0.99) << rate;
  EXPECT_LE(rate * 60, completion_tokens * 1.5) << rate;

  // Latency quantiles within what the client measured.
  const auto check_quantile = [&](const std::string& histogram, double q, double min, double max) {
    const double estimate =
        prom.value("histogram_quantile(" + std::to_string(q) + ", sum by (le) (rate(" + histogram + "_bucket[1m])))");
    const auto [lo, hi] = bucket_range(bucket_bounds(prom, histogram), min, max);
    std::printf("%s q%.2f: Prometheus %.4f s; the client saw %.4f .. %.4f s; allowed %.4f .. %.4f s\n",
                histogram.c_str(), q, estimate, min, max, lo, hi);
    EXPECT_GE(estimate, lo) << histogram << " q" << q << ": client saw " << min << " .. " << max;
    EXPECT_LE(estimate, hi) << histogram << " q" << q << ": client saw " << min << " .. " << max;
  };
  check_quantile("kiln_time_to_first_token_seconds", 0.99, ttft_min, ttft_max);
  check_quantile("kiln_time_to_first_token_seconds", 0.5, ttft_min, ttft_max);
  check_quantile("kiln_e2e_request_latency_seconds", 0.99, e2e_min, e2e_max);
  check_quantile("kiln_e2e_request_latency_seconds", 0.5, e2e_min, e2e_max);
  check_quantile("kiln_time_per_output_token_seconds", 0.5, tpot_min, tpot_max);
}

}  // namespace
}  // namespace kiln
