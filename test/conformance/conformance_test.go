package conformance

import (
	"net"
	"os"
	"strconv"
	"testing"

	p4configv1 "github.com/p4lang/p4runtime/go/p4/config/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/p4mesh/p4mesh/dataplane"
	"github.com/p4mesh/p4mesh/p4"
)

// serve starts an in-process p4mesh-switch P4Runtime server for info on
// 127.0.0.1:0 and returns its address.
func serve(t *testing.T, info *p4configv1.P4Info) string {
	t.Helper()
	srv, err := dataplane.NewServer(dataplane.Options{P4Info: info})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := dataplane.NewGRPCServer()
	srv.Register(g)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

func loadP4Info(t *testing.T, path string) *p4configv1.P4Info {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	info := &p4configv1.P4Info{}
	if err := prototext.Unmarshal(b, info); err != nil {
		if err2 := proto.Unmarshal(b, info); err2 != nil {
			t.Fatalf("%s is neither text (%v) nor binary (%v) P4Info", path, err, err2)
		}
	}
	return info
}

// TestDataplaneUnitP4Info runs the suite against p4mesh-switch with the
// hand-written P4Info of dataplane's tests.
func TestDataplaneUnitP4Info(t *testing.T) {
	info := loadP4Info(t, "../../dataplane/testdata/unit.p4info.txtpb")
	Run(t, Target{Addr: serve(t, info), P4Info: info, FixedPipeline: true})
}

// TestDataplaneVPCPeering runs the suite against p4mesh-switch with the
// P4Info of vpc_peering.p4.
func TestDataplaneVPCPeering(t *testing.T) {
	info, err := p4.P4Info()
	if err != nil {
		t.Fatal(err)
	}
	Run(t, Target{Addr: serve(t, info), P4Info: info, FixedPipeline: true})
}

// TestExternalTarget runs the suite against the target named by the
// environment, such as BMv2's simple_switch_grpc:
//
//	P4RT_TARGET=host:port        the server (required)
//	P4RT_DEVICE_ID=1             its device id
//	P4RT_DEVICE_CONFIG=path      the device config to push (the BMv2 JSON)
//	P4RT_P4INFO=path             the P4Info (text or binary); default vpc_peering.p4's
//	P4RT_FIXED_PIPELINE=1        the target refuses any other P4Info
func TestExternalTarget(t *testing.T) {
	addr := os.Getenv("P4RT_TARGET")
	if addr == "" {
		t.Skip("P4RT_TARGET is not set (host:port of a P4Runtime server such as simple_switch_grpc)")
	}
	tg := Target{Addr: addr, FixedPipeline: os.Getenv("P4RT_FIXED_PIPELINE") == "1"}
	if v := os.Getenv("P4RT_DEVICE_ID"); v != "" {
		id, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("P4RT_DEVICE_ID: %v", err)
		}
		tg.DeviceID = id
	}
	if path := os.Getenv("P4RT_DEVICE_CONFIG"); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		tg.DeviceConfig = b
	}
	if path := os.Getenv("P4RT_P4INFO"); path != "" {
		tg.P4Info = loadP4Info(t, path)
	} else {
		info, err := p4.P4Info()
		if err != nil {
			t.Fatal(err)
		}
		tg.P4Info = info
	}
	Run(t, tg)
}
