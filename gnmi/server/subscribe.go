package server

import (
	"encoding/json"
	"io"
	"slices"
	"time"

	"github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func marshalJSON(v any) ([]byte, error) { return json.Marshal(v) }

// Subscribe implements gNMI: ONCE (everything, sync_response, close), POLL
// (everything again on each poll) and STREAM with ON_CHANGE (a full dump,
// sync_response, then only changes) or SAMPLE (everything every interval).
func (s *Server) Subscribe(st grpc.BidiStreamingServer[gnmi.SubscribeRequest, gnmi.SubscribeResponse]) error {
	if err := s.allow(st.Context(), false); err != nil {
		return err
	}
	req, err := st.Recv()
	if err != nil {
		return err
	}
	list := req.GetSubscribe()
	if list == nil {
		return status.Error(codes.InvalidArgument, "the first SubscribeRequest must carry a SubscriptionList")
	}
	if enc := list.GetEncoding(); enc != gnmi.Encoding_JSON_IETF && enc != gnmi.Encoding_JSON && enc != gnmi.Encoding_PROTO {
		return status.Errorf(codes.Unimplemented, "encoding %s is not supported", enc)
	}
	subs := list.GetSubscription()
	if len(subs) == 0 {
		subs = []*gnmi.Subscription{{Path: &gnmi.Path{}}}
	}
	if err := checkModels(list.GetUseModels()); err != nil {
		return err
	}
	var paths []*gnmi.Path
	for _, sub := range subs {
		if err := checkOrigin(list.GetPrefix(), sub.GetPath()); err != nil {
			return err
		}
		full := fullPath(list.GetPrefix(), sub.GetPath())
		// A path the model cannot have would stream nothing, ever: say so.
		if _, err := s.schemaAt(full); err != nil {
			return err
		}
		paths = append(paths, full)
	}
	target := targetPrefix(list.GetPrefix())
	ctx := st.Context()
	switch list.GetMode() {
	case gnmi.SubscriptionList_ONCE:
		if _, err := s.dump(st, target, paths, list.GetUpdatesOnly()); err != nil {
			return err
		}
		return st.Send(syncResponse())
	case gnmi.SubscriptionList_POLL:
		for {
			if _, err := s.dump(st, target, paths, false); err != nil {
				return err
			}
			if err := st.Send(syncResponse()); err != nil {
				return err
			}
			r, err := st.Recv()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if r.GetPoll() == nil {
				return status.Error(codes.InvalidArgument, "a POLL subscription takes only Poll requests")
			}
		}
	}
	// STREAM: one loop serves every subscription of the list; each has
	// its mode and, for SAMPLE, its interval.
	type stream struct {
		path     *gnmi.Path
		sample   time.Duration
		nextSend time.Time
	}
	var streams []*stream
	for i, sub := range subs {
		ss := &stream{path: paths[i]}
		switch sub.GetMode() {
		case gnmi.SubscriptionMode_SAMPLE:
			iv := time.Duration(sub.GetSampleInterval())
			if iv == 0 {
				iv = s.o.Poll // "as fast as possible" is the poll period
			}
			if iv < s.o.Poll {
				return status.Errorf(codes.InvalidArgument, "%s: sample interval %s is below the minimum %s", pathString(paths[i]), iv, s.o.Poll)
			}
			ss.sample = iv
		case gnmi.SubscriptionMode_ON_CHANGE, gnmi.SubscriptionMode_TARGET_DEFINED:
		default:
			return status.Errorf(codes.InvalidArgument, "subscription mode %s is not supported", sub.GetMode())
		}
		streams = append(streams, ss)
	}
	last, err := s.dump(st, target, paths, list.GetUpdatesOnly())
	if err != nil {
		return err
	}
	if err := st.Send(syncResponse()); err != nil {
		return err
	}
	now := time.Now()
	for _, ss := range streams {
		ss.nextSend = now.Add(ss.sample)
	}
	tick := time.NewTicker(s.o.Poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		cur, err := s.snapshot()
		if err != nil {
			return status.Errorf(codes.Internal, "%v", err)
		}
		now := time.Now()
		n := &gnmi.Notification{Timestamp: now.UnixNano(), Prefix: target}
		// Each subscription stands on its own: a leaf goes out when it
		// changed and some subscription covers it, or when a SAMPLE
		// subscription covering it is due — even if another, earlier
		// subscription of the list covers it too.
		covered := func(l *gnmi.Path, want func(*stream) bool) bool {
			return slices.ContainsFunc(streams, func(x *stream) bool { return want(x) && matches(x.path, l) })
		}
		due := func(x *stream) bool { return x.sample > 0 && !now.Before(x.nextSend) }
		every := func(*stream) bool { return true }
		for key, u := range cur {
			old, ok := last[key]
			changed := !ok || !proto.Equal(old.GetVal(), u.GetVal())
			if (changed && covered(u.GetPath(), every)) || covered(u.GetPath(), due) {
				n.Update = append(n.Update, u)
			}
		}
		for key, u := range last {
			if _, ok := cur[key]; !ok && covered(u.GetPath(), every) {
				n.Delete = append(n.Delete, u.GetPath())
			}
		}
		for _, ss := range streams {
			if ss.sample > 0 && !now.Before(ss.nextSend) {
				ss.nextSend = now.Add(ss.sample)
			}
		}
		last = cur
		if len(n.Update)+len(n.Delete) == 0 {
			continue
		}
		sortNotification(n)
		if err := st.Send(&gnmi.SubscribeResponse{Response: &gnmi.SubscribeResponse_Update{Update: n}}); err != nil {
			return err
		}
	}
}

// dump sends every leaf under paths, with target's prefix, as one notification (unless
// updatesOnly) and returns the leaves it looked at, for change detection.
func (s *Server) dump(st grpc.BidiStreamingServer[gnmi.SubscribeRequest, gnmi.SubscribeResponse], target *gnmi.Path, paths []*gnmi.Path, updatesOnly bool) (map[string]*gnmi.Update, error) {
	all, err := s.snapshot()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "%v", err)
	}
	kept := map[string]*gnmi.Update{}
	n := &gnmi.Notification{Timestamp: time.Now().UnixNano(), Prefix: target}
	for key, u := range all {
		if slices.ContainsFunc(paths, func(p *gnmi.Path) bool { return matches(p, u.GetPath()) }) {
			kept[key] = u
			n.Update = append(n.Update, u)
		}
	}
	if updatesOnly || len(n.Update) == 0 {
		return kept, nil
	}
	sortNotification(n)
	return kept, st.Send(&gnmi.SubscribeResponse{Response: &gnmi.SubscribeResponse_Update{Update: n}})
}

func syncResponse() *gnmi.SubscribeResponse {
	return &gnmi.SubscribeResponse{Response: &gnmi.SubscribeResponse_SyncResponse{SyncResponse: true}}
}

// sortNotification orders updates and deletes by path, so output is stable.
func sortNotification(n *gnmi.Notification) {
	slices.SortFunc(n.Update, func(a, b *gnmi.Update) int {
		return compareStrings(pathString(a.GetPath()), pathString(b.GetPath()))
	})
	slices.SortFunc(n.Delete, func(a, b *gnmi.Path) int { return compareStrings(pathString(a), pathString(b)) })
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
