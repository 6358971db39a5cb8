#include "engine/common/host_port.h"

#include <charconv>

#include "engine/common/strings.h"

namespace salvo {

absl::StatusOr<HostPort> ParseHostPort(std::string_view text, HostPortOptions options) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(Cat("bad address '", text, "': ", why));
  };
  std::string_view h = text, p;
  bool has_port = false;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return bad("missing ']'");
    h = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return bad("expected ':port' after ']'");
      p = rest.substr(1);
      has_port = true;
    }
  } else if (const size_t colon = text.rfind(':'); colon != std::string_view::npos) {
    if (text.find(':') == colon) {  // one colon: host:port (several: a bare IPv6 address)
      h = text.substr(0, colon);
      p = text.substr(colon + 1);
      has_port = true;
    }
  }
  if (h.empty()) return bad("no host");
  HostPort out{std::string(h), options.default_port};
  if (has_port) {
    const int low = options.allow_port_zero ? 0 : 1;
    unsigned v = 0;
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
    if (p.empty() || ec != std::errc() || end != p.data() + p.size() ||
        v < static_cast<unsigned>(low) || v > 65535)
      return bad(Cat("port must be ", low, "..65535"));
    out.port = static_cast<int>(v);
  }
  return out;
}

}  // namespace salvo
