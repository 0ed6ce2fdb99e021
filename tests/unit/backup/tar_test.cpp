// The backup archive's tar layer: what TarWriter writes TarReader reads back
// (long paths, large ids, extended attributes); what it does not write it refuses.
#include "backup/tar.hpp"

#include <gtest/gtest.h>
#include <stdio.h>
#include <unistd.h>

#include <cstring>
#include <string>

namespace skylab::backup {
namespace {

// A temporary file holding `bytes`, rewound; closed by the caller.
int temp_with(const std::string& bytes) {
  FILE* f = tmpfile();
  int fd = dup(fileno(f));
  fclose(f);
  EXPECT_EQ(write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  lseek(fd, 0, SEEK_SET);
  return fd;
}

std::string read_all(int fd) {
  lseek(fd, 0, SEEK_SET);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  return out;
}

std::string archive_of(const TarEntry& e, const std::string& content) {
  int fd = temp_with("");
  TarWriter w(fd);
  EXPECT_TRUE(w.add_bytes(e, content).ok());
  EXPECT_TRUE(w.finish().ok());
  std::string bytes = read_all(fd);
  close(fd);
  return bytes;
}

TEST(Tar, RoundTripKeepsLongPathsOwnersModesAndXattrs) {
  TarEntry e;
  e.path = "data/drive/" + std::string(180, 'n') + "/f\xc3\xa9.txt";
  e.mode = 0640;
  e.uid = 200123;
  e.gid = 4000000000u;
  e.mtime = 1700000000;
  e.xattrs["trusted.skylab.id"] = "0123abcd";
  std::string bytes = archive_of(e, "hello");
  ASSERT_EQ(bytes.size() % 512, 0u);
  int fd = temp_with(bytes);
  TarReader r(fd);
  TarEntry got;
  auto more = r.next(got);
  ASSERT_TRUE(more.ok()) << more.error().message;
  ASSERT_TRUE(more.value());
  EXPECT_EQ(got.path, e.path);
  EXPECT_EQ(got.kind, EntryKind::kFile);
  EXPECT_EQ(got.size, 5u);
  EXPECT_EQ(got.mode, 0640u);
  EXPECT_EQ(got.uid, 200123u);
  EXPECT_EQ(got.gid, 4000000000u);
  EXPECT_EQ(got.mtime, 1700000000);
  EXPECT_EQ(got.xattrs["trusted.skylab.id"], "0123abcd");
  std::string content;
  ASSERT_TRUE(r.read_content([&](const char* p, std::size_t n) {
                 content.append(p, n);
                 return ok_status();
               }).ok());
  EXPECT_EQ(content, "hello");
  more = r.next(got);
  ASSERT_TRUE(more.ok());
  EXPECT_FALSE(more.value());
  close(fd);
}

Result<bool> first_entry(const std::string& bytes) {
  int fd = temp_with(bytes);
  TarReader r(fd, 4096);
  TarEntry e;
  auto out = r.next(e);
  close(fd);
  return out;
}

// Re-computes the ustar checksum of the header at `off` after an edit.
void fix_checksum(std::string& b, std::size_t off) {
  unsigned sum = 0;
  for (std::size_t i = 0; i < 512; ++i)
    sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(b[off + i]);
  char field[8];
  std::snprintf(field, sizeof field, "%06o", sum);
  std::memcpy(&b[off + 148], field, 7);
  b[off + 155] = ' ';
}

TEST(Tar, RefusesLinksDevicesAndGlobalHeaders) {
  TarEntry e;
  e.path = "data/x";
  std::string good = archive_of(e, "x");
  // Header 0 is the pax header (1 block of records), the entry's header is block 2.
  for (char type : {'1', '2', '3', '4', '6', '7', 'g', 'L'}) {
    std::string b = good;
    b[1024 + 156] = type;
    fix_checksum(b, 1024);
    auto r = first_entry(b);
    EXPECT_FALSE(r.ok()) << type;
  }
  EXPECT_TRUE(first_entry(good).ok());
}

TEST(Tar, RefusesDamagedHeadersAndRecords) {
  TarEntry e;
  e.path = "data/x";
  std::string good = archive_of(e, "x");
  std::string b = good;
  b[1024 + 3] ^= 1;  // a flipped bit: checksum mismatch
  EXPECT_FALSE(first_entry(b).ok());
  // A pax record whose length runs past the header.
  b = good;
  b[512] = '9';
  b[513] = '9';
  EXPECT_FALSE(first_entry(b).ok());
  // A pax header larger than the reader allows.
  TarEntry big = e;
  big.xattrs["user.skylab.x"] = std::string(8000, 'a');
  EXPECT_FALSE(first_entry(archive_of(big, "x")).ok());
  // Cut short.
  EXPECT_FALSE(first_entry(good.substr(0, 1024 + 100)).ok());
  // A size that is not octal.
  b = good;
  std::memcpy(&b[1024 + 124], "0000000009x", 11);
  fix_checksum(b, 1024);
  EXPECT_FALSE(first_entry(b).ok());
}

}  // namespace
}  // namespace skylab::backup
