// make_manual: the HTML user guide, built from Markdown at build time (not installed).
//
//   make_manual --out DIR --title TITLE [--version V] PART...
//
// A PART is FILE (the whole file; its "# title" becomes a chapter), FILE#HEADING (the section under
// the first heading whose text starts with HEADING, its subsections included) or FILE# (the text
// before the file's first "## " heading, without its "# " title: the introduction). The parts are
// converted in order into DIR/index.html — headings shifted so that every chapter is an <h2>, each
// with an anchor, a table of contents after the introduction, a small stylesheet — and every image
// they show is copied beside it. A missing file, section or image fails the build.
//
// The Markdown is the subset README.md and docs/manual/*.md use: ATX headings, paragraphs, "-" and
// "1." lists (nested by indentation, continuation lines, several paragraphs), fenced code, pipe
// tables, images, links, `code`, **strong**, *emphasis* and backslash escapes. Plain QtCore, no
// converter to install; the HTML is simple enough for a QTextBrowser and any web browser.

#include <QCoreApplication>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QHash>
#include <QRegularExpression>
#include <QSaveFile>
#include <QSet>
#include <QStringList>

#include <cstdio>
#include <stdexcept>

namespace {

struct Heading {
  int level = 0;
  QString html, slug;
};

// Conversion state shared by every part.
struct Manual {
  QString out_dir;
  QList<Heading> headings;
  QSet<QString> slugs;
  QHash<QString, QString> images;  // copied name → source path
};

// One Markdown source being converted: its folder (images are relative to it) and the heading
// shift that makes its top heading an <h2>.
struct Source {
  QString dir, name;
  int shift = 0;
};

[[noreturn]] void fail(const QString& message) {
  throw std::runtime_error(message.toStdString());
}

// Widest an image is shown: screenshots (1366 px and more) fit the user guide's window. Browsers
// follow the stylesheet's max-width; the app's QTextBrowser needs the attribute.
constexpr int kMaxImageWidth = 800;

// A PNG's width from its IHDR chunk; 0 when it is not a PNG.
int png_width(const QString& path) {
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly)) return 0;
  const QByteArray head = f.read(24);
  if (head.size() < 24 || !head.startsWith("\x89PNG\r\n\x1a\n")) return 0;
  const auto* b = reinterpret_cast<const unsigned char*>(head.constData());
  return static_cast<int>((b[16] << 24) | (b[17] << 16) | (b[18] << 8) | b[19]);
}

QString escape(const QString& s) {
  return s.toHtmlEscaped();
}

// GitHub's anchors: lower case, punctuation dropped, spaces to hyphens; repeats get -1, -2, …
QString slug_of(const QString& plain, QSet<QString>& taken) {
  QString s;
  for (const QChar c : plain.toLower()) {
    if (c.isLetterOrNumber() || c == '-' || c == '_')
      s += c;
    else if (c == ' ')
      s += '-';
  }
  if (s.isEmpty()) s = "section";
  QString unique = s;
  for (int i = 1; taken.contains(unique); ++i)
    unique = s + "-" + QString::number(i);
  taken.insert(unique);
  return unique;
}

// Heading text without Markdown marks, for anchors and matching.
QString plain_text(QString s) {
  s.remove('`');
  s.remove("**");
  s.remove(QRegularExpression(R"((?<!\w)\*|\*(?!\w))"));
  return s.trimmed();
}

class Converter {
 public:
  Converter(Manual& manual, const Source& source) : m_(manual), src_(source) {}

  QString blocks(const QStringList& lines) {
    QString out;
    int i = 0;
    const int n = static_cast<int>(lines.size());
    while (i < n) {
      const QString& line = lines[i];
      if (line.trimmed().isEmpty()) {
        ++i;
        continue;
      }
      if (is_fence(line)) {
        out += fence(lines, i);
      } else if (const auto h = heading_re().match(line); h.hasMatch()) {
        out += heading(static_cast<int>(h.captured(1).size()), h.captured(2));
        ++i;
      } else if (is_table_start(lines, i)) {
        out += table(lines, i);
      } else if (const auto img = image_line_re().match(line); img.hasMatch()) {
        out += "<p class=\"figure\">" + image(img.captured(1), img.captured(2)) +
               "<br><span class=\"caption\">" + inline_html(img.captured(1)) + "</span></p>\n";
        ++i;
      } else if (list_marker(line).size() > 0) {
        out += list(lines, i);
      } else {
        out += paragraph(lines, i);
      }
    }
    return out;
  }

