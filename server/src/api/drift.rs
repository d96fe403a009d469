//! DriftService: a fabric's drift summary, drifted resources, one resource's field-level drift
//! with its owners and a unified diff, and recomputation on demand.

use std::collections::BTreeMap;

use serde_json::Value;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::convert::{self, DRIFT_STATUSES, RESOURCE_DRIFT_STATUSES};
use super::fabrics::{find_resource, load, resource_key, ResourceRef};
use super::{listing, parse_id, ApiError, AppState};
use crate::cluster::FABRIC_LABEL;
use crate::db::fabrics::FabricRow;
use crate::db::resources::{self, ResourceFilter, ResourceRow, DRIFTED};
use crate::drift;
use crate::proto::drift_service_server::DriftService;
use crate::proto::*;

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
        let mut by_status: BTreeMap<String, i64> = BTreeMap::new();
        let mut by_kind: BTreeMap<(String, String), Vec<DriftStatusCount>> = BTreeMap::new();
        for (group, kind, status, count) in &counts {
            *by_status.entry(status.clone()).or_default() += count;
            by_kind.entry((group.clone(), kind.clone())).or_default().push(DriftStatusCount { status: status_of(status), count: *count });
        }
        Ok(FabricDriftSummary {
            fabric_id: fabric.id.to_string(),
            drift_status: DRIFT_STATUSES.of(&fabric.drift_status) as i32,
            drift_count: by_status.iter().filter(|(s, _)| DRIFTED.contains(&s.as_str())).map(|(_, n)| n).sum(),
            by_status: by_status.iter().map(|(s, n)| DriftStatusCount { status: status_of(s), count: *n }).collect(),
            by_kind: by_kind.into_iter().map(|((group, kind), counts)| KindDriftCount { group, kind, counts }).collect(),
            compute_time: None,
        })
    }
}

/// A resource's stored drift as the API shows it; with the unified diff when asked.
fn resource_drift(row: &ResourceRow, with_diff: bool) -> ResourceDrift {
    let stored = row.drift.clone().unwrap_or(Value::Null);
    let text = |v: &Value, i: usize| v.get(i).and_then(Value::as_str).unwrap_or("").to_string();
    let fields = stored
        .get("fields")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|f| FieldDrift {
            path: f.get("path").and_then(Value::as_str).unwrap_or("").to_string(),
            desired: f.get("desired").filter(|v| !v.is_null()).map(convert::json_value),
            live: f.get("live").filter(|v| !v.is_null()).map(convert::json_value),
            managers: f
                .get("managers")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|m| FieldChange {
                    manager: text(m, 0),
                    operation: text(m, 1),
                    time: chrono::DateTime::parse_from_rfc3339(&text(m, 2)).ok().map(|t| convert::timestamp(t.with_timezone(&chrono::Utc))),
                })
                .collect(),
        })
        .collect();
    let unified_diff = if with_diff {
        let live = row.live.as_ref().map(|l| drift::comparable_live(l, &[FABRIC_LABEL]));
        drift::unified_yaml_diff(row.desired.as_ref(), live.as_ref())
    } else {
        String::new()
    };
    ResourceDrift {
        resource_id: row.id.to_string(),
        key: Some(resource_key(row)),
        status: RESOURCE_DRIFT_STATUSES.of(&row.drift_status) as i32,
        score: stored.get("score").and_then(Value::as_f64).unwrap_or(0.0),
        fields,
        unified_diff,
        contested_by: String::new(),
        compute_time: Some(convert::timestamp(row.updated_at)),
    }
}

const FILTERS: &[&str] = &["group", "kind", "status"];

#[tonic::async_trait]
impl DriftService for DriftApi {
    async fn get_fabric_drift(&self, request: Request<GetFabricDriftRequest>) -> Result<Response<GetFabricDriftResponse>, Status> {
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
        let status = terms.get("status").map(|w| convert::filter_word(&RESOURCE_DRIFT_STATUSES, "status", w)).transpose()?;
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
        let last = listed.items.last().map(|r| r.id.to_string());
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

    async fn detect_drift(&self, request: Request<DetectDriftRequest>) -> Result<Response<DetectDriftResponse>, Status> {
        let id: Uuid = parse_id("fabric_id", &request.get_ref().fabric_id)?;
        load(&self.state, id).await?;
        drift::refresh::refresh_pooled(&self.state.pool, id, None).await.map_err(ApiError::from)?;
        let fabric = load(&self.state, id).await?;
        Ok(Response::new(DetectDriftResponse { summary: Some(self.summary(&fabric).await?) }))
    }
}
