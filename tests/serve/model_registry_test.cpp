// The model registry with a counting fake loader (no weights): lazy loading, one load for many
// waiters, leases, idle TTL, the memory budget's least-recently-used eviction, load failures.
#include "serve/model_registry.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "serve/api_error.h"

namespace kiln::serve {
namespace {

using namespace std::chrono_literals;

struct FakeLoader {
  std::map<std::string, std::size_t> sizes;  // by path
  std::atomic<int> loads{0};
  std::atomic<int> attempts{0};  // loads tried, failed ones included
  std::atomic<bool> fail_next{false};
  std::chrono::milliseconds delay{0};
  std::weak_ptr<ServedModel> last_loaded;  // to see when the registry's model is destroyed

  ModelLoader loader() {
    ModelLoader l;
    l.estimate_bytes = [this](const ModelSpec& s) { return sizes.at(s.path); };
    l.load = [this](const ModelSpec& s) {
      std::this_thread::sleep_for(delay);
      attempts.fetch_add(1);
      if (fail_next.exchange(false)) throw Error(s.path + ": broken file");
      loads.fetch_add(1);
      auto m = std::make_shared<ServedModel>();
      m->name = s.name;
      m->path = s.path;
      m->memory_bytes = sizes.at(s.path);
      last_loaded = m;
      return m;
    };
    return l;
  }
};

std::vector<ModelSpec> three() { return {{"a", "a.gguf", false}, {"b", "b.gguf", false}, {"c", "c.gguf", false}}; }

TEST(ModelRegistry, LoadsOnFirstUseAndReusesTheModel) {
  FakeLoader f;
  f.sizes = {{"a.gguf", 100}, {"b.gguf", 100}, {"c.gguf", 100}};
  ModelRegistry r(three(), f.loader(), RegistryOptions{});
  EXPECT_EQ(r.default_name(), "a");
  EXPECT_EQ(f.loads.load(), 0);
  EXPECT_EQ(r.acquire_if_loaded("b"), nullptr);
  auto b1 = r.acquire("b");
  auto b2 = r.acquire("b");
  EXPECT_EQ(f.loads.load(), 1);
  EXPECT_EQ(b1.get(), b2.get());
  EXPECT_EQ(b1->name, "b");
  EXPECT_EQ(r.loaded_bytes(), 100u);
  auto st = r.status();
  EXPECT_TRUE(st[1].loaded);
  EXPECT_EQ(st[1].active, 2);
  b1.reset();
  b2.reset();
  EXPECT_EQ(r.status()[1].active, 0);
}

// Shutdown unloads every model; a request still holding a lease (one being tokenized, say) must
// keep using its model: unload_all waits for the lease, and the model lives until then.
TEST(ModelRegistry, UnloadAllWaitsForLeasesAndLeasedModelsStayAlive) {
  FakeLoader f;
  f.sizes = {{"a.gguf", 100}, {"b.gguf", 100}, {"c.gguf", 100}};
  ModelRegistry r(three(), f.loader(), RegistryOptions{});
  auto lease = r.acquire("a");
  const std::weak_ptr<ServedModel> model = f.last_loaded;
  std::atomic<bool> unloaded{false};
  std::thread shutdown([&] {
    r.unload_all();
    unloaded = true;
  });
  // unload_all takes the model out of the registry at once, then waits for the lease.
  for (int i = 0; i < 5000 && r.status()[0].loaded; ++i) std::this_thread::sleep_for(1ms);
  EXPECT_FALSE(r.status()[0].loaded);
  EXPECT_EQ(r.loaded_bytes(), 0u);
  EXPECT_FALSE(unloaded.load());
  ASSERT_FALSE(model.expired());
  EXPECT_EQ(lease->name, "a");
  lease.reset();
  shutdown.join();
  EXPECT_TRUE(unloaded.load());
  EXPECT_TRUE(model.expired());
}

TEST(ModelRegistry, UnknownNameIs404NamingTheModel) {
  FakeLoader f;
  f.sizes = {{"a.gguf", 1}, {"b.gguf", 1}, {"c.gguf", 1}};
  ModelRegistry r(three(), f.loader(), RegistryOptions{});
  try {
    r.acquire("gpt-4");
    FAIL();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 404);
    EXPECT_EQ(e.code, "model_not_found");
    EXPECT_NE(std::string(e.what()).find("gpt-4"), std::string::npos);
  }
}

TEST(ModelRegistry, ConcurrentRequestsWaitForOneLoad) {
  FakeLoader f;
  f.sizes = {{"a.gguf", 1}, {"b.gguf", 1}, {"c.gguf", 1}};
  f.delay = 100ms;
  ModelRegistry r(three(), f.loader(), RegistryOptions{});
  std::vector<std::thread> ts;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i)
    ts.emplace_back([&] {
      if (r.acquire("c")) ok.fetch_add(1);
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok.load(), 8);
  EXPECT_EQ(f.loads.load(), 1);
}

TEST(ModelRegistry, IdleModelsUnloadAfterTheTtlButNotWhileLeased) {
  FakeLoader f;
  f.sizes = {{"a.gguf", 10}, {"b.gguf", 10}, {"c.gguf", 10}};
  RegistryOptions o;
  o.idle_ttl = 50ms;
  ModelRegistry r(three(), f.loader(), o);
  auto a = r.acquire("a");
  r.acquire("b");  // returned at once
  std::this_thread::sleep_for(80ms);
  EXPECT_EQ(r.unload_idle(), 1);  // b only: a is leased
  EXPECT_NE(r.acquire_if_loaded("a"), nullptr);
  EXPECT_EQ(r.acquire_if_loaded("b"), nullptr);
  a.reset();
  std::this_thread::sleep_for(80ms);
  EXPECT_EQ(r.unload_idle(), 1);
  EXPECT_EQ(r.loaded_bytes(), 0u);
  // The sweeper does the same on its own.
  r.acquire("c");
  r.start_sweeper(10ms);
  for (int i = 0; i < 100 && r.status()[2].loaded; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(r.status()[2].loaded, false);
  EXPECT_EQ(r.status()[2].unloads, 1u);
}

TEST(ModelRegistry, BudgetEvictsTheLeastRecentlyUsedIdleModel) {
  FakeLoader f;
  f.sizes = {{"a.gguf", 40}, {"b.gguf", 40}, {"c.gguf", 40}};
  RegistryOptions o;
  o.memory_budget = 100;
  ModelRegistry r(three(), f.loader(), o);
  r.acquire("a");
  std::this_thread::sleep_for(5ms);
  r.acquire("b");
  std::this_thread::sleep_for(5ms);
  r.acquire("a");  // a is now the most recently used
  r.acquire("c");  // 120 > 100: b goes
  EXPECT_NE(r.acquire_if_loaded("a"), nullptr);
  EXPECT_EQ(r.acquire_if_loaded("b"), nullptr);
  EXPECT_NE(r.acquire_if_loaded("c"), nullptr);
  EXPECT_EQ(r.loaded_bytes(), 80u);
}

TEST(ModelRegistry, BudgetNeverEvictsABusyModel) {
  FakeLoader f;
  f.sizes = {{"a.gguf", 60}, {"b.gguf", 60}, {"c.gguf", 200}};
  RegistryOptions o;
  o.memory_budget = 100;
  ModelRegistry r(three(), f.loader(), o);
  auto a = r.acquire("a");
  try {
    r.acquire("b");
    FAIL();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 503);
    ASSERT_FALSE(e.headers.empty());
    EXPECT_EQ(e.headers[0].first, "Retry-After");
  }
  try {
    r.acquire("c");  // larger than the whole budget
    FAIL();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 503);
    EXPECT_EQ(e.code, "memory_budget_exceeded");
  }
  a.reset();
  EXPECT_NE(r.acquire("b"), nullptr);  // a was idle now, and evicted
  EXPECT_EQ(r.acquire_if_loaded("a"), nullptr);
}

