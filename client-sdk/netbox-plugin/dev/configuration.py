"""NetBox configuration of the plugin's tests and of the local try-it instance (dev/netbox.sh):
everything on loopback, from the environment that script exports."""

import os

ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
DATABASES = {
    "default": {
        "NAME": "netbox",
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": "127.0.0.1",
        "PORT": os.environ["NETBOX_PG_PORT"],
        "CONN_MAX_AGE": 300,
        # The test database is a copy of the migrated one (dev/netbox.sh), not migrated anew.
        "TEST": {"TEMPLATE": "netbox"},
    }
}
_redis = {"HOST": "127.0.0.1", "PORT": int(os.environ["NETBOX_REDIS_PORT"]), "USERNAME": "", "PASSWORD": "", "SSL": False}
REDIS = {"tasks": {**_redis, "DATABASE": 0}, "caching": {**_redis, "DATABASE": 1}}
SECRET_KEY = os.environ["NETBOX_SECRET_KEY"]
API_TOKEN_PEPPERS = {1: os.environ["NETBOX_SECRET_KEY"] * 2}
DEBUG = os.environ.get("NETBOX_DEBUG") == "1"
DEVELOPER = DEBUG

PLUGINS = ["netbox_fabricsync"]
PLUGINS_CONFIG = {
    "netbox_fabricsync": {
        "address": os.environ.get("FABRICSYNC_ADDR"),
        **({"token": os.environ["FABRICSYNC_TOKEN"]} if os.environ.get("FABRICSYNC_TOKEN") else {}),
        "timeout": 10,
    }
}
