package fabricsync_test

// The SDK against a real fabricsync server, Kubernetes API server and Git repository, as
// tests/sdk-fixture.sh starts them (client-sdk/go/test.sh runs `go test` under it). The steps
// build on each other: a repository, a fabric on the fixture's cluster, a pull, an apply, a
// change made with kubectl seen as a watch event and as drift.

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/fabricsync/fabricsync/client-sdk/go/fabricsync"
	v1 "github.com/fabricsync/fabricsync/client-sdk/go/fabricsyncv1"
)

// The sample fabric (server/tests/data/samples/demo-gitops): 9 objects in namespace default.
var sampleKinds = map[string]int64{"VPC": 4, "VPCAttachment": 3, "VPCPeering": 1, "ExternalPeering": 1}

// The object the tests change behind fabricsync's back, and how.
var (
	patchedKey = &v1.ResourceKey{Group: "vpc.githedgehog.com", Kind: "VPC", Namespace: "default", Name: "demo-vpc-3"}
	patchJSON  = `{"spec":{"subnets":{"subnet-1":{"vlan":1199}}}}`
)

const patchedPath = "/spec/subnets/subnet-1/vlan"

// env is what the fixture exports.
type env struct {
	addr, gitURL, gitDir, gitopsPath, kubeURL, kubeCAFile, kubeToken, kubectl string
	// API tokens of the server: admin, viewer, operator.
	token, viewerToken, operatorToken string
}

func fixtureEnv(t *testing.T) env {
	e := env{
		addr: os.Getenv("FABRICSYNC_ADDR"), gitURL: os.Getenv("FABRICSYNC_GIT_URL"), gitDir: os.Getenv("FABRICSYNC_GIT_DIR"),
		gitopsPath: os.Getenv("FABRICSYNC_GITOPS_PATH"), kubeURL: os.Getenv("FABRICSYNC_KUBE_URL"),
		kubeCAFile: os.Getenv("FABRICSYNC_KUBE_CA_FILE"), kubeToken: os.Getenv("FABRICSYNC_KUBE_TOKEN"), kubectl: os.Getenv("FABRICSYNC_KUBECTL"),
		token: os.Getenv("FABRICSYNC_TOKEN"), viewerToken: os.Getenv("FABRICSYNC_VIEWER_TOKEN"), operatorToken: os.Getenv("FABRICSYNC_OPERATOR_TOKEN"),
	}
	if e.addr == "" {
		t.Skip("FABRICSYNC_ADDR is unset: run under tests/sdk-fixture.sh (client-sdk/go/test.sh does)")
	}
	return e
}

