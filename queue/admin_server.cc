#include "queue/admin_server.h"
#include "engine/common/strings.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "engine/common/host_port.h"
#include "engine/common/log.h"
#include "queue/keys.h"

namespace salvo::queue {

namespace {

constexpr size_t kMaxRequestBytes = 1 << 20;

std::string CodeName(absl::StatusCode code) { return AsciiLower(absl::StatusCodeToString(code)); }

nlohmann::json Error(const absl::Status& s) {
  return {{"ok", false}, {"code", CodeName(s.code())}, {"error", std::string(s.message())}};
}

std::string TimeString(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

absl::StatusOr<CampaignId> CampaignArg(Spool& spool, const nlohmann::json& req) {
  if (!req.contains("campaign")) return absl::InvalidArgumentError("missing 'campaign'");
  const auto& c = req["campaign"];
  std::string text =
      c.is_number_unsigned() ? std::to_string(c.get<uint64_t>()) : c.get<std::string>();
  return spool.FindCampaign(text);
}

bool FillSockaddr(const std::string& path, sockaddr_un* addr) {
  std::memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr->sun_path)) return false;
  std::memcpy(addr->sun_path, path.c_str(), path.size() + 1);
  return true;
}

// "host:port" / "[v6]:port" -> host, port text.
bool SplitAddress(const std::string& address, std::string* host, std::string* port) {
  absl::StatusOr<HostPort> hp = ParseHostPort(address, {.allow_port_zero = true});
  if (!hp.ok() || hp->port < 0) return false;
  *host = std::move(hp->host);
  *port = std::to_string(hp->port);
  return true;
}

struct AddrInfoDeleter {
  void operator()(addrinfo* a) const { ::freeaddrinfo(a); }
};
using AddrInfoPtr = std::unique_ptr<addrinfo, AddrInfoDeleter>;

absl::StatusOr<AddrInfoPtr> Resolve(const std::string& address, bool passive) {
  std::string host, port;
  if (!SplitAddress(address, &host, &port))
    return absl::InvalidArgumentError(Cat("bad address '", address, "': expected host:port"));
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0)
    return absl::UnavailableError(Cat("cannot resolve '", address, "': ", ::gai_strerror(rc)));
  return AddrInfoPtr(res);
}

std::string FormatAddress(const sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    ::inet_ntop(AF_INET, &in->sin_addr, buf, sizeof(buf));
    return Cat(buf, ":", ntohs(in->sin_port));
  }
  auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
  ::inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof(buf));
  return Cat("[", buf, "]:", ntohs(in6->sin6_port));
}

bool IsLoopback(const sockaddr* sa) {
  if (sa->sa_family == AF_INET)
    return (ntohl(reinterpret_cast<const sockaddr_in*>(sa)->sin_addr.s_addr) >> 24) == 127;
  if (sa->sa_family == AF_INET6)
    return IN6_IS_ADDR_LOOPBACK(&reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr);
  return false;
}

// Constant time in the length of `want`: a wrong token gives no timing hint.
bool TokenMatches(const std::string& got, const std::string& want) {
  unsigned char diff = got.size() == want.size() ? 0 : 1;
  for (size_t i = 0; i < want.size(); ++i)
    diff |= static_cast<unsigned char>(want[i] ^ (i < got.size() ? got[i] : 0));
  return diff == 0;
}

// Writes `request` as one line on a connected socket and reads one line back.
absl::StatusOr<nlohmann::json> Exchange(int fd, const std::string& label,
                                        const nlohmann::json& request, absl::Duration timeout) {
  std::string out = request.dump() + "\n";
  size_t off = 0;
  while (off < out.size()) {
    ssize_t w = ::send(fd, out.data() + off, out.size() - off, MSG_NOSIGNAL);
    if (w <= 0) return absl::InternalError(Cat(label, ": send failed"));
    off += static_cast<size_t>(w);
  }
  std::string buf;
  char chunk[65536];
  const absl::Time deadline = absl::Now() + timeout;
  while (buf.find('\n') == std::string::npos) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration())
      return absl::DeadlineExceededError(Cat(label, ": no answer from the engine in time"));
    pollfd p{fd, POLLIN, 0};
    int n =
        ::poll(&p, 1, static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left), 1000)));
    if (n <= 0) continue;
    ssize_t got = ::read(fd, chunk, sizeof(chunk));
    if (got <= 0) return absl::InternalError(Cat(label, ": the engine closed the connection"));
    buf.append(chunk, static_cast<size_t>(got));
  }
  nlohmann::json resp = nlohmann::json::parse(buf.substr(0, buf.find('\n')), nullptr, false);
  if (resp.is_discarded() || !resp.is_object())
    return absl::InternalError(Cat(label, ": the engine sent a malformed answer"));
  return resp;
}

}  // namespace

