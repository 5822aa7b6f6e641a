#include "lorashear/dist/distributed.h"

#include <c10/util/Exception.h>

#include <cerrno>
#include <cstdlib>
#include <map>

#include "lorashear/errors.h"

#if LORASHEAR_HAVE_GLOO
#include <glog/logging.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

namespace lorashear::dist {
namespace {

// A variable as a number; absent: `fallback`. Throws UsageError naming the variable.
long env_number(const char* name, long fallback, bool* present = nullptr) {
  const char* v = std::getenv(name);
  if (present != nullptr) *present = v != nullptr && *v != '\0';
  if (v == nullptr || *v == '\0') return fallback;
  errno = 0;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  if (errno != 0 || end == v || *end != '\0')
    throw UsageError(std::string(name) + "='" + v + "' is not a number");
  return n;
}

// The first line of an exception's message, without c10's backtrace.
std::string first_line(const std::exception& e) {
  std::string s;
  if (const auto* c = dynamic_cast<const c10::Error*>(&e))
    s = c->what_without_backtrace();
  else
    s = e.what();
  const auto nl = s.find('\n');
  if (nl != std::string::npos) s.resize(nl);
  return s;
}

std::string seconds(std::chrono::milliseconds t) {
  return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(t).count()) + " s";
}

}  // namespace

DistOptions DistOptions::from_env(std::chrono::milliseconds timeout) {
  DistOptions o;
  o.timeout = timeout;
  bool has_world = false, has_rank = false, has_port = false;
  const long world = env_number("WORLD_SIZE", 1, &has_world);
  const long rank = env_number("RANK", 0, &has_rank);
  const long local = env_number("LOCAL_RANK", rank, nullptr);
  const long port = env_number("MASTER_PORT", 29500, &has_port);
  if (world < 1) throw UsageError("WORLD_SIZE=" + std::to_string(world) + " must be at least 1");
  if (rank < 0 || rank >= world)
    throw UsageError("RANK=" + std::to_string(rank) + " is not below WORLD_SIZE=" +
                     std::to_string(world) + " (ranks are 0.." + std::to_string(world - 1) + ")");
  if (world > 1 && !has_rank)
    throw UsageError("WORLD_SIZE=" + std::to_string(world) + " without RANK");
  if (local < 0) throw UsageError("LOCAL_RANK=" + std::to_string(local) + " must be >= 0");
  if (world > 1 && !has_port)
    throw UsageError("WORLD_SIZE=" + std::to_string(world) +
                     " needs MASTER_PORT (and MASTER_ADDR, default 127.0.0.1)");
  if (port < 1 || port > 65535)
    throw UsageError("MASTER_PORT=" + std::to_string(port) + " is not a port (1..65535)");
  o.world_size = static_cast<int>(world);
  o.rank = static_cast<int>(rank);
  o.local_rank = static_cast<int>(local);
  o.master_port = static_cast<int>(port);
  if (const char* a = std::getenv("MASTER_ADDR"); a != nullptr && *a != '\0') o.master_addr = a;
  (void)has_world;
  return o;
}

#if LORASHEAR_HAVE_GLOO
bool available() {
  return true;
}
struct Distributed::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
};
#else
bool available() {
  return false;
}
struct Distributed::Impl {};
#endif

Distributed::Distributed() = default;
Distributed::~Distributed() = default;

Distributed::Distributed(const DistOptions& o) : options_(o) {
  if (o.world_size <= 1) return;
  if (o.rank < 0 || o.rank >= o.world_size)
    throw UsageError("rank " + std::to_string(o.rank) + " is not below the world size " +
                     std::to_string(o.world_size));
#if LORASHEAR_HAVE_GLOO
  impl_ = std::make_unique<Impl>();
  // c10d and Gloo log every failed bind or connect attempt through glog on stderr; the errors
  // that matter reach the user as one-line exceptions (below), so only fatal messages remain.
  FLAGS_minloglevel = google::GLOG_FATAL;
  const std::string where = o.master_addr + ":" + std::to_string(o.master_port);
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(o.master_port);
    so.isServer = o.rank == 0;
    so.numWorkers = static_cast<std::size_t>(o.world_size);
    so.waitWorkers = true;
    so.timeout = o.timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(o.master_addr, so);
    impl_->store = c10::make_intrusive<c10d::PrefixStore>("lorashear", tcp);
  } catch (const std::exception& e) {
    throw Error("distributed rank " + std::to_string(o.rank) + " of " +
                std::to_string(o.world_size) + ": rendezvous at " + where +
                (o.rank == 0 ? " (rank 0 serves it: is the port free?)"
                             : " (is rank 0 running and MASTER_ADDR reachable?)") +
                " failed: " + first_line(e));
  }
  try {
    auto opts = c10d::ProcessGroupGloo::Options::create(o.timeout);
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname != nullptr && *ifname)
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    else if (o.master_addr == "127.0.0.1" || o.master_addr == "localhost" || o.master_addr == "::1")
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    else
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    opts->threads = 1;
    impl_->pg =
        c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, o.rank, o.world_size, opts);
  } catch (const std::exception& e) {
    throw Error("distributed rank " + std::to_string(o.rank) + " of " +
                std::to_string(o.world_size) + ": the Gloo process group at " + where +
                " could not be set up within " + seconds(o.timeout) + ": " + first_line(e));
  }
