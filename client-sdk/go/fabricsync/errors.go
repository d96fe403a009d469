package fabricsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error is a failed call: the gRPC status with its google.rpc details decoded.
//
// errors.Is(err, ErrNotFound) and the like compare codes only; errors.As(err, &e) gives the
// details. status.Code(err) and status.FromError(err) keep working (Error has GRPCStatus).
type Error struct {
	Code    codes.Code
	Message string
	// FieldViolations are google.rpc.BadRequest's, one per bad request field (INVALID_ARGUMENT).
	FieldViolations []FieldViolation
	// ErrorInfo is google.rpc.ErrorInfo, when the server sent one.
	ErrorInfo *errdetails.ErrorInfo
	// RetryDelay is google.rpc.RetryInfo's delay; 0 when the server did not send one.
	RetryDelay time.Duration

	status *status.Status
}

// FieldViolation names one invalid field by its path in the request, e.g. "repository.name".
type FieldViolation struct {
	Field       string
	Description string
}

// Sentinels for errors.Is: an *Error matches the one with its code.
var (
	ErrInvalidArgument    = &Error{Code: codes.InvalidArgument}
	ErrNotFound           = &Error{Code: codes.NotFound}
	ErrAlreadyExists      = &Error{Code: codes.AlreadyExists}
	ErrFailedPrecondition = &Error{Code: codes.FailedPrecondition}
	ErrAborted            = &Error{Code: codes.Aborted}
	ErrUnavailable        = &Error{Code: codes.Unavailable}
	ErrUnauthenticated    = &Error{Code: codes.Unauthenticated}
	ErrPermissionDenied   = &Error{Code: codes.PermissionDenied}
)

func (e *Error) Error() string {
	return fmt.Sprintf("fabricsync: %s: %s", e.Code, e.Message)
}

// Is matches a sentinel (or any *Error) with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// GRPCStatus returns the original status, details included.
func (e *Error) GRPCStatus() *status.Status {
	if e.status == nil {
		return status.New(e.Code, e.Message)
	}
	return e.status
}

// Violation returns the violation of the named request field, if there is one.
func (e *Error) Violation(field string) (FieldViolation, bool) {
	for _, v := range e.FieldViolations {
		if v.Field == field {
			return v, true
		}
	}
	return FieldViolation{}, false
}

// IsInvalidArgument reports whether err is INVALID_ARGUMENT (see Error.FieldViolations).
func IsInvalidArgument(err error) bool { return errors.Is(err, ErrInvalidArgument) }

// IsNotFound reports whether err is NOT_FOUND.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// IsAlreadyExists reports whether err is ALREADY_EXISTS (a name is taken).
func IsAlreadyExists(err error) bool { return errors.Is(err, ErrAlreadyExists) }

// IsFailedPrecondition reports whether err is FAILED_PRECONDITION.
func IsFailedPrecondition(err error) bool { return errors.Is(err, ErrFailedPrecondition) }

// IsAborted reports whether err is ABORTED: a stale etag, or another run is active. Read
// again and retry.
func IsAborted(err error) bool { return errors.Is(err, ErrAborted) }

// IsUnavailable reports whether err is UNAVAILABLE, a transient failure worth retrying.
func IsUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }

// FromError converts a gRPC status error into an *Error; other errors (nil, io.EOF, ...)
// are returned unchanged. Dial's connections already do this for every call.
func FromError(err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	e = &Error{Code: st.Code(), Message: st.Message(), status: st}
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				e.FieldViolations = append(e.FieldViolations, FieldViolation{Field: v.GetField(), Description: v.GetDescription()})
			}
		case *errdetails.ErrorInfo:
			e.ErrorInfo = d
		case *errdetails.RetryInfo:
			e.RetryDelay = d.GetRetryDelay().AsDuration()
		}
	}
	return e
}

func unaryErrors(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return FromError(invoker(ctx, method, req, reply, cc, opts...))
}

func streamErrors(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, FromError(err)
	}
	return errorStream{s}, nil
}

// errorStream converts the errors of a stream's messages; io.EOF (the end) stays io.EOF.
type errorStream struct{ grpc.ClientStream }

func (s errorStream) SendMsg(m any) error { return FromError(s.ClientStream.SendMsg(m)) }
func (s errorStream) RecvMsg(m any) error { return FromError(s.ClientStream.RecvMsg(m)) }
