"""A stopped service, a TLS failure or a wrong setting: a NetBox page with a banner naming the
cause and the address, never a 500."""

from django.test import TestCase, override_settings
from django.urls import reverse

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
