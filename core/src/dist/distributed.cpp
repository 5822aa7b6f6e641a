#include "lorashear/dist/distributed.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>
#include <thread>

#include "lorashear/errors.h"

#if LORASHEAR_HAVE_GLOO
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include <glog/logging.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
#if LORASHEAR_HAVE_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace lorashear::dist {
namespace {

// A variable's value; unset and empty are the same.
std::optional<std::string> lookup(const EnvLookup& env, const std::string& name) {
  auto v = env(name);
  if (v && v->empty()) return std::nullopt;
  return v;
}

// A variable as a number; absent: `fallback`. Throws UsageError naming the variable.
long env_number(const EnvLookup& env, const std::string& name, long fallback,
                bool* present = nullptr) {
  const auto v = lookup(env, name);
  if (present != nullptr) *present = v.has_value();
  if (!v) return fallback;
  errno = 0;
  char* end = nullptr;
  const long n = std::strtol(v->c_str(), &end, 10);
  if (errno != 0 || end == v->c_str() || *end != '\0')
    throw UsageError(name + "='" + *v + "' is not a number");
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

EnvLookup process_environment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

std::string slurm_first_host(const std::string& nodelist, const std::string& variable) {
  const auto bad = [&](const std::string& why) {
    return UsageError(variable + "='" + nodelist + "' is not a Slurm host list (" + why + ")");
  };
  std::string first, inner;
  bool in_bracket = false, first_done = false;
  for (const char c : nodelist) {
    if (c == '[') {
      if (in_bracket) throw bad("nested '['");
      in_bracket = true;
      inner.clear();
    } else if (c == ']') {
      if (!in_bracket) throw bad("']' without '['");
      in_bracket = false;
      // Items: N or N-M, digits only; the first host takes the first item's N as written
      // (zero padding included).
      std::string lo;
      std::stringstream items(inner);
      std::string item;
      bool any = false;
      while (std::getline(items, item, ',')) {
        const auto dash = item.find('-');
        const std::string a = item.substr(0, dash);
        const std::string b = dash == std::string::npos ? "0" : item.substr(dash + 1);
        const auto digits = [](const std::string& x) {
          return !x.empty() &&
                 std::all_of(x.begin(), x.end(), [](char d) { return std::isdigit(d) != 0; });
        };
        if (!digits(a) || !digits(b)) throw bad("'" + item + "' in brackets is not N or N-M");
        if (!any) lo = a;
        any = true;
      }
      if (!any) throw bad("empty brackets");
      if (!first_done) first += lo;
    } else if (in_bracket) {
      inner += c;
    } else if (c == ',') {
      first_done = true;
    } else if (!first_done) {
      first += c;
    }
  }
  if (in_bracket) throw bad("'[' without ']'");
  if (first.empty()) throw bad("no host name first");
  return first;
}

DistOptions DistOptions::from_env(std::chrono::milliseconds timeout, const EnvLookup& given) {
  const EnvLookup env = given ? given : process_environment();
  DistOptions o;
  o.timeout = timeout;
  // torchrun's variables win, each on its own; Slurm's fill in under srun (SLURM_PROCID is set
  // per task by srun, not in a batch script).
  const bool slurm = lookup(env, "SLURM_PROCID").has_value();
  std::string world_var = "WORLD_SIZE";
  if (!lookup(env, "WORLD_SIZE") && slurm)
    world_var = lookup(env, "SLURM_STEP_NUM_TASKS") ? "SLURM_STEP_NUM_TASKS" : "SLURM_NTASKS";
  const std::string rank_var = lookup(env, "RANK") || !slurm ? "RANK" : "SLURM_PROCID";
  const std::string local_var =
      lookup(env, "LOCAL_RANK") || !slurm ? "LOCAL_RANK" : "SLURM_LOCALID";
  bool has_world = false, has_rank = false, has_port = false;
  const long world = env_number(env, world_var, 1, &has_world);
  const long rank = env_number(env, rank_var, 0, &has_rank);
  const long local = env_number(env, local_var, rank, nullptr);
  if (world < 1) throw UsageError(world_var + "=" + std::to_string(world) + " must be at least 1");
  if (rank < 0 || rank >= world)
    throw UsageError(rank_var + "=" + std::to_string(rank) + " is not below " + world_var + "=" +
                     std::to_string(world) + " (ranks are 0.." + std::to_string(world - 1) + ")");
  if (world > 1 && !has_rank)
    throw UsageError(world_var + "=" + std::to_string(world) + " without RANK");
  if (local < 0) throw UsageError(local_var + "=" + std::to_string(local) + " must be >= 0");
  o.world_size = static_cast<int>(world);
  o.rank = static_cast<int>(rank);
  o.local_rank = static_cast<int>(local);
  if (world <= 1) return o;
  o.source = world_var == "WORLD_SIZE" && rank_var == "RANK" ? "env" : "slurm";

  std::string port_var = "MASTER_PORT";
  long port = env_number(env, "MASTER_PORT", 29500, &has_port);
  if (!has_port && slurm) {
    bool has_job = false;
    const long job = env_number(env, "SLURM_JOB_ID", 0, &has_job);
    if (has_job && job >= 0) {
      port = kSlurmPortBase + job % 1000;
      port_var = "the port from SLURM_JOB_ID, MASTER_PORT";
      has_port = true;
    }
  }
  if (!has_port)
    throw UsageError(world_var + "=" + std::to_string(world) + " needs MASTER_PORT" +
                     (slurm ? " (or SLURM_JOB_ID)" : "") + " (and MASTER_ADDR, default " +
                     (slurm ? "the first host of SLURM_STEP_NODELIST" : "127.0.0.1") + ")");
  if (port < 1 || port > 65535)
    throw UsageError(port_var + "=" + std::to_string(port) + " is not a port (1..65535)");
  o.master_port = static_cast<int>(port);
  if (const auto a = lookup(env, "MASTER_ADDR")) {
    o.master_addr = *a;
  } else if (slurm) {
    for (const char* v : {"SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST"})
      if (const auto list = lookup(env, v)) {
        o.master_addr = slurm_first_host(*list, v);
        break;
      }
  }
  return o;
}

namespace {

std::string seconds_text(std::chrono::steady_clock::duration d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", std::chrono::duration<double>(d).count());
  return buf;
}

}  // namespace

#if LORASHEAR_HAVE_GLOO
bool available() {
  return true;
}

namespace {

// The socket descriptors of this process (Linux: /proc/self/fd; elsewhere none).
std::set<int> open_sockets() {
  std::set<int> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
    const auto target = std::filesystem::read_symlink(e.path(), ec);
    if (!ec && target.string().rfind("socket:", 0) == 0) {
      try {
        out.insert(std::stoi(e.path().filename().string()));
      } catch (const std::exception&) {
      }
    }
  }
  return out;
}

// c10d's TCPStore client (LibTorch 1.13) reads without a timeout: a store host stopped with
// SIGSTOP would block the diagnosis forever. The sockets opened since `before` that lead to the
// store's port get receive and send timeouts.
void limit_store_sockets(const std::set<int>& before, int port, std::chrono::milliseconds t) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(t.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((t.count() % 1000) * 1000);
  for (const int fd : open_sockets()) {
    if (before.count(fd)) continue;
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) continue;
    int peer_port = -1;
    if (peer.ss_family == AF_INET)
      peer_port = ntohs(reinterpret_cast<sockaddr_in*>(&peer)->sin_port);
    else if (peer.ss_family == AF_INET6)
      peer_port = ntohs(reinterpret_cast<sockaddr_in6*>(&peer)->sin6_port);
    if (peer_port != port) continue;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
}

}  // namespace

struct Distributed::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
#if LORASHEAR_HAVE_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif
  // The heartbeat's own connection to the store (TCPStore serialises its operations, so the
  // diagnosis after a failure shares it with the heartbeat thread).
  c10::intrusive_ptr<c10d::TCPStore> monitor;
  std::chrono::milliseconds beat_every{1000};
  std::thread beat;
  std::mutex beat_mutex;
  std::condition_variable wake;
  bool stop = false;

