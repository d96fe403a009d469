"""No tables: fabricsync holds every fabric's state. These unmanaged models exist only so that
NetBox permissions (object permissions, with the custom actions sync and remediate) can say
who may view, change, sync and remediate, before any call is made."""

from django.db import models


class Repository(models.Model):
    class Meta:
        managed = False
        verbose_name = "fabricsync repository"
        verbose_name_plural = "fabricsync repositories"


class Fabric(models.Model):
    class Meta:
        managed = False
        verbose_name = "fabricsync fabric"
        # NetBox registers these as custom actions of object permissions (sync_fabric, ...).
        permissions = (
            ("sync", "Pull, apply or sync the fabric, detect drift, test its cluster"),
            ("remediate", "Remediate drift and delete orphans"),
        )
