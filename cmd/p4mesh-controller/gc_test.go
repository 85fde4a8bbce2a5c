package main

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"math"
	"strings"
	"testing"
)

func TestGCSettings(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	for _, c := range []struct {
		name        string
		o           gcOptions
		env         func(string) string
		limit       int64
		percent     int
		limitFrom   string
		percentFrom string
	}{
		{"nothing: Go's defaults", gcOptions{}, env(), math.MaxInt64, 100, "default", "default"},
		{"env limit", gcOptions{}, env("GOMEMLIMIT", "3GiB"), 3 << 30, 100, "env", "default"},
		{"env both", gcOptions{}, env("GOMEMLIMIT", "512MiB", "GOGC", "off"), 512 << 20, -1, "env", "env"},
		{"flags win over env", gcOptions{memoryLimit: "2GiB", gcPercent: "200"}, env("GOMEMLIMIT", "3GiB", "GOGC", "50"), 2 << 30, 200, "flag", "flag"},
		{"flag limit off over env", gcOptions{memoryLimit: "off"}, env("GOMEMLIMIT", "3GiB"), math.MaxInt64, 100, "flag", "default"},
		{"bytes", gcOptions{memoryLimit: "1000000"}, env(), 1000000, 100, "flag", "default"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := c.o.check(c.env)
			if err != nil {
				t.Fatal(err)
			}
			if s.limit != c.limit || s.percent != c.percent || s.limitFrom != c.limitFrom || s.percentFrom != c.percentFrom {
				t.Errorf("got %+v, want limit %d percent %d from %s/%s", s, c.limit, c.percent, c.limitFrom, c.percentFrom)
			}
		})
	}
	for _, c := range []struct {
		o    gcOptions
		env  func(string) string
		want string
	}{
		{gcOptions{memoryLimit: "2GB"}, env(), "--memory-limit"},
		{gcOptions{memoryLimit: "-1"}, env(), "--memory-limit"},
		{gcOptions{}, env("GOMEMLIMIT", "lots"), "GOMEMLIMIT"},
		{gcOptions{gcPercent: "-5"}, env(), "--gc-percent"},
		{gcOptions{gcPercent: "off"}, env(), "no memory limit"},
		{gcOptions{}, env("GOGC", "off"), "no memory limit"},
	} {
		_, err := c.o.check(c.env)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want a usage error naming %s", c.o, err, c.want)
		}
	}
}

// What the start-up log says of the settings the flags decided.
func TestGCSettingsLogged(t *testing.T) {
	o, err := parseFlags([]string{"--data-dir", t.TempDir(), "--memory-limit", "1536MiB", "--gc-percent", "300"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}})).Info("garbage collector", o.gcSettings.logAttrs()...)
	if want := "level=INFO msg=\"garbage collector\" memory_limit=1536MiB memory_limit_from=flag gc_percent=300 gc_percent_from=flag\n"; buf.String() != want {
		t.Errorf("logged %q, want %q", buf.String(), want)
	}
}
