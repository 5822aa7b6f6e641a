#pragma once
// Light and dark palettes (Fusion style), and "system" (the platform's own).

#include <QString>

namespace lorashear {

/// "light", "dark" or "system". Returns whether the resulting palette is dark.
bool apply_theme(const QString& name);

}  // namespace lorashear
