#include "queue/address.h"

#include "gtest/gtest.h"

namespace salvo::queue {
namespace {

TEST(AddressTest, AcceptsRfc5321Mailboxes) {
  for (const char* ok :
       {"alice@example.com", "Alice.Smith+tag@Sub.Example.COM", "a!#$%&'*+/=?^_`{|}~-@example.org",
        "\"john doe\"@example.com", "\"a\\\"b\"@example.com", "user@[192.0.2.1]",
        "user@[IPv6:2001:db8::1]", "  padded@example.com  ", "josé@exämple.de", "用户@例子.广告",
        "x@xn--bcher-kva.example"}) {
    EXPECT_TRUE(ParseAddress(ok).ok()) << ok << ": " << ParseAddress(ok).status();
  }
}

TEST(AddressTest, RejectsBadSyntaxWithAReason) {
  struct Case {
    const char* text;
    const char* why;
  };
  for (const Case& c : std::vector<Case>{
           {"", "empty address"},
           {"plainaddress", "no '@'"},
           {"@example.com", "empty local part"},
           {"user@", "empty domain"},
           {"a..b@example.com", "empty atom"},
           {".a@example.com", "empty atom"},
           {"a.@example.com", "ends with a dot"},
           {"a b@example.com", "not allowed in local part"},
           {"a@b@example.com", "more than one '@'"},
           {"user@localhost", "no dot"},
           {"user@-bad.example", "starts or ends with '-'"},
           {"user@exa_mple.com", "not allowed in domain"},
           {"user@example..com", "empty label"},
           {"user@[300.1.1.1]", "bad address literal"},
           {"\"unterminated@example.com", "unterminated quoted local part"},
           {"user@example.com\xff", "not valid UTF-8"},
       }) {
    absl::StatusOr<Address> a = ParseAddress(c.text);
    ASSERT_FALSE(a.ok()) << c.text;
    EXPECT_NE(a.status().message().find(c.why), std::string::npos)
        << c.text << " -> " << a.status().message();
  }
  EXPECT_FALSE(ParseAddress(std::string(65, 'a') + "@example.com").ok());
  EXPECT_FALSE(ParseAddress("a@" + std::string(64, 'b') + ".com").ok());
}

// Issue 15 item 6: sent as written, compared lower-cased (the local part
// too unless case-sensitive).
TEST(AddressTest, SentAsWrittenComparedOnALowerCasedKey) {
  absl::StatusOr<Address> a = ParseAddress("Bob@EXAMPLE.Com");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->Mailbox(), "Bob@example.com");
  EXPECT_EQ(a->Normalized(), "bob@example.com");
  EXPECT_EQ(a->Key(/*case_sensitive_local=*/true), "Bob@example.com");
  EXPECT_EQ(MailboxKey("Bob@example.com"), "bob@example.com");
  // Quoted local parts fold their ASCII letters too; UTF-8 is left alone.
  EXPECT_EQ(ParseAddress("\"Ann Lee\"@x.example")->Normalized(), "\"ann lee\"@x.example");
  EXPECT_EQ(ParseAddress("\xc3\x84ke@x.example")->Normalized(), "\xc3\x84ke@x.example");
}

// Internationalised domains reach DNS and RCPT TO in A-label form.
TEST(AddressTest, InternationalisedDomainsBecomeALabels) {
  absl::StatusOr<Address> a = ParseAddress(
      "user@b\xc3\xbc"
      "cher.example");  // bücher.example
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->domain, "xn--bcher-kva.example");
  EXPECT_EQ(a->Mailbox(), "user@xn--bcher-kva.example");
  // Upper-case U-labels map to the same domain (UTS #46).
  absl::StatusOr<Address> b = ParseAddress(
      "user@B\xc3\x9c"
      "CHER.example");  // BÜCHER.example
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->domain, "xn--bcher-kva.example");
  // A non-ASCII local part stays as written (SMTPUTF8 then).
  absl::StatusOr<Address> c = ParseAddress("j\xc3\xb6rg@m\xc3\xbcller.example");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->Mailbox(), "j\xc3\xb6rg@xn--mller-kva.example");
  // Not valid IDNA2008 (a disallowed code point): refused with the reason.
  absl::StatusOr<Address> bad = ParseAddress("user@\xe2\x98\x83.example");  // U+2603 snowman
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("IDNA2008"), std::string::npos) << bad.status();
}

TEST(AddressTest, Utf8Validation) {
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xe2\x82"));          // truncated
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // > U+10FFFF
}

}  // namespace
}  // namespace salvo::queue
