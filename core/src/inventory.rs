//! A cluster's inventory, imported the way Nautobot's SSoT app imports OpenShift: the nodes,
//! namespaces, workloads and services of the cluster on the fabric, and KubeVirt's VMs. Objects
//! come in as a list or watch returns them (JSON) and leave as small typed facts with a content
//! hash; a filter says what to import; a DiffSync-style diff tells what an import changed; and
//! the cross-layer view joins the inventory to the fabric's Servers and Connections: what runs
//! behind a switch port, and where a server's workloads and links are.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use regex::Regex;
use serde_json::{json, Map, Value};

use crate::manifest::content_hash;
use crate::vocab::{ChangeAction, InventoryKind, Word, WorkloadFilter, WorkloadType};

/// The fabric's kinds the cross-layer view reads (of `key::WIRING_GROUP`).
pub const SERVER_KIND: &str = "Server";
pub const CONNECTION_KIND: &str = "Connection";
/// `node-role.kubernetes.io/<role>`: a node's roles (OpenShift's master, worker, infra...).
const ROLE_LABEL: &str = "node-role.kubernetes.io/";
/// Set on a VM's launcher pod (from the VMI's labels); its value names the VM's domain.
const DOMAIN_LABEL: &str = "kubevirt.io/domain";
/// Set by KubeVirt on the VMI and launcher pod of a VirtualMachine: the VM's name.
const VM_NAME_LABEL: &str = "vm.kubevirt.io/name";
/// A launcher pod's name and the container that runs the VM (virt-launcher and libvirt).
const LAUNCHER_PREFIX: &str = "virt-launcher-";
const LAUNCHER_CONTAINER: &str = "compute";
const VMI_KIND: &str = "VirtualMachineInstance";

impl InventoryKind {
    /// (API group, version) of `api_version`; the group is empty for the core API.
    pub fn group_version(self) -> (&'static str, &'static str) {
        let api_version = self.api_version();
        api_version.rsplit_once('/').unwrap_or(("", api_version))
    }

    /// The `apiVersion` the kind is listed with.
    pub fn api_version(self) -> &'static str {
        match self {
            InventoryKind::Node | InventoryKind::Namespace | InventoryKind::Pod | InventoryKind::Service => "v1",
            InventoryKind::Deployment | InventoryKind::StatefulSet | InventoryKind::DaemonSet => "apps/v1",
            InventoryKind::VirtualMachine | InventoryKind::VirtualMachineInstance => "kubevirt.io/v1",
        }
    }

    /// The Kubernetes `kind`.
    pub fn kind(self) -> &'static str {
        match self {
            InventoryKind::Node => "Node",
            InventoryKind::Namespace => "Namespace",
            InventoryKind::Deployment => "Deployment",
            InventoryKind::StatefulSet => "StatefulSet",
            InventoryKind::DaemonSet => "DaemonSet",
            InventoryKind::Pod => "Pod",
            InventoryKind::Service => "Service",
            InventoryKind::VirtualMachine => "VirtualMachine",
            InventoryKind::VirtualMachineInstance => VMI_KIND,
        }
    }

    pub fn namespaced(self) -> bool {
        !matches!(self, InventoryKind::Node | InventoryKind::Namespace)
    }
}

/// The cluster of the fabric's own connection; extra inventory clusters have names.
pub const OWN_CLUSTER: &str = "";

/// (cluster, kind, namespace, name): an inventory object's identity. The cluster is empty for
/// the fabric's own cluster, else the name of one of its inventory clusters; the namespace is
/// empty for nodes and namespaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InventoryKey {
    pub cluster: String,
    pub kind: InventoryKind,
    pub namespace: String,
    pub name: String,
}

/// `kind/namespace/name`, without the namespace when there is none (`node/worker-1`), after
/// `cluster:` for an extra cluster's (`edge:node/worker-1`).
impl fmt::Display for InventoryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.cluster.is_empty() {
            write!(f, "{}:", self.cluster)?;
        }
        f.write_str(self.kind.word())?;
        if !self.namespace.is_empty() {
            write!(f, "/{}", self.namespace)?;
        }
        write!(f, "/{}", self.name)
    }
}

/// One imported object: what a user reads of it (`facts`) and its hash. `workload`, `node` and
/// `vm` repeat what the facts say, typed, for the filter and the cross-layer view.
#[derive(Debug, Clone, PartialEq)]
pub struct InventoryObject {
    /// See `InventoryKey::cluster`.
    pub cluster: String,
    pub kind: InventoryKind,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// Pods, VMs and VMIs: what runs (a VM for VMs, VMIs and launcher pods); None otherwise.
    pub workload: Option<WorkloadType>,
    /// Pods and VMIs: the node they are scheduled on, once they are.
    pub node: Option<String>,
    /// The VM's name: a VM's or VMI's own, a launcher pod's VM's.
    pub vm: Option<String>,
    /// Only fields a user reads, none that change without the object changing (resourceVersion,
    /// managedFields, timestamps): an unchanged object hashes the same after every list.
    pub facts: Value,
    /// Lower-case hex SHA-256 of the canonical JSON of the uid and `facts`.
    pub hash: String,
}

impl InventoryObject {
    pub fn key(&self) -> InventoryKey {
        InventoryKey {
            cluster: self.cluster.clone(),
            kind: self.kind,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventoryError {
    /// An object without `metadata.name`, told by what it has.
    MissingName { kind: InventoryKind, namespace: String, uid: String },
    /// The object's `kind` is not the one it was read as.
    WrongKind { expected: InventoryKind, found: String, name: String },
    /// A filter setting that does not parse.
    InvalidFilter { field: &'static str, message: String },
    /// A switch port that is not `<switch>/<port>`.
    InvalidPort(String),
}

impl fmt::Display for InventoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InventoryError::MissingName { kind, namespace, uid } => {
                write!(f, "{kind} object (namespace {namespace:?}, uid {uid:?}): metadata.name is missing")
            }
            InventoryError::WrongKind { expected, found, name } => {
                write!(f, "{name:?} was read as a {} but is a {found}", expected.kind())
            }
            InventoryError::InvalidFilter { field, message } => write!(f, "{field}: {message}"),
            InventoryError::InvalidPort(port) => write!(f, "port {port:?} must be <switch>/<port>"),
        }
    }
}

impl std::error::Error for InventoryError {}

fn text<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object.pointer(pointer).and_then(Value::as_str)
}

fn int(object: &Value, pointer: &str) -> Option<i64> {
    object.pointer(pointer).and_then(Value::as_i64)
}

fn items<'a>(object: &'a Value, pointer: &str) -> impl Iterator<Item = &'a Value> {
    object.pointer(pointer).and_then(Value::as_array).into_iter().flatten()
}

/// The object at `pointer`, or an empty one: an absent map and an empty one read (and hash) alike.
fn map_at(object: &Value, pointer: &str) -> Value {
    object.pointer(pointer).filter(|v| v.is_object()).cloned().unwrap_or_else(|| json!({}))
}

/// The `keys` that `object` has, with their values.
fn pick(object: Option<&Value>, keys: &[&str]) -> Value {
    let mut out = Map::new();
    for key in keys {
        if let Some(v) = object.and_then(|o| o.get(*key)) {
            out.insert((*key).to_string(), v.clone());
        }
    }
    Value::Object(out)
}

