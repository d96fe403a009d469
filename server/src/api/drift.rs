//! DriftService: a fabric's drift summary, drifted resources, one resource's field-level drift
//! with its owners and a unified diff, and recomputation on demand.

use fabricsync_core::vocab as v;
use std::collections::BTreeMap;

use diesel_async::AsyncPgConnection;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::fabrics::{find_resource, find_resource_in, load, resource_key, ResourceRef};
use super::sync::{follow, EventStream, STREAM_BATCH, STREAM_BUFFER};
use super::{listing, parse_id, ApiError, AppState};
use crate::cluster::FABRIC_LABEL;
use crate::convert::{self, DRIFT_STATUSES, RESOURCE_DRIFT_STATUSES};
use crate::db::events::{self, EventRow, Notice};
use crate::db::fabrics::FabricRow;
use crate::db::resources::{self, ResourceFilter, ResourceRow};
use crate::db::DbError;
use crate::drift;
use crate::proto::drift_service_server::DriftService;
use crate::proto::*;
use crate::sync::apply::Targets;
use crate::sync::queue::{self, Enqueued};
use fabricsync_core::drift as core_drift;
use fabricsync_core::vocab::DriftStatus;

pub struct DriftApi {
    state: AppState,
}

impl DriftApi {
    pub fn new(state: AppState) -> Self {
        DriftApi { state }
    }

    async fn summary(&self, fabric: &FabricRow) -> Result<FabricDriftSummary, ApiError> {
        let mut conn = self.state.conn().await?;
        let counts = resources::drift_counts(&mut conn, fabric.id).await?;
        let status_of = |w: &str| RESOURCE_DRIFT_STATUSES.of(w) as i32;
        let drifted = DriftStatus::drifted_words();
        let mut by_status: BTreeMap<String, i64> = BTreeMap::new();
        let mut by_kind: BTreeMap<(String, String), Vec<DriftStatusCount>> = BTreeMap::new();
        for (group, kind, status, count) in &counts {
            *by_status.entry(status.clone()).or_default() += count;
            by_kind
                .entry((group.clone(), kind.clone()))
                .or_default()
                .push(DriftStatusCount { status: status_of(status), count: *count });
        }
        Ok(FabricDriftSummary {
            fabric_id: fabric.id.to_string(),
            drift_status: convert::proto_of(&DRIFT_STATUSES, fabric.drift_status) as i32,
            drift_count: by_status.iter().filter(|(s, _)| drifted.contains(&s.as_str())).map(|(_, n)| n).sum(),
            by_status: by_status.iter().map(|(s, n)| DriftStatusCount { status: status_of(s), count: *n }).collect(),
            by_kind: by_kind
                .into_iter()
                .map(|((group, kind), counts)| KindDriftCount { group, kind, counts })
                .collect(),
            // Summed now from the stored per-resource drift.
            compute_time: Some(convert::timestamp(chrono::Utc::now())),
        })
    }

    /// The chosen resources of a Remediate call, each checked: `keys` must be in Git,
    /// `delete_orphans` must be orphans (this fabric's label, not in Git).
    async fn targets(
        &self,
        fabric_id: Uuid,
        keys: &[ResourceKey],
        orphans: &[ResourceKey],
    ) -> Result<Targets, ApiError> {
        for (field, list) in [("keys", keys), ("delete_orphans", orphans)] {
            if list.len() > MAX_TARGETS {
                return Err(ApiError::invalid(field, format!("at most {MAX_TARGETS} resources per call")));
            }
        }
        let mut conn = self.state.conn().await?;
        let mut targets = Targets::default();
        for (field, list, want_orphan) in [("keys", keys, false), ("delete_orphans", orphans, true)] {
            for (i, key) in list.iter().enumerate() {
                let row = find_resource_in(&mut conn, fabric_id, Some(ResourceRef::Key(key))).await?;
                let orphan = row.drift_status == DriftStatus::Orphaned;
                if orphan != want_orphan {
                    let why = if want_orphan {
                        "is not an orphan (it is in Git or lacks this fabric's label); only orphans are deleted"
                    } else {
                        "is not in Git; an orphan is removed with delete_orphans"
                    };
                    return Err(ApiError::FailedPrecondition(format!(
                        "{field}[{i}]: {} {}/{} {why}",
                        row.identity.kind, row.identity.namespace, row.identity.name
                    )));
                }
                let key = row.key();
                if want_orphan {
                    targets.delete.insert(key)
                } else {
                    targets.apply.insert(key)
                };
            }
        }
        Ok(targets)
    }
}

