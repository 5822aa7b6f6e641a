// Pruned models other tools load, through the CLI: `prune --uniform` writes a plain LLaMA that an
// independent NumPy reader following transformers' rules (tests/interop/hf_reference.py: one size
// for every layer from config.json, shapes checked) loads with the project's logits, while a
// non-uniform result is refused there; `--export-gguf` and `convert --to gguf` write GGUF (llama
// for one size, deci otherwise) that `info` lists and llama.cpp runs; bad paths and options are
// refused without partial files.
#include <QtTest>

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QStandardPaths>
#include <QTemporaryDir>

#include <filesystem>
#include <fstream>

#include "lorashear/io/loader.h"
#include "test_support.h"

using namespace lorashear;
namespace fs = std::filesystem;

namespace {

using Run = test::ProcessResult;

Run run(const QString& program, const QStringList& args) {
  return test::run_process(program, args, 600000);
}

Run cli(const QStringList& args) {
  return run(LORASHEAR_CLI_PATH, args);
}

QString demo_model() {
  return QString::fromStdString(test::source_path("resources/demo-model").string());
}

QJsonObject json_of(const QString& s) {
  return QJsonDocument::fromJson(s.toUtf8()).object();
}

QJsonObject read_json(const QString& path) {
  QFile f(path);
  return f.open(QIODevice::ReadOnly) ? QJsonDocument::fromJson(f.readAll()).object()
                                     : QJsonObject();
}

const std::vector<int64_t> kPrompt = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315};

torch::Tensor our_logits(const QString& model) {
  auto loaded = load_model(model.toStdString());
  torch::NoGradGuard ng;
  loaded.model->eval();
  return loaded.model->forward(torch::tensor(kPrompt, torch::kInt64).view({1, -1}))[0].to(
      torch::kFloat64);
}

torch::Tensor rows_of(const QJsonArray& rows) {
  auto t = torch::empty({rows.size(), rows[0].toArray().size()}, torch::kFloat64);
  for (int i = 0; i < rows.size(); ++i) {
    const auto r = rows[i].toArray();
    for (int k = 0; k < r.size(); ++k)
      t[i][k] = r[k].toDouble();
  }
  return t;
}

double relative_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>() / (b.max() - b.min()).item<double>();
}

// The NumPy reader: {"logits": …} or {"error": …} with exit code 1.
Run reference(const QString& folder) {
  QStringList ids;
  for (auto t : kPrompt)
    ids << QString::number(t);
  return run("/usr/bin/python3",
             {QString::fromStdString(test::source_path("tests/interop/hf_reference.py").string()),
              folder, ids.join(",")});
}

bool have_numpy() {
  return run("/usr/bin/python3", {"-c", "import numpy"}).code == 0;
}

QString write_text(const QTemporaryDir& dir) {
  const QString text = dir.filePath("text.txt");
  std::ofstream f(text.toStdString());
  for (int i = 0; i < 60; ++i)
    f << "Once upon a time, there was a little girl named Lily. She liked to play in the park "
         "with her dog. One day, the sun was bright and the sky was blue.\n";
  return text;
}

const QStringList kShortRun = {"--steps", "12",      "--periods", "2",           "--seq-len",
                               "32",      "--batch", "2",         "--lora-rank", "2"};

}  // namespace

class TestHfInterop : public QObject {
  Q_OBJECT