 private:
  Manual& m_;
  Source src_;

  static const QRegularExpression& heading_re() {
    static const QRegularExpression re(R"(^(#{1,6})\s+(.*?)\s*#*\s*$)");
    return re;
  }
  static const QRegularExpression& image_line_re() {
    static const QRegularExpression re(R"(^\s*!\[([^\]]*)\]\(([^)\s]+)\)\s*$)");
    return re;
  }
  static bool is_fence(const QString& line) { return line.trimmed().startsWith("```"); }

  // "- ", "* ", "1. " at the start of `line` (with its indentation), or "".
  static QString list_marker(const QString& line) {
    static const QRegularExpression re(R"(^( {0,3})([-*+]|\d{1,9}[.)])( +|$))");
    const auto m = re.match(line);
    if (!m.hasMatch()) return {};
    // "**bold** at the start of a line" is not a list.
    if (m.captured(2) == "*" && m.captured(3).isEmpty()) return {};
    return m.captured(0);
  }
  static bool ordered(const QString& marker) { return marker.trimmed().front().isDigit(); }

  static bool is_table_start(const QStringList& lines, int i) {
    static const QRegularExpression sep(R"(^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$)");
    return lines[i].trimmed().startsWith('|') && i + 1 < lines.size() &&
           sep.match(lines[i + 1]).hasMatch();
  }

  // Starts another block inside a paragraph (CommonMark: a heading, a fence, a bullet, "1.").
  bool interrupts(const QStringList& lines, int i) const {
    const QString& line = lines[i];
    if (is_fence(line) || heading_re().match(line).hasMatch() ||
        image_line_re().match(line).hasMatch() || is_table_start(lines, i))
      return true;
    const auto marker = list_marker(line);
    return !marker.isEmpty() && (!ordered(marker) || marker.trimmed().startsWith("1"));
  }

  QString heading(int level, const QString& text) {
    level = std::min(6, std::max(2, level + src_.shift));
    const QString html = inline_html(text);
    const QString slug = slug_of(plain_text(text), m_.slugs);
    m_.headings.push_back({level, html, slug});
    return QString("<h%1 id=\"%2\"><a name=\"%2\"></a>%3</h%1>\n").arg(level).arg(slug, html);
  }

  QString fence(const QStringList& lines, int& i) {
    const QString open = lines[i];
    const int indent = static_cast<int>(open.indexOf("```"));
    const QString lang = open.trimmed().mid(3).trimmed();
    QStringList body;
    for (++i; i < lines.size() && !is_fence(lines[i]); ++i) {
      QString l = lines[i];
      int strip = 0;
      while (strip < indent && strip < l.size() && l[strip] == ' ')
        ++strip;
      body << l.mid(strip);
    }
    if (i >= lines.size()) fail(src_.name + ": a code block (```) is never closed");
    ++i;  // the closing fence
    return QString("<pre%1><code>%2</code></pre>\n")
        .arg(lang.isEmpty() ? QString() : QString(" class=\"language-%1\"").arg(escape(lang)),
             escape(body.join('\n')));
  }

  // Cells of a table row, split at "|" outside code spans and escapes.
  static QStringList cells(const QString& row) {
    QString r = row.trimmed();
    if (r.startsWith('|')) r.remove(0, 1);
    if (r.endsWith('|') && !r.endsWith("\\|")) r.chop(1);
    QStringList out;
    QString cell;
    bool code = false;
    for (int k = 0; k < r.size(); ++k) {
      const QChar c = r[k];
      if (c == '\\' && k + 1 < r.size() && r[k + 1] == '|') {
        cell += '|';
        ++k;
      } else if (c == '`') {
        code = !code;
        cell += c;
      } else if (c == '|' && !code) {
        out << cell.trimmed();
        cell.clear();
      } else {
        cell += c;
      }
    }
    out << cell.trimmed();
    return out;
  }

