#include "lorashear/eval/tasks.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "lorashear/dist/distributed.h"
#include "lorashear/errors.h"
#include "lorashear/runtime.h"

namespace lorashear {

namespace fs = std::filesystem;

std::string task_format_name(TaskFormat f) {
  switch (f) {
    case TaskFormat::MultipleChoice:
      return "multiple_choice";
    case TaskFormat::Partial:
      return "partial";
    case TaskFormat::Lambada:
      return "lambada";
    case TaskFormat::HellaswagText:
      return "hellaswag_text";
  }
  return "unknown";
}

namespace {

/// Known tasks, the file stems they are published under and their context template.
struct KnownTask {
  const char* name;
  std::vector<const char*> stems;
  bool answer_template;   ///< query + "\nAnswer:" (lm-eval-harness ARC, BoolQ, PIQA)
  bool acc_only = false;  ///< lm-eval-harness reports acc alone (BoolQ): the headline is acc
};

const std::vector<KnownTask>& task_table() {
  static const std::vector<KnownTask> table = {
      {"arc_easy", {"arc_easy", "arc-easy"}, true},
      {"arc_challenge", {"arc_challenge", "arc-challenge"}, true},
      {"boolq", {"boolq"}, true, true},
      {"piqa", {"piqa"}, true},
      {"hellaswag", {"hellaswag", "hellaswag_val_full"}, false},
      {"winogrande", {"winogrande", "winogrande_debiased"}, false},
      {"openbookqa", {"openbookqa", "openbook_qa"}, false},
      {"copa", {"copa"}, false},
      {"lambada", {"lambada", "lambada_openai", "lambada_standard"}, false},
  };
  return table;
}

const KnownTask* find_known(const std::string& name) {
  for (const auto& t : task_table()) {
    if (name == t.name) return &t;
    for (const char* s : t.stems)
      if (name == s) return &t;
  }
  return nullptr;
}

std::string where(const std::string& path, int64_t line) {
  return path + ":" + std::to_string(line);
}

// Python's str.isspace for the characters a text file plausibly ends with.
bool is_space_codepoint(uint32_t c) {
  return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f) || c == 0x85 ||
         c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
         c == 0x202f || c == 0x205f || c == 0x3000;
}

/// Byte length of the trailing whitespace of a UTF-8 string.
size_t trailing_space_bytes(const std::string& s) {
  size_t end = s.size();
  while (end > 0) {
    size_t begin = end - 1;
    while (begin > 0 && (static_cast<unsigned char>(s[begin]) & 0xc0) == 0x80)
      --begin;
    const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + begin;
    uint32_t c = p[0];
    const size_t n = end - begin;
    if (n == 2) c = ((p[0] & 0x1f) << 6) | (p[1] & 0x3f);
    if (n == 3) c = ((p[0] & 0x0f) << 12) | ((p[1] & 0x3f) << 6) | (p[2] & 0x3f);
    if (n == 4) c = 0;  // no whitespace outside the BMP
    if (!is_space_codepoint(c)) break;
    end = begin;
  }
  return s.size() - end;
}

/// Unicode code points (Python's len) of a UTF-8 string.
int64_t codepoints(const std::string& s) {
  int64_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xc0) != 0x80) ++n;
  return n;
}

std::string answer_template(const std::string& query) {
  // lm-eval-harness: "Question: {q}\nAnswer:"; some exports already end the query with "\n".
  if (!query.empty() && query.back() == '\n') return query + "Answer:";
  return query + "\nAnswer:";
}

const nlohmann::json& field(const nlohmann::json& j, const char* key, const std::string& at) {
  auto it = j.find(key);
  if (it == j.end()) throw InputError(at + ": missing \"" + std::string(key) + "\"");
  return *it;
}

std::string string_field(const nlohmann::json& j, const char* key, const std::string& at) {
  const auto& v = field(j, key, at);
  if (!v.is_string()) throw InputError(at + ": \"" + std::string(key) + "\" is not a string");
  return v.get<std::string>();
}

