#!/usr/bin/env bash
# Compiles p4mesh's pipeline for each architecture whose compiler is
# installed, and diffs each P4Info against the committed one:
#
#   v1model  p4/v1model/vpc_peering.p4 with p4c-bm2-ss (else the p4lang/p4c
#            docker image, P4C_IMAGE, when a docker engine answers):
#              p4/v1model/build/vpc_peering.json   BMv2 device config (not committed)
#   tna      p4/tna/vpc_peering.p4 with bf-p4c --p4runtime-force-std-externs
#            (p4c's Tofino backend, as Stratum takes it):
#              p4/tna/build/out/                   bf-p4c's output: .conf, bfrt.json,
#                                                  pipe/context.json, pipe/tofino.bin
#            without bf-p4c, p4test with TNA's includes (P4C_TNA_INCLUDE, the
#            directory of tna.p4: p4c's backends/tofino/bf-p4c/p4include)
#            checks that the front end takes the program; no P4Info then.
#   pna      p4/pna/vpc_peering.p4 with p4c-dpdk --arch pna:
#              p4/pna/build/out/                   .spec, bf-rt.json, context.json, .conf
#
# Each compiler's P4Info replaces the committed <arch>/build/
# vpc_peering.p4info.txtpb (so git diff shows any change) and the
# differences are printed. P4_CHECK=1 makes a difference an error (CI).
# Which architectures: the arguments (default: all three). After
# compiling, run `go test ./p4/` to check every P4Info against its source.
#
# Skipped architectures are named at the end with the compiler they need;
# the committed P4Info of a skipped one is unchanged.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

archs=("$@")
[ ${#archs[@]} -eq 0 ] && archs=(v1model tna pna)

compiled=() skipped=() changed=()

have() { command -v "$1" >/dev/null 2>&1; }

# p4info ARCH NEW: put the compiler's P4Info in place and report a change.
p4info() {
    local arch=$1 new=$2 committed="p4/$1/build/vpc_peering.p4info.txtpb"
    if cmp -s "$new" "$committed"; then
        echo "compile.sh: $arch: the P4Info is the committed one"
    else
        echo "compile.sh: $arch: the P4Info differs from the committed one:"
        diff -u "$committed" "$new" || true
        changed+=("$arch")
    fi
    cp "$new" "$committed"
    rm -f "$new"
    compiled+=("$arch")
}

compile_v1model() {
    local args=(--arch v1model --std p4-16
                -o p4/v1model/build/vpc_peering.json
                --p4runtime-files p4/v1model/build/new.p4info.txtpb
                p4/v1model/vpc_peering.p4)
    if have p4c-bm2-ss; then
        echo "compile.sh: v1model: $(p4c-bm2-ss --version 2>&1 | head -n 1)"
        p4c-bm2-ss "${args[@]}"
    elif have docker && docker info >/dev/null 2>&1; then
        local image="${P4C_IMAGE:-p4lang/p4c:latest}"
        echo "compile.sh: v1model: p4c-bm2-ss not on PATH, using docker image ${image}"
        # Run as the calling user so the outputs are not owned by root.
        docker run --rm -u "$(id -u):$(id -g)" -v "${PWD}:/work" -w /work \
            "${image}" p4c-bm2-ss "${args[@]}"
    else
        skipped+=("v1model (needs p4c-bm2-ss from https://github.com/p4lang/p4c, or a docker engine for p4lang/p4c)")
        return
    fi
    p4info v1model p4/v1model/build/new.p4info.txtpb
}

compile_tna() {
    local out=p4/tna/build/out bf=""
    for c in bf-p4c p4c-barefoot; do
        if have "$c"; then bf=$c; break; fi
    done
    if [ -n "$bf" ]; then
        echo "compile.sh: tna: $($bf --version 2>&1 | head -n 1)"
        mkdir -p "$out"
        "$bf" --target tofino --arch tna --std p4-16 \
            --p4runtime-force-std-externs \
            --p4runtime-files p4/tna/build/new.p4info.txtpb \
            -o "$out" p4/tna/vpc_peering.p4
        p4info tna p4/tna/build/new.p4info.txtpb
        return
    fi
    if have p4test && [ -n "${P4C_TNA_INCLUDE:-}" ] && [ -f "${P4C_TNA_INCLUDE}/tna.p4" ]; then
        echo "compile.sh: tna: no bf-p4c; p4test's front end with ${P4C_TNA_INCLUDE}/tna.p4 (no P4Info)"
        p4test --std p4-16 -D__TARGET_TOFINO__=1 -I "${P4C_TNA_INCLUDE}" p4/tna/vpc_peering.p4
        skipped+=("tna's P4Info (p4test checked the program; the P4Info needs bf-p4c, p4c's Tofino backend)")
        return
    fi
    skipped+=("tna (needs bf-p4c, p4c's Tofino backend; or p4test with P4C_TNA_INCLUDE=<dir of tna.p4> for the front end only)")
}

compile_pna() {
    local out=p4/pna/build/out
    if ! have p4c-dpdk; then
        skipped+=("pna (needs p4c-dpdk, p4c's DPDK backend)")
        return
    fi
    echo "compile.sh: pna: $(p4c-dpdk --version 2>&1 | head -n 1)"
    mkdir -p "$out/pipe"
    p4c-dpdk --arch pna --std p4-16 \
        --p4runtime-files p4/pna/build/new.p4info.txtpb \
        --bf-rt-schema "$out/bf-rt.json" \
        --context "$out/pipe/context.json" \
        --tdi-builder-conf "$out/vpc_peering.conf" \
        -o "$out/pipe/vpc_peering.spec" p4/pna/vpc_peering.p4
    p4info pna p4/pna/build/new.p4info.txtpb
}

for arch in "${archs[@]}"; do
    case "$arch" in
        v1model) compile_v1model ;;
        tna)     compile_tna ;;
        pna)     compile_pna ;;
        *) echo "compile.sh: no architecture $arch (v1model, tna, pna)" >&2; exit 2 ;;
    esac
done

echo "compile.sh: compiled: ${compiled[*]:-none}"
if [ ${#skipped[@]} -gt 0 ]; then
    echo "compile.sh: SKIPPED, their committed P4Infos unchanged:"
    for s in "${skipped[@]}"; do echo "compile.sh:   $s"; done
fi
if [ ${#changed[@]} -gt 0 ]; then
    echo "compile.sh: P4Info changed: ${changed[*]} (see git diff; then go test ./p4/)"
    if [ "${P4_CHECK:-}" = 1 ]; then exit 1; fi
fi
