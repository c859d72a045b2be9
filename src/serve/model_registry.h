#pragma once
// The models a server offers, by name: each loaded on first use (a request for a model that is
// loading waits for it), unloaded when idle longer than a TTL, and evicted least recently used
// first when loading another would exceed the memory budget. A model in use (a lease is held)
// is never unloaded.
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "serve/api_error.h"
#include "serve/served_model.h"

namespace kiln::serve {

struct ModelSpec {
  std::string name;
  std::string path;
  bool preload = false;  // load at startup (preload_all) instead of on first use
};

struct ModelLoader {
  std::function<std::size_t(const ModelSpec&)> estimate_bytes;           // before loading, for the budget
  std::function<std::shared_ptr<ServedModel>(const ModelSpec&)> load;   // throws kiln::Error
};

// What happened to a model, for the server's log (RegistryOptions::on_event).
struct ModelEvent {
  enum class Kind { loading, loaded, load_failed, unloaded };
  Kind kind = Kind::loading;
  std::string name, path;
  double seconds = 0;                  // loaded, load_failed: how long the load took
  const ServedModel* model = nullptr;  // loaded: the model, alive during the call
  std::string error;                   // load_failed: the loader's own message (it may quote the file)
  double retry_in_seconds = 0;         // load_failed: until the next attempt
  std::string reason;                  // unloaded: "idle" (the TTL) or "memory_budget" (room for another)
};

struct RegistryOptions {
  std::chrono::milliseconds idle_ttl{0};  // 0: never unload for idleness
  std::size_t memory_budget = 0;          // bytes; 0: no budget
  // After a failed load, requests for the model are refused (503, Retry-After) for this long,
  // doubled after each further failure up to a minute, instead of reading the file again each time.
  std::chrono::milliseconds load_retry_backoff{1000};
  // Told of every load (start, success, failure) and unload, on the thread that does it, outside
  // the registry's lock; must not call back into the registry. Exceptions are swallowed.
  std::function<void(const ModelEvent&)> on_event;
};

struct ModelStatus {
  std::string name, path;
  bool loaded = false, loading = false;
  int active = 0;                 // leases held (requests in flight)
  std::size_t memory_bytes = 0;   // when loaded
  double idle_seconds = 0;        // since the last lease was returned
  std::uint64_t loads = 0, unloads = 0;
  std::string last_error;         // of the last failed load (for the server's log, not for clients)
  int failed_loads = 0;           // failed loads in a row
  std::uint64_t load_failures = 0;  // failed loads in all
  double load_seconds = 0;        // how long the last successful load took (0 before one)
  std::int64_t parameters = 0;    // when loaded: the model's parameters and weight bytes
  std::size_t weight_bytes = 0;
};

class ModelRegistry {
 public:
  ModelRegistry(std::vector<ModelSpec> specs, ModelLoader loader, RegistryOptions options);
  ~ModelRegistry();  // stops the sweeper, unloads everything
  ModelRegistry(const ModelRegistry&) = delete;
  ModelRegistry& operator=(const ModelRegistry&) = delete;

  bool has(const std::string& name) const;
  std::vector<std::string> names() const;
  const std::string& default_name() const;  // the first model

  // A lease on the loaded model: the model stays loaded, and alive, while any copy of the
  // pointer lives (the lease owns a reference; when the model was unloaded meanwhile, the last
  // lease hands it back to the registry, which destroys it on a thread of its own choosing:
  // never on the engine thread that often returns the last lease).
  // Loads it if needed (other callers wait for that load). Throws ApiError: 404 model_not_found
  // for an unknown name, 503 when the memory budget cannot make room because the other models
  // are busy, 500 when loading fails.
  std::shared_ptr<ServedModel> acquire(const std::string& name);
  // The loaded model without loading it, or nullptr (for stats and drain). Holds it like a lease
  // but does not count as a use: looking at a model does not keep it from its idle TTL.
  std::shared_ptr<ServedModel> acquire_if_loaded(const std::string& name);

  // Loads every model marked preload, in order (errors propagate).
  void preload_all();
  // Unloads idle models past the TTL; returns how many. Called by the sweeper thread.
  int unload_idle();
  // Runs unload_idle() every `period` on a thread of its own until destruction.
  void start_sweeper(std::chrono::milliseconds period);
  // Unloads every model: waits until every lease has been returned (the caller has stopped
  // whatever holds them: the HTTP server, the API threads, the engines' requests), then destroys
  // the models on the calling thread.
  void unload_all();

  std::vector<ModelStatus> status() const;
  std::size_t loaded_bytes() const;
  std::size_t memory_budget() const { return options_.memory_budget; }
  bool all_preloaded() const;  // true once every preload model has been loaded once

 private:
  struct Entry {
    ModelSpec spec;
    std::shared_ptr<ServedModel> model;
    bool loading = false;
    int active = 0;
    std::chrono::steady_clock::time_point last_used;
    std::uint64_t load_generation = 0;  // bumped when a load ends, success or not
    std::string last_error;          // the failed load's own message: for the server's log only
    int failed_loads = 0;             // in a row; 0 after a load succeeds
    std::uint64_t load_failures = 0;  // in all
    double load_seconds = 0;          // of the last successful load
    std::chrono::steady_clock::time_point retry_after;  // no load before this after a failure
    std::uint64_t loads = 0, unloads = 0;
    std::size_t bytes = 0;
  };
  Entry* find(const std::string& name);
  // The error a request for a model that failed to load gets: it names the model only (the
  // loader's message can quote the file's path and bytes), with the wait until the next attempt.
  ApiError load_failed_error(const Entry& e) const;
  // Records a failed load (mu_ held): the message for the log, the backoff before the next try;
  // returns the event to report once the lock is released.
  ModelEvent record_failed_load(Entry& e, const std::string& error, double seconds);
  void report(const ModelEvent& event) const;  // to on_event, without the lock
  const Entry* find(const std::string& name) const;
  std::shared_ptr<ServedModel> lease(Entry& e, bool touch);  // mu_ held; touch: counts as a use for the TTL
  // Returns a lease; `owner` is the lease's reference to the model.
  void release(Entry* e, bool touch, std::shared_ptr<ServedModel> owner);

  ModelLoader loader_;
  RegistryOptions options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::list<Entry> entries_;       // list: leases point at entries
  std::size_t loaded_bytes_ = 0;   // loaded models + loads in progress
  // Models unloaded while leased (only unload_all does that), handed back by their leases:
  // destroyed by unload_all on its thread, not on the thread that returned the lease.
  std::vector<std::shared_ptr<ServedModel>> retired_;
  bool preloaded_ = false;

  std::mutex sweeper_mu_;
  std::condition_variable sweeper_cv_;
  bool stopping_ = false;
  std::thread sweeper_;
};

}  // namespace kiln::serve
