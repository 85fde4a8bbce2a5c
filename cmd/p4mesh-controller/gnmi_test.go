package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// TestGNMIMaxMsgSize sends the gNMI server a Set above gRPC's default 4 MB
// limit. A whole configuration of some 15k endpoints is that large; a 5 MB
// value for one leaf is as large and cheap to refuse, and what is tested is
// which refusal: the server's (InvalidArgument, the value is no name) once
// the message got in, gRPC's (ResourceExhausted) when it did not.
func TestGNMIMaxMsgSize(t *testing.T) {
	val, err := json.Marshal(strings.Repeat("x", 5<<20))
	if err != nil {
		t.Fatal(err)
	}
	set := &gnmi.SetRequest{Update: []*gnmi.Update{{
		Path: &gnmi.Path{Elem: []*gnmi.PathElem{{Name: "p4mesh"}, {Name: "controller"}, {Name: "config"}, {Name: "name"}}},
		Val:  &gnmi.TypedValue{Value: &gnmi.TypedValue_JsonIetfVal{JsonIetfVal: val}},
	}}}
	for _, tc := range []struct {
		flags []string
		want  codes.Code
	}{
		{nil, codes.InvalidArgument},
		{[]string{"--gnmi-max-msg-size", "4194304"}, codes.ResourceExhausted},
	} {
		dir := t.TempDir()
		cfgPath := writeConfig(t, filepath.Join(dir, "c1.yaml"), closedPort(t), nil)
		c := start(t, append([]string{
			"--config", cfgPath, "--data-dir", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0",
			"--gnmi-addr", "127.0.0.1:0", "--gnmi-insecure"}, tc.flags...)...)
		conn, err := grpc.NewClient(c.gnmi.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		_, err = gnmi.NewGNMIClient(conn).Set(t.Context(), set)
		conn.Close()
		if status.Code(err) != tc.want {
			t.Errorf("with %q a %d-byte Set = %v, want %v", tc.flags, len(val), err, tc.want)
		}
		c.stop(t)
	}
}