func dial(t *testing.T, addr string, opts ...fabricsync.Option) *fabricsync.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	defaults := []fabricsync.Option{fabricsync.WithPlaintext(), fabricsync.WithBearerToken(os.Getenv("FABRICSYNC_TOKEN"))}
	c, err := fabricsync.Dial(ctx, addr, append(defaults, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// state is what the steps pass on to each other.
type state struct {
	env
	c         *fabricsync.Client
	repo      *v1.Repository
	fabric    *v1.Fabric
	pullRun   string
	modified  *v1.FabricEvent // the MODIFIED event of the patch
	watchSeqs []int64         // sequences of an uninterrupted watch from 0 up to modified
}

func TestAgainstServer(t *testing.T) {
	s := &state{env: fixtureEnv(t)}
	s.c = dial(t, s.addr)
	steps := []struct {
		name string
		run  func(*testing.T, context.Context, *state)
	}{
		{"Repositories", repositories},
		{"Fabrics", fabrics},
		{"Pull", pull},
		{"WriteToReviewBranch", writeToReviewBranch},
		{"SyncProgressResume", syncProgressResume},
		{"Apply", apply},
		{"WatchEvents", watchEvents},
		{"WatchResumeAfterCancel", watchResumeAfterCancel},
		{"WatchReconnectsOnUnavailable", watchReconnects},
		{"Drift", drift},
		{"Roles", roles},
		{"Delete", deleteAll},
	}
	for _, step := range steps {
		ok := t.Run(step.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			step.run(t, ctx, s)
		})
		if !ok {
			t.Fatalf("step %s failed; the later ones depend on it", step.name)
		}
	}
}

// One object changed in Git through the API, committed to a review branch of its own (the
// fabric's ref, and so the other steps, stay as they were).
func writeToReviewBranch(t *testing.T, ctx context.Context, s *state) {
	key := &v1.ResourceKey{Group: "vpc.githedgehog.com", Kind: "VPC", Namespace: "default", Name: "demo-vpc-1"}
	got, err := s.c.FabricService.GetResource(ctx, &v1.GetResourceRequest{FabricId: s.fabric.GetId(), Resource: &v1.GetResourceRequest_Key{Key: key}})
	must(t, err)
	vpc := got.GetResource().GetDesired()
	dhcp := vpc.GetFields()["spec"].GetStructValue().GetFields()["subnets"].GetStructValue().GetFields()["default"].GetStructValue().GetFields()["dhcp"]
	dhcp.GetStructValue().GetFields()["range"].GetStructValue().GetFields()["end"] = structpb.NewStringValue("10.10.101.80")
	branch := fmt.Sprintf("review/sdk-go-%d", time.Now().UnixNano())
	res, err := s.c.WriteService.ChangeObjects(ctx, &v1.ChangeObjectsRequest{
		FabricId: s.fabric.GetId(),
		Changes:  []*v1.ObjectChange{{Change: &v1.ObjectChange_Upsert{Upsert: vpc}}},
		Commit:   &v1.CommitOptions{Message: "sdk-go: a smaller DHCP range", Branch: branch},
	})
	must(t, err)
	r := res.GetResult()
	if r.GetOutcome() != v1.WriteOutcome_WRITE_OUTCOME_COMMITTED || r.GetBranch() != branch || r.GetRunId() != "" {
		t.Fatalf("result %v", r)
	}
	if len(r.GetFiles()) != 1 || !strings.Contains(r.GetFiles()[0].GetDiff(), "+          end: 10.10.101.80") {
		t.Fatalf("files %v", r.GetFiles())
	}
	out, err := exec.Command("git", "-C", s.gitDir, "rev-parse", branch).Output()
	must(t, err)
	if strings.TrimSpace(string(out)) != r.GetCommit() {
		t.Errorf("%s is at %s, not %s", branch, out, r.GetCommit())
	}
}

func repositories(t *testing.T, ctx context.Context, s *state) {
	c := s.c
	created, err := c.RepositoryService.CreateRepository(ctx, &v1.CreateRepositoryRequest{
		Repository: &v1.Repository{Name: "sdk-go", Url: s.gitURL},
	})
	must(t, err)
	repo := created.GetRepository()
	if repo.GetId() == "" || repo.GetEtag() == "" || repo.GetAuth().GetType() != v1.AuthType_AUTH_TYPE_NONE {
		t.Fatalf("created %v", repo)
	}
	got, err := c.RepositoryService.GetRepository(ctx, &v1.GetRepositoryRequest{Id: repo.GetId()})
	must(t, err)
	if got.GetRepository().GetName() != "sdk-go" || got.GetRepository().GetUrl() != s.gitURL {
		t.Errorf("got %v", got.GetRepository())
	}
	other, err := c.RepositoryService.CreateRepository(ctx, &v1.CreateRepositoryRequest{
		Repository: &v1.Repository{Name: "sdk-go-other", Url: s.gitURL},
	})
	must(t, err)

	// Two repositories, one per page: the iterator follows next_page_token.
	page, err := c.RepositoryService.ListRepositories(ctx, &v1.ListRepositoriesRequest{PageSize: 1})
	must(t, err)
	if len(page.GetRepositories()) != 1 || page.GetNextPageToken() == "" || page.GetTotalSize() != 2 {
		t.Fatalf("first page %v", page)
	}
	req := &v1.ListRepositoriesRequest{PageSize: 1}
	if names := collect(t, c.Repositories(ctx, req), (*v1.Repository).GetName); !slices.Equal(names, []string{"sdk-go", "sdk-go-other"}) {
		t.Errorf("listed %v", names)
	}
	if req.GetPageToken() != "" {
		t.Error("the iterator changed the caller's request")
	}
	if names := collect(t, c.Repositories(ctx, &v1.ListRepositoriesRequest{Filter: "name=sdk-go"}), (*v1.Repository).GetName); !slices.Equal(names, []string{"sdk-go"}) {
		t.Errorf("filtered %v", names)
	}
	for range c.Repositories(ctx, nil) {
		break // stopping early is fine
	}
	_, err = first(c.Repositories(ctx, &v1.ListRepositoriesRequest{Filter: "colour=blue"}))
	if e := asError(t, err, codes.InvalidArgument); e != nil {
		if _, ok := e.Violation("filter"); !ok {
			t.Errorf("no violation of filter: %v", e.FieldViolations)
		}
	}

	// Update with a field mask and the etag just read; the old etag is then stale.
	updated, err := c.RepositoryService.UpdateRepository(ctx, &v1.UpdateRepositoryRequest{
		Repository: &v1.Repository{Id: repo.GetId(), Description: "the sample fabric", Name: "ignored-not-in-mask"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"description"}},
		Etag:       repo.GetEtag(),
	})
	must(t, err)
	if u := updated.GetRepository(); u.GetDescription() != "the sample fabric" || u.GetName() != "sdk-go" || u.GetEtag() == repo.GetEtag() {
		t.Errorf("updated %v", u)
	}
	_, err = c.RepositoryService.UpdateRepository(ctx, &v1.UpdateRepositoryRequest{
		Repository: &v1.Repository{Id: repo.GetId(), Description: "lost update"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"description"}},
		Etag:       repo.GetEtag(),
	})
	asError(t, err, codes.Aborted)
	if !fabricsync.IsAborted(err) || status.Code(err) != codes.Aborted {
		t.Errorf("stale etag: %v", err)
	}

	// Bad input: one violation per bad field, named by its path in the request.
	_, err = c.RepositoryService.CreateRepository(ctx, &v1.CreateRepositoryRequest{
		Repository: &v1.Repository{Name: "Not A Label", Url: s.gitURL},
	})
	if e := asError(t, err, codes.InvalidArgument); e != nil {
		v, ok := e.Violation("repository.name")
		if !ok || v.Description == "" || len(e.FieldViolations) != 1 {
			t.Errorf("violations %v", e.FieldViolations)
		}
	}
	_, err = c.RepositoryService.CreateRepository(ctx, &v1.CreateRepositoryRequest{Repository: &v1.Repository{Name: "sdk-go", Url: s.gitURL}})
	asError(t, err, codes.AlreadyExists)
	_, err = c.RepositoryService.GetRepository(ctx, &v1.GetRepositoryRequest{Id: "00000000-0000-4000-8000-000000000000"})
	asError(t, err, codes.NotFound)
	if !fabricsync.IsNotFound(err) || fabricsync.IsAborted(err) {
		t.Errorf("IsNotFound(%v)", err)
	}

	tested, err := c.RepositoryService.TestRepositoryConnection(ctx, &v1.TestRepositoryConnectionRequest{Id: repo.GetId()})
	must(t, err)
	if !tested.GetReachable() || tested.GetDefaultBranch() != "main" || tested.GetRefCount() < 1 ||
		tested.GetRepository().GetConnectionStatus() != v1.ConnectionStatus_CONNECTION_STATUS_REACHABLE {
		t.Errorf("test connection %v", tested)
	}

	_, err = c.RepositoryService.DeleteRepository(ctx, &v1.DeleteRepositoryRequest{Id: other.GetRepository().GetId(), Etag: other.GetRepository().GetEtag()})
	must(t, err)
	s.repo = tested.GetRepository()
}