// A model that fails to load: the client learns which model and when to retry, not the loader's
// message (it can quote the file's path and bytes); the failure is recorded for the log and
// /stats, and the file is not read again until the backoff has passed.
TEST(ModelRegistry, FailedLoadIsReportedWithoutItsDetailAndRetriedAfterABackoff) {
  FakeLoader f;
  f.sizes = {{"a.gguf", 1}, {"b.gguf", 1}, {"c.gguf", 1}};
  RegistryOptions o;
  o.load_retry_backoff = 300ms;
  ModelRegistry r(three(), f.loader(), o);
  f.fail_next = true;
  try {
    r.acquire("a");
    FAIL();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 503);
    EXPECT_EQ(e.code, "model_load_failed");
    const std::string message = e.what();
    EXPECT_NE(message.find("'a'"), std::string::npos) << message;
    EXPECT_EQ(message.find("broken file"), std::string::npos) << message;
    EXPECT_EQ(message.find("a.gguf"), std::string::npos) << message;
  }
  EXPECT_EQ(r.status()[0].last_error, "a.gguf: broken file");
  EXPECT_EQ(r.loaded_bytes(), 0u);
  // Within the backoff: refused again without touching the file (the next load would succeed).
  const int attempts = f.attempts.load();
  EXPECT_THROW(r.acquire("a"), ApiError);
  EXPECT_EQ(f.attempts.load(), attempts);
  std::this_thread::sleep_for(400ms);
  EXPECT_NE(r.acquire("a"), nullptr);
  EXPECT_EQ(f.attempts.load(), attempts + 1);
  EXPECT_TRUE(r.status()[0].last_error.empty());
}

