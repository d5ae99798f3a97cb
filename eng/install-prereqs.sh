#!/usr/bin/env bash
# Installs what EMA Lab needs from the OS on Debian-like machines. Idempotent; run as root.
#
#   eng/install-prereqs.sh [libstdcxx] [chromium] [postgres] [pytorch] [fashion-mnist]   (no argument: the first two)
#
#   libstdcxx  TorchSharp 0.107.0's native library needs the symbol version GLIBCXX_3.4.32, which
#              Debian 12's libstdc++ lacks. Where it is missing, libstdc++6 alone is upgraded from
#              Debian 13 ("trixie"), pinned at low priority so nothing else moves to trixie.
#              Where the symbol is present (Debian 13, Ubuntu 24.04, the .NET 10 images) nothing happens.
#   chromium   Debian's chromium for the browser tests (never a downloaded browser).
#   postgres   Debian's PostgreSQL server binaries (initdb, pg_ctl) for the tests and benchmarks, which start
#              a throwaway cluster of their own. No cluster is created and no service is started here.
#   pytorch    Debian's python3-torch for the Python companion's tests (clients/python), run with /usr/bin/python3
#              (or EMALAB_PYTHON): a Python of its own elsewhere on the PATH (pyenv, a venv) is left alone.
#   fashion-mnist  Debian's dataset-fashion-mnist (the four IDX files of Zalando's Fashion-MNIST, 30 MB) in
#              /usr/share/datasets/fashion-mnist: the built-in dataset the default run trains on.
set -euo pipefail

say()  { echo "install-prereqs: $*"; }
fail() { echo "install-prereqs: ERROR: $*" >&2; exit 1; }

libstdcxx=/usr/lib/x86_64-linux-gnu/libstdc++.so.6
want=("$@")

# Several projects' builds run this script at once in parallel MSBuild nodes (the engine asks for
# libstdcxx, the browser tests for chromium); two apt-gets do not share dpkg's lock, so one run at a
# time, and apt itself waits for a lock held by anything else (unattended upgrades) instead of failing.
if [ -z "${EMALAB_PREREQS_LOCKED:-}" ] && command -v flock >/dev/null; then
  lock=/tmp/emalab-install-prereqs.lock
  exec 9>>"$lock" || { echo "install-prereqs: ERROR: cannot open $lock" >&2; exit 1; }
  flock -w 900 9 || { echo "install-prereqs: ERROR: another install-prereqs held $lock for 15 min" >&2; exit 1; }
  export EMALAB_PREREQS_LOCKED=1
