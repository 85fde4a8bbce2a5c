package ohc

import (
	"context"
	"log/slog"
	"sync"

	"google.golang.org/grpc/codes"

	"github.com/p4mesh/p4mesh/p4rt"
)

// SwitchRole follows the OHC's role on its switch from the P4Runtime
// client's arbitration notifications. Losing mastership must not pass
// unseen: the switch then refuses the OHC's writes, so the host's
// connectivity stops following the controllers, and whoever took over may
// rewrite it. SwitchRole logs the loss at ERROR, naming the new primary's
// election id, and wakes Agent.Report so that the controllers (and gNMI)
// hear of it at once.
//
// It never fights back: raising our id on the fly would have two
// controllers take turns rewriting the switch. The OHC keeps its stream,
// stays backup, and is primary again only when the switch elects it.
type SwitchRole struct {
	own p4rt.ElectionID
	log *slog.Logger
	// changed has room for one signal: Report needs to know that
	// something changed, not how often.
	changed chan struct{}

	mu sync.Mutex
	// mu guards the following fields.
	known   bool // the client has said anything yet
	primary bool
}

// NewSwitchRole returns a SwitchRole for a client arbitrating with own.
func NewSwitchRole(own p4rt.ElectionID, log *slog.Logger) *SwitchRole {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &SwitchRole{own: own, log: log, changed: make(chan struct{}, 1)}
}

// Primary reports whether the OHC is primary on its switch; known is false
// until the client has said either way.
func (r *SwitchRole) Primary() (primary, known bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.primary, r.known
}

// Run follows events (the client's Mastership channel, which has one
// reader: this) until ctx ends or the client closes it, and returns nil.
func (r *SwitchRole) Run(ctx context.Context, events <-chan p4rt.Mastership) error {
	// What was last logged at ERROR, so that a backup hears each news once
	// rather than on every notification.
	type news struct {
		status codes.Code
		id     p4rt.ElectionID
	}
	var told news
	for {
		var m p4rt.Mastership
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case m, ok = <-events:
			if !ok {
				return nil
			}
		}
		r.mu.Lock()
		was, wasKnown := r.primary, r.known
		r.primary, r.known = m.Primary, true
		r.mu.Unlock()
		if was != m.Primary || !wasKnown {
			select {
			case r.changed <- struct{}{}:
			default:
			}
		}

		switch {
		case m.Primary:
			told = news{}
			if !was {
				r.log.Info("primary controller of the switch", "election_id", r.own)
			}
		case m.Status == codes.Unavailable:
			// The stream is down: the client logs it and reconnects, and
			// the switch says where we stand once it is back.
		case told == news{m.Status, m.ElectionID}:
		case m.Status == codes.AlreadyExists:
			told = news{m.Status, m.ElectionID}
			r.log.Error("another controller is primary on the switch: this OHC no longer programs it",
				"primary_election_id", m.ElectionID, "election_id", r.own,
				"remedy", "it stays backup and takes the switch back only when its election id is the highest: restart it (by default its id is its start time) or raise --election-id")
		case m.Status == codes.NotFound:
			// Nobody is primary, but the switch has seen a higher id than
			// ours: a controller that took over and left.
			told = news{m.Status, m.ElectionID}
			r.log.Error("the switch has no primary but remembers a higher election id than this OHC's: this OHC does not program it",
				"highest_election_id", m.ElectionID, "election_id", r.own,
				"remedy", "restart the OHC (by default its id is its start time) or raise --election-id")
		default:
			told = news{m.Status, m.ElectionID}
			r.log.Error("the switch made this OHC a backup: it does not program the switch",
				"status", m.Status, "message", m.Message, "primary_election_id", m.ElectionID, "election_id", r.own)
		}
	}
}
