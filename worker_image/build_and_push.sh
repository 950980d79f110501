#!/usr/bin/env bash
# Build the universal worker image and push it to ECR. NEEDS a running Docker engine
# (docker build + docker push) and the AWS CLI v2 (for the ECR login); neither runs on the
# lambdaflow dev machines, where `python worker_image/check_image.py` is the check.
#
#   worker_image/build_and_push.sh [REPOSITORY] [TAG]
#
#   REPOSITORY  ECR repository name (default: lambdaflow, as `lambdaflow deploy` creates)
#   TAG         image tag (default: the lambdaflow version, e.g. 0.1.0)
#   AWS_REGION / AWS_DEFAULT_REGION  region (default: us-east-1)
#
# The last line printed is the image URI to give to `lambdaflow deploy --image-uri`.
# The build context is a staged copy of setup.py, README.md, native/, lambdaflow/ and
# worker_image/requirements.txt, so a local .venv or build/ never reaches the daemon.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPOSITORY="${1:-lambdaflow}"
VERSION="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$ROOT/lambdaflow/_version.py")"
TAG="${2:-$VERSION}"
REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}"

for tool in docker aws; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "build_and_push.sh: '$tool' not found; install it (Docker engine, AWS CLI v2)" >&2
        exit 1
    fi
done
if ! docker info >/dev/null 2>&1; then
    echo "build_and_push.sh: no Docker engine answers; start Docker, or run" \
         "'python worker_image/check_image.py' for the check that needs no engine" >&2
    exit 1
fi

ACCOUNT="$(aws sts get-caller-identity --query Account --output text)"
REGISTRY="$ACCOUNT.dkr.ecr.$REGION.amazonaws.com"
IMAGE_URI="$REGISTRY/$REPOSITORY:$TAG"

CONTEXT="$(mktemp -d)"
trap 'rm -rf "$CONTEXT"' EXIT
mkdir -p "$CONTEXT/worker_image"
cp "$ROOT/setup.py" "$ROOT/README.md" "$CONTEXT/"
cp "$ROOT/worker_image/Dockerfile" "$ROOT/worker_image/requirements.txt" "$CONTEXT/worker_image/"
cp -r "$ROOT/native" "$CONTEXT/native"
# The package sources only: no bytecode, no locally built extension modules.
tar -C "$ROOT" --exclude='__pycache__' --exclude='*.so' --exclude='*.pyc' -cf - lambdaflow \
    | tar -C "$CONTEXT" -xf -

echo "building $IMAGE_URI (linux/amd64) ..." >&2
docker build --platform linux/amd64 --provenance=false \
    -f "$CONTEXT/worker_image/Dockerfile" -t "$IMAGE_URI" "$CONTEXT" >&2

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
