#!/bin/sh
# Screenshots a chaos run's report.html with headless Chromium, to look at the page the way a
# browser draws it (not part of `cargo test`: Chromium is not a build dependency).
#
#   scripts/screenshot-report.sh DIR [OUT.png] [WIDTHxHEIGHT]
#
# DIR is a run's --out directory (report.html is rendered again first if pirate is on PATH
# or built in target/). Debian: apt-get install -y chromium
set -eu
dir=${1:?usage: $0 DIR [OUT.png] [WIDTHxHEIGHT]}
out=${2:-$dir/report.png}
size=${3:-1400x2400}
pirate=$(command -v pirate || echo "$(dirname "$0")/../target/debug/pirate")
if [ -x "$pirate" ]; then "$pirate" chaos report "$dir" >/dev/null; fi
[ -f "$dir/report.html" ] || { echo "error: no $dir/report.html" >&2; exit 2; }
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "error: no chromium (Debian: apt-get install -y chromium)" >&2; exit 69; }
page=$(cd "$dir" && pwd)/report.html
# --no-sandbox: Chromium refuses to run as root without it (containers, CI).
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
  --window-size="$(echo "$size" | tr x ,)" --screenshot="$out" "file://$page" 2>/dev/null
echo "$out"
