#include "serve/model_registry.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "serve/api_error.h"

namespace kiln::serve {

using Clock = std::chrono::steady_clock;

ModelRegistry::ModelRegistry(std::vector<ModelSpec> specs, ModelLoader loader, RegistryOptions options)
    : loader_(std::move(loader)), options_(options) {
  if (specs.empty()) fail("serve: no models given (use MODEL, --model name=path or --models-dir DIR)");
  for (auto& s : specs) {
    if (find(s.name) != nullptr) fail("serve: the model name '{}' is given twice", s.name);
    Entry e;
    e.spec = std::move(s);
    e.last_used = Clock::now();
    entries_.push_back(std::move(e));
  }
}

ModelRegistry::~ModelRegistry() {
  {
    std::lock_guard lock(sweeper_mu_);
    stopping_ = true;
  }
  sweeper_cv_.notify_all();
  if (sweeper_.joinable()) sweeper_.join();
  unload_all();
}

ModelRegistry::Entry* ModelRegistry::find(const std::string& name) {
  for (Entry& e : entries_)
    if (e.spec.name == name) return &e;
  return nullptr;
}
const ModelRegistry::Entry* ModelRegistry::find(const std::string& name) const {
  for (const Entry& e : entries_)
    if (e.spec.name == name) return &e;
  return nullptr;
}

bool ModelRegistry::has(const std::string& name) const { return find(name) != nullptr; }

std::vector<std::string> ModelRegistry::names() const {
  std::vector<std::string> out;
  for (const Entry& e : entries_) out.push_back(e.spec.name);
  return out;
}

const std::string& ModelRegistry::default_name() const { return entries_.front().spec.name; }

std::shared_ptr<ServedModel> ModelRegistry::lease(Entry& e, bool touch) {
  ++e.active;
  if (touch) e.last_used = Clock::now();
  // The lease owns a reference, so the model cannot be destroyed under a request that holds it
  // (say, one still tokenizing when the server shuts down). Its deleter returns the reference
  // to the registry instead of dropping it: the last owner destroys the engine, and a lease is
  // often returned on the engine's own thread (its last callback), which cannot join itself.
  std::shared_ptr<ServedModel> owner = e.model;
  ServedModel* model = owner.get();
  return std::shared_ptr<ServedModel>(model, [this, entry = &e, touch, owner = std::move(owner)](ServedModel*) mutable {
    release(entry, touch, std::move(owner));
  });
}

void ModelRegistry::release(Entry* e, bool touch, std::shared_ptr<ServedModel> owner) {
  std::lock_guard lock(mu_);
  --e->active;
  if (touch) e->last_used = Clock::now();
  // Unloaded while leased: keep the reference for a registry thread to destroy.
  if (e->model != owner) retired_.push_back(std::move(owner));
  cv_.notify_all();
}

ModelEvent ModelRegistry::record_failed_load(Entry& e, const std::string& error, double seconds) {
  e.last_error = error;
  ++e.failed_loads;
  ++e.load_failures;
  const auto backoff = std::min<std::chrono::milliseconds>(
      options_.load_retry_backoff * (1LL << std::min(e.failed_loads - 1, 16)), std::chrono::minutes(1));
  e.retry_after = Clock::now() + backoff;
  // The detail goes to the server's log; the client learns which model failed, not why.
  ModelEvent ev;
  ev.kind = ModelEvent::Kind::load_failed;
  ev.name = e.spec.name;
  ev.path = e.spec.path;
  ev.seconds = seconds;
  ev.error = error;
  ev.retry_in_seconds = std::chrono::duration<double>(backoff).count();
  return ev;
}

void ModelRegistry::report(const ModelEvent& event) const {
  if (!options_.on_event) return;
  try {
    options_.on_event(event);
  } catch (...) {
    // The log is a witness: failing to write to it must not change what the registry does.
  }
}

ApiError ModelRegistry::load_failed_error(const Entry& e) const {
  const double wait = std::max(0.0, std::chrono::duration<double>(e.retry_after - Clock::now()).count());
  ApiError err(503, "server_error",
               fmt::format("model '{}' failed to load (the server's log says why); the next attempt is in {:.0f} s",
                           e.spec.name, std::ceil(wait)),
               "model", "model_load_failed");
  err.headers.emplace_back("Retry-After", std::to_string(static_cast<long long>(std::ceil(std::max(wait, 1.0)))));
  return err;
}

std::shared_ptr<ServedModel> ModelRegistry::acquire_if_loaded(const std::string& name) {
  std::lock_guard lock(mu_);
  Entry* e = find(name);
  if (e == nullptr || !e->model) return nullptr;
  return lease(*e, false);  // a look (stats, drain) is not a use: it does not keep the model loaded
}

std::shared_ptr<ServedModel> ModelRegistry::acquire(const std::string& name) {
  std::unique_lock lock(mu_);
  Entry* e = find(name);
  if (e == nullptr) {
    ApiError err(404, "invalid_request_error", fmt::format("The model '{}' does not exist", name), "model", "model_not_found");
    throw err;
  }
  while (e->loading) {
    const std::uint64_t generation = e->load_generation;
    cv_.wait(lock, [&] { return !e->loading; });
    if (!e->model && e->load_generation != generation) throw load_failed_error(*e);
  }
  if (e->model) return lease(*e, true);
  if (e->failed_loads > 0 && Clock::now() < e->retry_after) throw load_failed_error(*e);

  // Make room under the budget: evict idle models, least recently used first.
  // Reading the file's header to size it is the first step of loading: a file that fails here
  // has failed to load.
  std::size_t need = 0;
  try {
    if (loader_.estimate_bytes) need = loader_.estimate_bytes(e->spec);
  } catch (const std::exception& ex) {
    const ModelEvent failed = record_failed_load(*e, ex.what(), 0);
    const ApiError err = load_failed_error(*e);
    lock.unlock();
    report(failed);
    throw err;
  }
  std::vector<std::shared_ptr<ServedModel>> evicted;
  std::vector<ModelEvent> unload_events;
  if (options_.memory_budget > 0) {
    if (need > options_.memory_budget)
      throw ApiError(503, "server_error",
                     fmt::format("model '{}' needs about {} MiB, more than the memory budget of {} MiB", name, need >> 20,
                                 options_.memory_budget >> 20),
                     "model", "memory_budget_exceeded");
    // Choose the victims first (idle models, least recently used first) and unload them only
    // if together they make enough room: a request that cannot be served unloads nothing.
    std::vector<Entry*> victims;
    for (Entry& c : entries_)
      if (c.model && c.active == 0) victims.push_back(&c);
    std::sort(victims.begin(), victims.end(), [](const Entry* a, const Entry* b) { return a->last_used < b->last_used; });
    std::size_t freed = 0;
    std::size_t take = 0;
    while (loaded_bytes_ - freed + need > options_.memory_budget && take < victims.size()) freed += victims[take++]->bytes;
    if (loaded_bytes_ - freed + need > options_.memory_budget) {
      ApiError err(503, "server_error",
                   fmt::format("no room to load model '{}' under the memory budget: the loaded models are busy", name), "model",
                   "memory_budget_busy");
      err.headers.emplace_back("Retry-After", "5");
      throw err;
    }
    for (std::size_t i = 0; i < take; ++i) {
      Entry* victim = victims[i];
      ModelEvent ev;
      ev.kind = ModelEvent::Kind::unloaded;
      ev.name = victim->spec.name;
      ev.path = victim->spec.path;
      ev.reason = "memory_budget";
      unload_events.push_back(std::move(ev));
      loaded_bytes_ -= victim->bytes;
      victim->bytes = 0;
      ++victim->unloads;
      evicted.push_back(std::move(victim->model));
    }
  }
  e->loading = true;
  loaded_bytes_ += need;  // reserved while loading
  lock.unlock();
  evicted.clear();  // engines are joined here, outside the lock
  for (const ModelEvent& ev : unload_events) report(ev);
  {
    ModelEvent loading;
    loading.kind = ModelEvent::Kind::loading;
    loading.name = e->spec.name;
    loading.path = e->spec.path;
    report(loading);
  }

  std::shared_ptr<ServedModel> model;
  std::string error;
  const Clock::time_point load_start = Clock::now();
  try {
    model = loader_.load(e->spec);
    if (!model) error = "the loader returned nothing";
  } catch (const std::exception& ex) {
    error = ex.what();
  }
  lock.lock();
  e->loading = false;
  ++e->load_generation;
  loaded_bytes_ -= need;
  const double load_seconds = std::chrono::duration<double>(Clock::now() - load_start).count();
  if (!error.empty()) {
    const ModelEvent failed = record_failed_load(*e, error, load_seconds);
    const ApiError err = load_failed_error(*e);
    cv_.notify_all();
    lock.unlock();
    report(failed);
    throw err;
  }
  e->model = std::move(model);
  e->load_seconds = load_seconds;
  e->bytes = e->model->memory_bytes > 0 ? e->model->memory_bytes : need;
  loaded_bytes_ += e->bytes;
  ++e->loads;
  e->last_error.clear();
  e->failed_loads = 0;
  cv_.notify_all();
  std::shared_ptr<ServedModel> leased = lease(*e, true);
  lock.unlock();
  ModelEvent loaded;
  loaded.kind = ModelEvent::Kind::loaded;
  loaded.name = e->spec.name;
  loaded.path = e->spec.path;
  loaded.seconds = load_seconds;
  loaded.model = leased.get();
  report(loaded);
  return leased;
}

void ModelRegistry::preload_all() {
  for (Entry& e : entries_)
    if (e.spec.preload) acquire(e.spec.name);
  std::lock_guard lock(mu_);
  preloaded_ = true;
}

bool ModelRegistry::all_preloaded() const {
  std::lock_guard lock(mu_);
  return preloaded_;
}

int ModelRegistry::unload_idle() {
  if (options_.idle_ttl.count() <= 0) return 0;
  std::vector<std::shared_ptr<ServedModel>> unloaded;
  std::vector<ModelEvent> events;
  {
    std::lock_guard lock(mu_);
    const auto now = Clock::now();
    for (Entry& e : entries_) {
      if (e.model && e.active == 0 && now - e.last_used >= options_.idle_ttl) {
        ModelEvent ev;
        ev.kind = ModelEvent::Kind::unloaded;
        ev.name = e.spec.name;
        ev.path = e.spec.path;
        ev.reason = "idle";
        events.push_back(std::move(ev));
        loaded_bytes_ -= e.bytes;
        e.bytes = 0;
        ++e.unloads;
        unloaded.push_back(std::move(e.model));
      }
    }
  }
  const int n = static_cast<int>(unloaded.size());
  unloaded.clear();  // destroyed here, outside the lock
  for (const ModelEvent& ev : events) report(ev);
  return n;
}

void ModelRegistry::start_sweeper(std::chrono::milliseconds period) {
  if (sweeper_.joinable() || options_.idle_ttl.count() <= 0) return;
  sweeper_ = std::thread([this, period] {
    std::unique_lock lock(sweeper_mu_);
    while (!sweeper_cv_.wait_for(lock, period, [this] { return stopping_; })) {
      lock.unlock();
      unload_idle();
      lock.lock();
    }
  });
}

void ModelRegistry::unload_all() {
  std::vector<std::shared_ptr<ServedModel>> unloaded;
  {
    std::unique_lock lock(mu_);
    for (Entry& e : entries_) {
      if (e.model) {
        loaded_bytes_ -= e.bytes;
        e.bytes = 0;
        ++e.unloads;
        unloaded.push_back(std::move(e.model));
      }
    }
    cv_.wait(lock, [&] {
      return std::all_of(entries_.begin(), entries_.end(), [](const Entry& e) { return e.active == 0; });
    });
    for (auto& m : retired_) unloaded.push_back(std::move(m));
    retired_.clear();
  }
  // Destroyed here, outside the lock: engines are joined on this thread.
}

std::vector<ModelStatus> ModelRegistry::status() const {
  std::lock_guard lock(mu_);
  std::vector<ModelStatus> out;
  const auto now = Clock::now();
  for (const Entry& e : entries_) {
    ModelStatus s;
    s.name = e.spec.name;
    s.path = e.spec.path;
    s.loaded = e.model != nullptr;
    s.loading = e.loading;
    s.active = e.active;
    s.memory_bytes = e.bytes;
    s.idle_seconds = e.active > 0 ? 0 : std::chrono::duration<double>(now - e.last_used).count();
    s.loads = e.loads;
    s.unloads = e.unloads;
    s.last_error = e.last_error;
    s.failed_loads = e.failed_loads;
    s.load_failures = e.load_failures;
    s.load_seconds = e.load_seconds;
    if (e.model) {
      s.parameters = e.model->stats.n_params;
      s.weight_bytes = e.model->stats.weight_bytes;
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::size_t ModelRegistry::loaded_bytes() const {
  std::lock_guard lock(mu_);
  return loaded_bytes_;
}

}  // namespace kiln::serve
