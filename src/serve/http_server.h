#pragma once
// An HTTP/1.1 server on Boost.Asio with Boost.Beast's request parser: a small fixed number of
// I/O threads run every connection asynchronously (a strand each), so thousands of idle or
// streaming connections cost a socket and a few KiB, not a thread.
//
// What it enforces on its own, before any handler runs:
//   - header and body size limits (431 and 413, then the connection closes),
//   - deadlines that a client trickling bytes cannot stretch: a keep-alive connection may wait
//     idle_timeout for the first byte of its next request, then the whole header must arrive
//     within header_timeout (from accept on a new connection) and the whole body within
//     read_timeout; each is armed once, not per byte (408, then the connection closes),
//   - a table of max_connections connections and at most max_connections_per_client of them
//     per client address. A connection beyond either cap takes the slot of the longest-waiting
//     connection without a request in flight (the whole table, or that client's own), which is
//     closed; only when every candidate is busy is it refused. A small reserve beyond the cap
//     still answers GET/HEAD of the probe paths (/health, /ready), so a liveness probe never fails
//     on a full table; anything else there gets 503 with Retry-After,
//   - a bound on the bytes queued for a client that does not read (the connection is cut).
// Every request carries an id (the client's X-Request-Id when it is sane, else a random one),
// echoed in its response head and given to the access log.
// While a request is being handled it keeps reading the socket, so a client that disconnects
// is noticed at once (HttpExchange::on_close), also before the response has started.
//
// The handler runs on the connection's I/O thread and must return quickly: real work goes to
// another thread, which answers through the HttpExchange (every method is thread-safe).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kiln::serve {

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method;   // "GET", "POST", ...
  std::string target;   // as sent: "/v1/models?x=1"
  std::string path;     // target without the query string
  std::string body;
  HttpHeaders headers;  // names lower-cased, in arrival order
  std::string remote;   // "127.0.0.1:54321"
  unsigned version = 11;  // HTTP/1.1: 11, HTTP/1.0: 10
  std::string id;       // X-Request-Id: the client's when sane, else generated; echoed in the response

  // The value of the first header of that (lower-case) name, or nullptr.
  const std::string* header(std::string_view lower_name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  HttpHeaders headers;  // extra headers (Retry-After, ...)
};

// What the application tells the access log about a request beyond what HTTP shows
// (HttpExchange::note). Empty strings and negative numbers: not known, or not a generation.
struct RequestNote {
  std::string endpoint;  // the route ("/v1/chat/completions", "/v1/models/{model}", "other")
  std::string model;     // a served model's name
  std::string key_id;    // the id of the API key the request authenticated with, never the key
  // An error answer's OpenAI type and code ("invalid_request_error", "model_not_found") and message.
  std::string error_type, error_code, error_message;
  bool stream = false;
  int prompt_tokens = -1, completion_tokens = -1, cached_tokens = -1;  // summed over the choices
  std::vector<std::string> finish_reasons;  // one per choice: "stop", "length", "cancelled", ...
  // Of the choice that took longest: seconds waiting for admission, prefilling, decoding, and
  // from submit to its first token.
  double queue_s = -1, prefill_s = -1, decode_s = -1, first_token_s = -1;
};

// What the access log line of one request says.
struct AccessLogEntry {
  std::string remote, method, target;
  std::string path;         // target without the query string
  std::string request_id;   // as echoed in X-Request-Id
  std::string user_agent;   // empty: none sent
  unsigned version = 11;    // HTTP/1.1: 11
  int status = 0;           // 0 when the client went away before any response
  double seconds = 0;       // from the end of the request to the end of the response
  long long request_body_bytes = -1;  // -1: the body was never read (the server refused the request first)
  long long response_body_bytes = 0;  // the body's bytes (a stream's data, without chunk framing)
  bool client_closed = false;
  RequestNote note;  // what the application said about it
};

class Session;

// One request's way back to its client. Thread-safe; calls after the response completed or
// the connection closed are ignored.
class HttpExchange {
 public:
  explicit HttpExchange(std::shared_ptr<Session> session, std::uint64_t serial);
  ~HttpExchange();

