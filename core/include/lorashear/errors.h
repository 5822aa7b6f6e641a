#pragma once
// Typed errors of the engine. Messages name the file, the tensor or field, what was expected and what
// was found; front ends turn them into one line (CLI exit codes: InputError 3, UsageError 2, others 1).

#include <stdexcept>
#include <string>

namespace lorashear {

/// Base of every error the engine throws on purpose.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A user-supplied file or value is unreadable, inconsistent or unsupported.
class InputError : public Error {
 public:
  using Error::Error;
};

/// The caller asked for something impossible (bad option combination, out-of-range setting).
class UsageError : public Error {
 public:
  using Error::Error;
};

/// A long operation stopped because its cancel flag was raised; nothing half-written is left behind.
class CancelledError : public Error {
 public:
  CancelledError() : Error("cancelled") {}
};

}  // namespace lorashear
