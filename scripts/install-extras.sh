#!/usr/bin/env bash
# The system software behind the full test suite, from Debian's packages (as root, or with
# sudo): PostgreSQL for the tracking-server test, a Docker engine and debootstrap for the
# image suite, Chromium and its driver for the MLflow UI test. The Python extras come with
# `make test-all`. Each package that cannot be installed is named, and its tests then skip
# with the reason; the script itself does not fail on it.
#
#   bash scripts/install-extras.sh && make test-all
set -uo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

# PostgreSQL without a default cluster on port 5432: the test makes its own, in a temporary folder.
$SUDO mkdir -p /etc/postgresql-common/createcluster.d &&
  echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.d/nnbench.conf >/dev/null

$SUDO apt-get update -qq || echo "install-extras: apt-get update failed; trying the lists there are"
for package in postgresql docker.io debootstrap chromium chromium-driver; do
  if dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed"; then
    continue
  fi
  $SUDO apt-get install -y -qq --no-install-recommends "$package" >/dev/null ||
    echo "install-extras: $package unavailable: the tests that need it will be skipped"
done
exit 0
