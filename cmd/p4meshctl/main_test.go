package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

func TestPipelineShow(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"pipeline", "show"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	// Columns are compared with their padding squeezed to one space.
	got := strings.Join(strings.Fields(out.String()), " ")
	for _, want := range []string{
		"VpcIngress.vnet_destination 0x02000007 vni:24/exact dst_ip:32/exact",
		"VpcIngress.encap_to_host 0x0100000b dst_vni:24 host_ip:32 dmac:48",
		"via gateway_selector",
		"gateway_digest_t",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("pipeline show lacks %q:\n%s", want, out.String())
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{nil, {"pipeline"}, {"pipeline", "frobnicate"}, {"tables"}, {"get", "/", "--max-msg-size", "0"}} {
		if err := run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{}); !errors.Is(err, errUsage) {
			t.Errorf("run(%q) = %v; want usage error", args, err)
		}
	}
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"pipeline", "push", "--bmv2-json", "/nonexistent.json"}, &bytes.Buffer{}, &stderr)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent.json") {
		t.Errorf("push with a missing JSON = %v; want an error naming the file", err)
	}
}
