// Data parallelism on c10d/Gloo (core/src/dist, issue 18 §1): `lorashear prune` of the demo model
// as two ranks (two processes on 127.0.0.1, RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT as torchrun
// sets them) with half the batch each gives the same per-step losses, removed groups and final
// weights as one process with the whole batch; rank 0 alone writes; a checkpoint of another world
// size is refused; bad variables, a busy port, a dead or hung rank end in a one-line error,
// quickly, naming the rank that stopped (3 ranks); Slurm's variables give the ranks; `eval ppl`,
// `eval tasks` and `analyze` split their work over the ranks and print the one-process result.
#include <QElapsedTimer>
#include <QRegularExpression>
#include <QTemporaryDir>
#include <QtTest>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>

#include "lorashear/dist/distributed.h"
#include "lorashear/errors.h"
#include "lorashear/io/safetensors.h"
#include "test_support.h"

using namespace lorashear;
using lorashear::test::ProcessResult;

namespace {

// A port nobody listens on now (bound to 0, read back, closed).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// Whether nobody listens on `port` of the loopback now.
bool port_is_free(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// A socket listening on a port, so that the port is busy while it lives.
struct Listener {
  int fd = -1, port = 0;
  Listener() {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd, 4);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~Listener() { ::close(fd); }
};

QProcessEnvironment rank_env(int rank, int world, int port) {
  auto env = QProcessEnvironment::systemEnvironment();
  env.remove("LORASHEAR_TEST_KILL_AT_STEP");
  env.insert("RANK", QString::number(rank));
  env.insert("LOCAL_RANK", QString::number(rank));
  env.insert("WORLD_SIZE", QString::number(world));
  env.insert("MASTER_ADDR", "127.0.0.1");
  env.insert("MASTER_PORT", QString::number(port));
  env.insert("OMP_NUM_THREADS", "1");  // two ranks on two cores
  return env;
}

QString one_line(const QString& s) {
  return s.trimmed();
}

// A fake environment for DistOptions::from_env.
dist::EnvLookup fake_env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    const auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

// The UsageError's message of from_env on `vars` ("" when it succeeds).
std::string from_env_error(std::map<std::string, std::string> vars) {
  try {
    dist::DistOptions::from_env(std::chrono::seconds(10), fake_env(std::move(vars)));
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

// Over every tensor of two safetensors files (names and shapes must match): the largest
// max |a - b| / max |a| (elementwise) and the largest ||a - b|| / ||a|| (normwise).
struct WeightDifference {
  double elementwise = 1e30, normwise = 1e30;
};
WeightDifference weight_difference(const std::string& a, const std::string& b) {
  SafetensorsFile fa(a), fb(b);
  if (fa.entries().size() != fb.entries().size()) return {};
  WeightDifference d{0, 0};
  for (const auto& e : fa.entries()) {
    const auto* other = fb.find(e.name);
    if (other == nullptr) return {};
    auto x = fa.view(e).to(torch::kFloat64), y = fb.view(*other).to(torch::kFloat64);
    if (x.sizes() != y.sizes()) return {};
    const double scale = std::max(x.abs().max().item<double>(), 1e-12);
    d.elementwise = std::max(d.elementwise, (x - y).abs().max().item<double>() / scale);
    d.normwise = std::max(d.normwise,
                          (x - y).norm().item<double>() / std::max(x.norm().item<double>(), 1e-12));
  }
  return d;
}

}  // namespace

class TestDistributed : public QObject {
  Q_OBJECT

  QTemporaryDir dir_;
  QString text_;

  QString path(const QString& name) const { return dir_.filePath(name); }

  QStringList prune_args(const QString& out, const QString& method = "lhspg") const {
    return {"prune",
            QString::fromStdString(test::source_path("resources/demo-model").string()),
            "--ratio",
            "0.3",
            "--text",
            text_,
            "--out",
            out,
            "--overwrite",
            "--steps",
            "40",
            "--batch",
            "4",
            "--seq-len",
            "64",
            "--no-analysis",
            "--method",
            method,
            "--checkpoint-every",
            "10",
            "--quiet",
            "--json"};
  }

  // When each rank of the last run_ranks call ended, in ms from its start (-1: it was stopped).
  std::vector<qint64> ended_ms_;
  qint64 stopped_at_ms_ = -1;

  // Runs `world` ranks of the CLI with `args` (rank r's stdout in OUT_PREFIX.r) until all end.
  // `stop_last_when`: once that file exists, the last rank is stopped (SIGSTOP), as if it hung.
  std::vector<ProcessResult> run_ranks(int world, const QStringList& args,
                                       const QString& out_prefix,
                                       const QMap<int, QPair<QString, QString>>& extra = {},
                                       const QString& stop_last_when = {}) {
    const int port = free_port();
    std::vector<std::unique_ptr<QProcess>> ps;
    QElapsedTimer timer;
    timer.start();
    for (int r = 0; r < world; ++r) {
      auto p = std::make_unique<QProcess>();
      auto env = rank_env(r, world, port);
      if (extra.contains(r)) env.insert(extra[r].first, extra[r].second);
      p->setProcessEnvironment(env);
      p->setStandardOutputFile(out_prefix + "." + QString::number(r));
      p->setStandardErrorFile(out_prefix + ".err." + QString::number(r));
      p->start(LORASHEAR_CLI_PATH, args);
      ps.push_back(std::move(p));
    }
    std::vector<ProcessResult> out(static_cast<size_t>(world));
    ended_ms_.assign(static_cast<size_t>(world), -1);
    stopped_at_ms_ = -1;
    const bool stop = !stop_last_when.isEmpty();
    for (int running = world; running > 0 && timer.elapsed() < 120000;) {
      if (stop && stopped_at_ms_ < 0 && QFileInfo::exists(stop_last_when)) {
        ::kill(static_cast<pid_t>(ps.back()->processId()), SIGSTOP);
        stopped_at_ms_ = timer.elapsed();
        --running;
      }
      for (int r = 0; r < world; ++r) {
        auto& p = *ps[static_cast<size_t>(r)];
        if (ended_ms_[static_cast<size_t>(r)] >= 0 ||
            (stop && r == world - 1 && stopped_at_ms_ >= 0))
          continue;
        if (p.state() == QProcess::NotRunning || p.waitForFinished(20)) {
          ended_ms_[static_cast<size_t>(r)] = timer.elapsed();
          out[static_cast<size_t>(r)].code =
              p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -2;
          --running;
        }
      }
    }
    for (int r = 0; r < world; ++r) {
      auto& p = *ps[static_cast<size_t>(r)];
      if (p.state() != QProcess::NotRunning) {
        p.kill();
        p.waitForFinished(5000);
        out[static_cast<size_t>(r)].code = -1;
      }
      out[static_cast<size_t>(r)].out = QString::fromStdString(
          test::read_all((out_prefix + "." + QString::number(r)).toStdString()));
      out[static_cast<size_t>(r)].err = QString::fromStdString(
          test::read_all((out_prefix + ".err." + QString::number(r)).toStdString()));
    }
    return out;
  }

 private slots:
  void initTestCase() {
    if (!dist::available()) QSKIP("this build has no distributed support (libgloo-dev missing)");
    QVERIFY(dir_.isValid());
    text_ = path("text.txt");
    const auto shared = test::shared_path("data/text/tinystories_val_subset.txt");
    std::string text;
    if (std::filesystem::exists(shared)) {
      text = test::read_all(shared).substr(0, 60000);
    } else {
      const char* names[] = {"Lily", "Tom", "Ben", "Sue", "Max", "Anna"};
      const char* things[] = {"ball", "cat", "tree", "boat", "cake", "dog", "kite"};
      for (int i = 0; i < 1500; ++i)
        text += std::string("Once upon a time ") + names[i % 6] + " had a " + things[i % 7] + ". " +
                names[(i / 6) % 6] + " liked the " + things[(i / 7) % 7] +
                " very much and they played all day.\n";
    }
    test::write_all(text_.toStdString(), text);
  }

  void twoRanksMatchOneProcess_data() {
    QTest::addColumn<QString>("method");
    QTest::newRow("lhspg") << "lhspg";
    // Gradient saliency: from the calibration batch's all-reduced gradients.
    QTest::newRow("taylor") << "taylor";
    QTest::newRow("loraprune") << "loraprune";
  }

  void twoRanksMatchOneProcess() {
    QFETCH(QString, method);
    const QString one = path("one-" + method), two = path("two-" + method);
    auto single = run_ranks(1, prune_args(one, method), path("single-" + method));
    QVERIFY2(single[0].code == 0, qPrintable(single[0].err));
    QElapsedTimer timer;
    timer.start();
    auto ranks = run_ranks(2, prune_args(two, method), path("ranks-" + method));
    QVERIFY2(ranks[0].code == 0, qPrintable(ranks[0].err));
    QVERIFY2(ranks[1].code == 0, qPrintable(ranks[1].err));
    // Rank 1 prints nothing and writes nothing: one output, no checkpoint left.
    QVERIFY2(ranks[1].out.isEmpty(), qPrintable(ranks[1].out));
    QVERIFY(std::filesystem::exists(two.toStdString() + "/model.safetensors"));
    QVERIFY(!std::filesystem::exists(two.toStdString() + ".checkpoint"));

    const auto a = nlohmann::json::parse(single[0].out.toStdString());
    const auto b = nlohmann::json::parse(ranks[0].out.toStdString());
    QCOMPARE(b.value("world_size", 0), 2);
    const auto la = a["pruning"]["loss"].get<std::vector<double>>();
    const auto lb = b["pruning"]["loss"].get<std::vector<double>>();
    QCOMPARE(la.size(), size_t{40});
    QCOMPARE(lb.size(), la.size());
    double worst = 0;
    for (size_t i = 0; i < la.size(); ++i)
      worst = std::max(worst, std::abs(la[i] - lb[i]) / std::abs(la[i]));
    QVERIFY2(worst <= 1e-5, qPrintable(QString("loss differs by %1 (relative)").arg(worst)));
    QCOMPARE(b["pruning"]["removed"], a["pruning"]["removed"]);
    // The held-out perplexity of the dense model: each rank scores half the windows.
    const double ppl_before =
        std::abs(a["ppl"]["before"].get<double>() - b["ppl"]["before"].get<double>()) /
        a["ppl"]["before"].get<double>();
    QVERIFY2(ppl_before <= 1e-9, qPrintable(QString("ppl before %1").arg(ppl_before)));
    QVERIFY(!a["pruning"]["removed"].empty());
    // The ranks sum their rows' gradients in another order than one process does (float
    // rounding, ~1e-7); AdamW amplifies that on the few elements whose gradient is near its eps:
    // taylor measured 1.8e-5 on one element of one row, far less normwise.
    const auto w = weight_difference(one.toStdString() + "/model.safetensors",
                                     two.toStdString() + "/model.safetensors");
    QVERIFY2(w.normwise <= 1e-5 && w.elementwise <= 1e-4,
             qPrintable(QString("weights differ by %1 normwise, %2 elementwise (relative)")
                            .arg(w.normwise)
                            .arg(w.elementwise)));
    qInfo(
        "%s: 2 ranks vs 1 process: loss %.3g, weights %.3g normwise, %.3g elementwise, held-out "
        "ppl before %.3g (relative); %.1f s for 2 ranks",
        qPrintable(method), worst, w.normwise, w.elementwise, ppl_before,
        static_cast<double>(timer.elapsed()) / 1000.0);
  }

  // Killed at step 25 (checkpoint of step 20 written by rank 0): resumed on 2 ranks it ends with
  // the weights of an uninterrupted 2-rank run; on 1 process it is refused with the reason.
  void resumeNeedsTheSameWorldSize() {
    const QString ref = path("two-lhspg"), out = path("resumed");
    if (!std::filesystem::exists(ref.toStdString() + "/model.safetensors"))
      QSKIP("needs twoRanksMatchOneProcess(lhspg)");
    auto killed = run_ranks(
        2, prune_args(out), path("killed"),
        {{0, {"LORASHEAR_TEST_KILL_AT_STEP", "25"}}, {1, {"LORASHEAR_TEST_KILL_AT_STEP", "25"}}});
    QVERIFY(killed[0].code != 0);
    QVERIFY(std::filesystem::exists(out.toStdString() + ".checkpoint/latest/state.json"));
    QVERIFY(!std::filesystem::exists(out.toStdString() + "/model.safetensors"));

    auto args = prune_args(out) << "--resume" << out + ".checkpoint";
    auto refused = run_ranks(1, args, path("refused"));
    QCOMPARE(refused[0].code, 2);
    QVERIFY2(refused[0].err.contains("written by a run on 2 process"), qPrintable(refused[0].err));
    QVERIFY2(!one_line(refused[0].err).contains('\n'), qPrintable(refused[0].err));

    auto resumed = run_ranks(2, args, path("resumed"));
    QVERIFY2(resumed[0].code == 0, qPrintable(resumed[0].err));
    QVERIFY2(resumed[1].code == 0, qPrintable(resumed[1].err));
    const auto w = weight_difference(ref.toStdString() + "/model.safetensors",
                                     out.toStdString() + "/model.safetensors");
    QVERIFY2(w.elementwise == 0,
             qPrintable(QString("resumed weights differ by %1").arg(w.elementwise)));
  }

  // Inconsistent variables, an uneven batch, a busy port: a one-line error and a non-zero exit,
  // within seconds.
  void badInputFailsFastWithOneLine() {
    const auto args = prune_args(path("bad"));
    struct Case {
      QMap<QString, QString> env;
      QStringList extra;
      int code;
      QString says;
    };
    Listener busy;
    const QList<Case> cases = {
        {{{"RANK", "2"}, {"WORLD_SIZE", "2"}}, {}, 2, "RANK=2 is not below WORLD_SIZE=2"},
        {{{"RANK", "one"}, {"WORLD_SIZE", "2"}}, {}, 2, "RANK='one' is not a number"},
        {{{"RANK", "0"}, {"WORLD_SIZE", "two"}}, {}, 2, "WORLD_SIZE='two' is not a number"},
        {{{"RANK", "0"}, {"WORLD_SIZE", "3"}},
         {},
         2,
         "--batch 4 does not split evenly over WORLD_SIZE=3"},
        {{{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", QString::number(busy.port)}},
         {},
         1,
         "is the port free?"},
    };
    for (const auto& c : cases) {
      auto env = rank_env(0, 2, free_port());
      for (auto it = c.env.begin(); it != c.env.end(); ++it)
        env.insert(it.key(), it.value());
      QElapsedTimer timer;
      timer.start();
      auto r = test::run_process(LORASHEAR_CLI_PATH, args + c.extra, 60000, env);
      QVERIFY2(timer.elapsed() < 20000, qPrintable(c.says));
      QVERIFY2(r.code == c.code, qPrintable(QString::number(r.code) + ": " + r.err));
      QVERIFY2(r.err.contains(c.says), qPrintable(r.err));
      QVERIFY2(!one_line(r.err).contains('\n'), qPrintable(r.err));
      QVERIFY(!std::filesystem::exists(path("bad").toStdString()));
    }
  }

  // A rank that dies (SIGKILL) or hangs (SIGSTOP): the other stops within --dist-timeout with a
  // one-line error naming it.
  void deadOrHungRankStopsTheOther() {
    auto args = prune_args(path("dead"));
    args.replace(args.indexOf("40"), "400");
    args << "--dist-timeout"
         << "3";
    QElapsedTimer timer;
    timer.start();
    auto dead = run_ranks(2, args, path("dead"), {{1, {"LORASHEAR_TEST_KILL_AT_STEP", "5"}}});
    QVERIFY(timer.elapsed() < 30000);
    QCOMPARE(dead[0].code, 1);
    QVERIFY2(dead[0].err.contains("distributed rank 0 of 2: all-reduce failed: rank 1 of 2 stopped "
                                  "answering (dead or hung) after pruning step 5"),
             qPrintable(dead[0].err));
    QVERIFY2(dead[0].err.contains("continue with --resume " + path("dead") + ".checkpoint"),
             qPrintable(dead[0].err));
    QVERIFY2(!one_line(dead[0].err).contains('\n'), qPrintable(dead[0].err));

    timer.restart();
    auto hung = run_ranks(2, prune_args(path("hung")) + QStringList{"--dist-timeout", "3"},
                          path("hung"), {}, path("hung") + ".checkpoint/latest/state.json");
    QVERIFY2(timer.elapsed() < 40000, qPrintable(QString::number(timer.elapsed())));
    QVERIFY(stopped_at_ms_ >= 0);
    QCOMPARE(hung[0].code, 1);
    QVERIFY2(hung[0].err.contains("distributed rank 0 of 2: all-reduce failed after 3."),
             qPrintable(hung[0].err));
    QVERIFY2(
        hung[0].err.contains("rank 1 of 2 stopped answering (dead or hung) after pruning step"),
        qPrintable(hung[0].err));
    QVERIFY2(!one_line(hung[0].err).contains('\n'), qPrintable(hung[0].err));
    QVERIFY(!std::filesystem::exists(path("dead").toStdString() + "/model.safetensors"));
  }

  // Three ranks: the two left name the one that died (SIGKILL) or hangs (SIGSTOP), within the
  // timeout and a few seconds; when rank 0, the store's host, dies, the others say so.
  void threeRanksNameTheOneThatStopped() {
    const auto args = [&](const QString& out) {
      auto a = prune_args(path(out));
      a.replace(a.indexOf("4"), "6");  // --batch 6: two rows per rank
      a.replace(a.indexOf("40"), "400");
      return a << "--dist-timeout"
               << "3";
    };
    auto dead = run_ranks(3, args("three-dead"), path("three-dead"),
                          {{2, {"LORASHEAR_TEST_KILL_AT_STEP", "5"}}});
    QVERIFY(dead[2].code != 0);
    for (int r : {0, 1}) {
      const auto& e = dead[static_cast<size_t>(r)].err;
      QCOMPARE(dead[static_cast<size_t>(r)].code, 1);
      QVERIFY2(e.contains(QString("distributed rank %1 of 3: all-reduce failed: rank 2 of 3 "
                                  "stopped answering (dead or hung) after pruning step 5 (")
                              .arg(r)),
               qPrintable(e));
      QVERIFY2(!one_line(e).contains('\n'), qPrintable(e));
      // A dead rank is noticed at once: the heartbeat's silence (1 s here) decides.
      const qint64 after = ended_ms_[static_cast<size_t>(r)] - ended_ms_[2];
      QVERIFY2(after < 5000,
               qPrintable(QString("rank %1 stopped %2 ms after rank 2 died").arg(r).arg(after)));
      qInfo("rank %d of 3 stopped %lld ms after rank 2 died", r, static_cast<long long>(after));
    }

    auto hung = run_ranks(3, args("three-hung"), path("three-hung"), {},
                          path("three-hung") + ".checkpoint/latest/state.json");
    QVERIFY(stopped_at_ms_ >= 0);
    for (int r : {0, 1}) {
      const auto& e = hung[static_cast<size_t>(r)].err;
      QCOMPARE(hung[static_cast<size_t>(r)].code, 1);
      QVERIFY2(e.contains(QString("distributed rank %1 of 3: all-reduce failed after 3.").arg(r)),
               qPrintable(e));
      QVERIFY2(e.contains("rank 2 of 3 stopped answering (dead or hung) after pruning step "),
               qPrintable(e));
      QVERIFY2(!one_line(e).contains('\n'), qPrintable(e));
      // --dist-timeout 3, then the heartbeat's silence (1 s), a few seconds for the rest.
      const qint64 after = ended_ms_[static_cast<size_t>(r)] - stopped_at_ms_;
      QVERIFY2(after < 3000 + 5000,
               qPrintable(QString("rank %1 stopped %2 ms after rank 2 hung").arg(r).arg(after)));
      qInfo("rank %d of 3 stopped %lld ms after rank 2 hung (--dist-timeout 3)", r,
            static_cast<long long>(after));
    }

    auto root = run_ranks(3, args("three-root"), path("three-root"),
                          {{0, {"LORASHEAR_TEST_KILL_AT_STEP", "5"}}});
    for (int r : {1, 2}) {
      const auto& e = root[static_cast<size_t>(r)].err;
      QCOMPARE(root[static_cast<size_t>(r)].code, 1);
      QVERIFY2(e.contains("rank 0 (the store host 127.0.0.1:") &&
                   e.contains(") is unreachable: it died or hangs"),
               qPrintable(e));
      QVERIFY2(!one_line(e).contains('\n'), qPrintable(e));
    }
  }

  // torchrun's variables, Slurm's under srun (each torchrun variable wins on its own), the
  // host list's first host and the port from the job id; bad values in one line naming the
  // variable.
  void slurmVariablesGiveTheRanks() {
    using Env = std::map<std::string, std::string>;
    const Env srun = {{"SLURM_PROCID", "3"},
                      {"SLURM_NTASKS", "8"},
                      {"SLURM_LOCALID", "1"},
                      {"SLURM_JOB_ID", "123456"},
                      {"SLURM_STEP_NODELIST", "gpu[07-08,11],cpu1"},
                      {"SLURM_JOB_NODELIST", "gpu[01-16]"}};
    auto o = dist::DistOptions::from_env(std::chrono::seconds(5), fake_env(srun));
    QCOMPARE(o.rank, 3);
    QCOMPARE(o.world_size, 8);
    QCOMPARE(o.local_rank, 1);
    QCOMPARE(o.master_addr, std::string("gpu07"));
    QCOMPARE(o.master_port, dist::kSlurmPortBase + 456);
    QCOMPARE(o.source, std::string("slurm"));
    QCOMPARE(o.timeout, std::chrono::milliseconds(5000));

    auto step = srun;
    step["SLURM_STEP_NUM_TASKS"] = "4";  // srun -n 4 inside an allocation of 8
    step.erase("SLURM_STEP_NODELIST");
    step.erase("SLURM_LOCALID");
    o = dist::DistOptions::from_env(std::chrono::seconds(5), fake_env(step));
    QCOMPARE(o.world_size, 4);
    QCOMPARE(o.local_rank, 3);  // no SLURM_LOCALID: the rank
    QCOMPARE(o.master_addr, std::string("gpu01"));

    // torchrun inside a Slurm job: its variables win.
    auto torchrun = srun;
    for (const auto& [k, v] : Env{{"RANK", "1"},
                                  {"WORLD_SIZE", "2"},
                                  {"LOCAL_RANK", "0"},
                                  {"MASTER_ADDR", "head"},
                                  {"MASTER_PORT", "1234"}})
      torchrun[k] = v;
    o = dist::DistOptions::from_env(std::chrono::seconds(5), fake_env(torchrun));
    QCOMPARE(o.rank, 1);
    QCOMPARE(o.world_size, 2);
    QCOMPARE(o.local_rank, 0);
    QCOMPARE(o.master_addr, std::string("head"));
    QCOMPARE(o.master_port, 1234);
    QCOMPARE(o.source, std::string("env"));

    // A batch script exporting WORLD_SIZE and MASTER_*, srun giving each task its rank.
    o = dist::DistOptions::from_env(
        std::chrono::seconds(5),
        fake_env({{"WORLD_SIZE", "4"}, {"MASTER_PORT", "4000"}, {"SLURM_PROCID", "2"}}));
    QCOMPARE(o.rank, 2);
    QCOMPARE(o.world_size, 4);
    QCOMPARE(o.master_addr, std::string("127.0.0.1"));

    // A batch script without srun (no SLURM_PROCID), or nothing at all: one process.
    o = dist::DistOptions::from_env(std::chrono::seconds(5),
                                    fake_env({{"SLURM_NTASKS", "4"}, {"SLURM_JOB_ID", "7"}}));
    QCOMPARE(o.world_size, 1);
    o = dist::DistOptions::from_env(std::chrono::seconds(5), fake_env({}));
    QCOMPARE(o.world_size, 1);
    QCOMPARE(o.source, std::string());

    QCOMPARE(dist::slurm_first_host("node[01-04,07]"), std::string("node01"));
    QCOMPARE(dist::slurm_first_host("a,b"), std::string("a"));
    QCOMPARE(dist::slurm_first_host("rack[2-3]-gpu[5,9]"), std::string("rack2-gpu5"));
    QCOMPARE(dist::slurm_first_host("solo"), std::string("solo"));

    // Two processes with Slurm's variables only, as srun starts them: `eval ppl` on 2 ranks.
    int job = 4242;
    while (!port_is_free(dist::kSlurmPortBase + job % 1000))
      ++job;
    std::vector<std::unique_ptr<QProcess>> ps;
    for (int r = 0; r < 2; ++r) {
      auto env = QProcessEnvironment::systemEnvironment();
      for (const auto* v : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"})
        env.remove(v);
      env.insert("SLURM_PROCID", QString::number(r));
      env.insert("SLURM_LOCALID", QString::number(r));
      env.insert("SLURM_NTASKS", "2");
      env.insert("SLURM_JOB_ID", QString::number(job));
      env.insert("SLURM_STEP_NODELIST", "localhost");
      env.insert("OMP_NUM_THREADS", "1");
      auto p = std::make_unique<QProcess>();
      p->setProcessEnvironment(env);
      p->start(LORASHEAR_CLI_PATH,
               {"eval", "ppl", QString::fromStdString(test::source_path("resources/demo-model")),
                "--text", text_, "--seq-len", "64", "--max-windows", "20", "--json"});
      ps.push_back(std::move(p));
    }
    for (auto& p : ps)
      QVERIFY(p->waitForFinished(60000));
    const auto err = QString::fromUtf8(ps[0]->readAllStandardError());
    QVERIFY2(ps[0]->exitCode() == 0 && ps[1]->exitCode() == 0, qPrintable(err));
    const auto j = nlohmann::json::parse(ps[0]->readAllStandardOutput().toStdString());
    QCOMPARE(j.value("world_size", 0), 2);
    QVERIFY(ps[1]->readAllStandardOutput().isEmpty());

    const std::vector<std::pair<Env, std::string>> bad = {
        {{{"SLURM_PROCID", "x"}, {"SLURM_NTASKS", "2"}}, "SLURM_PROCID='x' is not a number"},
        {{{"SLURM_PROCID", "2"}, {"SLURM_NTASKS", "2"}, {"SLURM_JOB_ID", "1"}},
         "SLURM_PROCID=2 is not below SLURM_NTASKS=2 (ranks are 0..1)"},
        {{{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "two"}}, "SLURM_NTASKS='two' is not a number"},
        {{{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "0"}}, "SLURM_NTASKS=0 must be at least 1"},
        {{{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_LOCALID", "-1"}},
         "SLURM_LOCALID=-1 must be >= 0"},
        {{{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}}, "SLURM_NTASKS=2 needs MASTER_PORT"},
        {{{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_JOB_ID", "12a"}},
         "SLURM_JOB_ID='12a' is not a number"},
        {{{"SLURM_PROCID", "0"},
          {"SLURM_NTASKS", "2"},
          {"SLURM_JOB_ID", "9"},
          {"SLURM_STEP_NODELIST", "node[01-04"}},
         "SLURM_STEP_NODELIST='node[01-04' is not a Slurm host list ('[' without ']')"},
        {{{"SLURM_PROCID", "0"},
          {"SLURM_NTASKS", "2"},
          {"SLURM_JOB_ID", "9"},
          {"SLURM_JOB_NODELIST", "node[a-b]"}},
         "SLURM_JOB_NODELIST='node[a-b]' is not a Slurm host list ('a-b' in brackets"},
        {{{"SLURM_PROCID", "0"},
          {"SLURM_NTASKS", "2"},
          {"SLURM_JOB_ID", "9"},
          {"SLURM_STEP_NODELIST", ",a"}},
         "SLURM_STEP_NODELIST=',a' is not a Slurm host list (no host name first)"},
        {{{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}},
         "MASTER_PORT=70000 is not a port (1..65535)"},
        {{{"WORLD_SIZE", "2"}}, "WORLD_SIZE=2 without RANK"},
    };
    for (const auto& [env, says] : bad) {
      const auto e = from_env_error(env);
      QVERIFY2(e.find(says) != std::string::npos, (e + " | expected: " + says).c_str());
      QVERIFY2(e.find('\n') == std::string::npos, e.c_str());
    }
  }

  // `eval ppl`, `eval tasks` (two formats, several batches of requests) and `analyze` on two
  // ranks print what one process prints: each rank scores its share, the sums are combined.
  void evaluationSplitsOverRanks() {
    const QString model =
        QString::fromStdString(test::source_path("resources/demo-model").string());
    QString problems;  // rank 1 prints nothing; every rank succeeds
    auto compare = [&](const QStringList& args, const QString& name) {
      auto one = run_ranks(1, args, path(name + "-one"));
      auto two = run_ranks(2, args, path(name + "-two"));
      if (one[0].code != 0 || two[0].code != 0 || two[1].code != 0)
        problems += name + ": " + one[0].err + two[0].err + two[1].err + "\n";
      if (!two[1].out.isEmpty()) problems += name + ": rank 1 printed " + two[1].out + "\n";
      return std::make_pair(nlohmann::json::parse(one[0].out.toStdString(), nullptr, false),
                            nlohmann::json::parse(two[0].out.toStdString(), nullptr, false));
    };
    const auto relative = [](double a, double b) {
      return std::abs(a - b) / std::max(std::abs(a), 1e-300);
    };

    // Perplexity: 15 batches of 4 windows, 8 on rank 0 and 7 on rank 1.
    auto [p1, p2] = compare({"eval", "ppl", model, "--text", text_, "--seq-len", "64", "--batch",
                             "4", "--max-windows", "60", "--json"},
                            "ppl");
    QVERIFY2(problems.isEmpty(), qPrintable(problems));
    QVERIFY(!p1.is_discarded() && !p2.is_discarded());
    QCOMPARE(p2.value("world_size", 0), 2);
    QCOMPARE(p2["windows"], p1["windows"]);
    QCOMPARE(p2["predictions"], p1["predictions"]);
    const double ppl_diff = relative(p1["ppl"].get<double>(), p2["ppl"].get<double>());
    const double nll_diff = relative(p1["mean_nll"].get<double>(), p2["mean_nll"].get<double>());
    QVERIFY2(ppl_diff <= 1e-9 && nll_diff <= 1e-9,
             qPrintable(QString("ppl %1, mean NLL %2 (relative)").arg(ppl_diff).arg(nll_diff)));

    // Tasks: multiple choice (contexts of many lengths: several batches) and LAMBADA's format.
    const char* names[] = {"Lily", "Tom", "Ben", "Sue", "Max", "Anna"};
    const char* things[] = {"ball", "cat", "tree", "boat", "cake", "dog", "kite"};
    std::string mc, lambada;
    for (int i = 0; i < 36; ++i) {
      std::string query = std::string("Once upon a time ") + names[i % 6] + " had a";
      for (int k = 0; k < i % 5; ++k)
        query += std::string(" very big ") + things[(i + k) % 7];
      nlohmann::json choices = nlohmann::json::array();
      for (int c = 0; c < 3; ++c)
        choices.push_back(things[(i + c * 2) % 7]);
      mc += nlohmann::json{{"query", query}, {"choices", choices}, {"gold", i % 3}}.dump() + "\n";
      if (i < 12)
        lambada += nlohmann::json{{"context", std::string("One day ") + names[i % 6] +
                                                  " saw a big " + things[i % 7] + " and the"},
                                  {"continuation", things[(i + 1) % 7]}}
                       .dump() +
                   "\n";
    }
    test::write_all(path("story_choice.jsonl").toStdString(), mc);
    test::write_all(path("story_lambada.jsonl").toStdString(), lambada);
    auto [t1, t2] = compare({"eval", "tasks", model, "--data",
                             path("story_choice.jsonl") + "," + path("story_lambada.jsonl"),
                             "--batch", "4", "--json", "--per-item"},
                            "tasks");
    QVERIFY2(problems.isEmpty(), qPrintable(problems));
    QVERIFY(!t1.is_discarded() && !t2.is_discarded());
    QCOMPARE(t2.value("world_size", 0), 2);
    QCOMPARE(t2["tasks"].size(), size_t{2});
    double ll_diff = 0;
    for (size_t i = 0; i < 2; ++i) {
      const auto &a = t1["tasks"][i], &b = t2["tasks"][i];
      for (const char* k : {"items", "requests", "correct", "correct_norm", "acc", "acc_norm"})
        QVERIFY2(a[k] == b[k], qPrintable(QString("%1: %2 vs %3")
                                              .arg(k)
                                              .arg(QString::fromStdString(a[k].dump()))
                                              .arg(QString::fromStdString(b[k].dump()))));
      QCOMPARE(b["predictions"], a["predictions"]);
      const auto la = a["lls"], lb = b["lls"];
      QCOMPARE(lb.size(), la.size());
      for (size_t j = 0; j < la.size(); ++j)
        for (size_t k = 0; k < la[j].size(); ++k)
          ll_diff = std::max(ll_diff, relative(la[j][k].get<double>(), lb[j][k].get<double>()));
    }
    const double lambada_ppl_diff =
        relative(t1["tasks"][1]["ppl"].get<double>(), t2["tasks"][1]["ppl"].get<double>());
    QVERIFY2(ll_diff <= 1e-9 && lambada_ppl_diff <= 1e-9,
             qPrintable(QString("lls %1, ppl %2").arg(ll_diff).arg(lambada_ppl_diff)));

    // Knowledge analysis: node groups split, losses combined.
    auto [k1, k2] =
        compare({"analyze", model, "--text", text_, "--seq-len", "64", "--windows", "6", "--json"},
                "analyze");
    QVERIFY2(problems.isEmpty(), qPrintable(problems));
    QVERIFY(!k1.is_discarded() && !k2.is_discarded());
    QCOMPARE(k2.value("world_size", 0), 2);
    QCOMPARE(k2["unprunable"], k1["unprunable"]);
    QCOMPARE(k2["node_groups"].size(), k1["node_groups"].size());
    QVERIFY(k1["node_groups"].size() >= 4);
    double knowledge_diff = relative(k1["base_loss"].get<double>(), k2["base_loss"].get<double>());
    for (size_t i = 0; i < k1["node_groups"].size(); ++i) {
      const auto &a = k1["node_groups"][i], &b = k2["node_groups"][i];
      QCOMPARE(b["id"], a["id"]);
      QCOMPARE(b["zeroed"], a["zeroed"]);
      knowledge_diff =
          std::max(knowledge_diff, relative(a["loss"].get<double>(), b["loss"].get<double>()));
    }
    QVERIFY2(knowledge_diff <= 1e-9, qPrintable(QString::number(knowledge_diff)));
    qInfo(
        "2 ranks vs 1 process (relative): ppl %.3g, mean NLL %.3g; task lls %.3g, lambada ppl "
        "%.3g; knowledge losses %.3g",
        ppl_diff, nll_diff, ll_diff, lambada_ppl_diff, knowledge_diff);
  }

  // Recovery data parallel: `prune --recover` (two categories, adaptive sampling, instruction
  // stage with early-stopping evaluations) and `lorashear recover` under launch give the losses,
  // category weights and weights of one process.
  void recoveryTwoRanksMatchOneProcess() {
    const QString dom1 = path("dom1.txt"), dom2 = path("dom2.txt"), ins = path("ins.json");
    const auto text = test::read_all(text_.toStdString());
    test::write_all(dom1.toStdString(), text.substr(0, 20000));
    test::write_all(dom2.toStdString(), text.substr(30000, 20000));
    auto records = nlohmann::json::array();
    const char* things[] = {"cat", "dog", "sun", "tree", "ball"};
    for (int i = 0; i < 60; ++i)
      records.push_back({{"instruction", "Name thing " + std::to_string(i) + "."},
                         {"input", i % 2 ? "" : "a short answer"},
                         {"output", std::string("It is the ") + things[i % 5] +
                                        (i % 3 ? "." : ", and it is very nice.")}});
    test::write_all(ins.toStdString(), records.dump());
    const QStringList recovery{
        "--recover", "--domain",        dom1, "--domain",           dom2, "--instruct",
        ins,         "--recover-steps", "20", "--stage1-batch",     "4",  "--stage2-batch",
        "4",         "--eval-every",    "5",  "--reestimate-every", "4"};
    auto args = prune_args(path("rec-one")) + recovery;
    args.replace(args.indexOf("40"), "20");
    auto single = run_ranks(1, args, path("rec-single"));
    QVERIFY2(single[0].code == 0, qPrintable(single[0].err));
    args = prune_args(path("rec-two")) + recovery;
    args.replace(args.indexOf("40"), "20");
    auto ranks = run_ranks(2, args, path("rec-ranks"));
    QVERIFY2(ranks[0].code == 0, qPrintable(ranks[0].err));
    QVERIFY2(ranks[1].code == 0, qPrintable(ranks[1].err));
    const auto a = nlohmann::json::parse(single[0].out.toStdString())["recovery"];
    const auto b = nlohmann::json::parse(ranks[0].out.toStdString())["recovery"];
    double worst = 0;
    for (const char* stage : {"stage1", "stage2"}) {
      const auto la = a[stage]["loss"].get<std::vector<double>>();
      const auto lb = b[stage]["loss"].get<std::vector<double>>();
      QVERIFY(!la.empty());
      QCOMPARE(lb.size(), la.size());
      for (size_t i = 0; i < la.size(); ++i)
        worst = std::max(worst, std::abs(la[i] - lb[i]) / std::abs(la[i]));
    }
    QVERIFY2(worst <= 1e-5, qPrintable(QString("recovery loss differs by %1").arg(worst)));
    // The category weights of every estimate (adaptive sampling) and the validation losses.
    const auto ha = a["stage1"]["history"], hb = b["stage1"]["history"];
    QCOMPARE(hb.size(), ha.size());
    QVERIFY(ha.size() >= 2);
    for (size_t i = 0; i < ha.size(); ++i)
      for (auto it = ha[i]["weights"].begin(); it != ha[i]["weights"].end(); ++it)
        QVERIFY(std::abs(it.value().get<double>() - hb[i]["weights"][it.key()].get<double>()) <=
                1e-5);
    QCOMPARE(b["stage2"]["validation"].size(), a["stage2"]["validation"].size());
    const auto w = weight_difference(path("rec-one").toStdString() + "/model.safetensors",
                                     path("rec-two").toStdString() + "/model.safetensors");
    QVERIFY2(w.normwise <= 1e-5 && w.elementwise <= 1e-4,
             qPrintable(QString("%1 normwise, %2 elementwise").arg(w.normwise).arg(w.elementwise)));
    qInfo(
        "prune --recover: 2 ranks vs 1 process: loss %.3g, weights %.3g normwise, %.3g "
        "elementwise",
        worst, w.normwise, w.elementwise);

    // `lorashear recover` of the pruned model, under launch.
    const QStringList rec{"recover",         path("rec-one"),
                          "--domain",        dom1,
                          "--domain",        dom2,
                          "--sampling",      "uniform",
                          "--recover-steps", "12",
                          "--stage1-batch",  "4",
                          "--seq-len",       "64",
                          "--quiet",         "--json",
                          "--overwrite"};
    auto env = QProcessEnvironment::systemEnvironment();
    env.insert("OMP_NUM_THREADS", "1");
    auto one = test::run_process(LORASHEAR_CLI_PATH, rec + QStringList{"--out", path("recov-one")},
                                 120000, env);
    QVERIFY2(one.code == 0, qPrintable(one.err));
    auto two = test::run_process(
        LORASHEAR_CLI_PATH,
        QStringList{"launch", "--nproc", "2", "--"} + rec + QStringList{"--out", path("recov-two")},
        120000, env);
    QVERIFY2(two.code == 0, qPrintable(two.err));
    const auto ra = nlohmann::json::parse(one.out.toStdString());
    const auto rb = nlohmann::json::parse(two.out.toStdString());
    QCOMPARE(rb.value("world_size", 0), 2);
    const auto la = ra["stage1"]["loss"].get<std::vector<double>>();
    const auto lb = rb["stage1"]["loss"].get<std::vector<double>>();
    QCOMPARE(lb.size(), la.size());
    for (size_t i = 0; i < la.size(); ++i)
      QVERIFY(std::abs(la[i] - lb[i]) <= 1e-5 * std::abs(la[i]));
    const auto rw = weight_difference(path("recov-one").toStdString() + "/model.safetensors",
                                      path("recov-two").toStdString() + "/model.safetensors");
    QVERIFY2(rw.normwise <= 1e-5, qPrintable(QString::number(rw.normwise)));
  }

  // `lorashear launch --nproc 2 -- prune …` on this machine: the result of the two ranks above;
  // Ctrl-C reaches every rank (exit 130, nothing written); the first failing rank is named.
  void launchRunsTheRanks() {
    const QString ref = path("two-lhspg"), out = path("launched");
    if (!std::filesystem::exists(ref.toStdString() + "/model.safetensors"))
      QSKIP("needs twoRanksMatchOneProcess(lhspg)");
    auto env = QProcessEnvironment::systemEnvironment();
    for (const auto* v :
         {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT", "LORASHEAR_TEST_KILL_AT_STEP"})
      env.remove(v);
    env.insert("OMP_NUM_THREADS", "1");
    auto r = test::run_process(LORASHEAR_CLI_PATH,
                               QStringList{"launch", "--nproc", "2", "--"} + prune_args(out),
                               120000, env);
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QCOMPARE(nlohmann::json::parse(r.out.toStdString()).value("world_size", 0), 2);
    const auto w = weight_difference(ref.toStdString() + "/model.safetensors",
                                     out.toStdString() + "/model.safetensors");
    QVERIFY2(w.elementwise <= 1e-6, qPrintable(QString::number(w.elementwise)));

    auto killed_env = env;
    killed_env.insert("LORASHEAR_TEST_KILL_AT_STEP", "5");
    auto args = prune_args(path("launch-killed"));
    args.replace(args.indexOf("40"), "400");
    r = test::run_process(LORASHEAR_CLI_PATH, QStringList{"launch", "--nproc", "2", "--"} + args,
                          60000, killed_env);
    QCOMPARE(r.code, 128 + SIGKILL);
    QVERIFY2(r.err.contains(QRegularExpression("rank [01] of 2 was killed by signal 9")),
             qPrintable(r.err));

    args = prune_args(path("launch-interrupted"));
    args.replace(args.indexOf("40"), "4000");
    QProcess p;
    p.setProcessEnvironment(env);
    p.start(LORASHEAR_CLI_PATH, QStringList{"launch", "--nproc", "2", "--"} + args);
    QVERIFY(p.waitForStarted());
    // Once the ranks train (the first checkpoint is written), not during their start, when a
    // loaded machine may not have installed their Ctrl-C handler yet.
    QTRY_VERIFY_WITH_TIMEOUT(
        QFileInfo::exists(path("launch-interrupted") + ".checkpoint/latest/state.json"), 60000);
    ::kill(static_cast<pid_t>(p.processId()), SIGINT);
    QVERIFY(p.waitForFinished(30000));
    const auto err = QString::fromUtf8(p.readAllStandardError());
    QCOMPARE(p.exitCode(), 130);
    QVERIFY2(err.contains("cancelled") && err.contains("of 2 exited with code 130"),
             qPrintable(err));
    QVERIFY(!std::filesystem::exists(path("launch-interrupted").toStdString()));

    r = test::run_process(LORASHEAR_CLI_PATH, {"launch", "--nproc", "0", "--", "info"}, 20000, env);
    QCOMPARE(r.code, 2);
  }
};

QTEST_GUILESS_MAIN(TestDistributed)
#include "test_distributed.moc"