/// A resource's stored drift as the API shows it; with the unified diff when asked.
fn resource_drift(row: &ResourceRow, with_diff: bool) -> ResourceDrift {
    let mut out = convert::resource_drift(
        row.id,
        resource_key(row),
        row.drift_status,
        &row.drift.0,
        Some(convert::timestamp(row.updated_at)),
    );
    if with_diff {
        let live = row.live.as_ref().map(|l| core_drift::comparable_live(l, &[FABRIC_LABEL]));
        out.unified_diff = core_drift::unified_yaml_diff(row.desired.as_ref(), live.as_ref());
    }
    out
}

const FILTERS: &[&str] = &["group", "kind", "status"];

/// Most resources one Remediate call may name.
const MAX_TARGETS: usize = 1000;

/// A fabric's drift changes: never ends by itself.
struct DriftEvents {
    fabric_id: Uuid,
}

impl EventStream for DriftEvents {
    type Message = StreamDriftResponse;

    async fn read(&self, conn: &mut AsyncPgConnection, after: i64) -> Result<(Vec<EventRow>, bool), DbError> {
        Ok((events::of_fabric(conn, self.fabric_id, drift::STREAM, after, STREAM_BATCH).await?, false))
    }

    fn wakes(&self, notice: &Notice) -> bool {
        notice.fabric_id == self.fabric_id && notice.stream == drift::STREAM
    }

    fn message(&self, row: &EventRow) -> Option<(Self::Message, bool)> {
        let mut event = DriftEvent::decode(row.payload.as_slice()).ok()?;
        event.sequence = row.sequence;
        event.fabric_id = self.fabric_id.to_string();
        event.time = Some(convert::timestamp(row.created_at));
        Some((StreamDriftResponse { event: Some(event) }, false))
    }
}

#[tonic::async_trait]
impl DriftService for DriftApi {
    async fn get_fabric_drift(
        &self,
        request: Request<GetFabricDriftRequest>,
    ) -> Result<Response<GetFabricDriftResponse>, Status> {
        let id = parse_id("fabric_id", &request.get_ref().fabric_id)?;
        let fabric = load(&self.state, id).await?;
        Ok(Response::new(GetFabricDriftResponse { summary: Some(self.summary(&fabric).await?) }))
    }

    async fn list_drifted_resources(
        &self,
        request: Request<ListDriftedResourcesRequest>,
    ) -> Result<Response<ListDriftedResourcesResponse>, Status> {
        let req = request.into_inner();
        let fabric_id = parse_id("fabric_id", &req.fabric_id)?;
        let page = listing::page(req.page_size, &req.page_token)?;
        let terms = listing::filter(&req.filter, FILTERS)?;
        let status = terms.get("status").map(|w| listing::word_filter::<v::DriftStatus>("status", w)).transpose()?;
        let filter = ResourceFilter {
            group: terms.get("group").cloned(),
            kind: terms.get("kind").cloned(),
            drifted_only: status.is_none(),
            drift_status: status,
            ..Default::default()
        };
        load(&self.state, fabric_id).await?;
        let mut conn = self.state.conn().await?;
        let listed = resources::list(&mut conn, fabric_id, &filter, &page).await.map_err(ApiError::from)?;
        let last = listed.items.last().map(resources::page_key);
        Ok(Response::new(ListDriftedResourcesResponse {
            resources: listed.items.iter().map(|r| resource_drift(r, false)).collect(),
            next_page_token: listing::next_page_token(listed.has_more, last.as_deref()),
            total_size: i32::try_from(listed.total).unwrap_or(i32::MAX),
        }))
    }