func fabrics(t *testing.T, ctx context.Context, s *state) {
	c := s.c
	ca, err := os.ReadFile(s.kubeCAFile)
	must(t, err)
	cluster := &v1.ClusterConnectionInput{ServerUrl: s.kubeURL, CaCertificatePem: string(ca), BearerToken: s.kubeToken, Namespace: "default"}

	_, err = c.FabricService.CreateFabric(ctx, &v1.CreateFabricRequest{
		Fabric:  &v1.Fabric{Name: "sdk-go", RepositoryId: s.repo.GetId(), GitopsPath: s.gitopsPath},
		Cluster: &v1.ClusterConnectionInput{ServerUrl: "ftp://cluster"},
	})
	if e := asError(t, err, codes.InvalidArgument); e != nil {
		if _, ok := e.Violation("cluster.server_url"); !ok {
			t.Errorf("violations %v", e.FieldViolations)
		}
	}

	created, err := c.FabricService.CreateFabric(ctx, &v1.CreateFabricRequest{
		Fabric:  &v1.Fabric{Name: "sdk-go", RepositoryId: s.repo.GetId(), GitRef: "main", GitopsPath: s.gitopsPath},
		Cluster: cluster,
	})
	must(t, err)
	f := created.GetFabric()
	if f.GetCluster().GetServerUrl() != s.kubeURL || !f.GetCluster().GetHasBearerToken() || f.GetSyncStatus() != v1.SyncStatus_SYNC_STATUS_NEVER_SYNCED {
		t.Errorf("created %v", f)
	}
	got, err := c.FabricService.GetFabric(ctx, &v1.GetFabricRequest{Id: f.GetId()})
	must(t, err)
	if got.GetFabric().GetName() != "sdk-go" || got.GetFabric().GetRepositoryId() != s.repo.GetId() {
		t.Errorf("got %v", got.GetFabric())
	}
	ids := collect(t, c.Fabrics(ctx, &v1.ListFabricsRequest{Filter: "repository_id=" + s.repo.GetId()}), (*v1.Fabric).GetId)
	if !slices.Equal(ids, []string{f.GetId()}) {
		t.Errorf("listed %v", ids)
	}

	tested, err := c.FabricService.TestClusterConnection(ctx, &v1.TestClusterConnectionRequest{Id: f.GetId()})
	must(t, err)
	if !tested.GetReachable() || tested.GetFailure() != v1.ClusterFailure_CLUSTER_FAILURE_UNSPECIFIED || len(tested.GetCrds()) == 0 {
		t.Errorf("cluster connection %v", tested)
	}
	s.fabric = f
}

