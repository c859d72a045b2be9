#include "serve/http_server.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <deque>
#include <future>
#include <list>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "core/error.h"

namespace kiln::serve {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using ErrorCode = boost::system::error_code;

const std::string* HttpRequest::header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers)
    if (name == lower_name) return &value;
  return nullptr;
}

const char* http_reason(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
  }
}

namespace {

// The API's error codes are strings (OpenAI's shape); these are the server's own.
std::string_view error_code(int status) {
  switch (status) {
    case 400: return "malformed_request";
    case 408: return "request_timeout";
    case 413: return "request_too_large";
    case 431: return "headers_too_large";
    case 503: return "server_overloaded";
    default: return "server_error";
  }
}

std::string error_body(int status, std::string_view message, std::string_view type) {
  // The same shape as the API's errors, so every client can parse every error.
  return fmt::format(R"({{"error":{{"message":"{}","type":"{}","param":null,"code":"{}"}}}})", message, type,
                     error_code(status));
}

std::string response_head(int status, std::string_view content_type, const HttpHeaders& extra, bool keep_alive,
                          std::optional<std::size_t> content_length, bool chunked, std::string_view request_id = {}) {
  std::string h = fmt::format("HTTP/1.1 {} {}\r\nServer: kiln\r\n", status, http_reason(status));
  if (!request_id.empty()) h += fmt::format("X-Request-Id: {}\r\n", request_id);
  if (!content_type.empty()) h += fmt::format("Content-Type: {}\r\n", content_type);
  if (content_length) h += fmt::format("Content-Length: {}\r\n", *content_length);
  if (chunked) h += "Transfer-Encoding: chunked\r\n";
  h += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  for (const auto& [name, value] : extra) h += fmt::format("{}: {}\r\n", name, value);
  h += "\r\n";
  return h;
}

// 128 random bits in hex.
std::string new_request_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{:016x}{:016x}", rng(), rng());
}

// A client's id is echoed in a response header and written into the access log line: it must
// not be able to break either (no controls, spaces, quotes or backslashes) nor make them large.
bool sane_request_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](unsigned char c) { return c > 0x20 && c < 0x7f && c != '"' && c != '\'' && c != '\\'; });
}

}  // namespace

class Session;

// The connections of one client address that hold a slot of the table.
struct ClientEntry {
  std::string address;
  int connections = 0;
  std::list<Session*> evictable;  // those without a request in flight, longest-waiting first
};

// Where a session stands in the connection table; guarded by the server's sessions_mutex.
struct TableEntry {
  ClientEntry* client = nullptr;  // its address's entry while it holds a slot
  bool reserve = false;           // holds a place of the reserve instead of a slot
  bool evicted = false;           // its slot went to a newer connection: it must not start a request
  bool listed = false;            // in the evictable lists
  std::list<Session*>::iterator all_pos, client_pos;
};

// ---- the server's shared state ---------------------------------------------------------------

struct HttpServer::Impl : std::enable_shared_from_this<HttpServer::Impl> {
  HttpServerOptions options;
  HttpHandler handler;
  asio::io_context ioc;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::optional<tcp::acceptor> acceptor;
  std::vector<std::thread> threads;
  int bound_port = 0;

  std::atomic<bool> draining{false};
  std::atomic<bool> stopped{false};
  std::atomic<int> open_connections{0};
  std::atomic<int> in_flight{0};
  std::atomic<std::uint64_t> connections_total{0}, connections_rejected{0}, requests_total{0};
  std::atomic<std::uint64_t> connections_evicted{0}, connections_reserve{0}, header_timeouts{0};

  std::mutex sessions_mutex;
  std::unordered_set<Session*> sessions;  // live sessions, for drain and stop
  // The connection table, under sessions_mutex. A session is evictable (listed) while it has no
  // request in flight: waiting for its first byte, reading its header, or closing. The lists are
  // in the order sessions became evictable, so the front is the one that has waited longest.
  int slots_used = 0;
  int reserve_used = 0;
  int per_client_cap = 0;  // 0: none
  // The default cap leaves loopback clients alone: they are this machine (a local proxy, a batch
  // job, the operator), not remote attackers; an explicit --max-connections-per-client caps them too.
  bool cap_loopback = false;
  std::unordered_map<std::string, ClientEntry> clients;
  std::list<Session*> evictable;

  struct Admission {
    enum Kind { Slot, Reserve, Refuse } kind = Refuse;
    ClientEntry* client = nullptr;      // Slot: the address's entry, counted already
    std::shared_ptr<Session> victim;    // to be closed on its own strand
  };

  // Out of file descriptors (EMFILE): a descriptor held in reserve is let go for a moment so
  // that the waiting client can be accepted and told 503 instead of hanging, and accepting pauses
  // briefly instead of retrying at once (which would spin at 100% CPU).
  int spare_fd = -1;
  std::optional<asio::steady_timer> accept_pause;
  std::atomic<std::uint64_t> accept_errors{0};

  explicit Impl(HttpServerOptions o, HttpHandler h) : options(std::move(o)), handler(std::move(h)) {}
  ~Impl() {
    if (spare_fd >= 0) ::close(spare_fd);
  }
  void accept();
  void accept_failed(const ErrorCode& ec);
  void reject(tcp::socket socket);

