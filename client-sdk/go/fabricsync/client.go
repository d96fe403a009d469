// Package fabricsync is a thin, idiomatic layer over the generated fabricsync.v1 gRPC clients
// (package fabricsyncv1): connection set-up with TLS and bearer tokens, iterators over
// paginated lists, streams that reconnect and resume where they stopped, and typed errors.
//
// The generated service clients are exposed as they are (Client.RepositoryService and so
// on); every error they return is an *Error.
package fabricsync

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	v1 "github.com/fabricsync/fabricsync/client-sdk/go/fabricsyncv1"
)

// Client holds one connection to a fabricsync server and its services.
type Client struct {
	conn *grpc.ClientConn

	RepositoryService v1.RepositoryServiceClient
	FabricService     v1.FabricServiceClient
	SyncService       v1.SyncServiceClient
	DriftService      v1.DriftServiceClient
	AccessService     v1.AccessServiceClient
	WriteService      v1.WriteServiceClient
	InventoryService  v1.InventoryServiceClient
}

type dialOptions struct {
	plaintext     bool
	caFile        string
	certFile      string
	keyFile       string
	token         string
	insecureToken bool
	grpcOptions   []grpc.DialOption
}

// Option configures Dial.
type Option func(*dialOptions)

// WithTLS verifies the server with the PEM CA certificate(s) in caFile; an empty caFile uses
// the system roots. TLS with the system roots is the default.
func WithTLS(caFile string) Option {
	return func(o *dialOptions) { o.plaintext, o.caFile = false, caFile }
}

// WithClientCertificate presents the PEM certificate in certFile, with its private key in
// keyFile, to a server that verifies client certificates (mutual TLS). Needs TLS.
func WithClientCertificate(certFile, keyFile string) Option {
	return func(o *dialOptions) { o.certFile, o.keyFile = certFile, keyFile }
}

// WithPlaintext connects without TLS (e.g. to a server on loopback).
func WithPlaintext() Option {
	return func(o *dialOptions) { o.plaintext = true }
}

// WithBearerToken sends "authorization: Bearer <token>" with every call. Over plaintext it
// is only allowed to a loopback address unless WithInsecureToken is also given.
func WithBearerToken(token string) Option {
	return func(o *dialOptions) { o.token = token }
}

// WithInsecureToken allows WithBearerToken over plaintext to a non-loopback address, where
// anyone on the path can read the token (e.g. behind a TLS-terminating sidecar).
func WithInsecureToken() Option {
	return func(o *dialOptions) { o.insecureToken = true }
}

// WithGRPCOptions adds options to the underlying grpc.NewClient call.
func WithGRPCOptions(opts ...grpc.DialOption) Option {
	return func(o *dialOptions) { o.grpcOptions = append(o.grpcOptions, opts...) }
}

// Dial connects to the server at addr (host:port, or any gRPC target) and waits until the
// connection is ready or ctx ends.
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	var o dialOptions
	for _, opt := range opts {
		opt(&o)
	}

	grpcOpts := []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(unaryErrors),
		grpc.WithChainStreamInterceptor(streamErrors),
	}
	if o.plaintext {
		if o.certFile != "" {
			return nil, errors.New("fabricsync: a client certificate needs TLS; drop WithPlaintext")
		}
		grpcOpts = append(grpcOpts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	} else {
		config := &tls.Config{MinVersion: tls.VersionTLS12}
		if o.caFile != "" {
			pem, err := os.ReadFile(o.caFile)
			if err != nil {
				return nil, fmt.Errorf("fabricsync: reading CA file: %w", err)
			}
			config.RootCAs = x509.NewCertPool()
			if !config.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("fabricsync: no PEM certificate in %s", o.caFile)
			}
		}
		if o.certFile != "" {
			cert, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
			if err != nil {
				return nil, fmt.Errorf("fabricsync: client certificate %s with key %s: %w", o.certFile, o.keyFile, err)
			}
			config.Certificates = []tls.Certificate{cert}
		}
		grpcOpts = append(grpcOpts, grpc.WithTransportCredentials(credentials.NewTLS(config)))
	}
	if o.token != "" {
		if o.plaintext && !o.insecureToken && !isLoopback(addr) {
			return nil, errors.New("fabricsync: refusing to send a bearer token over plaintext to a non-loopback address; use TLS or WithInsecureToken")
		}
		grpcOpts = append(grpcOpts, grpc.WithPerRPCCredentials(bearerToken{token: o.token, requireTLS: !o.plaintext}))
	}
	grpcOpts = append(grpcOpts, o.grpcOptions...)

	conn, err := grpc.NewClient(addr, grpcOpts...)
	if err != nil {
		return nil, fmt.Errorf("fabricsync: %w", err)
	}
	if err := waitReady(ctx, conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("fabricsync: connecting to %s: %w", addr, err)
	}
	return &Client{
		conn:              conn,
		RepositoryService: v1.NewRepositoryServiceClient(conn),
		FabricService:     v1.NewFabricServiceClient(conn),
		SyncService:       v1.NewSyncServiceClient(conn),
		DriftService:      v1.NewDriftServiceClient(conn),
		AccessService:     v1.NewAccessServiceClient(conn),
		WriteService:      v1.NewWriteServiceClient(conn),
		InventoryService:  v1.NewInventoryServiceClient(conn),
	}, nil
}

// Conn is the underlying connection, e.g. for the health or reflection services.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// waitReady connects now (grpc.NewClient is lazy) so that a wrong address or a TLS failure
// is reported by Dial rather than by the first call.
func waitReady(ctx context.Context, conn *grpc.ClientConn) error {
	conn.Connect()
	for {
		state := conn.GetState()
		switch state {
		case connectivity.Ready:
			return nil
		case connectivity.Idle:
			conn.Connect()
		}
		if !conn.WaitForStateChange(ctx, state) {
			return fmt.Errorf("%w (connection %s)", ctx.Err(), strings.ToLower(state.String()))
		}
	}
}

// isLoopback reports whether a gRPC target stays on this machine: a unix socket, or
// localhost, 127.0.0.0/8 or ::1.
func isLoopback(target string) bool {
	if strings.HasPrefix(target, "unix:") {
		return true
	}
	// Strip a scheme such as "dns:///" or "passthrough:///".
	if i := strings.LastIndex(target, "/"); i >= 0 {
		target = target[i+1:]
	}
	host := target
	if h, _, err := net.SplitHostPort(target); err == nil {
		host = h
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// bearerToken implements credentials.PerRPCCredentials.
type bearerToken struct {
	token      string
	requireTLS bool
}

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity is false only for plaintext connections Dial has allowed.
func (b bearerToken) RequireTransportSecurity() bool { return b.requireTLS }
