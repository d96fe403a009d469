//! Apply order: objects go to the cluster in waves so that what others refer to exists first.
//! Pure: from kinds and annotations to ordered groups.

use std::collections::BTreeMap;

use serde_json::Value;

/// The annotation that puts an object in an earlier or later apply wave (an integer, default 0).
pub const SYNC_WAVE_ANNOTATION: &str = "fabricsync.dev/sync-wave";

/// The default wave of a kind: namespaces, profiles and gateway groups, then switches, servers
/// and gateways, then connections, then VPCs, externals and the gateways' VPC infos, then what
/// attaches or peers them. Unknown kinds last.
pub fn default_wave(kind: &str) -> i64 {
    match kind {
        "Namespace" | "IPv4Namespace" | "VLANNamespace" | "SwitchProfile" | "ServerProfile" | "GatewayGroup" => 0,
        "Switch" | "SwitchGroup" | "Server" | "Gateway" => 1,
        "Connection" => 2,
        "VPC" | "External" | "VPCInfo" => 3,
        "VPCAttachment" | "VPCPeering" | "ExternalAttachment" | "ExternalPeering" | "GatewayPeering" => 4,
        _ => 5,
    }
}

/// The wave of one object: its sync-wave annotation when it has one, else its kind's.
pub fn wave_of(kind: &str, body: &Value) -> Result<i64, String> {
    match body.pointer(&format!("/metadata/annotations/{}", SYNC_WAVE_ANNOTATION.replace('/', "~1"))) {
        None => Ok(default_wave(kind)),
        Some(Value::String(s)) => {
            s.trim().parse().map_err(|_| format!("annotation {SYNC_WAVE_ANNOTATION} must be an integer, not {s:?}"))
        }
        Some(other) => {
            Err(format!("annotation {SYNC_WAVE_ANNOTATION} must be a string holding an integer, not {other}"))
        }
    }
}

/// Indexes of items grouped by wave, lowest wave first, and the items that have no valid wave.
#[derive(Debug, Default, PartialEq)]
pub struct WavePlan {
    pub waves: Vec<(i64, Vec<usize>)>,
    pub invalid: Vec<(usize, String)>,
}

/// Groups `items` by wave; items whose annotation is invalid are set apart with the reason.
pub fn waves<T>(items: &[T], wave: impl Fn(&T) -> Result<i64, String>) -> WavePlan {
    let mut by_wave: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    let mut invalid = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match wave(item) {
            Ok(w) => by_wave.entry(w).or_default().push(i),
            Err(reason) => invalid.push((i, reason)),
        }
    }
    WavePlan { waves: by_wave.into_iter().collect(), invalid }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn kinds_follow_their_dependencies() {
        let order = ["VLANNamespace", "Switch", "Connection", "VPC", "VPCAttachment"];
        let waves: Vec<i64> = order.iter().map(|k| default_wave(k)).collect();
        assert!(waves.windows(2).all(|w| w[0] < w[1]), "{waves:?}");
        assert_eq!(default_wave("IPv4Namespace"), default_wave("VLANNamespace"));
        assert_eq!(default_wave("ExternalPeering"), default_wave("VPCPeering"));
    }

    #[test]
    fn annotation_moves_an_object_and_bad_values_are_named() {
        let plain = json!({"metadata": {"name": "a"}});
        let early = json!({"metadata": {"annotations": {"fabricsync.dev/sync-wave": "-1"}}});
        let bad = json!({"metadata": {"annotations": {"fabricsync.dev/sync-wave": "soon"}}});
        assert_eq!(wave_of("VPC", &plain), Ok(3));
        assert_eq!(wave_of("VPC", &early), Ok(-1));
        assert!(wave_of("VPC", &bad).unwrap_err().contains("\"soon\""));

        let items = [("VPC", plain), ("Switch", json!({})), ("VPC", early), ("VPC", bad)];
        let plan = waves(&items, |(kind, body)| wave_of(kind, body));
        assert_eq!(plan.waves, vec![(-1, vec![2]), (1, vec![1]), (3, vec![0])]);
        assert_eq!(plan.invalid.len(), 1);
        assert_eq!(plan.invalid[0].0, 3);
    }
}