  // The connection table (each takes sessions_mutex).
  Admission admit(const std::string& address, bool loopback);
  void add(Session& s, const Admission& a);
  void remove(Session& s);
  void release(Session& s);
  bool begin_request(Session& s);  // false: evicted, the request must not start
  void end_request(Session& s);

 private:
  std::shared_ptr<Session> evict_locked(Session& s);
  void list_locked(Session& s);
  void unlist_locked(Session& s);
  void release_locked(Session& s);
};

// ---- one connection --------------------------------------------------------------------------

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<HttpServer::Impl> server, tcp::socket socket, HttpServer::Impl::Admission admission)
      : server_(std::move(server)),
        socket_(std::move(socket)),
        read_timer_(socket_.get_executor()),
        write_timer_(socket_.get_executor()),
        admission_(std::move(admission)),
        reserve_(admission_.kind == HttpServer::Impl::Admission::Reserve) {
    ErrorCode ec;
    auto ep = socket_.remote_endpoint(ec);
    if (!ec) remote_ = fmt::format("{}:{}", ep.address().to_string(), ep.port());
  }

  void start() {
    server_->add(*this, admission_);
    admission_.victim.reset();
    registered_ = true;
    // A new connection's header deadline runs from accept: one that never sends a byte is gone
    // after header_timeout, not idle_timeout.
    arm_read_timer(reserve_ ? server_->options.reserve_timeout : server_->options.header_timeout);
    next_request(true);
  }

  ~Session() {
    if (registered_) server_->remove(*this);
  }

  TableEntry table;  // the server's, under its sessions_mutex

  template <typename F>
  void post(F&& f) {
    // After stop() nothing runs the queue any more; a handler left in it would keep the session
    // (and through it the server) alive forever.
    if (server_->stopped.load()) return;
    asio::post(socket_.get_executor(), std::forward<F>(f));
  }

  // Drain: an idle connection closes now, a busy one after its response.
  void drain() {
    keep_alive_ = false;
    if (state_ == State::Idle && buffer_.size() == 0) close();
  }
  void force_close() { close(); }

  // Its slot went to a newer connection (the table no longer counts it): close now, without
  // lingering, so that the descriptor is free too. A client halfway through its header is told
  // why, as far as one non-blocking write gets.
  void evict() {
    if (closed_) return;
    if (state_ != State::Header) return close();
    ErrorCode ec;
    socket_.non_blocking(true, ec);
    // Unread input would turn the close into a reset, which can discard the answer before the
    // client reads it.
    for (int i = 0; i < 16 && !ec; ++i) socket_.read_some(asio::buffer(discard_buf_, sizeof discard_buf_), ec);
    if (request_id_.empty()) request_id_ = new_request_id();
    const std::string body =
        error_body(408, "the connection was closed to make room for others before its request header arrived", "invalid_request_error");
    const std::string out = response_head(408, "application/json", {}, false, body.size(), false, request_id_) + body;
    socket_.write_some(asio::buffer(out), ec);
    close();
  }

  // ---- called through HttpExchange, on the strand ----
  void respond(std::uint64_t serial, HttpResponse r) {
    if (serial != serial_ || state_ != State::Handling || response_started_) return;
    response_started_ = true;
    status_ = r.status;
    const bool keep = keep_alive_ && !server_->draining;
    keep_alive_ = keep;
    // 204 and 304 have no body and no Content-Length (RFC 9110).
    const bool bodiless = r.status == 204 || r.status == 304;
    std::string out = response_head(r.status, r.content_type, r.headers, keep,
                                    bodiless ? std::nullopt : std::optional<std::size_t>(r.body.size()), false, request_id_);
    // HEAD: the head GET would send (its Content-Length included), without the body.
    if (method_ != "HEAD" && !bodiless) {
      out += r.body;
      response_body_bytes_ = static_cast<long long>(r.body.size());
    }
    finish_response(std::move(out));
  }
  void begin_stream(std::uint64_t serial, int status, std::string content_type, HttpHeaders headers) {
    if (serial != serial_ || state_ != State::Handling || response_started_) return;
    response_started_ = true;
    streaming_ = true;
    status_ = status;
    // HTTP/1.0 has no chunked encoding: the end of the stream is the end of the connection.
    chunked_ = http_version_ >= 11;
    if (!chunked_) keep_alive_ = false;
    headers.emplace_back("Cache-Control", "no-cache");
    headers.emplace_back("X-Accel-Buffering", "no");
    enqueue(response_head(status, content_type, headers, keep_alive_ && !server_->draining, std::nullopt, chunked_, request_id_));
  }
  void write(std::uint64_t serial, std::string data) {
    if (serial != serial_ || !streaming_ || response_done_ || data.empty()) return;
    response_body_bytes_ += static_cast<long long>(data.size());
    if (chunked_) data = fmt::format("{:x}\r\n", data.size()) + data + "\r\n";
    enqueue(std::move(data));
  }
  void end_stream(std::uint64_t serial) {
    if (serial != serial_ || !streaming_ || response_done_) return;
    if (server_->draining) keep_alive_ = false;
    finish_response(chunked_ ? "0\r\n\r\n" : "");
  }
  void on_close(std::uint64_t serial, std::function<void()> fn) {
    if (serial != serial_) return;
    if (closed_ || peer_gone_) {
      if (!response_done_) fn();
      return;
    }
    on_close_ = std::move(fn);
  }
  void note(std::uint64_t serial, RequestNote note) {
    if (serial != serial_) return;
    note_ = std::move(note);
  }
  bool closed_flag() const { return closed_atomic_.load(std::memory_order_relaxed); }
  // The exchange of a request that never answered is gone: answer for it.
  void exchange_dropped(std::uint64_t serial, HttpHeaders headers) {
    if (serial != serial_ || state_ != State::Handling) return;
    if (!response_started_) {
      respond(serial, HttpResponse{500, "application/json", error_body(500, "the request was dropped without a response", "server_error"),
                                   std::move(headers)});
    } else if (!response_done_) {
      keep_alive_ = false;
      end_stream(serial);
    }
  }

 private:
  // Idle: waiting for the first byte of a request; Header, Body: reading them; Handling: from
  // the complete request to the last byte of its response (also the server's own error reply).
  enum class State { Idle, Header, Body, Handling, Closed };

  // The next request on a keep-alive connection.
  void read_request() {
    if (closed_) return;
    if (server_->draining && buffer_.size() == 0) return close();
    next_request(false);
  }

  // Waits for the first byte of a request (under idle_timeout, unless the connection is new and
  // its header deadline already runs), then reads the header under its own deadline.
  void next_request(bool fresh) {
    state_ = State::Idle;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(server_->options.max_header_bytes));
    parser_->body_limit(server_->options.max_body_bytes);
    method_.clear();
    target_.clear();
    request_id_.clear();
    user_agent_.clear();
    request_body_bytes_ = -1;
    response_body_bytes_ = 0;
    note_ = RequestNote{};
    // Bytes already here (pipelined) start the request at once; so does a reserve connection,
    // whose one request must come within reserve_timeout.
    if (reserve_ || buffer_.size() > 0) return read_header(!fresh);
    if (!fresh) arm_read_timer(server_->options.idle_timeout);
    socket_.async_wait(tcp::socket::wait_read, [self = shared_from_this(), fresh](ErrorCode ec) {
      if (self->closed_) return;
      if (ec) return self->close();
      self->read_header(!fresh);
    });
  }

  // The header deadline is armed once for the whole header, so a client trickling a byte at a
  // time cannot hold the connection past it.
  void read_header(bool arm_deadline) {
    state_ = State::Header;
    if (arm_deadline) arm_read_timer(server_->options.header_timeout);
    http::async_read_header(socket_, buffer_, *parser_,
                            [self = shared_from_this()](ErrorCode ec, std::size_t) { self->on_header(ec); });
  }

  void on_header(ErrorCode ec) {
    if (closed_) return;
    if (ec) return on_read_error(ec);
    auto& req = parser_->get();
    http_version_ = req.version();
    keep_alive_ = req.keep_alive();
    note_request_head();
    if (reserve_) {
      // Beyond the caps only a probe is served, and only a bodiless one: nothing here may take
      // long or hold the connection.
      keep_alive_ = false;
      const std::string path = target_.substr(0, target_.find('?'));
      const auto& probes = server_->options.probe_paths;
      const bool probe = (method_ == "GET" || method_ == "HEAD") && parser_->is_done() &&
                         std::find(probes.begin(), probes.end(), path) != probes.end();
      if (!probe) {
        disarm_read_timer();
        return overloaded();
      }
      return dispatch();
    }
    // The request is in flight from here: its connection is no longer a candidate for eviction.
    if (!server_->begin_request(*this)) return evict();  // lost its slot while the header arrived
    state_ = State::Body;
    if (parser_->is_done()) return dispatch();
    // curl and others wait for "100 Continue" before sending a large body.
    auto expect = req.find(http::field::expect);
    if (expect != req.end() && beast::iequals(expect->value(), "100-continue"))
      enqueue("HTTP/1.1 100 Continue\r\n\r\n");
    arm_read_timer(server_->options.read_timeout);  // once, for the whole body
    http::async_read(socket_, buffer_, *parser_,
                     [self = shared_from_this()](ErrorCode ec, std::size_t) { self->on_body(ec); });
  }

  // What the access log line and the response head say of the request: taken from whatever of
  // the header the parser has (also when it failed, e.g. a Content-Length over the limit).
  void note_request_head() {
    const auto& req = parser_->get();
    method_ = std::string(req.method_string());
    target_ = std::string(req.target());
    user_agent_ = std::string(req[http::field::user_agent]);
    auto id = req.find("X-Request-Id");
    const std::string_view client_id = id != req.end() ? std::string_view(id->value().data(), id->value().size()) : std::string_view();
    request_id_ = sane_request_id(client_id) ? std::string(client_id) : new_request_id();
  }

  void on_body(ErrorCode ec) {
    if (closed_) return;
    if (ec) return on_read_error(ec);
    dispatch();
  }

  void on_read_error(ErrorCode ec) {
    disarm_read_timer();
    if (state_ == State::Header) note_request_head();
    if (ec == http::error::body_limit)
      return reply_and_close(413, fmt::format("request body larger than the limit of {} bytes", server_->options.max_body_bytes));
    if (ec == http::error::header_limit)
      return reply_and_close(431, fmt::format("request headers larger than the limit of {} bytes", server_->options.max_header_bytes));
    if (timed_out_ && (state_ == State::Header || state_ == State::Body)) {
      if (reserve_) return overloaded();
      if (state_ == State::Body) return reply_and_close(408, "timed out reading the request body");
      server_->header_timeouts.fetch_add(1);
      return reply_and_close(408, "timed out reading the request header");
    }
    if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::operation_aborted ||
        ec == asio::error::connection_reset || timed_out_)
      return close();
    // Any other parse error: malformed HTTP.
    reply_and_close(400, fmt::format("malformed HTTP request: {}", ec.message()));
  }

  // A reserve connection whose request is not a probe, or did not come in time.
  void overloaded() {
    server_->connections_rejected.fetch_add(1);
    reply_and_close(503, "too many open connections; retry later", "server_overloaded", {{"Retry-After", "1"}});
  }

  // An error the server answers itself; the connection then closes (its input may be unread).
  void reply_and_close(int status, const std::string& message, std::string_view type = "invalid_request_error",
                       const HttpHeaders& headers = {}) {
    state_ = State::Handling;
    ++serial_;
    response_started_ = true;
    status_ = status;
    keep_alive_ = false;
    started_ = Clock::now();
    if (request_id_.empty()) request_id_ = new_request_id();
    // Closing: a newer connection may have its slot at once.
    server_->end_request(*this);
    std::string body = error_body(status, message, type);
    response_body_bytes_ = static_cast<long long>(body.size());
    response_done_ = true;
    log_line(peer_gone_);
    enqueue(response_head(status, "application/json", headers, false, body.size(), false, request_id_) + body);
  }

  void dispatch() {
    disarm_read_timer();
    state_ = State::Handling;
    ++serial_;
    response_started_ = response_done_ = streaming_ = false;
    status_ = 0;
    note_ = RequestNote{};
    response_body_bytes_ = 0;
    on_close_ = nullptr;
    auto msg = parser_->release();
    request_body_bytes_ = static_cast<long long>(msg.body().size());
    HttpRequest req;
    req.method = method_;
    req.target = target_;
    req.path = req.target.substr(0, req.target.find('?'));
    req.body = std::move(msg.body());
    req.remote = remote_;
    req.version = msg.version();
    req.id = request_id_;
    for (const auto& f : msg) {
      std::string name(f.name_string());
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
      req.headers.emplace_back(std::move(name), std::string(f.value()));
    }
    started_ = Clock::now();
    server_->in_flight.fetch_add(1);
    in_flight_ = true;
    server_->requests_total.fetch_add(1);
    watch_peer();
    auto exchange = std::make_shared<HttpExchange>(shared_from_this(), serial_);
    try {
      server_->handler(std::move(req), std::move(exchange));
    } catch (const std::exception& e) {
      respond(serial_, HttpResponse{500, "application/json", error_body(500, "internal error", "server_error"), {}});
    }
  }

  // While a request is handled, keep one read pending: it reports a client that went away, and
  // keeps (bounded) bytes of a pipelined next request for later.
  void watch_peer() {
    if (watching_ || closed_ || peer_gone_) return;
    if (buffer_.size() > server_->options.max_header_bytes + server_->options.max_body_bytes) return;
    watching_ = true;
    socket_.async_read_some(buffer_.prepare(4096), [self = shared_from_this()](ErrorCode ec, std::size_t n) {
      self->watching_ = false;
      if (self->closed_) return;
      // maybe_next cancelled the watch to read the next request.
      if (ec == asio::error::operation_aborted && self->state_ == State::Idle && !self->peer_gone_) return self->read_request();
      if (ec) {
        self->peer_gone_ = true;
        if (self->state_ == State::Handling && !self->response_done_) {
          self->fire_on_close();
          return self->close();
        }
        // A response still being written closes after its last write (maybe_next).
        if (!self->writing_) self->close();
        return;
      }
      self->buffer_.commit(n);
      if (self->state_ == State::Handling) return self->watch_peer();
      // The response is done and the connection idle: these bytes start the next request.
      self->read_request();
    });
  }

  void fire_on_close() {
    if (on_close_) {
      auto fn = std::move(on_close_);
      on_close_ = nullptr;
      fn();
    }
  }

  // Logs first: asio may write the last bytes before enqueue returns, and a client that has its
  // answer may already look at the log.
  // The access log line is written once the last byte is out (maybe_next), or when the
  // connection closes first (close): it says whether the client got the whole answer.
  void finish_response(std::string last_bytes) {
    response_done_ = true;
    if (!last_bytes.empty()) enqueue(std::move(last_bytes));
    maybe_next();
  }

  // After the last byte of a response is written: close, or wait for the next request.
  void maybe_next() {
    if (!response_done_ || writing_ || state_ != State::Handling) return;
    // The answer is out: whether it closes or waits for the next request, the connection may be
    // evicted again (before the request stops counting as in flight, so that whoever sees the
    // count drop finds it evictable).
    server_->end_request(*this);
    if (in_flight_) {
      // Every byte of the answer has been written: a client that closed since has it all.
      log_line(false);
      in_flight_ = false;
      server_->in_flight.fetch_sub(1);
    }
    if (!keep_alive_ || peer_gone_) return graceful_close();
    state_ = State::Idle;
    if (watching_) {
      // Only one read may be pending: stop the watch, whose handler then reads the next request
      // (which may already sit in the buffer, pipelined). No write is pending here.
      ErrorCode ignored;
      socket_.cancel(ignored);
      return;
    }
    read_request();
  }

  void enqueue(std::string data) {
    if (closed_) return;
    out_bytes_ += data.size();
    out_.push_back(std::move(data));
    // A client that does not read its stream must not hold the server's memory. A whole answer
    // is one buffer that exists already: it goes out at the pace the client reads (the write
    // timeout cuts a client that stops), however large it is.
    if (streaming_ && out_bytes_ > server_->options.max_pending_write_bytes) {
      peer_gone_ = true;
      fire_on_close();
      return close();
    }
    if (!writing_) write_next();
  }

  void write_next() {
    if (out_.empty() || closed_) return;
    writing_ = true;
    write_timer_.expires_after(server_->options.write_timeout);
    write_timer_.async_wait([self = shared_from_this()](ErrorCode ec) {
      if (!ec && self->writing_) self->close();
    });
    // Coalesce whatever is queued into one write: a stream of many small events costs one
    // system call per wake-up, not one per event.
    if (out_.size() > 1) {
      std::string all;
      all.reserve(out_bytes_);
      for (auto& s : out_) all += s;
      out_.clear();
      out_.push_back(std::move(all));
    }
    asio::async_write(socket_, asio::buffer(out_.front()), [self = shared_from_this()](ErrorCode ec, std::size_t n) {
      self->writing_ = false;
      self->write_timer_.cancel();
      if (self->closed_) return;
      self->out_bytes_ -= n;
      self->out_.pop_front();
      if (ec) {
        self->peer_gone_ = true;
        if (!self->response_done_) self->fire_on_close();
        return self->close();
      }
      if (!self->out_.empty()) return self->write_next();
      if (self->lingering_) return self->linger();
      self->maybe_next();
    });
  }

  // Closes after the queued bytes are out: shut down our side, then read and discard what the
  // client still sends for a moment, so that it sees our answer instead of a reset.
  void graceful_close() {
    if (closed_) return;
    lingering_ = true;
    if (writing_) return;  // write_next's completion calls linger()
    linger();
  }
  void linger() {
    ErrorCode ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
    if (ec || watching_) {
      if (ec) close();
      else arm_read_timer(std::chrono::milliseconds(2000));  // the pending watch read sees EOF
      return;
    }
    arm_read_timer(std::chrono::milliseconds(2000));
    discard();
  }
  void discard() {
    auto self = shared_from_this();
    socket_.async_read_some(asio::buffer(discard_buf_, sizeof discard_buf_), [self](ErrorCode ec, std::size_t) {
      if (self->closed_) return;
      if (ec) return self->close();
      self->discard();
    });
  }

  // One deadline at a time: the idle wait, the header, the body, or the linger after a close.
  // A generation number makes a deadline that fired just before it was re-armed a no-op.
  void arm_read_timer(std::chrono::milliseconds timeout) {
    timed_out_ = false;
    const std::uint64_t generation = ++timer_generation_;
    read_timer_.expires_after(timeout);
    read_timer_.async_wait([self = shared_from_this(), generation](ErrorCode ec) {
      if (ec || self->closed_ || generation != self->timer_generation_) return;
      self->read_deadline();
    });
  }
  void disarm_read_timer() {
    ++timer_generation_;
    read_timer_.cancel();
  }
  void read_deadline() {
    timed_out_ = true;
    if (state_ == State::Header || state_ == State::Body) {
      // The header or body did not arrive in time: the read ends, on_read_error says so, closes.
      ErrorCode ignored;
      socket_.cancel(ignored);
      return;
    }
    if (state_ == State::Idle) {
      // A new connection that never sent a byte is closed silently at its header deadline.
      if (serial_ == 0) server_->header_timeouts.fetch_add(1);
      return close();
    }
    if (lingering_) close();
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    closed_atomic_.store(true, std::memory_order_relaxed);
    state_ = State::Closed;
    ErrorCode ec;
    read_timer_.cancel();
    write_timer_.cancel();
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
    if (!response_done_) fire_on_close();
    if (in_flight_) log_line(true);  // the answer, whole or streamed, did not all reach the client
    if (in_flight_) {
      in_flight_ = false;
      server_->in_flight.fetch_sub(1);
    }
    if (registered_) server_->release(*this);
    server_->open_connections.fetch_sub(1);
  }

  // client_closed: the client went away before the whole answer reached it.
  void log_line(bool client_closed) {
    if (logged_serial_ == serial_ || !server_->options.access_log) return;
    logged_serial_ = serial_;
    AccessLogEntry e;
    e.remote = remote_;
    e.method = method_;
    e.target = target_;
    e.request_id = request_id_;
    e.status = status_;
    e.seconds = std::chrono::duration<double>(Clock::now() - started_).count();
    e.path = target_.substr(0, target_.find('?'));
    e.user_agent = user_agent_;
    e.version = http_version_;
    e.request_body_bytes = request_body_bytes_;
    e.response_body_bytes = response_body_bytes_;
    e.client_closed = client_closed;
    e.note = std::move(note_);
    note_ = RequestNote{};
    server_->options.access_log(e);
  }

  std::shared_ptr<HttpServer::Impl> server_;
  tcp::socket socket_;
  asio::steady_timer read_timer_, write_timer_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::string remote_;
  HttpServer::Impl::Admission admission_;  // until start() enters it in the table
  const bool reserve_;                     // admitted beyond the caps for one probe request
  bool registered_ = false;

  State state_ = State::Idle;
  unsigned http_version_ = 11;
  bool keep_alive_ = true;
  bool closed_ = false;
  std::atomic<bool> closed_atomic_{false};
  bool peer_gone_ = false;
  bool watching_ = false;
  bool timed_out_ = false;
  std::uint64_t timer_generation_ = 0;
  bool lingering_ = false;
  char discard_buf_[4096];

  // The current request.
  std::uint64_t serial_ = 0;
  std::uint64_t logged_serial_ = 0;
  bool in_flight_ = false;
  bool response_started_ = false, response_done_ = false, streaming_ = false, chunked_ = true;
  int status_ = 0;
  long long request_body_bytes_ = -1, response_body_bytes_ = 0;
  RequestNote note_;
  std::string method_, target_, request_id_, user_agent_;
  Clock::time_point started_;
  std::function<void()> on_close_;

  std::deque<std::string> out_;
  std::size_t out_bytes_ = 0;
  bool writing_ = false;
};