func pull(t *testing.T, ctx context.Context, s *state) {
	c := s.c
	started, err := c.SyncService.StartSync(ctx, &v1.StartSyncRequest{FabricId: s.fabric.GetId(), Mode: v1.SyncMode_SYNC_MODE_PULL})
	must(t, err)
	if started.GetAlreadyActive() || started.GetRun().GetStatus() != v1.SyncRunStatus_SYNC_RUN_STATUS_QUEUED {
		t.Errorf("started %v", started)
	}
	runID := started.GetRun().GetId()

	// The progress stream ends by itself after the run's last event.
	events := collect(t, c.SyncProgress(ctx, &v1.StreamSyncProgressRequest{RunId: runID}), identity)
	if len(events) < 3 || events[0].GetQueued() == nil {
		t.Fatalf("events %v", events)
	}
	assertIncreasing(t, sequences(events))
	if !slices.ContainsFunc(events, func(e *v1.SyncProgressEvent) bool { return e.GetParsing() != nil }) {
		t.Error("no parsing event")
	}
	finished := events[len(events)-1].GetFinished()
	if finished == nil {
		t.Fatalf("last event %v", events[len(events)-1])
	}
	if n := finished.GetCounters(); n.GetDocuments() != 9 || n.GetCreated() != 9 || n.GetFiles() != 4 || n.GetErrors() != 0 || n.GetApplied() != 0 {
		t.Errorf("counters %v", n)
	}
	head, err := exec.Command("git", "-C", s.gitDir, "rev-parse", "HEAD").Output()
	must(t, err)
	if finished.GetCommit() != strings.TrimSpace(string(head)) {
		t.Errorf("commit %s, HEAD %s", finished.GetCommit(), head)
	}

	run, err := c.SyncService.GetSyncRun(ctx, &v1.GetSyncRunRequest{Id: runID})
	must(t, err)
	r := run.GetRun()
	if r.GetStatus() != v1.SyncRunStatus_SYNC_RUN_STATUS_SUCCEEDED || r.GetLastSequence() != events[len(events)-1].GetSequence() {
		t.Errorf("run %v", r)
	}
	counts := map[string]int64{}
	for _, k := range r.GetKindCounts() {
		counts[k.GetKind()] = k.GetCount()
	}
	if fmt.Sprint(counts) != fmt.Sprint(sampleKinds) {
		t.Errorf("kind counts %v", counts)
	}

	// Three pages of 4; the filter keeps the VPCs.
	// (Sorted here: the server orders by id, not by key as the proto says.)
	name := func(r *v1.Resource) string { return r.GetKey().GetKind() + "/" + r.GetKey().GetName() }
	names := collect(t, c.Resources(ctx, &v1.ListResourcesRequest{FabricId: s.fabric.GetId(), PageSize: 4}), name)
	if slices.Sort(names); len(slices.Compact(slices.Clone(names))) != 9 {
		t.Errorf("want 9 distinct resources, got %v", names)
	}
	vpcs := collect(t, c.Resources(ctx, &v1.ListResourcesRequest{FabricId: s.fabric.GetId(), Filter: "kind=VPC"}), name)
	if slices.Sort(vpcs); !slices.Equal(vpcs, []string{"VPC/demo-vpc-1", "VPC/demo-vpc-2", "VPC/demo-vpc-3", "VPC/vpc-test"}) {
		t.Errorf("VPCs %v", vpcs)
	}
	fabric, err := c.FabricService.GetFabric(ctx, &v1.GetFabricRequest{Id: s.fabric.GetId()})
	must(t, err)
	if f := fabric.GetFabric(); f.GetSyncStatus() != v1.SyncStatus_SYNC_STATUS_SYNCED || f.GetLastSyncedCommit() != finished.GetCommit() {
		t.Errorf("fabric after the pull %v", f)
	}
	plan, err := c.SyncService.PlanSync(ctx, &v1.PlanSyncRequest{FabricId: s.fabric.GetId()})
	must(t, err)
	if !plan.GetValid() || len(plan.GetChanges()) != 0 || plan.GetCommit() != finished.GetCommit() {
		t.Errorf("plan of the pulled commit %v", plan)
	}
	s.pullRun = runID
}

