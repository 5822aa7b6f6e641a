// The `lorashear` command line: exit codes, --json output, reference perplexity of stories260K,
// and bad input files reported in one line naming the file.
#include <QtTest>

#include <algorithm>

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QTemporaryDir>

#include <fstream>

#include "lorashear/io/loader.h"
#include "test_support.h"

using namespace lorashear;

namespace {

using Run = test::ProcessResult;

Run run_cli(const QStringList& args, int timeout_ms = 300000) {
  return test::run_process(LORASHEAR_CLI_PATH, args, timeout_ms);
}

QString shared(const char* rel) {
  return QString::fromStdString(test::shared_path(rel).string());
}

QString demo_model() {
  return QString::fromStdString(test::source_path("resources/demo-model").string());
}

QByteArray read_all(const QString& path) {
  QFile f(path);
  return f.open(QIODevice::ReadOnly) ? f.readAll() : QByteArray();
}

// 60 lines of a short story: enough text for a few training windows of 32 tokens.
void write_story_text(const QString& path) {
  std::ofstream f(path.toStdString());
  for (int i = 0; i < 60; ++i)
    f << "Once upon a time, there was a little girl named Lily. She liked to play in the park "
         "with her dog. One day, the sun was bright and the sky was blue.\n";
}

}  // namespace

class TestCli : public QObject {
  Q_OBJECT
 private slots:
  void versionAndHelp() {
    auto v = run_cli({"--version"});
    QCOMPARE(v.code, 0);
    QVERIFY(v.out.contains("lorashear 0."));
    // What a bug report needs: the commit, LibTorch, BLAS, CUDA, the attention kernel variant.
    for (const char* part : {"(commit ", "LibTorch 1.", "BLAS: ", "CUDA: ", "Qt 6.", "Graphviz ",
                             "CPU attention kernel: "})
      QVERIFY2(v.out.contains(part), part);
    auto h = run_cli({"--help"});
    QCOMPARE(h.code, 0);
    for (const char* cmd : {"info", "generate", "eval", "convert"})
      QVERIFY2(h.out.contains(cmd), cmd);
  }

  // The bash completion is generated from the command tree: every subcommand and its options are
  // in it, and bash accepts the script and completes from it.
  void bashCompletion() {
    auto c = run_cli({"completion", "bash"});
    QCOMPARE(c.code, 0);
    QVERIFY(c.out.contains("complete -F _lorashear lorashear"));
    QTemporaryDir dir;
    QFile script(dir.filePath("lorashear.bash"));
    QVERIFY(script.open(QIODevice::WriteOnly));
    script.write(c.out.toUtf8());
    script.close();
    const auto complete = [&](const QString& words, int cword) {
      QProcess bash;
      bash.start("bash", {"-c", QString("source '%1'; COMP_WORDS=(%2); COMP_CWORD=%3; _lorashear; "
                                        "echo \"${COMPREPLY[*]}\"")
                                    .arg(script.fileName(), words)
                                    .arg(cword)});
      bash.waitForFinished(10000);
      return QString::fromUtf8(bash.readAllStandardOutput()).trimmed();
    };
    QCOMPARE(complete("lorashear ev", 1), QString("eval"));
    QCOMPARE(complete("lorashear eval ''", 2), QString("ppl tasks"));
    QCOMPARE(complete("lorashear --threads 2 eval ppl m --pre", 6), QString("--preset"));
    QCOMPARE(complete("lorashear eval ppl m --preset ''", 5), QString("windows-128 windows-ctx"));
    QVERIFY(complete("lorashear prune --", 2).contains("--ratio"));
    QVERIFY(complete("lorashear prune --", 2).contains("--json"));  // global flags too
  }

