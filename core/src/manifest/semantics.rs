//! Fabric rules across objects: unique identities, references that resolve, subnets inside
//! their IPv4Namespace and disjoint, VLANs inside their VLANNamespace and not reused.
//! Rules follow Hedgehog's API validation (githedgehog/fabric api/vpc and api/wiring).

use std::borrow::Borrow;
use std::collections::HashMap;

use serde_json::Value;

use super::yaml::escape;
use super::{Diagnostic, Object, Severity};

const WIRING: &str = "wiring.githedgehog.com";
const VPC: &str = "vpc.githedgehog.com";
/// Namespaces a VPC or External uses when it names none (Hedgehog's defaulting).
const DEFAULT_NS_OBJECT: &str = "default";

/// Objects by (kind, namespace, name).
struct Index<'a>(HashMap<(&'a str, &'a str, &'a str), &'a Object>);

impl<'a> Index<'a> {
    fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<&'a Object> {
        self.0.get(&(kind, namespace, name)).copied()
    }
}

/// The code of a reference the sources do not resolve.
pub const UNRESOLVED_REFERENCE: &str = "ref.unresolved";

/// The fabric's cross-object findings as a pull reports them: real GitOps directories often
/// hold part of a fabric (the rest lives only in the cluster), so an unresolved reference is a
/// warning unless the fabric declares its sources complete (`strict`).
pub fn fabric_findings<O: Borrow<Object>>(objects: &[O], strict: bool) -> Vec<Diagnostic> {
    let mut found = validate_fabric(objects);
    for d in &mut found {
        if d.code == UNRESOLVED_REFERENCE && !strict {
            d.severity = Severity::Warning;
        }
    }
    found
}

/// All cross-object findings, sorted by file, document and field.
pub fn validate_fabric<O: Borrow<Object>>(objects: &[O]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut index = Index(HashMap::with_capacity(objects.len()));
    let mut first: HashMap<(&str, &str, &str, &str), &Object> = HashMap::with_capacity(objects.len());
    for o in objects.iter().map(Borrow::borrow) {
        let key = (o.group.as_str(), o.kind.as_str(), o.namespace.as_str(), o.name.as_str());
        if let Some(earlier) = first.get(&key) {
            out.push(o.diagnostic(
                Severity::Error,
                "object.duplicate",
                "/metadata/name",
                format!(
                    "{} {}/{} is also defined in {} (document {})",
                    o.kind, o.namespace, o.name, earlier.file, earlier.document
                ),
            ));
            continue;
        }
        first.insert(key, o);
        index.0.insert((o.kind.as_str(), o.namespace.as_str(), o.name.as_str()), o);
    }
    for o in first.values() {
        match (o.group.as_str(), o.kind.as_str()) {
            (WIRING, "Connection") => connection_ports(o, &index, &mut out),
            (VPC, "VPCAttachment") => vpc_attachment(o, &index, &mut out),
            (VPC, "VPCPeering") => vpc_peering(o, &index, &mut out),
            (VPC, "ExternalAttachment") => {
                reference(o, &index, "/spec/external", "External", &mut out);
                reference(o, &index, "/spec/connection", "Connection", &mut out);
            }
            (VPC, "ExternalPeering") => {
                reference(o, &index, "/spec/permit/vpc/name", "VPC", &mut out);
                reference(o, &index, "/spec/permit/external/name", "External", &mut out);
            }
            (VPC, "External") => namespace_reference(o, &index, "/spec/ipv4Namespace", "IPv4Namespace", &mut out),
            _ => {}
        }
    }
    vpc_subnets_and_vlans(&first, &index, &mut out);
    out.sort_by(|a, b| {
        (&a.file, a.document, &a.field_path, &a.code).cmp(&(&b.file, b.document, &b.field_path, &b.code))
    });
    out
}

fn text<'a>(o: &'a Object, pointer: &str) -> Option<&'a str> {
    o.body.pointer(pointer).and_then(Value::as_str)
}

