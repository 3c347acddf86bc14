#!/usr/bin/env bash
# Provision crowdseg's real test servers into a cache OUTSIDE the repository:
#   - Apache Kafka 4.x (KRaft, no ZooKeeper): jars from Maven Central  -> $CACHE/kafka-<ver>/libs
#   - FerretDB v1 (MongoDB wire protocol, SQLite backend): go build    -> $CACHE/bin/ferretdb
#   - MinIO: go install                                                 -> $CACHE/bin/minio
#   - kustomize (builds the deploy/k8s overlays in the tests): go install -> $CACHE/bin/kustomize
#   - Chromium + chromedriver for the browser tests: apt-get, only when missing
#   - buildah + mmdebstrap for `make image` and its cluster test: apt-get, only when missing
# and write $CACHE/servers.json, the manifest tests/servers.py reads.
#
# Idempotent: every component has a marker file holding its version; a component whose marker
# matches (and whose files are present) is skipped, so a second run takes about a second.
# Two concurrent runs are serialised by flock. Fails loudly (non-zero, one clear line) when a
# component cannot be provisioned.
#
# Env: CROWDSEG_CACHE (default $HOME/.cache/crowdseg).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
prov="$here/provision"
# shellcheck source=provision/versions.env
source "$prov/versions.env"

CACHE="${CROWDSEG_CACHE:-$HOME/.cache/crowdseg}"
mkdir -p "$CACHE/bin" "$CACHE/logs"
CACHE="$(cd "$CACHE" && pwd)"

