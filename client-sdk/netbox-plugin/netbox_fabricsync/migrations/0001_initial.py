from django.db import migrations, models


class Migration(migrations.Migration):
    """Unmanaged models only (no tables): they give the permissions a content type."""

    initial = True
    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Repository",
            fields=[("id", models.BigAutoField(primary_key=True, serialize=False))],
            options={"managed": False, "verbose_name": "fabricsync repository", "verbose_name_plural": "fabricsync repositories"},
        ),
        migrations.CreateModel(
            name="Fabric",
            fields=[("id", models.BigAutoField(primary_key=True, serialize=False))],
            options={
                "managed": False,
                "verbose_name": "fabricsync fabric",
                "permissions": (
                    ("sync", "Pull, apply or sync the fabric, detect drift, test its cluster"),
                    ("remediate", "Remediate drift and delete orphans"),
                ),
            },
        ),
    ]
