#!/usr/bin/env bash
# Installs the system programs hfrisk's real servers need, on Debian/Ubuntu, idempotently:
#   redis-server, prometheus              (started by hfrisk on loopback, never as system services)
#   Java 17+ (openjdk-17-jre-headless), maven   (Kafka runs from Maven Central jars)
# Whatever is already there is left alone; a second run installs nothing and takes a second.
set -euo pipefail

log() { printf '[install-system] %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    log "not root and no sudo: cannot install system packages"; exit 1
  fi
fi

java_major() {
  # "openjdk version "17.0.15" ..." -> 17; 0 when there is no java.
  command -v java >/dev/null 2>&1 || { echo 0; return; }
  local major
  major=$(java -version 2>&1 | awk -F'"' '/version/ { split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit }')
  echo "${major:-0}"
}

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
[ "$(java_major)" -ge 17 ] || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)

if [ "${#missing[@]}" -eq 0 ]; then
  log "redis-server, prometheus, java $(java_major) and maven already installed"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  log "missing: ${missing[*]}; no apt-get here, install them with this system's package manager"
  exit 1
fi

# Debian starts a package's service on install unless policy-rc.d says no (exit 101). The
# servers must not run as system services: hfrisk starts its own, on free loopback ports.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  trap '$SUDO rm -f "$policy"' EXIT
fi

log "installing: ${missing[*]}"
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# policy-rc.d stops the start now; on a systemd machine also stop them starting at the next boot.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  for unit in redis-server prometheus; do
    if [[ " ${missing[*]} " == *" $unit "* ]]; then
      $SUDO systemctl disable --now "$unit" >/dev/null 2>&1 || true
    fi
  done
fi

log "installed: redis-server $(redis-server --version | awk '{print $3}'), $(prometheus --version 2>&1 | head -1), java $(java_major), $(mvn -v 2>/dev/null | head -1 | sed 's/\x1b\[[0-9;]*m//g')"