  static std::string key(const char* what, int rank) {
    return std::string("lorashear-monitor/") + what + "/" + std::to_string(rank);
  }
  // A key's value, or nullopt when it is not set (never waits for it).
  std::optional<std::string> peek(const std::string& k) {
    if (!monitor->check({k})) return std::nullopt;
    const auto v = monitor->get(k);
    return std::string(v.begin(), v.end());
  }
  void put(const std::string& k, const std::string& v) {
    monitor->set(k, std::vector<uint8_t>(v.begin(), v.end()));
  }
  // How long a rank's heartbeat may stand still before it counts as stopped.
  std::chrono::milliseconds silence() const {
    return std::max<std::chrono::milliseconds>(4 * beat_every, std::chrono::seconds(1));
  }

  // Runs `f` on the process group for `t`'s device: NCCL for CUDA tensors where this build has
  // it, else Gloo (host memory).
  template <class F>
  void on_group(const DistOptions& o, const torch::Tensor& t, F&& f) {
#if LORASHEAR_HAVE_NCCL
    if (t.is_cuda()) {
      if (!nccl) {
        auto opts = c10d::ProcessGroupNCCL::Options::create();
        opts->timeout = o.timeout;
        nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(
            c10::make_intrusive<c10d::PrefixStore>("nccl", store), o.rank, o.world_size, opts);
      }
      f(*nccl);
      return;
    }
#else
    (void)o;
    (void)t;
#endif
    f(*pg);
  }

