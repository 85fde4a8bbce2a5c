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
		{[]string{"--host", "h1", "--controller", "127.0.0.1:1,10.0.0.2"}, `invalid value "127.0.0.1:1,10.0.0.2" for flag -controller: replica 2 of "127.0.0.1:1,10.0.0.2": "10.0.0.2" is not host:port`},
		{[]string{"--host", "h1", "--controller", "127.0.0.1:1,127.0.0.1:1"}, "127.0.0.1:1 is also replica 1"},
		{[]string{"--host", "h1", "--controller", "127.0.0.1:1,127.0.0.1:2", "--controller", "127.0.0.1:2"}, "127.0.0.1:2 is already in --controller 127.0.0.1:1,127.0.0.1:2"},
	} {
		var stderr bytes.Buffer
		if code := run(context.Background(), tc.args, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("run(%q) = %d, %q; want 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}
