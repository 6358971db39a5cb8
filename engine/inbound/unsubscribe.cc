#include "engine/inbound/unsubscribe.h"

#include <civetweb.h>

#include <charconv>
#include <cstring>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "engine/bounce/report.h"
#include "engine/common/log.h"
#include "engine/message/campaign_settings.h"
#include "engine/message/unsubscribe.h"
#include "queue/address.h"

namespace salvo::inbound {
namespace {

// The unsubscribe secret of campaign `id_text` (decimal id), or an error:
// kNotFound for no such campaign or one without unsubscribe settings.
absl::StatusOr<std::string> CampaignSecret(const queue::Spool& spool, std::string_view id_text,
                                           queue::CampaignId* id_out) {
  uint64_t n = 0;
  auto [p, ec] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), n);
  if (id_text.empty() || ec != std::errc() || p != id_text.data() + id_text.size() || n == 0)
    return absl::NotFoundError(absl::StrCat("no campaign '", std::string(id_text), "'"));
  absl::StatusOr<queue::CampaignInfo> info = spool.GetCampaign(queue::CampaignId{n});
  if (!info.ok()) return absl::NotFoundError(absl::StrCat("no campaign ", n));
  absl::StatusOr<message::CampaignMessageSettings> settings =
      message::SettingsFromOptions(info->options, std::to_string(n));
  if (!settings.ok() || settings->unsubscribe_secret.empty())
    return absl::NotFoundError(absl::StrCat("campaign ", n, " has no unsubscribe secret"));
  *id_out = queue::CampaignId{n};
  return settings->unsubscribe_secret;
}

// The addr-spec of a From header value: inside the last <...>, else the whole.
std::string AddressOf(std::string_view header) {
  size_t open = header.rfind('<');
  size_t close = header.rfind('>');
  if (open != std::string_view::npos && close != std::string_view::npos && close > open)
    header = header.substr(open + 1, close - open - 1);
  while (!header.empty() && absl::ascii_isspace(static_cast<unsigned char>(header.front())))
    header.remove_prefix(1);
  while (!header.empty() && absl::ascii_isspace(static_cast<unsigned char>(header.back())))
    header.remove_suffix(1);
  return std::string(header);
}

// The spelling of `candidate` the token was made for: the address itself or,
// compared without letter case, a recipient of the campaign. "" when none.
std::string VerifiedAddress(const queue::Spool& spool, queue::CampaignId campaign,
                            std::string_view campaign_text, std::string_view secret,
                            std::string_view candidate, std::string_view token) {
  if (candidate.empty()) return "";
  if (message::VerifyUnsubscribeToken(secret, campaign_text, candidate, token))
    return std::string(candidate);
  absl::StatusOr<std::vector<queue::RecipientView>> found =
      spool.FindRecipient(candidate, campaign);
  if (!found.ok()) return "";
  for (const queue::RecipientView& v : *found)
    if (message::VerifyUnsubscribeToken(secret, campaign_text, v.email, token)) return v.email;
  return "";
}

std::string HtmlEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

void Respond(mg_connection* conn, int code, const char* reason, std::string_view content_type,
             std::string_view body) {
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\nContent-Type: %.*s\r\nContent-Length: %zu\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
            code, reason, static_cast<int>(content_type.size()), content_type.data(), body.size());
  mg_write(conn, body.data(), body.size());
}

// Query parameter `name` of `query` (URL-decoded by civetweb); false if absent.
bool QueryVar(const char* query, const char* name, std::string* out) {
  if (query == nullptr) return false;
  std::vector<char> buf(2048);
  int n = mg_get_var(query, std::strlen(query), name, buf.data(), buf.size());
  if (n < 0) return false;
  out->assign(buf.data(), static_cast<size_t>(n));
  return true;
}

}  // namespace

absl::StatusOr<std::string> ProcessUnsubscribeMail(queue::Spool& spool,
                                                   const queue::InboundMessage& message) {
  absl::StatusOr<bounce::Report> report = bounce::ParseReport(message.raw);
  if (!report.ok()) return absl::NotFoundError("not a readable message");
  std::vector<std::string> words;
  for (std::string word; const char ch : report->subject + " ") {
    if (ch == ' ' || ch == '\t') {
      if (!word.empty()) words.push_back(std::move(word));
      word.clear();
    } else {
      word.push_back(ch);
    }
  }
  if (words.empty() || absl::AsciiStrToLower(words[0]) != "unsubscribe")
    return absl::NotFoundError("not an unsubscribe request");
  if (words.size() != 3) {
    SALVO_LOG(kWarning, "inbound: unsubscribe mail from <{}> without campaign and token ignored",
              message.mail_from);
    return std::string("unsubscribe_forged");
  }
  queue::CampaignId campaign{};
  absl::StatusOr<std::string> secret = CampaignSecret(spool, words[1], &campaign);
  if (!secret.ok()) return std::string("unsubscribe_forged");
  for (const std::string& candidate : {AddressOf(report->from), message.mail_from}) {
    std::string address = VerifiedAddress(spool, campaign, words[1], *secret, candidate, words[2]);
    if (address.empty()) continue;
    if (absl::Status s = spool.AddSuppression(address, "unsubscribe"); !s.ok()) return s;
    SALVO_LOG(kInfo, "inbound: {} unsubscribed by mail (campaign {})", address, words[1]);
    return std::string("unsubscribe");
  }
  return std::string("unsubscribe_forged");
}