  ~Impl() {
    if (beat.joinable()) {
      {
        std::lock_guard<std::mutex> lock(beat_mutex);
        stop = true;
      }
      wake.notify_all();
      beat.join();
    }
  }
};
#else
bool available() {
  return false;
}
struct Distributed::Impl {};
#endif

Distributed::Distributed() = default;

Distributed::~Distributed() {
  impl_.reset();  // the heartbeat thread reads completed_: stop it first
}

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
  const std::string who =
      "distributed rank " + std::to_string(o.rank) + " of " + std::to_string(o.world_size);
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
    std::string hint = o.rank == 0 ? " (rank 0 serves it: is the port free?)"
                                   : " (is rank 0 running and MASTER_ADDR reachable?)";
    if (o.source == "slurm")
      hint += " (from Slurm's variables: are all " + std::to_string(o.world_size) +
              " tasks started by srun?)";
    throw Error(who + ": rendezvous at " + where + hint + " failed: " + first_line(e));
  }
  // The heartbeat: a few bytes into the store every timeout/30 (0.2 to 2 s), from a thread of
  // its own on a connection of its own, so that a rank stopped in a collective still beats and
  // a dead or stopped (SIGSTOP) one does not.
  try {
    impl_->beat_every = std::clamp<std::chrono::milliseconds>(
        o.timeout / 30, std::chrono::milliseconds(200), std::chrono::seconds(2));
    c10d::TCPStoreOptions mo;
    mo.port = static_cast<std::uint16_t>(o.master_port);
    mo.isServer = false;
    mo.waitWorkers = false;
    mo.timeout = std::clamp<std::chrono::milliseconds>(impl_->silence(), std::chrono::seconds(2),
                                                       std::chrono::seconds(10));
    const auto before = open_sockets();
    impl_->monitor = c10::make_intrusive<c10d::TCPStore>(o.master_addr, mo);
    limit_store_sockets(before, o.master_port, mo.timeout);
    impl_->put(Impl::key("beat", o.rank), "0 0 ");
    impl_->beat = std::thread([this] {
      auto& im = *impl_;
      for (int64_t n = 1;; ++n) {
        {
          std::unique_lock<std::mutex> lock(im.beat_mutex);
          if (im.wake.wait_for(lock, im.beat_every, [&] { return im.stop; })) return;
        }
        try {
          im.put(Impl::key("beat", rank()),
                 std::to_string(n) + " " + std::to_string(completed_.load()));
        } catch (const std::exception&) {
          return;  // the store is gone (rank 0 ended): nothing left to tell
        }
      }
    });
  } catch (const std::exception& e) {
    throw Error(who + ": the heartbeat connection to " + where + " failed: " + first_line(e));
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
    throw Error(who + ": the Gloo process group at " + where + " could not be set up within " +
                seconds(o.timeout) + ": " + first_line(e));
  }
#else
  throw UsageError("WORLD_SIZE=" + std::to_string(o.world_size) +
                   ": this build has no distributed support (Gloo's headers were missing when it "
                   "was configured); install libgloo-dev and rebuild");
#endif
}

void Distributed::note_progress(const std::string& what) {
#if LORASHEAR_HAVE_GLOO
  // Published now (one small store write), so that a rank killed right after is named with its
  // last step rather than the one of its last heartbeat.
  if (impl_ && impl_->monitor) {
    try {
      impl_->put(Impl::key("progress", rank()), std::to_string(completed_.load()) + " " + what);
    } catch (const std::exception&) {
    }
  }
#endif
}

void Distributed::set_failure_hint(std::string hint) {
  std::lock_guard<std::mutex> lock(note_mutex_);
  failure_hint_ = std::move(hint);
}

void Distributed::begin_op() {
  op_started_ = std::chrono::steady_clock::now();
#if LORASHEAR_HAVE_GLOO
  if (!impl_->pg)
    throw Error("distributed rank " + std::to_string(rank()) + " of " +
                std::to_string(world_size()) +
                ": no collective is possible after a failed one (the process group is closed)");
#endif
}

