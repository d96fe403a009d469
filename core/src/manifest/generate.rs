//! A synthetic but valid Hedgehog fabric of any size, shaped like real spine-leaf fabrics, for
//! tests and benchmarks. Two spines and a border leaf with an External; then pods of two
//! redundant leaves (ESLAG and MCLAG alternating) with dual- and single-homed servers, two VPCs
//! with two subnets each, their attachments, a peering and an external peering. Each pod is a
//! directory of files, as teams split a large fabric in Git.

use super::SourceFile;

const API_WIRING: &str = "wiring.githedgehog.com/v1beta1";
const API_VPC: &str = "vpc.githedgehog.com/v1beta1";
/// Objects outside pods: namespaces, spines, border leaf, External and its wiring.
pub const SHARED_OBJECTS: usize = 10;
const DUAL_HOMED: usize = 4;
const SINGLE_HOMED: usize = 4;
/// VLANs come from 1000..=3999: four per pod.
const MAX_PODS: usize = 750;

/// Objects in pod `p`: ESLAG pods (even) have no MCLAG domain connection.
pub fn objects_in_pod(p: usize) -> usize {
    35 + p % 2
}

/// At least `resources` objects (whole pods), deterministic, under `fabric/`.
pub fn fabric(resources: usize) -> Vec<SourceFile> {
    let mut pods = 1;
    while SHARED_OBJECTS + (0..pods).map(objects_in_pod).sum::<usize>() < resources && pods < MAX_PODS {
        pods += 1;
    }
    let mut files = vec![file("fabric/namespaces.yaml", &namespaces()), file("fabric/core.yaml", &core())];
    for p in 0..pods {
        let [switches, servers, connections, vpcs] = pod(p);
        let dir = format!("fabric/pods/pod-{p:04}");
        files.push(file(&format!("{dir}/switches.yaml"), &switches));
        files.push(file(&format!("{dir}/servers.yaml"), &servers));
        files.push(file(&format!("{dir}/connections.yaml"), &connections));
        files.push(file(&format!("{dir}/vpcs.yaml"), &vpcs));
    }
    files
}

fn file(path: &str, text: &str) -> SourceFile {
    SourceFile { path: path.into(), bytes: text.as_bytes().to_vec() }
}

fn object(api: &str, kind: &str, name: &str, meta_extra: &str, spec: &str) -> String {
    format!("---\napiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {name}\n{meta_extra}spec:\n{spec}")
}

fn namespaces() -> String {
    object(API_VPC, "IPv4Namespace", "default", "", "  subnets:\n    - 10.0.0.0/8\n")
        + &object(API_WIRING, "VLANNamespace", "default", "", "  ranges:\n    - from: 1000\n      to: 3999\n")
}

fn core() -> String {
    let mut out = String::new();
    for s in 1..=2 {
        out += &object(
            API_WIRING,
            "Switch",
            &format!("spine-{s:02}"),
            "",
            &format!("  role: spine\n  asn: 65100\n  description: spine {s}\n"),
        );
    }
    out += &object(API_WIRING, "Switch", "border-01", "", "  role: border-leaf\n  asn: 65200\n");
    out += &object(
        API_WIRING,
        "Connection",
        "border-01--external",
        "",
        "  external:\n    link:\n      switch:\n        port: border-01/E1/1\n",
    );
    for s in 1..=2 {
        out += &object(
            API_WIRING,
            "Connection",
            &format!("spine-{s:02}--fabric--border-01"),
            "",
            &format!("  fabric:\n    links:\n      - spine:\n          port: spine-{s:02}/E1/64\n        leaf:\n          port: border-01/E1/{}\n", 48 + s),
        );
    }
    out += &object(
        API_VPC,
        "External",
        "internet",
        "",
        "  ipv4Namespace: default\n  inboundCommunity: 65102:5000\n  outboundCommunity: 5000:65102\n",
    );
    out += &object(
        API_VPC,
        "ExternalAttachment",
        "border-01--internet",
        "",
        "  external: internet\n  connection: border-01--external\n  switch:\n    vlan: 100\n    ip: 100.1.0.2/24\n  neighbor:\n    asn: 64102\n    ip: 100.1.0.6\n",
    );
    out
}