// A finished run's progress replays from any sequence: resuming after the third event gives
// exactly the rest, with or without broken streams on the way.
func syncProgressResume(t *testing.T, ctx context.Context, s *state) {
	all := sequences(collect(t, s.c.SyncProgress(ctx, &v1.StreamSyncProgressRequest{RunId: s.pullRun}), identity))
	rest := sequences(collect(t, s.c.SyncProgress(ctx, &v1.StreamSyncProgressRequest{RunId: s.pullRun, FromSequence: all[2]}), identity))
	if !slices.Equal(rest, all[3:]) {
		t.Errorf("resumed after %d: %v, want %v", all[2], rest, all[3:])
	}
	faulty, opened := breakingClient(t, s.addr, 3, 2)
	broken := sequences(collect(t, faulty.SyncProgress(ctx, &v1.StreamSyncProgressRequest{RunId: s.pullRun}), identity))
	if !slices.Equal(broken, all) || opened.Load() < 4 {
		t.Errorf("through %d broken streams: %v, want %v", opened.Load()-1, broken, all)
	}
}

func apply(t *testing.T, ctx context.Context, s *state) {
	c := s.c
	applying := 0
	run, err := c.RunSync(ctx, &v1.StartSyncRequest{FabricId: s.fabric.GetId(), Mode: v1.SyncMode_SYNC_MODE_APPLY}, func(e *v1.SyncProgressEvent) {
		if e.GetApplying() != nil {
			applying++
		}
	})
	must(t, err)
	if run.GetStatus() != v1.SyncRunStatus_SYNC_RUN_STATUS_SUCCEEDED || run.GetCounters().GetApplied() != 9 || applying == 0 {
		t.Fatalf("apply run %v (%d applying events)", run, applying)
	}
	out := kubectl(t, s, "get", "vpcs.vpc.githedgehog.com", "-n", "default", "-o", "name")
	if !strings.Contains(out, "demo-vpc-3") {
		t.Errorf("VPCs in the cluster: %s", out)
	}
	modes := collect(t, c.SyncRuns(ctx, &v1.ListSyncRunsRequest{Filter: "fabric_id=" + s.fabric.GetId(), PageSize: 1}), (*v1.SyncRun).GetMode)
	if !slices.Equal(modes, []v1.SyncMode{v1.SyncMode_SYNC_MODE_APPLY, v1.SyncMode_SYNC_MODE_PULL}) {
		t.Errorf("runs newest first: %v", modes)
	}

	// The watch starts after the apply; wait until it sees the applied object.
	eventually(t, ctx, "the watch to see demo-vpc-3 in sync", func() (bool, string) {
		d, err := c.DriftService.GetResourceDrift(ctx, &v1.GetResourceDriftRequest{FabricId: s.fabric.GetId(), Resource: &v1.GetResourceDriftRequest_Key{Key: patchedKey}})
		must(t, err)
		return d.GetDrift().GetStatus() == v1.ResourceDriftStatus_RESOURCE_DRIFT_STATUS_IN_SYNC, d.String()
	})
}

