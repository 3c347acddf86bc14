#!/usr/bin/env bash
# Build crowdseg's container image with buildah (no Docker daemon) from the Containerfile at the root:
#   scripts/build-image.sh            build dist/crowdseg-<version>.oci.tar (or find it current);
#                                     the archive's path is the last line printed
#   scripts/build-image.sh --context  only assemble the build context and print its directory, for
#                                     `docker build -f Containerfile <dir>` elsewhere
#
# Everything slow is cached in $CROWDSEG_CACHE/image, keyed by what it is made from:
#   base-<key>.tar    mmdebstrap's minimal Debian (python3 3.11 and the runtime libraries), keyed by the
#                     suite, mirrors and package list below
#   wheels-<key>/     every runtime dependency as a wheel (pip wheel on this host), keyed by the Python
#                     version and pyproject's dependency list; plus pip's own wheel, run only to install
#   build-env-<key>/  a venv with pyproject's build-system requirements, so the crowdseg wheel is built
#                     from the checkout without asking the package index each time
# and the image is rebuilt only when the Containerfile, the base, the wheels, the crowdseg wheel's
# RECORD (every file's hash) or the web UI changed (dist/crowdseg-<version>.oci.tar.key).
#
# Env: CROWDSEG_CACHE (default $HOME/.cache/crowdseg), PYTHON (default .venv/bin/python: a CPython 3.11,
# the ABI of Debian bookworm's python3), CROWDSEG_IMAGE (default ghcr.io/crowdseg/crowdseg).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
CACHE="${CROWDSEG_CACHE:-$HOME/.cache/crowdseg}"
PY="${PYTHON:-$repo/.venv/bin/python}"
IMAGE="${CROWDSEG_IMAGE:-ghcr.io/crowdseg/crowdseg}"
work="$CACHE/image"
buildah=(buildah --storage-driver vfs)

die() { echo "build-image: FAILED: $*" >&2; exit 1; }
say() { echo "build-image: $*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
digest() { sha256sum | cut -c1-16; }

context_only=false
case "${1:-}" in
  --context) context_only=true ;;
  "") ;;
  *) die "unknown argument '$1' (use --context or nothing)" ;;
esac

mkdir -p "$work"
exec 9>"$work/.lock"
flock -w 3600 9 || die "timed out waiting for $work/.lock"

[[ -x "$PY" ]] || die "$PY not found (run make install)"
[[ "$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" == 3.11 ]] \
  || die "$PY is not CPython 3.11: its wheels would not match Debian bookworm's python3"
[[ -f web/dist/index.html ]] || die "web/dist is not built (run make web)"
version="$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
pyproject() { "$PY" -c "import json, tomllib; print(json.dumps(tomllib.load(open('pyproject.toml', 'rb'))$1))"; }

# ---------------------------------------------------------------- the base file system (Debian packages)
SUITE=bookworm
MIRRORS=(
  "deb http://deb.debian.org/debian $SUITE main"
  "deb http://deb.debian.org/debian $SUITE-updates main"
  "deb http://deb.debian.org/debian-security $SUITE-security main"
)
# Beside Debian's essential set: the interpreter, TLS roots (MongoDB and S3 over TLS) and the C++
# runtime that manylinux wheels may link to.
PACKAGES=(python3 ca-certificates libstdc++6)
MMDEBSTRAP=(
  --variant=essential
  # directory symlinks for merged /usr instead of the usrmerge package (which pulls in perl)
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
)
base_key="$(printf '%s\n' "$SUITE" "${MIRRORS[@]}" "${PACKAGES[@]}" "${MMDEBSTRAP[@]}" | digest)"
base="$work/base-$base_key.tar"
if [[ -f "$base" ]]; then
  say "base $SUITE ($base_key): cached"
else
  command -v mmdebstrap >/dev/null 2>&1 || die "mmdebstrap not found (make servers installs it)"
  t0="$(now)"
  say "base $SUITE ($base_key): mmdebstrap ${PACKAGES[*]}"
  rm -f "$base.tmp"
  mmdebstrap --quiet "${MMDEBSTRAP[@]}" --include="$(IFS=,; echo "${PACKAGES[*]}")" --format=tar \
    "$SUITE" "$base.tmp" "${MIRRORS[@]}" >"$work/mmdebstrap.log" 2>&1 \
    || { tail -n 20 "$work/mmdebstrap.log" >&2; die "mmdebstrap failed (log: $work/mmdebstrap.log)"; }
  mv "$base.tmp" "$base"
  say "base $SUITE ($base_key): built in $(elapsed "$t0"), $(du -h "$base" | cut -f1)"
fi

# ---------------------------------------------------------------- the dependencies as wheels
deps_key="$({ "$PY" -c 'import sys, sysconfig; print(sys.version_info[:2], sysconfig.get_platform())'; pyproject '["project"]["dependencies"]'; } | digest)"
wheels="$work/wheels-$deps_key"
if [[ -f "$wheels/.complete" ]]; then
  say "wheels ($deps_key): cached"
else
  t0="$(now)"
  rm -rf "$wheels.tmp"
  mkdir -p "$wheels.tmp/tools"
  "$PY" -c 'import json, sys; print("\n".join(json.loads(sys.argv[1])))' "$(pyproject '["project"]["dependencies"]')" \
    >"$wheels.tmp/requirements.txt"
  { "$PY" -m pip wheel --quiet --disable-pip-version-check --only-binary :all: \
      -r "$wheels.tmp/requirements.txt" -w "$wheels.tmp" &&
    "$PY" -m pip download --quiet --disable-pip-version-check --no-deps pip -d "$wheels.tmp/tools"; } \
    >"$work/wheels.log" 2>&1 || { tail -n 20 "$work/wheels.log" >&2; die "pip wheel failed (log: $work/wheels.log)"; }
  mv "$wheels.tmp"/tools/pip-*.whl "$wheels.tmp/tools/pip.whl"
  touch "$wheels.tmp/.complete"
  rm -rf "$wheels"
  mv "$wheels.tmp" "$wheels"
  say "wheels ($deps_key): $(find "$wheels" -maxdepth 1 -name '*.whl' | wc -l) wheels in $(elapsed "$t0")"