// ---- HttpExchange: posts everything to the session's strand ----------------------------------

HttpExchange::HttpExchange(std::shared_ptr<Session> session, std::uint64_t serial)
    : session_(std::move(session)), serial_(serial) {}

HttpExchange::~HttpExchange() {
  session_->post([s = session_, serial = serial_, h = added_headers()]() mutable { s->exchange_dropped(serial, std::move(h)); });
}

void HttpExchange::add_headers(const HttpHeaders& headers) {
  std::lock_guard lock(mutex_);
  added_.insert(added_.end(), headers.begin(), headers.end());
}
HttpHeaders HttpExchange::added_headers() const {
  std::lock_guard lock(mutex_);
  return added_;
}

void HttpExchange::respond(HttpResponse response) {
  for (auto& h : added_headers()) response.headers.push_back(std::move(h));
  session_->post([s = session_, serial = serial_, r = std::move(response)]() mutable { s->respond(serial, std::move(r)); });
}
void HttpExchange::begin_stream(int status, std::string content_type, HttpHeaders headers) {
  for (auto& h : added_headers()) headers.push_back(std::move(h));
  session_->post([s = session_, serial = serial_, status, ct = std::move(content_type), h = std::move(headers)]() mutable {
    s->begin_stream(serial, status, std::move(ct), std::move(h));
  });
}
void HttpExchange::write(std::string data) {
  session_->post([s = session_, serial = serial_, d = std::move(data)]() mutable { s->write(serial, std::move(d)); });
}
void HttpExchange::end_stream() {
  session_->post([s = session_, serial = serial_] { s->end_stream(serial); });
}
void HttpExchange::on_close(std::function<void()> fn) {
  session_->post([s = session_, serial = serial_, f = std::move(fn)]() mutable { s->on_close(serial, std::move(f)); });
}
bool HttpExchange::closed() const { return session_->closed_flag(); }
void HttpExchange::note(RequestNote note) {
  session_->post([s = session_, serial = serial_, n = std::move(note)]() mutable { s->note(serial, std::move(n)); });
}