  // plan-memory from a config alone: the items add up, the weights are parameters × dtype bytes,
  // ranks split the batch (activations per rank halve, weights do not), bad splits are refused.
  void planMemory() {
    LORASHEAR_REQUIRE_SHARED("configs/llama-2-7b/config.json");
    const QString config =
        QString::fromStdString(test::shared_path("configs/llama-2-7b/config.json").string());
    const auto plan = [&](const QStringList& extra) {
      auto r = run_cli(QStringList{"--json", "plan-memory", config} + extra);
      if (r.code != 0) qWarning() << r.err;
      return QJsonDocument::fromJson(r.out.toUtf8()).object();
    };
    auto one = plan({"--batch", "4", "--seq-len", "257"});
    QCOMPARE(one["parameters"].toDouble(), 6738415616.0);
    // What is held throughout + the larger of a step's items and the between-steps ones.
    const auto total = [](const QJsonObject& p) {
      double held = 0, step = 0, between = 0;
      for (const auto& it : p["items"].toArray()) {
        const auto when = it.toObject()["when"].toString();
        (when == "step"            ? step
         : when == "between_steps" ? between
                                   : held) += it.toObject()["bytes"].toDouble();
      }
      return held + std::max(step, between);
    };
    double weights = 0, activations = 0;
    for (const auto& it : one["items"].toArray()) {
      if (it.toObject()["name"].toString() == "base weights")
        weights = it.toObject()["bytes"].toDouble();
      if (it.toObject()["name"].toString().startsWith("activations"))
        activations = it.toObject()["bytes"].toDouble();
    }
    QCOMPARE(total(one), one["per_rank_bytes"].toDouble());
    QCOMPARE(weights, 6738415616.0 * 4);
    QCOMPARE(one["tokens_per_rank"].toInt(), 4 * 256);
    auto two = plan({"--batch", "4", "--seq-len", "257", "--world-size", "2"});
    QCOMPARE(two["tokens_per_rank"].toInt(), 2 * 256);
    QCOMPARE(two["total_bytes"].toDouble(), 2 * two["per_rank_bytes"].toDouble());
    for (const auto& it : two["items"].toArray())
      if (it.toObject()["name"].toString().startsWith("activations"))
        QCOMPARE(it.toObject()["bytes"].toDouble(), activations / 2);
    // Checkpointing keeps each layer's input and one layer's intermediates instead of all.
    auto ckpt = plan({"--batch", "4", "--seq-len", "257", "--checkpoint-activations"});
    double kept = 0;
    for (const auto& it : ckpt["items"].toArray())
      if (it.toObject()["name"].toString().startsWith("layer inputs") ||
          it.toObject()["name"].toString().startsWith("one layer"))
        kept += it.toObject()["bytes"].toDouble();
    QVERIFY(kept > 0 && kept < activations / 4);
    QCOMPARE(total(ckpt), ckpt["per_rank_bytes"].toDouble());
    QVERIFY(ckpt["per_rank_bytes"].toDouble() < one["per_rank_bytes"].toDouble() - activations / 2);
    auto bf16 = run_cli({"--json", "--dtype", "bf16", "plan-memory", config});
    QVERIFY(bf16.out.contains(QString::number(6738415616LL * 2)));
    auto bad = run_cli({"plan-memory", config, "--batch", "3", "--world-size", "2"});
    QCOMPARE(bad.code, 2);
    QVERIFY2(bad.err.contains("does not split"), qPrintable(bad.err));
    auto text = run_cli({"plan-memory", config});
    QCOMPARE(text.code, 0);
    QVERIFY(text.out.contains("per rank") && text.out.contains("available"));
  }

  void usageErrorsExitTwo() {
    QCOMPARE(run_cli({}).code, 2);
    QCOMPARE(run_cli({"info"}).code, 2);        // MODEL missing
    QCOMPARE(run_cli({"frobnicate"}).code, 2);  // unknown subcommand
    QCOMPARE(run_cli({"info", "x", "--bogus"}).code, 2);
  }

  void missingModelExitsThree() {
    auto r = run_cli({"info", "/nonexistent/model-dir"});
    QCOMPARE(r.code, 3);
    QVERIFY2(r.err.contains("/nonexistent/model-dir"), qPrintable(r.err));
    QCOMPARE(r.err.trimmed().count('\n'), 0);  // one line
  }

  void truncatedSafetensorsExitsThree() {
    QTemporaryDir dir;
    auto cfg = ModelConfig::uniform(40, 16, 1, 2, 1, 24, 8);
    LlamaModel m(cfg);
    m->init_random(1);
    save_hf(*m, nullptr, dir.path().toStdString());
    const auto file = dir.filePath("model.safetensors").toStdString();
    std::filesystem::resize_file(file, std::filesystem::file_size(file) - 100);
    auto r = run_cli({"info", dir.path()});
    QCOMPARE(r.code, 3);
    QVERIFY2(r.err.contains("model.safetensors"), qPrintable(r.err));
  }

