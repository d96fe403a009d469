from django.urls import path

from .views import drift, events, fabrics, inventory, plan, repositories, resources, runs

urlpatterns = [
    path("repositories/", repositories.RepositoryListView.as_view(), name="repository_list"),
    path("repositories/add/", repositories.RepositoryEditView.as_view(), name="repository_add"),
    path("repositories/<str:pk>/", repositories.RepositoryView.as_view(), name="repository"),
    path("repositories/<str:pk>/edit/", repositories.RepositoryEditView.as_view(), name="repository_edit"),
    path("repositories/<str:pk>/delete/", repositories.RepositoryDeleteView.as_view(), name="repository_delete"),
    path("fabrics/", fabrics.FabricListView.as_view(), name="fabric_list"),
    path("fabrics/add/", fabrics.FabricEditView.as_view(), name="fabric_add"),
    path("fabrics/<str:pk>/", fabrics.FabricView.as_view(), name="fabric"),
    path("fabrics/<str:pk>/edit/", fabrics.FabricEditView.as_view(), name="fabric_edit"),
    path("fabrics/<str:pk>/delete/", fabrics.FabricDeleteView.as_view(), name="fabric_delete"),
    path("fabrics/<str:pk>/sync/", fabrics.FabricSyncView.as_view(), name="fabric_sync"),
    path("fabrics/<str:pk>/detect-drift/", fabrics.FabricDetectDriftView.as_view(), name="fabric_detect_drift"),
    path("fabrics/<str:pk>/test-cluster/", fabrics.FabricTestClusterView.as_view(), name="fabric_test_cluster"),
    path("fabrics/<str:pk>/rbac.yaml", fabrics.FabricRbacView.as_view(), name="fabric_rbac"),
    path("fabrics/<str:pk>/resources/", resources.ResourceListView.as_view(), name="fabric_resources"),
    path("fabrics/<str:pk>/resources/<path:key>", resources.ResourceView.as_view(), name="resource"),
    path("fabrics/<str:pk>/inventory/", inventory.InventoryView.as_view(), name="fabric_inventory"),
    path("fabrics/<str:pk>/inventory/import/", inventory.InventoryImportView.as_view(), name="fabric_inventory_import"),
    path("fabrics/<str:pk>/inventory/switch-port/", inventory.SwitchPortView.as_view(), name="fabric_switch_port"),
    path("fabrics/<str:pk>/inventory/netbox/", inventory.NetBoxSyncView.as_view(), name="fabric_netbox_sync"),
    path("fabrics/<str:pk>/drift/", drift.DriftView.as_view(), name="fabric_drift"),
    path("fabrics/<str:pk>/drift/remediate/", drift.RemediateView.as_view(), name="fabric_remediate"),
    path("fabrics/<str:pk>/drift/<path:key>", drift.ResourceDriftView.as_view(), name="resource_drift"),
    path("fabrics/<str:pk>/plan/", plan.PlanView.as_view(), name="fabric_plan"),
    path("fabrics/<str:pk>/events/", events.EventsView.as_view(), name="fabric_events"),
    path("runs/", runs.RunListView.as_view(), name="run_list"),
    path("runs/<str:pk>/", runs.RunView.as_view(), name="run"),
    path("runs/<str:pk>/events/", runs.RunEventsView.as_view(), name="run_events"),
]
