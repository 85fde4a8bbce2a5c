//go:build linux

package xsk

import "github.com/cilium/ebpf/asm"

// xdpPass is XDP_PASS: bpf_redirect_map returns the low bits of its flags
// when the key has no socket.
const xdpPass = 2

// redirectProgram is the XDP program: redirect the frame to the socket in
// the XSKMAP (fd xmap) at the frame's receive queue, or pass it to the host
// stack when there is none. Built from instructions: there is no C compiler
// for BPF where the switch is built.
func redirectProgram(xmap int) asm.Instructions {
	return asm.Instructions{
		// r2 = ctx->rx_queue_index (struct xdp_md: data, data_end,
		// data_meta, ingress_ifindex, rx_queue_index).
		asm.LoadMem(asm.R2, asm.R1, 16, asm.Word),
		asm.LoadMapPtr(asm.R1, xmap),
		asm.Mov.Imm(asm.R3, xdpPass),
		asm.FnRedirectMap.Call(),
		asm.Return(),
	}
}
