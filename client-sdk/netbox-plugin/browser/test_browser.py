"""The plugin in a real browser (headless Chromium, Selenium) against `netbox runserver`, the
real fabricsync and the real kube-apiserver: log in, create a repository and a fabric, pull and
apply with the live run page, patch an object with kubectl, and find the drifted field, both
values and who changed it on the drift tab; import the inventory (of the fabric's cluster and
an extra inventory cluster), open one of its objects and Sync to NetBox. A
screenshot of each page goes to $NETBOX_SCREENSHOTS (default target/netbox-screenshots).

Run by client-sdk/netbox-plugin/test.sh (inside tests/sdk-fixture.sh and dev/netbox.sh)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import unittest
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as when
from selenium.webdriver.support.ui import WebDriverWait

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from netbox_fabricsync.tests import support  # noqa: E402
from fabricsync.v1 import drift_pb2, fabric_pb2, inventory_pb2  # noqa: E402

NAMESPACE = "browser"
PASSWORD = "browser-test-password"
SHOTS = os.environ.get("NETBOX_SCREENSHOTS") or os.path.abspath(os.path.join(os.path.dirname(__file__), "../../../target/netbox-screenshots"))


class BrowserTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(SHOTS, exist_ok=True)
        env = os.environ | {"DJANGO_SUPERUSER_PASSWORD": PASSWORD}
        subprocess.run(["netbox", "createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.com"], env=env, check=True, capture_output=True)
        port = support.closed_address().rsplit(":", 1)[1]
        cls.base = f"http://127.0.0.1:{port}"
        cls.log = open(os.path.join(SHOTS, "runserver.log"), "w")
        cls.server = subprocess.Popen(["netbox", "runserver", f"127.0.0.1:{port}", "--noreload", "--insecure"], stdout=cls.log, stderr=subprocess.STDOUT)
        support.poll("runserver up", cls._up, bool, timeout=120)
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1100"):
            options.add_argument(arg)
        cls.browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        cls.browser.implicitly_wait(0)

    @classmethod
    def tearDownClass(cls):
        cls.browser.quit()
        cls.server.terminate()
        cls.server.wait(30)
        cls.log.close()

    @classmethod
    def _up(cls):
        try:
            return urllib.request.urlopen(cls.base + "/login/", timeout=5).status == 200
        except OSError:
            return False

    def open(self, path):
        self.browser.get(self.base + path)

    def shot(self, name):
        self.browser.save_screenshot(os.path.join(SHOTS, f"{name}.png"))

    def wait_for(self, css, timeout=30):
        return WebDriverWait(self.browser, timeout).until(when.presence_of_element_located((By.CSS_SELECTOR, css)))

    def fill(self, name, value):
        """Sets a form field (NetBox's Tom Select hides selects: set through the DOM)."""
        field = self.browser.find_element(By.NAME, name)
        self.browser.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('change'))", field, value)

    def submit(self):
        self.browser.find_element(By.CSS_SELECTOR, "form.form-object-edit button[type=submit]").click()

    def press_and_follow_run(self, button, name):
        """Presses Pull or Apply on the fabric page and follows the run page to its end; returns
        whether the live view showed the finished event (a very quick run is over before the
        page loads, and the page then shows the outcome straight away)."""
        self.browser.find_element(By.ID, button).click()
        self.wait_for("#live, #outcome")
        saw_finished = False
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            outcome = self.browser.find_elements(By.ID, "run-outcome")
            if outcome:
                break
            stage = self.browser.find_elements(By.ID, "progress-stage")
            try:
                if stage and stage[0].text == "finished":
                    saw_finished = True
                    self.shot(f"{name}-live")
            except StaleElementReferenceException:
                continue  # the page reloaded (the run ended) between finding the element and reading it
            time.sleep(0.05)
        self.assertEqual(self.wait_for("#run-outcome").text, "succeeded")
        self.shot(f"{name}-done")
        return saw_finished

    def test_repository_fabric_pull_apply_and_drift(self):
        b = self.browser
        self.open("/login/")
        self.shot("01-login")
        b.find_element(By.NAME, "username").send_keys("admin")
        b.find_element(By.NAME, "password").send_keys(PASSWORD)
        b.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        self.wait_for("aside.navbar")
        self.assertIn("Fabricsync", b.page_source)

        # A repository, and its connection test.
        self.open("/plugins/fabricsync/repositories/add/")
        self.shot("02-repository-add")
        name = support.unique("browser")
        for field, value in {"name": name, "url": support.GIT_URL}.items():
            self.fill(field, value)
        self.submit()
        self.wait_for("#test-connection").click()
        self.assertIn("Reachable", self.wait_for("#test-result").text)
        self.shot("03-repository-tested")

        # A fabric of the demo in its own namespace, with the cluster connection.
        support.kubectl("create", "namespace", NAMESPACE)
        path = support.demo_in_namespace(NAMESPACE)
        self.open("/plugins/fabricsync/fabrics/add/")
        options = {o.get_attribute("textContent"): o.get_attribute("value") for o in b.find_elements(By.CSS_SELECTOR, "select[name=repository_id] option")}
        with open(support.ENV["FABRICSYNC_KUBE_CA_FILE"]) as f:
            ca = f.read()
        fields = {
            "name": name, "repository_id": options[name], "git_ref": "main", "gitops_path": path,
            "server_url": support.ENV["FABRICSYNC_KUBE_URL"], "ca_certificate_pem": ca,
            "bearer_token": support.ENV["FABRICSYNC_KUBE_TOKEN"], "namespace": NAMESPACE,
        }
        for field, value in fields.items():
            self.fill(field, value)
        self.shot("04-fabric-add")
        self.submit()
        self.wait_for("#pull")
        self.shot("05-fabric")
        fabric_url = b.current_url

        live_pull = self.press_and_follow_run("pull", "06-pull")
        b.get(fabric_url)
        live_apply = self.press_and_follow_run("apply", "07-apply")
        print(f"live view reached 'finished': pull {live_pull}, apply {live_apply}", file=sys.stderr)

        # A change made in the cluster by hand: the drift tab names the field, both values and who.
        fabric_id = fabric_url.rstrip("/").split("/")[-1]
        get = lambda: support.sdk().fabrics.GetFabric(fabric_pb2.GetFabricRequest(id=fabric_id)).fabric  # noqa: E731
        support.poll("watch active", get, lambda f: f.watch_status == fabric_pb2.WATCH_STATUS_ACTIVE)
        support.patch_vlan(NAMESPACE, 1198)
        summary = lambda: support.sdk().drift.GetFabricDrift(drift_pb2.GetFabricDriftRequest(fabric_id=fabric_id)).summary  # noqa: E731
        support.poll("drifted", summary, lambda s: s.drift_count == 1)
        b.get(fabric_url)
        self.wait_for("#tab-drift").click()
        drifted = self.wait_for("#drifted")
        self.assertIn(support.PATCHED, drifted.text)
        self.assertIn("kubectl-patch", drifted.text)
        self.shot("08-drift")
        b.find_element(By.LINK_TEXT, support.PATCHED).click()
        fields = self.wait_for("#drift-fields").text
        for text in ("/spec/subnets/subnet-1/vlan", "1131", "1198", "kubectl-patch"):
            self.assertIn(text, fields)
        self.assertIn("vlan", self.wait_for("#unified-diff").text)
        self.shot("09-resource-drift")

        b.get(fabric_url + "resources/")
        self.wait_for("table.object-list")
        self.shot("10-resources")
        self.open("/plugins/fabricsync/fabrics/")
        self.assertIn(name, self.wait_for("table.object-list").text)
        self.shot("11-fabric-list")

        # The inventory tab after an import of the fabric's cluster and of an extra inventory
        # cluster "edge" (the same kube-apiserver, registered through the API), one of edge's
        # objects, and the Sync to NetBox dry run.
        request = inventory_pb2.PutInventoryClusterRequest(fabric_id=fabric_id, name="edge", connection=support.cluster_input(namespace=""))
        support.sdk().inventory.PutInventoryCluster(request)
        b.get(fabric_url + "inventory/")
        self.press_and_follow_run("import-inventory", "12-inventory-import")
        b.get(fabric_url + "inventory/?cluster=edge")
        table = self.wait_for("#inventory")
        self.assertIn("edge", self.wait_for("#inventory-clusters").text)
        self.shot("13-inventory")
        table.find_element(By.CSS_SELECTOR, "tbody td a").click()
        self.assertEqual(self.wait_for("#object-cluster").text, "edge")
        self.shot("14-inventory-object")
        b.get(fabric_url + "inventory/")
        self.wait_for("#netbox-sync").click()
        self.wait_for("#sync-items")
        self.shot("15-netbox-sync")


if __name__ == "__main__":
    unittest.main()