fn unresolved(o: &Object, pointer: &str, message: String) -> Diagnostic {
    o.diagnostic(Severity::Error, UNRESOLVED_REFERENCE, pointer, message)
}

/// `pointer` names an object of `kind` in the same namespace.
fn reference(o: &Object, index: &Index, pointer: &str, kind: &str, out: &mut Vec<Diagnostic>) {
    if let Some(name) = text(o, pointer).filter(|n| !n.is_empty()) {
        if index.get(kind, &o.namespace, name).is_none() {
            out.push(unresolved(o, pointer, format!("{kind} {name:?} is not defined in namespace {}", o.namespace)));
        }
    }
}

/// Like `reference`, with Hedgehog's default when the field is absent.
fn namespace_reference(o: &Object, index: &Index, pointer: &str, kind: &str, out: &mut Vec<Diagnostic>) {
    let name = text(o, pointer).unwrap_or(DEFAULT_NS_OBJECT);
    if index.get(kind, &o.namespace, name).is_none() {
        out.push(unresolved(o, pointer, format!("{kind} {name:?} is not defined in namespace {}", o.namespace)));
    }
}

/// Every `port: "<device>/<port>"` in a Connection names a Switch or Server.
fn connection_ports(o: &Object, index: &Index, out: &mut Vec<Diagnostic>) {
    let mut ports = Vec::new();
    collect_ports(o.body.get("spec").unwrap_or(&Value::Null), "/spec".into(), &mut ports);
    for (pointer, port) in ports {
        let Some((device, _)) = port.split_once('/') else {
            out.push(o.diagnostic(
                Severity::Error,
                "connection.port",
                &pointer,
                format!("port {port:?} must be <device>/<port>"),
            ));
            continue;
        };
        let found =
            index.get("Switch", &o.namespace, device).is_some() || index.get("Server", &o.namespace, device).is_some();
        if !found {
            out.push(unresolved(
                o,
                &pointer,
                format!("port {port:?}: no Switch or Server {device:?} in namespace {}", o.namespace),
            ));
        }
    }
}