// ---- accepting ------------------------------------------------------------------------------

void HttpServer::Impl::accept() {
  acceptor->async_accept(asio::make_strand(ioc), [self = shared_from_this()](ErrorCode ec, tcp::socket socket) {
    if (ec) {
      if (ec == asio::error::operation_aborted || !self->acceptor || !self->acceptor->is_open()) return;
      return self->accept_failed(ec);
    }
    self->connections_total.fetch_add(1);
    ErrorCode ignored;
    const auto peer = socket.remote_endpoint(ignored);
    Admission admission =
        self->admit(ignored ? std::string() : peer.address().to_string(), !ignored && peer.address().is_loopback());
    if (admission.victim) {
      auto victim = std::move(admission.victim);
      victim->post([victim] { victim->evict(); });
    }
    if (admission.kind == Admission::Refuse) {
      self->reject(std::move(socket));
    } else {
      if (admission.kind == Admission::Reserve) self->connections_reserve.fetch_add(1);
      self->open_connections.fetch_add(1);
      socket.set_option(tcp::no_delay(true), ignored);
      std::make_shared<Session>(self, std::move(socket), std::move(admission))->start();
    }
    self->accept();
  });
}

void HttpServer::Impl::accept_failed(const ErrorCode& ec) {
  accept_errors.fetch_add(1);
  if ((ec == asio::error::no_descriptors || ec.value() == ENFILE) && spare_fd >= 0) {
    // Free the spare descriptor, take the waiting connection, answer it 503, take the spare back.
    ::close(spare_fd);
    spare_fd = -1;
    ErrorCode ignored;
    acceptor->non_blocking(true, ignored);
    tcp::socket socket(ioc);
    ErrorCode accept_ec;
    acceptor->accept(socket, accept_ec);
    acceptor->non_blocking(false, ignored);
    if (!accept_ec) {
      connections_total.fetch_add(1);
      reject(std::move(socket));
    }
    spare_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  }
  // Pause before the next accept: the condition (no descriptors, no memory) lasts until
  // connections close.
  accept_pause->expires_after(std::chrono::milliseconds(20));
  accept_pause->async_wait([self = shared_from_this()](ErrorCode wait_ec) {
    if (wait_ec || !self->acceptor || !self->acceptor->is_open()) return;
    self->accept();
  });
}

