#include "engine/smtp/outcome.h"

namespace salvo::smtp {

std::string Reply::ToString() const {
  if (code == 0) return {};
  std::string s = std::to_string(code);
  if (!enhanced.empty()) {
    s += ' ';
    s += enhanced;
  }
  if (!text.empty()) {
    s += ' ';
    for (char c : text) s += (c == '\n') ? ' ' : c;
  }
  return s;
}

std::string_view DispositionName(Disposition d) {
  switch (d) {
    case Disposition::kDelivered:
      return "delivered";
    case Disposition::kDeferred:
      return "deferred";
    case Disposition::kBounced:
      return "bounced";
  }
  return "unknown";
}

std::string_view ScopeName(Scope s) {
  switch (s) {
    case Scope::kRecipient:
      return "recipient";
    case Scope::kMessage:
      return "message";
    case Scope::kConnection:
      return "connection";
    case Scope::kSite:
      return "site";
  }
  return "unknown";
}

std::string_view FailureKindName(FailureKind k) {
  switch (k) {
    case FailureKind::kNone:
      return "none";
    case FailureKind::kReply:
      return "reply";
    case FailureKind::kTimeout:
      return "timeout";
    case FailureKind::kConnectionLost:
      return "connection_lost";
    case FailureKind::kConnectFailed:
      return "connect_failed";
    case FailureKind::kTls:
      return "tls";
    case FailureKind::kProtocol:
      return "protocol";
    case FailureKind::kDns:
      return "dns";
    case FailureKind::kLocal:
      return "local";
  }
  return "unknown";
}

}  // namespace salvo::smtp
