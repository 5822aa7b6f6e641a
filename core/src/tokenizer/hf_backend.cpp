// Hugging Face tokenizer.json, BPE model. The pipeline follows the `tokenizers` library step by
// step (AddedVocabulary::extract_and_normalize, PreTokenizedString::split, BPE::merge_word,
// decoders' decode_chain) so that ids are identical; where the library's behaviour is subtle, the
// comment names the rule it reproduces.
#include "tokenizer/hf_backend.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <unicode/bytestream.h>
#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "lorashear/errors.h"

namespace lorashear::detail {
namespace {

using json = nlohmann::json;

// ---- UTF-8
// ----------------------------------------------------------------------------------------

inline size_t utf8_len(unsigned char c) {
  return c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 1;
}

// Decodes the (valid) character at s[i].
inline uint32_t utf8_at(std::string_view s, size_t i, size_t* len) {
  const auto c = static_cast<unsigned char>(s[i]);
  const size_t n = std::min(utf8_len(c), s.size() - i);
  *len = n;
  if (n == 1) return c;
  uint32_t cp = c & (0x7f >> n);
  for (size_t k = 1; k < n; ++k)
    cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3f);
  return cp;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

// Length of the well-formed sequence at s[i], or 0 with *bad = bytes of its maximal ill-formed
// subpart (Unicode's "maximal subpart" rule, which Python's errors="replace" and Rust's
// from_utf8_lossy follow: one U+FFFD per subpart).
size_t utf8_valid_at(std::string_view s, size_t i, size_t* bad) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
  } else {
    *bad = 1;
    return 0;
  }
  for (size_t k = 1; k < n; ++k) {
    if (i + k >= s.size()) {
      *bad = k;
      return 0;
    }
    const auto d = static_cast<unsigned char>(s[i + k]);
    const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xbf;
    if (d < l || d > h) {
      *bad = k;
      return 0;
    }
  }
  return n;
}

// `text` itself when it is valid UTF-8, else a copy with ill-formed parts replaced by U+FFFD.
std::string_view valid_utf8(std::string_view text, std::string* storage) {
  size_t i = 0;
  while (i < text.size()) {
    if (static_cast<unsigned char>(text[i]) < 0x80) {
      ++i;
      continue;
    }
    size_t bad = 0, n = utf8_valid_at(text, i, &bad);
    if (n == 0) break;
    i += n;
  }
  if (i == text.size()) return text;
  storage->assign(text.substr(0, i));
  while (i < text.size()) {
    size_t bad = 0, n = utf8_valid_at(text, i, &bad);
    if (n > 0) {
      storage->append(text.substr(i, n));
      i += n;
    } else {
      storage->append("\xef\xbf\xbd");
      i += bad;
    }
  }
  return *storage;
}

bool is_ascii(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

bool is_white_space(uint32_t cp) {
  return u_isUWhiteSpace(static_cast<UChar32>(cp));
}
// Rust's char::is_numeric: general categories Nd, Nl, No.
bool is_numeric(uint32_t cp) {
  const auto t = u_charType(static_cast<UChar32>(cp));
  return t == U_DECIMAL_DIGIT_NUMBER || t == U_LETTER_NUMBER || t == U_OTHER_NUMBER;
}
// The regex crate's \w: Alphabetic, marks, decimal digits, connector punctuation, Join_Control.
bool is_word_char(uint32_t cp) {
  const auto c = static_cast<UChar32>(cp);
  if (u_hasBinaryProperty(c, UCHAR_ALPHABETIC) || u_hasBinaryProperty(c, UCHAR_JOIN_CONTROL))
    return true;
  const auto t = u_charType(c);
  return t == U_NON_SPACING_MARK || t == U_COMBINING_SPACING_MARK || t == U_ENCLOSING_MARK ||
         t == U_DECIMAL_DIGIT_NUMBER || t == U_CONNECTOR_PUNCTUATION;
}
// Rust's is_ascii_punctuation() || is_punctuation() (general categories P*).
bool is_punctuation(uint32_t cp) {
  if (cp < 0x80) return std::ispunct(static_cast<int>(cp)) != 0;
  const auto t = u_charType(static_cast<UChar32>(cp));
  return t == U_CONNECTOR_PUNCTUATION || t == U_DASH_PUNCTUATION || t == U_START_PUNCTUATION ||
         t == U_END_PUNCTUATION || t == U_INITIAL_PUNCTUATION || t == U_FINAL_PUNCTUATION ||
         t == U_OTHER_PUNCTUATION;
}

// Last character of s[0, end), or 0 when empty.
uint32_t char_before(std::string_view s, size_t end, size_t* len) {
  if (end == 0) {
    *len = 0;
    return 0;
  }
  size_t b = end - 1;
  while (b > 0 && (static_cast<unsigned char>(s[b]) & 0xc0) == 0x80)
    --b;
  return utf8_at(s, b, len);
}

// ---- byte-level alphabet (GPT-2's bytes_to_unicode) ---------------------------------------------

struct ByteAlphabet {
  std::array<std::string, 256> to_char;  // byte → UTF-8 of its printable stand-in
  std::unordered_map<uint32_t, uint8_t> to_byte;
  ByteAlphabet() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
      const uint32_t cp = printable ? static_cast<uint32_t>(b) : 256 + n++;
      append_utf8(to_char[b], cp);
      to_byte[cp] = static_cast<uint8_t>(b);
    }
  }
};

const ByteAlphabet& byte_alphabet() {
  static const ByteAlphabet a;
  return a;
}

// ---- PCRE2
// ----------------------------------------------------------------------------------------

struct Span {
  size_t begin, end;
};

// Per-thread match data and JIT stack: a pattern may be used from several threads at once.
struct MatchScratch {
  pcre2_match_data* data = nullptr;
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* stack = nullptr;
  MatchScratch() {
    data = pcre2_match_data_create(1, nullptr);
    context = pcre2_match_context_create(nullptr);
    stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    if (context && stack) pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~MatchScratch() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
};

MatchScratch& scratch() {
  thread_local MatchScratch s;
  return s;
}

class Regex {
 public:
  // `where` names the file and the field in errors. `literal` matches the pattern as plain text.
  Regex(const std::string& pattern, bool literal, const std::string& where) : pattern_(pattern) {
    int err = 0;
    PCRE2_SIZE offset = 0;
    const uint32_t options = literal ? PCRE2_UTF | PCRE2_LITERAL : PCRE2_UTF | PCRE2_UCP;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options,
                          &err, &offset, nullptr);
    if (code_ == nullptr) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(err, buf, sizeof(buf));
      throw InputError(
          where + ": regex cannot be compiled by PCRE2: " + reinterpret_cast<const char*>(buf) +
          " at offset " + std::to_string(offset) + " in '" + pattern + "'");
    }
    // Without JIT (unsupported CPU, SELinux execmem) pcre2_match interprets the pattern.
    jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Non-overlapping matches, left to right (leftmost-first); `s` must be valid UTF-8.
  void find_all(std::string_view s, std::vector<Span>& out) const {
    MatchScratch& sc = scratch();
    size_t off = 0;
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
    while (off <= s.size()) {
      int rc = pcre2_match(code_, subject, s.size(), off, PCRE2_NO_UTF_CHECK, sc.data, sc.context);
      if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(code_, subject, s.size(), off, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, sc.data,
                         sc.context);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        PCRE2_UCHAR buf[256];
        pcre2_get_error_message(rc, buf, sizeof(buf));
        throw Error(std::string("tokenizer regex failed on the input: ") +
                    reinterpret_cast<const char*>(buf) + " (pattern '" + pattern_ + "')");
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(sc.data);
      const size_t b = ov[0], e = ov[1];
      out.push_back({b, e});
      if (e > b) {
        off = e;
      } else {  // empty match: step over one character
        if (e >= s.size()) break;
        off = e + utf8_len(static_cast<unsigned char>(s[e]));
      }
    }
  }
  const std::string& pattern() const { return pattern_; }
  bool jit() const { return jit_; }