std::string Distributed::diagnose() {
#if LORASHEAR_HAVE_GLOO
  if (!impl_ || !impl_->monitor) return "";
  auto& im = *impl_;
  const int me = rank(), world = world_size();
  const int64_t done_here = completed_.load();
  const std::string unreachable = "rank 0 (the store host " + options_.master_addr + ":" +
                                  std::to_string(options_.master_port) +
                                  ") is unreachable: it died or hangs";
  struct Peer {
    std::optional<std::string> first_beat, beat, progress;
    bool alive = false, failed = false;
  };
  std::vector<Peer> peers(static_cast<size_t>(world));
  using clock = std::chrono::steady_clock;
  try {
    im.put(Impl::key("failed", me), std::to_string(done_here));
    // Ranks blocked on this one in the collective see its connections close now, rather than at
    // their own timeout.
    im.pg.reset();
    for (int q = 0; q < world; ++q)
      if (q != me) peers[static_cast<size_t>(q)].first_beat = im.peek(Impl::key("beat", q));
    // A rank is alive when it reports the failure too, or its heartbeat moves.
    const auto deadline = clock::now() + im.silence();
    for (;;) {
      bool all = true;
      for (int q = 0; q < world; ++q) {
        auto& p = peers[static_cast<size_t>(q)];
        if (q == me || p.alive) continue;
        p.failed = im.peek(Impl::key("failed", q)).has_value();
        p.beat = im.peek(Impl::key("beat", q));
        p.alive = p.failed || (p.beat && p.beat != p.first_beat);
        all = all && p.alive;
      }
      if (all || clock::now() >= deadline) break;
      std::this_thread::sleep_for(im.beat_every / 2);
    }
    for (int q = 0; q < world; ++q)
      if (q != me) peers[static_cast<size_t>(q)].progress = im.peek(Impl::key("progress", q));
  } catch (const std::exception&) {
    return me == 0 ? "" : unreachable;
  }
  // beat: "N COMPLETED" (heartbeats, collectives completed); progress: "COMPLETED WHAT".
  const auto completed = [&](int q) {
    int64_t n = 0, c = 0, c2 = 0;
    const auto& p = peers[static_cast<size_t>(q)];
    if (p.beat) std::istringstream(*p.beat) >> n >> c;
    if (p.progress) std::istringstream(*p.progress) >> c2;
    return std::max(c, c2);
  };
  const auto last_seen = [&](int q) -> std::string {
    const auto& p = peers[static_cast<size_t>(q)];
    if (!p.beat) return "before its first heartbeat";
    const int64_t c = completed(q);
    std::string what;
    if (p.progress) {
      std::istringstream in(*p.progress);
      int64_t ignored = 0;
      in >> ignored;
      std::getline(in >> std::ws, what);
    }
    const std::string count = std::to_string(c) + " collective" + (c == 1 ? "" : "s") + " done";
    return what.empty() ? "after " + count : "after " + what + " (" + count + ")";
  };
  std::vector<int> stopped, behind;
  for (int q = 0; q < world; ++q) {
    if (q == me) continue;
    const auto& p = peers[static_cast<size_t>(q)];
    if (!p.alive)
      stopped.push_back(q);
    else if (!p.failed && p.beat && completed(q) < done_here)
      behind.push_back(q);
  }
  // "rank 2 of 3 stopped answering (dead or hung) after pruning step 25 (51 collectives done)"
  const auto list = [&](const std::vector<int>& ranks, const std::string& verb) {
    std::string s = ranks.size() == 1 ? "rank " : "ranks ";
    for (size_t i = 0; i < ranks.size(); ++i)
      s += (i ? ", " : "") + std::to_string(ranks[i]);
    s += " of " + std::to_string(world) + " " + verb;
    if (ranks.size() == 1) return s + " " + last_seen(ranks[0]);
    s += ":";
    for (size_t i = 0; i < ranks.size(); ++i)
      s += std::string(i ? "; " : " ") + "rank " + std::to_string(ranks[i]) + " " +
           last_seen(ranks[i]);
    return s;
  };
  std::string out;
  if (!stopped.empty())
    out = list(stopped, "stopped answering (dead or hung)");
  else if (!behind.empty())
    out = list(behind, behind.size() == 1 ? "is alive but did not reach this collective: it is"
                                          : "are alive but did not reach this collective");
  try {
    im.put(Impl::key("done", me), "1");
    // Rank 0 serves the store: it stays until the other live ranks have read it (or a bound).
    if (me == 0) {
      const auto deadline = clock::now() + im.silence() + std::chrono::seconds(5);
      while (clock::now() < deadline) {
        bool all = true;
        for (int q = 1; q < world; ++q)
          if (peers[static_cast<size_t>(q)].alive && !im.peek(Impl::key("done", q))) all = false;
        if (all) break;
        std::this_thread::sleep_for(im.beat_every / 2);
      }
    }
  } catch (const std::exception&) {
  }
  return out;
#else
  return "";
#endif
}