std::vector<std::string> string_list(const nlohmann::json& j, const char* key,
                                     const std::string& at, size_t min_size) {
  const auto& v = field(j, key, at);
  if (!v.is_array() || v.size() < min_size)
    throw InputError(at + ": \"" + std::string(key) + "\" must be a list of at least " +
                     std::to_string(min_size) + " strings");
  std::vector<std::string> out;
  for (const auto& e : v) {
    if (!e.is_string())
      throw InputError(at + ": \"" + std::string(key) + "\" holds a value that is not a string");
    out.push_back(e.get<std::string>());
  }
  return out;
}

int64_t gold_field(const nlohmann::json& j, size_t n, const std::string& at) {
  const auto& v = field(j, "gold", at);
  if (!v.is_number_integer()) throw InputError(at + ": \"gold\" must be an integer index");
  const auto g = v.get<int64_t>();
  if (g < 0 || g >= static_cast<int64_t>(n))
    throw InputError(at + ": \"gold\" is " + std::to_string(g) + ", outside 0.." +
                     std::to_string(n - 1));
  return g;
}

TaskFormat json_format(const nlohmann::json& j, const std::string& at) {
  if (!j.is_object()) throw InputError(at + ": a line must hold a JSON object");
  if (j.contains("query") && j.contains("choices")) return TaskFormat::MultipleChoice;
  if (j.contains("context_options")) return TaskFormat::Partial;
  if (j.contains("context") && j.contains("continuation")) return TaskFormat::Lambada;
  throw InputError(at +
                   ": unknown task format: expected {\"query\", \"choices\", \"gold\"}, "
                   "{\"context_options\", \"continuation\", \"gold\"} or {\"context\", "
                   "\"continuation\"} (or llama.cpp's 6-line HellaSwag text)");
}

void load_jsonl(TaskData& task, const std::vector<std::string>& lines, bool answer) {
  bool first = true;
  for (size_t i = 0; i < lines.size(); ++i) {
    const auto& line = lines[i];
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto at = where(task.path, static_cast<int64_t>(i + 1));
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw InputError(at + ": not JSON (" + std::string(e.what()) + ")");
    }
    const auto format = json_format(j, at);
    if (first) {
      task.format = format;
      first = false;
    } else if (format != task.format) {
      throw InputError(at + ": a " + task_format_name(format) + " item in a " +
                       task_format_name(task.format) + " file");
    }
    TaskItem item;
    item.line = static_cast<int64_t>(i + 1);
    switch (format) {
      case TaskFormat::MultipleChoice: {
        auto query = string_field(j, "query", at);
        const auto context = answer ? answer_template(query) : query;
        item.continuations = string_list(j, "choices", at, 2);
        item.contexts.assign(item.continuations.size(), context);
        item.gold = gold_field(j, item.continuations.size(), at);
        break;
      }
      case TaskFormat::Partial: {
        item.contexts = string_list(j, "context_options", at, 2);
        item.continuations.assign(item.contexts.size(), string_field(j, "continuation", at));
        item.gold = gold_field(j, item.contexts.size(), at);
        break;
      }
      case TaskFormat::Lambada:
        item.contexts = {string_field(j, "context", at)};
        item.continuations = {string_field(j, "continuation", at)};
        break;
      case TaskFormat::HellaswagText:
        break;
    }
    task.items.push_back(std::move(item));
  }
}