/// Reads one object of `cluster` listed as `kind`. Only `metadata.name` is required: a list returns every
/// other field optional (an unscheduled pod has no node, a stopped VM no status).
pub fn read(cluster: &str, kind: InventoryKind, object: &Value) -> Result<InventoryObject, InventoryError> {
    let name = text(object, "/metadata/name").unwrap_or_default();
    // List items may leave out their kind; one that names another was handed to the wrong reader.
    if let Some(found) = text(object, "/kind").filter(|found| *found != kind.kind()) {
        return Err(InventoryError::WrongKind { expected: kind, found: found.into(), name: name.into() });
    }
    let namespace = if kind.namespaced() { text(object, "/metadata/namespace").unwrap_or_default() } else { "" };
    let uid = text(object, "/metadata/uid").unwrap_or_default();
    if name.is_empty() {
        return Err(InventoryError::MissingName { kind, namespace: namespace.into(), uid: uid.into() });
    }
    let (workload, node, vm, facts) = match kind {
        InventoryKind::Node => (None, None, None, node_facts(object)),
        InventoryKind::Namespace => (None, None, None, namespace_facts(object)),
        InventoryKind::Deployment | InventoryKind::StatefulSet | InventoryKind::DaemonSet => {
            (None, None, None, controller_facts(kind, object))
        }
        InventoryKind::Pod => {
            let (workload, vm) = pod_workload(name, object);
            let node = text(object, "/spec/nodeName").map(str::to_string);
            let facts = pod_facts(object, workload, vm.as_deref());
            (Some(workload), node, vm, facts)
        }
        InventoryKind::Service => (None, None, None, service_facts(object)),
        InventoryKind::VirtualMachine => (Some(WorkloadType::Vm), None, Some(name.to_string()), vm_facts(object)),
        InventoryKind::VirtualMachineInstance => {
            let node = text(object, "/status/nodeName").map(str::to_string);
            (Some(WorkloadType::Vm), node, Some(name.to_string()), vmi_facts(object))
        }
    };
    Ok(InventoryObject {
        cluster: cluster.into(),
        kind,
        namespace: namespace.into(),
        name: name.into(),
        uid: uid.into(),
        workload,
        node,
        vm,
        // The uid too: an object deleted and made again under its name is another object.
        hash: content_hash(&json!([uid, &facts])),
        facts,
    })
}

fn node_facts(node: &Value) -> Value {
    let labels = map_at(node, "/metadata/labels");
    let mut roles: Vec<&str> = labels
        .as_object()
        .into_iter()
        .flat_map(|l| l.keys())
        .filter_map(|k| k.strip_prefix(ROLE_LABEL))
        .filter(|role| !role.is_empty())
        .collect();
    roles.sort_unstable();
    let quantities = ["cpu", "memory", "pods"];
    let addresses: Vec<Value> = items(node, "/status/addresses").map(|a| pick(Some(a), &["type", "address"])).collect();
    let ready = items(node, "/status/conditions")
        .any(|c| text(c, "/type") == Some("Ready") && text(c, "/status") == Some("True"));
    json!({
        "roles": roles,
        "capacity": pick(node.pointer("/status/capacity"), &quantities),
        "allocatable": pick(node.pointer("/status/allocatable"), &quantities),
        "addresses": addresses,
        "ready": ready,
        "kubeletVersion": text(node, "/status/nodeInfo/kubeletVersion"),
        "labels": labels,
    })
}

fn namespace_facts(namespace: &Value) -> Value {
    json!({"phase": text(namespace, "/status/phase"), "labels": map_at(namespace, "/metadata/labels")})
}

/// Deployments, StatefulSets and DaemonSets: how many pods are wanted and ready, of what.
fn controller_facts(kind: InventoryKind, object: &Value) -> Value {
    // The API server leaves out counts that are zero; it defaults spec.replicas to 1.
    let (desired, ready) = if kind == InventoryKind::DaemonSet {
        (int(object, "/status/desiredNumberScheduled").unwrap_or(0), int(object, "/status/numberReady").unwrap_or(0))
    } else {
        (int(object, "/spec/replicas").unwrap_or(1), int(object, "/status/readyReplicas").unwrap_or(0))
    };
    let images: Vec<&str> =
        items(object, "/spec/template/spec/containers").filter_map(|c| c.get("image")?.as_str()).collect();
    json!({
        "replicas": {"desired": desired, "ready": ready},
        "selector": map_at(object, "/spec/selector"),
        "images": images,
    })
}

/// Whether a pod is a VM's launcher, and the VM's name. Launchers carry the `kubevirt.io/domain`
/// label when the VM's template sets it; every launcher is named `virt-launcher-…` and runs the
/// VM in its `compute` container.
fn pod_workload(name: &str, pod: &Value) -> (WorkloadType, Option<String>) {
    let label = |key: &str| pod.pointer("/metadata/labels").and_then(|l| l.get(key)).and_then(Value::as_str);
    let computes =
        || items(pod, "/spec/containers").any(|c| c.get("name").and_then(Value::as_str) == Some(LAUNCHER_CONTAINER));
    if label(DOMAIN_LABEL).is_none() && !(name.starts_with(LAUNCHER_PREFIX) && computes()) {
        return (WorkloadType::Container, None);
    }
    // A launcher without either label still has its VMI as controller, which has the VM's name.
    let owner = controller(pod).filter(|(kind, _)| *kind == VMI_KIND).map(|(_, name)| name);
    let vm = label(VM_NAME_LABEL).or_else(|| label(DOMAIN_LABEL)).or(owner);
    (WorkloadType::Vm, vm.map(str::to_string))
}

/// (kind, name) of an object's first controller ownerReference.
fn controller(object: &Value) -> Option<(&str, &str)> {
    let owner = items(object, "/metadata/ownerReferences")
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))?;
    Some((text(owner, "/kind")?, text(owner, "/name")?))
}

fn pod_facts(pod: &Value, workload: WorkloadType, vm: Option<&str>) -> Value {
    json!({
        "phase": text(pod, "/status/phase"),
        "nodeName": text(pod, "/spec/nodeName"),
        "podIP": text(pod, "/status/podIP"),
        "owner": controller(pod).map(|(kind, name)| json!({"kind": kind, "name": name})),
        "workloadType": workload.word(),
        "vm": vm,
        "labels": map_at(pod, "/metadata/labels"),
    })
}

fn service_facts(service: &Value) -> Value {
    let ports: Vec<Value> = items(service, "/spec/ports")
        .map(|p| pick(Some(p), &["name", "protocol", "port", "targetPort", "nodePort"]))
        .collect();
    json!({
        "type": text(service, "/spec/type").unwrap_or("ClusterIP"),
        "clusterIP": text(service, "/spec/clusterIP"),
        "ports": ports,
        "selector": map_at(service, "/spec/selector"),
    })
}

fn vm_facts(vm: &Value) -> Value {
    // `running` is deprecated for `runStrategy`; a VM has one or the other.
    json!({
        "printableStatus": text(vm, "/status/printableStatus"),
        "running": vm.pointer("/spec/running").and_then(Value::as_bool),
        "runStrategy": text(vm, "/spec/runStrategy"),
        "ready": vm.pointer("/status/ready").and_then(Value::as_bool).unwrap_or(false),
    })
}

