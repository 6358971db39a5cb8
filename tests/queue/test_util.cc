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
#include "tests/support/files.h"

namespace salvo::queue::testing {

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

}  // namespace salvo::queue::testing
