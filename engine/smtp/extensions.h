#pragma once
// The ESMTP service extensions a server announced in its EHLO reply.
#include <cstdint>
#include <string>

#include "engine/smtp/outcome.h"

namespace salvo::smtp {

struct Extensions {
  bool esmtp = false;  // EHLO succeeded (false after a HELO fallback)
  bool pipelining = false;
  bool size = false;
  uint64_t max_size = 0;  // SIZE argument; 0 = announced without a limit
  bool eight_bit_mime = false;
  bool smtputf8 = false;
  bool starttls = false;
  bool enhanced_status_codes = false;
  bool chunking = false;
  bool dsn = false;
  bool auth = false;
  bool auth_plain = false;
  bool auth_login = false;
  std::string server_name;  // first word of the first EHLO line

  // Parses a 250 EHLO reply (Reply::text lines, "\n"-joined). Keywords are
  // case-insensitive; "AUTH=LOGIN PLAIN" (legacy) and repeated spaces are
  // accepted.
  static Extensions Parse(const Reply& ehlo_reply);
};

}  // namespace salvo::smtp
