#pragma once
// A private Postfix instance for tests (needs root and postfix): its own
// config, queue and data folders under the caller's folder, smtpd on
// 127.0.0.1:<free port> with STARTTLS (the caller's certificate), delivery by
// virtual(8) into Maildirs under <root>/vmail (uid/gid 65534), its log in
// <root>/maillog. Optionally SMTP AUTH required (Cyrus SASL, PLAIN and LOGIN,
// only after STARTTLS) against a sasldb made with saslpasswd2.
//
// Debian's Postfix reads the Cyrus configuration from
// <config_directory>/sasl/smtpd.conf (then /usr/lib/sasl) and ignores
// cyrus_sasl_config_path: a smtpd.conf anywhere else is never read, and the
// library falls back to /etc/sasldb2. smtpd reads smtpd.conf at start (as
// root) but opens the sasldb at each AUTH, after dropping to mail_owner: the
// sasldb is readable by the postfix group and every folder above it is
// searchable (as for the master's lock file in data_directory).
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/support/files.h"
#include "tests/support/ports.h"
#include "tests/support/process.h"

namespace salvo::testsupport {

class PrivatePostfix {
 public:
  struct Options {
    std::string cert_file, key_file;  // PEM, for STARTTLS
    std::string domains;              // virtual_mailbox_domains
    // Each address delivered to the Maildir <root>/vmail/<box>/.
    std::vector<std::pair<std::string, std::string>> mailboxes;  // address, box
    // Who may send: main.cf lines (mynetworks, smtpd_*_restrictions). With
    // sasl_user set, only authenticated clients may (these are ignored).
    std::string access =
        "mynetworks = 127.0.0.0/8\n"
        "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n";
    std::string sasl_user, sasl_password;  // non-empty: AUTH required
  };

  // Why a private instance cannot run here, "" when it can. With `sasl`,
  // also saslpasswd2 (sasl2-bin) and the PLAIN and sasldb plugins
  // (libsasl2-modules, libsasl2-modules-db).
  static std::string Unavailable(bool sasl = false) {
    if (geteuid() != 0) return "needs root to run a private Postfix instance";
    if (access("/usr/sbin/postfix", X_OK) != 0)
      return "postfix is not installed (deploy/bootstrap.sh test)";
    if (!sasl) return "";
    if (Which("saslpasswd2").empty())
      return "saslpasswd2 is not installed (sasl2-bin, deploy/bootstrap.sh test)";
    if (!HasSaslPlugin("libplain.so"))
      return "the Cyrus SASL PLAIN plugin is not installed (libsasl2-modules, deploy/bootstrap.sh "
             "test)";
    if (!HasSaslPlugin("libsasldb.so"))
      return "the Cyrus SASL sasldb plugin is not installed (libsasl2-modules-db)";
    return "";
  }

  // `root` must exist and its parents be searchable by everyone (a TempDir
  // of its own: root is made 0711); the instance's folders are made in it.
  explicit PrivatePostfix(std::string root) : root_(std::move(root)) {}
  ~PrivatePostfix() { Stop(); }
  PrivatePostfix(const PrivatePostfix&) = delete;
  PrivatePostfix& operator=(const PrivatePostfix&) = delete;

