#!/usr/bin/env bash
# What `make test` needs outside the virtualenv, set up when it is missing:
#  - Debian's Chromium (/usr/bin/chromium) for the browser tests in tests/e2e/, and Debian's PHP
#    command line (php-cli) that runs the PHP receiver snippets of docs/receivers.md, and
#    systemd-analyze (package systemd) that checks the units of docs/deploy/: installed
#    with apt-get when running as root; otherwise one line says what to install, and this fails.
#    (Node.js, which runs the JavaScript snippets, is expected on the machine.)
#  - PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379, started when they are installed but
#    stopped. Left alone when DATABASE_URL / CELERY_BROKER_URL point the suite at another server.
# Idempotent: when everything is there it only looks, in a fraction of a second.
set -euo pipefail

fail() {
  echo "make test: $*" >&2
  exit 1
}

# Succeeds when the URL (or its default, when unset) names the local default server on $2.
is_local_default() {
  local url=$1 port=$2
  [[ $url =~ ^[a-z0-9+]+://([^/@]*@)?([^/:]*)(:([0-9]+))?(/|$) ]] || return 1
  [[ ${BASH_REMATCH[2]} == 127.0.0.1 || ${BASH_REMATCH[2]} == localhost ]] &&
    [[ ${BASH_REMATCH[4]:-$port} == "$port" ]]
}

# Runs "$@" until it succeeds, for up to 30 seconds.
wait_for() {
  for _ in $(seq 1 150); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}

# Installs Debian package $1 (which provides $2) with apt-get, as root; says why it is needed ($3)
# and what to run otherwise.
debian_install() {
  local package=$1 path=$2 purpose=$3
  if [[ $(id -u) -ne 0 ]]; then
    fail "$purpose need $path: install Debian's package with 'sudo apt-get install $package', then run make test again."
  fi
  echo "Installing Debian's $package for $purpose..."
  export DEBIAN_FRONTEND=noninteractive
  # Quiet unless it fails; DPkg::Lock::Timeout waits for another apt-get instead of failing.
  log=$(mktemp)
  if ! { apt-get -o DPkg::Lock::Timeout=600 update -qq &&
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$package"; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    fail "installing $package with apt-get failed (its output is above)."
  fi
  rm -f "$log"
  [[ -x $path ]] || fail "apt-get installed $package, but $path is still missing."
}

# --- Chromium and PHP ------------------------------------------------------------------------
[[ -x /usr/bin/chromium ]] || debian_install chromium /usr/bin/chromium "the browser tests"
[[ -x /usr/bin/php ]] || debian_install php-cli /usr/bin/php "the PHP receiver snippets"
[[ -x /usr/bin/systemd-analyze ]] ||
  debian_install systemd /usr/bin/systemd-analyze "the check of the systemd units in docs/deploy/"
command -v node >/dev/null ||
  fail "the JavaScript receiver snippets need Node.js (node): install it, then run make test again."

# --- PostgreSQL ------------------------------------------------------------------------------
if is_local_default "${DATABASE_URL:-postgres://127.0.0.1:5432/}" 5432 &&
  ! pg_isready -q -h 127.0.0.1 -p 5432; then
  command -v pg_lsclusters >/dev/null ||
    fail "the suite needs PostgreSQL on 127.0.0.1:5432: install it ('apt-get install postgresql') or set DATABASE_URL."
  version=$(pg_lsclusters --no-header | awk '$2 == "main" && $3 == 5432 { print $1; exit }')
  [[ -n $version ]] || fail "PostgreSQL is installed but has no cluster 'main' on port 5432: create one or set DATABASE_URL."
  echo "Starting PostgreSQL $version..."
  # pg_ctlcluster exits 2 when the cluster already runs (someone else may have just started it).
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || [[ $? -eq 2 ]] ||
    fail "could not start PostgreSQL $version (pg_ctlcluster $version main start failed above)."
  wait_for pg_isready -q -h 127.0.0.1 -p 5432 ||
    fail "PostgreSQL $version did not accept connections on 127.0.0.1:5432 within 30 s."
fi

# --- Redis -----------------------------------------------------------------------------------
if is_local_default "${CELERY_BROKER_URL:-redis://127.0.0.1:6379/}" 6379 &&
  ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  command -v redis-server >/dev/null ||
    fail "the suite needs Redis on 127.0.0.1:6379: install it ('apt-get install redis-server') or set CELERY_BROKER_URL."
  echo "Starting Redis..."
  # redis-server exits 0 even when the port is taken: the ping below is the real check.
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  wait_for redis-cli -h 127.0.0.1 -p 6379 ping ||
    fail "Redis did not answer on 127.0.0.1:6379 within 30 s."
fi
