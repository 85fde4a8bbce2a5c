// Package bench measures p4mesh-switch forwarding real traffic between
// network namespaces: two VMs of one VPC on one host, each a namespace
// with a veth into the test's namespace, where an in-process
// dataplane.Switch binds the other ends with AF_PACKET and is programmed
// over P4Runtime through a real gRPC server on loopback, as the on-host
// controller would program it. The VMs' ARP is answered by the pipeline's
// arp_proxy, so nothing but the switch connects them.
//
// Tests here need root and skip without it; the throughput benchmark uses
// iperf3 (UDP, 64-byte payloads) and falls back to a ping flood.
// BenchmarkVethRate (rate_test.go) measures saturation and lossless rates
// per port mode, path and frame size with a paced sendmmsg generator and a
// ring counter in the test process. BenchmarkWriteProcess
// (writeproc_test.go) writes entries from a child process over loopback
// gRPC.
//
// The control-plane benchmarks run controllers, gNMI servers, OHCs and
// switches in one process over loopback gRPC and need no root: convergence
// and memory (controlplane_test.go), gNMI Set to switch entry
// (gnmi_test.go), idle watches (watchload_test.go), and the four-shard,
// 1,000-VPC topology at 10k, 100k and 1M endpoints (scale_test.go).
package bench
