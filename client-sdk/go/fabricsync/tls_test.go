package fabricsync_test

// Dial against a real fabricsync server serving TLS and verifying client certificates, as
// tests/sdk-fixture.sh starts it with FABRICSYNC_FIXTURE_TLS=1 (client-sdk/go/test.sh runs
// these tests under such a fixture; under the plaintext one they skip).

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
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
	certFile, keyFile := forgedClientCert(t, e.caFile)
	if err := dialErr(e.addr, fabricsync.WithTLS(e.caFile), fabricsync.WithClientCertificate(certFile, keyFile)); err == nil {
		t.Error("a client certificate of another CA was accepted")
	}
	dir := t.TempDir()
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

// forgedClientCert issues a client certificate from another CA that has the same name as the
// one in caFile: Go sends a client certificate only when its issuer is among the names the
// server asks for, so only such a forgery reaches the server's signature check.
func forgedClientCert(t *testing.T, caFile string) (certFile, keyFile string) {
	t.Helper()
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(caPEM)
	if block == nil {
		t.Fatalf("no PEM in %s", caFile)
	}
	real, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, leafKey := key(), key()
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), RawSubject: real.RawSubject, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	if ca, err = x509.ParseCertificate(caDER); err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "sdk-client", Organization: []string{"fabricsync-tests"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "forged.crt"), filepath.Join(dir, "forged.key")
	for file, b := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: leafDER}, keyFile: {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(file, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}