  QString table(const QStringList& lines, int& i) {
    const auto head = cells(lines[i]);
    QStringList align;
    for (const auto& a : cells(lines[i + 1])) {
      const bool left = a.startsWith(':'), right = a.endsWith(':');
      align << (left && right ? "center" : right ? "right" : left ? "left" : "");
    }
    auto row = [&](const QStringList& cs, const char* tag) {
      QString r = "<tr>";
      for (int k = 0; k < head.size(); ++k) {
        const QString a = k < align.size() && !align[k].isEmpty()
                              ? QString(" align=\"%1\"").arg(align[k])
                              : QString();
        r += QString("<%1%2>%3</%1>").arg(tag, a, k < cs.size() ? inline_html(cs[k]) : QString());
      }
      return r + "</tr>\n";
    };
    QString out = "<table>\n<thead>" + row(head, "th") + "</thead>\n<tbody>\n";
    for (i += 2; i < lines.size() && lines[i].trimmed().startsWith('|'); ++i)
      out += row(cells(lines[i]), "td");
    return out + "</tbody>\n</table>\n";
  }

  static int indentation(const QString& line) {
    int k = 0;
    while (k < line.size() && line[k] == ' ')
      ++k;
    return k;
  }

  QString list(const QStringList& lines, int& i) {
    const QString first = list_marker(lines[i]);
    const bool is_ordered = ordered(first);
    const int base = indentation(lines[i]);
    QList<QStringList> items;
    bool loose = false;
    while (i < lines.size()) {
      const QString marker = list_marker(lines[i]);
      if (marker.isEmpty() || ordered(marker) != is_ordered || indentation(lines[i]) != base) break;
      const int content = static_cast<int>(marker.size());
      QStringList item{lines[i].mid(content)};
      bool after_blank = false;
      for (++i; i < lines.size(); ++i) {
        const QString& l = lines[i];
        if (l.trimmed().isEmpty()) {
          // A blank line continues the item only when indented content follows.
          int j = i + 1;
          while (j < lines.size() && lines[j].trimmed().isEmpty())
            ++j;
          if (j < lines.size() && indentation(lines[j]) >= content) {
            item << QString();
            after_blank = true;
            continue;
          }
          break;
        }
        if (indentation(l) >= content) {
          item << l.mid(content);
        } else if (!after_blank && list_marker(l).isEmpty() && !interrupts(lines, i)) {
          item << l.trimmed();  // a lazy continuation line
        } else {
          break;
        }
        if (after_blank) loose = true;
      }
      items << item;
      // A blank line between two items makes the list loose.
      int j = i;
      while (j < lines.size() && lines[j].trimmed().isEmpty())
        ++j;
      const QString next = j < lines.size() ? list_marker(lines[j]) : QString();
      if (next.isEmpty() || ordered(next) != is_ordered || indentation(lines[j]) != base) break;
      if (j > i) loose = true;
      i = j;
    }
    const QString tag = is_ordered ? "ol" : "ul";
    QString out = "<" + tag + ">\n";
    for (const auto& item : items) {
      QString html = blocks(item).trimmed();
      if (!loose && html.startsWith("<p>")) {
        const auto end = html.indexOf("</p>");
        html = html.mid(3, end - 3) + html.mid(end + 4);
      }
      out += "<li>" + html + "</li>\n";
    }
    return out + "</" + tag + ">\n";
  }

  QString paragraph(const QStringList& lines, int& i) {
    QStringList text{lines[i].trimmed()};
    for (++i; i < lines.size() && !lines[i].trimmed().isEmpty() && !interrupts(lines, i); ++i)
      text << lines[i].trimmed();
    return "<p>" + inline_html(text.join('\n')) + "</p>\n";
  }

