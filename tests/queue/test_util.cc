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
  testsupport::RunResult r = testsupport::RunShell(command, std::chrono::seconds(timeout_seconds));
  return RunResult{r.code >= 0 && r.code < 128 ? r.code : -1, std::move(r.out), std::move(r.err)};
}

}  // namespace salvo::queue::testing