bool IsLoopbackAddress(const std::string& address) {
  absl::StatusOr<AddrInfoPtr> ai = Resolve(address, /*passive=*/false);
  if (!ai.ok()) return false;
  for (const addrinfo* a = ai->get(); a != nullptr; a = a->ai_next)
    if (!IsLoopback(a->ai_addr)) return false;
  return true;
}

nlohmann::json CountsToJson(const StateCounts& counts) {
  nlohmann::json j = nlohmann::json::object();
  for (size_t i = 0; i < kNumRecipientStates; ++i)
    j[std::string(RecipientStateName(static_cast<RecipientState>(i)))] = counts.n[i];
  j["total"] = counts.Total();
  return j;
}

nlohmann::json CampaignToJson(const CampaignInfo& info) {
  nlohmann::json j = {{"id", Value(info.id)},
                      {"name", info.name},
                      {"state", std::string(CampaignStateName(info.state))},
                      {"from", info.from},
                      {"dkim_domain", info.dkim_domain},
                      {"template", info.template_path},
                      {"recipients", info.recipients_path},
                      {"created", TimeString(info.created)},
                      {"columns", info.columns}};
  if (!info.pause_reason.empty()) j["pause_reason"] = info.pause_reason;
  return j;
}

// An active campaign with nothing left to send shows as "done" (the stored
// state stays active: more recipients may still be retried or loaded).
std::string DisplayState(const CampaignInfo& info, const StateCounts& counts) {
  if (info.state == CampaignState::kActive && counts.Total() > 0 && counts.Pending() == 0)
    return "done";
  return std::string(CampaignStateName(info.state));
}

nlohmann::json StatusToJson(const CampaignStatus& st) {
  nlohmann::json j = CampaignToJson(st.info);
  j["state"] = DisplayState(st.info, st.counts);
  j["counts"] = CountsToJson(st.counts);
  j["bounce_rate"] = st.bounce_rate;
  j["deferral_rate"] = st.deferral_rate;
  // Reports received later (bounce messages, complaints, ...).
  j["reports"] = {{"async_bounces", st.reports.async_bounces},
                  {"async_soft_bounces", st.reports.async_soft_bounces},
                  {"complaints", st.reports.complaints},
                  {"delayed", st.reports.delayed},
                  {"auto_replies", st.reports.auto_replies}};
  j["complaint_rate"] = st.complaint_rate;
  j["done"] = st.counts.Pending() == 0;
  if (st.info.window.set) {
    j["window"] = st.info.window.ToString();
    const absl::Time now = absl::Now();
    const absl::Time open = NextWindowOpen(st.info.window, now);
    j["window_open"] = open <= now;
    if (open > now)
      j["window_opens"] = absl::FormatTime("%Y-%m-%d %H:%M:%S %Ez", open, absl::UTCTimeZone());
  }
  auto domain_json = [](const DomainCount& d) {
    return nlohmann::json{{"domain", d.domain},
                          {"counts", CountsToJson(d.counts)},
                          {"attempts", d.attempts},
                          {"deliveries", d.deliveries},
                          {"deferrals", d.deferrals},
                          {"bounces", d.bounces},
                          {"bounce_rate", d.bounce_rate()},
                          {"deferral_rate", d.deferral_rate()}};
  };
  nlohmann::json domains = nlohmann::json::array();
  for (const auto& d : st.top_domains) domains.push_back(domain_json(d));
  j["top_domains"] = domains;
  if (!st.other_domains.domain.empty()) j["other_domains"] = domain_json(st.other_domains);
  nlohmann::json categories = nlohmann::json::object();
  for (const auto& [c, n] : st.categories) categories[c] = n;
  j["categories"] = categories;
  auto reasons_json = [](const std::vector<FailureReason>& reasons) {
    nlohmann::json out = nlohmann::json::array();
    for (const FailureReason& r : reasons)
      out.push_back({{"category", r.category}, {"count", r.count}, {"sample", r.sample}});
    return out;
  };
  j["bounce_reasons"] = reasons_json(st.bounce_reasons);
  j["deferral_reasons"] = reasons_json(st.deferral_reasons);
  return j;
}

