"""A stopped service, a TLS failure or a wrong setting: a NetBox page with a banner naming the
cause and the address, never a 500."""

from django.test import TestCase, override_settings
from django.urls import reverse
from fabricsync.v1 import access_pb2

from netbox_fabricsync.tests import support


def url(name, **kwargs):
    return reverse(f"plugins:netbox_fabricsync:{name}", kwargs=kwargs)


def plugin(**values):
    return override_settings(PLUGINS_CONFIG={"netbox_fabricsync": values})


class ErrorTests(TestCase):
    def setUp(self):
        self.client.force_login(support.superuser())

    def test_stopped_service_shows_the_banner_with_the_address(self):
        address = support.closed_address()
        with plugin(address=address, timeout=5):
            for page in (url("fabric_list"), url("repository_list"), url("run_list"), url("fabric", pk="0"), url("fabric_drift", pk="0")):
                response = self.client.get(page)
                self.assertEqual(response.status_code, 503, page)
                self.assertContains(response, "fabricsync unreachable", status_code=503)
                self.assertContains(response, f"fabricsync at {address} is unreachable", status_code=503)
                self.assertContains(response, "navbar", status_code=503)  # a NetBox page
            # A form keeps its input and shows the banner.
            response = self.client.post(url("repository_add"), {"name": "kept", "url": "https://git.example/x", "provider": "PROVIDER_GENERIC", "auth_type": "none"})
            self.assertContains(response, 'id="fabricsync-error"', status_code=400)
            self.assertContains(response, 'value="kept"', status_code=400)

    def test_tls_to_a_plaintext_server(self):
        with plugin(address=support.ADDR, tls=True, timeout=5):
            response = self.client.get(url("fabric_list"))
        self.assertContains(response, "TLS failure", status_code=503)
        self.assertContains(response, f"The TLS connection to fabricsync at {support.ADDR} failed", status_code=503)

    def test_wrong_setting_named_on_the_page(self):
        with plugin(address="fabricsync"):
            response = self.client.get(url("fabric_list"))
        self.assertContains(response, "fabricsync plugin not configured", status_code=503)
        self.assertContains(response, "PLUGINS_CONFIG[&#x27;netbox_fabricsync&#x27;][&#x27;address&#x27;] must be host:port", status_code=503)

    def test_unknown_object_is_a_404_page(self):
        response = self.client.get(url("run", pk="00000000-0000-0000-0000-000000000000"))
        self.assertContains(response, "fabricsync has no such object", status_code=404)

    def test_refused_token_shows_the_banner_without_the_token(self):
        bogus = "fsk_abcdefghijkl_" + "x" * 43
        with plugin(address=support.ADDR, token=bogus, timeout=5):
            response = self.client.get(url("fabric_list"))
        self.assertContains(response, "Token refused", status_code=503)
        self.assertContains(response, f"fabricsync at {support.ADDR} refused the plugin&#x27;s token", status_code=503)
        self.assertNotContains(response, bogus, status_code=503)


class ActorTests(TestCase):
    def test_the_netbox_user_is_the_actor_in_the_audit_log(self):
        self.client.force_login(support.superuser("alice-netbox"))
        name = support.unique("audited")
        repository = {"name": name, "url": support.GIT_URL, "provider": "PROVIDER_GENERIC", "auth_type": "none", "description": "", "username": "", "secret": "", "known_hosts": ""}
        response = self.client.post(url("repository_add"), repository)
        self.assertEqual(response.status_code, 302, response.content[:2000])
        request = access_pb2.ListAuditEventsRequest(filter="actor=alice-netbox", page_size=100)
        events = support.poll(
            "the audit event of the create",
            lambda: list(support.sdk().access.ListAuditEvents(request).events),
            lambda events: any(e.rpc.endswith("CreateRepository") and e.targets.get("name") == name for e in events),
            timeout=10,
        )
        created = next(e for e in events if e.rpc.endswith("CreateRepository") and e.targets.get("name") == name)
        self.assertEqual((created.principal, created.actor, created.code), ("admin", "alice-netbox", "OK"))
