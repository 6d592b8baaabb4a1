#!/bin/sh
# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Compile one wire program: build.sh SOURCE.bpf.c OUTDIR [extra clang flags]
# Prints the object's path, OUTDIR/<name>-<hash>.o. The hash covers the source, the
# shared header, the flags and the compiler version, so an unchanged input is not
# compiled again (and a changed one never overwrites an object that is in use).
set -eu
src=$1; outdir=$2; shift 2
srcdir=$(dirname "$src")
name=$(basename "$src" .bpf.c)
CLANG=${CLANG:-clang}
# <linux/bpf.h> includes <asm/types.h>, which Debian keeps under the multiarch dir.
multiarch=$("$CLANG" -print-multiarch 2>/dev/null || true)
[ -n "$multiarch" ] || multiarch="$(uname -m)-linux-gnu"
flags="-O2 -g -target bpf -Wall -I/usr/include/$multiarch $*"
hash=$( { cat "$src" "$srcdir/wire.h"; echo "$flags"; "$CLANG" --version | head -n 1; } | sha256sum | cut -c1-16)
obj="$outdir/$name-$hash.o"
if [ ! -s "$obj" ]; then
    mkdir -p "$outdir"
    # shellcheck disable=SC2086  # flags are words on purpose
    "$CLANG" $flags -c "$src" -o "$obj.tmp.$$"
    mv -f "$obj.tmp.$$" "$obj"
fi
echo "$obj"
