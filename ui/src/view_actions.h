#pragma once
// The View menu and the Graph toolbar: find (the search field), expand and collapse all layers,
// fit and zoom, the overview, the overlay ("Colour by"), the theme and the panels. GUI thread only.

#include <QObject>
#include <QString>

class QAction;
class QLineEdit;
class QMenu;
class QToolBar;

namespace lorashear {

class GraphController;
class MainWindow;

class ViewActions : public QObject {
  Q_OBJECT
 public:
  /// `window` and `graph` must outlive it.
  ViewActions(MainWindow* window, GraphController* graph);

  /// The toolbar: the search field, expand, collapse, fit, "Colour by".
  void fillToolBar(QToolBar* graph);
  /// View ▸ …; Panels lists the window's docks (built by then) and `toolbar`.
  void fillMenu(QMenu* view, QToolBar* toolbar);
  /// "light", "dark" or "system"; saved with the settings when it changes.
  void setTheme(const QString& name);

 private:
  MainWindow* window_;
  GraphController* graph_;
  QLineEdit* search_ = nullptr;
  QAction* find_ = nullptr;
  QAction* expand_ = nullptr;
  QAction* collapse_ = nullptr;
  QAction* fit_ = nullptr;
  QAction* zoom_in_ = nullptr;
  QAction* zoom_out_ = nullptr;
  QAction* overview_ = nullptr;
  QString theme_;
};

}  // namespace lorashear
