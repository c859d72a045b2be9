// The HTTP server on real sockets, with handlers written in the test: keep-alive, limits,
// timeouts, the connection cap (eviction, the per-client cap, the probe reserve), slowloris
// clients, request ids, chunked streams, disconnect detection, drain, and hundreds of open
// streams on two I/O threads.
#include "serve/http_server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "http_test_client.h"

namespace kiln::serve {
namespace {

using test::TestClient;
using namespace std::chrono_literals;

// Holds the exchanges of requests the test wants to answer later.
struct Parked {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::shared_ptr<HttpExchange>> exchanges;
  std::atomic<int> closed{0};

  void add(std::shared_ptr<HttpExchange> ex) {
    std::lock_guard lock(mu);
    exchanges.push_back(std::move(ex));
    cv.notify_all();
  }
  bool wait_for(std::size_t n, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, timeout, [&] { return exchanges.size() >= n; });
  }
};

// /echo answers with the body; /id with the request's id; /health with "ok"; /noted answers
// "12345" and notes what an API would for the access log; /park keeps the exchange; /stream starts a stream and parks
// it; /empty answers 204. A request with X-Add-Header has its value added to every answer as X-Added.
HttpHandler test_handler(Parked& parked) {
  return [&parked](HttpRequest req, std::shared_ptr<HttpExchange> ex) {
    if (const std::string* added = req.header("x-add-header")) ex->add_headers({{"X-Added", *added}});
    if (req.path == "/echo") {
      ex->respond({200, "text/plain", req.method + " " + req.body, {{"X-Test", "1"}}});
    } else if (req.path == "/id") {
      ex->respond({200, "text/plain", req.id, {}});
    } else if (req.path == "/health") {
      ex->respond({200, "text/plain", "ok", {}});
    } else if (req.path == "/park") {
      ex->on_close([&parked] { parked.closed.fetch_add(1); });
      parked.add(ex);
    } else if (req.path == "/stream") {
      ex->begin_stream(200, "text/event-stream");
      ex->on_close([&parked] { parked.closed.fetch_add(1); });
      parked.add(ex);
    } else if (req.path == "/noted") {
      RequestNote note;
      note.endpoint = "/noted";
      note.model = "m";
      note.prompt_tokens = 3;
      note.finish_reasons = {"stop"};
      ex->note(std::move(note));
      ex->respond({200, "text/plain", "12345", {}});
    } else if (req.path == "/empty") {
      ex->respond({204, "", "", {}});
    } else if (req.path == "/drop") {
      // No answer at all: the server must answer 500 for it.
    } else {
      ex->respond({404, "application/json", "{}", {}});
    }
  };
}

struct ServerFixture {
  Parked parked;
  std::vector<AccessLogEntry> log;
  std::mutex log_mu;
  std::unique_ptr<HttpServer> server;  // last: stopped before the log it writes to goes away

  explicit ServerFixture(HttpServerOptions o = {}) {
    o.port = 0;
    o.access_log = [this](const AccessLogEntry& e) {
      std::lock_guard lock(log_mu);
      log.push_back(e);
    };
    server = std::make_unique<HttpServer>(o, test_handler(parked));
    server->start();
  }
  int port() const { return server->port(); }
};

TEST(HttpServer, KeepAliveServesSeveralRequestsOnOneConnection) {
  ServerFixture f;
  TestClient c(f.port());
  ASSERT_TRUE(c.connected());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(c.send(test::http_post("/echo", "body" + std::to_string(i))));
    auto r = c.read_response();
    ASSERT_TRUE(r.ok);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "POST body" + std::to_string(i));
    EXPECT_EQ(r.headers["connection"], "keep-alive");
    EXPECT_EQ(r.headers["x-test"], "1");
  }
  EXPECT_EQ(f.server->stats().open_connections, 1);
  EXPECT_EQ(f.server->stats().requests_total, 3u);
}

TEST(HttpServer, PipelinedRequestsAreAnsweredInOrder) {
  ServerFixture f;
  TestClient c(f.port());
  ASSERT_TRUE(c.send(test::http_post("/echo", "a") + test::http_post("/echo", "b")));
  auto a = c.read_response(), b = c.read_response();
  EXPECT_EQ(a.body, "POST a");
  EXPECT_EQ(b.body, "POST b");
}

