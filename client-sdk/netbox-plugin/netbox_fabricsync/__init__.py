"""fabricsync inside NetBox: a thin client of the fabricsync gRPC API (fabricsync-client),
holding no fabric state of its own."""

from django.core import checks
from netbox.plugins import PluginConfig

from .settings import DEFAULTS, ConfigError, load

__version__ = "0.1.0"

class FabricsyncConfig(PluginConfig):
    name = "netbox_fabricsync"
    verbose_name = "Fabricsync"
    description = "Hedgehog fabrics kept in sync with Git by fabricsync: sync, live progress, resources, drift, inventory"
    version = __version__
    base_url = "fabricsync"
    min_version = "4.7.0"
    default_settings = {k: v for k, v in DEFAULTS.items() if v is not None}

    def ready(self):
        super().ready()
        checks.register(check_settings)

def check_settings(app_configs=None, **kwargs):
    """A wrong setting is named at start (a warning: NetBox still starts, and each page of the
    plugin shows the same message)."""
    try:
        load()
    except ConfigError as e:
        return [checks.Warning(str(e), id="netbox_fabricsync.W001")]
    return []

config = FabricsyncConfig
