// `lorashear launch --nproc N -- SUBCOMMAND ...`: data parallelism on one machine. Starts N copies
// of this program with the variables torchrun sets (RANK, LOCAL_RANK, WORLD_SIZE,
// LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1, MASTER_PORT), forwards Ctrl-C / SIGTERM to them, and
// exits with the code of the first rank that failed, naming it.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "cli_common.h"
#include "lorashear/errors.h"

namespace lorashear::cli {
namespace {

struct LaunchArgs {
  int nproc = 0;
  int master_port = 0;
  double grace = 30;
  std::vector<std::string> command;
};

std::atomic<int> g_signal{0};
extern "C" void on_signal(int sig) {
  g_signal.store(sig);
}

// A port nobody listens on now: bound to 0 on the loopback, read back, closed.
int pick_free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error("launch: cannot open a socket to pick a free port");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  ::close(fd);
  if (!ok) throw Error("launch: cannot pick a free port (give --master-port)");
  return ntohs(a.sin_port);
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = ::strsignal(sig);
    return "was killed by signal " + std::to_string(sig) +
           (name ? std::string(" (") + name + ")" : "");
  }
  return "ended with status " + std::to_string(status);
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

int run_launch(const LaunchArgs& a) {
  if (a.nproc < 1) throw UsageError("--nproc must be at least 1");
  if (a.command.empty())
    throw UsageError("give the subcommand after --, e.g. lorashear launch --nproc 2 -- prune ...");
  if (a.command.front() == "launch") throw UsageError("launch cannot launch itself");
  if (std::getenv("WORLD_SIZE") != nullptr && std::atoi(std::getenv("WORLD_SIZE")) > 1)
    throw UsageError("launch runs under WORLD_SIZE=" + std::string(std::getenv("WORLD_SIZE")) +
                     " already (inside torchrun or another launch?); unset it");
  const int port = a.master_port > 0 ? a.master_port : pick_free_port();
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) throw Error("launch: cannot find this program (/proc/self/exe)");
  self[n] = '\0';

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  std::vector<pid_t> pids(static_cast<size_t>(a.nproc), -1);
  std::vector<int> status(static_cast<size_t>(a.nproc), -1);
  for (int r = 0; r < a.nproc; ++r) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      for (auto p : pids)
        if (p > 0) ::kill(p, SIGKILL);
      throw Error("launch: fork failed for rank " + std::to_string(r));
    }
    if (pid == 0) {
      // Its own process group: a terminal's Ctrl-C reaches the launcher only, which forwards it
      // once to every rank.
      ::setpgid(0, 0);
      ::signal(SIGINT, SIG_DFL);
      ::signal(SIGTERM, SIG_DFL);
      ::setenv("RANK", std::to_string(r).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(a.nproc).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(a.nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      std::vector<char*> argv;
      argv.push_back(self);
      for (const auto& s : a.command)
        argv.push_back(const_cast<char*>(s.c_str()));
      argv.push_back(nullptr);
      ::execv(self, argv.data());
      std::fprintf(stderr, "error: launch: cannot run %s for rank %d\n", self, r);
      std::_Exit(127);
    }
    pids[static_cast<size_t>(r)] = pid;
  }

  int first_failed = -1, forwarded = 0;
  auto failed_at = std::chrono::steady_clock::now();
  bool killed_rest = false;
  for (int running = a.nproc; running > 0;) {
    if (const int sig = g_signal.exchange(0); sig != 0) {
      ++forwarded;
      // A second Ctrl-C forwards SIGKILL.
      for (size_t r = 0; r < pids.size(); ++r)
        if (status[r] == -1) ::kill(pids[r], forwarded > 1 ? SIGKILL : sig);
    }
    int st = 0;
    const pid_t done = ::waitpid(-1, &st, WNOHANG);
    if (done > 0) {
      for (size_t r = 0; r < pids.size(); ++r)
        if (pids[r] == done) {
          status[r] = st;
          --running;
          const bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
          if (!ok && first_failed < 0) {
            first_failed = static_cast<int>(r);
            failed_at = std::chrono::steady_clock::now();
          }
        }
      continue;
    }
    // The other ranks notice a dead one by themselves (their collectives fail, or time out);
    // after the grace period the launcher stops them.
    if (first_failed >= 0 && !killed_rest &&
        std::chrono::steady_clock::now() - failed_at > std::chrono::duration<double>(a.grace)) {
      for (size_t r = 0; r < pids.size(); ++r)
        if (status[r] == -1) ::kill(pids[r], SIGKILL);
      killed_rest = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (first_failed < 0) return 0;
  const int st = status[static_cast<size_t>(first_failed)];
  std::fprintf(stderr, "error: launch: rank %d of %d %s (the first rank to fail)\n", first_failed,
               a.nproc, describe(st).c_str());
  return exit_code(st);
}

const Register register_launch([](CLI::App& parent, GlobalOptions&) {
  auto* app = parent.add_subcommand(
      "launch",
      "Run a subcommand data parallel on this machine: N processes, rank 0 writes the output");
  auto a = std::make_shared<LaunchArgs>();
  app->add_option("--nproc", a->nproc, "number of processes (ranks)")->required();
  app->add_option("--master-port", a->master_port,
                  "rendezvous port on 127.0.0.1 (default: a free one)");
  app->add_option("--grace", a->grace,
                  "seconds the other ranks get to stop by themselves once one failed")
      ->capture_default_str();
  app->add_option("command", a->command, "the subcommand and its arguments, after --")->required();
  app->footer(
      "Sets RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT as torchrun\n"
      "does (the subcommand can also run under torchrun, or srun: SLURM_PROCID, SLURM_NTASKS,\n"
      "SLURM_LOCALID, SLURM_STEP_NODELIST and SLURM_JOB_ID stand in for the variables not set).\n"
      "Data parallel: prune, recover, eval ppl, eval tasks, analyze. A rank that dies or hangs\n"
      "stops the others within their --dist-timeout, naming it. Examples:\n"
      "  lorashear launch --nproc 2 -- prune MODEL --ratio 0.2 --text FILE --out DIR --batch 8\n"
      "  lorashear launch --nproc 2 -- eval tasks MODEL --data DIR");
  return Command{app, [a] { return run_launch(*a); }};
});

}  // namespace
}  // namespace lorashear::cli