TEST(HttpServer, ConnectionCloseIsHonoured) {
  ServerFixture f;
  TestClient c(f.port());
  ASSERT_TRUE(c.send(test::http_post("/echo", "x", "Connection: close\r\n")));
  auto r = c.read_response();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["connection"], "close");
  EXPECT_TRUE(c.wait_closed(2000));
}

TEST(HttpServer, BodyOverTheLimitIs413) {
  HttpServerOptions o;
  o.max_body_bytes = 1000;
  ServerFixture f(o);
  {
    TestClient c(f.port());
    ASSERT_TRUE(c.send(test::http_post("/echo", std::string(1001, 'x'))));
    auto r = c.read_response();
    EXPECT_EQ(r.status, 413);
    EXPECT_NE(r.body.find("\"error\""), std::string::npos) << r.body;
    EXPECT_TRUE(c.wait_closed(3000));
  }
  {
    // Chunked bodies have no length up front; the limit applies while reading.
    TestClient c(f.port());
    std::string req = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 3; ++i) req += "190\r\n" + std::string(400, 'y') + "\r\n";
    req += "0\r\n\r\n";
    ASSERT_TRUE(c.send(req));
    EXPECT_EQ(c.read_response().status, 413);
  }
  {
    TestClient c(f.port());
    ASSERT_TRUE(c.send(test::http_post("/echo", std::string(1000, 'x'))));
    EXPECT_EQ(c.read_response().status, 200);
  }
}

TEST(HttpServer, HeadersOverTheLimitAre431) {
  HttpServerOptions o;
  o.max_header_bytes = 2048;
  ServerFixture f(o);
  TestClient c(f.port());
  ASSERT_TRUE(c.send(test::http_get("/echo", "X-Big: " + std::string(4096, 'h') + "\r\n")));
  EXPECT_EQ(c.read_response().status, 431);
}

TEST(HttpServer, MalformedRequestIs400) {
  ServerFixture f;
  TestClient c(f.port());
  ASSERT_TRUE(c.send("THIS IS NOT HTTP\r\n\r\n"));
  EXPECT_EQ(c.read_response().status, 400);
}

TEST(HttpServer, IdleKeepAliveConnectionsAreClosed) {
  HttpServerOptions o;
  o.idle_timeout = 200ms;
  ServerFixture f(o);
  TestClient c(f.port());
  ASSERT_TRUE(c.send(test::http_get("/echo")));
  EXPECT_EQ(c.read_response().status, 200);
  // Closed by the 200 ms idle timeout; the wait is long so that a busy machine cannot fail it, and
  // still far below the 60 s default that a server ignoring the option would use.
  EXPECT_TRUE(c.wait_closed(15000));
}

TEST(HttpServer, SlowBodyTimesOutWith408) {
  HttpServerOptions o;
  o.read_timeout = 200ms;
  ServerFixture f(o);
  TestClient c(f.port());
  ASSERT_TRUE(c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab"));
  auto r = c.read_response(3000);
  EXPECT_EQ(r.status, 408);
}

// Waits until the server counts `n` open connections.
bool wait_open(HttpServer& server, int n, std::chrono::milliseconds timeout = 5s) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (server.stats().open_connections != n)
    if (std::chrono::steady_clock::now() > until) return false;
    else std::this_thread::sleep_for(5ms);
  return true;
}

// Waits until the server counts `n` requests in flight. A client has its answer just before the
// server learns that the last byte is out and counts the request done (and its connection idle).
bool wait_in_flight(HttpServer& server, int n, std::chrono::milliseconds timeout = 5s) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (server.stats().requests_in_flight != n)
    if (std::chrono::steady_clock::now() > until) return false;
    else std::this_thread::sleep_for(2ms);
  return true;
}

