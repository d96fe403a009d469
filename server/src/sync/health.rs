//! Health, told by the fabric's watch: the switches' agents followed with kube's reflector
//! (read only, when the cluster serves the Agent kind), and every resource's health (core
//! `health`) stored, with a HEALTH_CHANGED event on the watch stream when it changes, and the
//! fabric's summary. Told after the watch saw a change, and at least every `FULL_TELL` (a switch
//! turns stale with time; a failed apply changes no live object).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use diesel_async::AsyncConnection;
use futures::stream::BoxStream;
use futures::StreamExt;
use kube::api::DynamicObject;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::Store;
use kube::runtime::{watcher, WatchStreamExt};
use prost::Message;
use serde_json::Value;
use uuid::Uuid;

use fabricsync_core::health::{self, Facts};
use fabricsync_core::rollout::{is_switch, SwitchRollout};
use fabricsync_core::ResourceKey;

use crate::cluster::agents;
use crate::context::AppState;
use crate::db::fabrics::{self, StoredHealth};
use crate::db::resources::{self, HealthInput};
use crate::db::{self, events, DbError};
use crate::proto::{FabricEvent, FabricEventType};

/// How often the watch looks whether health is to be told.
pub const TICK: Duration = Duration::from_secs(2);
/// Health is told at least this often, changes seen or not.
const FULL_TELL: Duration = Duration::from_secs(15);
/// How often a cluster without the Agent kind is asked again (it may be installed later).
const DISCOVERY: Duration = Duration::from_secs(30);

/// The switches' agents in the fabric's namespace.
pub struct AgentWatch {
    client: kube::Client,
    namespace: String,
    /// The reflector's store, and what its watch stream says.
    followed: Option<(Store<DynamicObject>, BoxStream<'static, Seen>)>,
    listed: bool,
    /// The agents cannot be read now (forbidden, unreachable): switches are told UNKNOWN.
    failing: bool,
    asked: Option<Instant>,
}

enum Seen {
    /// The initial list is complete.
    Listed,
    Changed,
    Failed,
}

/// What the watch knows of the agents now.
pub enum Agents {
    /// The cluster does not serve the Agent kind: every switch is UNKNOWN.
    NotInstalled,
    /// Being listed: health waits for the list, so that switches do not flap to UNKNOWN.
    Listing,
    Listed(Vec<Value>),
}

impl AgentWatch {
    pub fn new(client: kube::Client, namespace: &str) -> AgentWatch {
        AgentWatch {
            client,
            namespace: namespace.to_string(),
            followed: None,
            listed: false,
            failing: false,
            asked: None,
        }
    }

    /// Starts following the agents once the cluster serves their kind (asked every `DISCOVERY`).
    pub async fn start_when_installed(&mut self) {
        if self.followed.is_some() || self.asked.is_some_and(|at| at.elapsed() < DISCOVERY) {
            return;
        }
        self.asked = Some(Instant::now());
        match agents::installed(&self.client).await {
            Ok(true) => {
                let writer = Writer::new(agents::resource());
                let store = writer.as_reader();
                let events = watcher(agents::api(&self.client, &self.namespace), watcher::Config::default())
                    .default_backoff()
                    .reflect(writer)
                    .map(|event| match event {
                        Ok(watcher::Event::InitDone) => Seen::Listed,
                        Ok(_) => Seen::Changed,
                        Err(e) => {
                            tracing::warn!(error = %e, "the switches' agents cannot be read");
                            Seen::Failed
                        }
                    })
                    .boxed();
                self.followed = Some((store, events));
            }
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e, "the Agent kind was not discovered"),
        }
    }

    /// The next change of the agents; pending forever while they are not followed.
    pub async fn changed(&mut self) {
        let Some((_, events)) = self.followed.as_mut() else {
            return std::future::pending().await;
        };
        match events.next().await {
            Some(Seen::Listed) => (self.listed, self.failing) = (true, false),
            Some(Seen::Changed) => self.failing = false,
            Some(Seen::Failed) => self.failing = true,
            None => std::future::pending().await,
        }
    }

    pub fn agents(&self) -> Agents {
        match &self.followed {
            None => Agents::NotInstalled,
            // Unreadable agents tell nothing: every switch is UNKNOWN, as without the kind.
            Some(_) if self.failing && !self.listed => Agents::NotInstalled,
            Some(_) if !self.listed => Agents::Listing,
            Some((store, _)) => {
                Agents::Listed(store.state().iter().filter_map(|a| serde_json::to_value(a.as_ref()).ok()).collect())
            }
        }
    }
}

