#pragma once
// `kiln serve` as a child process on a free port for the integration tests, and plain requests
// to it over a socket.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../serve/http_test_client.h"
#include "test_support.h"

namespace kiln::test {

using json = nlohmann::json;

// A running `kiln serve`; stopped (SIGKILL if need be) when it goes out of scope.
class KilnServer {
 public:
  // `wrapper` runs before the binary (e.g. {"/usr/bin/prlimit", "--nofile=96:96", "--"}).
  KilnServer(const std::string& model_path, const std::vector<std::string>& extra,
             const std::vector<std::string>& wrapper = {}) {
    log_ = test::temp_dir() + "/serve_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++) + ".log";
    std::vector<std::string> args = {test::kiln_binary(), "serve", model_path, "--port", "0", "-t", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    // Stderr goes to a file here, which would make the log JSON: the tests read the text lines
    // unless they ask for a format or a log file (serve_log_test reads the JSON ones).
    if (std::find(extra.begin(), extra.end(), "--log-format") == extra.end() &&
        std::find(extra.begin(), extra.end(), "--log-file") == extra.end()) {
      args.push_back("--log-format");
      args.push_back("text");
    }
    args.insert(args.begin(), wrapper.begin(), wrapper.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      FILE* f = std::fopen(log_.c_str(), "w");
      ::dup2(fileno(f), 2);
      ::dup2(fileno(f), 1);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    // Wait for "listening on http://127.0.0.1:PORT" and "ready", in --log-file when given.
    const auto log_file = std::find(extra.begin(), extra.end(), "--log-file");
    const std::string startup_log = log_file != extra.end() && log_file + 1 != extra.end() ? *(log_file + 1) : log_;
    const std::regex re("listening on http://127\\.0\\.0\\.1:([0-9]+)");
    for (int i = 0; i < 500 && (port_ == 0 || read_file(startup_log).find("ready") == std::string::npos); ++i) {
      std::smatch m;
      const std::string text = read_file(startup_log);
      if (port_ == 0 && std::regex_search(text, m, re)) port_ = std::stoi(m[1]);
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  ~KilnServer() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  // What the server wrote to stdout and stderr.
  std::string log() const { return read_file(log_); }
  static std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  // Sends a signal and waits for the exit code (-1 on timeout).
  int signal_and_wait(int sig, std::chrono::milliseconds timeout) {
    ::kill(pid_, sig);
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }

 private:
  static inline int counter_ = 0;
  pid_t pid_ = -1;
  int port_ = 0;
  bool exited_ = false;
  std::string log_;
};

struct Reply {
  int status = 0;
  json body;
  std::map<std::string, std::string> headers;
  std::string raw;
};

// Sends the bytes of a request as they are (whatever Host, Origin or Content-Type a test needs)
// and reads the answer.
Reply send_raw(int port, const std::string& bytes) {
  TestClient c(port);
  c.send(bytes);
  test::ClientResponse r = c.read_response(30000);
  Reply out{r.status, json(), r.headers, r.body};
  out.body = json::parse(r.body, nullptr, false);
  return out;
}

Reply request(int port, const std::string& method, const std::string& path, const std::string& body = "",
              const std::string& headers = "") {
  return send_raw(port, method == "GET" ? test::http_get(path, headers) : test::http_post(path, body, headers));
}

Reply post(int port, const std::string& path, const json& body) { return request(port, "POST", path, body.dump()); }

}  // namespace kiln::test