void HttpServer::Impl::reject(tcp::socket socket) {
  connections_rejected.fetch_add(1);
  auto holder = std::make_shared<std::pair<tcp::socket, std::string>>(std::move(socket), std::string());
  std::string body = error_body(503, "too many open connections; retry later", "server_overloaded");
  holder->second = response_head(503, "application/json", {{"Retry-After", "1"}}, false, body.size(), false) + body;
  asio::async_write(holder->first, asio::buffer(holder->second), [holder](ErrorCode, std::size_t) {
    ErrorCode ec;
    holder->first.shutdown(tcp::socket::shutdown_both, ec);
    holder->first.close(ec);
  });
}

// ---- the connection table ---------------------------------------------------------------------

HttpServer::Impl::Admission HttpServer::Impl::admit(const std::string& address, bool loopback) {
  Admission a;  // outlives the lock: releasing a victim may run its destructor, which takes it
  std::lock_guard lock(sessions_mutex);
  auto it = clients.find(address);
  ClientEntry* client = it == clients.end() ? nullptr : &it->second;
  bool room = true;
  // At the client's own cap, only its own connections make room: one address cannot take the
  // slots of others. At the table's cap, the longest-waiting connection of anyone's does.
  std::list<Session*>* candidates = nullptr;
  const bool capped = per_client_cap > 0 && (cap_loopback || !loopback);
  if (capped && client != nullptr && client->connections >= per_client_cap) candidates = &client->evictable;
  else if (slots_used >= options.max_connections) candidates = &evictable;
  if (candidates != nullptr) {
    if (candidates->empty()) room = false;
    else a.victim = evict_locked(*candidates->front());
  }
  if (room) {
    auto [entry, inserted] = clients.try_emplace(address);  // the victim may have taken the old entry with it
    if (inserted) entry->second.address = address;
    ++entry->second.connections;
    ++slots_used;
    a.kind = Admission::Slot;
    a.client = &entry->second;
  } else if (reserve_used < options.reserve_connections) {
    ++reserve_used;
    a.kind = Admission::Reserve;
  }
  return a;
}