/// Pod `p`: [switches, servers, connections, vpcs] as YAML.
fn pod(p: usize) -> [String; 4] {
    let eslag = p.is_multiple_of(2);
    let group = format!("pod-{p:04}");
    let leaves = [format!("leaf-{p:04}-a"), format!("leaf-{p:04}-b")];
    let redundancy = if eslag { "eslag" } else { "mclag" };

    // 2 switches + 1 switch group.
    let mut switches = object(API_WIRING, "SwitchGroup", &group, "", "  {}\n").replace("spec:\n  {}\n", "spec: {}\n");
    for (i, leaf) in leaves.iter().enumerate() {
        switches += &object(
            API_WIRING,
            "Switch",
            leaf,
            &format!("  labels:\n    pod: \"{p}\"\n"),
            &format!(
                "  role: server-leaf\n  asn: {}\n  groups:\n    - {group}\n  redundancy:\n    group: {group}\n    type: {redundancy}\n  description: leaf {i} of pod {p}\n",
                65000 + p
            ),
        );
    }

    // 8 servers.
    let servers_names: Vec<String> = (1..=DUAL_HOMED + SINGLE_HOMED).map(|s| format!("server-{p:04}-{s:02}")).collect();
    let servers: String = servers_names
        .iter()
        .map(|s| object(API_WIRING, "Server", s, "", &format!("  description: {s} in pod {p}\n")))
        .collect();

    // 4 fabric links, the MCLAG domain (MCLAG pods), 4 dual-homed and 4 single-homed servers.
    let mut connections = String::new();
    for (l, leaf) in leaves.iter().enumerate() {
        for s in 1..=2 {
            let spine_port = p * 2 + l + 1;
            connections += &object(
                API_WIRING,
                "Connection",
                &format!("spine-{s:02}--fabric--{leaf}"),
                "",
                &format!("  fabric:\n    links:\n      - spine:\n          port: spine-{s:02}/E1/{spine_port}\n        leaf:\n          port: {leaf}/E1/{}\n", 48 + s),
            );
        }
    }
    if !eslag {
        connections += &object(
            API_WIRING,
            "Connection",
            &format!("{group}--mclag-domain"),
            "",
            &format!(
                "  mclagDomain:\n    peerLinks:\n      - switch1:\n          port: {a}/E1/45\n        switch2:\n          port: {b}/E1/45\n    sessionLinks:\n      - switch1:\n          port: {a}/E1/46\n        switch2:\n          port: {b}/E1/46\n",
                a = leaves[0],
                b = leaves[1]
            ),
        );
    }
    let mut server_connections = Vec::new();
    for (i, server) in servers_names.iter().enumerate() {
        let port = i + 1;
        let (name, spec) = if i < DUAL_HOMED {
            (
                format!("{server}--{redundancy}--{group}"),
                format!(
                    "  {redundancy}:\n    links:\n      - server:\n          port: {server}/enp2s1\n        switch:\n          port: {a}/E1/{port}\n      - server:\n          port: {server}/enp2s2\n        switch:\n          port: {b}/E1/{port}\n",
                    a = leaves[0],
                    b = leaves[1]
                ),
            )
        } else {
            let leaf = &leaves[i % 2];
            (
                format!("{server}--unbundled--{leaf}"),
                format!("  unbundled:\n    link:\n      server:\n        port: {server}/enp2s1\n      switch:\n        port: {leaf}/E1/{port}\n"),
            )
        };
        connections += &object(API_WIRING, "Connection", &name, "", &spec);
        server_connections.push(name);
    }

    // 2 VPCs of 2 subnets, 8 attachments, 1 peering, 1 external peering.
    let mut vpcs = String::new();
    let vpc_names = [format!("vpc-{p:04}-a"), format!("vpc-{p:04}-b")];
    for (v, vpc) in vpc_names.iter().enumerate() {
        let mut subnets = String::new();
        for s in 0..2 {
            let k = p * 4 + v * 2 + s;
            let (hi, lo) = (1 + k / 256, k % 256);
            subnets += &format!(
                "    subnet-{s}:\n      subnet: 10.{hi}.{lo}.0/24\n      gateway: 10.{hi}.{lo}.1\n      vlan: {}\n      dhcp:\n        enable: true\n        range:\n          start: 10.{hi}.{lo}.10\n          end: 10.{hi}.{lo}.99\n",
                1000 + k
            );
        }
        vpcs += &object(API_VPC, "VPC", vpc, "", &format!("  subnets:\n{subnets}"));
    }
    for (i, connection) in server_connections.iter().enumerate() {
        let vpc = &vpc_names[i % 2];
        vpcs += &object(
            API_VPC,
            "VPCAttachment",
            &format!("{vpc}--{}", servers_names[i]),
            "",
            &format!("  connection: {connection}\n  subnet: {vpc}/subnet-{}\n", (i / 2) % 2),
        );
    }
    vpcs += &object(
        API_VPC,
        "VPCPeering",
        &format!("{}--{}", vpc_names[0], vpc_names[1]),
        "",
        &format!(
            "  permit:\n    - {}:\n        subnets: [subnet-0]\n      {}:\n        subnets: [subnet-0]\n",
            vpc_names[0], vpc_names[1]
        ),
    );
    vpcs += &object(
        API_VPC,
        "ExternalPeering",
        &format!("{}--internet", vpc_names[0]),
        "",
        &format!("  permit:\n    vpc:\n      name: {}\n      subnets: [subnet-1]\n    external:\n      name: internet\n      prefixes:\n        - prefix: 0.0.0.0/0\n", vpc_names[0]),
    );
    [switches, servers, connections, vpcs]
}

#[cfg(test)]
mod tests {
    use super::super::{parse_file, validate_fabric, KindRegistry, Options};
    use super::*;

    #[test]
    fn generated_fabrics_are_valid_and_sized() {
        for wanted in [20, 10_000] {
            let files = fabric(wanted);
            let mut objects = Vec::new();
            for f in &files {
                let parsed = parse_file(f, KindRegistry::hedgehog(), &Options::default());
                assert!(
                    parsed.diagnostics.is_empty(),
                    "{}: {:#?}",
                    f.path,
                    &parsed.diagnostics[..parsed.diagnostics.len().min(3)]
                );
                objects.extend(parsed.objects);
            }
            let findings = validate_fabric(&objects);
            assert!(findings.is_empty(), "{:#?}", &findings[..findings.len().min(3)]);
            assert!(objects.len() >= wanted && objects.len() <= wanted + 36, "{} for {wanted}", objects.len());
            let kinds: std::collections::BTreeSet<&str> = objects.iter().map(|o| o.kind.as_str()).collect();
            assert_eq!(kinds.len(), 12, "{kinds:?}");
        }
        assert_eq!(fabric(100), fabric(100));
    }
}
