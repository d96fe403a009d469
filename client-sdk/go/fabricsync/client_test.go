package fabricsync_test

// Tests that need no fabricsync server: typed errors, and Dial's TLS and bearer-token
// handling against an in-process gRPC server that reports the authorization header it got.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fabricsync/fabricsync/client-sdk/go/fabricsync"
	v1 "github.com/fabricsync/fabricsync/client-sdk/go/fabricsyncv1"
)

func TestFromErrorDecodesDetails(t *testing.T) {
	st, err := status.New(codes.InvalidArgument, "invalid request").WithDetails(
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "repository.name", Description: "must be a DNS-1123 label"},
			{Field: "repository.url", Description: "unsupported scheme"},
		}},
		&errdetails.ErrorInfo{Reason: "BAD_NAME", Domain: "fabricsync.dev", Metadata: map[string]string{"k": "v"}},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(2 * time.Second)},
	)
	if err != nil {
		t.Fatal(err)
	}
	got := fabricsync.FromError(st.Err())

	var e *fabricsync.Error
	if !errors.As(got, &e) {
		t.Fatalf("not an *Error: %T %v", got, got)
	}
	if e.Code != codes.InvalidArgument || e.Message != "invalid request" {
		t.Errorf("code/message = %v %q", e.Code, e.Message)
	}
	want := []fabricsync.FieldViolation{{"repository.name", "must be a DNS-1123 label"}, {"repository.url", "unsupported scheme"}}
	if len(e.FieldViolations) != 2 || e.FieldViolations[0] != want[0] || e.FieldViolations[1] != want[1] {
		t.Errorf("violations = %v", e.FieldViolations)
	}
	if v, ok := e.Violation("repository.url"); !ok || v.Description != "unsupported scheme" {
		t.Errorf("Violation(repository.url) = %v %v", v, ok)
	}
	if e.ErrorInfo.GetReason() != "BAD_NAME" || e.ErrorInfo.GetMetadata()["k"] != "v" {
		t.Errorf("error info = %v", e.ErrorInfo)
	}
	if e.RetryDelay != 2*time.Second {
		t.Errorf("retry delay = %v", e.RetryDelay)
	}
	if !fabricsync.IsInvalidArgument(got) || fabricsync.IsNotFound(got) || !errors.Is(got, fabricsync.ErrInvalidArgument) {
		t.Error("errors.Is by code")
	}
	// Still a gRPC status error, details included, also when wrapped.
	wrapped := errors.Join(errors.New("context"), got)
	if status.Code(got) != codes.InvalidArgument || len(status.Convert(got).Details()) != 3 || !fabricsync.IsInvalidArgument(wrapped) {
		t.Errorf("status of %v", got)
	}
	if !strings.Contains(got.Error(), "InvalidArgument: invalid request") {
		t.Errorf("message %q", got.Error())
	}
	for _, plain := range []error{nil, context.Canceled} {
		if fabricsync.FromError(plain) != plain {
			t.Errorf("FromError(%v) changed it", plain)
		}
	}
}

// echoServer answers GetRepository with the authorization header it received as the name.
type echoServer struct {
	v1.UnimplementedRepositoryServiceServer
}

func (echoServer) GetRepository(ctx context.Context, req *v1.GetRepositoryRequest) (*v1.GetRepositoryResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if req.GetId() == "missing" {
		return nil, status.Error(codes.NotFound, "repository \"missing\" not found")
	}
	return &v1.GetRepositoryResponse{Repository: &v1.Repository{Name: strings.Join(md.Get("authorization"), ",")}}, nil
}

// serve starts echoServer on loopback, with TLS when cert is given, and returns its address.
func serve(t *testing.T, cert *tls.Certificate) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if cert != nil {
		opts = append(opts, grpc.Creds(credentials.NewServerTLSFromCert(cert)))
	}
	s := grpc.NewServer(opts...)
	v1.RegisterRepositoryServiceServer(s, echoServer{})
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

// authorization dials addr and returns the authorization header the server received.
func authorization(t *testing.T, addr string, opts ...fabricsync.Option) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := fabricsync.Dial(ctx, addr, opts...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	resp, err := c.RepositoryService.GetRepository(ctx, &v1.GetRepositoryRequest{})
	if err != nil {
		t.Fatalf("GetRepository: %v", err)
	}
	// Errors of every call are typed.
	if _, err := c.RepositoryService.GetRepository(ctx, &v1.GetRepositoryRequest{Id: "missing"}); !fabricsync.IsNotFound(err) {
		t.Errorf("want a NOT_FOUND *Error, got %T %v", err, err)
	}
	return resp.GetRepository().GetName()
}

func TestDialPlaintextSendsTokenOnlyToLoopback(t *testing.T) {
	addr := serve(t, nil)
	if got := authorization(t, addr, fabricsync.WithPlaintext()); got != "" {
		t.Errorf("no token configured, server got %q", got)
	}
	if got := authorization(t, addr, fabricsync.WithPlaintext(), fabricsync.WithBearerToken("s3cret")); got != "Bearer s3cret" {
		t.Errorf("server got %q", got)
	}

	// A token over plaintext to another host is refused before any connection...
	ctx := context.Background()
	_, err := fabricsync.Dial(ctx, "fabricsync.example.com:50051", fabricsync.WithPlaintext(), fabricsync.WithBearerToken("s3cret"))
	if err == nil || !strings.Contains(err.Error(), "plaintext") {
		t.Errorf("want a refusal, got %v", err)
	}
	// ...unless explicitly allowed (this target is unreachable: Dial gives up at the deadline).
	ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = fabricsync.Dial(ctx, "192.0.2.1:9", fabricsync.WithPlaintext(), fabricsync.WithBearerToken("s3cret"), fabricsync.WithInsecureToken())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("want a deadline error, got %v", err)
	}
}

// The token reaches the server over TLS (TLS itself is tested against the real server in
// tls_test.go; this server reports the header it got).
func TestDialTLSSendsBearerToken(t *testing.T) {
	cert, caFile := selfSigned(t)
	addr := serve(t, cert)
	if got := authorization(t, addr, fabricsync.WithTLS(caFile), fabricsync.WithBearerToken("s3cret")); got != "Bearer s3cret" {
		t.Errorf("server got %q", got)
	}
}

// selfSigned makes a CA-signed-by-itself certificate for 127.0.0.1 and writes it as a PEM file.
func selfSigned(t *testing.T) (*tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "fabricsync-test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, caFile
}