/// Tells the fabric's health; remembers what it stored last, so that only changes are written.
#[derive(Default)]
pub struct Teller {
    summary: Option<StoredHealth>,
    told: Option<Instant>,
    /// The watch saw a change since health was last told.
    pub dirty: bool,
}

impl Teller {
    /// Whether health is to be told now.
    pub fn due(&self) -> bool {
        self.dirty || self.told.is_none_or(|at| at.elapsed() >= FULL_TELL)
    }

    pub async fn tell(&mut self, state: &AppState, fabric_id: Uuid, agents: &Agents) -> Result<(), DbError> {
        let listed = match agents {
            Agents::Listing => return Ok(()),
            Agents::NotInstalled => None,
            Agents::Listed(listed) => Some(listed.as_slice()),
        };
        let mut conn = db::connect(&state.pool).await?;
        let inputs = resources::health_inputs(&mut conn, fabric_id).await?;
        let told = told(&inputs, listed, db::now(), state.settings.switch_stale_after_seconds);
        let summary = Some(told.summary.clone());
        let changed_summary = summary != self.summary;
        if !told.changes.is_empty() || changed_summary {
            let events: Vec<Vec<u8>> = told.changes.iter().map(event_payload).collect();
            let rows: Vec<(Uuid, fabricsync_core::vocab::Health, String)> =
                told.changes.iter().map(|c| (c.id, c.verdict.health, c.verdict.reason.clone())).collect();
            conn.transaction::<_, DbError, _>(async |conn| {
                resources::store_health(conn, &rows).await?;
                events::append_many(conn, fabric_id, super::watch::STREAM, &events).await?;
                if changed_summary {
                    fabrics::set_health(conn, fabric_id, &told.summary).await?;
                }
                Ok(())
            })
            .await?;
            self.summary = summary;
        }
        self.told = Some(Instant::now());
        self.dirty = false;
        Ok(())
    }
}

/// One resource whose health changed.
struct Changed {
    id: Uuid,
    key: ResourceKey,
    api_version: String,
    verdict: health::Verdict,
}

struct Told {
    changes: Vec<Changed>,
    summary: StoredHealth,
}

/// Every resource's health from what is stored and the agents listed (None: no Agent kind).
fn told(
    inputs: &[HealthInput],
    agents: Option<&[Value]>,
    now: chrono::DateTime<chrono::Utc>,
    stale_after: i64,
) -> Told {
    let is_switch = |r: &HealthInput| is_switch(&r.identity.api_group, &r.identity.kind);
    let mut switches: Vec<String> = inputs.iter().filter(|r| is_switch(r)).map(|r| r.identity.name.clone()).collect();
    switches.sort();
    switches.dedup();
    let rollouts = agents::rollouts(&switches, agents, now, stale_after);
    let rollout_of: HashMap<&str, &SwitchRollout> = rollouts.iter().map(|r| (r.switch.as_str(), r)).collect();
    let mut healths = Vec::with_capacity(inputs.len());
    let mut changes = Vec::new();
    let mut desired_switches = Vec::new();
    for r in inputs {
        let switch = is_switch(r).then(|| rollout_of.get(r.identity.name.as_str()).copied()).flatten();
        if r.desired {
            desired_switches.extend(switch.cloned());
        }
        let facts = Facts {
            desired: r.desired,
            live: r.live,
            apply_status: r.apply_status.0,
            apply_error: r.apply_error.as_deref(),
        };
        let verdict = health::of_resource(facts, switch);
        healths.push(verdict.health);
        if verdict.health != r.health.0 || verdict.reason != r.health_reason {
            changes.push(Changed { id: r.id, key: r.identity.key(), api_version: r.api_version.clone(), verdict });
        }
    }
    // The summary counts the switches of the fabric's Git, as GetFabricRollout does.
    let summary = StoredHealth::from(&health::summary(&healths, &desired_switches));
    Told { changes, summary }
}

/// A stored HEALTH_CHANGED event (sequence and time come from the log row).
fn event_payload(changed: &Changed) -> Vec<u8> {
    FabricEvent {
        r#type: FabricEventType::HealthChanged as i32,
        key: Some(crate::convert::resource_key(&changed.key, &changed.api_version)),
        health: crate::convert::proto_of(&crate::convert::HEALTHS, changed.verdict.health) as i32,
        health_reason: changed.verdict.reason.clone(),
        ..Default::default()
    }
    .encode_to_vec()
}
