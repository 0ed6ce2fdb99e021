#!/usr/bin/env bash
# Builds BUILD/skylab_<version>_<arch>.deb from a built tree (`make deb`):
# stages `scripts/install.sh` with Debian's paths, adds packaging/debian's
# control file (shared-library Depends from dpkg-shlibdeps, runtime Depends
# as scripts/setup.sh installs them), conffiles and maintainer scripts, and
# builds with dpkg-deb (files owned by root). Prints the .deb's path.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
BUILD=$(cd "$BUILD" && pwd)

version=$("$BUILD/skylab" --version | awk '{print $2}')
[[ "$version" =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || { echo "make_deb: bad version '$version'" >&2; exit 1; }
arch=$(dpkg --print-architecture)
stage="$BUILD/deb/skylab_${version}_${arch}"
rm -rf "$stage"
mkdir -p "$stage"
DESTDIR="$stage" PREFIX=/usr SYSCONFDIR=/etc LOCALSTATEDIR=/var UNITDIR=/lib/systemd/system \
  bash scripts/install.sh "$BUILD" >/dev/null
# Debug information stays in the build tree (130 MB of it).
strip --strip-debug "$stage/usr/bin/skylab"

# Shared libraries the binary links: package names with the versions
# dpkg-shlibdeps derives from the symbols files of this machine.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/debian"
printf 'Source: skylab\n\nPackage: skylab\nArchitecture: any\n' > "$tmp/debian/control"
(cd "$tmp" && dpkg-shlibdeps -O "$stage/usr/bin/skylab" 2>/dev/null) > "$tmp/shlibs"
shlibs=$(sed -n 's/^shlibs:Depends=//p' "$tmp/shlibs")
[ -n "$shlibs" ] || { echo "make_deb: dpkg-shlibdeps found no libraries" >&2; exit 1; }

size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
install -d -m 0755 "$stage/DEBIAN"
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@SIZE@|$size|" -e "s|@SHLIBS@|$shlibs|" \
  packaging/debian/control.in > "$stage/DEBIAN/control"
install -m 0644 packaging/debian/conffiles "$stage/DEBIAN/conffiles"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$stage/DEBIAN/"
(cd "$stage" && find . \( -path ./DEBIAN -o -path ./etc \) -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) \
  > "$stage/DEBIAN/md5sums"
out="$BUILD/skylab_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$out" >/dev/null
echo "$out"
