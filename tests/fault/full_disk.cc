#include "tests/fault/full_disk.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>

#include <libpq-fe.h>

#include "absl/strings/str_cat.h"
#include "tools/pgserver/test_postgres.h"
#include "tools/pgserver/throwaway_postgres.h"

namespace cellar::fault {
namespace {

// Runs one SQL command on the server of `conninfo`.
absl::Status Exec(const std::string& conninfo, const std::string& sql) {
  PGconn* conn = PQconnectdb(conninfo.c_str());
  absl::Status status;
  if (PQstatus(conn) != CONNECTION_OK) {
    status = absl::UnavailableError(PQerrorMessage(conn));
  } else {
    PGresult* r = PQexec(conn, sql.c_str());
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      status = absl::InternalError(absl::StrCat(sql, ": ", PQresultErrorMessage(r)));
    }
    PQclear(r);
  }
  PQfinish(conn);
  return status;
}

std::string FillerPath(const std::string& dir) { return dir + "/filler"; }

}  // namespace

std::unique_ptr<FullDisk> FullDisk::Create(const std::string& backend, const std::string& size,
                                           std::string* why) {
  static std::atomic<int> counter{0};
  std::unique_ptr<FullDisk> disk(new FullDisk);
  char templ[] = "/tmp/cellar-full-XXXXXX";
  if (mkdtemp(templ) == nullptr) {
    *why = absl::StrCat("mkdtemp: ", strerror(errno));
    return nullptr;
  }
  disk->dir_ = templ;
  const std::string data = absl::StrCat("size=", size, ",mode=0777");
  if (mount("tmpfs", disk->dir_.c_str(), "tmpfs", 0, data.c_str()) != 0) {
    *why = absl::StrCat("needs a tmpfs (root, CAP_SYS_ADMIN) and cannot mount one: mount -t "
                        "tmpfs -o ",
                        data, " ", disk->dir_, ": ", strerror(errno));
    return nullptr;
  }
  disk->mounted_ = true;
  if (backend == "sqlite") {
    disk->backend_ = absl::StrCat("sqlite://", disk->dir_, "/storage.db");
    return disk;
  }
  absl::StatusOr<std::string> admin = tools::TestPostgresConninfo();
  if (!admin.ok()) {
    *why = admin.status().ToString();
    return nullptr;
  }
  disk->admin_conninfo_ = *admin;
  const std::string location = disk->dir_ + "/pg";
  if (mkdir(location.c_str(), 0700) != 0) {
    *why = absl::StrCat("mkdir ", location, ": ", strerror(errno));
    return nullptr;
  }
  if (getuid() == 0) {
    struct passwd* pw = getpwnam("postgres");
    if (pw == nullptr || chown(location.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      *why = absl::StrCat("chown postgres ", location, " failed");
      return nullptr;
    }
  }
  const int n = counter++;
  const std::string tablespace = absl::StrCat("fault_full_", getpid(), "_", n);
  if (absl::Status s = Exec(disk->admin_conninfo_, absl::StrCat("CREATE TABLESPACE ", tablespace,
                                                                " LOCATION '", location, "'"));
      !s.ok()) {
    *why = absl::StrCat(
        "cannot create a tablespace on the tmpfs (is the test PostgreSQL server on this "
        "machine?): ",
        s.message());
    return nullptr;
  }
  disk->tablespace_ = tablespace;
  const std::string database = absl::StrCat("fault_full_", getpid(), "_", n, "_db");
  tools::DropPostgresDatabase(disk->admin_conninfo_, database).IgnoreError();
  if (absl::Status s = Exec(disk->admin_conninfo_, absl::StrCat("CREATE DATABASE ", database,
                                                                " TABLESPACE ", tablespace));
      !s.ok()) {
    *why = s.ToString();
    return nullptr;
  }
  disk->database_ = database;
  absl::StatusOr<std::string> conninfo =
      tools::ConninfoWithDatabase(disk->admin_conninfo_, database);
  if (!conninfo.ok()) {
    *why = conninfo.status().ToString();
    return nullptr;
  }
  disk->backend_ = *conninfo;
  return disk;
}

FullDisk::~FullDisk() {
  Free();
  if (!database_.empty()) tools::DropPostgresDatabase(admin_conninfo_, database_).IgnoreError();
  if (!tablespace_.empty()) {
    Exec(admin_conninfo_, absl::StrCat("DROP TABLESPACE IF EXISTS ", tablespace_)).IgnoreError();
  }
  if (mounted_) umount2(dir_.c_str(), MNT_DETACH);
  if (!dir_.empty()) rmdir(dir_.c_str());
}

absl::Status FullDisk::Fill() {
  const std::string path = FillerPath(dir_);
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::InternalError(absl::StrCat("open ", path, ": ", strerror(errno)));
  std::string chunk(64 << 10, 'x');
  for (size_t size = chunk.size(); size >= 512;) {
    const ssize_t n = write(fd, chunk.data(), size);
    if (n < 0 && errno == ENOSPC) {
      size /= 2;  // fill the last bytes too
    } else if (n < 0) {
      const int e = errno;
      close(fd);
      return absl::InternalError(absl::StrCat("write ", path, ": ", strerror(e)));
    }
  }
  fsync(fd);
  close(fd);
  return absl::OkStatus();
}

void FullDisk::Free() { unlink(FillerPath(dir_).c_str()); }

}  // namespace cellar::fault
