#include "lorashear/ui/inspector.h"

#include <QHBoxLayout>
#include <QStyle>
#include <QTextBrowser>
#include <QToolButton>
#include <QUrl>
#include <QVBoxLayout>

#include <set>

#include "document.h"
#include "lorashear/ui/node_group_model.h"

namespace lorashear {

namespace {

constexpr size_t kHistory = 200;

QString esc(const std::string& s) {
  return QString::fromStdString(s).toHtmlEscaped();
}

QString shape(const std::vector<int64_t>& s) {
  QStringList parts;
  for (auto d : s)
    parts << QString::number(d);
  return "[" + parts.join(", ") + "]";
}

QString group_link(const DependencyGraph& deps, size_t g) {
  return QString("<a href='group:%1'>%2</a>").arg(g).arg(esc(deps.node_groups[g].id));
}

QString op_link(const TraceGraph& trace, size_t op) {
  return QString("<a href='op:%1'>%2</a>").arg(op).arg(esc(trace.nodes[op].name));
}

QString row(const QString& key, const QString& value) {
  return QString("<tr><td style='color:gray;padding-right:8px'>%1</td><td>%2</td></tr>")
      .arg(key, value);
}

}  // namespace

Inspector::Inspector(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(2, 2, 2, 2);
  auto* bar = new QHBoxLayout;
  back_ = new QToolButton;
  back_->setIcon(style()->standardIcon(QStyle::SP_ArrowBack));
  back_->setToolTip(tr("Back"));
  forward_ = new QToolButton;
  forward_->setIcon(style()->standardIcon(QStyle::SP_ArrowForward));
  forward_->setToolTip(tr("Forward"));
  bar->addWidget(back_);
  bar->addWidget(forward_);
  bar->addStretch();
  layout->addLayout(bar);
  browser_ = new QTextBrowser;
  browser_->setOpenLinks(false);
  layout->addWidget(browser_);
  connect(back_, &QToolButton::clicked, this, &Inspector::back);
  connect(forward_, &QToolButton::clicked, this, &Inspector::forward);
  connect(browser_, &QTextBrowser::anchorClicked, this, [this](const QUrl& url) {
    const auto s = url.toString();
    const auto value = s.section(':', 1).toLongLong();
    if (s.startsWith("op:")) showOperator(value);
    if (s.startsWith("group:")) showNodeGroup(value);
    activate();
  });
  render();
}

Inspector::~Inspector() = default;

void Inspector::setDocument(std::shared_ptr<const ModelDocument> doc) {
  doc_ = std::move(doc);
  history_.clear();
  position_ = -1;
  render();
}

void Inspector::showOperator(qint64 op) {
  if (!doc_ || op < 0 || op >= static_cast<qint64>(doc_->trace.nodes.size())) return;
  push({Entry::Operator, op});
}

void Inspector::showNodeGroup(qint64 group) {
  if (!doc_ || group < 0 || group >= static_cast<qint64>(doc_->deps.node_groups.size())) return;
  push({Entry::NodeGroup, group});
}

void Inspector::push(const Entry& e) {
  if (position_ >= 0 && history_[static_cast<size_t>(position_)] == e) return render();
  history_.resize(static_cast<size_t>(position_ + 1));
  history_.push_back(e);
  if (history_.size() > kHistory) history_.erase(history_.begin());
  position_ = static_cast<int>(history_.size()) - 1;
  render();
}

void Inspector::back() {
  if (!canGoBack()) return;
  --position_;
  render();
  activate();
}

void Inspector::forward() {
  if (!canGoForward()) return;
  ++position_;
  render();
  activate();
}

void Inspector::activate() {
  const auto e = current();
  if (e.index < 0) return;
  if (e.kind == Entry::Operator)
    emit operatorActivated(e.index);
  else
    emit nodeGroupActivated(e.index);
}

Inspector::Entry Inspector::current() const {
  if (position_ < 0) return {};
  return history_[static_cast<size_t>(position_)];
}

QString Inspector::text() const {
  return browser_->toPlainText();
}

void Inspector::render() {
  back_->setEnabled(canGoBack());
  forward_->setEnabled(canGoForward());
  if (!doc_ || position_ < 0) {
    browser_->setHtml(
        tr("<p style='color:gray'>Click an operator in the graph or a node group in "
           "the tree to inspect it.</p>"));
    return;
  }
  const auto& trace = doc_->trace;
  const auto& deps = doc_->deps;
  const auto e = current();
  QString html;
  if (e.kind == Entry::Operator) {
    const auto op = static_cast<size_t>(e.index);
    const auto& n = trace.nodes[op];
    html += QString("<h3>%1</h3><table>").arg(esc(n.name));
    html += row(tr("operator"), esc(n.kind));
    html += row(tr("module"), n.module.empty() ? tr("(the model)") : esc(n.module));
    html += row(tr("layer"), n.layer >= 0 ? QString::number(n.layer) : tr("outside the layers"));
    QStringList inputs, outputs;
    for (auto t : n.inputs) {
      const auto& tensor = trace.tensors[static_cast<size_t>(t)];
      inputs << shape(tensor.shape) +
                    (tensor.producer >= 0 ? " " + tr("from") + " " +
                                                op_link(trace, static_cast<size_t>(tensor.producer))
                                          : " " + tr("(token ids)"));
    }
    for (auto t : n.outputs)
      outputs << shape(trace.tensors[static_cast<size_t>(t)].shape);
    html += row(tr("inputs"), inputs.join("<br>"));
    html += row(tr("outputs"), outputs.join("<br>"));
    const auto home = deps.home_group[op];
    html +=
        row(tr("node group"), home >= 0 ? group_link(deps, static_cast<size_t>(home)) : tr("none"));
    html += "</table>";
    if (!n.params.empty()) {
      html += "<h4>" + tr("Parameters") + "</h4><table>";
      for (const auto& p : n.params) {
        int64_t numel = 1;
        for (auto d : p.shape)
          numel *= d;
        html += row(esc(p.role), QString("%1 %2 — %3 (%4)")
                                     .arg(esc(p.name), shape(p.shape))
                                     .arg(format_count(static_cast<double>(numel)))
                                     .arg(numel));
      }
      html += "</table>";
    }
    // Variable groups: the node groups that own slices of this operator's parameters.
    QStringList owners;
    std::set<std::string> names;
    for (const auto& p : n.params)
      names.insert(p.name);
    for (size_t g = 0; g < deps.node_groups.size(); ++g) {
      const auto& group = deps.node_groups[g];
      for (const auto& s : group.slices) {
        if (!names.count(s.param)) continue;
        owners << QString("%1 — %2 %3 along dim %4 of %5 (%6 %7 each)")
                          .arg(group_link(deps, g))
                          .arg(group.size)
                          .arg(group.kind == "attention" ? tr("kv groups") : tr("variable groups"))
                          .arg(s.dim)
                          .arg(esc(s.param.substr(s.param.rfind('.') + 1)))
                          .arg(s.indices_per_group())
                          .arg(s.indices_per_group() == 1 ? tr("index") : tr("indices")) +
                      QString(" <i>%1</i>").arg(role_name(s.role));
      }
    }
    if (!owners.isEmpty()) html += "<h4>" + tr("Variable groups") + "</h4>" + owners.join("<br>");
  } else {
    const auto g = static_cast<size_t>(e.index);
    const auto& group = deps.node_groups[g];
    html += QString("<h3>%1</h3><table>").arg(esc(group.id));
    html += row(tr("kind"), esc(group.kind));
    html += row(tr("layer"), group.layer >= 0 ? QString::number(group.layer) : tr("—"));
    html += row(tr("prunable"), group.prunable ? tr("yes") : tr("no — ") + esc(group.reason));
    html +=
        row(tr("variable groups"),
            QString("%1 (%2…%3)")
                .arg(group.size)
                .arg(group.size > 0 ? esc(group.variable_group_id(0)) : QString())
                .arg(group.size > 1 ? esc(group.variable_group_id(group.size - 1)) : QString()));
    html += row(tr("per variable group"), QString("%1 parameters, %2 FLOPs per token")
                                              .arg(group.per_group.params)
                                              .arg(format_count(group.per_group.flops)));
    html += row(tr("in total"),
                QString("%1 parameters (%2% of the model)")
                    .arg(format_count(static_cast<double>(group.total().params)))
                    .arg(100.0 * static_cast<double>(group.total().params) /
                             static_cast<double>(std::max<int64_t>(1, deps.total.params)),
                         0, 'f', 2));
    html += "</table><h4>" + tr("Parameter slices") + "</h4>";
    QStringList slices;
    for (const auto& s : group.slices)
      slices << QString("%1 %2 dim %3, %4 indices per group <i>%5</i>")
                    .arg(esc(s.param), shape(s.shape))
                    .arg(s.dim)
                    .arg(s.indices_per_group())
                    .arg(role_name(s.role));
    html += slices.isEmpty() ? tr("none") : slices.join("<br>");
    html += "<h4>" + tr("Operators") + QString(" (%1)</h4>").arg(group.nodes.size());
    QStringList ops;
    for (auto op : group.nodes)
      ops << op_link(trace, static_cast<size_t>(op));
    html += ops.join("<br>");
  }
  browser_->setHtml(html);
}

}  // namespace lorashear