TEST(HttpServer, ANewConnectionTakesTheSlotOfAnIdleOneOrGets503WhenAllAreBusy) {
  HttpServerOptions o;
  o.max_connections = 2;
  o.max_connections_per_client = 0;
  o.reserve_connections = 0;
  ServerFixture f(o);
  TestClient a(f.port()), b(f.port());
  ASSERT_TRUE(a.send(test::http_get("/echo")));
  EXPECT_EQ(a.read_response().status, 200);
  // A client reads its answer before the server counts the request done and lists the connection
  // as idle again: wait for that, so that a is listed before b whatever the scheduler does.
  ASSERT_TRUE(wait_in_flight(*f.server, 0));
  ASSERT_TRUE(b.send(test::http_get("/echo")));
  EXPECT_EQ(b.read_response().status, 200);
  ASSERT_TRUE(wait_in_flight(*f.server, 0));
  // The table is full of idle keep-alive connections: the one idle longest (a) makes room.
  TestClient c(f.port());
  ASSERT_TRUE(c.send(test::http_get("/echo")));
  EXPECT_EQ(c.read_response().status, 200);
  EXPECT_TRUE(a.wait_closed(2000));
  EXPECT_EQ(f.server->stats().connections_evicted, 1u);
  // Every connection busy with a request: nothing to evict, so 503.
  ASSERT_TRUE(b.send(test::http_post("/park", "{}")));
  ASSERT_TRUE(c.send(test::http_post("/park", "{}")));
  ASSERT_TRUE(f.parked.wait_for(2));
  TestClient d(f.port());
  auto r = d.read_response();
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.headers["retry-after"], "1");
  EXPECT_EQ(f.server->stats().connections_rejected, 1u);
  // Once a request is answered, its connection can make room again.
  f.parked.exchanges[0]->respond({200, "text/plain", "done", {}});
  ASSERT_TRUE(wait_in_flight(*f.server, 1));
  TestClient e(f.port());
  ASSERT_TRUE(e.send(test::http_get("/echo")));
  EXPECT_EQ(e.read_response().status, 200);
}

TEST(HttpServer, TricklingHeadersDoNotLockOutOtherClients) {
  HttpServerOptions o;
  o.max_connections = 8;
  o.max_connections_per_client = 0;  // the legitimate client shares the attacker's address here anyway
  o.header_timeout = 1500ms;
  ServerFixture f(o);
  test::Trickler slow(f.port(), 8, 200ms);
  ASSERT_TRUE(wait_open(*f.server, 8));
  // The table is full of connections still reading their header: a new client takes the slot of
  // the one that has waited longest, and is answered at once.
  const auto t0 = std::chrono::steady_clock::now();
  TestClient c(f.port());
  ASSERT_TRUE(c.send(test::http_get("/echo")));
  auto r = c.read_response(2000);
  EXPECT_EQ(r.status, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  EXPECT_EQ(f.server->stats().connections_evicted, 1u);
  // The header deadline is armed once, not per byte: a connection that keeps sending lines is
  // still cut when it passes (the last one connected was not evicted).
  auto cut = slow[7].read_response(5000);
  EXPECT_EQ(cut.status, 408);
  EXPECT_NE(cut.body.find("request_timeout"), std::string::npos) << cut.body;
  EXPECT_GE(f.server->stats().header_timeouts, 1u);
  // The client that got in still has its connection.
  ASSERT_TRUE(c.send(test::http_get("/echo")));
  EXPECT_EQ(c.read_response(2000).status, 200);
}

TEST(HttpServer, ASilentConnectionGetsTheHeaderTimeoutAnIdleKeepAliveOneTheIdleTimeout) {
  HttpServerOptions o;
  o.header_timeout = 300ms;  // idle_timeout stays 60 s
  ServerFixture f(o);
  // Connected, never a byte: closed at the header deadline, without an answer.
  TestClient silent(f.port());
  EXPECT_TRUE(silent.wait_closed(5000));
  EXPECT_TRUE(silent.pending().empty()) << silent.pending();
  EXPECT_EQ(f.server->stats().header_timeouts, 1u);
  // Between requests a keep-alive connection waits under the idle timeout, not the header one.
  TestClient c(f.port());
  ASSERT_TRUE(c.send(test::http_get("/echo")));
  EXPECT_EQ(c.read_response().status, 200);
  std::this_thread::sleep_for(900ms);
  ASSERT_TRUE(c.send(test::http_get("/echo")));
  EXPECT_EQ(c.read_response().status, 200);
  EXPECT_EQ(f.server->stats().header_timeouts, 1u);
}

TEST(HttpServer, HealthIsAnsweredWhileEveryConnectionIsBusy) {
  HttpServerOptions o;
  o.max_connections = 2;
  o.max_connections_per_client = 0;
  o.reserve_connections = 1;
  ServerFixture f(o);
  TestClient a(f.port()), b(f.port());
  ASSERT_TRUE(a.send(test::http_post("/park", "{}")));
  ASSERT_TRUE(b.send(test::http_post("/park", "{}")));
  ASSERT_TRUE(f.parked.wait_for(2));
  {
    // Beyond the cap, in the reserve: a probe is answered, then the connection closes...
    TestClient probe(f.port());
    ASSERT_TRUE(probe.send(test::http_get("/health")));
    auto r = probe.read_response(2000);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "ok");
    EXPECT_EQ(r.headers["connection"], "close");
  }
  ASSERT_TRUE(wait_open(*f.server, 2));  // the probe's place is free again
  {
    // ...anything else is told to come back later.
    TestClient other(f.port());
    ASSERT_TRUE(other.send(test::http_get("/echo")));
    auto r = other.read_response(2000);
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(r.headers["retry-after"], "1");
    EXPECT_NE(r.body.find("server_overloaded"), std::string::npos) << r.body;
  }
  ASSERT_TRUE(wait_open(*f.server, 2));
  // The reserve's one place taken by a connection that sends nothing: the next one gets 503 at
  // once, and the silent one gets it at the reserve's deadline.
  TestClient silent(f.port());
  ASSERT_TRUE(wait_open(*f.server, 3));
  TestClient late(f.port());
  ASSERT_TRUE(late.send(test::http_get("/health")));
  EXPECT_EQ(late.read_response(1000).status, 503);
  EXPECT_EQ(silent.read_response(5000).status, 503);
  EXPECT_EQ(f.server->stats().connections_reserve, 3u);
  EXPECT_EQ(f.server->stats().connections_rejected, 3u);
  // The parked requests were never disturbed.
  f.parked.exchanges[0]->respond({200, "text/plain", "a", {}});
  f.parked.exchanges[1]->respond({200, "text/plain", "b", {}});
  EXPECT_EQ(a.read_response().status, 200);
  EXPECT_EQ(b.read_response().status, 200);
}