std::shared_ptr<Session> HttpServer::Impl::evict_locked(Session& s) {
  release_locked(s);
  s.table.evicted = true;
  connections_evicted.fetch_add(1);
  // Null when the session is being destroyed: its socket closes with it.
  return s.weak_from_this().lock();
}

void HttpServer::Impl::add(Session& s, const Admission& a) {
  std::lock_guard lock(sessions_mutex);
  sessions.insert(&s);
  s.table.client = a.client;
  s.table.reserve = a.kind == Admission::Reserve;
  list_locked(s);
}

void HttpServer::Impl::remove(Session& s) {
  std::lock_guard lock(sessions_mutex);
  release_locked(s);
  sessions.erase(&s);
}

void HttpServer::Impl::release(Session& s) {
  std::lock_guard lock(sessions_mutex);
  release_locked(s);
}

bool HttpServer::Impl::begin_request(Session& s) {
  std::lock_guard lock(sessions_mutex);
  if (s.table.evicted) return false;
  unlist_locked(s);
  return true;
}

void HttpServer::Impl::end_request(Session& s) {
  std::lock_guard lock(sessions_mutex);
  list_locked(s);
}

void HttpServer::Impl::list_locked(Session& s) {
  TableEntry& t = s.table;
  if (t.listed || t.client == nullptr) return;  // only a slot's holder is evictable
  t.all_pos = evictable.insert(evictable.end(), &s);
  t.client_pos = t.client->evictable.insert(t.client->evictable.end(), &s);
  t.listed = true;
}

