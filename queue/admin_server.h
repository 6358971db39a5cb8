#pragma once
// Operating the spool while the engine runs. RocksDB admits one writer
// process, so `salvo run` starts an AdminServer: a Unix socket at
// <data_dir>/admin.sock served by its own thread, one JSON request and one
// JSON response per line. The CLI first tries the socket (AdminCall) and opens
// the database directly only when no engine answers; both paths go through
// HandleAdminRequest, so they behave the same.
//
// Requests ({"op": ...}):
//   list                                       -> {"campaigns": [...]}
//   status    {"campaign": "ID|name", "top": N} -> {"status": {...}}
//   pause|resume|cancel {"campaign": "ID|name"} -> {"id": N, "state": "..."}
//   load      {"spec": {...}, "strict": bool}   -> {"report": {...}}   (paths absolute)
//   suppression_add    {"emails": [...], "reason": "..."} -> {"added": N}
//   suppression_remove {"emails": [...]}                  -> {"removed": N}
//   suppression_list   {"limit": N, "after": "addr"}      -> {"entries": [...]}
//   suppression_import {"path": "...", "reason": "..."}   -> {"report": {...}}
// Every response has "ok"; failures carry "code" (absl status code name,
// e.g. "not_found") and "error" (one line for the user).
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "queue/spool.h"

namespace salvo::queue {

struct AdminOptions {
  // Where to listen; empty = AdminSocketPath(spool->data_dir()). `salvo run`
  // passes config::Config::AdminSocketPath().
  std::string socket_path;
  // Template check for loads (see LoadOptions::validate_template).
  TemplateValidator validate_template;
  // First-copy check for loads (see LoadOptions::check_first_copy).
  FirstCopyCheck check_first_copy;
  // Optional TCP listener "host:port" (port 0 = any; see tcp_address()) for
  // tools on other machines or containers: `salvo fleet status`, `salvo
  // health --admin ADDR`. With `token` set every request on it must carry
  // "token": "<token>" (compared in constant time); without one, only a
  // loopback address is accepted. The Unix socket never needs the token (its
  // file mode 0600 is the access check).
  std::string tcp_listen;
  std::string token;
  // The running engine's view, added to `status` answers as "shaping" (the
  // throttled and suspended destinations); unset = none. Called from the
  // admin thread.
  std::function<nlohmann::json()> engine_status;
};

// Runs one request against a spool. Never throws; bad requests get ok=false.
nlohmann::json HandleAdminRequest(Spool& spool, const nlohmann::json& request,
                                  const AdminOptions& options);

// <data_dir>/admin.sock
std::string AdminSocketPath(const std::string& data_dir);

// Serves HandleAdminRequest on the admin socket from its own thread. The
// spool must outlive the server. Stop() (or the destructor) joins the thread
// and removes the socket file.
class AdminServer {
 public:
  static absl::StatusOr<std::unique_ptr<AdminServer>> Start(Spool* spool, AdminOptions options);
  ~AdminServer();
  void Stop();
  const std::string& socket_path() const { return path_; }
  // The TCP listener's bound "addr:port" ("" without one).
  const std::string& tcp_address() const { return tcp_address_; }

 private:
  AdminServer(Spool* spool, AdminOptions options, int listen_fd, std::string path, int tcp_fd,
              std::string tcp_address);
  void Run();
  void Serve(int fd, bool tcp);

  Spool* spool_;
  AdminOptions options_;
  int listen_fd_;
  std::string path_;
  int tcp_fd_ = -1;
  std::string tcp_address_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Sends one request to the engine listening on `socket_path`. kUnavailable when no
// engine is listening (then open the spool directly); other errors mean the
// engine answered badly or not in time.
absl::StatusOr<nlohmann::json> AdminCall(const std::string& socket_path,
                                         const nlohmann::json& request,
                                         absl::Duration timeout = absl::Minutes(10));

// The same over TCP to another node's admin listener ("host:port"); `token`
// is added to the request when not empty. kUnavailable when nothing listens
// (or the connection cannot be made within the timeout).
absl::StatusOr<nlohmann::json> AdminCallTcp(const std::string& address, const std::string& token,
                                            nlohmann::json request,
                                            absl::Duration timeout = absl::Seconds(10));

// True for 127.0.0.0/8 and ::1 ("host:port" form; names are resolved).
bool IsLoopbackAddress(const std::string& address);

// JSON forms shared by the server and the CLI.
nlohmann::json CountsToJson(const StateCounts& counts);
nlohmann::json CampaignToJson(const CampaignInfo& info);
nlohmann::json StatusToJson(const CampaignStatus& status);
nlohmann::json LoadReportToJson(const LoadReport& report);
nlohmann::json SpecToJson(const CampaignSpec& spec);
absl::StatusOr<CampaignSpec> SpecFromJson(const nlohmann::json& j);

}  // namespace salvo::queue