  QString image(const QString& alt, const QString& target) {
    const QString path = QDir(src_.dir).absoluteFilePath(target);
    if (!QFileInfo(path).isFile()) fail(src_.name + ": the image " + target + " does not exist");
    const QString name = QFileInfo(path).fileName();
    const auto it = m_.images.constFind(name);
    if (it != m_.images.constEnd() &&
        QFileInfo(*it).canonicalFilePath() != QFileInfo(path).canonicalFilePath())
      fail(src_.name + ": two different images are called " + name);
    m_.images.insert(name, path);
    const int width = png_width(path);
    return QString("<img src=\"%1\" alt=\"%2\"%3>")
        .arg(escape(name), escape(plain_text(alt)),
             width > kMaxImageWidth ? QString(" width=\"%1\"").arg(kMaxImageWidth) : QString());
  }

  QString link_target(const QString& target) const {
    // Links between the manual's own sources point at its anchors.
    if (target.startsWith('#') || target.contains("://") || target.startsWith("mailto:"))
      return target;
    const auto hash = target.indexOf('#');
    if (hash > 0 && target.left(hash).endsWith(".md")) return target.mid(hash);
    return target;
  }

  // Inline Markdown: code spans first (nothing inside them is Markdown), then images, links,
  // strong and emphasis, escapes; everything else HTML-escaped.
  QString inline_html(const QString& s) {
    QString out;
    int k = 0;
    const int n = static_cast<int>(s.size());
    while (k < n) {
      const QChar c = s[k];
      if (c == '\\' && k + 1 < n && s[k + 1].isPunct()) {
        out += escape(QString(s[k + 1]));
        k += 2;
      } else if (c == '\\' && k + 1 < n && s[k + 1] == '\n') {
        out += "<br>\n";
        k += 2;
      } else if (c == '`') {
        int run = 0;
        while (k + run < n && s[k + run] == '`')
          ++run;
        const QString ticks(run, '`');
        int end = static_cast<int>(s.indexOf(ticks, k + run));
        while (end >= 0 && end + run < n && s[end + run] == '`')  // a longer run is no match
          end = static_cast<int>(s.indexOf(ticks, end + run + 1));
        if (end < 0) {
          out += ticks;
          k += run;
          continue;
        }
        QString code = s.mid(k + run, end - k - run);
        code.replace('\n', ' ');
        if (code.size() > 2 && code.startsWith(' ') && code.endsWith(' '))
          code = code.mid(1, code.size() - 2);
        out += "<code>" + escape(code) + "</code>";
        k = end + run;
      } else if ((c == '!' && k + 1 < n && s[k + 1] == '[') || c == '[') {
        static const QRegularExpression re(R"(^(!?)\[([^\]]*)\]\(([^)\s]+)\))");
        const auto m = re.match(QStringView(s).mid(k));
        if (!m.hasMatch()) {
          out += escape(QString(c));
          ++k;
          continue;
        }
        if (!m.captured(1).isEmpty())
          out += image(m.captured(2), m.captured(3));
        else
          out += QString("<a href=\"%1\">%2</a>")
                     .arg(escape(link_target(m.captured(3))), inline_html(m.captured(2)));
        k += static_cast<int>(m.capturedLength(0));
      } else if (c == '*') {
        const bool strong = k + 1 < n && s[k + 1] == '*';
        const int w = strong ? 2 : 1;
        const int end = closing(s, k + w, strong);
        if (end < 0) {
          out += QString(w, '*');
          k += w;
          continue;
        }
        const QString tag = strong ? "strong" : "em";
        out += "<" + tag + ">" + inline_html(s.mid(k + w, end - k - w)) + "</" + tag + ">";
        k = end + w;
      } else {
        out += escape(QString(c));
        ++k;
      }
    }
    return out;
  }