void load_hellaswag_text(TaskData& task, std::vector<std::string> lines) {
  while (!lines.empty() && lines.back().find_first_not_of(" \t\r") == std::string::npos)
    lines.pop_back();
  task.format = TaskFormat::HellaswagText;
  for (size_t i = 0; i < lines.size(); i += 6) {
    if (i + 6 > lines.size())
      throw InputError(where(task.path, static_cast<int64_t>(i + 1)) +
                       ": an item of llama.cpp's HellaSwag text needs 6 lines (context, gold "
                       "index, 4 endings); the file ends after " +
                       std::to_string(lines.size() - i));
    const auto at = where(task.path, static_cast<int64_t>(i + 2));
    const auto& g = lines[i + 1];
    if (g.size() != 1 || g[0] < '0' || g[0] > '3')
      throw InputError(at + ": expected the gold ending's index (0-3), found \"" + g.substr(0, 40) +
                       "\" — not llama.cpp's HellaSwag text format");
    TaskItem item;
    item.line = static_cast<int64_t>(i + 1);
    item.gold = g[0] - '0';
    for (size_t e = 0; e < 4; ++e) {
      item.contexts.push_back(lines[i]);
      item.continuations.push_back(lines[i + 2 + e]);
    }
    task.items.push_back(std::move(item));
  }
}

}  // namespace

const std::vector<std::string>& known_tasks() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& t : task_table())
      v.emplace_back(t.name);
    return v;
  }();
  return names;
}

std::string canonical_task_name(const std::string& name) {
  const auto* t = find_known(name);
  return t ? t->name : std::string();
}

std::string find_task_file(const std::string& name, const std::string& dir) {
  std::vector<std::string> stems{name};
  if (const auto* t = find_known(name))
    for (const char* s : t->stems)
      if (std::find(stems.begin(), stems.end(), s) == stems.end()) stems.emplace_back(s);
  std::vector<std::string> tried;
  for (const auto& stem : stems) {
    for (const char* ext : {".jsonl", ".txt"}) {
      const auto p = fs::path(dir) / (stem + ext);
      tried.push_back(p.filename().string());
      std::error_code ec;
      if (fs::is_regular_file(p, ec)) return p.string();
    }
  }
  std::string list;
  for (const auto& t : tried)
    list += (list.empty() ? "" : ", ") + t;
  throw InputError("no file for task " + name + " in " + dir + " (looked for " + list + ")");
}

std::vector<TaskFile> resolve_task_files(const std::vector<std::string>& names,
                                         const std::vector<std::string>& data) {
  if (data.empty()) throw UsageError("no task files: give a directory or files with --data");
  std::vector<std::string> files, dirs;
  for (const auto& d : data) {
    std::error_code ec;
    if (fs::is_directory(d, ec)) {
      dirs.push_back(d);
    } else if (fs::is_regular_file(d, ec)) {
      files.push_back(d);
    } else {
      throw InputError("task data " + d + " does not exist");
    }
  }
  auto file_name = [](const std::string& path) {
    const auto stem = fs::path(path).stem().string();
    const auto canon = canonical_task_name(stem);
    return canon.empty() ? stem : canon;
  };
  std::vector<TaskFile> out;
  auto add = [&](const std::string& name, const std::string& path) {
    for (const auto& t : out)
      if (t.name == name) return;
    out.push_back({name, path});
  };
  if (names.empty()) {
    for (const auto& f : files)
      add(file_name(f), f);
    for (const auto& d : dirs)
      for (const auto& t : known_tasks()) {
        try {
          add(t, find_task_file(t, d));
        } catch (const InputError&) {
          // A directory need not hold every task.
        }
      }
    if (out.empty()) {
      std::string list;
      for (const auto& d : data)
        list += (list.empty() ? "" : ", ") + d;
      throw InputError("no task files in " + list);
    }
    return out;
  }
  for (const auto& name : names) {
    const auto canon = canonical_task_name(name);
    const auto wanted = canon.empty() ? name : canon;
    bool found = false;
    for (const auto& f : files)
      if (file_name(f) == wanted) {
        add(wanted, f);
        found = true;
        break;
      }
    if (found) continue;
    if (canon.empty()) {
      std::string list;
      for (const auto& t : known_tasks())
        list += (list.empty() ? "" : ", ") + t;
      throw UsageError("unknown task \"" + name + "\"; known tasks: " + list +
                       " (any other task: name its file in --data)");
    }
    if (dirs.empty())
      throw InputError("no file for task " + canon + " among the files given with --data");
    std::string error;
    for (const auto& d : dirs) {
      try {
        add(canon, find_task_file(canon, d));
        found = true;
        break;
      } catch (const InputError& e) {
        error = e.what();
      }
    }
    if (!found) throw InputError(error);
  }
  return out;
}