nlohmann::json LoadReportToJson(const LoadReport& r) {
  return {{"id", Value(r.id)},
          {"rows", r.rows},
          {"accepted", r.accepted},
          {"duplicates", r.duplicates},
          {"suppressed", r.suppressed},
          {"invalid", r.invalid},
          {"other_nodes", r.other_nodes},
          {"first_errors", r.first_errors},
          {"seconds", r.seconds}};
}

nlohmann::json SpecToJson(const CampaignSpec& s) {
  return {{"name", s.name},
          {"template", s.template_path},
          {"recipients", s.recipients_path},
          {"from", s.from},
          {"dkim_domain", s.dkim_domain},
          {"egress_pool", s.egress_pool},
          {"window", s.window.set ? nlohmann::json{{"start_minute", s.window.start_minute},
                                                   {"end_minute", s.window.end_minute},
                                                   {"days", s.window.days},
                                                   {"timezone", s.window.timezone}}
                                  : nlohmann::json()},
          {"options", s.options},
          {"retry",
           {{"first_retry_min_s", absl::ToDoubleSeconds(s.retry.first_retry_min)},
            {"first_retry_max_s", absl::ToDoubleSeconds(s.retry.first_retry_max)},
            {"multiplier", s.retry.multiplier},
            {"max_delay_s", absl::ToDoubleSeconds(s.retry.max_delay)},
            {"max_age_s", absl::ToDoubleSeconds(s.retry.max_age)}}}};
}

absl::StatusOr<CampaignSpec> SpecFromJson(const nlohmann::json& j) {
  try {
    CampaignSpec s;
    s.name = j.at("name").get<std::string>();
    s.template_path = j.at("template").get<std::string>();
    s.recipients_path = j.at("recipients").get<std::string>();
    s.from = j.at("from").get<std::string>();
    s.dkim_domain = j.value("dkim_domain", "");
    s.egress_pool = j.value("egress_pool", "");
    if (j.contains("window") && j["window"].is_object()) {
      const auto& w = j["window"];
      s.window.set = true;
      s.window.start_minute = w.at("start_minute").get<int>();
      s.window.end_minute = w.at("end_minute").get<int>();
      s.window.days = w.at("days").get<uint8_t>();
      s.window.timezone = w.at("timezone").get<std::string>();
    }
    if (j.contains("options")) s.options = j["options"].get<std::map<std::string, std::string>>();
    if (j.contains("retry")) {
      const auto& r = j["retry"];
      s.retry.first_retry_min = absl::Seconds(r.at("first_retry_min_s").get<double>());
      s.retry.first_retry_max = absl::Seconds(r.at("first_retry_max_s").get<double>());
      s.retry.multiplier = r.at("multiplier").get<double>();
      s.retry.max_delay = absl::Seconds(r.at("max_delay_s").get<double>());
      s.retry.max_age = absl::Seconds(r.at("max_age_s").get<double>());
    }
    return s;
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(Cat("bad campaign spec: ", e.what()));
  }
}

// A count in a request ("top", "limit"): a non-negative integer, else the
// default (a float or a negative number from a hostile client must not reach
// a cast: 2.9e44 into size_t is undefined behaviour).
static size_t CountArg(const nlohmann::json& req, const char* key, size_t fallback) {
  auto it = req.find(key);
  if (it == req.end() || !it->is_number_integer() || it->get<int64_t>() < 0) return fallback;
  return it->get<size_t>();
}