fn vmi_facts(vmi: &Value) -> Value {
    let interfaces: Vec<Value> = items(vmi, "/status/interfaces")
        .map(|i| {
            let name = i.get("name").or_else(|| i.get("interfaceName")).and_then(Value::as_str);
            // ipAddresses holds every address; older KubeVirt reported ipAddress alone.
            let mut ips: Vec<&str> = items(i, "/ipAddresses").filter_map(Value::as_str).collect();
            if ips.is_empty() {
                ips.extend(i.get("ipAddress").and_then(Value::as_str));
            }
            json!({"name": name, "ips": ips})
        })
        .collect();
    json!({
        "phase": text(vmi, "/status/phase"),
        "nodeName": text(vmi, "/status/nodeName"),
        "interfaces": interfaces,
    })
}

/// What an import keeps of what it reads.
#[derive(Debug, Clone)]
pub struct InventoryFilter {
    /// Namespaces to import, matched as `regex` matches (anywhere: anchor with `^…$`); None: all.
    pub namespace: Option<Regex>,
    pub workloads: WorkloadFilter,
    /// The kinds to import; the others are dropped.
    pub kinds: BTreeSet<InventoryKind>,
}

impl InventoryFilter {
    pub fn new(
        namespace_regex: Option<&str>,
        workloads: WorkloadFilter,
        kinds: impl IntoIterator<Item = InventoryKind>,
    ) -> Result<InventoryFilter, InventoryError> {
        let namespace = namespace_regex
            .map(Regex::new)
            .transpose()
            .map_err(|e| InventoryError::InvalidFilter { field: "namespace_regex", message: e.to_string() })?;
        Ok(InventoryFilter { namespace, workloads, kinds: kinds.into_iter().collect() })
    }

    /// Whether `object` is imported: its kind is listed; its namespace (a Namespace's own name)
    /// matches; and, for pods, VMs and VMIs, its workload type is wanted. Nodes have no namespace
    /// and run both kinds of workload: only their kind filters them.
    pub fn keeps(&self, object: &InventoryObject) -> bool {
        let namespace = match object.kind {
            InventoryKind::Namespace => Some(&object.name),
            kind if kind.namespaced() => Some(&object.namespace),
            _ => None,
        };
        let namespace_kept = match (&self.namespace, namespace) {
            (Some(regex), Some(namespace)) => regex.is_match(namespace),
            _ => true,
        };
        let workload_dropped = matches!(
            (self.workloads, object.workload),
            (WorkloadFilter::Containers, Some(WorkloadType::Vm)) | (WorkloadFilter::Vms, Some(WorkloadType::Container))
        );
        self.kinds.contains(&object.kind) && namespace_kept && !workload_dropped
    }
}

/// What an import changes, by key: `previous` is the last import's (key, hash), `current` what
/// this one read. Sorted by key.
pub fn diff(previous: &[(InventoryKey, String)], current: &[InventoryObject]) -> Vec<(InventoryKey, ChangeAction)> {
    let before: BTreeMap<&InventoryKey, &str> = previous.iter().map(|(key, hash)| (key, hash.as_str())).collect();
    let now: BTreeMap<InventoryKey, &str> = current.iter().map(|o| (o.key(), o.hash.as_str())).collect();
    let mut changes: Vec<(InventoryKey, ChangeAction)> = now
        .iter()
        .map(|(key, hash)| {
            let change = match before.get(key) {
                None => ChangeAction::Create,
                Some(old) if old == hash => ChangeAction::Unchanged,
                Some(_) => ChangeAction::Update,
            };
            (key.clone(), change)
        })
        .collect();
    changes
        .extend(before.keys().filter(|key| !now.contains_key(**key)).map(|key| ((*key).clone(), ChangeAction::Delete)));
    changes.sort();
    changes
}

/// Changes per kind of change, in `ChangeAction`'s order; every one present, zero or not.
pub fn counts(changes: &[(InventoryKey, ChangeAction)]) -> Vec<(ChangeAction, usize)> {
    ChangeAction::ALL.iter().map(|&change| (change, changes.iter().filter(|(_, c)| *c == change).count())).collect()
}

/// One link of a Connection between a server's port and a switch's port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortLink {
    pub connection: String,
    /// The server's port without the server's name: `enp2s1`.
    pub server_port: String,
    pub switch: String,
    /// The switch's port without the switch's name: `E1/1/2`.
    pub switch_port: String,
}

/// `device/port` split at the first `/` (ports have more: `leaf-01/E1/1/2`).
fn device_port(port: &str) -> Option<(&str, &str)> {
    port.split_once('/').filter(|(device, port)| !device.is_empty() && !port.is_empty())
}

/// Each server's links to switch ports, from the fabric's Connections. A server Connection has
/// one shape under spec (unbundled's `link`; bundled's, mclag's, eslag's `links`), each link a
/// {server, switch} pair of `device/port`s; the other shapes (fabric, mesh, mclagDomain,
/// vpcLoopback, external, gateway) link no server and add nothing.
pub fn server_links(connections: &[Value]) -> BTreeMap<String, Vec<PortLink>> {
    let mut out: BTreeMap<String, Vec<PortLink>> = BTreeMap::new();
    for connection in connections {
        let name = text(connection, "/metadata/name").unwrap_or_default();
        let shapes = connection.get("spec").and_then(Value::as_object).into_iter().flat_map(|spec| spec.values());
        for shape in shapes {
            let links = shape.get("link").into_iter().chain(items(shape, "/links"));
            for link in links {
                let end =
                    |side: &str| link.pointer(&format!("/{side}/port")).and_then(Value::as_str).and_then(device_port);
                let (Some((server, server_port)), Some((switch, switch_port))) = (end("server"), end("switch")) else {
                    continue;
                };
                out.entry(server.to_string()).or_default().push(PortLink {
                    connection: name.to_string(),
                    server_port: server_port.to_string(),
                    switch: switch.to_string(),
                    switch_port: switch_port.to_string(),
                });
            }
        }
    }
    for links in out.values_mut() {
        links.sort();
    }
    out
}

/// The Server (one of `servers`) a node is: the one its `label` names, when the label is
/// configured and names a Server, else the one of the node's name.
pub fn node_server(node: &InventoryObject, servers: &[String], label: Option<&str>) -> Option<String> {
    if node.kind != InventoryKind::Node {
        return None;
    }
    let labelled = label.and_then(|key| node.facts.get("labels")?.get(key)?.as_str());
    labelled.into_iter().chain([node.name.as_str()]).find(|name| servers.iter().any(|s| s == name)).map(str::to_string)
}

/// A node of one of the fabric's clusters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeRef {
    pub cluster: String,
    pub name: String,
}

/// A pod or VM running on a server's node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hosted {
    /// The cluster of the node (and of the workload).
    pub cluster: String,
    pub workload: WorkloadType,
    /// Pod, or VirtualMachineInstance.
    pub kind: InventoryKind,
    pub namespace: String,
    pub name: String,
    pub node: String,
    /// For VMs, the VM's name.
    pub vm: Option<String>,
}

/// A server across the layers: the nodes that are it, its links to switch ports, what runs on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerView {
    pub server: String,
    /// One node, unless node labels (or two clusters) name the server twice; none when no
    /// node is the server.
    pub nodes: Vec<NodeRef>,
    pub links: Vec<PortLink>,
    pub workloads: Vec<Hosted>,
}