void HttpServer::Impl::unlist_locked(Session& s) {
  TableEntry& t = s.table;
  if (!t.listed) return;
  evictable.erase(t.all_pos);
  t.client->evictable.erase(t.client_pos);
  t.listed = false;
}

// Gives back whatever the session holds: its slot (and its place in the lists) or its place in
// the reserve. Idempotent: close, eviction and the destructor may each come first.
void HttpServer::Impl::release_locked(Session& s) {
  TableEntry& t = s.table;
  unlist_locked(s);
  if (t.client != nullptr) {
    --slots_used;
    if (--t.client->connections == 0) clients.erase(clients.find(t.client->address));
    t.client = nullptr;
  }
  if (t.reserve) {
    --reserve_used;
    t.reserve = false;
  }
}

namespace {
// Owning pointers to the live sessions. They are released outside the lock: the last owner of a
// session runs its destructor, which takes the lock itself.
std::vector<std::shared_ptr<Session>> live_sessions(HttpServer::Impl& s) {
  std::vector<std::shared_ptr<Session>> out;
  std::lock_guard lock(s.sessions_mutex);
  for (Session* session : s.sessions)
    if (auto keep = session->weak_from_this().lock()) out.push_back(std::move(keep));  // skip ones being destroyed
  return out;
}
}  // namespace