nlohmann::json HandleAdminRequest(Spool& spool, const nlohmann::json& req,
                                  const AdminOptions& options) {
  // Control plane: nlohmann reports type errors by exception; a hostile or
  // confused client gets ok=false, never a crash.
  try {
    if (!req.is_object() || !req.contains("op") || !req["op"].is_string())
      return Error(absl::InvalidArgumentError("request must be a JSON object with an 'op'"));
    const std::string op = req["op"].get<std::string>();
    if (op == "ping") return {{"ok", true}};
    if (op == "list") {
      nlohmann::json list = nlohmann::json::array();
      for (const CampaignInfo& info : spool.ListCampaigns()) {
        nlohmann::json c = CampaignToJson(info);
        if (absl::StatusOr<StateCounts> counts = spool.Counts(info.id); counts.ok()) {
          c["counts"] = CountsToJson(*counts);
          c["state"] = DisplayState(info, *counts);
        }
        list.push_back(std::move(c));
      }
      return {{"ok", true}, {"campaigns", list}};
    }
    if (op == "status" || op == "pause" || op == "resume" || op == "cancel") {
      absl::StatusOr<CampaignId> id = CampaignArg(spool, req);
      if (!id.ok()) return Error(id.status());
      if (op == "status") {
        absl::StatusOr<CampaignStatus> st = spool.Status(*id, CountArg(req, "top", 10));
        std::string partial;
        if (!st.ok()) {
          // The per-domain breakdown reads the disk; a failing disk still
          // gets the counts, which are kept in memory.
          absl::StatusOr<CampaignInfo> info = spool.GetCampaign(*id);
          absl::StatusOr<StateCounts> counts = spool.Counts(*id);
          if (!info.ok() || !counts.ok()) return Error(st.status());
          partial = std::string(st.status().message());
          CampaignStatus from_memory;
          from_memory.info = *info;
          from_memory.counts = *counts;
          st = std::move(from_memory);
        }
        nlohmann::json j = StatusToJson(*st);
        if (!partial.empty()) j["partial"] = "per-domain counts unavailable: " + partial;
        if (options.engine_status) j["shaping"] = options.engine_status();
        // From memory: answers while the disk is full or failing.
        const SpoolHealth h = spool.Health();
        nlohmann::json sp = {{"writable", h.writable},
                             {"held_outcomes", h.held_outcomes},
                             {"write_errors", h.write_errors}};
        if (!h.last_error.empty()) sp["last_error"] = h.last_error;
        if (h.needs_restart) sp["needs_restart"] = true;
        if (h.below_floor) {
          sp["free_bytes"] = h.free_bytes;
          sp["min_free_bytes"] = h.min_free_bytes;
        }
        j["spool"] = sp;
        return {{"ok", true}, {"status", j}};
      }
      absl::Status s = op == "pause"    ? spool.Pause(*id)
                       : op == "resume" ? spool.Resume(*id)
                                        : spool.Cancel(*id);
      if (!s.ok()) return Error(s);
      absl::StatusOr<CampaignInfo> info = spool.GetCampaign(*id);
      if (!info.ok()) return Error(info.status());
      return {
          {"ok", true}, {"id", Value(*id)}, {"state", std::string(CampaignStateName(info->state))}};
    }
    if (op == "load") {
      absl::StatusOr<CampaignSpec> spec = SpecFromJson(req.at("spec"));
      if (!spec.ok()) return Error(spec.status());
      LoadOptions lo;
      lo.strict = req.value("strict", false);
      // A load through the socket is an operator's: duplicates are refused
      // unless the request says otherwise (--allow-duplicate-name).
      lo.refuse_duplicates = !req.value("allow_duplicate_name", false);
      lo.case_sensitive_local_parts = req.value("case_sensitive_local_parts", false);
      lo.validate_template = options.validate_template;
      lo.check_first_copy = options.check_first_copy;
      if (req.contains("node")) {
        absl::StatusOr<NodeShare> node = ParseNodeShare(req["node"].get<std::string>());
        if (!node.ok()) return Error(node.status());
        lo.node = *node;
      }
      absl::StatusOr<LoadReport> report = spool.LoadCampaign(*spec, lo);
      if (!report.ok()) return Error(report.status());
      return {{"ok", true}, {"report", LoadReportToJson(*report)}};
    }
    if (op == "suppression_add" || op == "suppression_remove") {
      size_t n = 0;
      for (const auto& e : req.at("emails")) {
        const std::string email = e.get<std::string>();
        const bool exact = req.value("case_sensitive_local_parts", false);
        absl::Status s = op == "suppression_add"
                             ? spool.AddSuppression(email, req.value("reason", "manual"), exact)
                             : spool.RemoveSuppression(email, exact);
        if (!s.ok()) {
          nlohmann::json err = Error(s);
          err[op == "suppression_add" ? "added" : "removed"] = n;
          return err;
        }
        ++n;
      }
      return {{"ok", true}, {op == "suppression_add" ? "added" : "removed", n}};
    }
    if (op == "export") {
      absl::StatusOr<CampaignId> id = CampaignArg(spool, req);
      if (!id.ok()) return Error(id.status());
      std::optional<RecipientState> state;
      if (req.contains("state") && !req["state"].get<std::string>().empty()) {
        const std::string name = req["state"].get<std::string>();
        std::string known;
        for (size_t i = 0; i < kNumRecipientStates; ++i) {
          const auto st = static_cast<RecipientState>(i);
          if (RecipientStateName(st) == name) state = st;
          known += (known.empty() ? "" : ", ") + std::string(RecipientStateName(st));
        }
        if (!state)
          return Error(
              absl::InvalidArgumentError(Cat("unknown state '", name, "' (one of: ", known, ")")));
      }
      const size_t limit = std::min<size_t>(CountArg(req, "limit", 10000), 100000);
      absl::StatusOr<Spool::ExportPage> page =
          spool.Export(*id, RecipientId{CountArg(req, "after", 0)}, limit, state);
      if (!page.ok()) return Error(page.status());
      nlohmann::json rows = nlohmann::json::array();
      for (const RecipientView& v : page->rows) {
        nlohmann::json row = {{"id", Value(v.id)},
                              {"email", v.email},
                              {"state", std::string(RecipientStateName(v.state))},
                              {"attempts", v.attempts},
                              {"last_reply", v.last_reply},
                              {"category", v.category},
                              {"queued", TimeString(v.queued_at)}};
        row["next_attempt"] =
            v.state == RecipientState::kQueued || v.state == RecipientState::kDeferred
                ? TimeString(v.next_attempt)
                : "";
        rows.push_back(std::move(row));
      }
      return {{"ok", true}, {"rows", rows}, {"next", Value(page->next)}, {"done", page->done}};
    }
    if (op == "preview_data") {
      // What `campaign preview` composes from, for a CLI that cannot open the
      // spool while the engine holds it. Bytes as hex: a template or a value
      // need not be UTF-8, which JSON strings must be.
      absl::StatusOr<CampaignId> id = CampaignArg(spool, req);
      if (!id.ok()) return Error(id.status());
      absl::StatusOr<CampaignInfo> info = spool.GetCampaign(*id);
      if (!info.ok()) return Error(info.status());
      absl::StatusOr<std::string> text = spool.GetTemplate(*id);
      if (!text.ok()) return Error(text.status());
      const std::string email = req.at("recipient").get<std::string>();
      absl::StatusOr<std::vector<RecipientView>> found = spool.FindRecipient(email, *id);
      if (!found.ok()) return Error(found.status());
      if (found->empty())
        return Error(absl::NotFoundError(
            Cat("recipient ", email, " is not in campaign ", Value(*id), " (", info->name, ")")));
      const RecipientView& v = found->front();
      nlohmann::json values = nlohmann::json::array();
      for (const std::string& x : v.values) values.push_back(absl::BytesToHexString(x));
      return {{"ok", true},
              {"campaign_record", absl::BytesToHexString(keys::EncodeCampaign(*info))},
              {"template", absl::BytesToHexString(*text)},
              {"recipient", {{"id", Value(v.id)}, {"email", v.email}, {"values", values}}}};
    }
    if (op == "recipient") {
      const std::string email = req.at("email").get<std::string>();
      std::optional<CampaignId> only;
      if (req.contains("campaign")) {
        absl::StatusOr<CampaignId> id = CampaignArg(spool, req);
        if (!id.ok()) return Error(id.status());
        only = *id;
      }
      absl::StatusOr<std::vector<RecipientView>> found = spool.FindRecipient(email, only);
      if (!found.ok()) return Error(found.status());
      nlohmann::json list = nlohmann::json::array();
      for (const RecipientView& v : *found) {
        absl::StatusOr<CampaignInfo> info = spool.GetCampaign(v.campaign);
        nlohmann::json j = {{"campaign_id", Value(v.campaign)},
                            {"campaign", info.ok() ? info->name : ""},
                            {"recipient_id", Value(v.id)},
                            {"email", v.email},
                            {"state", std::string(RecipientStateName(v.state))},
                            {"attempts", v.attempts},
                            {"queued", TimeString(v.queued_at)},
                            {"last_reply", v.last_reply},
                            {"category", v.category}};
        if (v.state == RecipientState::kQueued || v.state == RecipientState::kDeferred)
          j["next_attempt"] = TimeString(v.next_attempt);
        nlohmann::json history = nlohmann::json::array();
        absl::StatusOr<std::vector<HistoryEntry>> h = spool.History(v.campaign, v.id);
        if (h.ok()) {
          for (const HistoryEntry& e : *h) {
            if (e.to == RecipientState::kInFlight) continue;  // the lease half of an attempt
            // "550 5.1.1 text": the enhanced code is the second word when it has that shape.
            std::string enhanced;
            if (size_t sp = e.reply.find(' '); sp != std::string::npos) {
              std::string_view w = std::string_view(e.reply).substr(sp + 1);
              w = w.substr(0, w.find(' '));
              if (w.size() >= 5 && (w[0] == '2' || w[0] == '4' || w[0] == '5') && w[1] == '.')
                enhanced = std::string(w);
            }
            history.push_back({{"at", TimeString(e.at)},
                               {"from", std::string(RecipientStateName(e.from))},
                               {"to", std::string(RecipientStateName(e.to))},
                               {"reply", e.reply},
                               {"enhanced_code", enhanced},
                               {"category", e.category},
                               {"scope", e.scope},
                               {"host", e.detail}});
          }
        }
        j["history"] = history;
        list.push_back(std::move(j));
      }
      nlohmann::json out = {{"ok", true}, {"email", email}, {"recipients", list}};
      absl::StatusOr<SuppressionEntry> sup = spool.GetSuppression(email);
      out["suppression"] = sup.ok() ? nlohmann::json{{"email", sup->email},
                                                     {"reason", sup->reason},
                                                     {"added", TimeString(sup->added)}}
                                    : nlohmann::json(nullptr);
      return out;
    }
    if (op == "suppression_list") {
      nlohmann::json entries = nlohmann::json::array();
      for (const SuppressionEntry& e :
           spool.ListSuppression(CountArg(req, "limit", 1000), req.value("after", "")))
        entries.push_back(
            {{"email", e.email}, {"reason", e.reason}, {"added", TimeString(e.added)}});
      return {{"ok", true}, {"entries", entries}};
    }
    if (op == "suppression_import") {
      const std::string path = req.at("path").get<std::string>();
      absl::StatusOr<SuppressionImportReport> r =
          spool.ImportSuppression(path, req.value("reason", "import:" + path),
                                  req.value("case_sensitive_local_parts", false));
      if (!r.ok()) return Error(r.status());
      return {{"ok", true},
              {"report",
               {{"added", r->added},
                {"already", r->already},
                {"invalid", r->invalid},
                {"first_errors", r->first_errors}}}};
    }
    if (op == "recover") {
      // A rescue file (Spool::Options::rescue_dir) or a copy of the log: the
      // JSON lines, or the lines with "spool rescue: "; others are skipped.
      const std::string path = req.at("path").get<std::string>();
      size_t skipped = 0;
      absl::StatusOr<std::vector<RescuedOutcome>> read = ReadRescueFile(path, &skipped);
      if (!read.ok()) return Error(read.status());
      const std::vector<RescuedOutcome>& outcomes = *read;
      absl::StatusOr<size_t> n = spool.RecoverOutcomes(outcomes);
      if (!n.ok()) return Error(n.status());
      return {{"ok", true},
              {"read", outcomes.size()},
              {"recovered", *n},
              {"already_recorded", outcomes.size() - *n},
              {"lines_skipped", skipped}};
    }
    return Error(absl::InvalidArgumentError(Cat("unknown op '", op, "'")));
  } catch (const std::exception& e) {
    return Error(absl::InvalidArgumentError(Cat("bad request: ", e.what())));
  }
}

