"""The pure parts: forge links, values, diff colours, progress lines, resource keys in URLs."""

from django.test import SimpleTestCase
from fabricsync.v1 import common_pb2, repository_pb2, sync_pb2
from google.protobuf import struct_pb2

from netbox_fabricsync import present, progress
from netbox_fabricsync.views.drift import diff_lines


class PresentTests(SimpleTestCase):
    def test_source_link_only_for_known_web_forges(self):
        github = repository_pb2.Repository(url="https://github.com/acme/fabric.git", provider=repository_pb2.PROVIDER_GITHUB)
        self.assertEqual(present.source_link(github, "abc123", "fabric/vpcs.yaml", 7), "https://github.com/acme/fabric/blob/abc123/fabric/vpcs.yaml#L7")
        gitlab = repository_pb2.Repository(url="https://gitlab.example/net/fabric", provider=repository_pb2.PROVIDER_GITLAB)
        self.assertEqual(present.source_link(gitlab, "abc123", "a.yaml", 0), "https://gitlab.example/net/fabric/-/blob/abc123/a.yaml#L1")
        for repository in (
            repository_pb2.Repository(url="https://git.example/fabric", provider=repository_pb2.PROVIDER_GENERIC),
            repository_pb2.Repository(url="git@github.com:acme/fabric.git", provider=repository_pb2.PROVIDER_GITHUB),
            None,
        ):
            self.assertEqual(present.source_link(repository, "abc123", "a.yaml", 3), "")
        self.assertEqual(present.source_link(github, "", "a.yaml", 3), "")

    def test_values_and_labels(self):
        self.assertEqual(present.value_text(struct_pb2.Value(number_value=1131)), "1131")
        self.assertEqual(present.value_text(struct_pb2.Value(number_value=0.5)), "0.5")
        self.assertEqual(present.value_text(struct_pb2.Value(string_value="x")), "x")
        self.assertEqual(present.value_text(struct_pb2.Value()), "—")
        self.assertEqual(present.label(sync_pb2.SyncRunStatus, sync_pb2.SYNC_RUN_STATUS_SUCCEEDED), "succeeded")
        self.assertEqual(present.badge(sync_pb2.SyncRunStatus, sync_pb2.SYNC_RUN_STATUS_FAILED), {"text": "failed", "colour": "red"})

    def test_resource_key_round_trips_through_a_url(self):
        for key in (
            common_pb2.ResourceKey(group="vpc.githedgehog.com", version="v1beta1", kind="VPC", namespace="default", name="vpc-1"),
            common_pb2.ResourceKey(kind="Namespace", name="fab"),
        ):
            self.assertEqual(present.parse_key(present.key_query(key)), key)

    def test_diff_colours(self):
        lines = diff_lines("--- a\n+++ b\n@@ -1 +1 @@\n-vlan: 1\n+vlan: 2\n same")
        self.assertEqual([line["css"] for line in lines], ["fw-bold", "fw-bold", "text-blue", "bg-red-lt", "bg-green-lt", ""])

    def test_progress_lines_and_events(self):
        event = sync_pb2.SyncProgressEvent(sequence=7, applying=sync_pb2.ApplyingProgress(wave=2, done=3, total=9, key=common_pb2.ResourceKey(kind="VPC", namespace="default", name="v")))
        view = progress.view(event)
        self.assertEqual((view["stage"], view["done"], view["total"], view["wave"], view["terminal"]), ("applying", 3, 9, 2, False))
        self.assertEqual(view["text"], "applying wave 2: 3 of 9 (VPC default/v)")
        self.assertTrue(progress.view(sync_pb2.SyncProgressEvent(finished=sync_pb2.FinishedProgress(commit="0123456789abcdef")))["terminal"])
        rollout = progress.view(sync_pb2.SyncProgressEvent(rollout=sync_pb2.RolloutProgress(up_to_date=4, total=6, waiting_for=["leaf-2", "leaf-5"])))
        self.assertEqual((rollout["stage"], rollout["done"], rollout["total"], rollout["terminal"]), ("rollout", 4, 6, False))
        self.assertEqual(rollout["text"], "rolled out on 4 of 6 switches; waiting for leaf-2, leaf-5")
        pods = progress.view(sync_pb2.SyncProgressEvent(inventory=sync_pb2.InventoryProgress(kind="Pod", listed=4, kept=3, served=True)))
        self.assertEqual((pods["stage"], pods["text"], pods["terminal"]), ("inventory", "Pod: 3 of 4 kept", False))
        absent = progress.view(sync_pb2.SyncProgressEvent(inventory=sync_pb2.InventoryProgress(kind="VirtualMachine")))
        self.assertEqual(absent["text"], "VirtualMachine: not served by the cluster")
        edge = progress.view(sync_pb2.SyncProgressEvent(inventory=sync_pb2.InventoryProgress(kind="Pod", listed=4, kept=3, served=True, cluster="edge")))
        self.assertEqual(edge["text"], "Pod (edge): 3 of 4 kept")
        self.assertEqual(progress.sse("progress", {"a": 1}, 7), 'id: 7\nevent: progress\ndata: {"a": 1}\n\n')
