// kubeharness runs a real Kubernetes control plane on loopback for fabricsync's tests and
// benchmarks, built from the official Go modules so nothing is downloaded at test time.
//
//	kubeharness serve --dir DIR --port PORT --token-file FILE --controller-token TOKEN
//	    embedded etcd + kube-apiserver in this process, kube-controller-manager (service-account
//	    token controller only) as a child; writes DIR/ca.crt; runs until SIGTERM/SIGINT or until
//	    the process that started it exits.
//	kubeharness kubectl ARGS...
//	    kubectl, for the benchmark peer and for debugging.
//	kubeharness ssa-load --server URL --token T --ca FILE --dir DIR [--concurrency N] [--field-manager M]
//	    a bare server-side-apply load generator (ssaload.go): the cluster bench's physical limit.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	kubectl "k8s.io/kubectl/pkg/cmd"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: kubeharness serve|controller-manager|kubectl|ssa-load ...")
	}
	switch os.Args[1] {
	case "serve":
		serve(os.Args[2:])
	case "controller-manager":
		cmd := controllermanager.NewControllerManagerCommand()
		cmd.SetArgs(os.Args[2:])
		if err := cmd.Execute(); err != nil {
			os.Exit(1)
		}
	case "kubectl":
		os.Args = append([]string{"kubectl"}, os.Args[2:]...)
		if err := kubectl.NewDefaultKubectlCommand().Execute(); err != nil {
			os.Exit(1)
		}
	case "ssa-load":
		ssaLoad(os.Args[2:])
	default:
		fail("unknown command " + os.Args[1])
	}
}

func serve(args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	dir := fs.String("dir", "", "state directory (etcd data, certificates)")
	port := fs.Int("port", 0, "kube-apiserver secure port on 127.0.0.1")
	tokenFile := fs.String("token-file", "", "static token file (token,user,uid,\"group,...\")")
	controllerToken := fs.String("controller-token", "", "a system:masters token from the token file for the controller manager")
	_ = fs.Parse(args)
	if *dir == "" || *port == 0 || *tokenFile == "" || *controllerToken == "" {
		fail("serve needs --dir, --port, --token-file and --controller-token")
	}
	check(os.MkdirAll(*dir, 0o700))
	exitWithParent(*dir)
	certs := writeCertificates(*dir)

	etcdURL := startEtcd(filepath.Join(*dir, "etcd"))
	server := fmt.Sprintf("https://127.0.0.1:%d", *port)
	kubeconfig := filepath.Join(*dir, "controller-manager.kubeconfig")
	check(os.WriteFile(kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: %q, certificate-authority: %q}}]
users: [{name: cm, user: {token: %q}}]
contexts: [{name: local, context: {cluster: local, user: cm}}]
current-context: local
`, server, certs.ca, *controllerToken)), 0o600))

	// The controller manager calls the API server's signal handler setup too, so it runs as a
	// child process; it dies with this one.
	cm := exec.Command(os.Args[0], "controller-manager",
		"--kubeconfig="+kubeconfig,
		"--controllers=serviceaccount-token,serviceaccount",
		"--service-account-private-key-file="+certs.saKey,
		"--root-ca-file="+certs.ca,
		"--use-service-account-credentials=false",
		"--leader-elect=false",
		"--secure-port=0",
	)
	cm.Stdout, cm.Stderr = os.Stderr, os.Stderr
	cm.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	check(cm.Start())

	cmd := apiserver.NewAPIServerCommand()
	cmd.SetArgs([]string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", *port),
		"--cert-dir=" + filepath.Join(*dir, "certs"),
		"--tls-cert-file=" + certs.serving,
		"--tls-private-key-file=" + certs.servingKey,
		"--client-ca-file=" + certs.ca,
		"--token-auth-file=" + *tokenFile,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + certs.saKey,
		"--service-account-signing-key-file=" + certs.saKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--allow-privileged=true",
	})
	if err := cmd.Execute(); err != nil {
		os.Exit(1)
	}
}

// exitWithParent ends the control plane (and removes its state) when the process that started
// it is gone, so a test run that dies never leaves one behind.
func exitWithParent(dir string) {
	parent := os.Getppid()
	go func() {
		for range time.Tick(500 * time.Millisecond) {
			if os.Getppid() != parent {
				_ = os.RemoveAll(dir)
				os.Exit(0)
			}
		}
	}()
}

func startEtcd(dir string) string {
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.LogLevel = "error"
	client, peer := freeURL(), freeURL()
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	check(err)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		fail("etcd did not become ready in 60s")
	}
	return client.String()
}

func freeURL() url.URL {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	defer l.Close()
	return url.URL{Scheme: "http", Host: l.Addr().String()}
}

type certificates struct{ ca, serving, servingKey, saKey string }

// writeCertificates makes a CA, a serving certificate for 127.0.0.1/localhost signed by it, and a
// service-account signing key. Clients verify the server with DIR/ca.crt. A restart on the same
// DIR keeps them, as a real control plane keeps its PKI.
func writeCertificates(dir string) certificates {
	c := certificates{
		ca:         filepath.Join(dir, "ca.crt"),
		serving:    filepath.Join(dir, "serving.crt"),
		servingKey: filepath.Join(dir, "serving.key"),
		saKey:      filepath.Join(dir, "sa.key"),
	}
	if exists(c.ca) && exists(c.serving) && exists(c.servingKey) && exists(c.saKey) {
		return c
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(err)
	now := time.Now()
	caTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kubeharness-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * 365 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	check(err)
	writePEM(c.ca, "CERTIFICATE", caDER)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(err)
	servingTemplate := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * 365 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
	}
	caCert, err := x509.ParseCertificate(caDER)
	check(err)
	servingDER, err := x509.CreateCertificate(rand.Reader, servingTemplate, caCert, &key.PublicKey, caKey)
	check(err)
	writePEM(c.serving, "CERTIFICATE", servingDER)
	keyDER, err := x509.MarshalECPrivateKey(key)
	check(err)
	writePEM(c.servingKey, "EC PRIVATE KEY", keyDER)

	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	check(err)
	writePEM(c.saKey, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey))
	return c
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func writePEM(path, kind string, der []byte) {
	check(os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600))
}

func check(err error) {
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "kubeharness:", msg)
	os.Exit(1)
}
