package controller

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// The files a controller saves in --data-dir carry a SHA-256 of their
// content, checked when they are read. Saves are atomic, but a file can
// still be damaged afterwards (a failing disk, a backup restored half way,
// a hand edit), and YAML cut short after a complete entry still parses:
// without the check a controller would start with 50,000 of its 100,000
// endpoints and say nothing.
//
// The saved configuration stays YAML an operator can read and feed back
// with --config: a comment header saying what the file is, the YAML, and
// a last comment line with the checksum of everything above it:
//
//	# p4mesh-controller's saved configuration, ...
//	controller: c1
//	...
//	# p4mesh-checksum: sha256:<64 hex digits>
//
// The header is what tells a file cut short (it has the header, not the
// checksum line) from one an older p4mesh wrote (neither): that one is
// accepted and rewritten with a checksum. A legacy file damaged before
// the upgrade cannot be told from a sound one; YAML that does not parse
// is still refused.

const (
	savedMark   = "# p4mesh-controller's saved configuration"
	savedHeader = savedMark + `, checked at start against the
# checksum on its last line: do not edit it, change the configuration over
# gNMI or with --config and --config-overrides-saved.
`
	checksumLine = "# p4mesh-checksum: "
	// checksumForm is the checksum line as the errors describe it.
	checksumForm = checksumLine + "sha256:<64 hex digits>"
)

// sha256Text is the checksum of b as the saved files write it.
func sha256Text(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// damagedError is a saved file whose content does not match its
// checksum, or that lacks one it should have.
type damagedError struct {
	path   string
	detail string // what was expected and what was found
}

func (e *damagedError) Error() string { return e.path + " is damaged: " + e.detail }

// sealConfig frames the YAML of a configuration to save: the header, the
// YAML, and the checksum line over both.
func sealConfig(yaml []byte) []byte {
	b := make([]byte, 0, len(savedHeader)+len(yaml)+len(checksumForm)+2)
	b = append(b, savedHeader...)
	b = append(b, yaml...)
	if len(yaml) > 0 && yaml[len(yaml)-1] != '\n' {
		b = append(b, '\n')
	}
	return append(b, checksumLine+sha256Text(b)+"\n"...)
}

// unsealConfig checks data, the saved configuration read from path, and
// returns the YAML to parse. legacy reports a file with neither header
// nor checksum line, as written before saved files had a checksum.
func unsealConfig(path string, data []byte) (yaml []byte, legacy bool, err error) {
	i := bytes.LastIndex(data, []byte(checksumLine))
	if i > 0 && data[i-1] != '\n' {
		i = -1 // not at the start of a line: not the checksum line
	}
	if i < 0 {
		if !bytes.HasPrefix(data, []byte(savedMark)) {
			return data, true, nil
		}
		return nil, false, &damagedError{path, fmt.Sprintf(
			"it has no checksum line: expected a last line %q, found %q; it was probably cut short", checksumForm, lastLine(data))}
	}
	rest := string(data[i+len(checksumLine):])
	want, ok := strings.CutSuffix(rest, "\n")
	if !ok || !isChecksum(want) {
		return nil, false, &damagedError{path, fmt.Sprintf("its checksum line is %q, expected %q", clip(checksumLine+rest), checksumForm)}
	}
	if got := sha256Text(data[:i]); got != want {
		return nil, false, &damagedError{path, fmt.Sprintf(
			"its checksum line expects %s, but what is above it has %s", want, got)}
	}
	return data[:i], false, nil
}

// isChecksum reports whether s is "sha256:" and 64 lower-case hex digits,
// as sha256Text writes.
func isChecksum(s string) bool {
	hexPart, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(hexPart) != 2*sha256.Size {
		return false
	}
	for _, c := range []byte(hexPart) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// lastLine returns the last line of data, for an error, clipped.
func lastLine(data []byte) string {
	data = bytes.TrimSuffix(data, []byte("\n"))
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[i+1:]
	}
	return clip(string(data))
}

// clip bounds a piece of a damaged file quoted in an error.
func clip(s string) string {
	const limit = 100
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
