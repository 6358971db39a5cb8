#include "dkim/alignment.h"

#include <openssl/evp.h>

#include "gtest/gtest.h"

namespace salvo::dkim {
namespace {

TEST(DkimAlignment, FromDomain) {
  EXPECT_EQ(*FromDomain("Joe <joe@Mail.Example.COM>"), "mail.example.com");
  EXPECT_EQ(*FromDomain("joe@example.org"), "example.org");
  EXPECT_EQ(*FromDomain(" \"Shop, Inc\" <news@shop.example.co.uk> "), "shop.example.co.uk");
  EXPECT_EQ(*FromDomain("news@example.com (Newsletter)"), "example.com");
  EXPECT_FALSE(FromDomain("no address here").ok());
  EXPECT_FALSE(FromDomain("<user@localhost>").ok());
}

TEST(DkimAlignment, OrganizationalDomain) {
  EXPECT_EQ(OrganizationalDomain("example.com"), "example.com");
  EXPECT_EQ(OrganizationalDomain("a.b.Example.com"), "example.com");
  EXPECT_EQ(OrganizationalDomain("mail.example.co.uk"), "example.co.uk");
  EXPECT_EQ(OrganizationalDomain("example.co.uk"), "example.co.uk");
  EXPECT_EQ(OrganizationalDomain("news.shop.com.au"), "shop.com.au");
}

// The real Public Suffix List (libpsl), not a hand-made list: multi-label
// ICANN suffixes beyond the 40 the old table knew, wildcard rules, and the
// private section (a customer's subdomain of a hosting provider is its own
// organisation, so mail from it must not align with the provider's key).
TEST(DkimAlignment, OrganizationalDomainUsesThePublicSuffixList) {
  EXPECT_EQ(OrganizationalDomain("mail.shop.co.uk"), "shop.co.uk");
  EXPECT_EQ(OrganizationalDomain("news.brand.gov.uk"), "brand.gov.uk");
  EXPECT_EQ(OrganizationalDomain("a.b.city.kawasaki.jp"), "city.kawasaki.jp");  // exception rule
  EXPECT_EQ(OrganizationalDomain("x.y.example.kawasaki.jp"),
            "y.example.kawasaki.jp");  // *.kawasaki.jp
  EXPECT_EQ(OrganizationalDomain("shop.example.com.de"), "example.com.de");
  // Private section: blogspot.com and github.io are public suffixes.
  EXPECT_EQ(OrganizationalDomain("news.acme.github.io"), "acme.github.io");
  EXPECT_EQ(OrganizationalDomain("mail.myblog.blogspot.com"), "myblog.blogspot.com");
  // A public suffix itself has no registrable domain: itself.
  EXPECT_EQ(OrganizationalDomain("co.uk"), "co.uk");
}

TEST(DkimAlignment, PrivateSuffixKeysDoNotAlignAcrossCustomers) {
  KeyStore store;
  DkimKey k;
  k.domain = "acme.github.io";
  k.selector = "s";
  k.pkey.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  k.type = KeyType::kEd25519;
  ASSERT_TRUE(store.Add(std::move(k)).ok());
  // A subdomain of acme.github.io aligns with acme's key ...
  auto own = SelectKeysForFrom(store, "news@mail.acme.github.io");
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_EQ((*own)[0]->domain, "acme.github.io");
  // ... another github.io customer does not: github.io is a public suffix.
  EXPECT_FALSE(SelectKeysForFrom(store, "news@evil.github.io").ok());
}

DkimKey FakeKey(std::string domain, std::string selector) {
  DkimKey k;
  k.domain = std::move(domain);
  k.selector = std::move(selector);
  k.pkey.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  k.type = KeyType::kEd25519;
  return k;
}

TEST(DkimAlignment, SelectKeysForFrom) {
  KeyStore store;
  ASSERT_TRUE(store.Add(FakeKey("example.com", "rsa")).ok());
  ASSERT_TRUE(store.Add(FakeKey("example.com", "ed")).ok());
  ASSERT_TRUE(store.Add(FakeKey("mail.shop.net", "s")).ok());
  auto exact = SelectKeysForFrom(store, "News <news@example.com>");
  ASSERT_TRUE(exact.ok());
  EXPECT_EQ(exact->size(), 2u);  // dual signing
  auto parent = SelectKeysForFrom(store, "news@bulk.mail.example.com");
  ASSERT_TRUE(parent.ok());
  EXPECT_EQ((*parent)[0]->domain, "example.com");
  auto sub = SelectKeysForFrom(store, "x@mail.shop.net");
  ASSERT_TRUE(sub.ok());
  // shop.net's org domain has no key, and a sibling subdomain's key is not used.
  auto none = SelectKeysForFrom(store, "Shop <x@shop.net>");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(none.status().message(),
            "no DKIM key for From domain shop.net (configured: example.com, mail.shop.net)");
  auto other = SelectKeysForFrom(store, "a@example.org");
  EXPECT_FALSE(other.ok());
}

}  // namespace
}  // namespace salvo::dkim