TEST(HttpServer, TheDefaultPerClientCapLeavesLoopbackClientsAlone) {
  // The default cap (a quarter of 8: 2) applies to remote addresses only: three busy
  // connections from 127.0.0.1 (a local proxy, a batch job) are all served.
  HttpServerOptions o;
  o.max_connections = 8;
  ServerFixture f(o);
  std::vector<std::unique_ptr<TestClient>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(std::make_unique<TestClient>(f.port()));
    ASSERT_TRUE(clients.back()->send(test::http_post("/park", "{}")));
    ASSERT_TRUE(f.parked.wait_for(static_cast<std::size_t>(i + 1))) << "connection " << i;
  }
  for (std::size_t i = 0; i < 3; ++i) f.parked.exchanges[i]->respond({200, "text/plain", "done", {}});
  for (auto& c : clients) EXPECT_EQ(c->read_response().status, 200);
  EXPECT_EQ(f.server->stats().connections_rejected, 0u);
}

TEST(HttpServer, OneClientAddressMakesRoomOnlyAmongItsOwnConnections) {
  HttpServerOptions o;
  o.max_connections = 8;
  o.max_connections_per_client = 2;
  ServerFixture f(o);
  TestClient a1(f.port()), a2(f.port());
  ASSERT_TRUE(a1.send(test::http_post("/park", "{}")));
  ASSERT_TRUE(f.parked.wait_for(1));
  ASSERT_TRUE(a2.send(test::http_post("/park", "{}")));
  ASSERT_TRUE(f.parked.wait_for(2));
  {
    // 127.0.0.1 is at its cap with both connections busy: refused, though the table has room...
    TestClient a3(f.port());
    ASSERT_TRUE(a3.send(test::http_get("/echo")));
    EXPECT_EQ(a3.read_response(2000).status, 503);
  }
  {
    // ...but its probes are still answered...
    TestClient a4(f.port());
    ASSERT_TRUE(a4.send(test::http_get("/health")));
    EXPECT_EQ(a4.read_response(2000).status, 200);
  }
  {
    // ...and another address is not affected.
    TestClient b(f.port(), "127.0.0.2");
    ASSERT_TRUE(b.connected());
    ASSERT_TRUE(b.send(test::http_get("/echo")));
    EXPECT_EQ(b.read_response(2000).status, 200);
  }
  // a1's request answered, its connection idle: the address's next connection takes its slot.
  f.parked.exchanges[0]->respond({200, "text/plain", "done", {}});
  EXPECT_EQ(a1.read_response().status, 200);
  ASSERT_TRUE(wait_in_flight(*f.server, 1));
  TestClient a5(f.port());
  ASSERT_TRUE(a5.send(test::http_get("/echo")));
  EXPECT_EQ(a5.read_response(2000).status, 200);
  EXPECT_TRUE(a1.wait_closed(2000));
  EXPECT_EQ(f.server->stats().connections_evicted, 1u);
  f.parked.exchanges[1]->respond({200, "text/plain", "done", {}});
  EXPECT_EQ(a2.read_response().status, 200);
}