  void infoJsonOnStories260K() {
    LORASHEAR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
    auto r = run_cli({"info", shared("models/stories260K/stories260K.bin"), "--json"});
    QCOMPARE(r.code, 0);
    auto j = QJsonDocument::fromJson(r.out.toUtf8()).object();
    QCOMPARE(j["format"].toString(), QString("llama2c"));
    QCOMPARE(j["config"].toObject()["num_key_value_heads"].toInt(), 4);
    QCOMPARE(j["config"].toObject()["num_hidden_layers"].toInt(), 5);
    QCOMPARE(j["layers"].toArray().size(), 5);
    QCOMPARE(j["tokenizer"].toObject()["vocab_size"].toInt(), 512);
  }

  // The reference figure from ../shared/README.md: windows-512, 200 windows → PPL 4.2695.
  void perplexityOfStories260KMatchesReference() {
    LORASHEAR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
    LORASHEAR_REQUIRE_SHARED("data/text/tinystories_val_subset.txt");
    auto r = run_cli({"eval", "ppl", shared("models/stories260K/stories260K.bin"), "--text",
                      shared("data/text/tinystories_val_subset.txt"), "--seq-len", "512",
                      "--max-windows", "200", "--batch", "8", "--json"});
    QCOMPARE(r.code, 0);
    auto j = QJsonDocument::fromJson(r.out.toUtf8()).object();
    const double ppl = j["ppl"].toDouble();
    QVERIFY2(std::abs(ppl - 4.2695) / 4.2695 < 0.002, qPrintable(QString("ppl %1").arg(ppl)));
    QCOMPARE(j["windows"].toInt(), 200);
    QCOMPARE(j["text_tokens"].toInt(), 393012);
    QVERIFY(j["protocol"].toString().startsWith("windows-512, 200 windows"));
  }

  void generateGreedyFromBos() {
    LORASHEAR_REQUIRE_SHARED("models/stories260K/stories260K.gguf");
    auto r = run_cli({"generate", shared("models/stories260K/stories260K.gguf"), "-n", "40"});
    QCOMPARE(r.code, 0);
    QVERIFY2(r.out.startsWith("Once upon a time, there was a little girl named Lily."),
             qPrintable(r.out));
  }

  void convertThenReload() {
    LORASHEAR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
    QTemporaryDir dir;
    const QString out = dir.filePath("hf");
    auto c = run_cli({"convert", shared("models/stories260K/stories260K.bin"), "--to", "hf", out});
    QCOMPARE(c.code, 0);
    QVERIFY(QFile::exists(out + "/config.json"));
    QVERIFY(QFile::exists(out + "/model.safetensors"));
    QVERIFY(QFile::exists(out + "/tokenizer.model"));
    auto g = run_cli({"generate", out, "-n", "40"});
    QCOMPARE(g.code, 0);
    QVERIFY2(g.out.startsWith("Once upon a time, there was a little girl named Lily."),
             qPrintable(g.out));
  }

  void badTextFileExitsThree() {
    LORASHEAR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
    QTemporaryDir dir;
    const QString bad = dir.filePath("bad.jsonl");
    std::ofstream(bad.toStdString()) << "{\"text\": \"ok\"}\nnot json\n";
    auto r = run_cli({"eval", "ppl", shared("models/stories260K/stories260K.bin"), "--text", bad});
    QCOMPARE(r.code, 3);
    QVERIFY2(r.err.contains("bad.jsonl") && r.err.contains("line 2"), qPrintable(r.err));
  }

  void graphExportsDotAndJson() {
    QTemporaryDir dir;
    const QString dot = dir.filePath("g.dot"), json = dir.filePath("g.json");
    auto r = run_cli({"graph", demo_model(), "--dot", dot, "--json", json});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QVERIFY2(r.out.contains("with weights"), qPrintable(r.out));
    const auto text = QString::fromUtf8(read_all(dot));
    for (int l = 0; l < 4; ++l)
      QVERIFY(text.contains(QString("subgraph cluster_L%1 {").arg(l)));
    const auto j = QJsonDocument::fromJson(read_all(json)).object();
    QCOMPARE(j["format"].toString(), QString("lorashear-graph"));
    QCOMPARE(j["counts"].toObject()["prunable_node_groups"].toInt(), 8);
    QVERIFY(j["nodes"].toArray().size() > 50);
    QVERIFY(!QFile::exists(json + ".tmp"));

    // A config.json alone is traced without weights; --layers keeps a range.
    auto c = run_cli({"graph", demo_model() + "/config.json", "--json", json, "--layers", "1-2",
                      "--lora-rank", "4"});
    QVERIFY2(c.code == 0, qPrintable(c.err));
    QVERIFY2(c.out.contains("without weights"), qPrintable(c.out));
    const auto part = QJsonDocument::fromJson(read_all(json)).object();
    QCOMPARE(part["has_weights"].toBool(), false);
    QCOMPARE(part["lora"].toObject()["rank"].toInt(), 4);
    for (const auto n : part["nodes"].toArray()) {
      const int layer = n.toObject()["layer"].toInt();
      QVERIFY(layer == -1 || layer == 1 || layer == 2);
    }
  }

