#!/usr/bin/env bash
# Refreshes the vendored xterm.js files in this folder from the npm registry.
#
# sam embeds these files and serves them itself, so a page never loads code from a CDN and
# neither the build nor CI needs npm. Run this only to change a version: bump the version
# and its integrity below (`npm view <pkg>@<version> dist.integrity`), run it, update
# README.md beside it, and commit the result.
#
# Each tarball is checked against the integrity pinned here, computed by this script
# itself, so a registry or cache that serves other bytes under the same version fails the
# run instead of changing what sam ships.
set -euo pipefail

# package, exact version, folder under assets/vendor/, pinned sha512 integrity
PACKAGES=(
  "@xterm/xterm 5.5.0 xterm sha512-hqJHYaQb5OptNunnyAnkHyM8aCjZ1MEIDTQu1iIbbTD/xops91NB5yq1ZK/dC2JDbVWtF23zUtl9JE2NqwT87A=="
  "@xterm/addon-fit 0.10.0 addon-fit sha512-UFYkDm4HUahf2lnEyHvio51TNGiLK66mqP2JoATy7hRZeXaGMRDr00JiSF7m63vR5WKATF605yEggJKsw0JpMQ=="
  "@xterm/addon-web-links 0.11.0 addon-web-links sha512-nIHQ38pQI+a5kXnRaTgwqSHnX7KE6+4SVoceompgHL26unAxdfP6IPqUTSYPQgSwM56hsElfoNrrW5V7BUED/Q=="
  "@xterm/addon-unicode11 0.8.0 addon-unicode11 sha512-LxinXu8SC4OmVa6FhgwsVCBZbr8WoSGzBl2+vqe8WcQ6hb1r6Gj9P99qTNdPiFPh4Ceiu2pC8xukZ6+2nnh49Q=="
  "@xterm/addon-canvas 0.7.0 addon-canvas sha512-LF5LYcfvefJuJ7QotNRdRSPc9YASAVDeoT5uyXS/nZshZXjYplGXRECBGiznwvhNL2I8bq1Lf5MzRwstsYQ2Iw=="
)

vendor_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Prints the npm-style integrity ("sha512-" and base64) of a file.
integrity_of() {
  printf 'sha512-%s' "$(openssl dgst -sha512 -binary "$1" | base64 -w0)"
}

# Copies one file out of an unpacked package, failing if the package lacks it.
take() {
  local from="$1" to="$2"
  [[ -f "$from" ]] || { echo "missing in package: ${from#"$work"/}" >&2; exit 1; }
  install -m 0644 "$from" "$to"
}

# Fetch and check every package before touching the tree, so a bad one changes nothing.
for entry in "${PACKAGES[@]}"; do
  read -r name version folder pinned <<<"$entry"
  echo "fetching $name@$version"
  tarball="$(cd "$work" && npm pack --silent --ignore-scripts "$name@$version")"
  actual="$(integrity_of "$work/$tarball")"
  if [[ "$actual" != "$pinned" ]]; then
    echo "integrity mismatch for $name@$version" >&2
    echo "  pinned: $pinned" >&2
    echo "  got:    $actual" >&2
    exit 1
  fi
  mkdir -p "$work/$folder"
  tar -xzf "$work/$tarball" -C "$work/$folder" --strip-components=1
done

for entry in "${PACKAGES[@]}"; do
  read -r _ _ folder _ <<<"$entry"
  unpacked="$work/$folder"

  # Replace the folder whole so files a newer version dropped do not linger.
  dest="$vendor_dir/$folder"
  rm -rf "$dest"
  mkdir -p "$dest"
  take "$unpacked/LICENSE" "$dest/LICENSE"
  if [[ "$folder" == xterm ]]; then
    take "$unpacked/lib/xterm.js" "$dest/xterm.js"
    take "$unpacked/css/xterm.css" "$dest/xterm.css"
  else
    shopt -s nullglob
    scripts=("$unpacked"/lib/*.js)
    shopt -u nullglob
    [[ ${#scripts[@]} -gt 0 ]] || { echo "no lib/*.js in $folder" >&2; exit 1; }
    for script in "${scripts[@]}"; do
      take "$script" "$dest/$(basename "$script")"
    done
  fi
done

echo "done; vendored files:"
(cd "$vendor_dir" && find . -type f ! -name fetch.sh ! -name README.md | sort)
