"""Settings: each wrong or missing value is named, in a message and never with the token."""

import tempfile

from django.contrib.auth.models import AnonymousUser
from django.test import SimpleTestCase, override_settings

from netbox_fabricsync import check_settings
from netbox_fabricsync.service import actor
from netbox_fabricsync.settings import ConfigError, load


def config(**values):
    return override_settings(PLUGINS_CONFIG={"netbox_fabricsync": values})


class SettingsTests(SimpleTestCase):
    def assert_refused(self, values, *expected):
        with config(**values):
            with self.assertRaises(ConfigError) as caught:
                load()
            for text in expected:
                self.assertIn(text, str(caught.exception))
            self.assertEqual([w.id for w in check_settings()], ["netbox_fabricsync.W001"])
        return str(caught.exception)

    def test_missing_and_malformed_address(self):
        self.assert_refused({}, "PLUGINS_CONFIG['netbox_fabricsync']['address'] is not set", "host:port")
        self.assert_refused({"address": "http://fabricsync"}, "['address'] must be host:port", "http://fabricsync")

    def test_files_that_cannot_be_read(self):
        self.assert_refused({"address": "127.0.0.1:1", "ca_file": "/nonexistent/ca.pem"}, "['ca_file']", "/nonexistent/ca.pem")
        self.assert_refused({"address": "127.0.0.1:1", "token_file": "/nonexistent/token"}, "['token_file']", "/nonexistent/token")

    def test_token_and_token_file_conflict_without_showing_the_token(self):
        with tempfile.NamedTemporaryFile("w") as f:
            message = self.assert_refused({"address": "127.0.0.1:1", "token": "s3cret-token", "token_file": f.name}, "both set")
        self.assertNotIn("s3cret-token", message)

    def test_bad_timeout_and_unknown_setting(self):
        self.assert_refused({"address": "127.0.0.1:1", "timeout": 0}, "['timeout'] must be a positive number")
        self.assert_refused({"address": "127.0.0.1:1", "adress": "x"}, "['adress'] is not a setting")

    def test_token_file_is_read_and_never_in_repr(self):
        with tempfile.NamedTemporaryFile("w") as f:
            f.write("file-token\n")
            f.flush()
            with config(address="[::1]:50051", token_file=f.name, ca_file=f.name):
                settings = load()
        self.assertEqual((settings.address, settings.token, settings.tls), ("[::1]:50051", "file-token", True))
        self.assertNotIn("file-token", repr(settings))
        with config(address="localhost:50051"):
            self.assertEqual(check_settings(), [])
            self.assertEqual((load().token, load().tls, load().timeout), (None, False, 10.0))

    def test_actor_is_metadata_safe(self):
        class User(AnonymousUser):
            def __init__(self, name):
                self.name = name

            def get_username(self):
                return self.name

        self.assertEqual(actor(User("jane.doe@example.com")), "jane.doe@example.com")
        self.assertEqual(actor(User("zoë\nx")), "zo%C3%AB%0Ax")