std::string AdminSocketPath(const std::string& data_dir) {
  return (std::filesystem::path(data_dir) / "admin.sock").string();
}

// ---------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<AdminServer>> AdminServer::Start(Spool* spool,
                                                                AdminOptions options) {
  const std::string path =
      options.socket_path.empty() ? AdminSocketPath(spool->data_dir()) : options.socket_path;
  sockaddr_un addr;
  if (!FillSockaddr(path, &addr))
    return absl::InvalidArgumentError(Cat(path, ": socket path too long"));
  // A leftover socket from a crashed engine: we hold the RocksDB lock, so no
  // other engine can be serving this data directory.
  ::unlink(path.c_str());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(Cat("socket: ", std::strerror(errno)));
  // The socket file is created by bind() with the socket inode's mode less the
  // umask (Linux): set 0600 on the inode first, so there is no window in which
  // another user may connect. The data directory is 0700 as well.
  ::fchmod(fd, 0600);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 16) != 0) {
    int err = errno;
    ::close(fd);
    return absl::InternalError(Cat(path, ": cannot listen: ", std::strerror(err)));
  }
  ::chmod(path.c_str(), 0600);
  int tcp_fd = -1;
  std::string tcp_address;
  if (!options.tcp_listen.empty()) {
    auto fail = [&](absl::Status why) {
      ::close(fd);
      ::unlink(path.c_str());
      if (tcp_fd >= 0) ::close(tcp_fd);
      return why;
    };
    absl::StatusOr<AddrInfoPtr> ai = Resolve(options.tcp_listen, /*passive=*/true);
    if (!ai.ok()) return fail(ai.status());
    const addrinfo* a = ai->get();
    if (options.token.empty() && !IsLoopback(a->ai_addr))
      return fail(absl::InvalidArgumentError(
          Cat("admin listener ", options.tcp_listen,
              " is not a loopback address: it needs a token (queue.admin_token_file)")));
    tcp_fd = ::socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (tcp_fd < 0) return fail(absl::InternalError(Cat("socket: ", std::strerror(errno))));
    int one = 1;
    ::setsockopt(tcp_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(tcp_fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(tcp_fd, 16) != 0)
      return fail(absl::UnavailableError(
          Cat(options.tcp_listen, ": cannot listen: ", std::strerror(errno))));
    sockaddr_storage bound{};
    socklen_t len = sizeof(bound);
    ::getsockname(tcp_fd, reinterpret_cast<sockaddr*>(&bound), &len);
    tcp_address = FormatAddress(reinterpret_cast<sockaddr*>(&bound));
  }
  return std::unique_ptr<AdminServer>(
      new AdminServer(spool, std::move(options), fd, path, tcp_fd, std::move(tcp_address)));
}