TEST(HttpServer, StreamsAreChunkedAndEndCleanly) {
  ServerFixture f;
  TestClient c(f.port());
  ASSERT_TRUE(c.send(test::http_get("/stream")));
  ASSERT_TRUE(f.parked.wait_for(1));
  auto ex = f.parked.exchanges[0];
  std::thread producer([ex] {
    for (int i = 0; i < 5; ++i) ex->write("data: " + std::to_string(i) + "\n\n");
    ex->end_stream();
  });
  auto r = c.read_response();
  producer.join();
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.headers["transfer-encoding"], "chunked");
  EXPECT_EQ(r.headers["content-type"], "text/event-stream");
  EXPECT_EQ(r.body, "data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n");
  // The connection stays usable after the stream.
  ASSERT_TRUE(c.send(test::http_get("/echo")));
  EXPECT_EQ(c.read_response().status, 200);
  EXPECT_EQ(f.parked.closed.load(), 0);
}

TEST(HttpServer, ClientDisconnectIsReportedWhileWaitingAndWhileStreaming) {
  ServerFixture f;
  {
    TestClient c(f.port());
    ASSERT_TRUE(c.send(test::http_post("/park", "{}")));
    ASSERT_TRUE(f.parked.wait_for(1));
  }  // closes before any response
  {
    TestClient c(f.port());
    ASSERT_TRUE(c.send(test::http_get("/stream")));
    ASSERT_TRUE(f.parked.wait_for(2));
    f.parked.exchanges[1]->write("data: x\n\n");
    ASSERT_TRUE(c.fill_for(2000));
  }
  for (int i = 0; i < 100 && f.parked.closed.load() < 2; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(f.parked.closed.load(), 2);
  EXPECT_TRUE(f.parked.exchanges[0]->closed());
  // Late answers to a closed connection are ignored, not crashes.
  f.parked.exchanges[0]->respond({200, "text/plain", "late", {}});
  f.parked.exchanges[1]->write("data: late\n\n");
  f.parked.exchanges[1]->end_stream();
  for (int i = 0; i < 100 && f.server->stats().requests_in_flight > 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(f.server->stats().requests_in_flight, 0);
}

TEST(HttpServer, ExchangeDroppedWithoutAnswerGets500) {
  ServerFixture f;
  TestClient c(f.port());
  ASSERT_TRUE(c.send(test::http_get("/drop")));
  EXPECT_EQ(c.read_response().status, 500);
}

// Headers added to an exchange (CORS headers, say) go on its answer whatever form it takes.
TEST(HttpServer, AddedHeadersGoOnResponsesStreamsAndDroppedExchanges) {
  ServerFixture f;
  TestClient c(f.port());
  ASSERT_TRUE(c.send(test::http_get("/echo", "X-Add-Header: a\r\n")));
  test::ClientResponse r = c.read_response();
  EXPECT_EQ(r.headers["x-added"], "a");
  EXPECT_EQ(r.headers["x-test"], "1");
  ASSERT_TRUE(c.send(test::http_get("/drop", "X-Add-Header: b\r\n")));
  r = c.read_response();
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.headers["x-added"], "b");
  ASSERT_TRUE(c.send(test::http_get("/stream", "X-Add-Header: c\r\n")));
  ASSERT_TRUE(f.parked.wait_for(1));
  f.parked.exchanges[0]->end_stream();
  r = c.read_response();
  EXPECT_EQ(r.headers["x-added"], "c");
  EXPECT_EQ(r.headers["content-type"], "text/event-stream");
  // Only the request that asked: the next one on the connection has none.
  ASSERT_TRUE(c.send(test::http_get("/echo")));
  EXPECT_EQ(c.read_response().headers.count("x-added"), 0u);
}

// A 204 has neither a body nor Content-Length, and the connection goes on.
TEST(HttpServer, NoContentHasNoLengthAndKeepsTheConnection) {
  ServerFixture f;
  TestClient c(f.port());
  ASSERT_TRUE(c.send(test::http_get("/empty")));
  test::ClientResponse r = c.read_response();
  EXPECT_EQ(r.status, 204);
  EXPECT_EQ(r.headers.count("content-length"), 0u);
  EXPECT_EQ(r.headers.count("content-type"), 0u);
  ASSERT_TRUE(c.send(test::http_get("/echo")));
  r = c.read_response();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "GET ");
}