HttpServer::HttpServer(HttpServerOptions options, HttpHandler handler)
    : impl_(std::make_shared<Impl>(std::move(options), std::move(handler))) {}

HttpServer::~HttpServer() { stop(); }

void HttpServer::start() {
  Impl& s = *impl_;
  ErrorCode ec;
  auto address = asio::ip::make_address(s.options.host, ec);
  if (ec) fail("serve: --host '{}' is not an IP address ({})", s.options.host, ec.message());
  if (s.options.port < 0 || s.options.port > 65535) fail("serve: --port {} is outside 0..65535", s.options.port);
  tcp::endpoint endpoint(address, static_cast<unsigned short>(s.options.port));
  s.acceptor.emplace(asio::make_strand(s.ioc));
  s.acceptor->open(endpoint.protocol(), ec);
  if (!ec) s.acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor->bind(endpoint, ec);
  if (!ec) s.acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) fail("serve: cannot listen on {}:{}: {}", s.options.host, s.options.port, ec.message());
  s.bound_port = s.acceptor->local_endpoint().port();
  s.per_client_cap = s.options.max_connections_per_client >= 0 ? s.options.max_connections_per_client
                                                                 : std::max(1, s.options.max_connections / 4);
  s.cap_loopback = s.options.max_connections_per_client >= 0;
  s.spare_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  s.accept_pause.emplace(s.acceptor->get_executor());
  s.work.emplace(s.ioc.get_executor());
  s.accept();
  const int n = std::max(1, s.options.io_threads);
  for (int i = 0; i < n; ++i) s.threads.emplace_back([&s] { s.ioc.run(); });
}

int HttpServer::port() const { return impl_->bound_port; }

void HttpServer::stop_accepting() {
  Impl& s = *impl_;
  if (s.draining.exchange(true)) return;
  if (s.acceptor) {
    std::promise<void> done;
    asio::post(s.acceptor->get_executor(), [&s, &done] {
      ErrorCode ec;
      s.acceptor->close(ec);
      done.set_value();
    });
    if (!s.threads.empty()) done.get_future().wait();
  }
  for (auto& session : live_sessions(s)) session->post([session] { session->drain(); });
}

bool HttpServer::draining() const { return impl_->draining.load(); }

bool HttpServer::wait_idle(std::chrono::milliseconds timeout) {
  const auto until = Clock::now() + timeout;
  while (impl_->in_flight.load() > 0) {
    if (Clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

void HttpServer::stop() {
  Impl& s = *impl_;
  if (s.threads.empty()) return;
  s.draining = true;
  for (auto& session : live_sessions(s)) session->post([session] { session->force_close(); });
  if (s.acceptor) {
    asio::post(s.acceptor->get_executor(), [&s] {
      ErrorCode ec;
      s.acceptor->close(ec);
    });
  }
  s.work.reset();
  // Give the posted closes a moment to run, then stop whatever is left (a stuck handler's
  // exchange may still hold a session).
  const auto until = Clock::now() + std::chrono::milliseconds(500);
  while (s.open_connections.load() > 0 && Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  s.ioc.stop();
  for (auto& t : s.threads) t.join();
  s.threads.clear();
  // Run what is still queued on this thread (closing sessions, releasing their handlers), so
  // that the sessions, and with them the server state, can be freed.
  s.stopped = true;
  s.ioc.restart();
  s.ioc.poll();
}

HttpServerStats HttpServer::stats() const {
  HttpServerStats st;
  st.open_connections = impl_->open_connections.load();
  st.requests_in_flight = impl_->in_flight.load();
  st.connections_total = impl_->connections_total.load();
  st.connections_rejected = impl_->connections_rejected.load();
  st.connections_evicted = impl_->connections_evicted.load();
  st.connections_reserve = impl_->connections_reserve.load();
  st.header_timeouts = impl_->header_timeouts.load();
  st.accept_errors = impl_->accept_errors.load();
  st.requests_total = impl_->requests_total.load();
  return st;
}

}  // namespace kiln::serve