// The watch replays the objects the apply created, then shows a kubectl patch live.
func watchEvents(t *testing.T, ctx context.Context, s *state) {
	next, stop := iter.Pull2(s.c.FabricEvents(ctx, &v1.WatchFabricEventsRequest{FabricId: s.fabric.GetId(), Kinds: []string{"VPC"}}))
	defer stop()
	var seen []*v1.FabricEvent
	until := func(what string, match func(*v1.FabricEvent) bool) *v1.FabricEvent {
		for {
			e, err, ok := next()
			if !ok || err != nil {
				t.Fatalf("waiting for %s: stream ended (%v) after %v", what, err, seen)
			}
			seen = append(seen, e)
			if match(e) {
				return e
			}
		}
	}
	until("ADDED demo-vpc-3", func(e *v1.FabricEvent) bool {
		return e.GetType() == v1.FabricEventType_FABRIC_EVENT_TYPE_ADDED && e.GetKey().GetName() == patchedKey.Name
	})
	kubectl(t, s, "patch", "vpcs.vpc.githedgehog.com", patchedKey.Name, "-n", patchedKey.Namespace, "--type", "merge", "-p", patchJSON)
	modified := until("MODIFIED demo-vpc-3", func(e *v1.FabricEvent) bool {
		return e.GetType() == v1.FabricEventType_FABRIC_EVENT_TYPE_MODIFIED && e.GetKey().GetName() == patchedKey.Name
	})
	if modified.GetFieldManager() != "kubectl-patch" || modified.GetResourceVersion() == "" {
		t.Errorf("modified %v", modified)
	}
	vlan := modified.GetObject().GetFields()["spec"].GetStructValue().GetFields()["subnets"].GetStructValue().
		GetFields()["subnet-1"].GetStructValue().GetFields()["vlan"].GetNumberValue()
	if vlan != 1199 {
		t.Errorf("observed vlan %v", vlan)
	}
	for _, e := range seen {
		if e.GetKey().GetKind() != "VPC" || e.GetFabricId() != s.fabric.GetId() {
			t.Errorf("kinds filter let through %v", e.GetKey())
		}
	}
	assertIncreasing(t, sequences(seen))
	s.modified = modified
	s.watchSeqs = sequences(collect(t, upTo(s.c.FabricEvents(ctx, &v1.WatchFabricEventsRequest{FabricId: s.fabric.GetId()}), modified.GetSequence()), identity))
}

// A consumer that stops (cancels its context) and resumes from the last sequence it got
// sees every event once.
func watchResumeAfterCancel(t *testing.T, ctx context.Context, s *state) {
	streamCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var before []int64
	var ended error
	for e, err := range s.c.FabricEvents(streamCtx, &v1.WatchFabricEventsRequest{FabricId: s.fabric.GetId()}) {
		if err != nil {
			ended = err
			break
		}
		before = append(before, e.GetSequence())
		if len(before) == 4 {
			cancel() // mid-stream: the next receive fails
		}
	}
	if !errors.Is(ended, context.Canceled) || len(before) != 4 {
		t.Fatalf("after %v the stream ended with %v, want context.Canceled", before, ended)
	}
	after := sequences(collect(t, upTo(s.c.FabricEvents(ctx, &v1.WatchFabricEventsRequest{FabricId: s.fabric.GetId(), FromSequence: before[3]}), s.modified.GetSequence()), identity))
	if got := append(before, after...); !slices.Equal(got, s.watchSeqs) {
		t.Errorf("cancelled after %v, resumed with %v; an uninterrupted watch gave %v", before, after, s.watchSeqs)
	}
}

// Streams that break with UNAVAILABLE are reopened from the last sequence by the SDK itself.
func watchReconnects(t *testing.T, ctx context.Context, s *state) {
	faulty, opened := breakingClient(t, s.addr, 3, 2)
	got := sequences(collect(t, upTo(faulty.FabricEvents(ctx, &v1.WatchFabricEventsRequest{FabricId: s.fabric.GetId()}), s.modified.GetSequence()), identity))
	if !slices.Equal(got, s.watchSeqs) || opened.Load() < 4 {
		t.Errorf("through %d broken streams: %v; an unbroken watch gave %v", opened.Load()-1, got, s.watchSeqs)
	}
}