AdminServer::AdminServer(Spool* spool, AdminOptions options, int listen_fd, std::string path,
                         int tcp_fd, std::string tcp_address)
    : spool_(spool),
      options_(std::move(options)),
      listen_fd_(listen_fd),
      path_(std::move(path)),
      tcp_fd_(tcp_fd),
      tcp_address_(std::move(tcp_address)) {
  thread_ = std::thread([this] { Run(); });
}

AdminServer::~AdminServer() { Stop(); }

void AdminServer::Stop() {
  if (stop_.exchange(true)) return;
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);
  if (tcp_fd_ >= 0) ::close(tcp_fd_);
  ::unlink(path_.c_str());
}

void AdminServer::Run() {
  while (!stop_.load()) {
    pollfd p[2] = {{listen_fd_, POLLIN, 0}, {tcp_fd_, POLLIN, 0}};
    int n = ::poll(p, tcp_fd_ >= 0 ? 2 : 1, 100);
    if (n <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (!(p[i].revents & POLLIN)) continue;
      int fd = ::accept4(p[i].fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      Serve(fd, /*tcp=*/i == 1);
      ::close(fd);
    }
  }
}

// One client at a time: operator commands are rare and short, and a load
// holds the client for its duration anyway.
void AdminServer::Serve(int fd, bool tcp) {
  std::string buf;
  char chunk[4096];
  // A client that goes quiet for 30 s is dropped so it cannot hold the server.
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (!stop_.load() && absl::Now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    int n = ::poll(&p, 1, 100);
    if (n == 0) continue;
    if (n < 0) return;
    ssize_t got = ::read(fd, chunk, sizeof(chunk));
    if (got <= 0) return;
    buf.append(chunk, static_cast<size_t>(got));
    deadline = absl::Now() + absl::Seconds(30);
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      nlohmann::json req = nlohmann::json::parse(buf.substr(0, nl), nullptr, false);
      buf.erase(0, nl + 1);
      nlohmann::json resp;
      if (req.is_discarded() || !req.is_object()) {
        resp = Error(absl::InvalidArgumentError("request is not valid JSON"));
      } else if (tcp && !options_.token.empty() &&
                 !(req.contains("token") && req["token"].is_string() &&
                   TokenMatches(req["token"].get<std::string>(), options_.token))) {
        resp = Error(absl::PermissionDeniedError("missing or wrong admin token"));
      } else {
        req.erase("token");
        resp = HandleAdminRequest(*spool_, req, options_);
      }
      std::string out = resp.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      out.push_back('\n');
      size_t off = 0;
      while (off < out.size()) {
        ssize_t w = ::send(fd, out.data() + off, out.size() - off, MSG_NOSIGNAL);
        if (w <= 0) return;
        off += static_cast<size_t>(w);
      }
    }
    if (buf.size() > kMaxRequestBytes) {
      std::string out =
          Error(absl::InvalidArgumentError("request line longer than 1 MiB")).dump() + "\n";
      (void)::send(fd, out.data(), out.size(), MSG_NOSIGNAL);
      return;
    }
  }
}