fn collect_ports(value: &Value, pointer: String, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let child = format!("{pointer}/{}", escape(k));
                match (k.as_str(), v) {
                    ("port", Value::String(port)) => out.push((child, port.clone())),
                    _ => collect_ports(v, child, out),
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                collect_ports(v, format!("{pointer}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// spec.subnet is "<vpc>/<subnet>" of an existing VPC subnet; spec.connection a Connection.
fn vpc_attachment(o: &Object, index: &Index, out: &mut Vec<Diagnostic>) {
    reference(o, index, "/spec/connection", "Connection", out);
    let Some(subnet) = text(o, "/spec/subnet") else { return };
    let Some((vpc_name, subnet_name)) = subnet.split_once('/') else {
        out.push(o.diagnostic(
            Severity::Error,
            "attachment.subnet",
            "/spec/subnet",
            format!("{subnet:?} must be <vpc>/<subnet>"),
        ));
        return;
    };
    match index.get("VPC", &o.namespace, vpc_name) {
        None => out.push(unresolved(
            o,
            "/spec/subnet",
            format!("VPC {vpc_name:?} is not defined in namespace {}", o.namespace),
        )),
        Some(vpc) if vpc.body.pointer(&format!("/spec/subnets/{}", escape(subnet_name))).is_none() => {
            out.push(unresolved(o, "/spec/subnet", format!("VPC {vpc_name:?} has no subnet {subnet_name:?}")))
        }
        Some(_) => {}
    }
}

/// Each permit entry's keys are VPC names.
fn vpc_peering(o: &Object, index: &Index, out: &mut Vec<Diagnostic>) {
    let Some(permits) = o.body.pointer("/spec/permit").and_then(Value::as_array) else { return };
    for (i, permit) in permits.iter().enumerate() {
        for vpc in permit.as_object().into_iter().flat_map(|m| m.keys()) {
            if index.get("VPC", &o.namespace, vpc).is_none() {
                let pointer = format!("/spec/permit/{i}/{}", escape(vpc));
                out.push(unresolved(o, &pointer, format!("VPC {vpc:?} is not defined in namespace {}", o.namespace)));
            }
        }
    }
}

/// An IPv4 prefix as (network, length).
/// An IPv4 prefix: (address, length).
type Prefix = (u32, u8);

fn parse_cidr(text: &str) -> Option<Prefix> {
    let (addr, len) = text.split_once('/')?;
    let addr: std::net::Ipv4Addr = addr.parse().ok()?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some((u32::from(addr) & mask, len))
}

fn contains(outer: (u32, u8), inner: (u32, u8)) -> bool {
    let mask = if outer.1 == 0 { 0 } else { u32::MAX << (32 - outer.1) };
    inner.1 >= outer.1 && inner.0 & mask == outer.0
}

fn overlaps(a: (u32, u8), b: (u32, u8)) -> bool {
    contains(a, b) || contains(b, a)
}

/// VPC subnets: valid prefixes inside their IPv4Namespace, disjoint within it; VLANs inside
/// their VLANNamespace ranges and used once within it.
fn vpc_subnets_and_vlans(
    objects: &HashMap<(&str, &str, &str, &str), &Object>,
    index: &Index,
    out: &mut Vec<Diagnostic>,
) {
    let mut vpcs: Vec<&Object> = objects.values().filter(|o| o.group == VPC && o.kind == "VPC").copied().collect();
    vpcs.sort_by(|a, b| (&a.file, a.document).cmp(&(&b.file, b.document)));
    // Per namespace object: prefixes and VLANs already taken, with who took them.
    // (namespace, IPv4Namespace) -> (prefix, owner) taken so far.
    let mut taken_prefixes: HashMap<(String, String), Vec<(Prefix, String)>> = HashMap::new();
    let mut taken_vlans: HashMap<(String, String), HashMap<i64, String>> = HashMap::new();
    for vpc in vpcs {
        let ipv4_ns = text(vpc, "/spec/ipv4Namespace").unwrap_or(DEFAULT_NS_OBJECT).to_string();
        let vlan_ns = text(vpc, "/spec/vlanNamespace").unwrap_or(DEFAULT_NS_OBJECT).to_string();
        let ipv4_obj = index.get("IPv4Namespace", &vpc.namespace, &ipv4_ns);
        let vlan_obj = index.get("VLANNamespace", &vpc.namespace, &vlan_ns);
        if ipv4_obj.is_none() {
            out.push(unresolved(
                vpc,
                "/spec/ipv4Namespace",
                format!("IPv4Namespace {ipv4_ns:?} is not defined in namespace {}", vpc.namespace),
            ));
        }
        if vlan_obj.is_none() {
            out.push(unresolved(
                vpc,
                "/spec/vlanNamespace",
                format!("VLANNamespace {vlan_ns:?} is not defined in namespace {}", vpc.namespace),
            ));
        }
        let ns_prefixes: Vec<(u32, u8)> = ipv4_obj
            .and_then(|n| n.body.pointer("/spec/subnets").and_then(Value::as_array))
            .map(|s| s.iter().filter_map(Value::as_str).filter_map(parse_cidr).collect())
            .unwrap_or_default();
        let ranges: Vec<(i64, i64)> = vlan_obj
            .and_then(|n| n.body.pointer("/spec/ranges").and_then(Value::as_array))
            .map(|r| r.iter().filter_map(|r| Some((r.get("from")?.as_i64()?, r.get("to")?.as_i64()?))).collect())
            .unwrap_or_default();
        let Some(subnets) = vpc.body.pointer("/spec/subnets").and_then(Value::as_object) else { continue };
        for (name, subnet) in subnets {
            let base = format!("/spec/subnets/{}", escape(name));
            let owner = format!("{}/{name}", vpc.name);
            if let Some(cidr) = subnet.get("subnet").and_then(Value::as_str) {
                let pointer = format!("{base}/subnet");
                match parse_cidr(cidr) {
                    None => out.push(vpc.diagnostic(
                        Severity::Error,
                        "subnet.invalid",
                        &pointer,
                        format!("{cidr:?} is not an IPv4 prefix"),
                    )),
                    Some(prefix) => {
                        if ipv4_obj.is_some() && !ns_prefixes.iter().any(|ns| contains(*ns, prefix)) {
                            out.push(vpc.diagnostic(
                                Severity::Error,
                                "subnet.outside_namespace",
                                &pointer,
                                format!("{cidr} is not inside IPv4Namespace {ipv4_ns:?}"),
                            ));
                        }
                        let taken = taken_prefixes.entry((vpc.namespace.clone(), ipv4_ns.clone())).or_default();
                        if let Some((_, other)) = taken.iter().find(|(p, _)| overlaps(*p, prefix)) {
                            out.push(vpc.diagnostic(
                                Severity::Error,
                                "subnet.overlap",
                                &pointer,
                                format!("{cidr} overlaps subnet {other}"),
                            ));
                        }
                        taken.push((prefix, owner.clone()));
                    }
                }
            }
            if let Some(vlan) = subnet.get("vlan").and_then(Value::as_i64) {
                let pointer = format!("{base}/vlan");
                if vlan_obj.is_some() && !ranges.iter().any(|(from, to)| (*from..=*to).contains(&vlan)) {
                    out.push(vpc.diagnostic(
                        Severity::Error,
                        "vlan.outside_namespace",
                        &pointer,
                        format!("VLAN {vlan} is outside the ranges of VLANNamespace {vlan_ns:?}"),
                    ));
                }
                let taken = taken_vlans.entry((vpc.namespace.clone(), vlan_ns.clone())).or_default();
                if let Some(other) = taken.get(&vlan) {
                    out.push(vpc.diagnostic(
                        Severity::Error,
                        "vlan.reused",
                        &pointer,
                        format!("VLAN {vlan} is already used by subnet {other}"),
                    ));
                } else {
                    taken.insert(vlan, owner);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse_file, KindRegistry, Options, SourceFile};
    use super::*;

    const BASE: &str = "\
apiVersion: vpc.githedgehog.com/v1beta1
kind: IPv4Namespace
metadata:
  name: default
spec:
  subnets: [10.0.0.0/16]
---
apiVersion: wiring.githedgehog.com/v1beta1
kind: VLANNamespace
metadata:
  name: default
spec:
  ranges: [{from: 1000, to: 1999}]
---
apiVersion: wiring.githedgehog.com/v1beta1
kind: Switch
metadata:
  name: leaf-1
spec:
  role: server-leaf
---
apiVersion: wiring.githedgehog.com/v1beta1
kind: Server
metadata:
  name: server-1
spec: {}
---
apiVersion: wiring.githedgehog.com/v1beta1
kind: Connection
metadata:
  name: server-1--leaf-1
spec:
  unbundled:
    link:
      server: {port: server-1/enp2s1}
      switch: {port: leaf-1/E1/1}
---
apiVersion: vpc.githedgehog.com/v1beta1
kind: VPC
metadata:
  name: vpc-1
spec:
  subnets:
    default: {subnet: 10.0.1.0/24, vlan: 1001}
---
apiVersion: vpc.githedgehog.com/v1beta1
kind: VPCAttachment
metadata:
  name: vpc-1--server-1
spec:
  connection: server-1--leaf-1
  subnet: vpc-1/default
";

    fn findings(extra: &str) -> Vec<(String, String)> {
        let text = format!("{BASE}{extra}");
        let parsed = parse_file(
            &SourceFile { path: "f.yaml".into(), bytes: text.into_bytes() },
            KindRegistry::hedgehog(),
            &Options::default(),
        );
        assert!(parsed.diagnostics.is_empty(), "{:#?}", parsed.diagnostics);
        validate_fabric(&parsed.objects).into_iter().map(|d| (d.code, d.field_path)).collect()
    }

    fn vpc(name: &str, subnet: &str, vlan: u32) -> String {
        format!("---\napiVersion: vpc.githedgehog.com/v1beta1\nkind: VPC\nmetadata:\n  name: {name}\nspec:\n  subnets:\n    s: {{subnet: {subnet}, vlan: {vlan}}}\n")
    }

    #[test]
    fn a_consistent_fabric_has_no_findings() {
        assert_eq!(findings(""), Vec::<(String, String)>::new());
        assert!(findings(&vpc("vpc-2", "10.0.2.0/24", 1002)).is_empty());
    }

    #[test]
    fn duplicates_name_both_places() {
        let text = format!("{BASE}---\napiVersion: wiring.githedgehog.com/v1beta1\nkind: Switch\nmetadata:\n  name: leaf-1\nspec:\n  role: spine\n");
        let parsed = parse_file(
            &SourceFile { path: "f.yaml".into(), bytes: text.into_bytes() },
            KindRegistry::hedgehog(),
            &Options::default(),
        );
        let found = validate_fabric(&parsed.objects);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!((found[0].code.as_str(), found[0].document, found[0].line), ("object.duplicate", Some(7), 57));
        assert!(found[0].message.contains("document 2"), "{}", found[0].message);
    }

    #[test]
    fn references_must_resolve() {
        let attach = "---\napiVersion: vpc.githedgehog.com/v1beta1\nkind: VPCAttachment\nmetadata:\n  name: a2\nspec:\n  connection: nope\n  subnet: vpc-1/missing\n";
        assert_eq!(
            findings(attach),
            vec![
                ("ref.unresolved".into(), "/spec/connection".into()),
                ("ref.unresolved".into(), "/spec/subnet".into())
            ]
        );
        let conn = "---\napiVersion: wiring.githedgehog.com/v1beta1\nkind: Connection\nmetadata:\n  name: c2\nspec:\n  unbundled:\n    link:\n      server: {port: ghost/enp2s1}\n      switch: {port: leaf-1/E1/2}\n";
        assert_eq!(findings(conn), vec![("ref.unresolved".into(), "/spec/unbundled/link/server/port".into())]);
        let peering = "---\napiVersion: vpc.githedgehog.com/v1beta1\nkind: VPCPeering\nmetadata:\n  name: p\nspec:\n  permit:\n    - {vpc-1: {}, vpc-9: {}}\n";
        assert_eq!(findings(peering), vec![("ref.unresolved".into(), "/spec/permit/0/vpc-9".into())]);
    }

    #[test]
    fn subnets_and_vlans() {
        assert_eq!(
            findings(&vpc("v2", "10.1.0.0/24", 1002)),
            vec![("subnet.outside_namespace".into(), "/spec/subnets/s/subnet".into())]
        );
        assert_eq!(
            findings(&vpc("v2", "10.0.1.128/25", 1002)),
            vec![("subnet.overlap".into(), "/spec/subnets/s/subnet".into())]
        );
        assert_eq!(
            findings(&vpc("v2", "10.0.2.0/24", 2500)),
            vec![("vlan.outside_namespace".into(), "/spec/subnets/s/vlan".into())]
        );
        assert_eq!(
            findings(&vpc("v2", "10.0.2.0/24", 1001)),
            vec![("vlan.reused".into(), "/spec/subnets/s/vlan".into())]
        );
        assert_eq!(
            findings(&vpc("v2", "10.0.2.300/24", 1002)),
            vec![("subnet.invalid".into(), "/spec/subnets/s/subnet".into())]
        );
    }
}
