package fabricsync

import (
	"context"
	"iter"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	v1 "github.com/fabricsync/fabricsync/client-sdk/go/fabricsyncv1"
)

// Repositories iterates over every repository matching req (page_size and filter are used;
// nil lists all), fetching pages as needed. The iteration stops at the first error, which it yields.
//
//	for repo, err := range client.Repositories(ctx, &v1.ListRepositoriesRequest{Filter: "auth_type=none"}) {
//		if err != nil { return err }
//		fmt.Println(repo.Name)
//	}
func (c *Client) Repositories(ctx context.Context, req *v1.ListRepositoriesRequest) iter.Seq2[*v1.Repository, error] {
	return paginate(ctx, req, c.RepositoryService.ListRepositories, (*v1.ListRepositoriesResponse).GetRepositories)
}

// Fabrics iterates over every fabric matching req; see Repositories.
func (c *Client) Fabrics(ctx context.Context, req *v1.ListFabricsRequest) iter.Seq2[*v1.Fabric, error] {
	return paginate(ctx, req, c.FabricService.ListFabrics, (*v1.ListFabricsResponse).GetFabrics)
}

// Resources iterates over a fabric's resources (req.FabricId is required); see Repositories.
func (c *Client) Resources(ctx context.Context, req *v1.ListResourcesRequest) iter.Seq2[*v1.Resource, error] {
	return paginate(ctx, req, c.FabricService.ListResources, (*v1.ListResourcesResponse).GetResources)
}

// SyncRuns iterates over sync runs, newest first; see Repositories.
func (c *Client) SyncRuns(ctx context.Context, req *v1.ListSyncRunsRequest) iter.Seq2[*v1.SyncRun, error] {
	return paginate(ctx, req, c.SyncService.ListSyncRuns, (*v1.ListSyncRunsResponse).GetRuns)
}

// DriftedResources iterates over a fabric's resources that are not in sync (req.FabricId is
// required); see Repositories.
func (c *Client) DriftedResources(ctx context.Context, req *v1.ListDriftedResourcesRequest) iter.Seq2[*v1.ResourceDrift, error] {
	return paginate(ctx, req, c.DriftService.ListDriftedResources, (*v1.ListDriftedResourcesResponse).GetResources)
}

type listResponse interface {
	GetNextPageToken() string
}

// paginate calls list with req, then again with each next_page_token until it is empty,
// yielding the items of every page.
func paginate[Req proto.Message, Resp listResponse, T any](
	ctx context.Context,
	req Req,
	list func(context.Context, Req, ...grpc.CallOption) (Resp, error),
	items func(Resp) []T,
) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		// A copy, so the caller's request is left as it was and the iterator can run again.
		// The generated messages have no setters: page_token is set by reflection.
		r := cloneOrNew(req)
		pageToken := r.ProtoReflect().Descriptor().Fields().ByName("page_token")
		for {
			resp, err := list(ctx, r)
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, item := range items(resp) {
				if !yield(item, nil) {
					return
				}
			}
			next := resp.GetNextPageToken()
			if next == "" {
				return
			}
			r.ProtoReflect().Set(pageToken, protoreflect.ValueOfString(next))
		}
	}
}

// cloneOrNew copies m, or makes an empty message of its type when m is a nil pointer.
func cloneOrNew[M proto.Message](m M) M {
	if !m.ProtoReflect().IsValid() {
		return m.ProtoReflect().Type().New().Interface().(M)
	}
	return proto.Clone(m).(M)
}