  // Writes the configuration and starts Postfix; "" once smtpd accepts
  // connections (bounded wait), else why, with the log.
  std::string Start(const Options& o) {
    const std::string& t = root_;
    for (const char* d : {"conf", "conf/sasl", "queue", "data", "vmail"})
      std::filesystem::create_directories(t + "/" + d);
    // smtpd (as postfix) and virtual (as 65534) go through the root folder.
    chmod(t.c_str(), 0711);
    chmod((t + "/conf").c_str(), 0755);
    chmod((t + "/conf/sasl").c_str(), 0755);
    RunResult own =
        RunShell("chown postfix '" + t + "/data' && chown 65534:65534 '" + t + "/vmail' 2>&1");
    if (own.code != 0) return "chown failed: " + own.out;
    port_ = FreePort();
    std::string maps;
    for (const auto& [address, box] : o.mailboxes)
      maps += (maps.empty() ? "{" : ", {") + address + "=" + box + "/}";
    std::string main_cf =
        "compatibility_level = 3.6\n"
        "queue_directory = " +
        t + "/queue\ndata_directory = " + t +
        "/data\n"
        "mail_owner = postfix\nsetgid_group = postdrop\n"
        "myhostname = postfix.test\nmydomain = postfix.test\nmyorigin = postfix.test\n"
        "mydestination =\ninet_interfaces = 127.0.0.1\ninet_protocols = ipv4\n"
        "maillog_file = " +
        t + "/maillog\nmaillog_file_prefixes = " + t +
        "\n"
        "smtputf8_enable = yes\n"
        "virtual_mailbox_domains = " +
        o.domains + "\nvirtual_mailbox_base = " + t +
        "/vmail\n"
        "virtual_mailbox_maps = inline:{ " +
        maps +
        " }\n"
        "virtual_uid_maps = static:65534\nvirtual_gid_maps = static:65534\n"
        "virtual_minimum_uid = 100\n"
        "smtpd_tls_cert_file = " +
        o.cert_file + "\nsmtpd_tls_key_file = " + o.key_file +
        "\n"
        "smtpd_tls_security_level = may\n"
        "local_header_rewrite_clients =\nenable_original_recipient = no\n"
        "alias_maps =\nalias_database =\nbiff = no\n"
        "smtpd_banner = $myhostname ESMTP\n";
    if (o.sasl_user.empty()) {
      main_cf += o.access;
    } else {
      std::string error = WriteSasl(o.sasl_user, o.sasl_password);
      if (!error.empty()) return error;
      main_cf +=
          "mynetworks =\n"
          "smtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = cyrus\nsmtpd_sasl_path = smtpd\n"
          "smtpd_sasl_local_domain = postfix.test\nsmtpd_sasl_security_options = noanonymous\n"
          "smtpd_tls_auth_only = yes\n"
          "smtpd_relay_restrictions = permit_sasl_authenticated, reject\n"
          "smtpd_recipient_restrictions = permit_sasl_authenticated, reject\n";
    }
    WriteFile(t + "/conf/main.cf", main_cf);
    WriteFile(t + "/conf/master.cf", "127.0.0.1:" + std::to_string(port_) +
                                         " inet n - n - - smtpd\n"
                                         "cleanup unix n - n - 0 cleanup\n"
                                         "qmgr unix n - n 300 1 qmgr\n"
                                         "tlsmgr unix - - n 1000? 1 tlsmgr\n"
                                         "rewrite unix - - n - - trivial-rewrite\n"
                                         "bounce unix - - n - 0 bounce\n"
                                         "defer unix - - n - 0 bounce\n"
                                         "trace unix - - n - 0 bounce\n"
                                         "verify unix - - n - 1 verify\n"
                                         "flush unix n - n 1000? 0 flush\n"
                                         "proxymap unix - - n - - proxymap\n"
                                         "smtp unix - - n - - smtp\n"
                                         "relay unix - - n - - smtp\n"
                                         "showq unix n - n - - showq\n"
                                         "error unix - - n - - error\n"
                                         "retry unix - - n - - error\n"
                                         "discard unix - - n - - discard\n"
                                         "local unix - n n - - local\n"
                                         "virtual unix - n n - - virtual\n"
                                         "anvil unix - - n - 1 anvil\n"
                                         "scache unix - - n - 1 scache\n"
                                         "postlog unix-dgram n - n - 1 postlogd\n");
    started_ = true;
    RunResult start = RunShell("/usr/sbin/postfix -c '" + t + "/conf' start 2>&1");
    if (start.code != 0) return "postfix start failed: " + start.out + Log();
    const bool up = WaitFor([&] { return Accepts(); }, std::chrono::seconds(10));
    if (!up) return "postfix smtpd did not listen on " + std::to_string(port_) + "\n" + Log();
    return "";
  }

  // Stops the instance (bounded; the master is killed if `stop` fails).
  void Stop() {
    if (!started_) return;
    started_ = false;
    RunShell("/usr/sbin/postfix -c '" + root_ + "/conf' stop 2>&1", std::chrono::seconds(30));
    const int pid = atoi(ReadFile(root_ + "/queue/pid/master.pid").c_str());
    if (pid <= 0) return;
    if (!WaitFor([&] { return kill(pid, 0) != 0; }, std::chrono::seconds(5))) kill(pid, SIGKILL);
  }

  int port() const { return port_; }
  std::string hostport() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string Log() const { return ReadFile(root_ + "/maillog"); }

  // The messages in the Maildir `box` (new/), waiting (bounded) until there
  // are at least `count`.
  std::vector<std::string> WaitForMail(
      const std::string& box, size_t count,
      std::chrono::milliseconds timeout = std::chrono::seconds(15)) const {
    std::vector<std::string> found;
    WaitFor(
        [&] {
          found.clear();
          std::error_code ec;
          for (const auto& f :
               std::filesystem::directory_iterator(root_ + "/vmail/" + box + "/new", ec))
            found.push_back(ReadFile(f.path().string()));
          return found.size() >= count;
        },
        timeout);
    return found;
  }

 private:
  static bool HasSaslPlugin(const std::string& name) {
    std::error_code ec;
    if (std::filesystem::exists("/usr/lib/sasl2/" + name, ec)) return true;
    for (const auto& d : std::filesystem::directory_iterator("/usr/lib", ec))
      if (std::filesystem::exists(d.path() / "sasl2" / name, ec)) return true;
    return false;
  }

  // conf/sasl/smtpd.conf and the sasldb with one user (realm postfix.test).
  std::string WriteSasl(const std::string& user, const std::string& password) {
    const std::string sasldb = root_ + "/conf/sasl/sasldb2";
    WriteFile(root_ + "/conf/sasl/smtpd.conf",
              "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\n"
              "sasldb_path: " +
                  sasldb + "\n");
    RunResult made = RunWithInput(
        {Which("saslpasswd2"), "-p", "-c", "-f", sasldb, "-u", "postfix.test", user}, password);
    if (made.code != 0) return "saslpasswd2 failed: " + made.out + made.err;
    // root:postfix 0640 (postfix-script warns about files in the config
    // folder that root does not own).
    const passwd* pw = getpwnam("postfix");
    if (pw == nullptr || chown(sasldb.c_str(), 0, pw->pw_gid) != 0 ||
        chmod(sasldb.c_str(), 0640) != 0)
      return "cannot make " + sasldb + " readable by the postfix group";
    return "";
  }

  bool Accepts() const {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port_));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    close(fd);
    return ok;
  }

  std::string root_;
  int port_ = 0;
  bool started_ = false;
};

}  // namespace salvo::testsupport