    async fn get_resource_drift(
        &self,
        request: Request<GetResourceDriftRequest>,
    ) -> Result<Response<GetResourceDriftResponse>, Status> {
        let req = request.into_inner();
        let fabric_id = parse_id("fabric_id", &req.fabric_id)?;
        let wanted = match &req.resource {
            Some(get_resource_drift_request::Resource::Id(id)) => Some(ResourceRef::Id(id)),
            Some(get_resource_drift_request::Resource::Key(key)) => Some(ResourceRef::Key(key)),
            None => None,
        };
        let row = find_resource(&self.state, fabric_id, wanted).await?;
        Ok(Response::new(GetResourceDriftResponse { drift: Some(resource_drift(&row, true)) }))
    }

    async fn stream_drift(
        &self,
        request: Request<StreamDriftRequest>,
    ) -> Result<Response<BoxStream<StreamDriftResponse>>, Status> {
        let req = request.into_inner();
        let fabric_id = parse_id("fabric_id", &req.fabric_id)?;
        if req.from_sequence < 0 {
            return Err(ApiError::invalid("from_sequence", "must not be negative").into());
        }
        load(&self.state, fabric_id).await?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(follow(self.state.clone(), DriftEvents { fabric_id }, req.from_sequence, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn remediate(&self, request: Request<RemediateRequest>) -> Result<Response<RemediateResponse>, Status> {
        let requested_by = super::requester(&request)?;
        let req = request.into_inner();
        let fabric_id = parse_id("fabric_id", &req.fabric_id)?;
        let fabric = load(&self.state, fabric_id).await?;
        if fabric.cluster_server_url.is_empty() {
            return Err(ApiError::FailedPrecondition(
                "the fabric has no cluster connection (cluster.server_url)".into(),
            )
            .into());
        }
        let targets = if req.keys.is_empty() && req.delete_orphans.is_empty() {
            // An APPLY run over the whole fabric resends exactly what moved since its last
            // apply or is missing.
            None
        } else {
            Some(self.targets(fabric_id, &req.keys, &req.delete_orphans).await?)
        };
        let chosen = targets.is_some();
        let targets =
            targets.map(|t| serde_json::to_value(t).map_err(|e| ApiError::Internal(e.to_string()))).transpose()?;
        let request = queue::Request {
            fabric_id,
            mode: fabricsync_core::vocab::SyncMode::Apply,
            trigger: fabricsync_core::vocab::Trigger::User,
            dry_run: req.dry_run,
            force: req.force,
            requested_ref: String::new(),
            targets,
            requested_by,
            rollout_wait_seconds: 0,
        };
        let mut conn = self.state.conn().await?;
        let row = match queue::enqueue(&mut conn, &request).await.map_err(ApiError::from)? {
            Enqueued::New(row) => row,
            // The active run would not be limited to the chosen resources.
            Enqueued::AlreadyActive(Some(row)) if chosen => {
                return Err(ApiError::Aborted(format!(
                    "the fabric has an active run ({}); remediate when it has ended",
                    row.id
                ))
                .into());
            }
            Enqueued::AlreadyActive(Some(row)) => row,
            Enqueued::AlreadyActive(None) => {
                return Err(ApiError::Aborted("the fabric's active run just ended; try again".into()).into())
            }
        };
        let sequence = events::last_of_run(&mut conn, row.id).await.map_err(ApiError::from)?;
        Ok(Response::new(RemediateResponse { run: Some(super::sync::to_proto(&row, sequence)) }))
    }

    async fn detect_drift(
        &self,
        request: Request<DetectDriftRequest>,
    ) -> Result<Response<DetectDriftResponse>, Status> {
        let id: Uuid = parse_id("fabric_id", &request.get_ref().fabric_id)?;
        load(&self.state, id).await?;
        drift::refresh_pooled(&self.state.pool, self.state.settings.kinds, id, None).await.map_err(ApiError::from)?;
        let fabric = load(&self.state, id).await?;
        Ok(Response::new(DetectDriftResponse { summary: Some(self.summary(&fabric).await?) }))
    }
}
