#pragma once
// "host", "host:port", "[v6]" and "[v6]:port": the one parser of the address
// texts in configuration, flags and routes (SMTP routes, listen addresses, the
// admin listener, Redis). Callers add their own context to the error and
// check what else they need (a numeric address, a port present).
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace salvo {

struct HostPort {
  std::string host;  // without brackets; not resolved, not lower-cased
  int port = -1;     // -1: the text had none and no default was given
};

struct HostPortOptions {
  int default_port = -1;         // when the text has no port
  bool allow_port_zero = false;  // ":0" (listen on any free port)
};

// A bare IPv6 address (several colons, no brackets) is a host with no port.
// Errors: "bad address 'TEXT': missing ']'", "...: no host",
// "...: port must be 1..65535" (0..65535 with allow_port_zero).
absl::StatusOr<HostPort> ParseHostPort(std::string_view text, HostPortOptions options = {});

}  // namespace salvo
