package fabricsync_test

// Dial against a real fabricsync server serving TLS and verifying client certificates, as
// tests/sdk-fixture.sh starts it with FABRICSYNC_FIXTURE_TLS=1 (client-sdk/go/test.sh runs
// these tests under such a fixture; under the plaintext one they skip).

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/fabricsync/fabricsync/client-sdk/go/fabricsync"
	v1 "github.com/fabricsync/fabricsync/client-sdk/go/fabricsyncv1"
)

type tlsEnv struct{ addr, caFile, certFile, keyFile, token string }

func tlsFixture(t *testing.T) tlsEnv {
	t.Helper()
	if os.Getenv("FABRICSYNC_TLS") != "1" {
		t.Skip("FABRICSYNC_TLS is not 1: run under FABRICSYNC_FIXTURE_TLS=1 tests/sdk-fixture.sh (client-sdk/go/test.sh does)")
	}
	return tlsEnv{os.Getenv("FABRICSYNC_ADDR"), os.Getenv("FABRICSYNC_CA_FILE"), os.Getenv("FABRICSYNC_CLIENT_CERT"), os.Getenv("FABRICSYNC_CLIENT_KEY"), os.Getenv("FABRICSYNC_TOKEN")}
}

// withToken adds the fixture's admin token when it has one (servers with API tokens).
func (e tlsEnv) withToken(opts ...fabricsync.Option) []fabricsync.Option {
	if e.token != "" {
		opts = append(opts, fabricsync.WithBearerToken(e.token))
	}
	return opts
}

// calls makes a health check and a RepositoryService call over c.
func calls(t *testing.T, c *fabricsync.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	health, err := grpc_health_v1.NewHealthClient(c.Conn()).Check(ctx, &grpc_health_v1.HealthCheckRequest{})
	if err != nil || health.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", health, err)
	}
	if _, err := c.RepositoryService.ListRepositories(ctx, &v1.ListRepositoriesRequest{PageSize: 1}); err != nil {
		t.Fatalf("ListRepositories: %v", err)
	}
}

func dialErr(addr string, opts ...fabricsync.Option) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := fabricsync.Dial(ctx, addr, opts...)
	if err == nil {
		defer c.Close()
		// TLS 1.3 reports a rejected client certificate after the handshake: on the first call.
		_, err = c.RepositoryService.ListRepositories(ctx, &v1.ListRepositoriesRequest{PageSize: 1})
	}
	return err
}

func TestTLSWithCAFile(t *testing.T) {
	e := tlsFixture(t)
	calls(t, dial(t, e.addr, e.withToken(fabricsync.WithTLS(e.caFile))...))

	// The system roots do not trust the fixture's CA: Dial fails, not the first call.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := fabricsync.Dial(ctx, e.addr, fabricsync.WithTLS("")); err == nil {
		t.Error("Dial with the system roots succeeded")
	}
	if _, err := fabricsync.Dial(ctx, e.addr, fabricsync.WithTLS(filepath.Join(t.TempDir(), "missing.pem"))); err == nil {
		t.Error("Dial with a missing CA file succeeded")
	}
}

func TestTLSWithClientCertificate(t *testing.T) {
	e := tlsFixture(t)
	calls(t, dial(t, e.addr, e.withToken(fabricsync.WithTLS(e.caFile), fabricsync.WithClientCertificate(e.certFile, e.keyFile))...))

	// A certificate the server's client CA did not issue is refused at the handshake.
	cert, _ := selfSigned(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "rogue.crt"), filepath.Join(dir, "rogue.key")
	keyDER, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	for file, block := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: cert.Certificate[0]}, keyFile: {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := dialErr(e.addr, fabricsync.WithTLS(e.caFile), fabricsync.WithClientCertificate(certFile, keyFile)); err == nil {
		t.Error("a client certificate of another CA was accepted")
	}
	if err := dialErr(e.addr, fabricsync.WithTLS(e.caFile), fabricsync.WithClientCertificate(filepath.Join(dir, "missing.crt"), keyFile)); err == nil {
		t.Error("Dial with a missing client certificate succeeded")
	}
	if err := dialErr(e.addr, fabricsync.WithPlaintext(), fabricsync.WithClientCertificate(e.certFile, e.keyFile)); err == nil {
		t.Error("a client certificate over plaintext was accepted")
	}
}

func TestTLSServerRefusesPlaintext(t *testing.T) {
	e := tlsFixture(t)
	if err := dialErr(e.addr, fabricsync.WithPlaintext()); err == nil {
		t.Error("a plaintext client talked to the TLS server")
	}
}