TEST(HttpServer, DrainStopsAcceptingAndLetsInFlightRequestsFinish) {
  ServerFixture f;
  TestClient busy(f.port()), idle(f.port());
  ASSERT_TRUE(idle.send(test::http_get("/echo")));
  EXPECT_EQ(idle.read_response().status, 200);
  ASSERT_TRUE(busy.send(test::http_post("/park", "{}")));
  ASSERT_TRUE(f.parked.wait_for(1));

  f.server->stop_accepting();
  EXPECT_TRUE(idle.wait_closed(2000));  // idle keep-alive connections close at once
  TestClient late(f.port());
  EXPECT_FALSE(late.connected() && late.send(test::http_get("/echo")) && late.read_response(500).ok);
  EXPECT_FALSE(f.server->wait_idle(100ms));

  f.parked.exchanges[0]->respond({200, "text/plain", "finished", {}});
  auto r = busy.read_response();
  EXPECT_EQ(r.body, "finished");
  EXPECT_EQ(r.headers["connection"], "close");
  EXPECT_TRUE(f.server->wait_idle(2s));
  EXPECT_TRUE(busy.wait_closed(2000));
}

TEST(HttpServer, HoldsHundredsOfOpenStreamsOnTwoIoThreads) {
  HttpServerOptions o;
  o.io_threads = 2;
  o.max_connections_per_client = 0;  // every test client is 127.0.0.1
  ServerFixture f(o);
  constexpr int kStreams = 300;
  std::vector<std::unique_ptr<TestClient>> clients;
  for (int i = 0; i < kStreams; ++i) {
    clients.push_back(std::make_unique<TestClient>(f.port()));
    ASSERT_TRUE(clients.back()->send(test::http_get("/stream")));
  }
  ASSERT_TRUE(f.parked.wait_for(kStreams, 10s));
  EXPECT_EQ(f.server->stats().open_connections, kStreams);
  EXPECT_EQ(f.server->stats().requests_in_flight, kStreams);
  // Every stream gets its own events while all are open.
  for (int round = 0; round < 3; ++round)
    for (int i = 0; i < kStreams; ++i) f.parked.exchanges[i]->write("data: " + std::to_string(i) + "\n\n");
  for (int i = 0; i < kStreams; ++i) f.parked.exchanges[i]->end_stream();
  for (int i = 0; i < kStreams; ++i) {
    // Exchanges were parked in arrival order, which need not be the connect order: match by content.
    auto r = clients[i]->read_response();
    ASSERT_TRUE(r.ok) << i;
    ASSERT_EQ(r.body.size() % 3, 0u);
    const std::string one = r.body.substr(0, r.body.size() / 3);
    EXPECT_EQ(r.body, one + one + one);
  }
}