namespace {
// The owner of `path` or, when it cannot be seen, of the nearest parent that can.
std::string OwnerOf(const std::string& path) {
  std::filesystem::path p(path);
  for (int i = 0; i < 64 && !p.empty(); ++i) {
    struct stat st;
    if (::stat(p.c_str(), &st) == 0) return std::to_string(st.st_uid);
    if (!p.has_parent_path() || p.parent_path() == p) break;
    p = p.parent_path();
  }
  return "unknown";
}
}  // namespace

absl::StatusOr<nlohmann::json> AdminCall(const std::string& socket_path,
                                         const nlohmann::json& request, absl::Duration timeout) {
  const std::string& path = socket_path;
  sockaddr_un addr;
  if (!FillSockaddr(path, &addr))
    return absl::InvalidArgumentError(Cat(path, ": socket path too long"));
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(Cat("socket: ", std::strerror(errno)));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    ::close(fd);
    if (err == EACCES || err == EPERM)
      return absl::PermissionDeniedError(
          Cat(path,
              ": permission denied: the admin socket and its data directory are private "
              "to the user that runs the engine (uid ",
              OwnerOf(path), "); run salvo as that user"));
    return absl::UnavailableError(Cat("no engine listening on ", path, ": ", std::strerror(err)));
  }
  absl::StatusOr<nlohmann::json> resp = Exchange(fd, path, request, timeout);
  ::close(fd);
  return resp;
}

