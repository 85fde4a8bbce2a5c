package identity

import (
	"crypto/x509"
	"net/url"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, s := range []string{"spiffe://p4mesh/host/h1", "spiffe://lab.example/controller/c-2", "spiffe://p4mesh/operator/alice", "spiffe://p4mesh/viewer/bob"} {
		id, err := Parse(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if id.String() != s || id.URL().String() != s {
			t.Fatalf("%s round-trips to %s / %s", s, id, id.URL())
		}
	}
	for s, want := range map[string]string{
		"https://p4mesh/host/h1":        "want spiffe://",
		"spiffe://p4mesh/host":          "want spiffe://",
		"spiffe://p4mesh/host/h1/extra": "want spiffe://",
		"spiffe://p4mesh/admin/h1":      `kind "admin"`,
		"spiffe://p4mesh/host/-h1":      `name "-h1"`,
		"spiffe://p4mesh:8443/host/h1":  "want spiffe://",
		"spiffe://user@p4mesh/host/h1":  "want spiffe://",
		"spiffe://p4mesh/host/h1?x=1":   "want spiffe://",
		"spiffe://p4 mesh/host/h1":      "",
		"spiffe:///host/h1":             "trust domain",
		"spiffe://p4mesh/host/h%2F1":    "",
	} {
		_, err := Parse(s)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error mentioning %q", s, err, want)
		}
	}
}

func TestFromCertWantsExactlyOneSPIFFEURI(t *testing.T) {
	u := func(s string) *url.URL { p, _ := url.Parse(s); return p }
	one := &x509.Certificate{URIs: []*url.URL{u("https://example.com/x"), u("spiffe://p4mesh/host/h1")}}
	if id, err := FromCert(one); err != nil || id.Name != "h1" || id.Kind != Host {
		t.Fatalf("one SPIFFE URI among others: %v, %v", id, err)
	}
	if _, err := FromCert(&x509.Certificate{}); err == nil || !strings.Contains(err.Error(), "no spiffe://") {
		t.Fatalf("no URI: %v", err)
	}
	two := &x509.Certificate{URIs: []*url.URL{u("spiffe://p4mesh/host/h1"), u("spiffe://p4mesh/operator/root")}}
	if _, err := FromCert(two); err == nil || !strings.Contains(err.Error(), "exactly one") {
		t.Fatalf("two SPIFFE URIs: %v", err)
	}
}
