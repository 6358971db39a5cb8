#pragma once
// Content and header encoders used by the template renderer. Streaming
// encoders keep their line/group state so a part can be produced from many
// pieces (pre-encoded template literals and per-copy values) in one pass.
// All functions append to *out; none allocate beyond out's growth.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace salvo::message {

inline constexpr size_t kMaxLineOctets = 998;    // RFC 5322 2.1.1 hard limit (without CRLF)
inline constexpr size_t kFoldColumn = 78;        // RFC 5322 recommended header line length
inline constexpr size_t kEncodedLineChars = 76;  // RFC 2045 QP / base64 line length

// Plain base64 (RFC 4648 section 4), padded, no line breaks.
void AppendBase64(std::string_view in, std::string* out);
// URL-safe base64 (RFC 4648 section 5) without padding.
void AppendBase64Url(std::string_view in, std::string* out);

// Quoted-printable encoder (RFC 2045 6.7) that never produces a line longer
// than 76 characters, and also encodes '-' and '.' at the start of a line
// (so no output line can look like a MIME boundary or an SMTP end of data)
// and whitespace at the end of each piece (the next piece may start a line).
// In text mode a CRLF in the input is a hard line break; a lone CR or LF and
// every CRLF in value mode are encoded (=0D / =0A), so values can never
// introduce a line.
class QpEncoder {
 public:
  void Append(std::string_view in, bool text_mode, std::string* out);
  // Appends a block produced by Append() from column 0 (pre-encoded literal),
  // given its first line length and the column after it.
  void AppendPreEncoded(std::string_view block, size_t first_line_len, size_t last_col,
                        bool has_break, std::string* out);
  size_t column() const { return col_; }
  void set_column(size_t col) { col_ = col; }

 private:
  size_t col_ = 0;
};

// Streaming base64 encoder with CRLF every 76 characters (RFC 2045 6.8).
// Lines may be shorter where a pre-encoded literal block starts.
class Base64Encoder {
 public:
  void Append(std::string_view in, std::string* out);
  // Number of input bytes a literal must contribute to complete the pending
  // 3-byte group before a block pre-encoded with that offset can follow.
  size_t PendingNeed() const { return (3 - carry_len_) % 3; }
  // Completes the pending group with `head` (exactly PendingNeed() bytes),
  // then appends `block` (base64 with CRLFs, pre-encoded from column 0;
  // `last_col` = characters after its last CRLF).
  void AppendPreEncoded(std::string_view head, std::string_view block, size_t last_col,
                        std::string* out);
  // Emits the final partial group with padding. Does not end the line.
  void Finish(std::string* out);
  size_t column() const { return col_; }

 private:
  void EmitQuad(const unsigned char* g, size_t n, std::string* out);
  unsigned char carry_[3] = {0, 0, 0};
  size_t carry_len_ = 0;
  size_t col_ = 0;
};

// RFC 2047 encoded-words ("=?utf-8?q?...?=") for the whole of `value`,
// folded so that no line exceeds 78 characters. *col is the current column on
// entry (e.g. after "Subject: ") and on exit. UTF-8 sequences are never split
// across words. `phrase` restricts the literal set as RFC 2047 5(3) requires
// for display names.
void AppendEncodedWords(std::string_view value, bool phrase, size_t* col, std::string* out);

// True if an unstructured header value can go out as plain text: printable
// ASCII and spaces only, no leading/trailing whitespace, no "=?", and no
// word too long to fold under 998 octets.
bool IsPlainHeaderText(std::string_view value, size_t name_len);

// Appends a plain (IsPlainHeaderText) value folded at spaces to 78 columns
// where possible. *col as for AppendEncodedWords.
void AppendFoldedPlain(std::string_view value, size_t* col, std::string* out);

// RFC 5322 date-time in UTC, e.g. "Sat, 28 Nov 2026 01:29:19 +0000".
void AppendRfc5322Date(int64_t unix_seconds, std::string* out);

// Percent-encodes everything except RFC 3986 unreserved characters.
void AppendPercentEncoded(std::string_view in, std::string* out);

}  // namespace salvo::message