  void groupsTableAndRemovalPrediction() {
    auto r = run_cli({"groups", demo_model(), "--remove", "L0.attn.kv1,L3.mlp.c7"});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QVERIFY(r.out.contains("L3.mlp") && r.out.contains("hidden") && r.out.contains("no: "));
    QVERIFY2(r.out.contains("removing 2 variable groups"), qPrintable(r.out));
    auto j = run_cli({"groups", demo_model(), "--json", "--remove", "L0.attn.kv1"});
    QCOMPARE(j.code, 0);
    const auto o = QJsonDocument::fromJson(j.out.toUtf8()).object();
    const auto removal = o["removal"].toObject();
    QCOMPARE(removal["params_after"].toDouble(),
             o["params"].toDouble() - removal["params_removed"].toDouble());
    QVERIFY(removal["params_removed"].toDouble() > 0);
  }

  void groupsRefusesBadInput() {
    // Unknown group, unprunable group, removing every head: usage errors naming the id.
    auto r = run_cli({"groups", demo_model(), "--remove", "L0.attn.kv9"});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("L0.attn.kv9"), qPrintable(r.err));
    r = run_cli({"groups", demo_model(), "--remove", "hidden.c1"});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("not prunable"), qPrintable(r.err));
    r = run_cli({"groups", demo_model(), "--remove", "L1.attn.kv0,L1.attn.kv1"});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("L1.attn"), qPrintable(r.err));
    r = run_cli({"groups", demo_model(), "--lora-targets", "q_proj,wq"});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("wq"), qPrintable(r.err));
    // An inconsistent config.json: bad input, naming the file and the field.
    QTemporaryDir dir;
    const QString cfg = dir.filePath("config.json");
    std::ofstream(cfg.toStdString()) << R"({"vocab_size": 32, "hidden_size": 16})";
    r = run_cli({"graph", cfg});
    QCOMPARE(r.code, 3);
    QVERIFY2(r.err.contains("config.json") && r.err.contains("num_hidden_layers"),
             qPrintable(r.err));
    std::ofstream(cfg.toStdString()) << "{ not json";
    r = run_cli({"groups", cfg});
    QCOMPARE(r.code, 3);
    QVERIFY2(r.err.contains("not valid JSON"), qPrintable(r.err));
  }

  // --checkpoint-activations on changes memory, not the run: the same losses step by step, the
  // same removed groups; the report says whether it was on and why; auto on a small model is off.
  void pruneWithActivationCheckpointing() {
    QTemporaryDir dir;
    const QString text = dir.filePath("text.txt");
    write_story_text(text);
    const auto prune = [&](const QString& mode) {
      auto r = run_cli({"prune",
                        demo_model(),
                        "--ratio",
                        "0.3",
                        "--text",
                        text,
                        "--out",
                        dir.filePath(mode),
                        "--steps",
                        "10",
                        "--periods",
                        "2",
                        "--seq-len",
                        "32",
                        "--batch",
                        "2",
                        "--lora-rank",
                        "2",
                        "--checkpoint-activations",
                        mode,
                        "--json"});
      if (r.code != 0) qWarning() << r.err;
      return QJsonDocument::fromJson(r.out.toUtf8()).object();
    };
    const auto off = prune("off"), on = prune("on"), automatic = prune("auto");
    QCOMPARE(on["activation_checkpointing"].toObject()["on"].toBool(), true);
    QCOMPARE(off["activation_checkpointing"].toObject()["on"].toBool(), false);
    QCOMPARE(automatic["activation_checkpointing"].toObject()["on"].toBool(), false);
    QVERIFY(automatic["activation_checkpointing"].toObject()["why"].toString().contains("auto"));
    const auto loss_on = on["pruning"].toObject()["loss"].toArray();
    const auto loss_off = off["pruning"].toObject()["loss"].toArray();
    QCOMPARE(loss_on.size(), 10);
    QCOMPARE(loss_on.size(), loss_off.size());
    for (int i = 0; i < loss_on.size(); ++i)
      QVERIFY2(std::abs(loss_on[i].toDouble() - loss_off[i].toDouble()) <=
                   1e-5 * std::abs(loss_off[i].toDouble()),
               qPrintable(QString("step %1: %2 vs %3")
                              .arg(i + 1)
                              .arg(loss_on[i].toDouble())
                              .arg(loss_off[i].toDouble())));
    QCOMPARE(on["pruning"].toObject()["removed"].toArray(),
             off["pruning"].toObject()["removed"].toArray());
    auto bad = run_cli({"prune", demo_model(), "--ratio", "0.3", "--text", text, "--out",
                        dir.filePath("bad"), "--checkpoint-activations", "sometimes"});
    QCOMPARE(bad.code, 2);
  }

  void pruneWritesAModelThatLoads() {
    QTemporaryDir dir;
    const QString text = dir.filePath("text.txt"), out = dir.filePath("pruned");
    write_story_text(text);
    auto r = run_cli({"prune", demo_model(), "--ratio", "0.3", "--text", text, "--out", out,
                      "--steps", "12", "--periods", "2", "--seq-len", "32", "--batch", "2",
                      "--lora-rank", "2", "--json"});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    const auto report = QJsonDocument::fromJson(r.out.toUtf8()).object();
    const auto params = report["parameters"].toObject();
    QCOMPARE(params["after"].toDouble(),
             params["before"].toDouble() * (1 - params["planned_removed_ratio"].toDouble()));
    QVERIFY(std::abs(params["removed_ratio"].toDouble() - 0.3) < 0.03);
    QCOMPARE(report["pruning"].toObject()["zeroed_by_hard_projection"].toInt(), 0);
    QVERIFY(QFile::exists(out + "/pruning_report.json"));
    auto info = run_cli({"info", out, "--json"});
    QVERIFY2(info.code == 0, qPrintable(info.err));
    const auto j = QJsonDocument::fromJson(info.out.toUtf8()).object();
    QCOMPARE(j["parameters"].toObject()["total"].toDouble(), params["after"].toDouble());
    QVERIFY(run_cli({"eval", "ppl", out, "--text", text, "--seq-len", "32"}).code == 0);
    QCOMPARE(report["pruning"].toObject()["loss"].toArray().size(), 12);

    // --keep-adapter: the pruned base and the adapter apart (PEFT layout); base + adapter, and
    // the adapter merged by `convert`, score what the report says.
    const QString kept = dir.filePath("kept"), merged = dir.filePath("merged");
    r = run_cli({"prune",          demo_model(), "--ratio", "0.3", "--text",      text,
                 "--out",          kept,         "--steps", "12",  "--periods",   "2",
                 "--seq-len",      "32",         "--batch", "2",   "--lora-rank", "2",
                 "--keep-adapter", "--json"});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QVERIFY(QFile::exists(kept + "/adapter/adapter_config.json"));
    QVERIFY(QFile::exists(kept + "/adapter/adapter_model.safetensors"));
    auto ppl_of = [&](QStringList args) {
      args << "--text" << text << "--seq-len"
           << "32"
           << "--json";
      auto e = run_cli(QStringList{"eval", "ppl"} + args);
      if (e.code != 0) qWarning("%s", qPrintable(e.err));
      return QJsonDocument::fromJson(e.out.toUtf8()).object()["ppl"].toDouble();
    };
    const double with_adapter = ppl_of({kept, "--adapter", kept + "/adapter"});
    const double base_only = ppl_of({kept});
    QVERIFY(with_adapter > 0 && base_only > 0);
    QVERIFY2(with_adapter != base_only, "the adapter changes nothing");
    info = run_cli({"info", kept, "--adapter", kept + "/adapter"});
    QVERIFY2(info.code == 0 && info.out.contains("LoRA rank 2"), qPrintable(info.out + info.err));
    QVERIFY2(
        run_cli({"convert", kept, "--adapter", kept + "/adapter", "--to", "hf", merged}).code == 0,
        "convert --adapter");
    QVERIFY(std::abs(ppl_of({merged}) - with_adapter) < 1e-3 * with_adapter);
    auto missing =
        run_cli({"eval", "ppl", kept, "--adapter", dir.filePath("nowhere"), "--text", text});
    QCOMPARE(missing.code, 3);
    QVERIFY2(missing.err.contains("nowhere"), qPrintable(missing.err));
    QDir(kept).removeRecursively();
    QDir(kept + ".run").removeRecursively();
    QDir(merged).removeRecursively();

    // The knowledge analysis writes a plan that prune reads.
    const QString protect = dir.filePath("protect.json");
    auto an = run_cli({"analyze", demo_model(), "--text", text, "--seq-len", "32", "--windows", "4",
                       "--plan-out", protect, "--ratio", "0.25"});
    QVERIFY2(an.code == 0, qPrintable(an.err));
    QVERIFY2(an.out.contains("unprunable"), qPrintable(an.out));
    const auto plan_json = QJsonDocument::fromJson(read_all(protect)).object();
    QCOMPARE(plan_json["unprunable"].toArray().size(), 2);  // ceil(0.2 · 8 node groups)
    QFile::remove(protect);

    // Bad input: clear messages, nothing written.
    const QString out2 = dir.filePath("never");
    auto bad = run_cli({"prune", demo_model(), "--ratio", "1.5", "--text", text, "--out", out2});
    QCOMPARE(bad.code, 2);
    QVERIFY2(bad.err.contains("outside (0, 1)"), qPrintable(bad.err));
    const QString plan = dir.filePath("plan.json");
    std::ofstream(plan.toStdString()) << R"({"target_ratio": 0.2, "layer_ratios": {"9": 0.5}})";
    bad = run_cli(
        {"prune", demo_model(), "--plan", plan, "--text", text, "--out", out2, "--steps", "20"});
    QCOMPARE(bad.code, 2);
    QVERIFY2(bad.err.contains("layer 9") && bad.err.contains("0 to 3"), qPrintable(bad.err));
    bad = run_cli(
        {"prune", demo_model(), "--ratio", "0.2", "--text", text, "--out", out2, "--steps", "8"});
    QCOMPARE(bad.code, 2);
    QVERIFY2(bad.err.contains("at least 12 steps"), qPrintable(bad.err));
    const QString tiny = dir.filePath("tiny.txt");
    std::ofstream(tiny.toStdString()) << "Once upon a time.";
    bad = run_cli({"prune", demo_model(), "--ratio", "0.2", "--text", tiny, "--out", out2});
    QCOMPARE(bad.code, 3);
    QVERIFY2(bad.err.contains("tiny.txt") && bad.err.contains("short"), qPrintable(bad.err));
    bad = run_cli({"prune", demo_model(), "--ratio", "0.2", "--text", text, "--out",
                   text + "/sub"});  // under a file: cannot be created
    QCOMPARE(bad.code, 1);
    QVERIFY2(bad.err.startsWith("error:") && bad.err.contains("sub"), qPrintable(bad.err));
    bad = run_cli({"prune", demo_model(), "--ratio", "0.2", "--text", text, "--out", out});
    QCOMPARE(bad.code, 2);
    QVERIFY2(bad.err.contains("already exists"), qPrintable(bad.err));
    QVERIFY(!QFile::exists(out2));
    QCOMPARE(
        QDir(dir.path()).entryList(QDir::AllEntries | QDir::NoDotAndDotDot | QDir::Hidden).size(),
        6);  // text, pruned, plan, tiny, the runs' records pruned.run and never.run (failed:
             // the text was too short) — and no staging directory left behind
  }

  void pruneResumesAfterSigkill() {
    QTemporaryDir dir;
    const QString text = dir.filePath("text.txt");
    {
      std::ofstream f(text.toStdString());
      for (int i = 0; i < 80; ++i)
        f << "Tom and Sue went to the lake " << i % 7 << " times. They saw a big fish and a "
          << "small boat. The fish jumped and the children laughed.\n";
    }
    auto args = [&](const QString& out) {
      return QStringList{"prune",
                         demo_model(),
                         "--ratio",
                         "0.3",
                         "--text",
                         text,
                         "--out",
                         out,
                         "--steps",
                         "30",
                         "--periods",
                         "2",
                         "--seq-len",
                         "32",
                         "--batch",
                         "2",
                         "--lora-rank",
                         "2",
                         "--threads",
                         "1",
                         "--quiet",
                         "--checkpoint-every",
                         "4"};
    };
    const QString a = dir.filePath("a"), b = dir.filePath("b");
    auto whole = run_cli(args(a));
    QVERIFY2(whole.code == 0, qPrintable(whole.err));
    QVERIFY(!QDir(a + ".checkpoint").exists());  // removed once the run succeeded

    // Killed at step 18: the checkpoint of step 16 survives, nothing at the output.
    QProcess p;
    auto env = QProcessEnvironment::systemEnvironment();
    env.insert("LORASHEAR_TEST_KILL_AT_STEP", "18");
    p.setProcessEnvironment(env);
    p.start(LORASHEAR_CLI_PATH, args(b));
    QVERIFY(p.waitForFinished(300000));
    QCOMPARE(p.exitStatus(), QProcess::CrashExit);
    QVERIFY(!QDir(b).exists());
    const auto state =
        QJsonDocument::fromJson(read_all(b + ".checkpoint/latest/state.json")).object();
    QCOMPARE(state["step"].toInt(), 16);

    auto resumed = run_cli(args(b) << "--resume" << b + ".checkpoint");
    QVERIFY2(resumed.code == 0, qPrintable(resumed.err));
    QCOMPARE(read_all(b + "/model.safetensors"), read_all(a + "/model.safetensors"));
    const auto ra = QJsonDocument::fromJson(read_all(a + "/pruning_report.json")).object();
    const auto rb = QJsonDocument::fromJson(read_all(b + "/pruning_report.json")).object();
    QCOMPARE(rb["pruning"].toObject()["removed"], ra["pruning"].toObject()["removed"]);
    QCOMPARE(rb["pruning"].toObject()["final_loss"], ra["pruning"].toObject()["final_loss"]);

    // Resuming with other settings is refused.
    env.insert("LORASHEAR_TEST_KILL_AT_STEP", "10");
    p.setProcessEnvironment(env);
    const QString c = dir.filePath("c");
    p.start(LORASHEAR_CLI_PATH, args(c));
    QVERIFY(p.waitForFinished(300000));
    auto other = run_cli(args(c) << "--resume" << c + ".checkpoint"
                                 << "--lr"
                                 << "0.01");
    QCOMPARE(other.code, 2);
    QVERIFY2(other.err.contains("other settings"), qPrintable(other.err));
  }

  void recoverWithResumeAndBadData() {
    QTemporaryDir dir;
    const QString stories = dir.filePath("stories.txt"), web = dir.filePath("web.jsonl"),
                  inst = dir.filePath("inst.jsonl");
    {
      std::ofstream f(stories.toStdString());
      for (int i = 0; i < 80; ++i)
        f << "Lily and Tom played with a red ball " << i % 5 << " times. The sun was warm.\n\n";
      std::ofstream w(web.toStdString());
      for (int i = 0; i < 60; ++i)
        w << "{\"text\": \"Buy the best garden tools online. Free shipping on order " << i
          << ".\", \"source\": \"shop\"}"
          << "\n"
          << "{\"text\": \"The city council met on Monday to discuss the new park " << i
          << ".\", \"source\": \"news\"}"
          << "\n";
      std::ofstream n(inst.toStdString());
      for (int i = 0; i < 24; ++i)
        n << "{\"instruction\": \"Name a color.\", \"input\": \"\", \"output\": \"Red " << i
          << "\"}"
          << "\n";
    }
    auto args = [&](const QString& out) {
      return QStringList{"recover",
                         demo_model(),
                         "--dense",
                         demo_model(),
                         "--domain",
                         stories,
                         "--domain",
                         web,
                         "--instruct",
                         inst,
                         "--recover-steps",
                         "20",
                         "--seq-len",
                         "32",
                         "--val-sequences",
                         "4",
                         "--stage1-batch",
                         "2",
                         "--stage2-batch",
                         "2",
                         "--reestimate-every",
                         "5",
                         "--eval-every",
                         "3",
                         "--instruct-seq-len",
                         "192",
                         "--threads",
                         "1",
                         "--quiet",
                         "--checkpoint-every",
                         "4",
                         "--out",
                         out};
    };
    const QString a = dir.filePath("a"), b = dir.filePath("b");
    auto whole = run_cli(args(a) << "--json");
    QVERIFY2(whole.code == 0, qPrintable(whole.err));
    const auto rep = QJsonDocument::fromJson(whole.out.toUtf8()).object();
    const auto s1 = rep["stage1"].toObject();
    QCOMPARE(s1["steps"].toInt(), 14);
    QCOMPARE(s1["categories"].toArray().size(), 3);  // stories, shop, news
    QCOMPARE(rep["stage2"].toObject()["steps"].toInt(), 6);
    QVERIFY(QFile::exists(a + "/recovery_report.json"));
    QVERIFY(!QDir(a + ".checkpoint").exists());
    QVERIFY(run_cli({"eval", "ppl", a, "--text", stories, "--seq-len", "32"}).code == 0);

    // SIGKILL in stage 1 (step 10) and in stage 2 (step 17), then --resume: the same model.
    for (const char* kill : {"10", "17"}) {
      QDir(b).removeRecursively();
      QProcess p;
      auto env = QProcessEnvironment::systemEnvironment();
      env.insert("LORASHEAR_TEST_KILL_AT_STEP", kill);
      p.setProcessEnvironment(env);
      p.start(LORASHEAR_CLI_PATH, args(b));
      QVERIFY(p.waitForFinished(300000));
      QCOMPARE(p.exitStatus(), QProcess::CrashExit);
      QVERIFY(!QDir(b).exists());
      auto resumed = run_cli(args(b) << "--resume" << b + ".checkpoint");
      QVERIFY2(resumed.code == 0, qPrintable(resumed.err));
      QVERIFY2(read_all(b + "/model.safetensors") == read_all(a + "/model.safetensors"), kill);
    }

    // Bad data: named, with the line; --skip-bad-lines goes on.
    const QString bad = dir.filePath("bad.jsonl");
    std::ofstream(bad.toStdString()) << "{\"text\": \"fine\"}"
                                     << "\n{broken\n";
    auto r = run_cli({"recover", demo_model(), "--dense", demo_model(), "--domain", bad, "--out",
                      dir.filePath("x")});
    QCOMPARE(r.code, 3);
    QVERIFY2(r.err.contains("bad.jsonl: line 2") && r.err.contains("--skip-bad-lines"),
             qPrintable(r.err));
    r = run_cli({"recover", demo_model(), "--dense", demo_model(), "--domain", bad,
                 "--skip-bad-lines", "--out", dir.filePath("x")});
    QCOMPARE(r.code, 3);  // what is left is too short for validation + training: said so
    QVERIFY2(r.err.contains("validation"), qPrintable(r.err));
    r = run_cli({"recover", demo_model(), "--domain", dir.filePath("missing"), "--dense",
                 demo_model(), "--out", dir.filePath("x")});
    QCOMPARE(r.code, 3);
    QVERIFY2(r.err.contains("missing"), qPrintable(r.err));
    const QString empty = dir.filePath("empty");
    QDir().mkpath(empty);
    r = run_cli({"recover", demo_model(), "--domain", empty, "--dense", demo_model(), "--out",
                 dir.filePath("x")});
    QCOMPARE(r.code, 3);
    QVERIFY2(r.err.contains("no text files"), qPrintable(r.err));
    const QString noout = dir.filePath("noout.json");
    std::ofstream(noout.toStdString()) << "[{\"instruction\": \"Say hi.\"}]";
    r = run_cli({"recover", demo_model(), "--instruct", noout, "--out", dir.filePath("x")});
    QCOMPARE(r.code, 3);
    QVERIFY2(r.err.contains("record 0") && r.err.contains("output"), qPrintable(r.err));
    r = run_cli({"recover", demo_model(), "--domain", stories, "--out", dir.filePath("x")});
    QCOMPARE(r.code, 2);  // adaptive sampling without the dense model
    QVERIFY2(r.err.contains("--dense"), qPrintable(r.err));
    QVERIFY(!QFile::exists(dir.filePath("x")));

    // prune --recover: the whole pipeline in one go.
    const QString pr = dir.filePath("pr");
    r = run_cli({"prune",
                 demo_model(),
                 "--ratio",
                 "0.3",
                 "--text",
                 stories,
                 "--out",
                 pr,
                 "--steps",
                 "12",
                 "--periods",
                 "2",
                 "--seq-len",
                 "32",
                 "--batch",
                 "2",
                 "--lora-rank",
                 "2",
                 "--recover",
                 "--domain",
                 web + "," + stories,
                 "--recover-steps",
                 "6",
                 "--val-sequences",
                 "4",
                 "--stage1-batch",
                 "2",
                 "--json"});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    const auto pj = QJsonDocument::fromJson(r.out.toUtf8()).object();
    QCOMPARE(pj["recovery"].toObject()["stage1"].toObject()["steps"].toInt(), 6);
    QVERIFY(pj["ppl"].toObject()["pruned"].toDouble() > 0);
    QVERIFY(pj["ppl"].toObject()["after"].toDouble() != pj["ppl"].toObject()["pruned"].toDouble());
    // The pruning text is a recovery category too: the report says the ppl is not held-out.
    QCOMPARE(pj["warnings"].toArray().size(), 1);
    QVERIFY(pj["warnings"].toArray()[0].toString().contains("not held-out"));
    r = run_cli({"prune", demo_model(), "--ratio", "0.3", "--text", stories, "--out",
                 dir.filePath("y"), "--domain", web});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("--recover"), qPrintable(r.err));
  }
};

QTEST_GUILESS_MAIN(TestCli)
#include "test_cli.moc"
