from netbox.plugins import PluginMenu, PluginMenuItem

menu = PluginMenu(
    label="Fabricsync",
    icon_class="mdi mdi-source-branch-sync",
    groups=(
        (
            "Fabricsync",
            (
                PluginMenuItem("plugins:netbox_fabricsync:fabric_list", "Fabrics", permissions=["netbox_fabricsync.view_fabric"]),
                PluginMenuItem("plugins:netbox_fabricsync:repository_list", "Repositories", permissions=["netbox_fabricsync.view_repository"]),
                PluginMenuItem("plugins:netbox_fabricsync:run_list", "Sync runs", permissions=["netbox_fabricsync.view_fabric"]),
            ),
        ),
    ),
)
