// Every input the fuzzers found a bug with (fuzz/regressions/<target>/*) and every hand-made seed
// (fuzz/corpus/<target>/*) goes through the same entry point as its fuzz target (fuzz_inputs.cpp):
// it must be accepted or refused with one of the engine's errors — no other exception, no crash.
// Run under ASan/UBSan (LORASHEAR_SANITIZE_*) the test also catches the memory errors.
#include <QtTest>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "fuzz_inputs.h"

namespace fs = std::filesystem;

class TestFuzzRegressions : public QObject {
  Q_OBJECT

  static std::vector<fs::path> inputs(const std::string& kind, const std::string& target) {
    std::vector<fs::path> files;
    const fs::path dir = fs::path(LORASHEAR_SOURCE_DIR) / "fuzz" / kind / target;
    if (!fs::is_directory(dir)) return files;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && e.path().filename().string().front() != '.')
        files.push_back(e.path());
    std::sort(files.begin(), files.end());
    return files;
  }

 private slots:
  void replay_data() {
    QTest::addColumn<QString>("target");
    QTest::addColumn<QString>("file");
    for (const auto& t : lorashear::fuzz::targets())
      for (const char* kind : {"regressions", "corpus"})
        for (const auto& f : inputs(kind, t.name)) {
          const auto row = std::string(t.name) + "/" + kind + "/" + f.filename().string();
          QTest::newRow(row.c_str()) << QString(t.name) << QString::fromStdString(f.string());
        }
  }

  void replay() {
    QFETCH(QString, target);
    QFETCH(QString, file);
    const auto* t = lorashear::fuzz::find_target(target.toStdString());
    QVERIFY(t != nullptr);
    std::ifstream in(file.toStdString(), std::ios::binary);
    QVERIFY(in.good());
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    try {
      t->parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    } catch (const std::exception& e) {
      QFAIL(qPrintable(QString("%1: not an engine error: %2").arg(file, e.what())));
    }
  }

  // Every target has at least one input here, so a renamed target cannot silently replay nothing.
  void everyTargetHasInputs() {
    for (const auto& t : lorashear::fuzz::targets())
      QVERIFY2(!inputs("corpus", t.name).empty() || !inputs("regressions", t.name).empty(), t.name);
  }
};

QTEST_GUILESS_MAIN(TestFuzzRegressions)
#include "test_fuzz_regressions.moc"
