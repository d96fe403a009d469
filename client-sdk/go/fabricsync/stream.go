package fabricsync

import (
	"context"
	"errors"
	"io"
	"iter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	v1 "github.com/fabricsync/fabricsync/client-sdk/go/fabricsyncv1"
)

// Reconnection delays of the streams: doubling from the first to the last, back to the
// first once an event arrives. A RetryInfo delay sent by the server takes precedence.
const (
	firstReconnectDelay = 100 * time.Millisecond
	maxReconnectDelay   = 5 * time.Second
)

// SyncProgress follows a run's progress events after req.FromSequence (0 = from the start)
// until the run ends: the last event is finished, failed or cancelled.
//
// Like FabricEvents and DriftEvents, it reconnects when the stream breaks with UNAVAILABLE
// (e.g. the server restarts) and resumes after the last event it yielded, so no event is
// yielded twice or skipped. It stops at ctx's end or at another error, which it yields; to
// stop earlier, break out of the loop.
func (c *Client) SyncProgress(ctx context.Context, req *v1.StreamSyncProgressRequest) iter.Seq2[*v1.SyncProgressEvent, error] {
	return follow(ctx, req, c.SyncService.StreamSyncProgress, (*v1.StreamSyncProgressResponse).GetEvent)
}

// FabricEvents follows a fabric's cluster watch events after req.FromSequence (0 = every
// stored event), then live ones, without end; req.Kinds filters. See SyncProgress.
func (c *Client) FabricEvents(ctx context.Context, req *v1.WatchFabricEventsRequest) iter.Seq2[*v1.FabricEvent, error] {
	return follow(ctx, req, c.SyncService.WatchFabricEvents, (*v1.WatchFabricEventsResponse).GetEvent)
}

// DriftEvents follows a fabric's drift changes after req.FromSequence (0 = every stored
// event), then live ones, without end. See SyncProgress.
func (c *Client) DriftEvents(ctx context.Context, req *v1.StreamDriftRequest) iter.Seq2[*v1.DriftEvent, error] {
	return follow(ctx, req, c.DriftService.StreamDrift, (*v1.StreamDriftResponse).GetEvent)
}

// RunSync starts a run (or joins the fabric's active one, see StartSyncResponse.already_active),
// passes each progress event to progress (which may be nil) and returns the run as it ended.
// A run that failed or was cancelled is not an error: check the returned run's Status.
func (c *Client) RunSync(ctx context.Context, req *v1.StartSyncRequest, progress func(*v1.SyncProgressEvent)) (*v1.SyncRun, error) {
	started, err := c.SyncService.StartSync(ctx, req)
	if err != nil {
		return nil, err
	}
	id := started.GetRun().GetId()
	for event, err := range c.SyncProgress(ctx, &v1.StreamSyncProgressRequest{RunId: id}) {
		if err != nil {
			return nil, err
		}
		if progress != nil {
			progress(event)
		}
	}
	run, err := c.SyncService.GetSyncRun(ctx, &v1.GetSyncRunRequest{Id: id})
	if err != nil {
		return nil, err
	}
	return run.GetRun(), nil
}

type sequenced interface {
	GetSequence() int64
}

// follow opens a server stream with req and yields its events; when the stream breaks with
// UNAVAILABLE it opens it again with from_sequence set to the last sequence yielded.
func follow[Req proto.Message, Resp any, E sequenced](
	ctx context.Context,
	req Req,
	open func(context.Context, Req, ...grpc.CallOption) (grpc.ServerStreamingClient[Resp], error),
	event func(*Resp) E,
) iter.Seq2[E, error] {
	return func(yield func(E, error) bool) {
		// A copy: from_sequence is moved forward as events arrive. The generated messages
		// have no setters, so it is set by reflection.
		r := cloneOrNew(req)
		fromSequence := r.ProtoReflect().Descriptor().Fields().ByName("from_sequence")
		last := r.ProtoReflect().Get(fromSequence).Int()
		delay := firstReconnectDelay
		for {
			r.ProtoReflect().Set(fromSequence, protoreflect.ValueOfInt64(last))
			received, err := receive(ctx, r, open, event, last, yield)
			if err == nil {
				return // the stream ended, or the consumer stopped
			}
			var zero E
			if ctx.Err() != nil {
				yield(zero, ctx.Err())
				return
			}
			if status.Code(err) != codes.Unavailable {
				yield(zero, err)
				return
			}
			if received > last {
				last, delay = received, firstReconnectDelay
			}
			wait := delay
			var e *Error
			if errors.As(err, &e) && e.RetryDelay > 0 {
				wait = e.RetryDelay
			}
			select {
			case <-ctx.Done():
				yield(zero, ctx.Err())
				return
			case <-time.After(wait):
			}
			delay = min(2*delay, maxReconnectDelay)
		}
	}
}

// receive runs one stream: it yields the events after last and returns the sequence of the
// last one yielded with the error that ended the stream; nil when it ended normally or
// yield asked to stop.
func receive[Req proto.Message, Resp any, E sequenced](
	ctx context.Context,
	req Req,
	open func(context.Context, Req, ...grpc.CallOption) (grpc.ServerStreamingClient[Resp], error),
	event func(*Resp) E,
	last int64,
	yield func(E, error) bool,
) (int64, error) {
	// Cancelling ends the stream's goroutines when the consumer stops early.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := open(ctx, req)
	if err != nil {
		return last, err
	}
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return last, nil
		}
		if err != nil {
			return last, err
		}
		// Messages already received may still arrive after ctx ended; yield none of them.
		if err := ctx.Err(); err != nil {
			return last, err
		}
		e := event(resp)
		// The server replays only events after from_sequence; this guard keeps the
		// no-duplicate promise even if a replica replays more.
		if e.GetSequence() <= last {
			continue
		}
		last = e.GetSequence()
		if !yield(e, nil) {
			return last, nil
		}
	}
}