// Every load, failed load and unload is told to on_event (for the server's log), with the
// loader's own message for a failure and why a model was unloaded.
TEST(ModelRegistry, LoadsFailuresAndUnloadsAreReportedAsEvents) {
  FakeLoader f;
  f.sizes = {{"a.gguf", 40}, {"b.gguf", 40}, {"c.gguf", 40}};
  f.delay = 5ms;
  std::mutex mu;
  std::vector<ModelEvent> events;
  RegistryOptions o;
  o.memory_budget = 100;
  o.idle_ttl = 20ms;
  o.load_retry_backoff = 1ms;
  o.on_event = [&](const ModelEvent& e) {
    std::lock_guard lock(mu);
    events.push_back(e);
    if (e.kind == ModelEvent::Kind::loaded) {
      EXPECT_NE(e.model, nullptr);
    }
  };
  ModelRegistry r(three(), f.loader(), o);
  f.fail_next = true;
  EXPECT_THROW(r.acquire("a"), ApiError);
  std::this_thread::sleep_for(5ms);
  r.acquire("a");
  r.acquire("b");
  r.acquire("c");  // 120 > 100: a, the least recently used, goes
  std::this_thread::sleep_for(40ms);
  EXPECT_EQ(r.unload_idle(), 2);
  std::lock_guard lock(mu);
  using K = ModelEvent::Kind;
  const std::vector<std::pair<K, std::string>> want = {{K::loading, "a"},  {K::load_failed, "a"}, {K::loading, "a"},
                                                       {K::loaded, "a"},   {K::loading, "b"},     {K::loaded, "b"},
                                                       {K::unloaded, "a"}, {K::loading, "c"},     {K::loaded, "c"},
                                                       {K::unloaded, "b"}, {K::unloaded, "c"}};
  ASSERT_EQ(events.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(events[i].kind, want[i].first) << i;
    EXPECT_EQ(events[i].name, want[i].second) << i;
    EXPECT_EQ(events[i].path, want[i].second + ".gguf") << i;
  }
  EXPECT_EQ(events[1].error, "a.gguf: broken file");
  EXPECT_GT(events[1].retry_in_seconds, 0);
  EXPECT_GE(events[3].seconds, 0.004);  // the loader's 5 ms
  EXPECT_EQ(events[6].reason, "memory_budget");
  EXPECT_EQ(events[9].reason, "idle");
  EXPECT_EQ(events[10].reason, "idle");
}

TEST(ModelRegistry, PreloadLoadsMarkedModels) {
  FakeLoader f;
  f.sizes = {{"a.gguf", 1}, {"b.gguf", 1}};
  ModelRegistry r({{"a", "a.gguf", true}, {"b", "b.gguf", false}}, f.loader(), RegistryOptions{});
  EXPECT_FALSE(r.all_preloaded());
  r.preload_all();
  EXPECT_TRUE(r.all_preloaded());
  EXPECT_NE(r.acquire_if_loaded("a"), nullptr);
  EXPECT_EQ(r.acquire_if_loaded("b"), nullptr);
}

TEST(ModelRegistry, DuplicateOrMissingModelsAreErrors) {
  FakeLoader f;
  EXPECT_THROW(ModelRegistry({}, f.loader(), RegistryOptions{}), Error);
  EXPECT_THROW(ModelRegistry({{"a", "x", false}, {"a", "y", false}}, f.loader(), RegistryOptions{}), Error);
}

}  // namespace
}  // namespace kiln::serve