  // Where the emphasis opened at `from` closes: "*" / "**" after a non-space, outside code spans;
  // -1 when it does not (a lone asterisk, "*.txt", "a * b").
  static int closing(const QString& s, int from, bool strong) {
    if (from >= s.size() || s[from].isSpace()) return -1;
    bool code = false;
    for (int k = from; k < s.size(); ++k) {
      if (s[k] == '`') code = !code;
      if (code || s[k] != '*' || s[k - 1].isSpace()) continue;
      const bool two = k + 1 < s.size() && s[k + 1] == '*';
      if (strong && two) return k;
      if (!strong) {
        if (two) {  // a strong span inside the emphasis: skip it
          const int inner = closing(s, k + 2, true);
          if (inner > 0) {
            k = inner + 1;
            continue;
          }
        }
        return k;
      }
    }
    return -1;
  }
};

QStringList read_lines(const QString& path) {
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly)) fail("cannot read " + path);
  QString text = QString::fromUtf8(f.readAll());
  text.replace("\r\n", "\n");
  return text.split('\n');
}

// The lines of one PART and the shift of its headings.
QStringList select(const QString& spec, Source& src) {
  const auto hash = spec.indexOf('#');
  const QString path = hash < 0 ? spec : spec.left(hash);
  src.dir = QFileInfo(path).absolutePath();
  src.name = QFileInfo(path).fileName();
  const QStringList lines = read_lines(path);
  static const QRegularExpression heading(R"(^(#{1,6})\s+(.*?)\s*#*\s*$)");
  // Headings outside code blocks: (line, level, plain text).
  struct H {
    int line, level;
    QString text;
  };
  QList<H> hs;
  bool code = false;
  for (int i = 0; i < lines.size(); ++i) {
    if (lines[i].trimmed().startsWith("```")) code = !code;
    if (code) continue;
    const auto m = heading.match(lines[i]);
    if (m.hasMatch())
      hs.push_back({i, static_cast<int>(m.captured(1).size()), plain_text(m.captured(2))});
  }
  if (hash < 0) {  // the whole file
    src.shift = hs.isEmpty() ? 0 : 2 - hs.front().level;
    return lines;
  }
  const QString wanted = spec.mid(hash + 1);
  if (wanted.isEmpty()) {  // the introduction: after the title, before the first "## "
    int begin = 0, end = static_cast<int>(lines.size());
    for (const auto& h : hs) {
      if (h.level == 1 && begin == 0) {
        begin = h.line + 1;
      } else if (h.level >= 2) {
        end = h.line;
        break;
      }
    }
    return lines.mid(begin, end - begin);
  }
  for (int k = 0; k < hs.size(); ++k) {
    if (!hs[k].text.startsWith(wanted)) continue;
    int end = static_cast<int>(lines.size());
    for (int j = k + 1; j < hs.size(); ++j)
      if (hs[j].level <= hs[k].level) {
        end = hs[j].line;
        break;
      }
    src.shift = 2 - hs[k].level;
    return lines.mid(hs[k].line, end - hs[k].line);
  }
  fail(path + " has no heading starting with \"" + wanted + "\"");
}

const char* kStyle = R"(
body { font-family: "DejaVu Sans", "Noto Sans", "Segoe UI", Helvetica, Arial, sans-serif;
       font-size: 15px; line-height: 1.5; color: #1d1f21; background-color: #ffffff;
       max-width: 62em; margin: 0 auto; padding: 1em 2em 4em 2em; }