 private:
  std::string pattern_;
  pcre2_code* code_ = nullptr;
  bool jit_ = false;
};

// {"String": "..."} or {"Regex": "..."}.
std::unique_ptr<Regex> pattern_from(const json& p, const std::string& where) {
  if (p.is_object() && p.contains("String"))
    return std::make_unique<Regex>(p.at("String").get<std::string>(), true, where);
  if (p.is_object() && p.contains("Regex"))
    return std::make_unique<Regex>(p.at("Regex").get<std::string>(), false, where);
  throw InputError(where + ": pattern must be {\"String\": …} or {\"Regex\": …}, found " +
                   p.dump().substr(0, 80));
}

// ---- split behaviours (NormalizedString::split) -------------------------------------------------

enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

Behavior behavior_from(const std::string& s, const std::string& where) {
  if (s == "Removed") return Behavior::Removed;
  if (s == "Isolated") return Behavior::Isolated;
  if (s == "MergedWithPrevious") return Behavior::MergedWithPrevious;
  if (s == "MergedWithNext") return Behavior::MergedWithNext;
  if (s == "Contiguous") return Behavior::Contiguous;
  throw InputError(where + ": unknown split behavior '" + s + "'");
}

struct Mark {
  size_t begin, end;
  bool match;
};

// Matches → marks covering [0, n) (non-matches between them), as `tokenizers` builds them.
void marks_from_matches(const std::vector<Span>& m, size_t n, bool invert, std::vector<Mark>& out) {
  out.clear();
  size_t prev = 0;
  for (const Span& s : m) {
    if (prev != s.begin) out.push_back({prev, s.begin, invert});
    out.push_back({s.begin, s.end, !invert});
    prev = s.end;
  }
  if (prev != n) out.push_back({prev, n, invert});
}

// The pieces `behavior` keeps, empty ones dropped.
void apply_behavior(const std::vector<Mark>& marks, Behavior behavior, std::vector<Span>& out) {
  out.clear();
  switch (behavior) {
    case Behavior::Isolated:
      for (const Mark& m : marks)
        out.push_back({m.begin, m.end});
      break;
    case Behavior::Removed:
      for (const Mark& m : marks)
        if (!m.match) out.push_back({m.begin, m.end});
      break;
    case Behavior::MergedWithPrevious: {
      bool prev_match = false;
      for (const Mark& m : marks) {
        if (m.match && !prev_match && !out.empty())
          out.back().end = m.end;
        else
          out.push_back({m.begin, m.end});
        prev_match = m.match;
      }
      break;
    }
    case Behavior::MergedWithNext: {
      bool prev_match = false;
      for (auto it = marks.rbegin(); it != marks.rend(); ++it) {
        if (it->match && !prev_match && !out.empty())
          out.back().begin = it->begin;
        else
          out.push_back({it->begin, it->end});
        prev_match = it->match;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
    case Behavior::Contiguous: {
      bool prev_match = false;
      for (const Mark& m : marks) {
        if (m.match == prev_match && !out.empty())
          out.back().end = m.end;
        else
          out.push_back({m.begin, m.end});
        prev_match = m.match;
      }
      break;
    }
  }
  out.erase(std::remove_if(out.begin(), out.end(), [](const Span& s) { return s.end <= s.begin; }),
            out.end());
}

// ---- normalizers
// ----------------------------------------------------------------------------------

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // `cont`: `s` continues text cut off before it (streaming), so nothing is prepended.
  virtual void normalize(std::string& s, bool cont) const = 0;
  // Whether normalising both sides of a cut between "\n" and an ASCII letter separately gives
  // the same text as normalising the whole (see encode_stream).
  virtual bool stream_safe() const { return true; }
};

class UnicodeNormalizer : public Normalizer {
 public:
  UnicodeNormalizer(const std::string& form, const std::string& where) {
    UErrorCode st = U_ZERO_ERROR;
    if (form == "NFC")
      n_ = icu::Normalizer2::getNFCInstance(st);
    else if (form == "NFD")
      n_ = icu::Normalizer2::getNFDInstance(st);
    else if (form == "NFKC")
      n_ = icu::Normalizer2::getNFKCInstance(st);
    else
      n_ = icu::Normalizer2::getNFKDInstance(st);
    if (U_FAILURE(st) || n_ == nullptr)
      throw Error(where + ": ICU has no " + form + " normalizer (" + u_errorName(st) + ")");
  }
  void normalize(std::string& s, bool) const override {
    if (is_ascii(s)) return;  // every form leaves ASCII unchanged
    UErrorCode st = U_ZERO_ERROR;
    if (n_->isNormalizedUTF8(s, st) && U_SUCCESS(st)) return;
    st = U_ZERO_ERROR;
    std::string out;
    icu::StringByteSink<std::string> sink(&out, static_cast<int32_t>(s.size()));
    n_->normalizeUTF8(0, s, sink, nullptr, st);
    if (U_FAILURE(st)) throw Error(std::string("Unicode normalisation failed: ") + u_errorName(st));
    s.swap(out);
  }

 private:
  const icu::Normalizer2* n_ = nullptr;
};

class LowercaseNormalizer : public Normalizer {
 public:
  void normalize(std::string& s, bool) const override {
    if (is_ascii(s)) {
      for (char& c : s)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      return;
    }
    // Full case mapping with the final-sigma rule, as Rust's str::to_lowercase.
    icu::UnicodeString u = icu::UnicodeString::fromUTF8(s);
    u.toLower(icu::Locale::getRoot());
    std::string out;
    u.toUTF8String(out);
    s.swap(out);
  }
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string p) : prepend_(std::move(p)) {}
  void normalize(std::string& s, bool cont) const override {
    if (!s.empty() && !cont) s.insert(0, prepend_);
  }
  const std::string& text() const { return prepend_; }

 private:
  std::string prepend_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::unique_ptr<Regex> re, std::string content, bool literal,
                    std::string literal_text)
      : re_(std::move(re)),
        content_(std::move(content)),
        literal_(literal),
        literal_text_(std::move(literal_text)) {}
  void normalize(std::string& s, bool) const override {
    if (literal_) {
      if (literal_text_.empty() || s.find(literal_text_) == std::string::npos) return;
      std::string out;
      out.reserve(s.size() + s.size() / 4);
      size_t pos = 0, hit;
      while ((hit = s.find(literal_text_, pos)) != std::string::npos) {
        out.append(s, pos, hit - pos);
        out += content_;
        pos = hit + literal_text_.size();
      }
      out.append(s, pos, std::string::npos);
      s.swap(out);
      return;
    }
    std::vector<Span> m;
    re_->find_all(s, m);
    if (m.empty()) return;
    std::string out;
    size_t pos = 0;
    for (const Span& sp : m) {
      out.append(s, pos, sp.begin - pos);
      out += content_;
      pos = sp.end;
    }
    out.append(s, pos, std::string::npos);
    s.swap(out);
  }
  bool stream_safe() const override {
    return literal_ && literal_text_.find('\n') == std::string::npos;
  }
  // A literal space → text replacement (SentencePiece-style files replace ' ' by U+2581).
  bool replaces_space_with(const std::string& with) const {
    return literal_ && literal_text_ == " " && content_ == with;
  }

 private:
  std::unique_ptr<Regex> re_;
  std::string content_;
  bool literal_;
  std::string literal_text_;
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string& s, bool) const override {
    size_t b = 0, e = s.size(), len;
    if (left_)
      while (b < e && is_white_space(utf8_at(s, b, &len)))
        b += len;
    if (right_)
      while (e > b && is_white_space(char_before(s, e, &len)))
        e -= len;
    s = s.substr(b, e - b);
  }
  bool stream_safe() const override { return false; }

 private:
  bool left_, right_;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> n) : n_(std::move(n)) {}
  void normalize(std::string& s, bool cont) const override {
    for (const auto& n : n_)
      n->normalize(s, cont);
  }
  bool stream_safe() const override {
    for (const auto& n : n_)
      if (!n->stream_safe()) return false;
    return true;
  }
  const std::vector<std::unique_ptr<Normalizer>>& parts() const { return n_; }

 private:
  std::vector<std::unique_ptr<Normalizer>> n_;
};

