#!/usr/bin/env bash
# Build one worker image variant and push it to ECR. NEEDS a running Docker engine
# (docker build + docker push) and the AWS CLI v2 (for the ECR login); neither runs on the
# lambdaflow dev machines, where `python worker_image/check_image.py --variant V` is the
# check.
#
#   worker_image/build_and_push.sh VARIANT [REPOSITORY] [TAG]
#       [--base-digest sha256:...] [--allow-unpinned-base]
#
#   VARIANT     py3.11 | py3.12 | py3.13 | mxnet-py3.11 (lambdaflow/variants.py): the one
#               whose Python is the driver's (`lambdaflow deploy` prints it)
#   REPOSITORY  ECR repository name (default: lambdaflow, as `lambdaflow deploy` creates)
#   TAG         image tag (default: <lambdaflow version>-<VARIANT>, what deploy expects)
#   --base-digest         the base image's digest, when lambdaflow/variants.py has none
#                         (find it with `docker buildx imagetools inspect BASE`)
#   --allow-unpinned-base build from the base's moving tag (not reproducible)
#
# The region is the one `lambdaflow deploy` uses: $LAMBDAFLOW_REGION, else the AWS
# CLI's own resolution (AWS_REGION, AWS_DEFAULT_REGION, the profile's region); it is an
# error when none is set (the script used to assume us-east-1).
# The last line printed is the image URI. The build context is a staged copy of
# setup.py, README.md, native/, lambdaflow/ and worker_image/, so a local .venv or build/
# never reaches the daemon.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
POSITIONAL=()
BASE_DIGEST=""
ALLOW_UNPINNED=0
while [ $# -gt 0 ]; do
    case "$1" in
        --base-digest) BASE_DIGEST="$2"; shift 2 ;;
        --allow-unpinned-base) ALLOW_UNPINNED=1; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) POSITIONAL+=("$1"); shift ;;
    esac
done
if [ ${#POSITIONAL[@]} -lt 1 ]; then
    echo "build_and_push.sh: give the VARIANT (see --help)" >&2
    exit 2
fi
VARIANT="${POSITIONAL[0]}"
REPOSITORY="${POSITIONAL[1]:-lambdaflow}"
PYTHON="${PYTHON:-python3}"

# The variant's Dockerfile, base and pinned digest, from lambdaflow/variants.py.
read -r DOCKERFILE BASE PINNED < <(PYTHONPATH="$ROOT" "$PYTHON" -c '
import sys
from lambdaflow.variants import BASE_DIGESTS, get_variant
v = get_variant(sys.argv[1])
print(v.dockerfile, v.base, BASE_DIGESTS.get(v.base) or "-")
' "$VARIANT")
VERSION="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$ROOT/lambdaflow/_version.py")"
TAG="${POSITIONAL[2]:-$VERSION-$VARIANT}"

DIGEST="${BASE_DIGEST:-$PINNED}"
if [ "$DIGEST" = "-" ]; then
    if [ "$ALLOW_UNPINNED" -ne 1 ]; then
        echo "build_and_push.sh: the base $BASE is not pinned by digest in" \
             "lambdaflow/variants.py; pass --base-digest sha256:... (from" \
             "'docker buildx imagetools inspect $BASE'), or --allow-unpinned-base" >&2
        exit 1
    fi
    BASE_REF="$BASE"
    echo "build_and_push.sh: WARNING: building from the unpinned tag $BASE" >&2
else
    case "$DIGEST" in
        sha256:[0-9a-f]*) ;;
        *) echo "build_and_push.sh: --base-digest $DIGEST is not sha256:<hex>" >&2; exit 2 ;;
    esac
    BASE_REF="$BASE@$DIGEST"
fi

REGION="${LAMBDAFLOW_REGION:-${AWS_REGION:-${AWS_DEFAULT_REGION:-}}}"
for tool in docker aws; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "build_and_push.sh: '$tool' not found; install it (Docker engine, AWS CLI v2)" >&2
        exit 1
    fi
done
if [ -z "$REGION" ]; then
    REGION="$(aws configure get region || true)"
fi
if [ -z "$REGION" ]; then
    echo "build_and_push.sh: no region: set LAMBDAFLOW_REGION (or AWS_REGION), or a" \
         "region in your AWS profile; use the one you deploy to" >&2
    exit 1
fi
if ! docker info >/dev/null 2>&1; then
    echo "build_and_push.sh: no Docker engine answers; start Docker, or run" \
         "'python worker_image/check_image.py --variant $VARIANT' for the check that" \
         "needs no engine" >&2
    exit 1
fi

ACCOUNT="$(aws sts get-caller-identity --query Account --output text)"
REGISTRY="$ACCOUNT.dkr.ecr.$REGION.amazonaws.com"
IMAGE_URI="$REGISTRY/$REPOSITORY:$TAG"

CONTEXT="$(mktemp -d)"
trap 'rm -rf "$CONTEXT"' EXIT
mkdir -p "$CONTEXT/worker_image"
cp "$ROOT/setup.py" "$ROOT/README.md" "$CONTEXT/"
cp -r "$ROOT/worker_image/locks" "$ROOT/worker_image/$DOCKERFILE" "$CONTEXT/worker_image/"
cp -r "$ROOT/native" "$CONTEXT/native"
# The package sources only: no bytecode, no locally built extension modules.
tar -C "$ROOT" --exclude='__pycache__' --exclude='*.so' --exclude='*.pyc' -cf - lambdaflow \
    | tar -C "$CONTEXT" -xf -

echo "building $IMAGE_URI (linux/amd64, variant $VARIANT, base $BASE_REF) ..." >&2
docker build --platform linux/amd64 --provenance=false \
    --build-arg "BASE_IMAGE=$BASE_REF" --build-arg "VARIANT=$VARIANT" \
    -f "$CONTEXT/worker_image/$DOCKERFILE" -t "$IMAGE_URI" "$CONTEXT" >&2

echo "logging in to $REGISTRY ..." >&2
aws ecr get-login-password --region "$REGION" \
    | docker login --username AWS --password-stdin "$REGISTRY" >&2
if ! aws ecr describe-repositories --region "$REGION" --repository-names "$REPOSITORY" \
        >/dev/null 2>&1; then
    echo "build_and_push.sh: ECR repository '$REPOSITORY' does not exist in $REGION;" \
         "run 'lambdaflow deploy --bucket BUCKET' first (it creates the repository)" >&2
    exit 1
fi
docker push "$IMAGE_URI" >&2
echo "$IMAGE_URI"
