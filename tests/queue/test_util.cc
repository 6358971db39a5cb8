#include "tests/queue/test_util.h"

#include <rocksdb/db.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "gtest/gtest.h"

namespace salvo::queue::testing {

TempDir::TempDir() {
  const char* base = getenv("TMPDIR");
  std::string tmpl = std::string(base != nullptr ? base : "/tmp") + "/salvo-queue-test-XXXXXX";
  char* p = mkdtemp(tmpl.data());
  if (p == nullptr) ADD_FAILURE() << "mkdtemp failed";
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::Write(const std::string& name, const std::string& content) const {
  std::string p = File(name);
  std::ofstream out(p, std::ios::binary);
  out << content;
  return p;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Dump DumpSpool(const std::string& dir) {
  Dump dump;
  std::vector<std::string> names;
  rocksdb::Status s = rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir, &names);
  if (!s.ok()) {
    ADD_FAILURE() << "ListColumnFamilies: " << s.ToString();
    return dump;
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (const auto& n : names) cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  s = rocksdb::DB::OpenForReadOnly(rocksdb::DBOptions(), dir, cfs, &handles, &db);
  if (!s.ok()) {
    ADD_FAILURE() << "OpenForReadOnly: " << s.ToString();
    return dump;
  }
  for (size_t i = 0; i < handles.size(); ++i) {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), handles[i]));
    auto& rows = dump[names[i]];
    for (it->SeekToFirst(); it->Valid(); it->Next())
      rows.emplace_back(it->key().ToString(), it->value().ToString());
  }
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  delete db;
  return dump;
}

RunResult Run(const std::string& command, int timeout_seconds) {
  TempDir tmp;
  std::string out = tmp.File("out"), err = tmp.File("err");
  std::string full = "timeout -s KILL " + std::to_string(timeout_seconds) + " sh -c '" + command +
                     "' > " + out + " 2> " + err + " < /dev/null";
  int rc = std::system(full.c_str());
  RunResult r;
  r.exit_code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.out = ReadFile(out);
  r.err = ReadFile(err);
  return r;
}

Child::Child(const std::vector<std::string>& argv, const std::string& log_path) {
  pid_ = fork();
  if (pid_ == 0) {
    FILE* log = std::fopen(log_path.c_str(), "w");
    if (log != nullptr) {
      dup2(fileno(log), 1);
      dup2(fileno(log), 2);
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
}

Child::~Child() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

void Child::Signal(int sig) {
  if (pid_ > 0) kill(pid_, sig);
}

int Child::Wait(double seconds) {
  if (pid_ <= 0) return -1;
  for (int i = 0; i < static_cast<int>(seconds * 100); ++i) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return status;
    }
    usleep(10000);
  }
  return -1;
}

}  // namespace salvo::queue::testing
