#!/usr/bin/env bash
# Installs the pinned custom nodes of a list (custom-nodes.txt) into a custom_nodes directory:
# each `<repository URL> <commit>` line is fetched at exactly that commit (40 lowercase hex; a tag
# or branch is refused, they move), checked out, checked (HEAD must be the commit), stripped of
# .git, and stamped with a .comfyume-pin file (`<url> <commit>`) that smoke-test.sh compares.
#   install-custom-nodes.sh LIST DEST
# Blank lines and # comments are skipped. Every line is validated before anything is fetched.
set -euo pipefail

die() {
  printf '[custom-nodes] error: %s\n' "$*" >&2
  exit 1
}

list=${1:?usage: install-custom-nodes.sh LIST DEST}
dest=${2:?usage: install-custom-nodes.sh LIST DEST}
[[ -f "$list" ]] || die "$list is not a file"

urls=() commits=() names=()
number=0
while IFS= read -r line || [[ -n "$line" ]]; do
  number=$((number + 1))
  line=${line%%#*}
  read -r url commit extra <<<"$line" || true
  [[ -n "${url:-}" ]] || continue
  at="$list line $number"
  [[ -z "${extra:-}" ]] || die "$at: expected '<repository URL> <commit>', got extra text '$extra'"
  [[ "$url" =~ ^(https://|file://)[A-Za-z0-9._~:/@%+-]+$ ]] ||
    die "$at: repository '$url' must be an https:// (or file://) URL"
  [[ "${commit:-}" =~ ^[0-9a-f]{40}$ ]] ||
    die "$at: commit '${commit:-}' must be a full 40-hex commit (a tag or branch can move)"
  name=${url%/}
  name=${name##*/}
  name=${name%.git}
  [[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "$at: cannot name a directory after '$url'"
  [[ "$name" != comfyume_health ]] || die "$at: '$name' is the image's own node"
  for seen in "${names[@]}"; do
    [[ "$seen" != "$name" ]] || die "$at: a second node named '$name'"
  done
  urls+=("$url") commits+=("$commit") names+=("$name")
done <"$list"

mkdir -p "$dest"
for i in "${!names[@]}"; do
  url=${urls[$i]} commit=${commits[$i]} target="$dest/${names[$i]}"
  [[ ! -e "$target" ]] || die "$target already exists"
  printf '[custom-nodes] %s at %s\n' "${names[$i]}" "$commit"
  git init -q "$target"
  git -C "$target" remote add origin "$url"
  # A shallow fetch of the exact commit (GitHub allows it); a full fetch when the server refuses.
  if ! git -C "$target" fetch -q --depth 1 origin "$commit" 2>/dev/null; then
    git -C "$target" fetch -q origin || die "cannot fetch $url"
  fi
  git -C "$target" -c advice.detachedHead=false checkout -q "$commit" ||
    die "$url has no commit $commit"
  head=$(git -C "$target" rev-parse HEAD)
  [[ "$head" == "$commit" ]] || die "$url: checked out $head, expected $commit"
  rm -rf "$target/.git"
  printf '%s %s\n' "$url" "$commit" >"$target/.comfyume-pin"
done
printf '[custom-nodes] %d node(s) installed in %s\n' "${#names[@]}" "$dest"
