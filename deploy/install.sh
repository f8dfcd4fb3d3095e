#!/usr/bin/env bash
# Installs portwatch: binary, systemd unit, shell completions (bash, zsh, fish) and man pages.
#
#   deploy/install.sh [--prefix DIR] [--binary PATH] [--unit-dir DIR]
#
# --prefix DIR    where to install (default /usr/local): DIR/bin/portwatch,
#                 DIR/lib/systemd/system/portwatch.service, DIR/share/man/man1/portwatch*.1,
#                 DIR/share/{bash-completion/completions,zsh/site-functions,fish/vendor_completions.d}
# --binary PATH   install this portwatch binary instead of building one (swift build -c release)
# --unit-dir DIR  put the unit here instead (e.g. /etc/systemd/system)
#
# Completions come from the binary itself (swift-argument-parser's --generate-completion-script);
# man pages from swift-argument-parser's generate-manual tool, built once from the package's
# own checkout into .build/generate-manual (a build directory of its own, so this also works while
# another SwiftPM command holds the package's .build).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
prefix=/usr/local
binary=""
unit_dir=""

die() { echo "install.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix="$2"; shift 2 ;;
    --prefix=*) prefix="${1#*=}"; shift ;;
    --binary) [ $# -ge 2 ] || die "--binary needs a path"; binary="$2"; shift 2 ;;
    --binary=*) binary="${1#*=}"; shift ;;
    --unit-dir) [ $# -ge 2 ] || die "--unit-dir needs a directory"; unit_dir="$2"; shift 2 ;;
    --unit-dir=*) unit_dir="${1#*=}"; shift ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[ -n "$prefix" ] || die "--prefix is empty"
mkdir -p "$prefix"
prefix="$(cd "$prefix" && pwd)"
[ -n "$unit_dir" ] || unit_dir="$prefix/lib/systemd/system"

if [ -z "$binary" ]; then
  echo "install.sh: building portwatch (swift build -c release)" >&2
  swift build --package-path "$root" -c release --product portwatch >&2
  binary="$(swift build --package-path "$root" -c release --show-bin-path)/portwatch"
fi
[ -x "$binary" ] || die "$binary: not an executable"
"$binary" --version >/dev/null || die "$binary --version failed"

bindir="$prefix/bin"
mandir="$prefix/share/man/man1"
bashdir="$prefix/share/bash-completion/completions"
zshdir="$prefix/share/zsh/site-functions"
fishdir="$prefix/share/fish/vendor_completions.d"
mkdir -p "$bindir" "$mandir" "$bashdir" "$zshdir" "$fishdir" "$unit_dir"

install -m 0755 "$binary" "$bindir/portwatch"

# The unit runs the binary where it now is.
sed "s#/usr/local/bin/portwatch#$bindir/portwatch#g" "$root/deploy/portwatch.service" > "$unit_dir/portwatch.service"
chmod 0644 "$unit_dir/portwatch.service"

"$bindir/portwatch" --generate-completion-script bash > "$bashdir/portwatch"
"$bindir/portwatch" --generate-completion-script zsh > "$zshdir/_portwatch"
"$bindir/portwatch" --generate-completion-script fish > "$fishdir/portwatch.fish"

# Man pages: one per command (portwatch.1, portwatch.daemon.1, ...).
tool="${PORTWATCH_GENERATE_MANUAL:-}"
if [ -z "$tool" ]; then
  parser="$root/.build/checkouts/swift-argument-parser"
  if [ ! -f "$parser/Package.swift" ]; then
    swift package --package-path "$root" resolve >&2
  fi
  scratch="$root/.build/generate-manual"
  swift build --package-path "$parser" --scratch-path "$scratch" --product generate-manual >&2
  tool="$(swift build --package-path "$parser" --scratch-path "$scratch" --show-bin-path)/generate-manual"
fi
[ -x "$tool" ] || die "$tool: generate-manual not found"
"$tool" "$bindir/portwatch" --multi-page --output-directory "$mandir" >&2
chmod 0644 "$mandir"/portwatch*.1 "$bashdir/portwatch" "$zshdir/_portwatch" "$fishdir/portwatch.fish"

echo "installed portwatch into $prefix:"
find "$bindir/portwatch" "$unit_dir/portwatch.service" "$mandir" "$bashdir/portwatch" "$zshdir/_portwatch" \
  "$fishdir/portwatch.fish" -type f -name '*portwatch*' | sort