/// The server's view: its node(s) from `inventory`, its links, and the pods and VMs on its nodes.
pub fn hosted_on(
    server: &str,
    links: &BTreeMap<String, Vec<PortLink>>,
    servers: &[String],
    label: Option<&str>,
    inventory: &[InventoryObject],
) -> ServerView {
    let nodes: Vec<NodeRef> = inventory
        .iter()
        .filter(|o| node_server(o, servers, label).as_deref() == Some(server))
        .map(|o| NodeRef { cluster: o.cluster.clone(), name: o.name.clone() })
        .collect();
    let workloads = running_on(&nodes, inventory);
    ServerView { server: server.to_string(), links: links.get(server).cloned().unwrap_or_default(), nodes, workloads }
}

/// What runs behind a switch port (`leaf-01/E1/5`): the view of each server linked to it (with
/// all of the server's links, the port's and the others, e.g. an ESLAG's second leg).
pub fn behind_switch_port(
    port: &str,
    links: &BTreeMap<String, Vec<PortLink>>,
    servers: &[String],
    label: Option<&str>,
    inventory: &[InventoryObject],
) -> Result<Vec<ServerView>, InventoryError> {
    let (switch, switch_port) = device_port(port).ok_or_else(|| InventoryError::InvalidPort(port.to_string()))?;
    Ok(links
        .iter()
        .filter(|(_, server_links)| server_links.iter().any(|l| l.switch == switch && l.switch_port == switch_port))
        .map(|(server, _)| hosted_on(server, links, servers, label, inventory))
        .collect())
}