void Distributed::fail(const std::string& op, const std::exception& e) {
  const auto waited = std::chrono::steady_clock::now() - op_started_;
  std::string who;
  try {
    who = diagnose();
  } catch (const std::exception&) {
  }
  std::string msg = "distributed rank " + std::to_string(rank()) + " of " +
                    std::to_string(world_size()) + ": " + op + " failed";
  if (waited >= std::chrono::seconds(1)) msg += " after " + seconds_text(waited);
  if (!who.empty()) {
    msg += ": " + who;
  } else {
    // With two ranks the culprit is known; with more, Gloo's message names the peer's address.
    const std::string other =
        world_size() == 2 ? "rank " + std::to_string(1 - rank()) : std::string("another rank");
    msg += " (" + other + " died, or did not reach it within " + seconds(options_.timeout) +
           "): " + first_line(e);
  }
  {
    std::lock_guard<std::mutex> lock(note_mutex_);
    if (!failure_hint_.empty()) msg += "; " + failure_hint_;
  }
  throw Error(msg);
}

#if LORASHEAR_HAVE_GLOO
namespace {
// Whether collectives on `t` run where it is (NCCL on CUDA), or go through host memory (Gloo).
bool on_device(const torch::Tensor& t) {
#if LORASHEAR_HAVE_NCCL
  return t.is_cuda() || t.is_cpu();
#else
  return t.is_cpu();
#endif
}
}  // namespace
#endif

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
  begin_op();
  try {
    torch::NoGradGuard no_grad;
    for (const auto& bucket : buckets) {
      std::vector<torch::Tensor> flat;
      for (auto i : bucket)
        flat.push_back(tensors[i].reshape({-1}));
      auto joined = torch::cat(flat);
      std::vector<torch::Tensor> buf{on_device(joined) ? joined : joined.cpu()};
      last_buckets_.push_back(buf[0].numel());
      impl_->on_group(options_, buf[0], [&](auto& g) { g.allreduce(buf)->wait(); });
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
  end_op();
#endif
}

double Distributed::allreduce_sum(double value) {
  if (!active()) return value;
  auto t = torch::full({1}, value, torch::kFloat64);
  allreduce_sum(t);
  return t.item<double>();
}

void Distributed::allreduce_sum(torch::Tensor& tensor) {
  if (!active()) return;
#if LORASHEAR_HAVE_GLOO
  begin_op();
  try {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> buf{tensor.is_contiguous() && on_device(tensor)
                                       ? tensor
                                       : tensor.contiguous().to(on_device(tensor)
                                                                    ? tensor.device()
                                                                    : torch::Device(torch::kCPU))};
    impl_->on_group(options_, buf[0], [&](auto& g) { g.allreduce(buf)->wait(); });
    if (!buf[0].is_same(tensor)) tensor.copy_(buf[0]);
  } catch (const std::exception& e) {
    fail("all-reduce", e);
  }
  end_op();
#endif
}

void Distributed::broadcast(torch::Tensor& tensor, int root) {
  if (!active()) return;
#if LORASHEAR_HAVE_GLOO
  begin_op();
  try {
    std::vector<torch::Tensor> buf{tensor.is_contiguous() && on_device(tensor)
                                       ? tensor
                                       : tensor.contiguous().to(on_device(tensor)
                                                                    ? tensor.device()
                                                                    : torch::Device(torch::kCPU))};
    c10d::BroadcastOptions bo;
    bo.rootRank = root;
    impl_->on_group(options_, buf[0], [&](auto& g) { g.broadcast(buf, bo)->wait(); });
    if (!buf[0].is_same(tensor)) tensor.copy_(buf[0]);
  } catch (const std::exception& e) {
    fail("broadcast", e);
  }
  end_op();
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
  begin_op();
  try {
    impl_->pg->barrier()->wait();
  } catch (const std::exception& e) {
    fail("barrier", e);
  }
  end_op();
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