// ---- pre-tokenizers
// -------------------------------------------------------------------------------

struct Piece {
  std::string text;
  bool cont = false;         // begins at a streaming cut: nothing is prepended to it
  bool input_start = false;  // begins at offset 0 of the original input (Metaspace "first")
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void pre_tokenize(std::vector<Piece>& pieces) const = 0;
  virtual bool splits() const { return true; }        // may cut a piece in several
  virtual bool adds_prefix() const { return false; }  // may prepend text to a piece
};

// Replaces each piece by the spans `split_one` finds in it (the first span keeps the flags).
template <typename F>
void split_each(std::vector<Piece>& pieces, F&& split_one) {
  std::vector<Piece> out;
  out.reserve(pieces.size() * 2);
  std::vector<Span> spans;
  for (Piece& p : pieces) {
    spans.clear();
    split_one(p.text, spans);
    for (const Span& s : spans) {
      Piece q;
      q.text.assign(p.text, s.begin, s.end - s.begin);
      q.cont = p.cont && s.begin == 0;
      q.input_start = p.input_start && s.begin == 0;
      out.push_back(std::move(q));
    }
  }
  pieces.swap(out);
}

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(std::unique_ptr<Regex> re, Behavior b, bool invert)
      : re_(std::move(re)), behavior_(b), invert_(invert) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    std::vector<Span> matches;
    std::vector<Mark> marks;
    split_each(pieces, [&](const std::string& t, std::vector<Span>& spans) {
      matches.clear();
      re_->find_all(t, matches);
      marks_from_matches(matches, t.size(), invert_, marks);
      apply_behavior(marks, behavior_, spans);
    });
  }
  const Regex& regex() const { return *re_; }

 private:
  std::unique_ptr<Regex> re_;
  Behavior behavior_;
  bool invert_;
};

// Splits by a character class (Digits, WhitespaceSplit, Punctuation): each matching character is
// a match, as `tokenizers`' split with a char predicate.
class CharClassPreTokenizer : public PreTokenizer {
 public:
  CharClassPreTokenizer(bool (*pred)(uint32_t), Behavior b) : pred_(pred), behavior_(b) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    std::vector<Span> matches;
    std::vector<Mark> marks;
    split_each(pieces, [&](const std::string& t, std::vector<Span>& spans) {
      matches.clear();
      size_t len;
      for (size_t i = 0; i < t.size(); i += len)
        if (pred_(utf8_at(t, i, &len))) matches.push_back({i, i + len});
      marks_from_matches(matches, t.size(), false, marks);
      apply_behavior(marks, behavior_, spans);
    });
  }

 private:
  bool (*pred_)(uint32_t);
  Behavior behavior_;
};

constexpr const char* kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex, const std::string& where)
      : add_prefix_space_(add_prefix_space) {
    if (use_regex) re_ = std::make_unique<Regex>(kGpt2Pattern, false, where);
  }
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    if (add_prefix_space_)
      for (Piece& p : pieces)
        if (!p.cont && (p.text.empty() || p.text[0] != ' ')) p.text.insert(0, 1, ' ');
    if (re_) {
      std::vector<Span> matches;
      std::vector<Mark> marks;
      split_each(pieces, [&](const std::string& t, std::vector<Span>& spans) {
        matches.clear();
        re_->find_all(t, matches);
        marks_from_matches(matches, t.size(), false, marks);
        apply_behavior(marks, Behavior::Isolated, spans);
      });
    }
    const auto& a = byte_alphabet();
    std::string mapped;
    for (Piece& p : pieces) {
      mapped.clear();
      for (unsigned char c : p.text)
        mapped += a.to_char[c];
      p.text.swap(mapped);
    }
  }
  bool splits() const override { return re_ != nullptr; }
  bool adds_prefix() const override { return add_prefix_space_; }
  bool uses_regex() const { return re_ != nullptr; }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> re_;
};

enum class PrependScheme { Always, First, Never };

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : repl_(std::move(replacement)), scheme_(scheme), split_(split) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    for (Piece& p : pieces) {
      std::string out;
      out.reserve(p.text.size() + repl_.size());
      for (char c : p.text)
        if (c == ' ')
          out += repl_;
        else
          out.push_back(c);
      const bool starts = out.compare(0, repl_.size(), repl_) == 0;
      const bool prepend =
          !starts && !p.cont &&
          (scheme_ == PrependScheme::Always || (scheme_ == PrependScheme::First && p.input_start));
      if (prepend) out.insert(0, repl_);
      p.text.swap(out);
    }
    if (!split_) return;
    std::vector<Span> matches;
    std::vector<Mark> marks;
    split_each(pieces, [&](const std::string& t, std::vector<Span>& spans) {
      matches.clear();
      for (size_t pos = 0; (pos = t.find(repl_, pos)) != std::string::npos; pos += repl_.size())
        matches.push_back({pos, pos + repl_.size()});
      marks_from_matches(matches, t.size(), false, marks);
      apply_behavior(marks, Behavior::MergedWithNext, spans);
    });
  }
  bool splits() const override { return split_; }
  bool adds_prefix() const override { return scheme_ != PrependScheme::Never; }
  const std::string& replacement() const { return repl_; }
  PrependScheme scheme() const { return scheme_; }

 private:
  std::string repl_;
  PrependScheme scheme_;
  bool split_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> p) : p_(std::move(p)) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    for (const auto& p : p_)
      p->pre_tokenize(pieces);
  }
  bool splits() const override {
    for (const auto& p : p_)
      if (p->splits()) return true;
    return false;
  }
  bool adds_prefix() const override {
    for (const auto& p : p_)
      if (p->adds_prefix()) return true;
    return false;
  }
  const std::vector<std::unique_ptr<PreTokenizer>>& parts() const { return p_; }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> p_;
};

// ---- decoders (decode_chain)
// ----------------------------------------------------------------------

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

class ByteLevelDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    const auto& a = byte_alphabet();
    std::string bytes;
    for (const std::string& t : tokens) {
      // A token with a character outside the alphabet is taken as its raw bytes.
      std::string mine;
      bool ok = true;
      size_t len;
      for (size_t i = 0; i < t.size() && ok; i += len) {
        auto it = a.to_byte.find(utf8_at(t, i, &len));
        if (it == a.to_byte.end())
          ok = false;
        else
          mine.push_back(static_cast<char>(it->second));
      }
      bytes += ok ? mine : t;
    }
    std::string storage;
    const std::string_view v = valid_utf8(bytes, &storage);
    tokens.assign(1, std::string(v));
  }
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string repl, PrependScheme scheme)
      : repl_(std::move(repl)), scheme_(scheme) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const std::string& t = tokens[i];
      for (size_t pos = 0; pos < t.size();) {
        if (t.compare(pos, repl_.size(), repl_) == 0) {
          out.push_back(' ');
          pos += repl_.size();
        } else {
          out.push_back(t[pos++]);
        }
      }
      if (i == 0 && scheme_ != PrependScheme::Never && !out.empty() && out[0] == ' ')
        out.erase(0, 1);
      tokens[i].swap(out);
    }
  }

 private:
  std::string repl_;
  PrependScheme scheme_;
};

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// "<0xAB>" → 0xAB, -1 otherwise.
int byte_token_value(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  const int h = hex_digit(t[3]), l = hex_digit(t[4]);
  return h < 0 || l < 0 ? -1 : h * 16 + l;
}

class ByteFallbackDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string bytes;
    size_t count = 0;
    auto flush = [&] {
      if (count == 0) return;
      std::string storage;
      if (valid_utf8(bytes, &storage).size() == bytes.size() && storage.empty())
        out.push_back(bytes);
      else
        for (size_t i = 0; i < count; ++i)
          out.push_back("\xef\xbf\xbd");
      bytes.clear();
      count = 0;
    };
    for (std::string& t : tokens) {
      const int b = byte_token_value(t);
      if (b >= 0) {
        bytes.push_back(static_cast<char>(b));
        ++count;
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens.swap(out);
  }
};

class FuseDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens)
      all += t;
    tokens.assign(1, all);
  }
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(std::string content, size_t start, size_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    if (content_.empty()) return;
    for (std::string& t : tokens) {
      size_t b = 0, e = t.size();
      for (size_t i = 0; i < start_ && t.compare(b, content_.size(), content_) == 0 && b < e; ++i)
        b += content_.size();
      for (size_t i = 0; i < stop_ && e >= b + content_.size() &&
                         t.compare(e - content_.size(), content_.size(), content_) == 0;
           ++i)
        e -= content_.size();
      t = t.substr(b, e - b);
    }
  }

 private:
  std::string content_;
  size_t start_, stop_;
};

class ReplaceDecoder : public Decoder {
 public:
  explicit ReplaceDecoder(std::unique_ptr<Normalizer> r) : r_(std::move(r)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::string& t : tokens)
      r_->normalize(t, false);
  }

 private:
  std::unique_ptr<Normalizer> r_;
};

// BPEDecoder: the end-of-word suffix becomes a space (nothing after the last token).
class SuffixDecoder : public Decoder {
 public:
  explicit SuffixDecoder(std::string suffix) : suffix_(std::move(suffix)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    if (suffix_.empty()) return;
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string& t = tokens[i];
      const std::string with = i + 1 == tokens.size() ? "" : " ";
      std::string out;
      size_t pos = 0, hit;
      while ((hit = t.find(suffix_, pos)) != std::string::npos) {
        out.append(t, pos, hit - pos);
        out += with;
        pos = hit + suffix_.size();
      }
      out.append(t, pos, std::string::npos);
      t.swap(out);
    }
  }

 private:
  std::string suffix_;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> d) : d_(std::move(d)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& d : d_)
      d->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> d_;
};

// ---- added-token matching (AddedVocabulary::find_matches) ---------------------------------------

struct AddedMatch {
  size_t begin, end;
  int32_t id;  // -1: plain text
};

class AddedMatcher {
 public:
  void add(const std::string& content, const HfAddedToken& t) {
    if (content.empty()) return;
    entries_.push_back({content, t});
    first_[static_cast<unsigned char>(content[0])] = true;
  }
  void finish() {
    // Longest first: at a given start the first entry that matches is the longest
    // (aho-corasick's LeftmostLongest).
    std::stable_sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) {
      return a.content.size() > b.content.size();
    });
  }
  bool empty() const { return entries_.empty(); }

  // Splits `s` into added-token matches and the text between them.
  void split(std::string_view s, std::vector<AddedMatch>& out) const {
    out.clear();
    size_t start_offset = 0;
    size_t i = 0;
    while (i < s.size()) {
      if (!first_[static_cast<unsigned char>(s[i])]) {
        ++i;
        continue;
      }
      const Entry* hit = nullptr;
      for (const Entry& e : entries_)
        if (s.compare(i, e.content.size(), e.content) == 0) {
          hit = &e;
          break;
        }
      if (hit == nullptr) {
        ++i;
        continue;
      }
      size_t start = i, stop = i + hit->content.size();
      i = stop;  // the search resumes after this match, whether it is kept or not
      const HfAddedToken& t = hit->token;
      size_t len;
      if (t.single_word) {
        const bool start_space = start == 0 || !is_word_char(char_before(s, start, &len));
        const bool stop_space = stop == s.size() || !is_word_char(utf8_at(s, stop, &len));
        if (!start_space || !stop_space) continue;
      }
      if (t.lstrip) {
        size_t b = start;
        while (b > 0) {
          const uint32_t c = char_before(s, b, &len);
          if (!is_white_space(c)) break;
          b -= len;
        }
        start = std::max(b, start_offset);
      }
      if (t.rstrip)
        while (stop < s.size() && is_white_space(utf8_at(s, stop, &len)))
          stop += len;
      if (start < start_offset) continue;  // overlaps what the previous token's rstrip took
      if (start_offset < start) out.push_back({start_offset, start, -1});
      out.push_back({start, stop, t.id});
      start_offset = stop;
      i = stop;
    }
    if (start_offset < s.size()) out.push_back({start_offset, s.size(), -1});
  }

 private:
  struct Entry {
    std::string content;
    HfAddedToken token;
  };
  std::vector<Entry> entries_;
  std::array<bool, 256> first_{};
};

// ---- BPE model
// ------------------------------------------------------------------------------------

struct PairHash {
  size_t operator()(uint64_t k) const {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return static_cast<size_t>(k);
  }
};

struct MergeValue {
  int32_t rank;
  int32_t new_id;
};

class BpeModel {
 public:
  std::unordered_map<std::string, int32_t> vocab;
  std::unordered_map<uint64_t, MergeValue, PairHash> merges;
  std::vector<std::pair<std::string, std::string>> merge_list;
  int32_t unk = -1;
  bool fuse_unk = false, byte_fallback = false, ignore_merges = false;
  std::string prefix, suffix;  // continuing_subword_prefix, end_of_word_suffix
  std::array<int32_t, 256> byte_ids{};
  // Single characters: ids of one-character pieces (the common case has no prefix/suffix).
  std::vector<int32_t> bmp_ids;  // code point < 0x10000 → id, -1 absent
  std::unordered_map<uint32_t, int32_t> astral_ids;

