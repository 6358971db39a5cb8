#include "queue/admin_server.h"
#include "queue/strings.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "engine/common/log.h"

namespace salvo::queue {

namespace {

constexpr size_t kMaxRequestBytes = 1 << 20;

std::string CodeName(absl::StatusCode code) { return Lower(absl::StatusCodeToString(code)); }

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

}  // namespace

nlohmann::json CountsToJson(const StateCounts& counts) {
  nlohmann::json j = nlohmann::json::object();
  for (size_t i = 0; i < kNumRecipientStates; ++i)
    j[std::string(RecipientStateName(static_cast<RecipientState>(i)))] = counts.n[i];
  j["total"] = counts.Total();
  return j;
}

nlohmann::json CampaignToJson(const CampaignInfo& info) {
  return {{"id", Value(info.id)},
          {"name", info.name},
          {"state", std::string(CampaignStateName(info.state))},
          {"from", info.from},
          {"dkim_domain", info.dkim_domain},
          {"template", info.template_path},
          {"recipients", info.recipients_path},
          {"created", TimeString(info.created)},
          {"columns", info.columns}};
}

nlohmann::json StatusToJson(const CampaignStatus& st) {
  nlohmann::json j = CampaignToJson(st.info);
  j["counts"] = CountsToJson(st.counts);
  j["bounce_rate"] = st.bounce_rate;
  j["deferral_rate"] = st.deferral_rate;
  j["done"] = st.counts.Pending() == 0;
  nlohmann::json domains = nlohmann::json::array();
  for (const auto& d : st.top_domains)
    domains.push_back({{"domain", d.domain}, {"counts", CountsToJson(d.counts)}});
  j["top_domains"] = domains;
  nlohmann::json categories = nlohmann::json::object();
  for (const auto& [c, n] : st.categories) categories[c] = n;
  j["categories"] = categories;
  return j;
}

nlohmann::json LoadReportToJson(const LoadReport& r) {
  return {{"id", Value(r.id)},
          {"rows", r.rows},
          {"accepted", r.accepted},
          {"duplicates", r.duplicates},
          {"suppressed", r.suppressed},
          {"invalid", r.invalid},
          {"first_errors", r.first_errors},
          {"seconds", r.seconds}};
}

nlohmann::json SpecToJson(const CampaignSpec& s) {
  return {{"name", s.name},
          {"template", s.template_path},
          {"recipients", s.recipients_path},
          {"from", s.from},
          {"dkim_domain", s.dkim_domain},
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
        if (absl::StatusOr<StateCounts> counts = spool.Counts(info.id); counts.ok())
          c["counts"] = CountsToJson(*counts);
        list.push_back(std::move(c));
      }
      return {{"ok", true}, {"campaigns", list}};
    }
    if (op == "status" || op == "pause" || op == "resume" || op == "cancel") {
      absl::StatusOr<CampaignId> id = CampaignArg(spool, req);
      if (!id.ok()) return Error(id.status());
      if (op == "status") {
        absl::StatusOr<CampaignStatus> st = spool.Status(*id, req.value("top", size_t{10}));
        if (!st.ok()) return Error(st.status());
        return {{"ok", true}, {"status", StatusToJson(*st)}};
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
      lo.validate_template = options.validate_template;
      absl::StatusOr<LoadReport> report = spool.LoadCampaign(*spec, lo);
      if (!report.ok()) return Error(report.status());
      return {{"ok", true}, {"report", LoadReportToJson(*report)}};
    }
    if (op == "suppression_add" || op == "suppression_remove") {
      size_t n = 0;
      for (const auto& e : req.at("emails")) {
        const std::string email = e.get<std::string>();
        absl::Status s = op == "suppression_add"
                             ? spool.AddSuppression(email, req.value("reason", "manual"))
                             : spool.RemoveSuppression(email);
        if (!s.ok()) {
          nlohmann::json err = Error(s);
          err[op == "suppression_add" ? "added" : "removed"] = n;
          return err;
        }
        ++n;
      }
      return {{"ok", true}, {op == "suppression_add" ? "added" : "removed", n}};
    }
    if (op == "suppression_list") {
      nlohmann::json entries = nlohmann::json::array();
      for (const SuppressionEntry& e :
           spool.ListSuppression(req.value("limit", size_t{1000}), req.value("after", "")))
        entries.push_back(
            {{"email", e.email}, {"reason", e.reason}, {"added", TimeString(e.added)}});
      return {{"ok", true}, {"entries", entries}};
    }
    if (op == "suppression_import") {
      const std::string path = req.at("path").get<std::string>();
      absl::StatusOr<SuppressionImportReport> r =
          spool.ImportSuppression(path, req.value("reason", "import:" + path));
      if (!r.ok()) return Error(r.status());
      return {{"ok", true},
              {"report",
               {{"added", r->added},
                {"already", r->already},
                {"invalid", r->invalid},
                {"first_errors", r->first_errors}}}};
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
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 16) != 0) {
    int err = errno;
    ::close(fd);
    return absl::InternalError(Cat(path, ": cannot listen: ", std::strerror(err)));
  }
  ::chmod(path.c_str(), 0600);
  return std::unique_ptr<AdminServer>(new AdminServer(spool, std::move(options), fd, path));
}

