// Command sync registers a Git repository and a fabric, pulls the fabric with a streamed
// sync, lists what was stored and deletes what it created (unless -keep).
//
//	go run ./examples/sync -addr localhost:50051 -git-url file:///path/to/repo -path fabric
//
// The flags default to the FABRICSYNC_* variables tests/sdk-fixture.sh exports. With
// -kube-url the fabric gets a cluster connection and -mode full applies it too.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/fabricsync/fabricsync/client-sdk/go/fabricsync"
	v1 "github.com/fabricsync/fabricsync/client-sdk/go/fabricsyncv1"
)

func main() {
	addr := flag.String("addr", env("FABRICSYNC_ADDR", "localhost:50051"), "server address")
	caFile := flag.String("ca-file", "", "CA certificate of the server (TLS); empty: plaintext")
	token := flag.String("token", os.Getenv("FABRICSYNC_TOKEN"), "bearer token to send, if any")
	gitURL := flag.String("git-url", os.Getenv("FABRICSYNC_GIT_URL"), "Git repository URL")
	path := flag.String("path", env("FABRICSYNC_GITOPS_PATH", "fabric"), "fabric directory in the repository")
	kubeURL := flag.String("kube-url", os.Getenv("FABRICSYNC_KUBE_URL"), "Kubernetes API server URL (optional)")
	kubeCA := flag.String("kube-ca-file", os.Getenv("FABRICSYNC_KUBE_CA_FILE"), "its CA certificate")
	kubeToken := flag.String("kube-token", os.Getenv("FABRICSYNC_KUBE_TOKEN"), "its bearer token")
	mode := flag.String("mode", "pull", "pull, apply or full")
	name := flag.String("name", "example", "name of the repository and fabric to create")
	keep := flag.Bool("keep", false, "keep the repository and fabric")
	flag.Parse()
	if *gitURL == "" {
		log.Fatal("-git-url (or FABRICSYNC_GIT_URL) is required")
	}
	modes := map[string]v1.SyncMode{"pull": v1.SyncMode_SYNC_MODE_PULL, "apply": v1.SyncMode_SYNC_MODE_APPLY, "full": v1.SyncMode_SYNC_MODE_FULL}
	syncMode, ok := modes[*mode]
	if !ok {
		log.Fatalf("unknown -mode %q", *mode)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts := []fabricsync.Option{fabricsync.WithPlaintext()}
	if *caFile != "" {
		opts = []fabricsync.Option{fabricsync.WithTLS(*caFile)}
	}
	if *token != "" {
		opts = append(opts, fabricsync.WithBearerToken(*token))
	}
	client, err := fabricsync.Dial(ctx, *addr, opts...)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	if err := run(ctx, client, *name, *gitURL, *path, cluster(*kubeURL, *kubeCA, *kubeToken), syncMode, *keep); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, c *fabricsync.Client, name, gitURL, path string, cluster *v1.ClusterConnectionInput, mode v1.SyncMode, keep bool) error {
	repo, err := c.RepositoryService.CreateRepository(ctx, &v1.CreateRepositoryRequest{
		Repository: &v1.Repository{Name: name, Url: gitURL},
	})
	var e *fabricsync.Error
	if errors.As(err, &e) {
		for _, v := range e.FieldViolations {
			log.Printf("invalid %s: %s", v.Field, v.Description)
		}
	}
	if err != nil {
		return fmt.Errorf("creating the repository: %w", err)
	}
	repoID := repo.GetRepository().GetId()
	fmt.Printf("repository %s: %s\n", repoID, gitURL)

	fabric, err := c.FabricService.CreateFabric(ctx, &v1.CreateFabricRequest{
		Fabric:  &v1.Fabric{Name: name, RepositoryId: repoID, GitRef: "main", GitopsPath: path},
		Cluster: cluster,
	})
	if err != nil {
		return fmt.Errorf("creating the fabric: %w", err)
	}
	fabricID := fabric.GetFabric().GetId()
	fmt.Printf("fabric %s: %s of %s\n", fabricID, path, name)
	if !keep {
		// A repository in use cannot be deleted: the fabric goes first.
		defer func() {
			if _, err := c.FabricService.DeleteFabric(ctx, &v1.DeleteFabricRequest{Id: fabricID}); err != nil {
				log.Printf("deleting the fabric: %v", err)
			}
			if _, err := c.RepositoryService.DeleteRepository(ctx, &v1.DeleteRepositoryRequest{Id: repoID}); err != nil {
				log.Printf("deleting the repository: %v", err)
			}
		}()
	}

	run, err := c.RunSync(ctx, &v1.StartSyncRequest{FabricId: fabricID, Mode: mode}, printProgress)
	if err != nil {
		return fmt.Errorf("syncing: %w", err)
	}
	if run.GetStatus() != v1.SyncRunStatus_SYNC_RUN_STATUS_SUCCEEDED {
		return fmt.Errorf("run %s ended %s: %s", run.GetId(), run.GetStatus(), run.GetError())
	}
	counters := run.GetCounters()
	fmt.Printf("run %s succeeded at %.12s: %d documents, %d created, %d applied, %d warnings\n",
		run.GetId(), run.GetCommit(), counters.GetDocuments(), counters.GetCreated(), counters.GetApplied(), counters.GetWarnings())

	for resource, err := range c.Resources(ctx, &v1.ListResourcesRequest{FabricId: fabricID}) {
		if err != nil {
			return fmt.Errorf("listing resources: %w", err)
		}
		key := resource.GetKey()
		fmt.Printf("  %-16s %s/%s (%s)\n", key.GetKind(), key.GetNamespace(), key.GetName(), resource.GetApplyStatus())
	}
	return nil
}

func printProgress(e *v1.SyncProgressEvent) {
	switch p := e.GetPayload().(type) {
	case *v1.SyncProgressEvent_Queued:
		fmt.Println("  queued")
	case *v1.SyncProgressEvent_Fetching:
		fmt.Printf("  fetching: %d objects, %d bytes\n", p.Fetching.GetObjects(), p.Fetching.GetBytes())
	case *v1.SyncProgressEvent_Parsing:
		fmt.Printf("  parsing %d/%d %s\n", p.Parsing.GetFileIndex(), p.Parsing.GetFileCount(), p.Parsing.GetPath())
	case *v1.SyncProgressEvent_Validating:
		fmt.Printf("  validating %d documents\n", p.Validating.GetDocuments())
	case *v1.SyncProgressEvent_Persisting:
		fmt.Printf("  persisting %d/%d\n", p.Persisting.GetDone(), p.Persisting.GetTotal())
	case *v1.SyncProgressEvent_Applying:
		fmt.Printf("  applying wave %d: %d/%d\n", p.Applying.GetWave(), p.Applying.GetDone(), p.Applying.GetTotal())
	case *v1.SyncProgressEvent_Warning:
		fmt.Printf("  warning %s:%d: %s\n", p.Warning.GetFile(), p.Warning.GetLine(), p.Warning.GetMessage())
	case *v1.SyncProgressEvent_Finished:
		fmt.Println("  finished")
	case *v1.SyncProgressEvent_Failed:
		fmt.Printf("  failed: %s\n", p.Failed.GetMessage())
	case *v1.SyncProgressEvent_Cancelled:
		fmt.Println("  cancelled")
	}
}

// cluster is the fabric's cluster connection, nil without a URL.
func cluster(url, caFile, token string) *v1.ClusterConnectionInput {
	if url == "" {
		return nil
	}
	var ca []byte
	if caFile != "" {
		var err error
		if ca, err = os.ReadFile(caFile); err != nil {
			log.Fatal(err)
		}
	}
	return &v1.ClusterConnectionInput{ServerUrl: url, CaCertificatePem: string(ca), BearerToken: token}
}

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
