#pragma once
// Integrity of run checkpoints (a pruning or recovery run's `latest/` folder): a manifest of every
// file's size and CRC-32 with the checkpoint format version, written last; checked before a resume
// reads anything, so a truncated, bit-flipped or foreign checkpoint is refused naming the file
// instead of resuming from wrong numbers (a flipped bit inside tensor data parses fine).

#include <cstdint>
#include <string>

namespace lorashear::io {

/// The run checkpoint format this build writes and reads; bumped when the files' meaning changes.
constexpr int kRunCheckpointVersion = 1;

/// The manifest's file name inside a checkpoint folder.
constexpr const char* kCheckpointManifest = "manifest.json";

/// CRC-32 (IEEE 802.3, as zlib's crc32) of `len` bytes, continuing from `crc` (0 to start).
uint32_t crc32(const void* data, size_t len, uint32_t crc = 0);

/// Writes `dir`/manifest.json (atomically) listing every other regular file of `dir` with its size
/// and CRC-32, the format version and this lorashear's version. Call once every file is written,
/// just before the staged folder is committed. Throws Error naming a file it cannot read.
void write_checkpoint_manifest(const std::string& dir);

/// Before resuming from checkpoint folder `dir` (…/latest): first puts back a checkpoint a kill
/// left moved aside and removes dead runs' staging folders (sweep_staging), then, when `dir`
/// exists, checks each file against the manifest. Throws InputError naming the file (manifest
/// missing or damaged, another format version, a file missing, of another size or with another
/// checksum) and saying that a run without --resume starts over. Does nothing when `dir` does not
/// exist (the caller says there is no checkpoint).
void verify_checkpoint(const std::string& dir);

/// Called just before a run commits its output: `checkpoint_dir`/committed.json records where the
/// run's report will be (`report_path`) and the CRC-32 of its text. A kill between that commit and
/// the removal of the checkpoint then leaves a checkpoint that `output_committed` recognises.
/// Does nothing when `checkpoint_dir` does not exist (a run without checkpoints).
void mark_output_committing(const std::string& checkpoint_dir, const std::string& report_path,
                            const std::string& report_text);

/// The report's path when `checkpoint_dir` holds that mark and the report is there with the same
/// checksum: the run completed and only the removal of its checkpoint was cut short. Empty
/// otherwise (no mark, or the kill came before the commit: resume as usual).
std::string output_committed(const std::string& checkpoint_dir);

}  // namespace lorashear::io
