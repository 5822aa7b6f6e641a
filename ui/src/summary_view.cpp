#include "lorashear/ui/summary_view.h"

#include <QFileInfo>
#include <QHeaderView>
#include <QSplitter>
#include <QTableWidget>
#include <QTextBrowser>
#include <QVBoxLayout>

#include "document.h"
#include "lorashear/io/gguf.h"
#include "lorashear/io/loader.h"
#include "lorashear/ui/node_group_model.h"

namespace lorashear {

namespace {

QString row(const QString& key, const QString& value) {
  return QString("<tr><td style='color:gray;padding-right:10px'>%1</td><td>%2</td></tr>")
      .arg(key, value);
}

QString bytes(double b) {
  if (b >= 1024.0 * 1024 * 1024)
    return QString::number(b / (1024.0 * 1024 * 1024), 'f', 2) + " GiB";
  if (b >= 1024.0 * 1024) return QString::number(b / (1024.0 * 1024), 'f', 1) + " MiB";
  return QString::number(b / 1024.0, 'f', 1) + " KiB";
}

int dtype_bytes(const std::string& dtype) {
  if (dtype == "F16" || dtype == "BF16") return 2;
  if (dtype == "F64") return 8;
  if (dtype == "Q8_0" || dtype == "I8") return 1;
  return 4;
}

}  // namespace

SummaryView::SummaryView(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  auto* split = new QSplitter(Qt::Vertical);
  text_ = new QTextBrowser;
  text_->setOpenLinks(false);
  text_->setHtml(tr("<p style='color:gray'>No model open.</p>"));
  // The per-layer dimensions in a table widget: a rich-text table of 80 layers takes tens of
  // milliseconds to lay out on the GUI thread, the table widget a fraction of one.
  layers_ = new QTableWidget(0, 7);
  layers_->setHorizontalHeaderLabels({tr("heads"), tr("kv heads"), tr("MLP width"), tr("attention"),
                                      tr("MLP"), tr("total"), tr("FLOPs/token")});
  layers_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  layers_->verticalHeader()->setDefaultSectionSize(20);
  layers_->horizontalHeader()->setDefaultSectionSize(72);
  split->addWidget(text_);
  split->addWidget(layers_);
  split->setStretchFactor(0, 3);
  split->setStretchFactor(1, 2);
  layout->addWidget(split);
}

QString SummaryView::text() {
  if (stale_) render();
  return text_->toPlainText();
}

void SummaryView::setDocument(const std::shared_ptr<const ModelDocument>& doc) {
  doc_ = doc;
  stale_ = true;
  if (isVisible()) render();
}

void SummaryView::showEvent(QShowEvent* event) {
  QWidget::showEvent(event);
  if (stale_) render();
}

void SummaryView::render() {
  stale_ = false;
  const auto& doc = doc_;
  layers_->setRowCount(0);
  if (!doc) {
    text_->setHtml(tr("<p style='color:gray'>No model open.</p>"));
    return;
  }
  const auto& c = doc->trace.config;
  const auto& deps = doc->deps;
  const double params = static_cast<double>(deps.total.params);
  QString html = QString("<h3>%1</h3><table>")
                     .arg(QFileInfo(QString::fromStdString(doc->path)).fileName().toHtmlEscaped());
  html += row(tr("path"), QString::fromStdString(doc->path).toHtmlEscaped());
  html += row(tr("source"), doc->has_weights
                                ? QString("%1 weights (%2)")
                                      .arg(QString::fromStdString(format_name(doc->loaded.format)),
                                           QString::fromStdString(doc->loaded.source_dtype))
                                : tr("configuration only (traced on the meta device)"));
  if (!doc->loaded.adapter_path.empty())
    html += row(tr("adapter"), QString::fromStdString(doc->loaded.adapter_path).toHtmlEscaped());
  if (doc->has_weights)
    html += row(tr("tokenizer"),
                doc->loaded.tokenizer
                    ? QString::fromStdString(doc->loaded.tokenizer->description()).toHtmlEscaped()
                    : tr("none found"));
  html += row(tr("architecture"), QString::fromStdString(c.model_type));
  html += row(tr("vocabulary"), QString::number(c.vocab_size));
  html += row(tr("hidden size"), QString::number(c.hidden_size));
  html += row(tr("head dim"), QString::number(c.head_dim));
  html += row(tr("layers"), QString::number(c.n_layers()));
  html += row(tr("context"), QString::number(c.max_position_embeddings));
  html += row(tr("RoPE θ"), QString::number(c.rope_theta));
  html += row(tr("RoPE scaling"),
              QString::fromStdString(describe_rope_scaling(c.rope_scaling)).toHtmlEscaped());
  if (!c.attention_features().empty())
    html += row(tr("attention"), QString::fromStdString(c.attention_features()).toHtmlEscaped());
  QStringList eos;
  for (auto id : c.eos_token_ids)
    eos << QString::number(id);
  html += row(tr("BOS / EOS ids"), QString("%1 / %2").arg(c.bos_token_id).arg(eos.join(", ")));
  html += row(tr("tied embeddings"), c.tie_word_embeddings ? tr("yes") : tr("no"));
  html += "</table><h4>" + tr("Size") + "</h4><table>";
  html +=
      row(tr("parameters"), QString("%1 (%2)").arg(format_count(params)).arg(deps.total.params));
  html += row(tr("FLOPs per token"),
              format_count(deps.total.flops) + tr(" (context %1)").arg(deps.context));
  const int width = doc->has_weights ? dtype_bytes(doc->loaded.source_dtype) : 2;
  html += row(tr("weights"), QString("%1 at %2 bytes per parameter; %3 in 16 bits")
                                 .arg(bytes(params * width))
                                 .arg(width)
                                 .arg(bytes(params * 2)));
  int64_t kv_per_token = 0;
  for (const auto& l : c.layers)
    kv_per_token += 2 * l.n_kv_heads * c.head_dim;
  html += row(tr("KV cache"), tr("%1 per 1 000 tokens in 16 bits")
                                  .arg(bytes(static_cast<double>(kv_per_token) * 2 * 1000)));
  html += row(tr("node groups"),
              tr("%1, %2 prunable; %3 prunable variable groups")
                  .arg(deps.node_groups.size())
                  .arg(std::count_if(deps.node_groups.begin(), deps.node_groups.end(),
                                     [](const auto& g) { return g.prunable; }))
                  .arg(deps.prunable_variable_groups()));
  html += row(tr("opened in"), tr("%1 s load, %2 s trace and analysis")
                                   .arg(doc->load_seconds, 0, 'f', 2)
                                   .arg(doc->trace_seconds, 0, 'f', 2));
  QStringList where;
  for (const auto& t : load_targets(c))
    where << QString::fromStdString(t.text()).toHtmlEscaped();
  html += row(tr("loads in"), where.join("<br>"));
  html += "</table>";
  if (!doc->gguf_metadata.empty()) {
    html += "<h4>" + tr("GGUF metadata (%1 keys)").arg(doc->gguf_metadata.size()) + "</h4><table>";
    for (const auto& [key, value] : doc->gguf_metadata)
      html += row(QString::fromStdString(key).toHtmlEscaped(),
                  QString::fromStdString(value).toHtmlEscaped());
    html += "</table>";
  }
  text_->setHtml(html);
  layers_->setRowCount(static_cast<int>(c.n_layers()));
  for (int64_t i = 0; i < c.n_layers(); ++i) {
    const auto& l = c.layers[static_cast<size_t>(i)];
    const auto& cost = deps.layers[static_cast<size_t>(i)];
    const QString cells[] = {QString::number(l.n_heads),
                             QString::number(l.n_kv_heads),
                             QString::number(l.intermediate_size),
                             format_count(static_cast<double>(c.layer_attention_parameters(i))),
                             format_count(static_cast<double>(c.layer_mlp_parameters(i))),
                             format_count(static_cast<double>(cost.params)),
                             format_count(cost.flops)};
    for (int col = 0; col < 7; ++col) {
      auto* item = new QTableWidgetItem(cells[col]);
      item->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
      layers_->setItem(static_cast<int>(i), col, item);
    }
    layers_->setVerticalHeaderItem(static_cast<int>(i),
                                   new QTableWidgetItem(tr("layer %1").arg(i)));
  }
}

}  // namespace lorashear