#else
  throw UsageError("WORLD_SIZE=" + std::to_string(o.world_size) +
                   ": this build has no distributed support (Gloo's headers were missing when it "
                   "was configured); install libgloo-dev and rebuild");
#endif
}

void Distributed::fail(const std::string& op, const std::exception& e) const {
  // With two ranks the culprit is known; with more, Gloo's message names the peer's address.
  const std::string other =
      world_size() == 2 ? "rank " + std::to_string(1 - rank()) : std::string("another rank");
  throw Error("distributed rank " + std::to_string(rank()) + " of " + std::to_string(world_size()) +
              ": " + op + " failed (" + other + " died, or did not reach it within " +
              seconds(options_.timeout) + "): " + first_line(e));
}

void Distributed::allreduce_mean(std::vector<torch::Tensor>& tensors) {
  last_buckets_.clear();
  if (!active()) return;
#if LORASHEAR_HAVE_GLOO
  // Buckets of consecutive tensors of one dtype and device, up to bucket_bytes each.
  std::vector<std::vector<size_t>> buckets;
  int64_t bytes = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    if (!t.defined()) continue;
    const int64_t b = t.numel() * static_cast<int64_t>(t.element_size());
    const bool fresh = buckets.empty() || bytes + b > bucket_bytes ||
                       tensors[buckets.back().front()].scalar_type() != t.scalar_type() ||
                       tensors[buckets.back().front()].device() != t.device();
    if (fresh) {
      buckets.emplace_back();
      bytes = 0;
    }
    buckets.back().push_back(i);
    bytes += b;
  }
  try {
    torch::NoGradGuard no_grad;
    for (const auto& bucket : buckets) {
      std::vector<torch::Tensor> flat;
      for (auto i : bucket)
        flat.push_back(tensors[i].reshape({-1}));
      // Gloo reduces host memory: CUDA gradients go through it (this LibTorch has no NCCL
      // process group wired here; see distributed.h).
      std::vector<torch::Tensor> buf{torch::cat(flat).cpu()};
      last_buckets_.push_back(buf[0].numel());
      impl_->pg->allreduce(buf)->wait();
      buf[0].div_(static_cast<double>(world_size()));
      int64_t offset = 0;
      for (auto i : bucket) {
        auto& t = tensors[i];
        t.copy_(buf[0].narrow(0, offset, t.numel()).view_as(t));
        offset += t.numel();
      }
    }
  } catch (const std::exception& e) {
    fail("all-reduce", e);
  }
#endif
}

double Distributed::allreduce_sum(double value) {
  if (!active()) return value;
#if LORASHEAR_HAVE_GLOO
  try {
    std::vector<torch::Tensor> buf{torch::full({1}, value, torch::kFloat64)};
    impl_->pg->allreduce(buf)->wait();
    return buf[0].item<double>();
  } catch (const std::exception& e) {
    fail("all-reduce", e);
  }
#endif
  return value;
}

void Distributed::broadcast(torch::Tensor& tensor, int root) {
  if (!active()) return;
#if LORASHEAR_HAVE_GLOO
  try {
    std::vector<torch::Tensor> buf{
        tensor.is_contiguous() && tensor.is_cpu() ? tensor : tensor.contiguous().cpu()};
    c10d::BroadcastOptions bo;
    bo.rootRank = root;
    impl_->pg->broadcast(buf, bo)->wait();
    if (!buf[0].is_same(tensor)) tensor.copy_(buf[0]);
  } catch (const std::exception& e) {
    fail("broadcast", e);
  }
#else
  (void)tensor;
  (void)root;
#endif
}

void Distributed::require_world_size(int64_t written_by, const std::string& checkpoint) const {
  if (written_by != world_size())
    throw UsageError(checkpoint + " was written by a run on " + std::to_string(written_by) +
                     " process(es) (WORLD_SIZE), this run has " + std::to_string(world_size()) +
                     ": resume with the same world size, or start a new run");
}

void Distributed::barrier() {
  if (!active()) return;
#if LORASHEAR_HAVE_GLOO
  try {
    impl_->pg->barrier()->wait();
  } catch (const std::exception& e) {
    fail("barrier", e);
  }
#endif
}

namespace {
std::unique_ptr<Distributed>& slot() {
  static std::unique_ptr<Distributed> d = std::make_unique<Distributed>();
  return d;
}
}  // namespace

Distributed& current() {
  return *slot();
}

void set_current(std::unique_ptr<Distributed> context) {
  slot() = context ? std::move(context) : std::make_unique<Distributed>();
}

torch::Tensor shard_rows(const torch::Tensor& batch, const Distributed& d,
                         const std::string& what) {
  if (!d.active()) return batch;
  const int64_t rows = batch.size(0), w = d.world_size();
  if (rows % w != 0)
    throw UsageError(what + " " + std::to_string(rows) + " does not split evenly over WORLD_SIZE=" +
                     std::to_string(w) + " ranks (give a multiple of " + std::to_string(w) + ")");
  const int64_t per = rows / w;
  return batch.narrow(0, per * d.rank(), per);
}

void allreduce_gradients(const std::vector<torch::Tensor>& params, Distributed& d) {
  if (!d.active()) return;
  std::vector<torch::Tensor> grads;
  grads.reserve(params.size());
  for (const auto& p : params)
    grads.push_back(p.grad());
  d.allreduce_mean(grads);
}

}  // namespace lorashear::dist
