#!/usr/bin/env bash
# Build and tag the streamer image, then print its build metadata.
#
# Tags: IMAGE:VERSION, IMAGE:VERSION-SHA and IMAGE:SHA (VERSION from pyproject.toml, SHA =
# short git commit, with "-dirty" when the work tree has uncommitted changes).
#
# Usage: scripts/build_image.sh [--dry-run] [--push] [--platform LIST] [--server]
#   IMAGE       repository name (default: streamer), e.g. registry.example.com/nova/streamer
#   DOCKER      container CLI (default: docker; podman works too)
#   --dry-run   print the metadata and the build command, build nothing (no engine needed)
#   --push      push every tag after a successful build
#   --server    server-only image: no embedded ClickHouse (chDB); tags end in -server
set -euo pipefail

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }

dry_run=0
push=0
server=0
platform=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) dry_run=1 ;;
        --push) push=1 ;;
        --server) server=1 ;;
        --platform) platform="${2:?--platform needs a value}"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "build_image.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

image="${IMAGE:-streamer}"
docker_cli="${DOCKER:-docker}"

# Version: the package's own, read from pyproject.toml (tomllib needs Python >= 3.11).
read_version() {
    local python
    for python in python3 python; do
        if command -v "$python" >/dev/null 2>&1 \
            && "$python" -c 'import tomllib' >/dev/null 2>&1; then
            "$python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])'
            return 0
        fi
    done
    # Fallback without Python 3.11: the first `version = "..."` line.
    sed -n 's/^version *= *"\([^"]*\)".*/\1/p' pyproject.toml | head -n 1
}

version="$(read_version)"
if [[ -z "$version" ]]; then
    echo "build_image.sh: cannot read the version from pyproject.toml" >&2
    exit 1
fi

if git rev-parse --git-dir >/dev/null 2>&1; then
    git_sha="$(git rev-parse --short=12 HEAD)"
    if ! git diff --quiet HEAD -- 2>/dev/null; then
        git_sha="${git_sha}-dirty"
    fi
    git_branch="$(git rev-parse --abbrev-ref HEAD)"
else
    git_sha="unknown"
    git_branch="unknown"
fi
build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

suffix=""
if [[ "$server" -eq 1 ]]; then
    suffix="-server"
fi
tags=("${image}:${version}${suffix}" "${image}:${version}-${git_sha}${suffix}" "${image}:${git_sha}${suffix}")

build_cmd=("$docker_cli" build
    --file Dockerfile
    --build-arg "VERSION=${version}"
    --build-arg "GIT_SHA=${git_sha}"
    --build-arg "BUILD_DATE=${build_date}")
if [[ "$server" -eq 1 ]]; then
    build_cmd+=(--build-arg "INSTALL_EXTRAS=")
fi
if [[ -n "$platform" ]]; then
    build_cmd+=(--platform "$platform")
fi
for tag in "${tags[@]}"; do
    build_cmd+=(--tag "$tag")
done
build_cmd+=(.)

print_metadata() {
    echo "image=${image}"
    echo "version=${version}"
    echo "git_sha=${git_sha}"
    echo "git_branch=${git_branch}"
    echo "build_date=${build_date}"
    echo "tags=${tags[*]}"
}

print_metadata
echo "build_command=${build_cmd[*]}"
if [[ "$dry_run" -eq 1 ]]; then
    echo "dry_run=1 (nothing built)"
    exit 0
fi

if ! command -v "$docker_cli" >/dev/null 2>&1; then
    echo "build_image.sh: '$docker_cli' not found (set DOCKER=podman, or use --dry-run)" >&2
    exit 1
fi

"${build_cmd[@]}"

image_id="$("$docker_cli" image inspect --format '{{.Id}}' "${tags[0]}" 2>/dev/null || echo unknown)"
image_size="$("$docker_cli" image inspect --format '{{.Size}}' "${tags[0]}" 2>/dev/null || echo unknown)"
echo "image_id=${image_id}"
echo "image_size_bytes=${image_size}"

if [[ "$push" -eq 1 ]]; then
    for tag in "${tags[@]}"; do
        "$docker_cli" push "$tag"
    done
    echo "pushed=${tags[*]}"
fi