TaskData load_task(const std::string& name, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("cannot open task file " + path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
  }
  if (in.bad()) throw InputError("cannot read task file " + path);
  TaskData task;
  const auto* known = find_known(name);
  task.name = known ? known->name : name;
  task.path = path;
  const bool answer = known != nullptr && known->answer_template;
  task.headline_acc = known != nullptr && known->acc_only;
  size_t first = 0;
  while (first < lines.size() && lines[first].find_first_not_of(" \t") == std::string::npos)
    ++first;
  if (first == lines.size()) throw InputError(path + ": the task file holds no items");
  if (lines[first][lines[first].find_first_not_of(" \t")] == '{') {
    load_jsonl(task, lines, answer);
  } else {
    load_hellaswag_text(task, std::move(lines));
  }
  if (task.items.empty()) throw InputError(path + ": the task file holds no items");
  switch (task.format) {
    case TaskFormat::MultipleChoice:
      task.template_note = answer ? "query + \"\\nAnswer:\"" : "query as is";
      break;
    case TaskFormat::Partial:
      task.template_note = "each context option, the shared continuation scored";
      break;
    case TaskFormat::Lambada:
      task.template_note = "context as is, greedy continuation";
      break;
    case TaskFormat::HellaswagText:
      task.template_note = "context line as is, 4 endings";
      break;
  }
  return task;
}