 private slots:
  void uniformPruningLoadsAsAPlainLlama() {
    if (!have_numpy()) QSKIP("/usr/bin/python3 with numpy (Debian's python3-numpy) is missing");
    QTemporaryDir dir;
    const QString text = write_text(dir), out = dir.filePath("uniform"),
                  gguf = dir.filePath("uniform.gguf");
    auto r = cli(QStringList{"prune", demo_model(), "--ratio", "0.25", "--uniform", "--text", text,
                             "--out", out, "--export-gguf", gguf, "--gguf-dtype", "f16", "--json"} +
                 kShortRun);
    QVERIFY2(r.code == 0, qPrintable(r.err));
    const auto report = json_of(r.out);
    QVERIFY(std::abs(report["parameters"].toObject()["removed_ratio"].toDouble() - 0.25) < 0.04);
    const auto loads = report["loads_in"].toArray();
    QCOMPARE(loads[0].toString(), QString("llama.cpp \u2713 (llama)"));
    QCOMPARE(loads[1].toString(), QString("transformers / vLLM \u2713"));
    QCOMPARE(report["gguf"].toObject()["architecture"].toString(), QString("llama"));
    QVERIFY(report["knowledge"].toObject().contains("protections_not_applied"));
    QVERIFY(report["settings"].toObject()["plan"].toObject()["uniform"].toBool());
    // A plain LLaMA config.json: no per-layer lists; every layer the same size; the tokenizer
    // files transformers reads.
    const auto cfg = read_json(out + "/config.json");
    QVERIFY(!cfg.contains("num_attention_heads_per_layer"));
    QVERIFY(!cfg.contains("intermediate_size_per_layer"));
    QVERIFY(cfg["intermediate_size"].toInt() < 256);
    QVERIFY(QFile::exists(out + "/tokenizer.model"));
    const auto tok = read_json(out + "/tokenizer_config.json");
    QCOMPARE(tok["tokenizer_class"].toString(), QString("LlamaTokenizer"));
    QCOMPARE(tok["bos_token"].toString(), QString("<s>"));
    for (const auto& l : report["layers"].toArray())
      QCOMPARE(l.toObject()["intermediate_size"].toArray()[1].toInt(),
               cfg["intermediate_size"].toInt());

    const auto ref = reference(out);
    QVERIFY2(ref.code == 0, qPrintable(ref.out + ref.err));
    const double diff =
        relative_diff(rows_of(json_of(ref.out)["logits"].toArray()), our_logits(out));
    qInfo("NumPy float64 reference vs the project: %.3g of the logits' range", diff);
    QVERIFY2(diff < 1e-5, qPrintable(QString::number(diff)));
    // The GGUF written beside it is the same model (f16 weights).
    QVERIFY2(relative_diff(our_logits(gguf), our_logits(out)) < 5e-3,
             qPrintable(QString::number(relative_diff(our_logits(gguf), our_logits(out)))));
  }

