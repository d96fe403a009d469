package main

// ssa-load: the physical limit of server-side apply on an API server, for the cluster bench.
// It reads every object of the YAML files under a directory, then applies them all with
// server-side apply (PATCH application/apply-patch+yaml, force) with many requests in flight:
// no waves (the Hedgehog CRDs have no admission webhooks, so the API server validates each
// object alone and any order is accepted), no live view, no per-object bookkeeping, response
// bodies discarded unread. It prints one line of key=value pairs, objects/s among them.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// request is one prepared apply: its URL path and body, made before the clock starts.
type request struct {
	path string
	body []byte
}

func ssaLoad(args []string) {
	flags := flag.NewFlagSet("ssa-load", flag.ExitOnError)
	server := flags.String("server", "", "API server URL (https://127.0.0.1:PORT)")
	token := flags.String("token", "", "bearer token")
	caFile := flags.String("ca", "", "CA certificate (PEM) of the API server")
	dir := flags.String("dir", "", "directory whose *.yaml/*.yml files hold the objects")
	concurrency := flags.Int("concurrency", 32, "requests in flight")
	manager := flags.String("field-manager", "ssa-load", "server-side apply field manager")
	namespace := flags.String("namespace", "default", "namespace of namespaced objects that name none")
	label := flags.String("label", "", "key=value label added to every object (as fabricsync adds its fabric label)")
	http1 := flags.Bool("http1", false, "HTTP/1.1 with one connection per request in flight instead of HTTP/2")
	_ = flags.Parse(args)
	if *server == "" || *token == "" || *caFile == "" || *dir == "" || *concurrency < 1 {
		fail("ssa-load needs --server, --token, --ca, --dir and a --concurrency of at least 1")
	}
	client := httpClient(*caFile, *concurrency, *http1)
	base := strings.TrimRight(*server, "/")
	objects := readObjects(*dir)
	if *label != "" {
		key, value, ok := strings.Cut(*label, "=")
		if !ok || key == "" {
			fail("--label must be key=value")
		}
		for _, o := range objects {
			labels := o.GetLabels()
			if labels == nil {
				labels = map[string]string{}
			}
			labels[key] = value
			o.SetLabels(labels)
		}
	}
	mapper := discover(client, base, *token, objects)
	query := url.Values{"fieldManager": {*manager}, "force": {"true"}}.Encode()
	requests := make([]request, 0, len(objects))
	for _, o := range objects {
		gvk := o.GroupVersionKind()
		r, ok := mapper[gvk.GroupVersion().String()+"/"+gvk.Kind]
		if !ok {
			fail(fmt.Sprintf("the API server serves no %s", gvk))
		}
		prefix := "/apis/" + gvk.GroupVersion().String()
		if gvk.Group == "" {
			prefix = "/api/" + gvk.Version
		}
		path := prefix + "/" + r.Name + "/" + url.PathEscape(o.GetName())
		if r.Namespaced {
			ns := o.GetNamespace()
			if ns == "" {
				ns = *namespace
				o.SetNamespace(ns)
			}
			path = prefix + "/namespaces/" + url.PathEscape(ns) + "/" + r.Name + "/" + url.PathEscape(o.GetName())
		}
		body, err := json.Marshal(o.Object) // JSON is YAML: the apply patch type takes it.
		check(err)
		requests = append(requests, request{path: base + path + "?" + query, body: body})
	}

	var next, failed atomic.Int64
	var firstError sync.Once
	var protocol atomic.Value
	var wg sync.WaitGroup
	started := time.Now()
	for range *concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(requests) {
					return
				}
				proto, err := apply(client, *token, requests[i])
				if err != nil {
					failed.Add(1)
					firstError.Do(func() { fmt.Fprintln(os.Stderr, "ssa-load:", err) })
				} else {
					protocol.CompareAndSwap(nil, proto)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(started).Seconds()
	proto, _ := protocol.Load().(string)
	fmt.Printf("objects=%d failed=%d seconds=%.3f objects_per_second=%.1f concurrency=%d protocol=%s\n",
		len(requests), failed.Load(), elapsed, float64(len(requests))/elapsed, *concurrency, proto)
	if failed.Load() > 0 {
		os.Exit(1)
	}
}

// apply sends one request and reads its response to the end (so the connection is reused)
// without decoding it; the protocol is returned so the report can say which one was spoken.
func apply(client *http.Client, token string, r request) (string, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPatch, r.path, bytes.NewReader(r.body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/apply-patch+yaml")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		text, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return "", fmt.Errorf("%s: %s: %s", r.path, resp.Status, text)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.Proto, err
}

func httpClient(caFile string, concurrency int, http1 bool) *http.Client {
	pem, err := os.ReadFile(caFile)
	check(err)
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		fail("no certificate in " + caFile)
	}
	transport := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   !http1,
		MaxIdleConnsPerHost: concurrency,
		MaxConnsPerHost:     0,
		IdleConnTimeout:     90 * time.Second,
	}
	if http1 {
		// A non-nil empty map turns HTTP/2 off.
		transport.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: transport, Timeout: 60 * time.Second}
}

// readObjects parses every document of the YAML files under dir, in path order.
func readObjects(dir string) []*unstructured.Unstructured {
	var paths []string
	check(filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			paths = append(paths, path)
		}
		return nil
	}))
	sort.Strings(paths)
	var objects []*unstructured.Unstructured
	for _, path := range paths {
		f, err := os.Open(path)
		check(err)
		decoder := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
		for {
			var object map[string]any
			err := decoder.Decode(&object)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				fail(path + ": " + err.Error())
			}
			if len(object) == 0 {
				continue
			}
			objects = append(objects, &unstructured.Unstructured{Object: object})
		}
		check(f.Close())
	}
	return objects
}

// discover finds the resource (plural, scope) of every kind the objects use, one discovery
// request per group version.
func discover(client *http.Client, base, token string, objects []*unstructured.Unstructured) map[string]metav1.APIResource {
	mapper := map[string]metav1.APIResource{}
	seen := map[string]bool{}
	for _, o := range objects {
		gv := o.GroupVersionKind().GroupVersion()
		if seen[gv.String()] {
			continue
		}
		seen[gv.String()] = true
		path := base + "/apis/" + gv.String()
		if gv.Group == "" {
			path = base + "/api/" + gv.Version
		}
		req, err := http.NewRequest(http.MethodGet, path, nil)
		check(err)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		check(err)
		var list metav1.APIResourceList
		err = json.NewDecoder(resp.Body).Decode(&list)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil {
			fail(fmt.Sprintf("discovery of %s: %s %v", gv, resp.Status, err))
		}
		for _, r := range list.APIResources {
			if !strings.Contains(r.Name, "/") {
				mapper[gv.String()+"/"+r.Kind] = r
			}
		}
	}
	return mapper
}