namespace {

struct Request {
  std::vector<int64_t> ctx;   // what the first continuation token is conditioned on
  std::vector<int64_t> cont;  // scored tokens
  double ll = 0.0;
  bool greedy = true;
};

/// Scores every request: contexts with identical tokens run once; up to `batch` contexts of equal
/// length are prefilled together, then their requests, sorted by continuation length, read the
/// expanded KV cache in passes of up to `batch` sequences (little padding).
void score_requests(LlamaModelImpl& model, std::vector<Request>& reqs, int64_t batch,
                    const std::function<void(int64_t)>& on_done, const TaskContext* tctx,
                    dist::Distributed* ranks) {
  std::map<std::vector<int64_t>, std::vector<size_t>> by_context;
  for (size_t i = 0; i < reqs.size(); ++i)
    by_context[reqs[i].ctx].push_back(i);
  std::vector<const std::pair<const std::vector<int64_t>, std::vector<size_t>>*> contexts;
  for (const auto& kv : by_context)
    contexts.push_back(&kv);
  std::stable_sort(contexts.begin(), contexts.end(),
                   [](const auto* a, const auto* b) { return a->first.size() < b->first.size(); });
  const auto device = model.options().device;
  // Groups: up to `batch` contexts of one length.
  std::vector<std::pair<size_t, size_t>> groups;
  int64_t max_positions = 1;
  for (size_t c0 = 0; c0 < contexts.size();) {
    const size_t len = contexts[c0]->first.size();
    size_t c1 = c0;
    while (c1 < contexts.size() && contexts[c1]->first.size() == len &&
           static_cast<int64_t>(c1 - c0) < batch) {
      for (auto r : contexts[c1]->second)  // the last continuation token is only a target
        max_positions = std::max<int64_t>(max_positions, len + reqs[r].cont.size() - 1);
      ++c1;
    }
    groups.emplace_back(c0, c1);
    c0 = c1;
  }
  // Data parallel: this rank takes every world-size-th group; the others' requests come from the
  // all-reduce at the end (each request is scored by exactly one rank, zeros elsewhere).
  const bool split = ranks != nullptr && ranks->active();
  if (split) {
    std::vector<std::pair<size_t, size_t>> mine;
    for (size_t g = static_cast<size_t>(ranks->rank()); g < groups.size();
         g += static_cast<size_t>(ranks->world_size()))
      mine.push_back(groups[g]);
    groups.swap(mine);
  }
  const auto join = [&] {
    if (!split) return;
    auto values = torch::zeros({static_cast<int64_t>(reqs.size()), 2}, torch::kFloat64);
    auto v = values.accessor<double, 2>();
    for (const auto& [c0, c1] : groups)
      for (size_t c = c0; c < c1; ++c)
        for (auto r : contexts[c]->second) {
          v[static_cast<int64_t>(r)][0] = reqs[r].ll;
          v[static_cast<int64_t>(r)][1] = reqs[r].greedy ? 1.0 : 0.0;
        }
    ranks->allreduce_sum(values);
    for (size_t r = 0; r < reqs.size(); ++r) {
      reqs[r].ll = v[static_cast<int64_t>(r)][0];
      reqs[r].greedy = v[static_cast<int64_t>(r)][1] > 0.5;
    }
  };
  std::atomic<int64_t> done{0};
  auto process = [&](size_t c0, size_t c1) {
    task_check(tctx);
    const size_t len = contexts[c0]->first.size();
    const int64_t G = static_cast<int64_t>(c1 - c0);
    const int64_t L = static_cast<int64_t>(len);
    // Requests of this group, the context row each reads, shortest continuation first.
    std::vector<std::pair<size_t, int64_t>> group;
    size_t max_cont = 0;
    for (size_t c = c0; c < c1; ++c)
      for (auto r : contexts[c]->second) {
        group.emplace_back(r, static_cast<int64_t>(c - c0));
        max_cont = std::max(max_cont, reqs[r].cont.size());
      }
    std::stable_sort(group.begin(), group.end(), [&](const auto& a, const auto& b) {
      return reqs[a.first].cont.size() < reqs[b.first].cont.size();
    });

    std::vector<int64_t> flat;
    flat.reserve(G * L);
    for (size_t c = c0; c < c1; ++c)
      flat.insert(flat.end(), contexts[c]->first.begin(), contexts[c]->first.end());
    const int64_t capacity = L + std::max<int64_t>(0, static_cast<int64_t>(max_cont) - 1);
    auto cache = model.make_cache(G, capacity);
    auto input = torch::tensor(flat, torch::kLong).view({G, L}).to(device);
    auto last = model.hidden_states(input, &cache).select(1, L - 1);
    auto first_lp = torch::log_softmax(model.logits(last), -1).cpu();  // [G, V]
    auto first_arg = first_lp.argmax(-1);
    auto lp = first_lp.accessor<float, 2>();
    auto arg = first_arg.accessor<int64_t, 1>();
    for (const auto& [r, row] : group) {
      auto& q = reqs[r];
      if (q.cont.empty()) continue;
      q.ll = lp[row][q.cont[0]];
      q.greedy = arg[row] == q.cont[0];
    }

    // Continuations longer than one token: cont[:-1] after the cached context, right-padded
    // (causal attention: padding after a sequence never reaches its positions).
    for (size_t k0 = 0; k0 < group.size(); k0 += static_cast<size_t>(batch)) {
      const size_t k1 = std::min(group.size(), k0 + static_cast<size_t>(batch));
      const int64_t tail = static_cast<int64_t>(reqs[group[k1 - 1].first].cont.size()) - 1;
      if (tail <= 0) continue;
      task_check(tctx);
      const int64_t R = static_cast<int64_t>(k1 - k0);
      std::vector<int64_t> tokens(R * tail, 0), rows(R);
      std::vector<int64_t> pos, target;
      for (int64_t k = 0; k < R; ++k) {
        const auto& cont = reqs[group[k0 + k].first].cont;
        rows[k] = group[k0 + k].second;
        for (size_t t = 0; t + 1 < cont.size(); ++t)
          tokens[k * tail + t] = cont[t];
        for (size_t t = 1; t < cont.size(); ++t) {
          pos.push_back(k * tail + static_cast<int64_t>(t) - 1);
          target.push_back(cont[t]);
        }
      }
      auto rows_t = torch::tensor(rows, torch::kLong).to(device);
      KVCache expanded;
      expanded.capacity = L + tail;
      expanded.length = L;
      for (size_t l = 0; l < cache.k.size(); ++l) {
        expanded.k.push_back(cache.k[l].narrow(2, 0, L + tail).index_select(0, rows_t));
        expanded.v.push_back(cache.v[l].narrow(2, 0, L + tail).index_select(0, rows_t));
      }
      auto in = torch::tensor(tokens, torch::kLong).view({R, tail}).to(device);
      auto hidden = model.hidden_states(in, &expanded);  // [R, tail, H]
      // Only the positions that predict a continuation token go through the head.
      auto picked_hidden = hidden.reshape({R * tail, -1})
                               .index_select(0, torch::tensor(pos, torch::kLong).to(device));
      auto tgt = torch::tensor(target, torch::kLong).to(device);
      auto logits = model.logits(picked_hidden);
      auto lse = torch::logsumexp(logits, -1);
      auto picked = (logits.gather(1, tgt.unsqueeze(1)).squeeze(1) - lse).to(torch::kFloat64).cpu();
      auto hit = (logits.argmax(-1) == tgt).cpu();
      auto pa = picked.accessor<double, 1>();
      auto ha = hit.accessor<bool, 1>();
      size_t j = 0;
      for (int64_t k = 0; k < R; ++k) {
        auto& q = reqs[group[k0 + k].first];
        for (size_t t = 1; t < q.cont.size(); ++t, ++j) {
          q.ll += pa[j];
          q.greedy = q.greedy && ha[j];
        }
      }
    }
    const int64_t now = done += static_cast<int64_t>(group.size());
    if (on_done) on_done(now);
  };

  // A pass of a small model is too little work to split across cores (the threads spend more
  // time synchronising than computing), so on the CPU each core takes whole groups.
  const int workers =
      device.is_cpu() ? std::min<int>(runtime_threads(), static_cast<int>(groups.size())) : 1;
  if (workers <= 1) {
    for (const auto& [c0, c1] : groups)
      process(c0, c1);
    join();
    return;
  }
  model.reserve_positions(max_positions);  // the rotary tables are only read from here on
  WorkerThreadsScope scope;
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mutex;
  std::vector<std::thread> pool;
  for (int w = 0; w < workers; ++w) {
    pool.emplace_back([&] {
      c10::InferenceMode guard;
      try {
        for (size_t g = next++; g < groups.size() && !failed; g = next++)
          process(groups[g].first, groups[g].second);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        failed = true;
      }
    });
  }
  for (auto& t : pool)
    t.join();
  if (error) std::rethrow_exception(error);
  join();
}

double stderr_of(double p, int64_t n) {
  return n > 1 ? std::sqrt(p * (1.0 - p) / static_cast<double>(n - 1)) : 0.0;
}

}  // namespace

