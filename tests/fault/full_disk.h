#ifndef CELLAR_TESTS_FAULT_FULL_DISK_H_
#define CELLAR_TESTS_FAULT_FULL_DISK_H_

// A storage backend on a small tmpfs that a test can fill up (testonly):
// SQLite: the database file on the tmpfs; PostgreSQL: a database of the
// test server in a tablespace on the tmpfs (the server must run on this
// machine). Needs root for mount(2).
//
//   std::string why;
//   auto disk = FullDisk::Create("sqlite", "16m", &why);
//   if (disk == nullptr) GTEST_SKIP() << why;
//   topology.storage_backends = {"", "", disk->backend()};
//   ... start the cluster ...
//   disk->Fill();  ... disk->Free();
//   // stop the cluster before ~FullDisk (it drops the database, the
//   // tablespace and unmounts).

#include <memory>
#include <string>

#include "absl/status/status.h"

namespace cellar::fault {

class FullDisk {
 public:
  // nullptr with the reason in *why if the tmpfs can't be mounted (no
  // root) or the tablespace can't be made there.
  static std::unique_ptr<FullDisk> Create(const std::string& backend, const std::string& size,
                                          std::string* why);
  ~FullDisk();
  FullDisk(const FullDisk&) = delete;
  FullDisk& operator=(const FullDisk&) = delete;

  // Backend URI / libpq string for the storage on this disk.
  const std::string& backend() const { return backend_; }
  const std::string& dir() const { return dir_; }

  // Writes a filler file until the file system is full (its last bytes
  // too). INTERNAL on an error other than ENOSPC.
  absl::Status Fill();
  // Deletes the filler file.
  void Free();

 private:
  FullDisk() = default;

  std::string dir_;
  bool mounted_ = false;
  std::string backend_;
  std::string admin_conninfo_;
  std::string tablespace_;
  std::string database_;
};

}  // namespace cellar::fault

#endif  // CELLAR_TESTS_FAULT_FULL_DISK_H_