AdminServer::AdminServer(Spool* spool, AdminOptions options, int listen_fd, std::string path)
    : spool_(spool), options_(std::move(options)), listen_fd_(listen_fd), path_(std::move(path)) {
  thread_ = std::thread([this] { Run(); });
}

AdminServer::~AdminServer() { Stop(); }

void AdminServer::Stop() {
  if (stop_.exchange(true)) return;
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);
  ::unlink(path_.c_str());
}

void AdminServer::Run() {
  while (!stop_.load()) {
    pollfd p{listen_fd_, POLLIN, 0};
    int n = ::poll(&p, 1, 100);
    if (n <= 0) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    Serve(fd);
    ::close(fd);
  }
}

// One client at a time: operator commands are rare and short, and a load
// holds the client for its duration anyway.
void AdminServer::Serve(int fd) {
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
      nlohmann::json resp = req.is_discarded()
                                ? Error(absl::InvalidArgumentError("request is not valid JSON"))
                                : HandleAdminRequest(*spool_, req, options_);
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
    return absl::UnavailableError(Cat("no engine listening on ", path, ": ", std::strerror(err)));
  }
  std::string out = request.dump() + "\n";
  size_t off = 0;
  while (off < out.size()) {
    ssize_t w = ::send(fd, out.data() + off, out.size() - off, MSG_NOSIGNAL);
    if (w <= 0) {
      ::close(fd);
      return absl::InternalError(Cat(path, ": send failed"));
    }
    off += static_cast<size_t>(w);
  }
  std::string buf;
  char chunk[65536];
  const absl::Time deadline = absl::Now() + timeout;
  while (buf.find('\n') == std::string::npos) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      ::close(fd);
      return absl::DeadlineExceededError(Cat(path, ": no answer from the engine in time"));
    }
    pollfd p{fd, POLLIN, 0};
    int n =
        ::poll(&p, 1, static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left), 1000)));
    if (n <= 0) continue;
    ssize_t got = ::read(fd, chunk, sizeof(chunk));
    if (got <= 0) {
      ::close(fd);
      return absl::InternalError(Cat(path, ": the engine closed the connection"));
    }
    buf.append(chunk, static_cast<size_t>(got));
  }
  ::close(fd);
  nlohmann::json resp = nlohmann::json::parse(buf.substr(0, buf.find('\n')), nullptr, false);
  if (resp.is_discarded() || !resp.is_object())
    return absl::InternalError(Cat(path, ": the engine sent a malformed answer"));
  return resp;
}

}  // namespace salvo::queue