std::string task_protocol(const LlamaModelImpl& model, const Tokenizer& tokenizer) {
  std::ostringstream s;
  s << "lm-eval-harness loglikelihood, zero-shot: continuation \" \" + choice, "
    << (tokenizer.add_bos() && tokenizer.bos_id() >= 0 ? "[BOS] + " : "")
    << "context + continuation cut from the left to " << model.config().max_position_embeddings + 1
    << " tokens; acc = argmax sum log p, acc_norm = argmax sum log p / characters of the choice; "
       "stderr sqrt(p(1-p)/(n-1))";
  return s.str();
}

TaskResult evaluate_task(LlamaModelImpl& model, const Tokenizer& tokenizer, const TaskData& task,
                         const TaskEvalOptions& options, const TaskContext* ctx) {
  if (options.batch < 1)
    throw UsageError("--batch must be at least 1, got " + std::to_string(options.batch));
  if (options.limit < 0) throw UsageError("--limit must not be negative");
  const auto& cfg = model.config();
  const int64_t keep = cfg.max_position_embeddings + 1;
  const int64_t n_items = options.limit > 0 ? std::min<int64_t>(options.limit, task.items.size())
                                            : static_cast<int64_t>(task.items.size());
  const bool bos = tokenizer.add_bos() && tokenizer.bos_id() >= 0;
  const auto t0 = std::chrono::steady_clock::now();
  TaskResult r;
  r.name = task.name;
  r.path = task.path;
  r.format = task.format;
  r.template_note = task.template_note;
  r.headline_acc = task.headline_acc;
  r.items = n_items;

  std::vector<Request> reqs;
  std::vector<size_t> first_req(n_items + 1, 0);
  task_report(ctx, task.name + ": tokenising", 0, n_items);
  for (int64_t i = 0; i < n_items; ++i) {
    const auto& item = task.items[i];
    first_req[i] = reqs.size();
    for (size_t k = 0; k < item.contexts.size(); ++k) {
      std::string c = item.contexts[k];
      std::string x = " " + item.continuations[k];
      const size_t ws = trailing_space_bytes(c);
      if (ws > 0) {
        x = c.substr(c.size() - ws) + x;
        c.resize(c.size() - ws);
      }
      const auto whole = tokenizer.encode(c + x);
      auto ctx_ids = tokenizer.encode(c);
      Request q;
      const size_t n_ctx = std::min(ctx_ids.size(), whole.size());
      q.cont.assign(whole.begin() + static_cast<std::ptrdiff_t>(n_ctx), whole.end());
      if (bos) ctx_ids.insert(ctx_ids.begin(), tokenizer.bos_id());
      if (ctx_ids.empty()) {
        // Nothing to condition on: lm-eval-harness puts the end-of-text token in front.
        if (tokenizer.eos_id() < 0)
          throw InputError(where(task.path, item.line) +
                           ": an empty context and a tokenizer without BOS or EOS to begin with");
        ctx_ids.push_back(tokenizer.eos_id());
      }
      const int64_t total = static_cast<int64_t>(ctx_ids.size() + q.cont.size());
      if (total > keep) {
        ++r.truncated;
        const int64_t drop = total - keep;
        if (drop < static_cast<int64_t>(ctx_ids.size())) {
          ctx_ids.erase(ctx_ids.begin(), ctx_ids.begin() + drop);
        } else {
          const int64_t d2 = drop - static_cast<int64_t>(ctx_ids.size()) + 1;
          ctx_ids = {q.cont[d2 - 1]};
          q.cont.erase(q.cont.begin(), q.cont.begin() + d2);
        }
      }
      for (const auto* ids : {&ctx_ids, &q.cont})
        for (auto id : *ids)
          if (id < 0 || id >= cfg.vocab_size)
            throw InputError("token id " + std::to_string(id) + " of " +
                             where(task.path, item.line) +
                             " is outside the model's vocabulary of " +
                             std::to_string(cfg.vocab_size) + " (is this the model's tokenizer?)");
      q.ctx = std::move(ctx_ids);
      reqs.push_back(std::move(q));
    }
  }
  first_req[n_items] = reqs.size();
  r.requests = static_cast<int64_t>(reqs.size());

  torch::InferenceMode guard;
  task_report(ctx, task.name, 0, n_items);
  const double per_item =
      n_items > 0 ? static_cast<double>(reqs.size()) / static_cast<double>(n_items) : 1.0;
  score_requests(
      model, reqs, options.batch,
      [&](int64_t done) {
        task_report(ctx, task.name, static_cast<int64_t>(done / per_item), n_items);
      },
      ctx, options.ranks);

  const bool norm =
      task.format == TaskFormat::MultipleChoice || task.format == TaskFormat::HellaswagText;
  int64_t correct = 0, correct_norm = 0;
  double ll_sum = 0.0;
  r.predictions.reserve(n_items);
  r.lls.reserve(n_items);
  for (int64_t i = 0; i < n_items; ++i) {
    const auto& item = task.items[i];
    std::vector<double> lls;
    for (size_t k = first_req[i]; k < first_req[i + 1]; ++k)
      lls.push_back(reqs[k].ll);
    if (task.format == TaskFormat::Lambada) {
      const bool hit = reqs[first_req[i]].greedy;
      correct += hit ? 1 : 0;
      ll_sum += lls[0];
      r.predictions.push_back(hit ? 1 : 0);
    } else {
      const auto best = std::max_element(lls.begin(), lls.end()) - lls.begin();
      correct += best == item.gold ? 1 : 0;
      r.predictions.push_back(best);
      if (norm) {
        int64_t best_norm = 0;
        double best_value = -std::numeric_limits<double>::infinity();
        for (size_t k = 0; k < lls.size(); ++k) {
          const double v =
              lls[k] / static_cast<double>(std::max<int64_t>(1, codepoints(item.continuations[k])));
          if (v > best_value) {
            best_value = v;
            best_norm = static_cast<int64_t>(k);
          }
        }
        correct_norm += best_norm == item.gold ? 1 : 0;
      }
    }
    r.lls.push_back(std::move(lls));
  }
  r.correct = correct;
  r.acc = n_items > 0 ? static_cast<double>(correct) / n_items : 0.0;
  r.acc_stderr = stderr_of(r.acc, n_items);
  if (norm) {
    r.correct_norm = correct_norm;
    r.acc_norm = n_items > 0 ? static_cast<double>(correct_norm) / n_items : 0.0;
    r.acc_norm_stderr = stderr_of(r.acc_norm, n_items);
  }
  if (task.format == TaskFormat::Lambada && n_items > 0)
    r.ppl = std::exp(-ll_sum / static_cast<double>(n_items));
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  task_report(ctx, task.name, n_items, n_items);
  return r;
}