  static uint64_t key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  void index_chars() {
    bmp_ids.assign(0x10000, -1);
    for (const auto& [piece, id] : vocab) {
      if (piece.empty()) continue;
      size_t len;
      const uint32_t cp = utf8_at(piece, 0, &len);
      if (len != piece.size()) continue;
      if (cp < 0x10000)
        bmp_ids[cp] = id;
      else
        astral_ids[cp] = id;
    }
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof(name), "<0x%02X>", b);
      auto it = vocab.find(name);
      byte_ids[b] = it == vocab.end() ? -1 : it->second;
    }
  }

  int32_t char_id(uint32_t cp) const {
    if (cp < 0x10000) return bmp_ids[cp];
    auto it = astral_ids.find(cp);
    return it == astral_ids.end() ? -1 : it->second;
  }

  // One pre-tokenized word → ids (BPE::merge_word then Word::merge_all).
  void tokenize(const std::string& word, std::vector<int32_t>& out) const {
    if (word.empty()) return;
    if (ignore_merges) {
      auto it = vocab.find(word);
      if (it != vocab.end()) {
        out.push_back(it->second);
        return;
      }
    }
    {
      std::lock_guard<std::mutex> lock(cache_mutex_);
      auto it = cache_.find(word);
      if (it != cache_.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    thread_local std::vector<Symbol> symbols;
    symbols.clear();
    const bool plain = prefix.empty() && suffix.empty();
    size_t len;
    bool prev_unk = false;
    for (size_t i = 0; i < word.size(); i += len) {
      const uint32_t cp = utf8_at(word, i, &len);
      int32_t id;
      if (plain) {
        id = char_id(cp);
      } else {
        std::string s = word.substr(i, len);
        if (i > 0) s.insert(0, prefix);
        if (i + len == word.size()) s += suffix;
        auto it = vocab.find(s);
        id = it == vocab.end() ? -1 : it->second;
      }
      if (id >= 0) {
        symbols.push_back({id, 0, 0});
        prev_unk = false;
        continue;
      }
      if (byte_fallback) {
        bool all = true;
        for (size_t k = 0; k < len; ++k)
          all = all && byte_ids[static_cast<unsigned char>(word[i + k])] >= 0;
        if (all) {
          for (size_t k = 0; k < len; ++k)
            symbols.push_back({byte_ids[static_cast<unsigned char>(word[i + k])], 0, 0});
          prev_unk = false;
          continue;
        }
      }
      if (unk >= 0) {
        if (!(fuse_unk && prev_unk)) symbols.push_back({unk, 0, 0});
        prev_unk = true;
      }
    }
    const size_t first = out.size();
    merge_all(symbols, out);
    if (word.size() < 256) {
      std::lock_guard<std::mutex> lock(cache_mutex_);
      if (cache_.size() < kCacheCapacity)
        cache_.emplace(word, std::vector<int32_t>(out.begin() + first, out.end()));
    }
  }

 private:
  struct Symbol {
    int32_t id;
    int32_t prev, next;  // -1 at the ends; a merged-away symbol has id -1
  };
  struct Candidate {
    int32_t rank, pos, new_id;
    // std::priority_queue is a max-heap: the lowest rank, then the leftmost, comes first.
    bool operator<(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  static constexpr size_t kCacheCapacity = 1 << 17;

  void merge_all(std::vector<Symbol>& sym, std::vector<int32_t>& out) const {
    const int32_t n = static_cast<int32_t>(sym.size());
    for (int32_t i = 0; i < n; ++i) {
      sym[i].prev = i - 1;
      sym[i].next = i + 1 < n ? i + 1 : -1;
    }
    if (n > 1) {
      thread_local std::vector<Candidate> heap;
      heap.clear();
      for (int32_t i = 0; i + 1 < n; ++i) {
        auto it = merges.find(key(sym[i].id, sym[i + 1].id));
        if (it != merges.end()) heap.push_back({it->second.rank, i, it->second.new_id});
      }
      std::make_heap(heap.begin(), heap.end());
      while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end());
        const Candidate top = heap.back();
        heap.pop_back();
        Symbol& cur = sym[top.pos];
        if (cur.id < 0 || cur.next < 0) continue;
        const int32_t next_pos = cur.next;
        Symbol& right = sym[next_pos];
        auto it = merges.find(key(cur.id, right.id));
        if (it == merges.end() || it->second.new_id != top.new_id) continue;  // stale
        cur.id = top.new_id;
        cur.next = right.next;
        right.id = -1;
        if (right.next >= 0) sym[right.next].prev = top.pos;
        if (cur.prev >= 0) {
          auto m = merges.find(key(sym[cur.prev].id, cur.id));
          if (m != merges.end()) {
            heap.push_back({m->second.rank, cur.prev, m->second.new_id});
            std::push_heap(heap.begin(), heap.end());
          }
        }
        if (cur.next >= 0) {
          auto m = merges.find(key(cur.id, sym[cur.next].id));
          if (m != merges.end()) {
            heap.push_back({m->second.rank, top.pos, m->second.new_id});
            std::push_heap(heap.begin(), heap.end());
          }
        }
      }
    }
    for (int32_t i = 0; i >= 0 && i < n; i = sym[i].next)
      out.push_back(sym[i].id);
  }

  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

// ---- parsing helpers
// ------------------------------------------------------------------------------

// Ids index dense tables; a larger one would be a broken file, not a vocabulary.
constexpr int64_t kMaxId = int64_t(1) << 26;

std::string type_of(const json& j, const std::string& where) {
  if (!j.is_object()) throw InputError(where + ": expected an object, found " + j.type_name());
  auto it = j.find("type");
  if (it == j.end() || !it->is_string()) throw InputError(where + ": missing \"type\"");
  return it->get<std::string>();
}

bool flag(const json& j, const char* key, bool fallback) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? fallback : it->get<bool>();
}

std::string text_or(const json& j, const char* key, const std::string& fallback) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? fallback : it->get<std::string>();
}

// A token id: get<int64_t>() of a float outside int64's range is undefined behaviour, so anything
// but an integer in 0..kMaxId-1 is refused first.
int32_t token_id(const json& v, const std::string& where) {
  if (!v.is_number_integer())
    throw InputError(where + ": expected an integer id, found " +
                     (v.is_primitive() ? v.dump() : std::string(v.type_name())));
  const int64_t id = v.get<int64_t>();
  if (id < 0 || id >= kMaxId || (v.is_number_unsigned() && v.get<uint64_t>() >= uint64_t(kMaxId)))
    throw InputError(where + ": id " + v.dump() + " is out of range");
  return static_cast<int32_t>(id);
}

}  // namespace

// ---- HfTokenizer
// ----------------------------------------------------------------------------------

struct HfTokenizer::Impl {
  std::string source;
  BpeModel model;
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<Decoder> decoder;
  std::vector<HfAddedToken> added;
  AddedMatcher raw_matcher, normalized_matcher;
  std::vector<std::string> pieces;  // id → text
  std::vector<int32_t> merge_rank;  // id → rank of the merge creating it
  std::vector<bool> special;        // id → special added token
  std::vector<int32_t> prefix, suffix;
  bool byte_level = false;
  bool space_prefix = false;
  bool stream_cuts = false;
  std::string pre_name;

  std::unique_ptr<Normalizer> parse_normalizer(const json& j, const std::string& where);
  std::unique_ptr<PreTokenizer> parse_pre_tokenizer(const json& j, const std::string& where);
  std::unique_ptr<Decoder> parse_decoder(const json& j, const std::string& where);
  void parse_model(const json& j);
  void parse_post_processor(const json& j);
  void derive_stream_rule();
  void derive_pre_name();

  // The whole pipeline on valid UTF-8. `cont`: the text continues a cut (see encode_stream);
  // `input_start`: offset 0 is the start of the user's input.
  void encode_valid(std::string_view text, bool cont, std::vector<int32_t>& out) const {
    std::vector<AddedMatch> sections;
    if (raw_matcher.empty())
      sections.push_back({0, text.size(), -1});
    else
      raw_matcher.split(text, sections);
    std::vector<AddedMatch> subs;
    std::vector<Piece> pieces_buf;
    std::string s;
    for (const AddedMatch& sec : sections) {
      if (sec.id >= 0) {
        out.push_back(sec.id);
        continue;
      }
      if (sec.end <= sec.begin) continue;
      const bool sec_cont = cont && sec.begin == 0;
      s.assign(text.substr(sec.begin, sec.end - sec.begin));
      if (normalizer) normalizer->normalize(s, sec_cont);
      if (s.empty()) continue;
      subs.clear();
      if (normalized_matcher.empty())
        subs.push_back({0, s.size(), -1});
      else
        normalized_matcher.split(s, subs);
      for (const AddedMatch& m : subs) {
        if (m.id >= 0) {
          out.push_back(m.id);
          continue;
        }
        pieces_buf.clear();
        Piece p;
        p.text.assign(s, m.begin, m.end - m.begin);
        p.cont = sec_cont && m.begin == 0;
        p.input_start = !cont && sec.begin == 0 && m.begin == 0;
        pieces_buf.push_back(std::move(p));
        if (pre_tokenizer) pre_tokenizer->pre_tokenize(pieces_buf);
        for (const Piece& q : pieces_buf)
          model.tokenize(q.text, out);
      }
    }
  }

  void encode_any(std::string_view text, bool cont, std::vector<int32_t>& out) const {
    std::string storage;
    encode_valid(valid_utf8(text, &storage), cont, out);
  }
};

HfTokenizer::HfTokenizer() : impl_(std::make_unique<Impl>()) {}
HfTokenizer::~HfTokenizer() = default;

