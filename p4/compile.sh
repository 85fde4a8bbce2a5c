#!/usr/bin/env bash
# Compiles p4/v1model/vpc_peering.p4 for BMv2 simple_switch_grpc:
#   p4/v1model/build/vpc_peering.json          BMv2 device config (not committed)
#   p4/v1model/build/vpc_peering.p4info.txtpb  P4Info (committed; embedded by package p4)
#
# Uses p4c-bm2-ss from PATH, else the p4lang/p4c container image when a docker
# engine answers (override the image with P4C_IMAGE). The P4Info must come from
# a p4c recent enough to write .txtpb files (1.2.4.x, 2024 or later). After
# compiling, run `go test ./p4/` to check the new P4Info against the source.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p p4/v1model/build

args=(--arch v1model --std p4-16
      -o p4/v1model/build/vpc_peering.json
      --p4runtime-files p4/v1model/build/vpc_peering.p4info.txtpb
      p4/v1model/vpc_peering.p4)

if command -v p4c-bm2-ss >/dev/null 2>&1; then
    echo "compile.sh: $(p4c-bm2-ss --version 2>&1 | head -n 1)"
    p4c-bm2-ss "${args[@]}"
elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    image="${P4C_IMAGE:-p4lang/p4c:latest}"
    echo "compile.sh: p4c-bm2-ss not on PATH, using docker image ${image}"
    # Run as the calling user so the outputs are not owned by root.
    docker run --rm -u "$(id -u):$(id -g)" -v "${PWD}:/work" -w /work \
        "${image}" p4c-bm2-ss "${args[@]}"
else
    echo "compile.sh: cannot compile p4/v1model/vpc_peering.p4: p4c-bm2-ss is not on PATH" >&2
    echo "and no docker engine answers 'docker info'. Install p4c" >&2
    echo "(https://github.com/p4lang/p4c) or start docker and pull p4lang/p4c." >&2
    echo "The committed p4/v1model/build/vpc_peering.p4info.txtpb is unchanged." >&2
    exit 1
fi
echo "compile.sh: wrote p4/v1model/build/vpc_peering.json and p4/v1model/build/vpc_peering.p4info.txtpb"