/// The pods and VMIs on `nodes` that have not terminated. A VM shows as its VMI and its launcher
/// pod: when both are imported it is listed once, as the VMI (the launcher's controller, of the
/// VM's name).
fn running_on(nodes: &[NodeRef], inventory: &[InventoryObject]) -> Vec<Hosted> {
    let on_nodes: Vec<&InventoryObject> = inventory
        .iter()
        .filter(|o| matches!(o.kind, InventoryKind::Pod | InventoryKind::VirtualMachineInstance))
        .filter(|o| o.node.as_ref().is_some_and(|n| nodes.iter().any(|r| r.cluster == o.cluster && &r.name == n)))
        .filter(|o| !matches!(text(&o.facts, "/phase"), Some("Succeeded" | "Failed")))
        .collect();
    let vmis: BTreeSet<(&str, &str, &str)> = on_nodes
        .iter()
        .filter(|o| o.kind == InventoryKind::VirtualMachineInstance)
        .map(|o| (o.cluster.as_str(), o.namespace.as_str(), o.name.as_str()))
        .collect();
    // A launcher names its VM (labels, or its VMI as controller); the VMI has the VM's name.
    let launched_by_vmi = |o: &InventoryObject| {
        let vmi = text(&o.facts, "/owner/kind").filter(|k| *k == VMI_KIND).and(text(&o.facts, "/owner/name"));
        o.kind == InventoryKind::Pod
            && vmi.or(o.vm.as_deref()).is_some_and(|vm| vmis.contains(&(o.cluster.as_str(), o.namespace.as_str(), vm)))
    };
    let mut hosted: Vec<Hosted> = on_nodes
        .into_iter()
        .filter(|o| !launched_by_vmi(o))
        .filter_map(|o| {
            Some(Hosted {
                cluster: o.cluster.clone(),
                workload: o.workload?,
                kind: o.kind,
                namespace: o.namespace.clone(),
                name: o.name.clone(),
                node: o.node.clone()?,
                vm: o.vm.clone(),
            })
        })
        .collect();
    hosted.sort();
    hosted
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::manifest::{yaml, Options};

    /// kubevirt/kubevirt examples/vm-cirros.yaml at 5eb9ff746b7bcbcf69c4029b12d80e3296109ba1.
    const VM_CIRROS: &str = r#"---
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  labels:
    kubevirt.io/vm: vm-cirros
  name: vm-cirros
spec:
  running: false
  template:
    metadata:
      labels:
        kubevirt.io/vm: vm-cirros
    spec:
      domain:
        devices:
          disks:
          - disk:
              bus: virtio
            name: containerdisk
          - disk:
              bus: virtio
            name: cloudinitdisk
        resources:
          requests:
            memory: 128Mi
      terminationGracePeriodSeconds: 0
      volumes:
      - containerDisk:
          image: index.docker.io/kubevirt/cirros-container-disk-demo:mybuild
        name: containerdisk
      - cloudInitNoCloud:
          userData: |
            #!/bin/sh

            echo 'printed from cloud-init userdata'
        name: cloudinitdisk
"#;

    /// The lab-ci sample fabric (githedgehog/lab-ci envs/env-ci-1.l/wiring.yaml): every shape of
    /// Connection but mclag and mesh.
    const LAB_WIRING: &str = include_str!("../../server/tests/data/samples/lab-ci/wiring.yaml");

    fn documents(text: &str) -> Vec<Value> {
        yaml::parse(text, &Options::default().yaml_limits()).unwrap().into_iter().map(|d| d.value).collect()
    }

    fn of_kind(documents: &[Value], kind: &str) -> Vec<Value> {
        documents.iter().filter(|d| d["kind"] == kind).cloned().collect()
    }

    fn ok(kind: InventoryKind, object: Value) -> InventoryObject {
        read(OWN_CLUSTER, kind, &object).unwrap()
    }

    /// An OpenShift worker as `oc get node -o json` shows it, volatile fields included.
    fn node(name: &str, extra_labels: Value) -> Value {
        let mut labels = json!({
            "beta.kubernetes.io/arch": "amd64",
            "kubernetes.io/hostname": name,
            "node-role.kubernetes.io/worker": "",
            "node-role.kubernetes.io/infra": "",
            "node.openshift.io/os_id": "rhcos"
        });
        labels.as_object_mut().unwrap().extend(extra_labels.as_object().unwrap().clone());
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {
                "name": name, "uid": format!("uid-{name}"), "resourceVersion": "48634763",
                "creationTimestamp": "2026-11-02T08:00:00Z", "labels": labels,
                "annotations": {"machineconfiguration.openshift.io/state": "Done"},
                "managedFields": [{"manager": "kubelet", "operation": "Update", "time": "2026-12-01T10:00:00Z"}]
            },
            "spec": {"podCIDR": "10.128.2.0/23"},
            "status": {
                "capacity": {"cpu": "16", "memory": "65776196Ki", "pods": "250", "ephemeral-storage": "487130092Ki"},
                "allocatable": {"cpu": "15500m", "memory": "64625220Ki", "pods": "250"},
                "addresses": [{"type": "InternalIP", "address": "10.0.10.11"}, {"type": "Hostname", "address": name}],
                "conditions": [
                    {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": "2026-12-01T10:00:00Z"},
                    {"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-12-01T10:00:00Z",
                     "reason": "KubeletReady"}
                ],
                "nodeInfo": {"kubeletVersion": "v1.29.8+f10c92d", "osImage": "Red Hat Enterprise Linux CoreOS"}
            }
        })
    }

    fn pod(namespace: &str, name: &str, node: &str, labels: Value, containers: &[&str], owner: (&str, &str)) -> Value {
        let containers: Vec<Value> =
            containers.iter().map(|c| json!({"name": c, "image": format!("quay.io/example/{c}:1")})).collect();
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": name, "namespace": namespace, "uid": format!("uid-{name}"), "resourceVersion": "1",
                "labels": labels,
                "ownerReferences": [{"apiVersion": "v1", "kind": owner.0, "name": owner.1, "uid": "o",
                                     "controller": true, "blockOwnerDeletion": true}]
            },
            "spec": {"nodeName": node, "containers": containers},
            "status": {"phase": "Running", "podIP": "10.128.2.190"}
        })
    }

    /// vm-cirros's launcher pod as KubeVirt labels it: no kubevirt.io/domain label, since the
    /// example's template sets none.
    fn cirros_launcher() -> Value {
        let labels = json!({"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": "uid-vmi",
                            "kubevirt.io/vm": "vm-cirros", "vm.kubevirt.io/name": "vm-cirros"});
        pod("vms", "virt-launcher-vm-cirros-8dzl7", "server-1", labels, &["compute"], (VMI_KIND, "vm-cirros"))
    }

    /// A launcher as OpenShift Virtualization shows it (`oc get pod virt-launcher-… -o yaml`).
    fn domain_launcher(vm_label: bool) -> Value {
        let mut labels = json!({"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": "3cbb32a1",
                                "kubevirt.io/domain": "cat8kv-01", "special": "cat8kv-01"});
        if vm_label {
            labels["vm.kubevirt.io/name"] = json!("cat8kv");
        }
        pod("vms", "virt-launcher-cat8kv-01-8dzl7", "ocp-worker-2.lab", labels, &["compute"], (VMI_KIND, "cat8kv-01"))
    }

    fn vmi(namespace: &str, name: &str, node: &str) -> Value {
        json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": namespace, "uid": "uid-vmi", "resourceVersion": "9",
                         "labels": {"kubevirt.io/vm": name, "kubevirt.io/nodeName": node}},
            "status": {
                "phase": "Running", "nodeName": node,
                "interfaces": [
                    {"name": "default", "interfaceName": "eth0", "mac": "02:42:ac:11:00:02",
                     "ipAddress": "10.128.2.191", "ipAddresses": ["10.128.2.191", "fd02::191"]},
                    {"interfaceName": "eth1", "ipAddress": "192.168.10.5"}
                ]
            }
        })
    }

    #[test]
    fn a_node_reads_as_roles_resources_addresses_readiness_and_labels() {
        let worker = ok(InventoryKind::Node, node("server-1", json!({})));
        assert_eq!(
            (worker.namespace.as_str(), worker.name.as_str(), worker.uid.as_str()),
            ("", "server-1", "uid-server-1")
        );
        assert_eq!(worker.key().to_string(), "node/server-1");
        assert_eq!((worker.workload, worker.node.as_deref()), (None, None));
        assert_eq!(worker.facts["roles"], json!(["infra", "worker"]));
        assert_eq!(worker.facts["capacity"], json!({"cpu": "16", "memory": "65776196Ki", "pods": "250"}));
        assert_eq!(worker.facts["allocatable"], json!({"cpu": "15500m", "memory": "64625220Ki", "pods": "250"}));
        assert_eq!(
            worker.facts["addresses"],
            json!([{"type": "InternalIP", "address": "10.0.10.11"}, {"type": "Hostname", "address": "server-1"}])
        );
        assert_eq!(worker.facts["ready"], json!(true));
        assert_eq!(worker.facts["kubeletVersion"], json!("v1.29.8+f10c92d"));
        assert_eq!(worker.facts["labels"]["node.openshift.io/os_id"], json!("rhcos"));
        // Nothing volatile: only these facts and the uid are hashed.
        let keys: Vec<&String> = worker.facts.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["addresses", "allocatable", "capacity", "kubeletVersion", "labels", "ready", "roles"]);
        assert_eq!(worker.hash, content_hash(&json!([&worker.uid, &worker.facts])));

        let mut not_ready = node("server-2", json!({}));
        not_ready["status"]["conditions"][1]["status"] = json!("False");
        assert_eq!(ok(InventoryKind::Node, not_ready).facts["ready"], json!(false));
    }

    #[test]
    fn namespaces_and_controllers_read_as_their_facts() {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": "vms", "uid": "u", "labels": {"kubernetes.io/metadata.name": "vms"}},
                        "status": {"phase": "Active"}});
        let ns = ok(InventoryKind::Namespace, ns);
        assert_eq!(ns.facts, json!({"phase": "Active", "labels": {"kubernetes.io/metadata.name": "vms"}}));

        let template = json!({"spec": {"containers": [{"name": "web", "image": "nginx:1.27"},
                                                      {"name": "proxy", "image": "envoy:1.31"}]}});
        let selector = json!({"matchLabels": {"app": "web"}});
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                                "metadata": {"name": "web", "namespace": "shop"},
                                "spec": {"replicas": 3, "selector": selector, "template": template},
                                "status": {"readyReplicas": 2, "observedGeneration": 7}});
        let deployment = ok(InventoryKind::Deployment, deployment);
        assert_eq!(deployment.namespace, "shop");
        assert_eq!(
            deployment.facts,
            json!({"replicas": {"desired": 3, "ready": 2}, "selector": selector, "images": ["nginx:1.27", "envoy:1.31"]})
        );
        // No ready pods yet: the API server leaves readyReplicas out; replicas defaults to 1.
        let statefulset = json!({"metadata": {"name": "db", "namespace": "shop"},
                                 "spec": {"selector": selector, "template": template}});
        assert_eq!(ok(InventoryKind::StatefulSet, statefulset).facts["replicas"], json!({"desired": 1, "ready": 0}));
        let daemonset = json!({"metadata": {"name": "agent", "namespace": "ops"},
                               "spec": {"replicas": 9, "selector": selector, "template": template},
                               "status": {"desiredNumberScheduled": 6, "numberReady": 5}});
        assert_eq!(ok(InventoryKind::DaemonSet, daemonset).facts["replicas"], json!({"desired": 6, "ready": 5}));
    }

    #[test]
    fn a_pod_reads_as_phase_node_ip_controller_and_workload() {
        let web =
            pod("shop", "web-7d4b9c-x2k4f", "server-1", json!({"app": "web"}), &["web"], ("ReplicaSet", "web-7d4b9c"));
        let web = ok(InventoryKind::Pod, web);
        assert_eq!(
            web.facts,
            json!({"phase": "Running", "nodeName": "server-1", "podIP": "10.128.2.190",
                   "owner": {"kind": "ReplicaSet", "name": "web-7d4b9c"}, "workloadType": "container", "vm": null,
                   "labels": {"app": "web"}})
        );
        assert_eq!(
            (web.workload, web.node.as_deref(), web.vm.as_deref()),
            (Some(WorkloadType::Container), Some("server-1"), None)
        );
        // Pending: no node, IP or owner yet.
        let pending = json!({"metadata": {"name": "p", "namespace": "shop"}, "spec": {"containers": []},
                             "status": {"phase": "Pending"}});
        let pending = ok(InventoryKind::Pod, pending);
        assert_eq!(
            (pending.node.as_deref(), &pending.facts["owner"], &pending.facts["podIP"]),
            (None, &Value::Null, &Value::Null)
        );
    }

    #[test]
    fn a_launcher_pod_is_found_by_its_domain_label_or_by_its_compute_container_and_name() {
        // vm.kubevirt.io/name wins over the domain label.
        let by_label = ok(InventoryKind::Pod, domain_launcher(true));
        assert_eq!((by_label.workload, by_label.vm.as_deref()), (Some(WorkloadType::Vm), Some("cat8kv")));
        assert_eq!((&by_label.facts["workloadType"], &by_label.facts["vm"]), (&json!("vm"), &json!("cat8kv")));
        let domain_only = ok(InventoryKind::Pod, domain_launcher(false));
        assert_eq!(domain_only.vm.as_deref(), Some("cat8kv-01"));

        let cirros = ok(InventoryKind::Pod, cirros_launcher());
        assert_eq!((cirros.workload, cirros.vm.as_deref()), (Some(WorkloadType::Vm), Some("vm-cirros")));
        // Without either label, the VM's name is its VMI's (the launcher's controller).
        let mut bare = cirros_launcher();
        bare["metadata"]["labels"] = json!({"kubevirt.io": "virt-launcher"});
        assert_eq!(ok(InventoryKind::Pod, bare).vm.as_deref(), Some("vm-cirros"));

        // The name alone, or a compute container alone, is not a launcher.
        let no_compute = pod("vms", "virt-launcher-look-alike", "server-1", json!({}), &["app"], ("ReplicaSet", "r"));
        assert_eq!(ok(InventoryKind::Pod, no_compute).workload, Some(WorkloadType::Container));
        let compute = pod("hpc", "solver-0", "server-1", json!({}), &["compute"], ("StatefulSet", "solver"));
        let compute = ok(InventoryKind::Pod, compute);
        assert_eq!((compute.workload, compute.vm), (Some(WorkloadType::Container), None));
    }

    #[test]
    fn services_read_as_type_ip_ports_and_selector() {
        let service = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "5"},
            "spec": {"type": "NodePort", "clusterIP": "172.30.12.7", "clusterIPs": ["172.30.12.7"],
                     "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30080}],
                     "selector": {"app": "web"}, "sessionAffinity": "None"}});
        assert_eq!(
            ok(InventoryKind::Service, service).facts,
            json!({"type": "NodePort", "clusterIP": "172.30.12.7", "selector": {"app": "web"},
                   "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30080}]})
        );
        let headless = json!({"metadata": {"name": "db", "namespace": "shop"}, "spec": {"clusterIP": "None"}});
        let headless = ok(InventoryKind::Service, headless);
        assert_eq!((&headless.facts["type"], &headless.facts["ports"]), (&json!("ClusterIP"), &json!([])));
    }

    #[test]
    fn the_kubevirt_example_vm_reads_as_stopped_and_a_started_one_as_ready() {
        let docs = documents(VM_CIRROS);
        let mut vm = ok(InventoryKind::VirtualMachine, docs[0].clone());
        assert_eq!(
            (vm.kind.api_version(), vm.name.as_str(), vm.namespace.as_str()),
            ("kubevirt.io/v1", "vm-cirros", "")
        );
        assert_eq!(vm.facts, json!({"printableStatus": null, "running": false, "runStrategy": null, "ready": false}));
        assert_eq!((vm.workload, vm.vm.as_deref()), (Some(WorkloadType::Vm), Some("vm-cirros")));

        let mut started = docs[0].clone();
        started["metadata"]["namespace"] = json!("vms");
        started["spec"] = json!({"runStrategy": "Always", "template": started["spec"]["template"].clone()});
        started["status"] = json!({"printableStatus": "Running", "ready": true, "created": true});
        let before = vm.hash.clone();
        vm = ok(InventoryKind::VirtualMachine, started);
        assert_eq!(
            vm.facts,
            json!({"printableStatus": "Running", "running": null, "runStrategy": "Always", "ready": true})
        );
        assert_eq!(vm.namespace, "vms");
        assert_ne!(vm.hash, before);
    }

    #[test]
    fn a_vmi_reads_as_phase_node_and_interface_ips() {
        let vmi = ok(InventoryKind::VirtualMachineInstance, vmi("vms", "vm-cirros", "server-1"));
        assert_eq!(
            vmi.facts,
            json!({"phase": "Running", "nodeName": "server-1", "interfaces": [
                {"name": "default", "ips": ["10.128.2.191", "fd02::191"]},
                {"name": "eth1", "ips": ["192.168.10.5"]}
            ]})
        );
        assert_eq!((vmi.workload, vmi.node.as_deref()), (Some(WorkloadType::Vm), Some("server-1")));
    }

    #[test]
    fn an_object_without_a_name_or_of_another_kind_is_an_error_saying_so() {
        let unnamed = json!({"metadata": {"namespace": "vms", "uid": "3cbb32a1"}});
        let err = read(OWN_CLUSTER, InventoryKind::Pod, &unnamed).unwrap_err();
        assert_eq!(
            err,
            InventoryError::MissingName { kind: InventoryKind::Pod, namespace: "vms".into(), uid: "3cbb32a1".into() }
        );
        assert_eq!(err.to_string(), r#"pod object (namespace "vms", uid "3cbb32a1"): metadata.name is missing"#);
        let err = read(OWN_CLUSTER, InventoryKind::Pod, &node("server-1", json!({}))).unwrap_err();
        assert_eq!(err.to_string(), r#""server-1" was read as a Pod but is a Node"#);
        // A namespace on a cluster-scoped object is not taken.
        let node = ok(InventoryKind::Node, json!({"metadata": {"name": "n", "namespace": "stray"}}));
        assert_eq!(node.namespace, "");
    }

    fn filter(namespace_regex: Option<&str>, workloads: WorkloadFilter) -> InventoryFilter {
        InventoryFilter::new(namespace_regex, workloads, InventoryKind::ALL.iter().copied()).unwrap()
    }

    #[test]
    fn the_namespace_regex_filters_namespaced_objects_and_namespaces_by_name() {
        let only_team = filter(Some("^team-"), WorkloadFilter::All);
        let web = |ns: &str| ok(InventoryKind::Pod, pod(ns, "web", "n", json!({}), &["web"], ("ReplicaSet", "r")));
        let namespace = |name: &str| ok(InventoryKind::Namespace, json!({"metadata": {"name": name}}));
        assert!(only_team.keeps(&web("team-a")));
        assert!(!only_team.keeps(&web("other-team-a")));
        assert!(only_team.keeps(&namespace("team-b")));
        assert!(!only_team.keeps(&namespace("kube-system")));
        // Nodes have no namespace: the regex does not apply to them.
        assert!(only_team.keeps(&ok(InventoryKind::Node, node("server-1", json!({})))));
        assert!(filter(None, WorkloadFilter::All).keeps(&web("kube-system")));
    }

    #[test]
    fn the_workload_filter_splits_containers_from_vms() {
        let container = ok(InventoryKind::Pod, pod("shop", "web", "n", json!({}), &["web"], ("ReplicaSet", "r")));
        let launcher = ok(InventoryKind::Pod, cirros_launcher());
        let vm = ok(InventoryKind::VirtualMachine, documents(VM_CIRROS)[0].clone());
        let vmi = ok(InventoryKind::VirtualMachineInstance, vmi("vms", "vm-cirros", "server-1"));
        let deployment = ok(InventoryKind::Deployment, json!({"metadata": {"name": "web", "namespace": "shop"}}));
        let kept = |workloads| {
            let f = filter(None, workloads);
            [&container, &launcher, &vm, &vmi, &deployment].map(|o| f.keeps(o))
        };
        assert_eq!(kept(WorkloadFilter::All), [true; 5]);
        assert_eq!(kept(WorkloadFilter::Containers), [true, false, false, false, true]);
        assert_eq!(kept(WorkloadFilter::Vms), [false, true, true, true, true]);
    }

    #[test]
    fn kinds_not_listed_are_not_imported() {
        let nodes_and_vms =
            InventoryFilter::new(None, WorkloadFilter::All, [InventoryKind::Node, InventoryKind::VirtualMachine])
                .unwrap();
        assert!(nodes_and_vms.keeps(&ok(InventoryKind::Node, node("server-1", json!({})))));
        assert!(!nodes_and_vms.keeps(&ok(InventoryKind::Pod, cirros_launcher())));
    }

    #[test]
    fn an_invalid_namespace_regex_names_the_field() {
        let err = InventoryFilter::new(Some("team-("), WorkloadFilter::All, []).unwrap_err();
        let InventoryError::InvalidFilter { field, message } = &err else { panic!("{err:?}") };
        assert_eq!(*field, "namespace_regex");
        assert!(message.contains("unclosed group"), "{message}");
        assert!(err.to_string().starts_with("namespace_regex: regex parse error"), "{err}");
    }

    #[test]
    fn the_diff_tells_created_updated_deleted_and_unchanged() {
        let web = pod("shop", "web", "server-1", json!({"app": "web"}), &["web"], ("ReplicaSet", "r"));
        let db = pod("shop", "db", "server-1", json!({"app": "db"}), &["db"], ("StatefulSet", "db"));
        let old = pod("shop", "old", "server-1", json!({}), &["old"], ("ReplicaSet", "o"));
        let previous: Vec<(InventoryKey, String)> = [&web, &db, &old]
            .into_iter()
            .map(|p| {
                let o = ok(InventoryKind::Pod, p.clone());
                (o.key(), o.hash)
            })
            .collect();

        // Relisted: a new resourceVersion and managedFields, the same facts.
        let mut relisted = web.clone();
        relisted["metadata"]["resourceVersion"] = json!("2");
        relisted["metadata"]["managedFields"] = json!([{"manager": "kubelet", "time": "2026-12-02T10:00:00Z"}]);
        let mut moved = db.clone();
        moved["spec"]["nodeName"] = json!("server-3");
        let new = pod("shop", "new", "server-1", json!({}), &["new"], ("ReplicaSet", "n"));
        let current: Vec<InventoryObject> =
            [relisted, moved, new].into_iter().map(|p| ok(InventoryKind::Pod, p)).collect();
        assert_eq!(current[0].hash, previous[0].1);
        // Deleted and made again under its name, the same facts: another object.
        let mut recreated = web.clone();
        recreated["metadata"]["uid"] = json!("another-uid");
        assert_ne!(ok(InventoryKind::Pod, recreated).hash, previous[0].1);

        let key = |name: &str| InventoryKey {
            cluster: OWN_CLUSTER.into(),
            kind: InventoryKind::Pod,
            namespace: "shop".into(),
            name: name.into(),
        };
        let changes = diff(&previous, &current);
        assert_eq!(
            changes,
            [
                (key("db"), ChangeAction::Update),
                (key("new"), ChangeAction::Create),
                (key("old"), ChangeAction::Delete),
                (key("web"), ChangeAction::Unchanged),
            ]
        );
        assert_eq!(
            counts(&changes),
            [
                (ChangeAction::Create, 1),
                (ChangeAction::Update, 1),
                (ChangeAction::Delete, 1),
                (ChangeAction::Unchanged, 1)
            ]
        );
        assert_eq!(diff(&[], &[]), []);
    }

    fn link(connection: &str, server_port: &str, switch: &str, switch_port: &str) -> PortLink {
        PortLink {
            connection: connection.into(),
            server_port: server_port.into(),
            switch: switch.into(),
            switch_port: switch_port.into(),
        }
    }

    #[test]
    fn server_links_read_every_server_shape_of_the_sample_fabric() {
        let connections = of_kind(&documents(LAB_WIRING), "Connection");
        assert_eq!(connections.len(), 24);
        let links = server_links(&connections);
        // Fabric, vpcLoopback and external Connections link no server.
        let per_server: Vec<(&str, usize)> = links.iter().map(|(s, l)| (s.as_str(), l.len())).collect();
        assert_eq!(
            per_server,
            [
                ("server-1", 2),
                ("server-2", 2),
                ("server-3", 2),
                ("server-5", 2),
                ("server-6", 2),
                ("server-7", 1),
                ("server-8", 1),
                ("server-9", 1)
            ]
        );
        let eslag = "server-1--eslag--ds3000-01--ds3000-02";
        assert_eq!(
            links["server-1"],
            [link(eslag, "enp2s1", "ds3000-01", "E1/1/2"), link(eslag, "enp2s2", "ds3000-02", "E1/1/2")]
        );
        let bundled = "server-3--bundled--ds3000-01";
        assert_eq!(
            links["server-3"],
            [link(bundled, "enp2s1", "ds3000-01", "E1/1/4"), link(bundled, "enp2s2", "ds3000-01", "E1/2/2")]
        );
        assert_eq!(links["server-7"], [link("server-7--unbundled--ds3000-03", "enp2s1", "ds3000-03", "E1/1/1")]);

        // MCLAG, absent from the sample, as the CRD shapes it; a malformed port is skipped.
        let mclag = json!({"apiVersion": "wiring.githedgehog.com/v1beta1", "kind": "Connection",
        "metadata": {"name": "server-4--mclag--leaf-01--leaf-02"},
        "spec": {"mclag": {"mtu": 9036, "fallback": true, "links": [
            {"server": {"port": "server-4/enp2s1"}, "switch": {"port": "leaf-01/E1/5"}},
            {"server": {"port": "server-4/enp2s2"}, "switch": {"port": "leaf-02/E1/5"}},
            {"server": {"port": "server-4"}, "switch": {"port": "leaf-02/E1/6"}}
        ]}}});
        let links = server_links(&[mclag]);
        let name = "server-4--mclag--leaf-01--leaf-02";
        assert_eq!(
            links["server-4"],
            [link(name, "enp2s1", "leaf-01", "E1/5"), link(name, "enp2s2", "leaf-02", "E1/5")]
        );
    }

    const SERVER_LABEL: &str = "fabricsync.githedgehog.com/server";

    fn servers() -> Vec<String> {
        of_kind(&documents(LAB_WIRING), "Server")
            .iter()
            .map(|s| s["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn a_node_is_a_server_by_name_or_by_label() {
        let servers = servers();
        let by_name = ok(InventoryKind::Node, node("server-1", json!({})));
        let labelled = ok(InventoryKind::Node, node("ocp-worker-2.lab", json!({SERVER_LABEL: "server-3"})));
        let unknown = ok(InventoryKind::Node, node("ocp-worker-9.lab", json!({SERVER_LABEL: "server-42"})));
        assert_eq!(node_server(&by_name, &servers, None).as_deref(), Some("server-1"));
        assert_eq!(node_server(&by_name, &servers, Some(SERVER_LABEL)).as_deref(), Some("server-1"));
        assert_eq!(node_server(&labelled, &servers, Some(SERVER_LABEL)).as_deref(), Some("server-3"));
        assert_eq!(node_server(&labelled, &servers, None), None);
        assert_eq!(node_server(&unknown, &servers, Some(SERVER_LABEL)), None);
        // The label, when it names a Server, wins over the node's name.
        let renamed = ok(InventoryKind::Node, node("server-1", json!({SERVER_LABEL: "server-2"})));
        assert_eq!(node_server(&renamed, &servers, Some(SERVER_LABEL)).as_deref(), Some("server-2"));
        // Only nodes are servers.
        assert_eq!(
            node_server(&ok(InventoryKind::Pod, cirros_launcher()), &["virt-launcher-vm-cirros-8dzl7".into()], None),
            None
        );
    }

    /// server-1 (by name) runs a web pod, vm-cirros (VMI and launcher) and a finished job;
    /// ocp-worker-2 (server-3 by label) runs a launcher whose VMI was not imported.
    fn cluster() -> Vec<InventoryObject> {
        let mut job = pod("shop", "report-29001-x", "server-1", json!({}), &["report"], ("Job", "report-29001"));
        job["status"]["phase"] = json!("Succeeded");
        vec![
            ok(InventoryKind::Node, node("server-1", json!({}))),
            ok(InventoryKind::Node, node("ocp-worker-2.lab", json!({SERVER_LABEL: "server-3"}))),
            ok(InventoryKind::Pod, pod("shop", "web-x2k4f", "server-1", json!({}), &["web"], ("ReplicaSet", "web"))),
            ok(InventoryKind::Pod, cirros_launcher()),
            ok(InventoryKind::VirtualMachineInstance, vmi("vms", "vm-cirros", "server-1")),
            ok(InventoryKind::VirtualMachine, documents(VM_CIRROS)[0].clone()),
            ok(InventoryKind::Pod, job),
            ok(InventoryKind::Pod, domain_launcher(true)),
        ]
    }

    fn own_node(name: &str) -> NodeRef {
        NodeRef { cluster: OWN_CLUSTER.into(), name: name.into() }
    }

    fn hosted(
        workload: WorkloadType,
        kind: InventoryKind,
        ns: &str,
        name: &str,
        node: &str,
        vm: Option<&str>,
    ) -> Hosted {
        Hosted {
            cluster: OWN_CLUSTER.into(),
            workload,
            kind,
            namespace: ns.into(),
            name: name.into(),
            node: node.into(),
            vm: vm.map(str::to_string),
        }
    }

    #[test]
    fn behind_a_switch_port_are_its_servers_nodes_pods_and_vms() {
        let links = server_links(&of_kind(&documents(LAB_WIRING), "Connection"));
        let (servers, inventory) = (servers(), cluster());
        let behind = |port: &str| behind_switch_port(port, &links, &servers, Some(SERVER_LABEL), &inventory).unwrap();

        let views = behind("ds3000-01/E1/1/2");
        assert_eq!(views.len(), 1);
        assert_eq!(
            (views[0].server.as_str(), views[0].nodes.as_slice()),
            ("server-1", [own_node("server-1")].as_slice())
        );
        // vm-cirros once, as its VMI; the finished job is not running there.
        assert_eq!(
            views[0].workloads,
            [
                hosted(WorkloadType::Container, InventoryKind::Pod, "shop", "web-x2k4f", "server-1", None),
                hosted(
                    WorkloadType::Vm,
                    InventoryKind::VirtualMachineInstance,
                    "vms",
                    "vm-cirros",
                    "server-1",
                    Some("vm-cirros")
                ),
            ]
        );
        assert_eq!(views[0].links.len(), 2, "both ESLAG legs");

        let views = behind("ds3000-01/E1/2/2");
        assert_eq!((views.len(), views[0].server.as_str()), (1, "server-3"));
        assert_eq!(
            views[0].workloads,
            [hosted(
                WorkloadType::Vm,
                InventoryKind::Pod,
                "vms",
                "virt-launcher-cat8kv-01-8dzl7",
                "ocp-worker-2.lab",
                Some("cat8kv")
            )]
        );
        // A linked server without a node; a port nothing is linked to.
        let views = behind("ds3000-03/E1/1/1");
        assert_eq!((views[0].server.as_str(), views[0].nodes.len(), views[0].workloads.len()), ("server-7", 0, 0));
        assert_eq!(behind("ds3000-01/E1/9"), []);
        let err = behind_switch_port("E1", &links, &servers, None, &inventory).unwrap_err();
        assert_eq!(err.to_string(), r#"port "E1" must be <switch>/<port>"#);
    }

    #[test]
    fn hosted_on_gives_a_servers_node_ports_and_workloads() {
        let links = server_links(&of_kind(&documents(LAB_WIRING), "Connection"));
        let (servers, inventory) = (servers(), cluster());
        let view = hosted_on("server-3", &links, &servers, Some(SERVER_LABEL), &inventory);
        assert_eq!(view.nodes, [own_node("ocp-worker-2.lab")]);
        assert_eq!(
            view.links.iter().map(|l| format!("{}/{}", l.switch, l.switch_port)).collect::<Vec<_>>(),
            ["ds3000-01/E1/1/4", "ds3000-01/E1/2/2"]
        );
        assert_eq!(
            view.workloads.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
            ["virt-launcher-cat8kv-01-8dzl7"]
        );
        // Without the label, no node is server-3.
        let view = hosted_on("server-3", &links, &servers, None, &inventory);
        assert_eq!((view.nodes.len(), view.workloads.len(), view.links.len()), (0, 0, 2));
    }

    #[test]
    fn a_node_of_an_extra_cluster_hosts_what_that_cluster_runs_on_it() {
        let links = server_links(&of_kind(&documents(LAB_WIRING), "Connection"));
        let servers = servers();
        let edge = |kind: InventoryKind, object: Value| read("edge", kind, &object).unwrap();
        let mut inventory = cluster();
        inventory.extend([
            edge(InventoryKind::Node, node("server-7", json!({}))),
            edge(InventoryKind::Pod, pod("cdn", "cache-1", "server-7", json!({}), &["cache"], ("ReplicaSet", "c"))),
            // Named after own cluster's node, but edge has no node server-1: not on server-1.
            edge(InventoryKind::Pod, pod("cdn", "cache-2", "server-1", json!({}), &["cache"], ("ReplicaSet", "c"))),
        ]);
        let view = hosted_on("server-7", &links, &servers, None, &inventory);
        assert_eq!(view.nodes, [NodeRef { cluster: "edge".into(), name: "server-7".into() }]);
        assert_eq!(
            view.workloads.iter().map(|w| (w.cluster.as_str(), w.name.as_str())).collect::<Vec<_>>(),
            [("edge", "cache-1")]
        );
        let view = hosted_on("server-1", &links, &servers, None, &inventory);
        assert!(view.workloads.iter().all(|w| w.cluster == OWN_CLUSTER), "{:?}", view.workloads);
        // The same name in two clusters is two objects.
        let own = ok(InventoryKind::Node, node("server-7", json!({})));
        let changes = diff(&[(own.key(), own.hash.clone())], &inventory[inventory.len() - 3..inventory.len() - 2]);
        assert_eq!(
            changes.iter().map(|(k, a)| (k.to_string(), *a)).collect::<Vec<_>>(),
            [
                ("node/server-7".to_string(), ChangeAction::Delete),
                ("edge:node/server-7".to_string(), ChangeAction::Create),
            ]
        );
    }
}