func drift(t *testing.T, ctx context.Context, s *state) {
	c, fabricID := s.c, s.fabric.GetId()
	var d *v1.ResourceDrift
	eventually(t, ctx, "demo-vpc-3 to drift", func() (bool, string) {
		resp, err := c.DriftService.GetResourceDrift(ctx, &v1.GetResourceDriftRequest{FabricId: fabricID, Resource: &v1.GetResourceDriftRequest_Key{Key: patchedKey}})
		must(t, err)
		d = resp.GetDrift()
		return d.GetStatus() == v1.ResourceDriftStatus_RESOURCE_DRIFT_STATUS_DRIFTED, d.String()
	})
	if len(d.GetFields()) != 1 {
		t.Fatalf("drifted fields %v", d.GetFields())
	}
	field := d.GetFields()[0]
	if field.GetPath() != patchedPath || field.GetDesired().GetNumberValue() != 1131 || field.GetLive().GetNumberValue() != 1199 {
		t.Errorf("field %v", field)
	}
	if len(field.GetManagers()) == 0 || field.GetManagers()[0].GetManager() != "kubectl-patch" {
		t.Errorf("managers %v", field.GetManagers())
	}
	if !strings.Contains(d.GetUnifiedDiff(), "1199") || d.GetScore() <= 0 {
		t.Errorf("diff %q score %v", d.GetUnifiedDiff(), d.GetScore())
	}

	summary, err := c.DriftService.GetFabricDrift(ctx, &v1.GetFabricDriftRequest{FabricId: fabricID})
	must(t, err)
	if sm := summary.GetSummary(); sm.GetDriftStatus() != v1.DriftStatus_DRIFT_STATUS_DRIFTED || sm.GetDriftCount() != 1 {
		t.Errorf("summary %v", sm)
	}
	detected, err := c.DriftService.DetectDrift(ctx, &v1.DetectDriftRequest{FabricId: fabricID})
	must(t, err)
	if detected.GetSummary().GetDriftCount() != 1 {
		t.Errorf("recomputed %v", detected.GetSummary())
	}
	drifted := collect(t, c.DriftedResources(ctx, &v1.ListDriftedResourcesRequest{FabricId: fabricID}), func(r *v1.ResourceDrift) string { return r.GetKey().GetName() })
	if !slices.Equal(drifted, []string{patchedKey.Name}) {
		t.Errorf("drifted resources %v", drifted)
	}
	if missing := collect(t, c.DriftedResources(ctx, &v1.ListDriftedResourcesRequest{FabricId: fabricID, Filter: "status=missing"}), identity); len(missing) != 0 {
		t.Errorf("missing %v", missing)
	}

	// The drift stream replays the change, with the field and who made it.
	for e, err := range c.DriftEvents(ctx, &v1.StreamDriftRequest{FabricId: fabricID}) {
		must(t, err)
		if e.GetDrift().GetKey().GetName() == patchedKey.Name && e.GetDrift().GetStatus() == v1.ResourceDriftStatus_RESOURCE_DRIFT_STATUS_DRIFTED {
			if e.GetPreviousStatus() != v1.ResourceDriftStatus_RESOURCE_DRIFT_STATUS_IN_SYNC || e.GetDrift().GetFields()[0].GetPath() != patchedPath {
				t.Errorf("drift event %v", e)
			}
			break
		}
	}
}

func deleteAll(t *testing.T, ctx context.Context, s *state) {
	c := s.c
	_, err := c.RepositoryService.DeleteRepository(ctx, &v1.DeleteRepositoryRequest{Id: s.repo.GetId()})
	asError(t, err, codes.FailedPrecondition) // a fabric uses it
	updated, err := c.FabricService.UpdateFabric(ctx, &v1.UpdateFabricRequest{
		Fabric:     &v1.Fabric{Id: s.fabric.GetId(), Description: "about to go"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"description"}},
		Etag:       s.fabric.GetEtag(),
	})
	must(t, err)
	_, err = c.FabricService.DeleteFabric(ctx, &v1.DeleteFabricRequest{Id: s.fabric.GetId(), Etag: s.fabric.GetEtag()})
	asError(t, err, codes.Aborted) // the update changed the etag
	_, err = c.FabricService.DeleteFabric(ctx, &v1.DeleteFabricRequest{Id: s.fabric.GetId(), Etag: updated.GetFabric().GetEtag()})
	must(t, err)
	_, err = c.RepositoryService.DeleteRepository(ctx, &v1.DeleteRepositoryRequest{Id: s.repo.GetId()})
	must(t, err)
	_, err = c.FabricService.GetFabric(ctx, &v1.GetFabricRequest{Id: s.fabric.GetId()})
	asError(t, err, codes.NotFound)
}