fi

# ---------------------------------------------------------------- the crowdseg wheel, from the checkout
build_key="$( { "$PY" --version; pyproject '["build-system"]'; } | digest)"
build_env="$work/build-env-$build_key"
if [[ ! -f "$build_env/.complete" ]]; then
  rm -rf "$build_env"
  "$PY" -m venv "$build_env"
  "$PY" -c 'import json, sys; print("\n".join(json.loads(sys.argv[1])["requires"]))' "$(pyproject '["build-system"]')" \
    >"$build_env/requirements.txt"
  "$build_env/bin/pip" install --quiet --disable-pip-version-check wheel -r "$build_env/requirements.txt" \
    >"$work/build-env.log" 2>&1 || { tail -n 20 "$work/build-env.log" >&2; die "the build environment failed (log: $work/build-env.log)"; }
  touch "$build_env/.complete"
fi
# From a copy of what git would commit (tracked and untracked, not ignored) and web/dist: a stale
# build/ or egg-info in the checkout never reaches the wheel.
src="$work/src"
app="$work/app"
rm -rf "$src" "$app"
mkdir -p "$src" "$app"
{ git ls-files -z --cached --others --exclude-standard; find web/dist -type f -print0; } \
  | while IFS= read -r -d '' file; do if [[ -f "$file" && ! -L "$file" ]]; then printf '%s\0' "$file"; fi; done \
  | xargs -0 -r cp --parents -t "$src"
"$build_env/bin/pip" wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation -w "$app" "$src" \
  >"$work/app.log" 2>&1 || { tail -n 20 "$work/app.log" >&2; die "building the crowdseg wheel failed (log: $work/app.log)"; }
wheel="$(find "$app" -name "crowdseg-$version-*.whl" | head -n1)"
[[ -n "$wheel" ]] || die "no crowdseg-$version wheel was built (log: $work/app.log)"
rm -rf "$src"
record_key="$("$PY" -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); sys.stdout.write(z.read(next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))).decode())' "$wheel" | digest)"

# ---------------------------------------------------------------- the build context
context="$work/context"
rm -rf "$context"
mkdir -p "$context/wheels"
ln -f "$base" "$context/base.tar"
ln -f "$wheels/tools/pip.whl" "$context/pip.whl"
ln -f "$wheels"/*.whl "$wheel" "$context/wheels/"
cp -r web/dist "$context/web"
if $context_only; then
  say "context for $IMAGE:$version (build args: VERSION=$version)"
  echo "$context"
  exit 0
fi

# ---------------------------------------------------------------- the image
licenses="$("$PY" -c 'import tomllib; l = tomllib.load(open("pyproject.toml", "rb"))["project"].get("license", "NOASSERTION"); print(l if isinstance(l, str) else l.get("text", "NOASSERTION"))')"
source_url="$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"].get("urls", {}).get("Source", "https://github.com/crowdseg/crowdseg"))')"
web_key="$(cd web/dist && find . -type f -print0 | sort -z | xargs -0 sha256sum | digest)"
key="$(printf '%s\n' "$IMAGE:$version" "$licenses" "$source_url" "$base_key" "$deps_key" "$record_key" "$web_key" \
  "$(sha256sum Containerfile)" | digest)"
mkdir -p dist
out="dist/crowdseg-$version.oci.tar"
if [[ -f "$out" && -f "$out.key" && "$(cat "$out.key")" == "$key" ]]; then
  say "$IMAGE:$version ($key): current"
  echo "$repo/$out"
  exit 0
fi
command -v buildah >/dev/null 2>&1 || die "buildah not found (make servers installs it)"
t0="$(now)"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
git diff --quiet HEAD 2>/dev/null || revision="$revision-dirty"
previous="$("${buildah[@]}" images --quiet --noheading "$IMAGE:$version" 2>/dev/null || true)"
say "$IMAGE:$version ($key): building"
# Docker's image format (--format docker, push --format v2s2), in an OCI layout archive: the OCI image
# config has no HEALTHCHECK, so buildah keeps it only in Docker's config.
"${buildah[@]}" bud --quiet --isolation chroot --format docker --layers=false \
  --build-arg VERSION="$version" --build-arg REVISION="$revision" \
  --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --build-arg SOURCE="$source_url" --build-arg LICENSES="$licenses" \
  -f "$repo/Containerfile" -t "$IMAGE:$version" "$context" >"$work/buildah.log" 2>&1 \
  || { tail -n 30 "$work/buildah.log" >&2; die "buildah bud failed (log: $work/buildah.log)"; }
rm -f "$out.tmp" "$out.key"
"${buildah[@]}" push --quiet --format v2s2 "$IMAGE:$version" "oci-archive:$out.tmp:$IMAGE:$version" >>"$work/buildah.log" 2>&1 \
  || { tail -n 30 "$work/buildah.log" >&2; die "buildah push failed (log: $work/buildah.log)"; }
mv -f "$out.tmp" "$out"
echo "$key" >"$out.key"
current="$("${buildah[@]}" images --quiet --noheading "$IMAGE:$version")"
for old in $previous; do
  [[ "$old" == "$current" ]] || "${buildah[@]}" rmi "$old" >/dev/null 2>&1 || true
done
say "$IMAGE:$version ($key): built in $(elapsed "$t0"), $(du -h "$out" | cut -f1)"
echo "$repo/$out"