std::unique_ptr<Normalizer> HfTokenizer::Impl::parse_normalizer(const json& j,
                                                                const std::string& where) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, where);
  const std::string here = where + " (" + type + ")";
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD")
    return std::make_unique<UnicodeNormalizer>(type, here);
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "Prepend")
    return std::make_unique<PrependNormalizer>(j.at("prepend").get<std::string>());
  if (type == "Replace") {
    const json& p = j.at("pattern");
    const bool literal = p.is_object() && p.contains("String");
    return std::make_unique<ReplaceNormalizer>(pattern_from(p, here),
                                               j.at("content").get<std::string>(), literal,
                                               literal ? p.at("String").get<std::string>() : "");
  }
  if (type == "Strip")
    return std::make_unique<StripNormalizer>(flag(j, "strip_left", true),
                                             flag(j, "strip_right", true));
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (const json& n : j.at("normalizers")) {
      auto part = parse_normalizer(n, where);
      if (part) parts.push_back(std::move(part));
    }
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  throw InputError(source + ": normalizer type '" + type +
                   "' is not supported (supported: NFC, NFD, NFKC, NFKD, Lowercase, Prepend, "
                   "Replace, Strip, Sequence)");
}

std::unique_ptr<PreTokenizer> HfTokenizer::Impl::parse_pre_tokenizer(const json& j,
                                                                     const std::string& where) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, where);
  const std::string here = where + " (" + type + ")";
  if (type == "Split")
    return std::make_unique<SplitPreTokenizer>(
        pattern_from(j.at("pattern"), here),
        behavior_from(j.at("behavior").get<std::string>(), here), flag(j, "invert", false));
  if (type == "ByteLevel") {
    byte_level = true;
    return std::make_unique<ByteLevelPreTokenizer>(flag(j, "add_prefix_space", true),
                                                   flag(j, "use_regex", true), here);
  }
  if (type == "Metaspace") {
    const std::string repl = text_or(j, "replacement", "\xe2\x96\x81");
    PrependScheme scheme =
        flag(j, "add_prefix_space", true) ? PrependScheme::Always : PrependScheme::Never;
    if (j.contains("prepend_scheme")) {
      const std::string s = j.at("prepend_scheme").get<std::string>();
      if (s == "always")
        scheme = PrependScheme::Always;
      else if (s == "first")
        scheme = PrependScheme::First;
      else if (s == "never")
        scheme = PrependScheme::Never;
      else
        throw InputError(here + ": unknown prepend_scheme '" + s + "'");
    }
    if (scheme != PrependScheme::Never) space_prefix = true;
    return std::make_unique<MetaspacePreTokenizer>(repl, scheme, flag(j, "split", true));
  }
  if (type == "Digits")
    return std::make_unique<CharClassPreTokenizer>(is_numeric, flag(j, "individual_digits", false)
                                                                   ? Behavior::Isolated
                                                                   : Behavior::Contiguous);
  if (type == "WhitespaceSplit")
    return std::make_unique<CharClassPreTokenizer>(is_white_space, Behavior::Removed);
  if (type == "Punctuation")
    return std::make_unique<CharClassPreTokenizer>(
        is_punctuation, behavior_from(text_or(j, "behavior", "Isolated"), here));
  if (type == "Whitespace")
    return std::make_unique<SplitPreTokenizer>(
        std::make_unique<Regex>("\\w+|[^\\w\\s]+", false, here), Behavior::Removed, true);
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (const json& p : j.at("pretokenizers")) {
      auto part = parse_pre_tokenizer(p, where);
      if (part) parts.push_back(std::move(part));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(parts));
  }
  throw InputError(source + ": pre-tokenizer type '" + type +
                   "' is not supported (supported: Split, ByteLevel, Metaspace, Digits, "
                   "Whitespace, WhitespaceSplit, Punctuation, Sequence)");
}

std::unique_ptr<Decoder> HfTokenizer::Impl::parse_decoder(const json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, where);
  const std::string here = where + " (" + type + ")";
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Metaspace") {
    PrependScheme scheme =
        flag(j, "add_prefix_space", true) ? PrependScheme::Always : PrependScheme::Never;
    const std::string s = text_or(j, "prepend_scheme", "");
    if (s == "first") scheme = PrependScheme::First;
    if (s == "always") scheme = PrependScheme::Always;
    if (s == "never") scheme = PrependScheme::Never;
    return std::make_unique<MetaspaceDecoder>(text_or(j, "replacement", "\xe2\x96\x81"), scheme);
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip")
    return std::make_unique<StripDecoder>(j.at("content").get<std::string>(),
                                          j.value("start", size_t(0)), j.value("stop", size_t(0)));
  if (type == "Replace") {
    const json& p = j.at("pattern");
    const bool literal = p.is_object() && p.contains("String");
    return std::make_unique<ReplaceDecoder>(std::make_unique<ReplaceNormalizer>(
        pattern_from(p, here), j.at("content").get<std::string>(), literal,
        literal ? p.at("String").get<std::string>() : ""));
  }
  if (type == "BPEDecoder") return std::make_unique<SuffixDecoder>(text_or(j, "suffix", "</w>"));
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Decoder>> parts;
    for (const json& d : j.at("decoders")) {
      auto part = parse_decoder(d, where);
      if (part) parts.push_back(std::move(part));
    }
    return std::make_unique<SequenceDecoder>(std::move(parts));
  }
  throw InputError(source + ": decoder type '" + type +
                   "' is not supported (supported: ByteLevel, Metaspace, ByteFallback, Fuse, "
                   "Strip, Replace, BPEDecoder, Sequence)");
}

void HfTokenizer::Impl::parse_model(const json& j) {
  if (!j.is_object()) throw InputError(source + ": \"model\" must be an object");
  const std::string type = j.contains("type")     ? j.at("type").get<std::string>()
                           : j.contains("merges") ? "BPE"
                                                  : "";
  if (type != "BPE")
    throw InputError(source + ": model type '" + type +
                     "' is not supported (only BPE tokenizer.json files are)");
  if (j.contains("dropout") && !j.at("dropout").is_null() && j.at("dropout").get<double>() > 0)
    throw InputError(source + ": BPE dropout is not supported (it makes encoding random)");
  const json& vocab = j.at("vocab");
  if (!vocab.is_object()) throw InputError(source + ": model.vocab must be an object");
  BpeModel& m = model;
  m.vocab.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    // get<int64_t>() of a float outside int64's range is undefined behaviour: integers only.
    if (!it.value().is_number_integer())
      throw InputError(source + ": vocabulary id of '" + it.key() + "' is not an integer");
    const int64_t id = it.value().get<int64_t>();
    if (id < 0 || id >= kMaxId)
      throw InputError(source + ": vocabulary id " + std::to_string(id) + " of '" + it.key() +
                       "' is out of range");
    m.vocab[it.key()] = static_cast<int32_t>(id);
  }
  m.prefix = text_or(j, "continuing_subword_prefix", "");
  m.suffix = text_or(j, "end_of_word_suffix", "");
  m.fuse_unk = flag(j, "fuse_unk", false);
  m.byte_fallback = flag(j, "byte_fallback", false);
  m.ignore_merges = flag(j, "ignore_merges", false);
  const std::string unk = text_or(j, "unk_token", "");
  if (!unk.empty()) {
    auto it = m.vocab.find(unk);
    // tokenizers only fails later, when an unknown character appears; an absent unk is unusable.
    if (it != m.vocab.end()) m.unk = it->second;
  }

  const json& merges = j.at("merges");
  if (!merges.is_array()) throw InputError(source + ": model.merges must be an array");
  m.merge_list.reserve(merges.size());
  m.merges.reserve(merges.size() * 2);
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const json& e = merges[rank];
    std::string a, b;
    if (e.is_string()) {
      const std::string s = e.get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        throw InputError(source + ": merge " + std::to_string(rank) + " '" + s +
                         "' is not two pieces separated by one space");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    } else {
      throw InputError(source + ": merge " + std::to_string(rank) +
                       " must be \"a b\" or [\"a\", \"b\"], found " + e.dump().substr(0, 80));
    }
    auto ia = m.vocab.find(a), ib = m.vocab.find(b);
    if (ia == m.vocab.end() || ib == m.vocab.end())
      throw InputError(source + ": merge " + std::to_string(rank) + " uses '" +
                       (ia == m.vocab.end() ? a : b) + "', which is not in the vocabulary");
    std::string merged = a;
    merged += m.prefix.empty() || b.compare(0, m.prefix.size(), m.prefix) != 0
                  ? b
                  : b.substr(m.prefix.size());
    auto im = m.vocab.find(merged);
    if (im == m.vocab.end())
      throw InputError(source + ": merge " + std::to_string(rank) + " makes '" + merged +
                       "', which is not in the vocabulary");
    m.merges[BpeModel::key(ia->second, ib->second)] = {static_cast<int32_t>(rank), im->second};
    m.merge_list.emplace_back(std::move(a), std::move(b));
  }
  m.index_chars();
}

