#!/usr/bin/env bash
# Lays out an installed Skylab (`make install`, `make deb`) from a build tree.
#   scripts/install.sh BUILD
# Environment (as make passes it): DESTDIR (staging root, default none),
# PREFIX (/usr/local), SYSCONFDIR (/etc), LOCALSTATEDIR (/var),
# UNITDIR ($PREFIX/lib/systemd/system).
# Layout (what `skylab serve` looks for beside BIN/skylab, see
# src/cli/runtime_setup.hpp):
#   $PREFIX/bin/skylab
#   $PREFIX/share/skylab/web        the browser app (index.html, static/)
#   $PREFIX/share/skylab/examples   the example gallery
#   $PREFIX/lib/skylab/python       the runtime helpers (mounted at /opt/skylab/python)
#   $PREFIX/share/doc/skylab        docs/*.md
#   $UNITDIR/skylab.service, $UNITDIR/skylab-runtimes.service
#   $SYSCONFDIR/skylab/skylab.toml  never overwritten (skylab.toml.dist beside it then)
#   $SYSCONFDIR/default/skylab      root-only: may hold SKYLAB_ADMIN_TOKEN
#   $LOCALSTATEDIR/lib/skylab       the data directory
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${1:-build}
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
SYSCONFDIR=${SYSCONFDIR:-/etc}
LOCALSTATEDIR=${LOCALSTATEDIR:-/var}
UNITDIR=${UNITDIR:-$PREFIX/lib/systemd/system}
STATEDIR=$LOCALSTATEDIR/lib/skylab
DOCDIR=$PREFIX/share/doc/skylab

for f in "$BUILD/skylab" "$BUILD/web/index.html"; do
  [ -e "$f" ] || { echo "install: $f is missing: run make first" >&2; exit 1; }
done
case "$PREFIX$SYSCONFDIR$LOCALSTATEDIR$UNITDIR" in
  *[!A-Za-z0-9/._+-]*) echo "install: unusual characters in a directory name" >&2; exit 1 ;;
esac

umask 022
D=$DESTDIR
# copy_tree SRC DST: files 0644 (executables 0755), folders 0755, no caches,
# symbolic links refused (nothing in these trees should be one).
copy_tree() {
  local src=$1 dst=$2
  if [ -n "$(find "$src" -type l -print -quit)" ]; then
    echo "install: symbolic link in $src" >&2; exit 1
  fi
  mkdir -p "$dst"
  (cd "$src" && find . -type d ! -name __pycache__ ! -path '*/__pycache__/*' -print0) |
    while IFS= read -r -d '' d; do install -d -m 0755 "$dst/$d"; done
  (cd "$src" && find . -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0) |
    while IFS= read -r -d '' f; do
      if [ -x "$src/$f" ]; then install -m 0755 "$src/$f" "$dst/$f"; else install -m 0644 "$src/$f" "$dst/$f"; fi
    done
}

install -D -m 0755 "$BUILD/skylab" "$D$PREFIX/bin/skylab"
rm -rf "$D$PREFIX/share/skylab/web" "$D$PREFIX/share/skylab/examples" "$D$PREFIX/lib/skylab/python"
copy_tree "$BUILD/web" "$D$PREFIX/share/skylab/web"
copy_tree examples "$D$PREFIX/share/skylab/examples"
copy_tree python "$D$PREFIX/lib/skylab/python"
install -d -m 0755 "$D$DOCDIR"
install -m 0644 README.md docs/*.md "$D$DOCDIR/"

install -d -m 0755 "$D$UNITDIR"
for unit in skylab skylab-runtimes; do
  sed -e "s|@BINDIR@|$PREFIX/bin|g" -e "s|@SYSCONFDIR@|$SYSCONFDIR|g" -e "s|@STATEDIR@|$STATEDIR|g" \
      -e "s|@DOCDIR@|$DOCDIR|g" "packaging/$unit.service.in" > "$D$UNITDIR/$unit.service"
  chmod 0644 "$D$UNITDIR/$unit.service"
done

install -d -m 0755 "$D$SYSCONFDIR/skylab" "$D$SYSCONFDIR/default"
if [ -e "$D$SYSCONFDIR/skylab/skylab.toml" ]; then
  install -m 0644 packaging/skylab.toml "$D$SYSCONFDIR/skylab/skylab.toml.dist"
  echo "install: kept $D$SYSCONFDIR/skylab/skylab.toml (the new default is skylab.toml.dist)"
else
  install -m 0644 packaging/skylab.toml "$D$SYSCONFDIR/skylab/skylab.toml"
fi
[ -e "$D$SYSCONFDIR/default/skylab" ] || install -m 0600 packaging/skylab.default "$D$SYSCONFDIR/default/skylab"

# The data directory: root's; 0711 so that runtimes (each under its user's
# uid) can reach the folders bound into their sandbox, but not list it.
# An existing one (an upgrade, a reinstall) is left as it is.
[ -d "$D$STATEDIR" ] || install -d -m 0711 "$D$STATEDIR"
echo "install: skylab installed under ${D:-/}${D:+ }(prefix $PREFIX)"
