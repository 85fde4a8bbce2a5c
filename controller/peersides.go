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
const peerSidesFile = "peer-sides.json"

func (s *Server) peerSidesPath() string {
	return filepath.Join(filepath.Dir(s.opts.Store.Path()), peerSidesFile)
}

// savePeerSidesLocked writes s.remote; a failure is logged, as it only
// costs the fast path of a later restart.
func (s *Server) savePeerSidesLocked() {
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
	b, err := json.MarshalIndent(doc, "", "  ")
	if err == nil {
		err = writeFileAtomic(s.peerSidesPath(), b, 0o600)
	}
	if err != nil {
		s.log.Error("peer sides not saved", "err", err)
	}
}

// loadPeerSides reads the sides saved by a previous run, for controllers
// still in the directory.
func (s *Server) loadPeerSides() (map[string]map[string]*p4meshv1.PeerSide, error) {
	b, err := os.ReadFile(s.peerSidesPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var doc map[string]map[string]json.RawMessage
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", s.peerSidesPath(), err)
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
				return nil, fmt.Errorf("%s: %s: %w", s.peerSidesPath(), k, err)
			}
			out[ctl][k] = side
		}
	}
	return out, nil
}
