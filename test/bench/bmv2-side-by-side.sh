#!/bin/bash
# Runs the forwarding and write benchmarks on BMv2 and on p4mesh-switch in
# one run, on the same veth wiring (issue 15's side-by-side numbers). Needs
# root, simple_switch_grpc and p4c-bm2-ss on PATH (p4lang/behavioral-model
# and p4lang/p4c); exits 2 without changing anything where they are not.
#
#   bash test/bench/bmv2-side-by-side.sh            # both benchmarks
#   P4MESH_RATE_SINK=xdp bash test/bench/bmv2-side-by-side.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
for tool in simple_switch_grpc p4c-bm2-ss; do
	if ! command -v "$tool" >/dev/null; then
		echo "bmv2-side-by-side: $tool is not on PATH: BMv2 and p4c are needed to compare; nothing run" >&2
		exit 2
	fi
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# The same program and P4Info p4mesh-switch runs (p4/v1model/build holds
# the P4Info p4c emits; the JSON is BMv2's own).
p4c-bm2-ss --arch v1model --std p4-16 -o "$out/vpc_peering.json" \
	--p4runtime-files "$out/vpc_peering.p4info.txtpb" p4/v1model/vpc_peering.p4
if ! diff -q "$out/vpc_peering.p4info.txtpb" p4/v1model/build/vpc_peering.p4info.txtpb >/dev/null; then
	echo "bmv2-side-by-side: p4c's P4Info differs from the committed p4/v1model/build/vpc_peering.p4info.txtpb:" >&2
	diff "$out/vpc_peering.p4info.txtpb" p4/v1model/build/vpc_peering.p4info.txtpb >&2 || true
	exit 1
fi
export P4MESH_BMV2_JSON="$out/vpc_peering.json"
go test -c -o "$out/bench.test" ./test/bench/
cd test/bench
echo "== forwarding: BMv2, then p4mesh-switch (mmap, xdp), sink ${P4MESH_RATE_SINK:-wire}"
P4MESH_RATE_MODES=${P4MESH_RATE_MODES:-bmv2,mmap,xdp} "$out/bench.test" -test.run '^$' -test.bench VethRate -test.benchtime 1x
echo "== writes from another process: BMv2, then p4mesh-switch"
P4MESH_WRITE_TARGET=bmv2 "$out/bench.test" -test.run '^$' -test.bench 'WriteProcess/batch=.*/inflight=1$' -test.benchtime 1x
"$out/bench.test" -test.run '^$' -test.bench 'WriteProcess/batch=.*/inflight=1$' -test.benchtime 1x
