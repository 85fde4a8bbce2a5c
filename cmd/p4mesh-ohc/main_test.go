package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--host is required"},
		{[]string{"--host", "h1"}, "at least one --controller"},
		{[]string{"--host", "h1", "--controller", "127.0.0.1:1", "--log-level", "loud"}, "--log-level"},
		{[]string{"--host", "h1", "--controller", "127.0.0.1:1", "--device-config", "/nonexistent"}, "/nonexistent"},
		{[]string{"--host", "h1", "--controller", "127.0.0.1:1", "--source-grace", "soon"}, "flag -source-grace"},
		{[]string{"--host", "h1", "--controller", "127.0.0.1:1", "--source-grace", "0s"}, "--source-grace"},
	} {
		var stderr bytes.Buffer
		if code := run(context.Background(), tc.args, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("run(%q) = %d, %q; want 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}
