package controller

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/p4mesh/p4mesh/api/p4meshv1"
)

// The other controllers' sides of the peerings, as last heard, are kept
// with the configuration (Persistence.CommitPeerSides): in the item store,
// or, for the YAML Store, in peer-sides.json beside config.yaml. After a restart the controller serves its
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

// peerSidesPath is where the peer sides are kept.
func (st *Store) peerSidesPath() string { return filepath.Join(st.Dir(), peerSidesFile) }

// CommitPeerSides records sides as all that controller said and writes
// every controller's sides to the file: it is small (sides, not
// endpoints), so writing it whole is cheap.
func (st *Store) CommitPeerSides(controller string, sides map[string]*p4meshv1.PeerSide) (uint64, bool, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.sides == nil {
		st.sides = map[string]map[string]*p4meshv1.PeerSide{}
	}
	if len(sides) == 0 {
		delete(st.sides, controller)
	} else {
		st.sides[controller] = sides
	}
	doc := map[string]map[string]json.RawMessage{}
	for ctl, sides := range st.sides {
		doc[ctl] = map[string]json.RawMessage{}
		for k, side := range sides {
			b, err := protojson.Marshal(side)
			if err != nil {
				return 0, true, fmt.Errorf("save peer sides: %w", err)
			}
			doc[ctl][k] = b
		}
	}
	b, err := json.MarshalIndent(doc, "  ", "  ")
	if err == nil {
		err = writeFileAtomic(st.peerSidesPath(), sealPeerSides(b), 0o600)
	}
	if err != nil {
		return 0, true, fmt.Errorf("save peer sides: %w", err)
	}
	return 0, true, nil
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

// PeerSides reads the sides saved by a previous run.
func (st *Store) PeerSides() (_ map[string]map[string]*p4meshv1.PeerSide, legacy bool, err error) {
	path := st.peerSidesPath()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	b, legacy, err = unsealPeerSides(path, b)
	if err != nil {
		return nil, false, err
	}
	var doc map[string]map[string]json.RawMessage
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, false, fmt.Errorf("%s: %w", path, err)
	}
	out := map[string]map[string]*p4meshv1.PeerSide{}
	for ctl, sides := range doc {
		out[ctl] = map[string]*p4meshv1.PeerSide{}
		for k, raw := range sides {
			side := &p4meshv1.PeerSide{}
			if err := protojson.Unmarshal(raw, side); err != nil {
				return nil, false, fmt.Errorf("%s: %s: %w", path, k, err)
			}
			out[ctl][k] = side
		}
	}
	st.mu.Lock()
	st.sides = out
	st.mu.Unlock()
	return out, legacy, nil
}

// peerHostLists are the host lists of the peer sides received, one per VPC,
// for the sides to share. A side lists every host of its VPC (~950 at a
// million endpoints), and a peer controller sends a side per peering of
// the VPC, each with the same list: decoded, each side had its own, with
// the capacity its decoding grew it to. A list is never written to once
// held.
type peerHostLists map[string][]string

// share returns vpc's list if it is hosts, or else a copy of hosts made
// the list held, each host id the model's string where it has one.
func (sh peerHostLists) share(vpc string, hosts []string, n *names) []string {
	if len(hosts) == 0 {
		return hosts
	}
	if held, ok := sh[vpc]; ok && slices.Equal(held, hosts) {
		return held
	}
	out := make([]string, len(hosts))
	for i, h := range hosts {
		if k, ok := n.num[h]; ok {
			h = n.name(k)
		}
		out[i] = h
	}
	sh[vpc] = out
	return out
}
