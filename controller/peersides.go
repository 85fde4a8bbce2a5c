package controller

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
)

// The other controllers' sides of the peerings, as last heard, are kept
// beside the configuration. After a restart the controller serves its
// peerings from them until each peer controller is heard from again, so a
// restart while a peer controller is down does not make every OHC drop
// that peer's entries.
//
// The file carries a SHA-256 of the sides, as the saved configuration
// does (checksum.go), and stays JSON:
//
//	{
//	  "checksum": "sha256:<64 hex digits>",
//	  "sides": {"<controller>": {"<vpc>/<peer vpc>": <PeerSide>, ...}, ...}
//	}
//
// the checksum being over the bytes of "sides" as written. Unlike the
// configuration, a damaged file only costs that fast path: it is ignored
// with a warning, and the peer controllers send their sides again. A file
// that is just the sides, with neither key, was written by an older
// p4mesh: it is accepted, with a warning, and saved again with a checksum.
const peerSidesFile = "peer-sides.json"

// peerSidesPath is where the peer sides are kept, "" if nowhere.
func (s *Server) peerSidesPath() string {
	dir := s.opts.Store.Dir()
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, peerSidesFile)
}

// savePeerSidesLocked writes s.remote; a failure is logged, as it only
// costs the fast path of a later restart.
func (s *Server) savePeerSidesLocked() {
	if s.peerSidesPath() == "" {
		return
	}
	doc := map[string]map[string]json.RawMessage{}
	for ctl, sides := range s.remote {
		doc[ctl] = map[string]json.RawMessage{}
		for k, side := range sides {
			b, err := protojson.Marshal(side)
			if err != nil {
				s.log.Error("peer sides not saved", "err", err)
				return
			}
			doc[ctl][k] = b
		}
	}
	sides, err := json.MarshalIndent(doc, "  ", "  ")
	if err == nil {
		err = writeFileAtomic(s.peerSidesPath(), sealPeerSides(sides), 0o600)
	}
	if err != nil {
		s.log.Error("peer sides not saved", "err", err)
	}
}

// sealPeerSides frames the JSON of the sides with their checksum.
func sealPeerSides(sides []byte) []byte {
	return fmt.Appendf(nil, "{\n  \"checksum\": %q,\n  \"sides\": %s\n}\n", sha256Text(sides), sides)
}

// unsealPeerSides checks data, the peer sides read from path, and returns
// the JSON of the sides; legacy reports a file from before checksums.
func unsealPeerSides(path string, data []byte) (sides []byte, legacy bool, err error) {
	var file map[string]json.RawMessage
	if err := json.Unmarshal(data, &file); err != nil {
		return nil, false, fmt.Errorf("%s: %w", path, err)
	}
	sum, hasSum := file["checksum"]
	sides, hasSides := file["sides"]
	var want string
	switch {
	case !hasSum && !hasSides:
		return data, true, nil
	case !hasSum:
		return nil, false, &damagedError{path, `it has "sides" but no "checksum"`}
	case json.Unmarshal(sum, &want) != nil || !isChecksum(want):
		return nil, false, &damagedError{path, fmt.Sprintf(`its "checksum" is %s, expected "sha256:<64 hex digits>"`, clip(string(sum)))}
	case !hasSides:
		return nil, false, &damagedError{path, `it has a "checksum" but no "sides"`}
	}
	if got := sha256Text(sides); got != want {
		return nil, false, &damagedError{path, fmt.Sprintf("its checksum expects %s, but its sides have %s", want, got)}
	}
	return sides, false, nil
}

// loadPeerSides reads the sides saved by a previous run, for controllers
// still in the directory.
func (s *Server) loadPeerSides() (_ map[string]map[string]*p4meshv1.PeerSide, legacy bool, err error) {
	if s.peerSidesPath() == "" {
		return nil, false, nil
	}
	b, err := os.ReadFile(s.peerSidesPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	b, legacy, err = unsealPeerSides(s.peerSidesPath(), b)
	if err != nil {
		return nil, false, err
	}
	var doc map[string]map[string]json.RawMessage
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, false, fmt.Errorf("%s: %w", s.peerSidesPath(), err)
	}
	peers := s.peerControllersLocked()
	out := map[string]map[string]*p4meshv1.PeerSide{}
	for ctl, sides := range doc {
		if _, ok := peers[ctl]; !ok {
			continue
		}
		out[ctl] = map[string]*p4meshv1.PeerSide{}
		for k, raw := range sides {
			side := &p4meshv1.PeerSide{}
			if err := protojson.Unmarshal(raw, side); err != nil {
				return nil, false, fmt.Errorf("%s: %s: %w", s.peerSidesPath(), k, err)
			}
			out[ctl][k] = side
		}
	}
	return out, legacy, nil
}