void HfTokenizer::Impl::parse_post_processor(const json& j) {
  if (j.is_null() || !j.is_object()) return;
  const std::string type = j.value("type", "");
  auto id_of = [&](const std::string& t) {
    for (const auto& a : added)
      if (a.content == t) return a.id;
    auto it = model.vocab.find(t);
    return it == model.vocab.end() ? -1 : it->second;
  };
  if (type == "TemplateProcessing") {
    const json& specials = j.value("special_tokens", json::object());
    bool seen_sequence = false;
    for (const json& item : j.at("single")) {
      if (item.contains("Sequence")) {
        seen_sequence = true;
        continue;
      }
      if (!item.contains("SpecialToken")) continue;
      const std::string name = item.at("SpecialToken").at("id").get<std::string>();
      std::vector<int32_t> ids;
      if (specials.contains(name)) {
        for (const json& id : specials.at(name).at("ids"))
          ids.push_back(token_id(id, source + ": post_processor special token '" + name + "'"));
      } else if (id_of(name) >= 0) {
        ids.push_back(id_of(name));
      }
      auto& target = seen_sequence ? suffix : prefix;
      target.insert(target.end(), ids.begin(), ids.end());
    }
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    const json& cls = j.at("cls");
    const json& sep = j.at("sep");
    prefix.push_back(token_id(cls.at(1), source + ": post_processor cls"));
    suffix.push_back(token_id(sep.at(1), source + ": post_processor sep"));
  } else if (type == "Sequence") {
    for (const json& p : j.at("processors"))
      parse_post_processor(p);
  }
  // ByteLevel and others add nothing around a single sequence.
}

// llama.cpp names pre-tokenizers by the regexes it reimplements (llama-vocab.cpp).
const char* const kLlama3Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kQwen2Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

json pre_tokenizer_for_llama_cpp(const std::string& name) {
  auto byte_level = [](bool use_regex) {
    return json{{"type", "ByteLevel"},
                {"add_prefix_space", false},
                {"trim_offsets", false},
                {"use_regex", use_regex}};
  };
  auto split = [&](const char* regex) {
    return json{{"type", "Sequence"},
                {"pretokenizers",
                 {json{{"type", "Split"},
                       {"pattern", {{"Regex", regex}}},
                       {"behavior", "Isolated"},
                       {"invert", false}},
                  byte_level(false)}}};
  };
  if (name == "llama-bpe" || name == "llama3") return split(kLlama3Regex);
  if (name == "qwen2") return split(kQwen2Regex);
  if (name == "gpt-2") return byte_level(true);
  if (name == "smollm")
    return json{{"type", "Sequence"},
                {"pretokenizers",
                 {json{{"type", "Digits"}, {"individual_digits", true}}, byte_level(true)}}};
  return nullptr;
}

void HfTokenizer::Impl::derive_pre_name() {
  const char* kLlama3 = kLlama3Regex;
  const char* kQwen2 = kQwen2Regex;
  std::vector<const PreTokenizer*> steps;
  if (auto* seq = dynamic_cast<const SequencePreTokenizer*>(pre_tokenizer.get())) {
    for (const auto& p : seq->parts())
      steps.push_back(p.get());
  } else if (pre_tokenizer) {
    steps.push_back(pre_tokenizer.get());
  }
  std::string regex;
  bool digits = false, gpt2 = false;
  for (const PreTokenizer* p : steps) {
    if (auto* s = dynamic_cast<const SplitPreTokenizer*>(p)) regex = s->regex().pattern();
    if (dynamic_cast<const CharClassPreTokenizer*>(p)) digits = true;
    if (auto* b = dynamic_cast<const ByteLevelPreTokenizer*>(p)) gpt2 = gpt2 || b->uses_regex();
  }
  if (regex == kLlama3)
    pre_name = "llama-bpe";
  else if (regex == kQwen2)
    pre_name = "qwen2";
  else if (regex.empty() && gpt2 && digits)
    pre_name = "smollm";
  else if (regex.empty() && gpt2)
    pre_name = "gpt-2";
  else if (steps.empty() || !byte_level)
    pre_name = "default";
}

// Streaming cuts the input only between a "\n" and an ASCII letter, and only when the file's
// components cannot carry anything across such a point:
//  - no added token contains "\n" or strips whitespace to its left while starting with a letter
//    (so no added-token match or lstrip spans the cut);
//  - every normalizer is local there (Unicode forms, Lowercase, literal Replace without "\n",
//    Prepend, which is skipped for the continuing part);
//  - prefix-adding pre-tokenizers (ByteLevel add_prefix_space, Metaspace prepend) come before any
//    splitting one, so the continuing part is exactly "no prefix";
//  - no vocabulary token contains the newline followed by an ASCII letter (as "\n" or as the
//    byte-level "Ċ"), so no BPE token can span the cut whatever the pre-tokenizer made of it;
//  - and, for the pre-tokenizer's regexes, a probe: a few texts encoded whole and cut give the
//    same ids.
void HfTokenizer::Impl::derive_stream_rule() {
  stream_cuts = false;
  for (const auto& a : added) {
    if (a.content.find('\n') != std::string::npos) return;
    const char c0 = a.content.empty() ? 0 : a.content[0];
    if (a.lstrip && std::isalpha(static_cast<unsigned char>(c0))) return;
  }
  if (normalizer && !normalizer->stream_safe()) return;
  {
    std::vector<const PreTokenizer*> steps;
    if (auto* seq = dynamic_cast<const SequencePreTokenizer*>(pre_tokenizer.get())) {
      for (const auto& p : seq->parts())
        steps.push_back(p.get());
    } else if (pre_tokenizer) {
      steps.push_back(pre_tokenizer.get());
    }
    bool split_seen = false;
    for (const PreTokenizer* p : steps) {
      if (p->adds_prefix() && split_seen) return;
      if (p->splits()) split_seen = true;
    }
  }
  const std::string nl_mapped = byte_level ? byte_alphabet().to_char['\n'] : "\n";
  for (const auto& [piece, id] : model.vocab)
    for (const std::string& nl : {std::string("\n"), nl_mapped}) {
      for (size_t pos = 0; (pos = piece.find(nl, pos)) != std::string::npos; pos += nl.size())
        if (pos + nl.size() < piece.size() &&
            std::isalpha(static_cast<unsigned char>(piece[pos + nl.size()])))
          return;
    }
  static const std::pair<const char*, const char*> kProbes[] = {
      {"a\n", "b"},           {"Hello world.\n", "The end"},
      {"  \n\n", "X y"},      {"x,\n", "y"},
      {"don't\n", "Do"},      {"\t\n", "z"},
      {"caf\xc3\xa9\n", "e"}, {"12\n", "ab 3"},
      {"a \n", "b  c"}};
  for (const auto& [left, right] : kProbes) {
    std::vector<int32_t> whole, cut;
    encode_valid(std::string(left) + right, false, whole);
    encode_valid(left, false, cut);
    encode_valid(right, true, cut);
    if (whole != cut) return;
  }
  stream_cuts = true;
}

