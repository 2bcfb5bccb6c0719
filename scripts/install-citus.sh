#!/usr/bin/env bash
# Build and install the vendored Citus into this machine's PostgreSQL (pg_config's lib and
# share dirs) when citus.so is not there yet. Nothing runs it unless a server preloads it.
# Usage: scripts/install-citus.sh VENDOR_DIR CACHE_DIR   (the Makefile's `citus` target)
set -euo pipefail

VENDOR=${1:?vendor dir holding citus-VERSION.tar.gz}
CACHE=${2:?cache dir to unpack and build in}
VERSION=${CITUS_VERSION:-13.2.2}
PG_CONFIG=${PG_CONFIG:-pg_config}

if [ -f "$($PG_CONFIG --pkglibdir)/citus.so" ]; then
  exit 0
fi
tarball="$VENDOR/citus-$VERSION.tar.gz"
[ -f "$tarball" ] || { echo "install-citus: $tarball is missing" >&2; exit 1; }

packages="postgresql-server-dev-15 libcurl4-openssl-dev liblz4-dev libzstd-dev libkrb5-dev
  libselinux1-dev libxslt1-dev libpam0g-dev libreadline-dev"
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "install-citus: installing$missing" >&2
  apt-get update -q
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
fi

src="$CACHE/citus-$VERSION"
rm -rf "$src"
mkdir -p "$src"
tar -xzf "$tarball" -C "$src" --strip-components=1
for patch in "$VENDOR"/citus-"$VERSION"-*.patch; do
  [ -f "$patch" ] || continue
  echo "install-citus: applying $(basename "$patch")" >&2
  patch -d "$src" -p1 <"$patch"
done
cd "$src"
./configure --without-libcurl PG_CONFIG="$PG_CONFIG"
make -j"$(nproc)"
make install
echo "install-citus: installed $($PG_CONFIG --pkglibdir)/citus.so" >&2
