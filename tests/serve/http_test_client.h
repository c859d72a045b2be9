#pragma once
// A deliberately plain blocking HTTP/1.1 client over POSIX sockets for the server's tests: it
// sends exactly the bytes a test asks for (malformed ones included) and parses responses framed
// by Content-Length, chunked encoding or the end of the connection.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace kiln::test {

struct ClientResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;                            // de-chunked
  bool ok = false;                             // a complete response was read
};

class TestClient {
 public:
  // `from`: the local address to connect from (e.g. "127.0.0.2", another client address on loopback).
  explicit TestClient(int port, const char* from = nullptr) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (from != nullptr) {
      sockaddr_in local{};
      local.sin_family = AF_INET;
      ::inet_pton(AF_INET, from, &local.sin_addr);
      ::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof local);
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~TestClient() { close(); }
  TestClient(const TestClient&) = delete;
  TestClient& operator=(const TestClient&) = delete;

  bool connected() const { return connected_; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  bool send(const std::string& bytes) {
    std::size_t off = 0;
    while (off < bytes.size()) {
      ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<std::size_t>(n);
    }
    return true;
  }

  // Reads until a complete response has arrived, the peer closes, or timeout_ms passes.
  ClientResponse read_response(int timeout_ms = 5000) {
    ClientResponse r;
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    std::size_t head_end;
    while ((head_end = buf_.find("\r\n\r\n")) == std::string::npos)
      if (!fill(until)) return r;
    std::string head = buf_.substr(0, head_end);
    buf_.erase(0, head_end + 4);
    if (head.rfind("HTTP/1.1 100", 0) == 0) return read_response(timeout_ms);
    r.status = std::stoi(head.substr(9, 3));
    std::size_t pos = head.find("\r\n");
    while (pos != std::string::npos && pos < head.size()) {
      std::size_t next = head.find("\r\n", pos + 2);
      std::string line = head.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
      std::size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        std::size_t v = colon + 1;
        while (v < line.size() && line[v] == ' ') ++v;
        r.headers[name] = line.substr(v);
      }
      pos = next;
    }
    if (r.status == 204 || r.status == 304) {
      r.ok = true;  // no body, whatever the headers say
    } else if (r.headers.count("content-length")) {
      const std::size_t len = std::stoul(r.headers["content-length"]);
      while (buf_.size() < len)
        if (!fill(until)) return r;
      r.body = buf_.substr(0, len);
      buf_.erase(0, len);
      r.ok = true;
    } else if (r.headers["transfer-encoding"] == "chunked") {
      for (;;) {
        std::size_t eol;
        while ((eol = buf_.find("\r\n")) == std::string::npos)
          if (!fill(until)) return r;
        const std::size_t size = std::stoul(buf_.substr(0, eol), nullptr, 16);
        while (buf_.size() < eol + 2 + size + 2)
          if (!fill(until)) return r;
        r.body += buf_.substr(eol + 2, size);
        buf_.erase(0, eol + 2 + size + 2);
        if (size == 0) break;
      }
      r.ok = true;
    } else {
      while (fill(until)) {
      }
      r.body = buf_;
      buf_.clear();
      r.ok = true;
    }
    return r;
  }

  // True when the server closed the connection within timeout_ms (EOF or reset).
  bool wait_closed(int timeout_ms) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (fill(until)) {
    }
    return eof_;
  }
  // Bytes received but not yet consumed by read_response (e.g. a partial stream).
  std::string& pending() { return buf_; }
  // Reads whatever arrives within timeout_ms into pending(); false on EOF/timeout without data.
  bool fill_for(int timeout_ms) { return fill(std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms)); }

 private:
  bool fill(std::chrono::steady_clock::time_point until) {
    if (fd_ < 0 || eof_) return false;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) return false;
    char tmp[65536];
    ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    buf_.append(tmp, static_cast<std::size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  bool eof_ = false;
  std::string buf_;
};

// Slowloris: `n` connections that each start a request and then send one more header line
// every `every`, never finishing the header, until this goes out of scope.
class Trickler {
 public:
  Trickler(int port, int n, std::chrono::milliseconds every) {
    for (int i = 0; i < n; ++i) {
      clients_.push_back(std::make_unique<TestClient>(port));
      clients_.back()->send("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    }
    thread_ = std::thread([this, every] {
      std::unique_lock lock(mu_);
      while (!cv_.wait_for(lock, every, [this] { return stop_; }))
        for (auto& c : clients_) c->send("1\r\nX-Slow: ");
    });
  }
  ~Trickler() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  Trickler(const Trickler&) = delete;
  Trickler& operator=(const Trickler&) = delete;
  // For reading what the server answers (the trickling thread only sends).
  TestClient& operator[](std::size_t i) { return *clients_[i]; }

 private:
  std::vector<std::unique_ptr<TestClient>> clients_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

inline std::string http_get(const std::string& path, const std::string& extra_headers = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: localhost\r\n" + extra_headers + "\r\n";
}
inline std::string http_post(const std::string& path, const std::string& body, const std::string& extra_headers = "") {
  return "POST " + path + " HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n" + extra_headers + "\r\n" + body;
}

}  // namespace kiln::test