TEST(HttpServer, AccessLogHasOneLinePerRequest) {
  ServerFixture f;
  TestClient c(f.port());
  ASSERT_TRUE(c.send(test::http_post("/echo", "x")));
  EXPECT_EQ(c.read_response().status, 200);
  ASSERT_TRUE(c.send(test::http_get("/nope")));
  EXPECT_EQ(c.read_response().status, 404);
  // A line is written once its answer is out, which the server learns just after the client
  // has it.
  for (int i = 0; i < 5000; ++i) {
    {
      std::lock_guard lock(f.log_mu);
      if (f.log.size() >= 2) break;
    }
    std::this_thread::sleep_for(1ms);
  }
  std::lock_guard lock(f.log_mu);
  ASSERT_EQ(f.log.size(), 2u);
  EXPECT_EQ(f.log[0].method, "POST");
  EXPECT_EQ(f.log[0].target, "/echo");
  EXPECT_EQ(f.log[0].status, 200);
  EXPECT_EQ(f.log[1].status, 404);
  EXPECT_GE(f.log[1].seconds, 0);
}

// Each entry says how much went each way, who asked (User-Agent), the path without the query,
// and what the handler noted: a complete answer, a stream (its data without chunk framing), and
// an error the server answers itself before reading the body.
TEST(HttpServer, AccessLogEntryHasSizesAgentPathAndTheHandlersNote) {
  HttpServerOptions o;
  o.max_body_bytes = 100;
  ServerFixture f(o);
  TestClient c(f.port());
  ASSERT_TRUE(c.send(test::http_post("/noted?x=1", "abcdefg", "User-Agent: tester/1.0\r\n")));
  EXPECT_EQ(c.read_response().body, "12345");
  ASSERT_TRUE(c.send(test::http_get("/stream")));
  ASSERT_TRUE(f.parked.wait_for(1));
  f.parked.exchanges[0]->write("data: x\n\n");
  f.parked.exchanges[0]->write("data: yz\n\n");
  f.parked.exchanges[0]->end_stream();
  EXPECT_EQ(c.read_response().body, "data: x\n\ndata: yz\n\n");
  ASSERT_TRUE(c.send(test::http_post("/echo", std::string(101, 'z'))));
  EXPECT_EQ(c.read_response().status, 413);
  for (int i = 0; i < 5000; ++i) {
    {
      std::lock_guard lock(f.log_mu);
      if (f.log.size() >= 3) break;
    }
    std::this_thread::sleep_for(1ms);
  }
  std::lock_guard lock(f.log_mu);
  ASSERT_EQ(f.log.size(), 3u);
  const AccessLogEntry& noted = f.log[0];
  EXPECT_EQ(noted.target, "/noted?x=1");
  EXPECT_EQ(noted.path, "/noted");
  EXPECT_EQ(noted.user_agent, "tester/1.0");
  EXPECT_EQ(noted.version, 11u);
  EXPECT_EQ(noted.request_body_bytes, 7);
  EXPECT_EQ(noted.response_body_bytes, 5);
  EXPECT_EQ(noted.note.endpoint, "/noted");
  EXPECT_EQ(noted.note.model, "m");
  EXPECT_EQ(noted.note.prompt_tokens, 3);
  EXPECT_EQ(noted.note.finish_reasons, std::vector<std::string>{"stop"});
  const AccessLogEntry& stream = f.log[1];
  EXPECT_EQ(stream.request_body_bytes, 0);
  EXPECT_EQ(stream.response_body_bytes, 19);
  EXPECT_EQ(stream.user_agent, "");
  EXPECT_EQ(stream.note.endpoint, "");  // nothing noted: the last request's note is not carried over
  EXPECT_EQ(stream.note.prompt_tokens, -1);
  const AccessLogEntry& refused = f.log[2];
  EXPECT_EQ(refused.status, 413);
  EXPECT_EQ(refused.request_body_bytes, -1);
  EXPECT_GT(refused.response_body_bytes, 0);
}

