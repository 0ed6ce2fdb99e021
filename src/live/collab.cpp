#include "live/collab.hpp"

#include <set>

#include "common/json_limits.hpp"
#include "common/util.hpp"
#include "exec/notebook.hpp"
#include "live/changeset.hpp"
#include "live/journal.hpp"

namespace skylab::live {

using nlohmann::json;

namespace {

constexpr std::size_t kMaxIdBytes = 64;
constexpr std::size_t kMaxClientIdBytes = 64;
constexpr std::int64_t kMaxPos = std::int64_t(1) << 31;

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

bool valid_id(const json& v) {
  if (!v.is_string()) return false;
  const auto& s = v.get_ref<const std::string&>();
  if (s.empty() || s.size() > kMaxIdBytes) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) return false;
  return true;
}

std::string str(const json& msg, const char* key) {
  auto it = msg.find(key);
  return it != msg.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::optional<std::uint64_t> uint(const json& msg, const char* key) {
  auto it = msg.find(key);
  if (it == msg.end() || !it->is_number_integer()) return std::nullopt;
  auto v = it->get<std::int64_t>();
  if (v < 0) return std::nullopt;
  return static_cast<std::uint64_t>(v);
}

const json& cells(const Document& doc) {
  static const json empty = json::array();
  auto it = doc.notebook().find("cells");
  return it != doc.notebook().end() && it->is_array() ? *it : empty;
}

std::string cell_id(const json& c) {
  return c.is_object() ? c.value("id", "") : std::string();
}

// A metadata object within the limits (replaced whole by an op).
bool valid_metadata(const json& m, const CollabLimits& limits) {
  return m.is_object() && json_limits::within_depth(m, limits.max_metadata_depth) &&
         dump(m).size() <= limits.max_metadata_bytes;
}

// Outputs a client puts back with a cell (an undone delete): nbformat's
// shape at the top (objects with an output_type); their size is bounded by
// the frame and their nesting by the parse.
bool valid_outputs(const json& o) {
  if (!o.is_array()) return false;
  for (const json& x : o) {
    if (!x.is_object()) return false;
    auto t = x.find("output_type");
    if (t == x.end() || !t->is_string()) return false;
  }
  return true;
}

}  // namespace

CollabState::CollabState(CollabLimits limits, std::string epoch)
    : limits_(limits), epoch_(std::move(epoch)) {}

std::uint64_t CollabState::version(const std::string& id) const {
  auto it = logs_.find(id);
  return it == logs_.end() ? 0 : it->second.version();
}

void CollabState::prepare(Document& doc) {
  // Sources as one string with "\n" only (a client's Contents PUT may send
  // nbformat's list of lines, or "\r\n"). Callers broadcast what changed.
  std::vector<std::pair<std::string, std::string>> fix;
  for (const json& c : cells(doc)) {
    if (!c.is_object()) continue;
    auto s = c.find("source");
    std::string src;
    bool needs = false;
    if (s != c.end() && s->is_string()) {
      src = s->get<std::string>();
    } else {
      needs = true;
      if (s != c.end() && s->is_array())
        for (const json& line : *s)
          if (line.is_string()) src += line.get_ref<const std::string&>();
    }
    if (src.find('\r') != std::string::npos) {
      src = normalize_newlines(src);
      needs = true;
    }
    if (needs) fix.emplace_back(cell_id(c), std::move(src));
  }
  for (auto& [id, src] : fix) doc.set_source(id, std::move(src));
}

std::string CollabState::init(const Document& doc, const CollabPeer& me,
                              const std::vector<CollabPeer>& others) const {
  json versions = json::object();
  for (const json& c : cells(doc)) versions[cell_id(c)] = version(cell_id(c));
  json peers = json::array();
  for (auto& p : others) peers.push_back({{"client", p.id}, {"user", p.user}});
  json running = json::array();
  for (auto& [_, cid] : doc.running()) running.push_back(cid);
  return dump({{"t", "init"},
               {"epoch", epoch_},
               {"client", me.id},
               {"user", me.user},
               {"writable", me.writable},
               {"sv", structure_},
               {"versions", std::move(versions)},
               {"running", std::move(running)},
               {"peers", std::move(peers)},
               {"nb", doc.notebook()}});
}

CollabFrame CollabState::error(const json& msg, std::string code, std::string message) const {
  json e = {{"t", "error"}, {"code", std::move(code)}, {"message", std::move(message)}};
  if (msg.is_object())
    if (auto r = msg.find("rid"); r != msg.end() && (r->is_number_integer() || r->is_string()))
      e["rid"] = *r;
  if (msg.is_object())
    if (auto c = msg.find("cell"); c != msg.end() && valid_id(*c)) e["cell"] = *c;
  return {CollabFrame::To::kSender, dump(e)};
}

void CollabState::append(Log& log, std::string update) {
  log.bytes += update.size();
  log.updates.push_back(std::move(update));
  while (!log.updates.empty() &&
         (log.updates.size() > limits_.max_log_updates || log.bytes > limits_.max_log_bytes)) {
    log.bytes -= log.updates.front().size();
    log.updates.pop_front();
    ++log.base;
  }
}

std::vector<CollabFrame> CollabState::handle(Document& doc, const CollabPeer& from,
                                             const json& msg) {
  if (!msg.is_object()) return {error(msg, "bad_request", "a message is a JSON object")};
  std::string t = str(msg, "t");
  if (t == "push") return push(doc, from, msg);
  if (t == "pull") return pull(doc, msg);
  if (t == "op") return op(doc, from, msg);
  if (t == "presence") {
    json p = {{"t", "presence"}, {"client", from.id}, {"user", from.user}, {"cell", nullptr}};
    if (auto c = msg.find("cell");
        c != msg.end() && valid_id(*c) && doc.source(c->get<std::string>())) {
      auto a = uint(msg, "anchor"), h = uint(msg, "head");
      if (!a || !h || *a > kMaxPos || *h > kMaxPos)
        return {error(msg, "bad_request", "bad selection")};
      p["cell"] = *c;
      p["anchor"] = *a;
      p["head"] = *h;
    }
    return {{CollabFrame::To::kOthers, dump(p)}};
  }
  if (t == "ping") return {{CollabFrame::To::kSender, dump({{"t", "pong"}})}};
  return {error(msg, "bad_request", "unknown message type")};
}

std::vector<CollabFrame> CollabState::push(Document& doc, const CollabPeer& from, const json& msg) {
  if (!from.writable)
    return {error(msg, "read_only", "Read-only: this notebook was shared with you as a viewer")};
  auto c = msg.find("cell");
  if (c == msg.end() || !valid_id(*c)) return {error(msg, "bad_request", "no cell id")};
  std::string id = c->get<std::string>();
  const std::string* src = doc.source(id);
  if (!src) return {error(msg, "no_cell", "no such cell: " + id)};
  auto v = uint(msg, "version");
  auto ups = msg.find("updates");
  if (!v || ups == msg.end() || !ups->is_array() || ups->empty())
    return {error(msg, "bad_request", "a push needs a version and updates")};
  if (ups->size() > limits_.max_updates_per_push)
    return {error(msg, "too_large", "too many updates")};
  Log& log = logs_[id];
  if (*v != log.version()) {
    json s = {{"t", "stale"}, {"cell", id}, {"version", log.version()}};
    return {{CollabFrame::To::kSender, dump(s)}};
  }
  std::string text = *src;
  json accepted = json::array();
  for (const json& u : *ups) {
    if (!u.is_object()) return {error(msg, "bad_request", "an update is an object")};
    auto cid = u.find("clientID");
    auto ch = u.find("changes");
    if (cid == u.end() || !cid->is_string() ||
        cid->get_ref<const std::string&>().size() > kMaxClientIdBytes || ch == u.end())
      return {error(msg, "bad_request", "an update needs clientID and changes")};
    auto next = apply_changes(text, *ch, limits_.max_sections, limits_.max_source_bytes);
    if (!next.ok()) return {error(msg, "bad_changes", next.error().message)};
    text = std::move(next.value());
    accepted.push_back({{"clientID", *cid}, {"changes", *ch}});
  }
  for (const json& u : accepted) append(log, dump(u));
  journal_.push_back({{"t", "text"},
                      {"cell", id},
                      {"len", src->size()},
                      {"h", fnv1a64_hex(*src)},
                      {"updates", accepted}});
  doc.set_source(id, std::move(text));
  json out = {{"t", "updates"}, {"cell", id}, {"version", *v}, {"updates", std::move(accepted)}};
  return {{CollabFrame::To::kAll, dump(out)}};
}

std::vector<CollabFrame> CollabState::pull(const Document& doc, const json& msg) const {
  auto c = msg.find("cell");
  if (c == msg.end() || !valid_id(*c)) return {error(msg, "bad_request", "no cell id")};
  std::string id = c->get<std::string>();
  const std::string* src = doc.source(id);
  if (!src) return {error(msg, "no_cell", "no such cell: " + id)};
  auto v = uint(msg, "version");
  std::uint64_t cur = version(id);
  bool same_epoch = str(msg, "epoch").empty() || str(msg, "epoch") == epoch_;
  auto it = logs_.find(id);
  std::uint64_t base = it == logs_.end() ? 0 : it->second.base;
  if (!v || *v > cur || *v < base || !same_epoch) {
    // Too far behind (compacted), from another epoch, or from the future:
    // the whole text; the client rebases what it has not sent by a diff.
    json r = {{"t", "reset"}, {"cell", id}, {"version", cur}, {"source", *src}};
    return {{CollabFrame::To::kSender, dump(r)}};
  }
  std::string out = R"({"t":"updates","cell":)" + dump(id) + R"(,"version":)" + std::to_string(*v) +
                    R"(,"updates":[)";
  if (it != logs_.end())
    for (std::uint64_t i = *v; i < cur; ++i) {
      if (i > *v) out += ',';
      out += it->second.updates[i - base];
    }
  out += "]}";
  return {{CollabFrame::To::kSender, std::move(out)}};
}

std::vector<CollabFrame> CollabState::op(Document& doc, const CollabPeer& from, const json& msg) {
  if (!from.writable)
    return {error(msg, "read_only", "Read-only: this notebook was shared with you as a viewer")};
  auto o = msg.find("op");
  if (o == msg.end() || !o->is_object()) return {error(msg, "bad_request", "no op")};
  std::string kind = str(*o, "kind");
  json applied = {{"kind", kind}};
  auto after_of = [&](const json& op, std::string& after) {
    auto a = op.find("after");
    if (a == op.end() || a->is_null()) return true;
    if (!valid_id(*a)) return false;
    after = a->get<std::string>();
    return true;
  };
  if (kind == "insert") {
    auto c = o->find("cell");
    if (c == o->end() || !c->is_object()) return {error(msg, "bad_request", "insert needs a cell")};
    if (cells(doc).size() >= limits_.max_cells) return {error(msg, "too_large", "too many cells")};
    auto idv = c->find("id");
    if (idv == c->end() || !valid_id(*idv))
      return {error(msg, "bad_request", "a cell id is 1-64 of [A-Za-z0-9_-]")};
    std::string id = idv->get<std::string>();
    if (doc.source(id)) return {error(msg, "exists", "a cell with this id exists: " + id)};
    std::string type = str(*c, "cell_type");
    if (type != "code" && type != "markdown" && type != "raw")
      return {error(msg, "bad_request", "bad cell_type")};
    std::string source = normalize_newlines(str(*c, "source"));
    if (source.size() > limits_.max_source_bytes)
      return {error(msg, "too_large", "the source is too large")};
    std::string after;
    if (!after_of(*o, after)) return {error(msg, "bad_request", "bad after")};
    json meta = json::object();
    if (auto m = c->find("metadata"); m != c->end() && !m->is_null()) {
      if (!valid_metadata(*m, limits_)) return {error(msg, "bad_request", "bad metadata")};
      meta = *m;
    }
    json cell = {
        {"cell_type", type}, {"id", id}, {"metadata", std::move(meta)}, {"source", source}};
    if (type == "code") {
      // A cell put back (an undone delete) keeps its outputs.
      cell["outputs"] = json::array();
      cell["execution_count"] = nullptr;
      if (auto out = c->find("outputs"); out != c->end() && !out->is_null()) {
        if (!valid_outputs(*out)) return {error(msg, "bad_request", "bad outputs")};
        cell["outputs"] = *out;
      }
      if (auto n = c->find("execution_count"); n != c->end() && !n->is_null()) {
        if (!n->is_number_integer() || n->get<std::int64_t>() < 0)
          return {error(msg, "bad_request", "bad execution_count")};
        cell["execution_count"] = *n;
      }
    }
    // A cell deleted earlier may come back with its id (an undo): its old log is gone.
    logs_.erase(id);
    if (!doc.insert_cell(cell, after)) return {error(msg, "bad_request", "cannot insert")};
    // Where it went: `after` may be gone by now (then it went to the end).
    std::string placed;
    for (const json& x : cells(doc)) {
      if (cell_id(x) == id) break;
      placed = cell_id(x);
    }
    applied["cell"] = std::move(cell);
    applied["after"] = placed.empty() ? json(nullptr) : json(placed);
  } else if (kind == "delete") {
    auto id = o->find("id");
    if (id == o->end() || !valid_id(*id)) return {error(msg, "bad_request", "bad id")};
    if (!doc.delete_cell(id->get<std::string>())) return {error(msg, "no_cell", "no such cell")};
    logs_.erase(id->get<std::string>());
    applied["id"] = *id;
    if (cells(doc).empty()) {
      // A notebook keeps at least one cell: the last one deleted (concurrent
      // deletes of the last two, or a client that did not put its blank
      // first) is replaced by a blank code cell here, sequenced right after
      // the delete, so every client and the file get the same one.
      json blank = {{"cell_type", "code"},        {"id", util::random_hex(8)},
                    {"metadata", json::object()}, {"source", ""},
                    {"outputs", json::array()},   {"execution_count", nullptr}};
      if (!replaying_ && doc.insert_cell(blank, "")) {
        std::vector<CollabFrame> frames = {sequenced(msg, from, std::move(applied))};
        ++structure_;
        json ins = {{"kind", "insert"}, {"cell", std::move(blank)}, {"after", nullptr}};
        journal_.push_back({{"t", "op"}, {"op", ins}});
        json f = {{"t", "op"}, {"sv", structure_}, {"client", 0}, {"op", std::move(ins)}};
        frames.push_back({CollabFrame::To::kAll, dump(f)});
        return frames;
      }
    }
  } else if (kind == "move") {
    auto id = o->find("id");
    std::string after;
    if (id == o->end() || !valid_id(*id) || !after_of(*o, after))
      return {error(msg, "bad_request", "bad move")};
    if (!doc.move_cell(id->get<std::string>(), after))
      return {error(msg, "no_cell", "no such cell")};
    applied["id"] = *id;
    applied["after"] = after.empty() ? json(nullptr) : json(after);
  } else if (kind == "type") {
    auto id = o->find("id");
    std::string type = str(*o, "cell_type");
    if (id == o->end() || !valid_id(*id)) return {error(msg, "bad_request", "bad id")};
    if (type != "code" && type != "markdown" && type != "raw")
      return {error(msg, "bad_request", "bad cell_type")};
    if (!doc.set_cell_type(id->get<std::string>(), type))
      return {error(msg, "no_cell", "no such cell")};
    applied["id"] = *id;
    applied["cell_type"] = type;
  } else if (kind == "meta") {
    // A cell's metadata, replaced whole (Colab's cellView, tags, collapsed...).
    auto id = o->find("id");
    auto m = o->find("metadata");
    if (id == o->end() || !valid_id(*id)) return {error(msg, "bad_request", "bad id")};
    if (m == o->end() || !valid_metadata(*m, limits_))
      return {error(msg, "bad_request", "metadata is an object within the limits")};
    if (!doc.set_cell_metadata(id->get<std::string>(), *m))
      return {error(msg, "no_cell", "no such cell")};
    applied["id"] = *id;
    applied["metadata"] = *m;
  } else if (kind == "nbmeta") {
    // The notebook's metadata (kernelspec, Colab's settings), replaced whole.
    auto m = o->find("metadata");
    if (m == o->end() || !valid_metadata(*m, limits_))
      return {error(msg, "bad_request", "metadata is an object within the limits")};
    doc.set_metadata(*m);
    applied["metadata"] = *m;
  } else {
    return {error(msg, "bad_request", "unknown op")};
  }
  return {sequenced(msg, from, std::move(applied))};
}

CollabFrame CollabState::sequenced(const json& msg, const CollabPeer& from, json applied) {
  ++structure_;
  journal_.push_back({{"t", "op"}, {"op", applied}});
  json out = {{"t", "op"}, {"sv", structure_}, {"client", from.id}, {"op", std::move(applied)}};
  if (auto r = msg.find("rid"); r != msg.end() && (r->is_number_integer() || r->is_string()))
    out["rid"] = *r;
  return {CollabFrame::To::kAll, dump(out)};
}

std::vector<CollabFrame> CollabState::after_outside(const json& before, Document& doc) {
  std::map<std::string, std::string> old_sources;
  std::vector<std::string> old_order;
  if (before.is_object() && before.contains("cells") && before["cells"].is_array())
    for (const json& c : before["cells"]) {
      old_order.push_back(cell_id(c) + "/" + (c.is_object() ? c.value("cell_type", "") : ""));
      if (c.is_object() && c.contains("source") && c["source"].is_string())
        old_sources[cell_id(c)] = c["source"].get<std::string>();
    }
  prepare(doc);
  std::vector<CollabFrame> out;
  std::vector<std::string> order;
  std::set<std::string> present;
  for (const json& c : cells(doc)) {
    std::string id = cell_id(c);
    order.push_back(id + "/" + c.value("cell_type", ""));
    present.insert(id);
    auto old = old_sources.find(id);
    const std::string* now = doc.source(id);
    if (old == old_sources.end() || !now || old->second == *now) continue;
    Log& log = logs_[id];
    std::uint64_t v = log.version();
    json u = {{"clientID", "skylab"}, {"changes", diff_changes(old->second, *now)}};
    append(log, dump(u));
    json f = {{"t", "updates"}, {"cell", id}, {"version", v}, {"updates", json::array({u})}};
    out.push_back({CollabFrame::To::kAll, dump(f)});
  }
  for (auto it = logs_.begin(); it != logs_.end();)
    it = present.count(it->first) ? std::next(it) : logs_.erase(it);
  if (order != old_order) {
    ++structure_;
    json versions = json::object();
    for (const json& c : cells(doc)) versions[cell_id(c)] = version(cell_id(c));
    json f = {{"t", "sync"},
              {"sv", structure_},
              {"versions", std::move(versions)},
              {"nb", doc.notebook()}};
    out.push_back({CollabFrame::To::kAll, dump(f)});
  }
  return out;
}

std::vector<CollabFrame> CollabState::outputs(Document& doc) {
  std::vector<CollabFrame> out;
  for (auto& id : doc.take_output_changes()) {
    for (const json& c : cells(doc)) {
      if (cell_id(c) != id) continue;
      json f = {
          {"t", "outputs"},
          {"cell", id},
          {"outputs", c.contains("outputs") ? c["outputs"] : json::array()},
          {"execution_count", c.contains("execution_count") ? c["execution_count"] : json(nullptr)},
          {"running", doc.is_running(id)},
          {"msg_id", doc.last_execution(id)}};
      out.push_back({CollabFrame::To::kAll, dump(f)});
      break;
    }
  }
  return out;
}

std::vector<json> CollabState::take_journal() {
  std::vector<json> out;
  out.swap(journal_);
  return out;
}

bool CollabState::replay(Document& doc, const json& record, bool additive) {
  if (!record.is_object()) return false;
  CollabPeer server{0, "skylab", true};
  std::string t = str(record, "t");
  std::vector<CollabFrame> frames;
  replaying_ = true;
  if (t == "text") {
    auto c = record.find("cell");
    auto len = uint(record, "len");
    auto u = record.find("updates");
    if (c == record.end() || !valid_id(*c) || !len || u == record.end()) {
      replaying_ = false;
      return false;
    }
    const std::string* src = doc.source(c->get<std::string>());
    if (!src || src->size() != *len || fnv1a64_hex(*src) != str(record, "h")) {
      replaying_ = false;
      return false;
    }
    json msg = {
        {"t", "push"}, {"cell", *c}, {"version", version(c->get<std::string>())}, {"updates", *u}};
    frames = push(doc, server, msg);
  } else if (t == "op") {
    auto o = record.find("op");
    if (o == record.end() || !o->is_object() || (additive && str(*o, "kind") != "insert")) {
      replaying_ = false;
      return false;
    }
    frames = op(doc, server, json{{"t", "op"}, {"op", *o}});
  }
  replaying_ = false;
  journal_.clear();
  // Accepted changes are broadcast to all; a refusal goes to the sender.
  return !frames.empty() && frames.front().to == CollabFrame::To::kAll;
}

std::vector<CollabFrame> CollabState::left(const CollabPeer& who) {
  return {
      {CollabFrame::To::kOthers, dump({{"t", "leave"}, {"client", who.id}, {"user", who.user}})}};
}

}  // namespace skylab::live