// roles: a viewer reads but cannot start runs; an operator can; no token is refused.
func roles(t *testing.T, ctx context.Context, s *state) {
	viewer := dial(t, s.addr, fabricsync.WithBearerToken(s.viewerToken))
	_, err := viewer.FabricService.GetFabric(ctx, &v1.GetFabricRequest{Id: s.fabric.GetId()})
	must(t, err)
	start := &v1.StartSyncRequest{FabricId: s.fabric.GetId(), Mode: v1.SyncMode_SYNC_MODE_PULL, DryRun: true}
	_, err = viewer.SyncService.StartSync(ctx, start)
	if e := asError(t, err, codes.PermissionDenied); e != nil && !strings.Contains(e.Message, "needs role operator") {
		t.Errorf("the refusal does not name the role: %v", e)
	}
	if !errors.Is(err, fabricsync.ErrPermissionDenied) {
		t.Errorf("errors.Is(ErrPermissionDenied) = false for %v", err)
	}
	operator := dial(t, s.addr, fabricsync.WithBearerToken(s.operatorToken))
	run, err := operator.SyncService.StartSync(ctx, start)
	must(t, err)
	for _, err := range operator.SyncProgress(ctx, &v1.StreamSyncProgressRequest{RunId: run.GetRun().GetId()}) {
		must(t, err)
	}
	me, err := operator.AccessService.WhoAmI(ctx, &v1.WhoAmIRequest{})
	must(t, err)
	if me.GetRole() != v1.Role_ROLE_OPERATOR {
		t.Errorf("WhoAmI role = %v", me.GetRole())
	}
	anonymous := dial(t, s.addr, fabricsync.WithBearerToken(""))
	_, err = anonymous.FabricService.ListFabrics(ctx, &v1.ListFabricsRequest{})
	if !errors.Is(err, fabricsync.ErrUnauthenticated) {
		t.Errorf("no token: want ErrUnauthenticated, got %v", err)
	}
}

// breakingClient is a client whose first `streams` streams fail with UNAVAILABLE after
// `after` messages, as when a server goes away; opened counts the streams opened.
func breakingClient(t *testing.T, addr string, streams, after int) (*fabricsync.Client, *atomic.Int32) {
	opened := new(atomic.Int32)
	interceptor := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		s, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil || int(opened.Add(1)) > streams {
			return s, err
		}
		return &breakingStream{ClientStream: s, left: after}, nil
	}
	return dial(t, addr, fabricsync.WithGRPCOptions(grpc.WithChainStreamInterceptor(interceptor))), opened
}

type breakingStream struct {
	grpc.ClientStream
	left int
}

func (s *breakingStream) RecvMsg(m any) error {
	if s.left == 0 {
		return status.Error(codes.Unavailable, "injected: connection lost")
	}
	s.left--
	return s.ClientStream.RecvMsg(m)
}

// collect drains an iterator through f, failing the test on an error.
func collect[T, U any](t *testing.T, seq iter.Seq2[T, error], f func(T) U) []U {
	t.Helper()
	var out []U
	for item, err := range seq {
		if err != nil {
			t.Fatalf("iterating: %v", err)
		}
		out = append(out, f(item))
	}
	return out
}

// upTo ends an endless event stream after the event with sequence last.
func upTo[E interface{ GetSequence() int64 }](seq iter.Seq2[E, error], last int64) iter.Seq2[E, error] {
	return func(yield func(E, error) bool) {
		for e, err := range seq {
			if !yield(e, err) || err != nil || e.GetSequence() >= last {
				return
			}
		}
	}
}

func first[T any](seq iter.Seq2[T, error]) (T, error) {
	for item, err := range seq {
		return item, err
	}
	var zero T
	return zero, nil
}

func identity[T any](x T) T { return x }

func sequences[E interface{ GetSequence() int64 }](events []E) []int64 {
	out := make([]int64, len(events))
	for i, e := range events {
		out[i] = e.GetSequence()
	}
	return out
}

func assertIncreasing(t *testing.T, seqs []int64) {
	t.Helper()
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Errorf("sequences not increasing: %v", seqs)
			return
		}
	}
}

// asError checks that err is an *Error with the code, and returns it (nil when it is not).
func asError(t *testing.T, err error, code codes.Code) *fabricsync.Error {
	t.Helper()
	var e *fabricsync.Error
	if !errors.As(err, &e) || e.Code != code {
		t.Errorf("want a %v *fabricsync.Error, got %T %v", code, err, err)
		return nil
	}
	return e
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond until it holds, failing with its last description at ctx's end or after 30 s.
func eventually(t *testing.T, ctx context.Context, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("timed out waiting for %s; last: %s", what, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func kubectl(t *testing.T, s *state, args ...string) string {
	t.Helper()
	out, err := exec.Command(s.kubectl, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %v: %v\n%s", args, err, out)
	}
	return string(out)
}