std::unique_ptr<HfTokenizer> HfTokenizer::from_json(const std::string& text,
                                                    const std::string& source) {
  std::unique_ptr<HfTokenizer> tok(new HfTokenizer());
  Impl& im = *tok->impl_;
  im.source = source;
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw InputError(source + ": not valid JSON: " + e.what());
  }
  try {
    if (!j.is_object() || !j.contains("model"))
      throw InputError(source + ": not a tokenizer.json (no \"model\" object)");
    im.parse_model(j.at("model"));
    int64_t max_id = -1;
    for (const auto& [piece, id] : im.model.vocab)
      max_id = std::max<int64_t>(max_id, id);
    if (j.contains("added_tokens") && !j.at("added_tokens").is_null()) {
      for (const json& a : j.at("added_tokens")) {
        HfAddedToken t;
        t.content = a.at("content").get<std::string>();
        // get<int64_t>() of a float outside int64's range is undefined behaviour: integers only.
        if (!a.at("id").is_number_integer())
          throw InputError(source + ": added token '" + t.content + "' has id " +
                           a.at("id").dump() + ", not an integer");
        const int64_t id = a.at("id").get<int64_t>();
        t.special = flag(a, "special", false);
        t.lstrip = flag(a, "lstrip", false);
        t.rstrip = flag(a, "rstrip", false);
        t.single_word = flag(a, "single_word", false);
        t.normalized = flag(a, "normalized", !t.special);
        if (id < 0 || id >= kMaxId)
          throw InputError(source + ": added token '" + t.content + "' has id " +
                           std::to_string(id) + ", outside 0.." + std::to_string(kMaxId - 1));
        t.id = static_cast<int32_t>(id);
        max_id = std::max<int64_t>(max_id, t.id);
        im.added.push_back(std::move(t));
      }
    }
    im.normalizer = im.parse_normalizer(j.value("normalizer", json()), source + ": normalizer");
    im.pre_tokenizer =
        im.parse_pre_tokenizer(j.value("pre_tokenizer", json()), source + ": pre_tokenizer");
    im.decoder = im.parse_decoder(j.value("decoder", json()), source + ": decoder");
    im.parse_post_processor(j.value("post_processor", json()));
    for (const auto& n : {im.normalizer.get()}) {
      // SentencePiece-style files: Prepend "▁" (+ Replace ' ' → ▁) in the normalizer.
      auto check = [&](const Normalizer* x) {
        if (auto* p = dynamic_cast<const PrependNormalizer*>(x))
          if (p->text() == "\xe2\x96\x81") im.space_prefix = true;
      };
      if (auto* seq = dynamic_cast<const SequenceNormalizer*>(n)) {
        for (const auto& part : seq->parts())
          check(part.get());
      } else {
        check(n);
      }
    }

    if (max_id < 0) throw InputError(source + ": empty vocabulary");
    im.pieces.assign(static_cast<size_t>(max_id + 1), std::string());
    im.special.assign(static_cast<size_t>(max_id + 1), false);
    im.merge_rank.assign(static_cast<size_t>(max_id + 1), -1);
    for (const auto& [piece, id] : im.model.vocab)
      im.pieces[id] = piece;
    for (const auto& a : im.added) {
      im.pieces[a.id] = a.content;
      im.special[a.id] = a.special;
    }
    for (const auto& [k, v] : im.model.merges)
      if (im.merge_rank[v.new_id] < 0 || v.rank < im.merge_rank[v.new_id])
        im.merge_rank[v.new_id] = v.rank;

    // Added tokens: non-normalized ones match the raw text, normalized ones their normalized
    // form in the normalized text.
    for (const auto& a : im.added) {
      if (!a.normalized || !im.normalizer) {
        im.raw_matcher.add(a.content, a);
      } else {
        std::string n = a.content;
        im.normalizer->normalize(n, false);
        im.normalized_matcher.add(n, a);
      }
    }
    im.raw_matcher.finish();
    im.normalized_matcher.finish();
  } catch (const json::exception& e) {
    throw InputError(source + ": unexpected tokenizer.json content: " + e.what());
  }
  im.derive_pre_name();
  im.derive_stream_rule();
  return tok;
}

std::vector<int32_t> HfTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  impl_->encode_any(text, false, out);
  return out;
}

bool HfTokenizer::stream_cuts() const {
  return impl_->stream_cuts;
}

// Windows end just before an ASCII letter that follows "\n" (the last such point in what has been
// read); see derive_stream_rule for why ids cannot change there. The text after the cut is kept
// for the next window. With no such point, or a file whose components rule cuts out, the window
// grows until one appears (at worst, the whole stream).
uint64_t HfTokenizer::encode_stream(
    std::istream& in, size_t window,
    const std::function<void(const std::vector<int32_t>&)>& on_ids) const {
  window = std::max<size_t>(window, 1024);
  std::string buf;
  std::vector<int32_t> ids;
  uint64_t total = 0;
  bool cont = false;
  std::vector<char> chunk(window);
  while (true) {
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    const auto got = static_cast<size_t>(in.gcount());
    total += got;
    buf.append(chunk.data(), got);
    if (got == 0 || !in) break;
    if (!impl_->stream_cuts) continue;
    size_t cut = 0;
    for (size_t p = buf.size() - 1; p > 0; --p)
      if (buf[p - 1] == '\n' && std::isalpha(static_cast<unsigned char>(buf[p]))) {
        cut = p;
        break;
      }
    if (cut == 0) continue;
    ids.clear();
    impl_->encode_any(std::string_view(buf).substr(0, cut), cont, ids);
    on_ids(ids);
    buf.erase(0, cut);
    cont = true;
  }
  if (in.bad()) throw InputError("tokenize: read error on the input stream");
  ids.clear();
  if (!buf.empty()) impl_->encode_any(buf, cont, ids);
  if (!ids.empty()) on_ids(ids);
  return total;
}

std::string HfTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (skip_special && impl_->special[id]) continue;
    tokens.push_back(impl_->pieces[id]);
  }
  if (!impl_->decoder) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i)
      out += (i ? " " : "") + tokens[i];
    return out;
  }
  impl_->decoder->decode_chain(tokens);
  std::string out;
  for (const auto& t : tokens)
    out += t;
  return out;
}

int64_t HfTokenizer::vocab_size() const {
  return static_cast<int64_t>(impl_->pieces.size());
}
const std::string& HfTokenizer::piece(int64_t id) const {
  return impl_->pieces[static_cast<size_t>(id)];
}
int64_t HfTokenizer::token_to_id(const std::string& piece) const {
  for (const auto& a : impl_->added)
    if (a.content == piece) return a.id;
  auto it = impl_->model.vocab.find(piece);
  return it == impl_->model.vocab.end() ? -1 : it->second;
}
int64_t HfTokenizer::unk_id() const {
  return impl_->model.unk;
}
const std::vector<HfAddedToken>& HfTokenizer::added_tokens() const {
  return impl_->added;
}
std::vector<std::pair<std::string, std::string>> HfTokenizer::merges() const {
  return impl_->model.merge_list;
}
int64_t HfTokenizer::merge_rank_of(int64_t id) const {
  return impl_->merge_rank[static_cast<size_t>(id)];
}
bool HfTokenizer::byte_level() const {
  return impl_->byte_level;
}
bool HfTokenizer::byte_fallback() const {
  return impl_->model.byte_fallback;
}
bool HfTokenizer::adds_space_prefix() const {
  return impl_->space_prefix;
}
std::string HfTokenizer::pre_tokenizer_name() const {
  return impl_->pre_name;
}
const std::vector<int32_t>& HfTokenizer::template_prefix() const {
  return impl_->prefix;
}
const std::vector<int32_t>& HfTokenizer::template_suffix() const {
  return impl_->suffix;
}

}  // namespace lorashear::detail