repo="$(cd "$here/.." && pwd)"
case "$CACHE/" in
  "$repo"/*) echo "provision: CROWDSEG_CACHE ($CACHE) must be outside the repository ($repo)" >&2; exit 2 ;;
esac

die() { echo "provision: FAILED: $*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
# marker_ok FILE VERSION: the marker exists and names VERSION.
marker_ok() { [[ -f "$1" && "$(cat "$1")" == "$2" ]]; }

exec 9>"$CACHE/.provision.lock"
if ! flock -n 9; then
  echo "provision: another run holds $CACHE/.provision.lock; waiting" >&2
  flock -w 3600 9 || die "timed out waiting for $CACHE/.provision.lock"
fi

# ---------------------------------------------------------------- Java (Kafka 4 needs 17+)
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
command -v "$JAVA" >/dev/null 2>&1 || die "java not found (Kafka $KAFKA_VERSION needs Java 17+)"
JAVA="$(command -v "$JAVA")"
java_major="$("$JAVA" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ { print $2 }')"
[[ "${java_major%%.*}" =~ ^[0-9]+$ && "${java_major%%.*}" -ge 17 ]] \
  || die "Kafka $KAFKA_VERSION needs Java 17+, found '$java_major' at $JAVA"

# ---------------------------------------------------------------- Apache Kafka
provision_kafka() {
  local home="$CACHE/kafka-$KAFKA_VERSION" marker t0 log
  marker="$home/.provisioned"
  if marker_ok "$marker" "$KAFKA_VERSION" && [[ -f "$home/libs/kafka_2.13-$KAFKA_VERSION.jar" ]]; then
    echo "kafka $KAFKA_VERSION: ready (cached)"
    return
  fi
  command -v mvn >/dev/null 2>&1 || die "kafka $KAFKA_VERSION: mvn not found (needed to fetch jars from Maven Central)"
  t0="$(now)"
  log="$CACHE/logs/kafka-$KAFKA_VERSION.log"
  rm -rf "$home.tmp"
  mkdir -p "$home.tmp/config"
  if ! mvn -q -B -f "$prov/kafka-pom.xml" -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$home.tmp/libs" >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    die "kafka $KAFKA_VERSION: could not fetch jars from Maven Central (log: $log)"
  fi
  [[ -f "$home.tmp/libs/kafka_2.13-$KAFKA_VERSION.jar" ]] || die "kafka $KAFKA_VERSION: kafka_2.13 jar missing after mvn"
  cp "$prov/kafka-log4j2.yaml" "$home.tmp/config/log4j2.yaml"
  # Smoke check on this JVM: the storage tool's main class loads and answers.
  if ! "$JAVA" -cp "$home.tmp/libs/*" kafka.tools.StorageTool random-uuid >>"$log" 2>&1; then
    tail -n 20 "$log" >&2
    die "kafka $KAFKA_VERSION: kafka.tools.StorageTool does not run on $JAVA (log: $log)"
  fi
  echo "$KAFKA_VERSION" >"$home.tmp/.provisioned"
  rm -rf "$home"
  mv "$home.tmp" "$home"
  echo "kafka $KAFKA_VERSION: ready (installed in $(elapsed "$t0"))"
}

# ---------------------------------------------------------------- Go binaries
# build_minio OUT_DIR: go install into OUT_DIR.
build_minio() {
  GOBIN="$1" go install "github.com/minio/minio@$MINIO_VERSION"
}

# build_kustomize OUT_DIR: go install into OUT_DIR.
build_kustomize() {
  GOBIN="$1" go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
}

# build_ferretdb OUT_DIR: FerretDB v1 cannot be `go install`ed: the module proxy refuses its
# version list (which go install reads for deprecation notices), and the binary panics at start
# unless build/version/version.txt was generated. So: fetch the module source through the proxy,
# copy it, write the version files, and build ./cmd/ferretdb as the main module.
build_ferretdb() {
  local out="$1" dir src
  dir="$(go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
  [[ -n "$dir" && -d "$dir" ]] || { echo "go mod download gave no source directory"; return 1; }
  src="$out/src"
  # (errexit is off inside `if !`, hence the explicit chain)
  cp -r "$dir" "$src" &&
    chmod -R u+w "$src" &&
    echo "$FERRETDB_VERSION" >"$src/build/version/version.txt" &&
    echo "crowdseg-test" >"$src/build/version/package.txt" &&
    (cd "$src" && go build -o "$out/ferretdb" ./cmd/ferretdb) &&
    rm -rf "$src"
}

# go_binary NAME VERSION: build NAME with build_NAME into $CACHE/bin, unless its marker says VERSION.
go_binary() {
  local name="$1" version="$2" marker="$CACHE/bin/.$1.version" t0 log build="$CACHE/build/$1"
  if marker_ok "$marker" "$version" && [[ -x "$CACHE/bin/$name" ]]; then
    echo "$name $version: ready (cached)"
    return
  fi
  command -v go >/dev/null 2>&1 || die "$name $version: go not found (needed to build it)"
  t0="$(now)"
  log="$CACHE/logs/$name-$version.log"
  rm -f "$marker"
  # A private output directory, then an atomic move: a half-written binary never lands in $CACHE/bin.
  rm -rf "$build"
  mkdir -p "$build"
  echo "$name $version: building (this can take minutes on a small machine)" >&2
  # Run outside any Go module; never switch toolchains behind our back.
  if ! (cd "$build" && export GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -buildvcs=false" && "build_$name" "$build") \
      >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "$name $version: build failed (log: $log)"
  fi
  [[ -x "$build/$name" ]] || die "$name $version: the build produced no $name binary (log: $log)"
  { "$build/$name" --version || "$build/$name" version; } >>"$log" 2>&1 || die "$name $version: the built binary does not run (log: $log)"
  mv -f "$build/$name" "$CACHE/bin/$name"
  rm -rf "$build"
  echo "$version" >"$marker"
  echo "$name $version: ready (built in $(elapsed "$t0"))"
}

# ---------------------------------------------------------------- Chromium
provision_chromium() {
  local t0 apt_opts=(-y -q -o DPkg::Lock::Timeout=600)
  if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
    echo "chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{ print $2 }'): ready (system)"
    return
  fi
  command -v apt-get >/dev/null 2>&1 || die "chromium: missing and apt-get is not available; install chromium and chromedriver"
  [[ "$(id -u)" == 0 ]] || die "chromium: missing; run as root or: sudo apt-get install chromium chromium-driver"
  t0="$(now)"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-cache policy chromium-driver 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    apt-get update -q -o DPkg::Lock::Timeout=600 >"$CACHE/logs/apt-update.log" 2>&1 \
      || die "chromium: apt-get update failed (log: $CACHE/logs/apt-update.log)"
  fi
  if ! apt-get install "${apt_opts[@]}" --no-install-recommends chromium chromium-driver \
      >"$CACHE/logs/chromium.log" 2>&1; then
    tail -n 20 "$CACHE/logs/chromium.log" >&2
    die "chromium: apt-get install chromium chromium-driver failed (log: $CACHE/logs/chromium.log)"
  fi
  [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]] || die "chromium: installed but /usr/bin/chromium or chromedriver missing"
  echo "chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{ print $2 }'): ready (installed in $(elapsed "$t0"))"
}

# ---------------------------------------------------------------- buildah + mmdebstrap (make image, its test)
provision_image_tools() {
  local t0 apt_opts=(-y -q -o DPkg::Lock::Timeout=600)
  if command -v buildah >/dev/null 2>&1 && command -v mmdebstrap >/dev/null 2>&1; then
    echo "buildah $(buildah --version | awk '{ print $3 }'), mmdebstrap: ready (system)"
    return
  fi
  command -v apt-get >/dev/null 2>&1 || die "buildah: missing and apt-get is not available; install buildah and mmdebstrap"
  [[ "$(id -u)" == 0 ]] || die "buildah: missing; run as root or: sudo apt-get install buildah mmdebstrap"
  t0="$(now)"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-cache policy buildah mmdebstrap 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    apt-get update -q -o DPkg::Lock::Timeout=600 >"$CACHE/logs/apt-update.log" 2>&1 \
      || die "buildah: apt-get update failed (log: $CACHE/logs/apt-update.log)"
  fi
  if ! apt-get install "${apt_opts[@]}" --no-install-recommends buildah mmdebstrap >"$CACHE/logs/buildah.log" 2>&1; then
    tail -n 20 "$CACHE/logs/buildah.log" >&2
    die "buildah: apt-get install buildah mmdebstrap failed (log: $CACHE/logs/buildah.log)"
  fi
  echo "buildah $(buildah --version | awk '{ print $3 }'), mmdebstrap: ready (installed in $(elapsed "$t0"))"
}

provision_kafka
go_binary ferretdb "$FERRETDB_VERSION"
go_binary minio "$MINIO_VERSION"
go_binary kustomize "$KUSTOMIZE_VERSION"
provision_chromium
provision_image_tools

# ---------------------------------------------------------------- manifest for tests/servers.py
cat >"$CACHE/servers.json.tmp" <<EOF
{
  "java": "$JAVA",
  "kafka": {"version": "$KAFKA_VERSION", "home": "$CACHE/kafka-$KAFKA_VERSION"},
  "ferretdb": {"version": "$FERRETDB_VERSION", "bin": "$CACHE/bin/ferretdb"},
  "minio": {"version": "$MINIO_VERSION", "bin": "$CACHE/bin/minio"},
  "kustomize": {"version": "$KUSTOMIZE_VERSION", "bin": "$CACHE/bin/kustomize"},
  "chromium": {"bin": "/usr/bin/chromium", "driver": "/usr/bin/chromedriver"}
}
EOF
mv -f "$CACHE/servers.json.tmp" "$CACHE/servers.json"