absl::StatusOr<std::unique_ptr<UnsubscribeServer>> UnsubscribeServer::Start(
    queue::Spool* spool, const std::string& listen) {
  std::unique_ptr<UnsubscribeServer> server(new UnsubscribeServer());
  server->spool_ = spool;
  mg_init_library(0);
  mg_callbacks callbacks{};
  callbacks.begin_request = &UnsubscribeServer::HandleRequest;
  const char* options[] = {"listening_ports",    listen.c_str(), "num_threads", "4",
                           "request_timeout_ms", "10000",        nullptr};
  server->ctx_ = mg_start(&callbacks, server.get(), options);
  if (server->ctx_ == nullptr)
    return absl::UnavailableError(
        absl::StrCat("[unsubscribe] listen: cannot listen on ", listen,
                     " (address in use, not a local address, or not ADDR:PORT)"));
  mg_server_port ports[4] = {};
  if (mg_get_server_ports(server->ctx_, 4, ports) > 0)
    server->port_ = static_cast<uint16_t>(ports[0].port);
  return server;
}

UnsubscribeServer::~UnsubscribeServer() { Stop(); }

void UnsubscribeServer::Stop() {
  if (ctx_ != nullptr) mg_stop(ctx_);
  ctx_ = nullptr;
}

std::map<std::string, uint64_t> UnsubscribeServer::Counts() const {
  absl::MutexLock lock(&mu_);
  return counts_;
}

void UnsubscribeServer::Count(const std::string& result) {
  absl::MutexLock lock(&mu_);
  ++counts_[result];
}

int UnsubscribeServer::HandleRequest(mg_connection* conn) {
  auto* self = static_cast<UnsubscribeServer*>(mg_get_user_data(mg_get_context(conn)));
  return self->Handle(conn);
}

int UnsubscribeServer::Handle(mg_connection* conn) {
  const mg_request_info* ri = mg_get_request_info(conn);
  const std::string method = ri->request_method ? ri->request_method : "";
  const bool post = method == "POST";
  if (!post && method != "GET") {
    Count("method_not_allowed");
    mg_printf(conn,
              "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, POST\r\nContent-Length: 0\r\n"
              "Connection: close\r\n\r\n");
    return 405;
  }
  std::string c, r, t;
  if (!QueryVar(ri->query_string, "c", &c) || !QueryVar(ri->query_string, "r", &r) ||
      !QueryVar(ri->query_string, "t", &t)) {
    Count("bad_request");
    Respond(conn, 400, "Bad Request", "text/plain", "missing c, r or t in the URL\n");
    return 400;
  }
  if (post) {
    // RFC 8058: the body is "List-Unsubscribe=One-Click" (form-encoded or multipart).
    std::string body;
    char buf[1024];
    for (int i = 0; i < 8 && body.size() < 8192; ++i) {
      int n = mg_read(conn, buf, sizeof(buf));
      if (n <= 0) break;
      body.append(buf, static_cast<size_t>(n));
    }
    if (body.find("List-Unsubscribe=One-Click") == std::string::npos) {
      Count("bad_request");
      Respond(conn, 400, "Bad Request", "text/plain",
              "the body must be List-Unsubscribe=One-Click (RFC 8058)\n");
      return 400;
    }
  }
  queue::CampaignId campaign{};
  absl::StatusOr<std::string> secret = CampaignSecret(*spool_, c, &campaign);
  if (!secret.ok()) {
    Count("unknown_campaign");
    Respond(conn, 404, "Not Found", "text/plain", "unknown campaign\n");
    return 404;
  }
  if (!message::VerifyUnsubscribeToken(*secret, c, r, t)) {
    Count("forged");
    SALVO_LOG(kWarning, "unsubscribe: a token that does not verify for campaign {} refused", c);
    Respond(conn, 403, "Forbidden", "text/plain", "this unsubscribe link is not valid\n");
    return 403;
  }
  if (!post) {
    Count("confirmation_page");
    std::string action = absl::StrCat("?", ri->query_string ? ri->query_string : "");
    Respond(
        conn, 200, "OK", "text/html; charset=utf-8",
        absl::StrCat("<!doctype html><title>Unsubscribe</title><form method=\"post\" action=\"",
                     HtmlEscape(action),
                     "\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">"
                     "<p>Unsubscribe ",
                     HtmlEscape(r), "?</p><button type=\"submit\">Unsubscribe</button></form>\n"));
    return 200;
  }
  if (absl::Status s = spool_->AddSuppression(r, "unsubscribe"); !s.ok()) {
    Count("failed");
    SALVO_LOG(kError, "unsubscribe: cannot suppress {}: {}", r, s.ToString());
    Respond(conn, 503, "Service Unavailable", "text/plain", "try again later\n");
    return 503;
  }
  Count("unsubscribed");
  SALVO_LOG(kInfo, "unsubscribe: {} unsubscribed (one-click, campaign {})", r, c);
  Respond(conn, 200, "OK", "text/plain", "unsubscribed\n");
  return 200;
}

}  // namespace salvo::inbound
