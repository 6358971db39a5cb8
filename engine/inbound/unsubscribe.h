#pragma once
// Unsubscribe requests, both forms List-Unsubscribe offers (engine/message
// composition puts them there):
//
// - One-click (RFC 8058): UnsubscribeServer, a small HTTP server (civetweb, its
//   own threads) for `[unsubscribe] listen`. POST BASE?c=CAMPAIGN&r=RECIPIENT&t=TOKEN
//   with the body List-Unsubscribe=One-Click: the token is checked with that
//   campaign's unsubscribe secret (message::VerifyUnsubscribeToken) and the
//   address is suppressed with reason "unsubscribe" (200). A bad or forged
//   token: 403, nothing changes. A campaign that does not exist or has no
//   unsubscribe secret: 404. Missing parameters or body: 400. GET with a good
//   token shows a small page whose button sends that POST (link scanners GET
//   URLs: a GET never unsubscribes); other methods: 405.
// - Mail to unsubscribe_mailto: ProcessUnsubscribeMail, called by the inbound
//   listener's processing for each stored message. Composition writes
//   mailto:ADDRESS?subject=unsubscribe%20CAMPAIGN%20TOKEN, so the request is a
//   message whose Subject is "unsubscribe CAMPAIGN TOKEN"; the token is
//   checked against the message's From address and its envelope sender (and
//   the campaign's recipients with that address in any letter case). It
//   verifies: the address is suppressed ("unsubscribe"). It does not: nothing
//   changes ("unsubscribe_forged").
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "queue/spool.h"

struct mg_context;
struct mg_connection;

namespace salvo::inbound {

// "unsubscribe" (suppressed), "unsubscribe_forged" (a request whose token
// does not verify), or kNotFound when the message is not an unsubscribe
// request (its Subject does not start with "unsubscribe").
absl::StatusOr<std::string> ProcessUnsubscribeMail(queue::Spool& spool,
                                                   const queue::InboundMessage& message);

class UnsubscribeServer {
 public:
  // `listen` is "ADDR:PORT" (numeric; "[::1]:PORT" for IPv6). Errors name it.
  static absl::StatusOr<std::unique_ptr<UnsubscribeServer>> Start(queue::Spool* spool,
                                                                  const std::string& listen);
  ~UnsubscribeServer();  // Stop()s
  void Stop();
  uint16_t port() const { return port_; }
  // salvo_unsubscribe_requests_total{result}: unsubscribed, forged,
  // unknown_campaign, bad_request, confirmation_page, method_not_allowed.
  std::map<std::string, uint64_t> Counts() const;

 private:
  UnsubscribeServer() = default;
  static int HandleRequest(mg_connection* conn);
  int Handle(mg_connection* conn);
  void Count(const std::string& result);

  queue::Spool* spool_ = nullptr;
  mg_context* ctx_ = nullptr;
  uint16_t port_ = 0;
  mutable absl::Mutex mu_;
  std::map<std::string, uint64_t> counts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace salvo::inbound