h1 { font-size: 28px; margin-bottom: 0.2em; }
h2 { font-size: 23px; margin-top: 2em; padding-bottom: 0.2em; border-bottom: 1px solid #d8dee4; }
h3 { font-size: 18px; margin-top: 1.6em; }
h4 { font-size: 16px; margin-top: 1.4em; }
a { color: #0b62c4; text-decoration: none; }
a:hover { text-decoration: underline; }
code { font-family: "DejaVu Sans Mono", "Noto Sans Mono", Consolas, monospace; font-size: 13px;
       background-color: #f1f3f5; }
pre { font-family: "DejaVu Sans Mono", "Noto Sans Mono", Consolas, monospace; font-size: 13px;
      background-color: #f1f3f5; padding: 8px 12px; overflow-x: auto; line-height: 1.35; }
pre code { background-color: transparent; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { border: 1px solid #c9d1d9; padding: 4px 10px; vertical-align: top; }
th { background-color: #f1f3f5; }
img { max-width: 100%; height: auto; border: 1px solid #d8dee4; }
p.figure { margin: 1.2em 0; }
span.caption { color: #57606a; font-size: 13px; }
p.version { color: #57606a; margin-top: 0; }
div.toc { background-color: #f6f8fa; border: 1px solid #d8dee4; padding: 0.6em 1.4em; margin: 1.4em 0; }
div.toc ul { margin-top: 0.2em; margin-bottom: 0.2em; }
)";

int run(const QStringList& args) {
  QString out_dir, title = "User guide", version;
  QStringList parts;
  for (int i = 0; i < args.size(); ++i) {
    auto value = [&] {
      if (i + 1 >= args.size()) fail(args[i] + " needs a value");
      return args[++i];
    };
    if (args[i] == "--out")
      out_dir = value();
    else if (args[i] == "--title")
      title = value();
    else if (args[i] == "--version")
      version = value();
    else
      parts << args[i];
  }
  if (out_dir.isEmpty() || parts.isEmpty())
    fail("usage: make_manual --out DIR [--title T] [--version V] FILE[#HEADING]...");

  Manual manual;
  manual.out_dir = out_dir;
  manual.slugs.insert("top");
  manual.slugs.insert("contents");
  QString intro, body;
  for (const auto& spec : parts) {
    Source src;
    const QStringList lines = select(spec, src);
    Converter converter(manual, src);
    const bool is_intro = spec.endsWith('#');
    (is_intro ? intro : body) += converter.blocks(lines);
  }

  // Contents: the chapters and their sections.
  QString toc =
      "<div class=\"toc\" id=\"contents\"><a name=\"contents\"></a><b>Contents</b>\n<ul>\n";
  bool in_chapter = false, in_sections = false;
  for (const auto& h : manual.headings) {
    if (h.level > 3) continue;
    const QString item = QString("<a href=\"#%1\">%2</a>").arg(h.slug, h.html);
    if (h.level == 2) {
      if (in_sections) toc += "</ul>\n";
      if (in_chapter) toc += "</li>\n";
      toc += "<li>" + item;
      in_chapter = true;
      in_sections = false;
    } else {
      if (!in_sections) toc += "\n<ul>\n";
      in_sections = true;
      toc += "<li>" + item + "</li>\n";
    }
  }
  if (in_sections) toc += "</ul>\n";
  if (in_chapter) toc += "</li>\n";
  toc += "</ul>\n</div>\n";

  QString html =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
      "<title>" +
      escape(title) + "</title>\n<style>" + kStyle +
      "</style>\n</head>\n<body>\n<h1 id=\"top\"><a name=\"top\"></a>" + escape(title) + "</h1>\n";
  if (!version.isEmpty()) html += "<p class=\"version\">Version " + escape(version) + "</p>\n";
  html += intro + toc + body + "</body>\n</html>\n";

  if (!QDir().mkpath(out_dir)) fail("cannot create " + out_dir);
  // Images no page shows any more would be installed too.
  for (const auto& old : QDir(out_dir).entryList({"*.png", "*.svg", "*.jpg"}, QDir::Files))
    if (!manual.images.contains(old)) QFile::remove(QDir(out_dir).filePath(old));
  for (auto it = manual.images.constBegin(); it != manual.images.constEnd(); ++it) {
    const QString target = QDir(out_dir).filePath(it.key());
    QFile::remove(target);
    if (!QFile::copy(it.value(), target)) fail("cannot copy " + it.value() + " to " + target);
  }
  QSaveFile f(QDir(out_dir).filePath("index.html"));
  if (!f.open(QIODevice::WriteOnly) || f.write(html.toUtf8()) < 0 || !f.commit())
    fail("cannot write " + f.fileName());
  std::printf("wrote %s (%lld sections, %lld images)\n", qPrintable(f.fileName()),
              static_cast<long long>(manual.headings.size()),
              static_cast<long long>(manual.images.size()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  QCoreApplication app(argc, argv);
  try {
    return run(app.arguments().mid(1));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_manual: error: %s\n", e.what());
    return 1;
  }
}
