// Independent verification: Salvo's signatures checked by dkimpy (python3-dkim)
// and by OpenDKIM's offline verifier (opendkim -t), over the RFC 8463 message
// and over 240 generated messages (varied headers, folding, 8-bit, long lines,
// empty bodies, MIME multipart; RSA, Ed25519 and dual signatures; all four
// c= combinations), some signed through `salvo dkim sign`. Keys come from
// `salvo dkim keygen`, whose printed TXT records are what the verifiers use.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include "dkim/alignment.h"
#include "dkim/key_store.h"
#include "dkim/signer.h"
#include "gtest/gtest.h"
#include "tests/dkim/test_util.h"

namespace salvo::dkim {
namespace {

using testing::DataPath;
using testing::ProcessResult;
using testing::ReadFileOrDie;
using testing::RunProcess;
using testing::TempDir;
using testing::WriteFileOrDie;

constexpr char kPython[] = "/usr/bin/python3";

std::string FindOpendkim() {
  for (const char* p : {"/usr/sbin/opendkim", "/usr/bin/opendkim", "/usr/local/sbin/opendkim"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  return "";
}

// Joins the quoted strings of a zone-file TXT line into the record value.
std::string TxtFromZoneLine(const std::string& line) {
  std::string out;
  std::size_t pos = 0;
  while ((pos = line.find('"', pos)) != std::string::npos) {
    const std::size_t end = line.find('"', pos + 1);
    if (end == std::string::npos) break;
    out += line.substr(pos + 1, end - pos - 1);
    pos = end + 1;
  }
  return out;
}

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

// Writes KEYS.json (for dkimpy) and a TestPublicKeys file + config (for OpenDKIM).
struct VerifierSetup {
  std::string json_path, opendkim_conf;
  VerifierSetup(const TempDir& dir, const std::map<std::string, std::string>& records) {
    json_path = dir.File("keys.json");
    std::string json = "{\n";
    std::string testkeys;
    bool first = true;
    for (const auto& [name, rec] : records) {
      json += (first ? "" : ",\n") + std::string("\"") + JsonEscape(name) + "\": \"" +
              JsonEscape(rec) + "\"";
      first = false;
      testkeys += name + " " + rec + "\n";
    }
    json += "\n}\n";
    WriteFileOrDie(json_path, json, 0644);
    WriteFileOrDie(dir.File("testkeys"), testkeys, 0644);
    opendkim_conf = dir.File("opendkim.conf");
    WriteFileOrDie(opendkim_conf,
                   "Mode v\nSyslog no\nTestPublicKeys " + dir.File("testkeys") + "\n", 0644);
  }
};

int CountSignatures(const std::string& msg) {
  const std::string head = msg.substr(0, msg.find("\r\n\r\n") + 2);
  int n = 0;
  std::size_t pos = 0;
  while ((pos = head.find("DKIM-Signature:", pos)) != std::string::npos) {
    if (pos == 0 || head[pos - 1] == '\n') ++n;
    pos += 15;
  }
  return n;
}

// The message with only its idx-th DKIM-Signature field (OpenDKIM's -t mode
// reports one signature per run; DKIM-Signature fields are not in h=).
std::string KeepOnlySignature(const std::string& msg, int idx) {
  auto parsed = ParseMessage(msg);
  EXPECT_TRUE(parsed.ok());
  std::string out;
  int seen = 0;
  for (const auto& f : parsed->fields) {
    if (f.name == "DKIM-Signature" && seen++ != idx) continue;
    out.append(f.raw);
  }
  out.append("\r\n");
  out.append(parsed->body);
  return out;
}

// dkimpy over all files: returns the number of verified signatures.
int RunDkimpy(const VerifierSetup& v, const std::vector<std::string>& files, std::string* log) {
  std::vector<std::string> argv = {kPython, DataPath("verify_dkimpy.py"), v.json_path};
  argv.insert(argv.end(), files.begin(), files.end());
  ProcessResult r = RunProcess(argv, "", 120000);
  *log = r.out + r.err;
  int ok = 0;
  std::size_t pos = 0;
  while ((pos = r.out.find(": ok\n", pos)) != std::string::npos) {
    ++ok;
    pos += 5;
  }
  EXPECT_EQ(r.exit_code == 0, r.out.find("FAIL") == std::string::npos) << *log;
  return ok;
}

// OpenDKIM on each signature separately: returns failures (with reasons in *log).
int RunOpendkim(const VerifierSetup& v, const TempDir& dir, const std::vector<std::string>& files,
                int* checked, std::string* log) {
  const std::string opendkim = FindOpendkim();
  EXPECT_FALSE(opendkim.empty()) << "opendkim not installed (run deploy/bootstrap.sh test)";
  if (opendkim.empty()) return 1;
  int failures = 0;
  for (const std::string& file : files) {
    const std::string msg = ReadFileOrDie(file);
    const int n = CountSignatures(msg);
    for (int i = 0; i < n; ++i) {
      const std::string one = dir.File("one.eml");
      std::string single = KeepOnlySignature(msg, i);
      // A body without a final CRLF gets one on the wire (SMTP DATA ends with
      // CRLF "." CRLF); both canonicalizations sign it as if it were there.
      // opendkim -t reads the file as is and reports "message not signed"
      // without that CRLF, so give it the bytes a receiver would see.
      if (single.size() < 2 || single.compare(single.size() - 2, 2, "\r\n") != 0) {
        single += "\r\n";
      }
      WriteFileOrDie(one, single, 0644);
      ProcessResult r = RunProcess({opendkim, "-x", v.opendkim_conf, "-t", one}, "", 30000);
      ++*checked;
      if (r.out.find("succeeded") == std::string::npos &&
          r.err.find("succeeded") == std::string::npos) {
        ++failures;
        *log += file + " signature " + std::to_string(i) + ": " + r.out + r.err + "\n";
      }
    }
  }
  return failures;
}

TEST(DkimIndependentVerification, Rfc8463SalvoFormatVerifiesWithDkimpyAndOpendkim) {
  TempDir dir;
  std::map<std::string, std::string> records = {
      {"brisbane._domainkey.football.example.com",
       TxtFromZoneLine(
           "\"" + ReadFileOrDie(DataPath("rfc8463/brisbane._domainkey.football.example.com.txt")) +
           "\"")},
      {"test._domainkey.football.example.com",
       TxtFromZoneLine("\"" +
                       ReadFileOrDie(DataPath("rfc8463/test._domainkey.football.example.com.txt")) +
                       "\"")}};
  for (auto& [k, v] : records) {
    while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) v.pop_back();
  }
  VerifierSetup verifiers(dir, records);
  DkimKey ed =
      testing::LoadTestKey("rfc8463/ed25519.private.pkcs8.pem", "football.example.com", "brisbane");
  DkimKey rsa = testing::LoadTestKey("rfc8463/rsa.private.pem", "football.example.com", "test");
  const std::string message = ReadFileOrDie(DataPath("rfc8463/unsigned-message.eml"));
  Signer signer;
  SignOptions options;  // Salvo's own format: default h= list, t = now
  const DkimKey* keys[] = {&ed, &rsa};
  auto fields = signer.Sign(message, keys, options);
  ASSERT_TRUE(fields.ok()) << fields.status();
  WriteFileOrDie(dir.File("salvo.eml"), *fields + message, 0644);
  // Control: the RFC's own signed message verifies with the same setup, and a
  // tampered copy of ours does not.
  WriteFileOrDie(dir.File("rfc.eml"), ReadFileOrDie(DataPath("rfc8463/signed-message.eml")), 0644);
  std::string log;
  EXPECT_EQ(RunDkimpy(verifiers, {dir.File("salvo.eml"), dir.File("rfc.eml")}, &log), 4) << log;
  std::string tampered = *fields + message;
  tampered.replace(tampered.find("hungry"), 6, "HUNGRY");
  WriteFileOrDie(dir.File("tampered.eml"), tampered, 0644);
  EXPECT_EQ(RunDkimpy(verifiers, {dir.File("tampered.eml")}, &log), 0) << log;

  int checked = 0;
  EXPECT_EQ(RunOpendkim(verifiers, dir, {dir.File("salvo.eml")}, &checked, &log), 0) << log;
  EXPECT_EQ(checked, 2);
  checked = 0;
  std::string bad_log;
  EXPECT_EQ(RunOpendkim(verifiers, dir, {dir.File("tampered.eml")}, &checked, &bad_log), 2)
      << "OpenDKIM accepted a tampered message";
}

// ---- Generated corpus ----

class MessageGenerator {
 public:
  explicit MessageGenerator(uint32_t seed) : rng_(seed) {}

  // `plain_colon`: write every generated field as "Name: value". OpenDKIM's
  // -t mode rebuilds header fields milter-style as "Name: value", so it cannot
  // verify simple header canonicalization of fields written "Name:value" or
  // "Name:\tvalue" (dkimpy does); messages signed with c=simple/... use it.
  std::string Make(int n, const std::string& from_addr, bool plain_colon) {
    plain_colon_ = plain_colon;
    std::string h;
    const int style = Pick(4);
    h += Name("From", style) + Sep() + "\"Sender " + std::to_string(n) + "\" <" + from_addr +
         ">\r\n";
    h += Name("To", style) + Sep() + "user" + std::to_string(n) + "@example.net\r\n";
    if (Pick(3) == 0) h += "To: second" + std::to_string(n) + "@example.org\r\n";
    if (Pick(3) == 0) h += "Cc: cc@example.org,\r\n\tother@example.org\r\n";
    h += Name("Subject", style) + Sep() + Subject() + "\r\n";
    h += "Date: Sat, 28 Nov 2026 01:" + Two(Pick(60)) + ":" + Two(Pick(60)) + " +0000\r\n";
    h += "Message-ID: <" + std::to_string(n) + "." + std::to_string(rng_()) +
         "@mail.example.com>\r\n";
    if (Pick(2) == 0) {
      h += "List-Unsubscribe: <https://example.com/u/" + std::to_string(rng_()) +
           ">,\r\n <mailto:unsub-" + std::to_string(n) + "@example.com>\r\n";
      h += "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n";
    }
    if (Pick(3) == 0) h += "Reply-To: reply@example.com\r\n";
    if (Pick(2) == 0) h += "Feedback-ID: c" + std::to_string(n) + ":campaign:salvo\r\n";
    if (Pick(2) == 0) h += "X-Campaign-Id:   c" + std::to_string(n) + "  \t\r\n";
    if (Pick(4) == 0) h += "x-mixed-CASE-header: Value\r\n   continued\r\n\t\tand more\r\n";
    const int body_kind = n % 8;
    std::string body;
    h += "MIME-Version: 1.0\r\n";
    switch (body_kind) {
      case 0:  // empty body
        h += "Content-Type: text/plain; charset=us-ascii\r\n";
        break;
      case 1:  // only empty lines
        h += "Content-Type: text/plain\r\n";
        body = Pick(2) ? "\r\n\r\n\r\n" : "\r\n";
        break;
      case 2: {  // multipart alternative
        const std::string b = "=_salvo_" + std::to_string(rng_());
        h += "Content-Type: multipart/alternative;\r\n boundary=\"" + b + "\"\r\n";
        body = "This is a multi-part message in MIME format.\r\n\r\n--" + b +
               "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
               "8bit\r\n\r\n" +
               Text(5, true) + "\r\n--" + b +
               "\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: "
               "quoted-printable\r\n\r\n<html><body><p>Hello =3D world</p>=\r\n<p>More</p>"
               "</body></html>\r\n--" +
               b + "--\r\n";
        break;
      }
      case 3:  // long lines (no folding in bodies)
        h += "Content-Type: text/plain; charset=us-ascii\r\n";
        body = std::string(900 + Pick(90), 'x') + "\r\n" + std::string(50, 'y') + " \t \r\n";
        break;
      case 4:  // 8-bit body
        h += "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n";
        body =
            "Gr\xc3\xbc\xc3\x9f"
            "e \xe2\x80\x94 caf\xc3\xa9  \t\r\n\xe6\x97\xa5\xe6\x9c\xac\r\n"
            "latin1 \xe9\xe8\r\n\r\n\r\n";
        break;
      case 5:  // whitespace torture
        h += "Content-Type: text/plain\r\n";
        body = "  leading\r\ntrailing   \r\n\t\r\nin  the \t middle\r\n \r\n\r\n";
        break;
      default:  // plain text of varied size
        h += "Content-Type: text/plain; charset=us-ascii\r\n";
        body = Text(1 + Pick(60), false);
        break;
    }
    return h + "\r\n" + body;
  }

  int Pick(int n) { return static_cast<int>(rng_() % static_cast<uint32_t>(n)); }

 private:
  std::string Name(const std::string& name, int style) {
    if (style == 1) {
      std::string up = name;
      for (char& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      return up;
    }
    if (style == 2) {
      std::string low = name;
      for (char& c : low) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      return low;
    }
    return name;
  }
  std::string Sep() {
    const int pick = Pick(4);
    if (plain_colon_) return ": ";
    switch (pick) {
      case 0:
        return ":";
      case 1:  // (WSP before the colon is obsolete syntax dkimpy refuses)
        return ":   ";
      case 2:
        return ":\t";
      default:
        return ": ";
    }
  }
  std::string Subject() {
    switch (Pick(4)) {
      case 0:
        return "Weekly   news\t and  offers";
      case 1:  // folded over several lines
        return "A very long subject line that goes on and on about the many offers\r\n "
               "this week, folded\r\n\tonce more";
      case 2:
        return "=?UTF-8?B?SGVsbG8gd29ybGQ=?=";
      default:
        return "Caf\xc3\xa9 \xe2\x98\x95 8-bit subject";
    }
  }
  std::string Text(int lines, bool eight_bit) {
    static const char* words[] = {"lorem", "ipsum", "dolor", "sit", "amet", "salvo",
                                  "mail",  "offer", "  ",    "\t",  "."};
    std::string out;
    for (int l = 0; l < lines; ++l) {
      if (Pick(10) == 0) out += ".";  // dot-stuffing candidates
      const int nw = Pick(14);
      for (int w = 0; w < nw; ++w) {
        out += words[Pick(11)];
        out += " ";
      }
      if (eight_bit && Pick(3) == 0) out += "\xc3\xa9t\xc3\xa9";
      out += "\r\n";
    }
    if (Pick(4) == 0) out += "\r\n\r\n";
    if (Pick(5) == 0) out += "no final newline";
    return out;
  }
  static std::string Two(int v) { return (v < 10 ? "0" : "") + std::to_string(v); }
  std::mt19937 rng_;
  bool plain_colon_ = false;
};

TEST(DkimIndependentVerification, GeneratedCorpusVerifiesWithDkimpyAndOpendkim) {
  TempDir dir;
  // Keys from `salvo dkim keygen`; the printed TXT records are the public keys.
  std::map<std::string, std::string> records;
  struct Made {
    std::string selector, type, bits;
  };
  const std::vector<Made> made = {
      {"rsa2048", "rsa", "2048"}, {"rsa1024", "rsa", "1024"}, {"ed", "ed25519", "0"}};
  std::vector<KeySpec> specs;
  for (const Made& m : made) {
    ProcessResult r = RunProcess({SALVO_BINARY, "dkim", "keygen", "--domain", "example.com",
                                  "--selector", m.selector, "--type", m.type, "--bits",
                                  m.bits == "0" ? "2048" : m.bits, "--out", dir.path()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string pem = dir.File(m.selector + ".example.com.pem");
    struct stat st;
    ASSERT_EQ(::stat(pem.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_EQ(
        r.out.rfind(m.selector + "._domainkey.example.com. IN TXT ( \"v=DKIM1; k=" + m.type, 0), 0u)
        << r.out;
    records[m.selector + "._domainkey.example.com"] = TxtFromZoneLine(r.out);
    specs.push_back(KeySpec{"example.com", m.selector, pem, KeyType::kAuto});
  }
  auto store = KeyStore::Load(specs);
  ASSERT_TRUE(store.ok()) << store.status();
  VerifierSetup verifiers(dir, records);
  const DkimKey* rsa2048 = (*store)->Find("example.com", "rsa2048");
  const DkimKey* rsa1024 = (*store)->Find("example.com", "rsa1024");
  const DkimKey* ed = (*store)->Find("example.com", "ed");

  MessageGenerator gen(4242);
  Signer signer;
  std::vector<std::string> files;
  int signatures = 0;
  constexpr int kMessages = 240;
  for (int n = 0; n < kMessages; ++n) {
    // From a subdomain half of the time: alignment picks the example.com keys.
    const std::string from = n % 2 ? "news@example.com" : "news@mail.example.com";
    const int canon = n % 4;
    const std::string message = gen.Make(n, from, (canon & 1) == 0);
    SignOptions options;
    options.header_canon = canon & 1 ? Canonicalization::kRelaxed : Canonicalization::kSimple;
    options.body_canon = canon & 2 ? Canonicalization::kRelaxed : Canonicalization::kSimple;
    if (n % 5 == 0) options.expire_after_seconds = 7 * 86400;
    if (n % 7 == 0) options.identity = "@" + from.substr(from.find('@') + 1);
    std::vector<const DkimKey*> keys;
    switch ((n / 4) % 4) {
      case 0:
        keys = {rsa2048};
        break;
      case 1:
        keys = {ed};
        break;
      case 2:
        keys = {rsa2048, ed};
        break;
      default: {
        auto aligned = SelectKeysForFrom(**store, from);  // all three example.com keys
        ASSERT_TRUE(aligned.ok()) << aligned.status();
        keys = *aligned;
        EXPECT_EQ(keys.size(), 3u);
        keys.erase(keys.begin());  // rsa1024 + ed
        EXPECT_EQ(keys[0], rsa1024);
        break;
      }
    }
    std::string signed_msg;
    if (n % 10 == 3) {
      // Through the CLI: the same code, as a user debugging a signature runs it.
      std::vector<std::string> argv = {SALVO_BINARY,
                                       "dkim",
                                       "sign",
                                       "--domain",
                                       "example.com",
                                       "--canon",
                                       std::string(CanonicalizationName(options.header_canon)) +
                                           "/" +
                                           std::string(CanonicalizationName(options.body_canon))};
      for (const DkimKey* k : keys) {
        argv.insert(argv.end(), {"--key", k->path, "--selector", k->selector});
      }
      ProcessResult r = RunProcess(argv, message);
      ASSERT_EQ(r.exit_code, 0) << r.err;
      signed_msg = r.out;
    } else {
      auto fields = signer.Sign(message, keys, options);
      ASSERT_TRUE(fields.ok()) << "message " << n << ": " << fields.status();
      signed_msg = *fields + message;
    }
    ASSERT_EQ(CountSignatures(signed_msg), static_cast<int>(keys.size()));
    signatures += static_cast<int>(keys.size());
    const std::string path = dir.File("msg-" + std::to_string(1000 + n) + ".eml");
    WriteFileOrDie(path, signed_msg, 0644);
    files.push_back(path);
  }
  ASSERT_GE(files.size(), 200u);

  std::string log;
  EXPECT_EQ(RunDkimpy(verifiers, files, &log), signatures) << log;

  int checked = 0;
  std::string odlog;
  EXPECT_EQ(RunOpendkim(verifiers, dir, files, &checked, &odlog), 0) << odlog;
  EXPECT_EQ(checked, signatures);
  // Control: the verifiers do check. A changed Date field breaks every signature.
  std::vector<std::string> tampered;
  int tampered_sigs = 0;
  for (int n = 8; n < 16; ++n) {
    std::string msg = ReadFileOrDie(files[n]);
    const std::size_t date = msg.find("Date: Sat");
    ASSERT_NE(date, std::string::npos);
    msg.replace(date, 9, "Date: Sun");
    tampered_sigs += CountSignatures(msg);
    tampered.push_back(dir.File("tampered-" + std::to_string(n) + ".eml"));
    WriteFileOrDie(tampered.back(), msg, 0644);
  }
  EXPECT_EQ(RunDkimpy(verifiers, tampered, &log), 0) << log;
  int tampered_checked = 0;
  EXPECT_EQ(RunOpendkim(verifiers, dir, tampered, &tampered_checked, &odlog), tampered_sigs);
  EXPECT_EQ(tampered_checked, tampered_sigs);

  std::printf("verified %zu messages, %d signatures, with dkimpy and OpenDKIM\n", files.size(),
              signatures);
}

TEST(DkimCli, ErrorsAreOneClearLineWithTheRightExitCode) {
  TempDir dir;
  ProcessResult kg = RunProcess({SALVO_BINARY, "dkim", "keygen", "--domain", "example.com",
                                 "--selector", "s", "--type", "ed25519", "--out", dir.path()});
  ASSERT_EQ(kg.exit_code, 0) << kg.err;
  const std::string key = dir.File("s.example.com.pem");
  const std::string msg = "From: a@example.com\nSubject: hi\n\nbody\n";  // LF: converted

  ProcessResult ok = RunProcess({SALVO_BINARY, "dkim", "sign", "--key", key, "--domain",
                                 "example.com", "--selector", "s", "--time", "1700000000"},
                                msg);
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_NE(ok.out.find("t=1700000000;"), std::string::npos);
  EXPECT_NE(ok.out.find("\r\nFrom: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n"),
            std::string::npos);

  // Existing key: never overwritten.
  ProcessResult again = RunProcess({SALVO_BINARY, "dkim", "keygen", "--domain", "example.com",
                                    "--selector", "s", "--type", "ed25519", "--out", dir.path()});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("never overwritten"), std::string::npos) << again.err;

  // World-readable key: refused, naming the file and the fix.
  ::chmod(key.c_str(), 0644);
  ProcessResult open_key = RunProcess(
      {SALVO_BINARY, "dkim", "sign", "--key", key, "--domain", "example.com", "--selector", "s"},
      msg);
  EXPECT_EQ(open_key.exit_code, 1);
  EXPECT_NE(open_key.err.find("salvo: error: dkim sign: DKIM key s._domainkey.example.com: key "
                              "file " +
                              key + " is readable by others"),
            std::string::npos)
      << open_key.err;
  EXPECT_NE(open_key.err.find("chmod 600 " + key), std::string::npos);
  EXPECT_EQ(std::count(open_key.err.begin(), open_key.err.end(), '\n'), 1);
  ::chmod(key.c_str(), 0600);

  // Wrong type.
  ProcessResult wrong = RunProcess({SALVO_BINARY, "dkim", "sign", "--key", key, "--domain",
                                    "example.com", "--selector", "s", "--type", "rsa"},
                                   msg);
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_NE(wrong.err.find("configured as type rsa but the file holds an ed25519 key"),
            std::string::npos)
      << wrong.err;

  // Usage errors: exit 2.
  EXPECT_EQ(RunProcess({SALVO_BINARY, "dkim", "sign", "--key", key, "--domain", "example.com",
                        "--selector", "s", "--canon", "loose"},
                       msg)
                .exit_code,
            2);
  EXPECT_EQ(RunProcess({SALVO_BINARY, "dkim", "keygen", "--domain", "example.com", "--selector",
                        "t", "--type", "dsa", "--out", dir.path()})
                .exit_code,
            2);
  EXPECT_EQ(RunProcess({SALVO_BINARY, "dkim", "keygen", "--domain", "example.com", "--selector",
                        "t", "--bits", "512", "--out", dir.path()})
                .exit_code,
            2);
  EXPECT_EQ(RunProcess({SALVO_BINARY, "dkim", "sign", "--domain", "example.com"}, msg).exit_code,
            2);

  // A message the signer cannot sign: exit 1, saying why.
  ProcessResult no_from = RunProcess(
      {SALVO_BINARY, "dkim", "sign", "--key", key, "--domain", "example.com", "--selector", "s"},
      "Subject: hi\n\nbody\n");
  EXPECT_EQ(no_from.exit_code, 1);
  EXPECT_NE(no_from.err.find("no From header field"), std::string::npos) << no_from.err;
}

}  // namespace
}  // namespace salvo::dkim
