//! A synthetic but valid Hedgehog fabric of any size, for tests and benchmarks: racks of one
//! leaf switch with four servers, their connections, one VPC per rack and its attachments.

use super::SourceFile;

/// Objects per rack: 1 switch, 4 servers, 4 connections, 1 VPC, 4 attachments.
pub const OBJECTS_PER_RACK: usize = 14;
const SERVERS_PER_RACK: usize = 4;
/// Racks per pair of files (wiring, vpcs).
const RACKS_PER_FILE: usize = 50;

/// About `resources` objects (rounded to whole racks, plus two namespaces), deterministic.
/// At most 3000 racks: one VLAN per rack VPC from the VLANNamespace's 1000..=3999.
pub fn fabric(resources: usize) -> Vec<SourceFile> {
    let racks = resources.saturating_sub(2).div_ceil(OBJECTS_PER_RACK).clamp(1, 3000);
    let mut files = vec![SourceFile {
        path: "namespaces.yaml".into(),
        bytes: "apiVersion: vpc.githedgehog.com/v1beta1\nkind: IPv4Namespace\nmetadata:\n  name: default\nspec:\n  subnets:\n    - 10.0.0.0/8\n\
---\napiVersion: wiring.githedgehog.com/v1beta1\nkind: VLANNamespace\nmetadata:\n  name: default\nspec:\n  ranges:\n    - from: 1000\n      to: 3999\n"
            .as_bytes()
            .to_vec(),
    }];
    for first in (0..racks).step_by(RACKS_PER_FILE) {
        let last = (first + RACKS_PER_FILE).min(racks);
        let mut wiring = String::new();
        let mut vpcs = String::new();
        for rack in first..last {
            rack_objects(rack, &mut wiring, &mut vpcs);
        }
        let group = first / RACKS_PER_FILE;
        files.push(SourceFile { path: format!("racks-{group:03}/wiring.yaml"), bytes: wiring.into_bytes() });
        files.push(SourceFile { path: format!("racks-{group:03}/vpcs.yaml"), bytes: vpcs.into_bytes() });
    }
    files
}

fn rack_objects(rack: usize, wiring: &mut String, vpcs: &mut String) {
    let leaf = format!("leaf-{rack:04}");
    wiring.push_str(&format!(
        "---\napiVersion: wiring.githedgehog.com/v1beta1\nkind: Switch\nmetadata:\n  name: {leaf}\n  labels:\n    rack: r{rack}\nspec:\n  role: server-leaf\n  description: leaf of rack {rack}\n  asn: {}\n",
        65000 + rack
    ));
    let vpc = format!("vpc-{rack:04}");
    let (hi, lo) = (rack / 256, rack % 256);
    vpcs.push_str(&format!(
        "---\napiVersion: vpc.githedgehog.com/v1beta1\nkind: VPC\nmetadata:\n  name: {vpc}\nspec:\n  subnets:\n    default:\n      subnet: 10.{hi}.{lo}.0/24\n      vlan: {}\n",
        1000 + rack
    ));
    for s in 1..=SERVERS_PER_RACK {
        let server = format!("server-{rack:04}-{s}");
        let connection = format!("{server}--{leaf}");
        wiring.push_str(&format!(
            "---\napiVersion: wiring.githedgehog.com/v1beta1\nkind: Server\nmetadata:\n  name: {server}\nspec:\n  description: server {s} of rack {rack}\n\
---\napiVersion: wiring.githedgehog.com/v1beta1\nkind: Connection\nmetadata:\n  name: {connection}\nspec:\n  unbundled:\n    link:\n      server:\n        port: {server}/enp2s1\n      switch:\n        port: {leaf}/E1/{s}\n"
        ));
        vpcs.push_str(&format!(
            "---\napiVersion: vpc.githedgehog.com/v1beta1\nkind: VPCAttachment\nmetadata:\n  name: {vpc}--{server}\nspec:\n  connection: {connection}\n  subnet: {vpc}/default\n"
        ));
    }
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
                assert!(parsed.diagnostics.is_empty(), "{}: {:#?}", f.path, &parsed.diagnostics[..parsed.diagnostics.len().min(3)]);
                objects.extend(parsed.objects);
            }
            let findings = validate_fabric(&objects);
            assert!(findings.is_empty(), "{:#?}", &findings[..findings.len().min(3)]);
            assert!(objects.len() >= wanted && objects.len() < wanted + OBJECTS_PER_RACK, "{} for {wanted}", objects.len());
        }
        assert_eq!(fabric(100), fabric(100));
    }
}