  void nonUniformPruningNeedsTheGgufExport() {
    if (!have_numpy()) QSKIP("/usr/bin/python3 with numpy (Debian's python3-numpy) is missing");
    QTemporaryDir dir;
    const QString text = write_text(dir), out = dir.filePath("pruned"),
                  plan = dir.filePath("plan.json");
    std::ofstream(plan.toStdString()) << R"({"target_ratio": 0.25, "layer_ratios": {"0": 0.0}})";
    auto r = cli(QStringList{"prune", demo_model(), "--plan", plan, "--text", text, "--out", out} +
                 kShortRun);
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QVERIFY2(r.out.contains("loads in: llama.cpp \u2713 (deci); transformers / vLLM: needs the "
                            "same size in every layer"),
             qPrintable(r.out));
    const auto ref = reference(out);
    QCOMPARE(ref.code, 1);
    QVERIFY2(json_of(ref.out)["error"].toString().contains("size mismatch"), qPrintable(ref.out));

    // convert --to gguf: deci, listed by info, read back by eval.
    const QString gguf = dir.filePath("pruned-q8.gguf");
    r = cli({"convert", out, "--to", "gguf", gguf, "--out-dtype", "q8_0", "--json"});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QCOMPARE(json_of(r.out)["architecture"].toString(), QString("deci"));
    QCOMPARE(json_of(r.out)["bytes"].toInteger(), static_cast<qint64>(QFileInfo(gguf).size()));
    r = cli({"info", gguf});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QVERIFY2(r.out.contains("GGUF metadata") && r.out.contains("deci.attention.head_count") &&
                 r.out.contains("llama.cpp \u2713 (deci)"),
             qPrintable(r.out));
    r = cli({"info", gguf, "--json"});
    const auto meta = json_of(r.out)["gguf_metadata"].toObject();
    QCOMPARE(meta["general.architecture"].toString(), QString("\"deci\""));
    QVERIFY2(meta["deci.attention.head_count"].toString().startsWith("[4, "),  // layer 0 whole
             qPrintable(meta["deci.attention.head_count"].toString()));
    QVERIFY(relative_diff(our_logits(gguf), our_logits(out)) < 2e-2);
    r = cli({"eval", "ppl", gguf, "--text", text, "--seq-len", "32", "--json"});
    QVERIFY2(r.code == 0, qPrintable(r.err));

    // Bad requests: refused, nothing half-written.
    const QString nowhere = dir.filePath("no/such/folder/x.gguf");
    r = cli({"convert", out, "--to", "gguf", nowhere});
    QCOMPARE(r.code, 1);
    QVERIFY2(r.err.contains("no/such/folder/x.gguf"), qPrintable(r.err));
    QVERIFY(!QFile::exists(nowhere) && !QFile::exists(nowhere + ".tmp"));
    r = cli({"convert", out, "--to", "gguf", dir.filePath("x.gguf"), "--out-dtype", "q4_0"});
    QCOMPARE(r.code, 2);
    r = cli({"convert", out, "--to", "gguf", dir.filePath("x.gguf"), "--shard-size", "1"});
    QCOMPARE(r.code, 2);
    QVERIFY(!QFile::exists(dir.filePath("x.gguf")));
    r = cli(QStringList{"prune", demo_model(), "--ratio", "0.2", "--text", text, "--out",
                        dir.filePath("never"), "--export-gguf", dir.filePath("no/dir/x.gguf")} +
            kShortRun);
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("does not exist"), qPrintable(r.err));
    QVERIFY(!QFile::exists(dir.filePath("never")));
    // The GGUF write fails after pruning (its temporary name is taken by a folder): the pruned
    // folder is kept, its report records the error, and the message says how to retry.
    const QString kept = dir.filePath("kept"), blocked = dir.filePath("blocked.gguf");
    QVERIFY(QDir().mkpath(blocked + ".tmp"));
    r = cli(QStringList{"prune", demo_model(), "--ratio", "0.2", "--text", text, "--out", kept,
                        "--export-gguf", blocked} +
            kShortRun);
    QCOMPARE(r.code, 1);
    QVERIFY2(r.err.contains("the pruned model is saved in") &&
                 r.err.contains("lorashear convert " + kept + " --to gguf " + blocked),
             qPrintable(r.err));
    QVERIFY(QFile::exists(kept + "/model.safetensors"));
    QVERIFY(read_json(kept + "/pruning_report.json")["gguf"].toObject().contains("error"));
    QVERIFY(!QFile::exists(blocked));
    QVERIFY(!QFile::exists(kept + ".checkpoint"));
  }

  void impossibleUniformPlansAreRefused() {
    QTemporaryDir dir;
    const QString text = write_text(dir), plan = dir.filePath("plan.json");
    std::ofstream(plan.toStdString())
        << R"({"target_ratio": 0.2, "uniform": true, "unprunable": ["L0.attn", "L3.mlp"]})";
    auto r = cli(QStringList{"prune", demo_model(), "--plan", plan, "--text", text, "--out",
                             dir.filePath("never")} +
                 kShortRun);
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("nothing can be removed") && r.err.contains("L3.mlp"),
             qPrintable(r.err));
    std::ofstream(plan.toStdString())
        << R"({"target_ratio": 0.2, "node_group_ratios": {"L1.mlp": 0.5, "L2.mlp": 0.25}})";
    r = cli(QStringList{"prune", demo_model(), "--plan", plan, "--uniform", "--text", text, "--out",
                        dir.filePath("never")} +
            kShortRun);
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("L1.mlp") && r.err.contains("L2.mlp") && r.err.contains("agree"),
             qPrintable(r.err));
    QVERIFY(!QFile::exists(dir.filePath("never")));
  }
};

QTEST_GUILESS_MAIN(TestHfInterop)
#include "test_hf_interop.moc"
