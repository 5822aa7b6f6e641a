#include "lorashear/ui/theme.h"

#include <QApplication>
#include <QPalette>
#include <QStyle>
#include <QStyleFactory>

namespace lorashear {

bool apply_theme(const QString& name) {
  static const QPalette system_palette = QApplication::palette();
  static const QString system_style = QApplication::style()->name();
  if (name == "system") {
    QApplication::setStyle(QStyleFactory::create(system_style));
    QApplication::setPalette(system_palette);
    return system_palette.color(QPalette::Window).lightness() < 128;
  }
  QApplication::setStyle(QStyleFactory::create("Fusion"));
  if (name != "dark") {
    QApplication::setPalette(QApplication::style()->standardPalette());
    return false;
  }
  QPalette p;
  const QColor window(45, 47, 51), base(33, 35, 38), text(220, 220, 220), accent(66, 133, 214);
  p.setColor(QPalette::Window, window);
  p.setColor(QPalette::WindowText, text);
  p.setColor(QPalette::Base, base);
  p.setColor(QPalette::AlternateBase, window);
  p.setColor(QPalette::ToolTipBase, window);
  p.setColor(QPalette::ToolTipText, text);
  p.setColor(QPalette::Text, text);
  p.setColor(QPalette::Button, window);
  p.setColor(QPalette::ButtonText, text);
  p.setColor(QPalette::BrightText, Qt::red);
  p.setColor(QPalette::Link, QColor(110, 170, 240));
  p.setColor(QPalette::Highlight, accent);
  p.setColor(QPalette::HighlightedText, Qt::white);
  p.setColor(QPalette::Mid, QColor(80, 80, 80));
  p.setColor(QPalette::PlaceholderText, QColor(140, 140, 140));
  for (auto role : {QPalette::WindowText, QPalette::Text, QPalette::ButtonText})
    p.setColor(QPalette::Disabled, role, QColor(120, 120, 120));
  QApplication::setPalette(p);
  return true;
}

}  // namespace lorashear
