// Package api holds the protobuf definitions of p4mesh's gRPC services
// (proto/) and their generated Go code (p4meshv1/), and the device-config
// messages of the Stratum-based targets p4rt packs pipelines for
// (targetsv1/).
package api

// Regenerate with protoc 3.21+, protoc-gen-go v1.36.12 and
// protoc-gen-go-grpc v1.6.0 on PATH:
//
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0
//go:generate protoc -I proto --go_out=. --go_opt=module=github.com/p4mesh/p4mesh/api --go-grpc_out=. --go-grpc_opt=module=github.com/p4mesh/p4mesh/api p4mesh/v1/p4mesh.proto
//go:generate protoc -I proto --go_out=. --go_opt=module=github.com/p4mesh/p4mesh/api p4mesh/targets/v1/devconfig.proto