fi
apt_get() { apt-get -o DPkg::Lock::Timeout=300 "$@"; }
[ ${#want[@]} -gt 0 ] || want=(libstdcxx chromium)

need_root() {
  [ "$(id -u)" = 0 ] || fail "$1 is missing and installing it needs root: run 'sudo $0 $2'"
  command -v apt-get >/dev/null || fail "$1 is missing and this machine has no apt-get; install it by hand"
}

apt_updated=0
apt_update() {
  [ $apt_updated = 1 ] && return
  say "apt-get update"
  apt_get update -qq || fail "apt-get update failed (is the Debian mirror reachable?)"
  apt_updated=1
}

ensure_libstdcxx() {
  if [ "$(uname -s)" != Linux ]; then say "not Linux: libstdc++ check not needed"; return; fi
  if [ -e "$libstdcxx" ] && grep -qa 'GLIBCXX_3\.4\.32' "$libstdcxx"; then
    say "libstdc++ already provides GLIBCXX_3.4.32: nothing to do"; return
  fi
  need_root "libstdc++ with GLIBCXX_3.4.32 (needed by TorchSharp)" libstdcxx
  [ -r /etc/os-release ] && . /etc/os-release
  [ "${VERSION_CODENAME:-}" = bookworm ] || fail "libstdc++ lacks GLIBCXX_3.4.32 and this is not Debian 12 (found '${PRETTY_NAME:-unknown}'): install a libstdc++6 from GCC 13 or newer by hand"

  # Reuse the mirrors this machine already trusts (they may be a local snapshot or proxy).
  local main_uri="http://deb.debian.org/debian" security_uri="http://deb.debian.org/debian-security" src
  src=/etc/apt/sources.list.d/debian.sources
  if [ -r "$src" ]; then
    main_uri=$(awk '/^URIs:/{print $2}' "$src" | grep -v -- '-security' | head -n1 || true)
    security_uri=$(awk '/^URIs:/{print $2}' "$src" | grep -- '-security' | head -n1 || true)
    [ -n "$main_uri" ] || main_uri="http://deb.debian.org/debian"
    [ -n "$security_uri" ] || security_uri="http://deb.debian.org/debian-security"
  fi

  say "adding Debian 13 (trixie) as a low-priority apt source to upgrade libstdc++6 only"
  cat > /etc/apt/sources.list.d/emalab-trixie.sources <<SRC
Types: deb
URIs: $main_uri
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security_uri
Suites: trixie-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  # Both pins are needed: without the second, apt would upgrade the whole system from trixie-security.
  cat > /etc/apt/preferences.d/emalab-trixie <<PIN
Package: *
Pin: release n=trixie
Pin-Priority: 100

Package: *
Pin: release n=trixie-security
Pin-Priority: 100
PIN
  apt_updated=0
  apt_update
  say "apt-get install -t trixie libstdc++6"
  DEBIAN_FRONTEND=noninteractive apt_get install -y -qq -t trixie libstdc++6 >/dev/null \
    || fail "could not install libstdc++6 from trixie"
  grep -qa 'GLIBCXX_3\.4\.32' "$libstdcxx" || fail "libstdc++6 was upgraded but still lacks GLIBCXX_3.4.32"
  say "libstdc++ now provides GLIBCXX_3.4.32"
}

ensure_chromium() {
  if command -v chromium >/dev/null; then say "chromium present: $(command -v chromium)"; return; fi
  need_root "chromium (needed by the browser tests)" chromium
  apt_update
  say "apt-get install chromium"
  DEBIAN_FRONTEND=noninteractive apt_get install -y -qq chromium >/dev/null || fail "could not install chromium"
  say "chromium installed: $(command -v chromium)"
}

ensure_postgres() {
  if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    say "postgresql present: $(ls -d /usr/lib/postgresql/*/bin | head -n1)"
  else
    install_postgres
  fi
  ensure_root_traversable
}

# PostgreSQL refuses to run as root, so the tests run it as the 'postgres' user, which must be able to reach its
# binaries. A root directory of mode 0700 (seen in chroots made from a mktemp folder) lets no other user run
# anything; every normal system has 0755. Others get traverse permission (x) only, not listing.
ensure_root_traversable() {
  [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1 || return 0
  if ! runuser -u postgres -- test -x /bin/sh 2>/dev/null; then
    say "the root directory is not traversable by other users (mode $(stat -c %a /)); adding o+x so that the 'postgres' user can run PostgreSQL"
    chmod o+x /
  fi
}

install_postgres() {
  need_root "PostgreSQL (needed by the PostgreSQL tests)" postgres
  # Debian's package would create and start a "main" cluster as a system service; EMA Lab's tests run their own.
  mkdir -p /etc/postgresql-common
  if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
  fi
  apt_update
  say "apt-get install postgresql"
  # Without recommends: they pull in a mail server (exim4) whose set-up fails where no init system runs.
  DEBIAN_FRONTEND=noninteractive apt_get install -y -qq --no-install-recommends postgresql >/dev/null || fail "could not install postgresql"
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || fail "postgresql was installed but initdb is missing"
  say "postgresql installed: $(ls -d /usr/lib/postgresql/*/bin | head -n1)"
}

ensure_pytorch() {
  local python=${EMALAB_PYTHON:-/usr/bin/python3}
  if [ -x "$python" ] && "$python" -c 'import torch' >/dev/null 2>&1; then
    say "PyTorch present: $("$python" -c 'import torch; print(torch.__version__)') for $python"; return
  fi
  [ -z "${EMALAB_PYTHON:-}" ] || fail "EMALAB_PYTHON=$EMALAB_PYTHON cannot import torch: install torch for it, or unset it to use Debian's"
  need_root "Debian's python3-torch (needed by the Python companion's tests)" pytorch
  apt_update
  say "apt-get install python3-torch"
  DEBIAN_FRONTEND=noninteractive apt_get install -y -qq --no-install-recommends python3-torch >/dev/null || fail "could not install python3-torch"
  /usr/bin/python3 -c 'import torch' || fail "python3-torch was installed but 'import torch' fails"
  say "PyTorch installed: $(/usr/bin/python3 -c 'import torch; print(torch.__version__)')"
}

ensure_fashion_mnist() {
  local folder=/usr/share/datasets/fashion-mnist
  if [ -r "$folder/train-images-idx3-ubyte.gz" ] && [ -r "$folder/t10k-labels-idx1-ubyte.gz" ]; then
    say "Fashion-MNIST present: $folder"; return
  fi
  need_root "Fashion-MNIST (Debian's dataset-fashion-mnist, the default run's dataset)" fashion-mnist
  apt_update
  say "apt-get install dataset-fashion-mnist"
  DEBIAN_FRONTEND=noninteractive apt_get install -y -qq --no-install-recommends dataset-fashion-mnist >/dev/null \
    || fail "could not install dataset-fashion-mnist"
  [ -r "$folder/train-images-idx3-ubyte.gz" ] || fail "dataset-fashion-mnist was installed but $folder is missing"
  say "Fashion-MNIST installed: $folder"
}

for w in "${want[@]}"; do
  case "$w" in
    libstdcxx) ensure_libstdcxx ;;
    chromium)  ensure_chromium ;;
    postgres)  ensure_postgres ;;
    pytorch)   ensure_pytorch ;;
    fashion-mnist) ensure_fashion_mnist ;;
    *) fail "unknown component '$w' (known: libstdcxx chromium postgres pytorch fashion-mnist)" ;;
  esac
done