absl::StatusOr<nlohmann::json> AdminCallTcp(const std::string& address, const std::string& token,
                                            nlohmann::json request, absl::Duration timeout) {
  absl::StatusOr<AddrInfoPtr> ai = Resolve(address, /*passive=*/false);
  if (!ai.ok()) return ai.status();
  if (!token.empty()) request["token"] = token;
  const absl::Time deadline = absl::Now() + timeout;
  std::string last_error = "no address";
  for (const addrinfo* a = ai->get(); a != nullptr; a = a->ai_next) {
    int fd = ::socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return absl::InternalError(Cat("socket: ", std::strerror(errno)));
    int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      const int64_t ms = std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now()));
      pollfd p{fd, POLLOUT, 0};
      int err = 0;
      socklen_t len = sizeof(err);
      if (::poll(&p, 1, static_cast<int>(std::min<int64_t>(ms, 60000))) == 1 &&
          ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)
        rc = 0;
      else
        errno = err != 0 ? err : ETIMEDOUT;
    }
    if (rc != 0) {
      last_error = std::strerror(errno);
      ::close(fd);
      continue;
    }
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    absl::StatusOr<nlohmann::json> resp =
        Exchange(fd, address, request, std::max(deadline - absl::Now(), absl::Seconds(1)));
    ::close(fd);
    return resp;
  }
  return absl::UnavailableError(Cat("no engine answers on ", address, ": ", last_error));
}

}  // namespace salvo::queue