  // A complete response (Content-Length framed).
  void respond(HttpResponse response);
  // Starts a streamed response (chunked on HTTP/1.1); then write() any number of times, end().
  void begin_stream(int status, std::string content_type, HttpHeaders headers = {});
  void write(std::string data);
  void end_stream();

  // Runs `fn` once, on an I/O thread, if the client goes away before the response completed
  // (immediately if it already has). Must be quick; typically cancels the work.
  void on_close(std::function<void()> fn);
  bool closed() const;
  // For the access log line: replaces what an earlier note said.
  void note(RequestNote note);
  // Headers for whatever answers this request from now on: a response, a stream's head, or the
  // server's 500 when the exchange is dropped unanswered (e.g. CORS headers, which a browser
  // needs on errors too).
  void add_headers(const HttpHeaders& headers);

 private:
  HttpHeaders added_headers() const;

  std::shared_ptr<Session> session_;
  std::uint64_t serial_;  // which request of the connection this is
  mutable std::mutex mutex_;
  HttpHeaders added_;  // add_headers(), under mutex_
};

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (see HttpServer::port)
  int io_threads = 2;
  std::size_t max_header_bytes = 16 * 1024;
  std::size_t max_body_bytes = 4 * 1024 * 1024;
  // A keep-alive connection waiting for the first byte of its next request.
  std::chrono::milliseconds idle_timeout{std::chrono::seconds(60)};
  // A request's whole header, from its first byte (from accept on a new connection).
  std::chrono::milliseconds header_timeout{std::chrono::seconds(10)};
  std::chrono::milliseconds read_timeout{std::chrono::seconds(30)};  // a request's whole body
  std::chrono::milliseconds write_timeout{std::chrono::seconds(60)}; // one write to a stalled client
  int max_connections = 1024;
  // Connections of one client address at most; -1: a quarter of max_connections for every
  // address but loopback ones; 0: no cap.
  int max_connections_per_client = -1;
  // Connections beyond the caps that may still make one probe request (GET/HEAD of
  // probe_paths), each within reserve_timeout; beyond the reserve, 503 at once.
  int reserve_connections = 64;
  std::chrono::milliseconds reserve_timeout{std::chrono::seconds(2)};
  std::vector<std::string> probe_paths{"/health", "/ready"};
  std::size_t max_pending_write_bytes = 8 * 1024 * 1024;  // unsent bytes of a stream before its client is cut
  std::function<void(const AccessLogEntry&)> access_log;    // called once per request, any thread
};

using HttpHandler = std::function<void(HttpRequest, std::shared_ptr<HttpExchange>)>;

struct HttpServerStats {
  int open_connections = 0;    // the reserve's included
  int requests_in_flight = 0;  // read and not yet fully answered
  std::uint64_t connections_total = 0;
  std::uint64_t connections_rejected = 0;  // 503: every candidate for eviction busy (beyond the reserve, or a
                                           // non-probe request in it), or out of file descriptors
  std::uint64_t connections_evicted = 0;   // closed to give their slot to a newer connection
  std::uint64_t connections_reserve = 0;   // admitted to the reserve beyond the caps
  std::uint64_t header_timeouts = 0;       // closed because the header did not arrive within header_timeout
  std::uint64_t accept_errors = 0;         // accept() failures (EMFILE, ENFILE, ENOMEM, ...)
  std::uint64_t requests_total = 0;
};

class HttpServer {
 public:
  HttpServer(HttpServerOptions options, HttpHandler handler);
  ~HttpServer();  // stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens (throws kiln::Error naming host:port on failure), starts the I/O threads.
  void start();
  int port() const;  // the bound port (useful with port 0)

  // Graceful shutdown, first half: closes the listening socket and idle keep-alive connections;
  // connections with a request in flight close after their response.
  void stop_accepting();
  bool draining() const;
  // Waits until no request is in flight or the timeout passes; true when none is.
  bool wait_idle(std::chrono::milliseconds timeout);
  // Closes every connection and joins the I/O threads.
  void stop();

  HttpServerStats stats() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// "HTTP/1.1 <status> <reason>" reason phrases for the codes kiln sends.
const char* http_reason(int status);

}  // namespace kiln::serve