// A client that reads its whole answer and hangs up at once got all of it: its line must not
// say the client closed first, however soon the server notices the hang-up.
TEST(HttpServer, AClientThatHangsUpAfterItsAnswerIsNotLoggedAsClosed) {
  ServerFixture f;
  constexpr int kRequests = 40;
  for (int i = 0; i < kRequests; ++i) {
    TestClient c(f.port());
    ASSERT_TRUE(c.send(test::http_post("/echo", std::string(static_cast<std::size_t>(1000 * i), 'x'))));
    EXPECT_EQ(c.read_response().status, 200);
  }  // closed here, right after the answer was read
  for (int i = 0; i < 5000; ++i) {
    {
      std::lock_guard lock(f.log_mu);
      if (f.log.size() >= static_cast<std::size_t>(kRequests)) break;
    }
    std::this_thread::sleep_for(1ms);
  }
  std::lock_guard lock(f.log_mu);
  ASSERT_EQ(f.log.size(), static_cast<std::size_t>(kRequests));
  for (const AccessLogEntry& e : f.log) EXPECT_FALSE(e.client_closed) << e.response_body_bytes;
}

bool looks_generated(const std::string& id) {
  return id.size() == 32 && id.find_first_not_of("0123456789abcdef") == std::string::npos;
}

TEST(HttpServer, RequestIdIsEchoedOrGenerated) {
  HttpServerOptions o;
  o.max_body_bytes = 100;
  ServerFixture f(o);
  TestClient c(f.port());
  // The client's own id: echoed, and handed to the handler.
  ASSERT_TRUE(c.send(test::http_get("/id", "X-Request-Id: trace-42/a.b_c\r\n")));
  auto r = c.read_response();
  EXPECT_EQ(r.headers["x-request-id"], "trace-42/a.b_c");
  EXPECT_EQ(r.body, "trace-42/a.b_c");
  // None: a random one, a new one per request.
  ASSERT_TRUE(c.send(test::http_get("/id")));
  auto g1 = c.read_response();
  ASSERT_TRUE(c.send(test::http_get("/id")));
  auto g2 = c.read_response();
  EXPECT_TRUE(looks_generated(g1.headers["x-request-id"])) << g1.headers["x-request-id"];
  EXPECT_EQ(g1.body, g1.headers["x-request-id"]);
  EXPECT_NE(g1.body, g2.body);
  // One that could break a header or a log line, or is too long: replaced.
  for (const std::string& bad : {std::string("two words"), std::string("quo\"te"), std::string("back\\slash"), std::string(129, 'x')}) {
    ASSERT_TRUE(c.send(test::http_get("/id", "X-Request-Id: " + bad + "\r\n")));
    auto b = c.read_response();
    EXPECT_TRUE(looks_generated(b.headers["x-request-id"])) << bad << " -> " << b.headers["x-request-id"];
  }
  ASSERT_TRUE(c.send(test::http_get("/id", "X-Request-Id: " + std::string(128, 'y') + "\r\n")));
  EXPECT_EQ(c.read_response().body, std::string(128, 'y'));
  // A stream's head carries it too.
  ASSERT_TRUE(c.send(test::http_get("/stream", "X-Request-Id: stream-7\r\n")));
  ASSERT_TRUE(f.parked.wait_for(1));
  f.parked.exchanges[0]->write("data: x\n\n");
  f.parked.exchanges[0]->end_stream();
  auto s = c.read_response();
  EXPECT_EQ(s.headers["x-request-id"], "stream-7");
  EXPECT_EQ(s.body, "data: x\n\n");
  // So does an error the server answers itself.
  ASSERT_TRUE(c.send(test::http_post("/echo", std::string(101, 'z'), "X-Request-Id: too-big\r\n")));
  auto e = c.read_response();
  EXPECT_EQ(e.status, 413);
  EXPECT_EQ(e.headers["x-request-id"], "too-big");
  // And the access log has each request's id.
  for (int i = 0; i < 5000; ++i) {
    {
      std::lock_guard lock(f.log_mu);
      if (f.log.size() >= 10) break;
    }
    std::this_thread::sleep_for(1ms);
  }
  std::lock_guard lock(f.log_mu);
  ASSERT_EQ(f.log.size(), 10u);
  EXPECT_EQ(f.log[0].request_id, "trace-42/a.b_c");
  EXPECT_EQ(f.log[1].request_id, g1.body);
  EXPECT_EQ(f.log[8].request_id, "stream-7");
  EXPECT_EQ(f.log[9].request_id, "too-big");
  EXPECT_EQ(f.log[9].status, 413);
}

}  // namespace
}  // namespace kiln::serve