nlohmann::json to_json(const TaskResult& r, bool per_item) {
  using nlohmann::json;
  json j = {{"task", r.name},
            {"file", r.path},
            {"format", task_format_name(r.format)},
            {"template", r.template_note},
            {"items", r.items},
            {"requests", r.requests},
            {"truncated", r.truncated},
            {"correct", r.correct},
            {"acc", r.acc},
            {"acc_stderr", r.acc_stderr},
            {"correct_norm", r.has_norm() ? json(r.correct_norm) : json(nullptr)},
            {"acc_norm", r.has_norm() ? json(r.acc_norm) : json(nullptr)},
            {"acc_norm_stderr", r.has_norm() ? json(r.acc_norm_stderr) : json(nullptr)},
            {"ppl", r.format == TaskFormat::Lambada ? json(r.ppl) : json(nullptr)},
            {"headline", r.headline()},
            {"headline_metric", r.has_norm() && !r.headline_acc ? "acc_norm" : "acc"},
            {"seconds", r.seconds},
            {"items_per_second", r.items_per_second()}};
  if (per_item) {
    j["predictions"] = r.predictions;
    j["lls"] = r.lls;
  }
  return j;
}

std::vector<TaskData> load_tasks(const std::vector<TaskFile>& files) {
  std::vector<TaskData> data;
  for (const auto& f : files)
    data.push_back(load_task(f.name, f.path));
  return data;
}

std::vector<TaskResult> evaluate_tasks(LlamaModelImpl& model, const Tokenizer& tokenizer,
                                       const std::vector<TaskData>& tasks,
                                       const TaskEvalOptions& options, const TaskContext* ctx,
                                       const std::function<void(const TaskResult&)>& on_result) {
  std::vector<TaskResult> results;
  for (const auto& d : tasks) {
    task_check(ctx);
    results.push_back(evaluate_task(model, tokenizer, d, options, ctx));
    if (on_result) on_result(results.back());
  }
  return results;
}

TaskMeans task_means(const std::vector<TaskResult>& results) {
  TaskMeans m;
  if (results.empty()) return m;
  for (const auto& r : results) {
    m.acc += r.acc;
    m.headline += r.headline();
  }
  m.acc /= static_cast<double>(results.size());
  m.headline /= static_cast<double>(results.size());
  return m;
}

}  // namespace lorashear
