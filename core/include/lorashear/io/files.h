#pragma once
// Small-file helpers shared by the engine and the front ends.

#include <string>

namespace lorashear::io {

/// Writes `bytes` to `path` through a temporary file renamed over it, so an existing file is
/// either replaced whole or left untouched. Throws Error naming the path (and the system's
/// reason) when it cannot.
void write_file_atomic(const std::string& path, const std::string& bytes);

/// An output directory built under a temporary sibling name (`.NAME.tmp-HOST-PID`) and swapped
/// into place by commit(); if never committed (error, cancel) the temporary directory is removed
/// and an existing directory at the target is untouched. A killed run cannot clean up: the next
/// StagedDirectory for the same target removes the staging folders of this host's dead processes
/// and puts back a previous output a kill left moved aside (`.NAME.old-HOST-PID`, target absent).
/// Missing parent folders are made, and removed again (when empty) if nothing is committed. A file
/// written inside is named at its final place in error messages (AtomicFile, write_file_atomic).
class StagedDirectory {
 public:
  /// Throws UsageError when `dir` exists and `overwrite` is false, Error naming the directory when
  /// the temporary one cannot be created (parent not writable, disk full).
  StagedDirectory(const std::string& dir, bool overwrite);
  ~StagedDirectory();
  StagedDirectory(const StagedDirectory&) = delete;
  StagedDirectory& operator=(const StagedDirectory&) = delete;

  /// Where to write.
  const std::string& path() const { return tmp_; }
  /// Renames the temporary directory to the target (an old one is kept until the new one is in
  /// place, then removed).
  void commit();

 private:
  std::string target_, tmp_;
  std::string created_;  ///< the highest parent folder the constructor made ("" = none)
  bool committed_ = false;
};

/// What a StagedDirectory for `dir` does first, for a reader about to open that target (a resume):
/// removes this host's dead processes' staging folders for it and puts back a previous `dir` a
/// kill left moved aside.
void sweep_staging(const std::string& dir);

}  // namespace lorashear::io
