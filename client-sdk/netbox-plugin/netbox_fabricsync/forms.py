"""Forms of the plugin's pages. Secrets are write-only: password inputs that never render a
value; left empty on an edit they keep what the service stores."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.validators import RegexValidator
from fabricsync_client import FabricSyncError

AUTH_CHOICES = (("none", "None"), ("token", "Token"), ("basic", "Username and password"), ("ssh_key", "SSH key"))
PROVIDER_CHOICES = (
    ("PROVIDER_GENERIC", "Generic"), ("PROVIDER_GITHUB", "GitHub"), ("PROVIDER_GITLAB", "GitLab"),
    ("PROVIDER_GITEA", "Gitea"), ("PROVIDER_BITBUCKET", "Bitbucket"),
)


def _secret(label: str, help_text: str) -> forms.CharField:
    return forms.CharField(label=label, required=False, strip=False, help_text=help_text, widget=forms.PasswordInput(render_value=False))


class ServiceForm(forms.Form):
    """A form whose fields the service validates too: its field violations land on the field
    they name (the last part of their path, or an alias of a whole message's name), others as a
    form error naming the path."""

    aliases: dict[str, str] = {}

    def add_service_error(self, error: FabricSyncError) -> bool:
        """Puts the error's field violations on the form; False if it has none."""
        violations = error.field_violations
        for violation in violations:
            name = violation.field.split(".")[-1].split("[")[0]
            name = self.aliases.get(name, name)
            field = name if name in self.fields else None
            self.add_error(field, violation.description if field else f"{violation.field}: {violation.description}")
        return bool(violations)


class RepositoryForm(ServiceForm):
    name = forms.CharField(max_length=63)
    description = forms.CharField(required=False)
    url = forms.CharField(label="URL", help_text="https://, ssh:// or git@host:path (file:// when the server allows it)")
    provider = forms.ChoiceField(choices=PROVIDER_CHOICES, initial="PROVIDER_GENERIC", help_text="The forge, for links to files")
    auth_type = forms.ChoiceField(label="Authentication", choices=AUTH_CHOICES, initial="none")
    username = forms.CharField(required=False, help_text="For token (optional) and username-and-password authentication")
    secret = _secret("Secret", "Token, password or SSH private key (PEM). Write-only: empty keeps the stored one.")
    known_hosts = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}), help_text="SSH known_hosts lines (SSH key authentication)")
    etag = forms.CharField(required=False, widget=forms.HiddenInput)

    # Violations of the credentials as a whole (auth, auth.token, ...) belong to the auth choice.
    aliases = {"auth": "auth_type", "token": "secret", "basic": "auth_type", "ssh_key": "auth_type", "password": "secret", "private_key": "secret"}


class FabricForm(ServiceForm):
    name = forms.CharField(max_length=63)
    description = forms.CharField(required=False)
    repository_id = forms.ChoiceField(label="Repository")
    git_ref = forms.CharField(label="Git ref", initial="main", help_text="Branch, tag or commit")
    gitops_path = forms.CharField(label="Directory", required=False, help_text="The fabric's directory in the repository")
    server_url = forms.CharField(label="Cluster URL", required=False, help_text="https URL of the fabric's kube-apiserver")
    ca_certificate_pem = forms.CharField(label="Cluster CA (PEM)", required=False, widget=forms.Textarea(attrs={"rows": 3}))
    bearer_token = _secret("Cluster bearer token", "Write-only: empty keeps the stored one.")
    namespace = forms.CharField(required=False, initial="default")
    auto_sync_interval = forms.IntegerField(label="Auto sync every (s)", required=False, min_value=0, help_text="0 or empty: no scheduled sync")
    self_heal = forms.BooleanField(required=False, help_text="Re-apply drifted resources")
    prune = forms.BooleanField(required=False, help_text="Delete cluster objects no longer in Git")
    allow_empty = forms.BooleanField(required=False)
    strict_references = forms.BooleanField(required=False)
    etag = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, repositories: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["repository_id"].choices = repositories


class SyncForm(forms.Form):
    mode = forms.ChoiceField(choices=(("pull", "Pull"), ("apply", "Apply"), ("full", "Full sync")))
    dry_run = forms.BooleanField(required=False)


_TERM = RegexValidator(r"^[A-Za-z0-9._-]*$", "Letters, digits, '.', '_' and '-' only")


class FilterForm(forms.Form):
    """A list's filter form: its fields are the List request's filter fields."""

    def filter(self) -> str:
        """The List filter: field=value terms, ANDed."""
        if not self.is_valid():
            return ""
        return " ".join(f"{k}={v}" for k, v in self.cleaned_data.items() if v)


class ResourceFilterForm(FilterForm):
    kind = forms.CharField(required=False, validators=[_TERM])
    namespace = forms.CharField(required=False, validators=[_TERM])
    name = forms.CharField(required=False, validators=[_TERM])
    drift_status = forms.ChoiceField(required=False, choices=[("", "Any")] + [(s, s.replace("_", " ")) for s in ("unknown", "in_sync", "drifted", "missing", "orphaned", "contested")])
    apply_status = forms.ChoiceField(required=False, choices=[("", "Any")] + [(s, s) for s in ("pending", "applied", "failed", "unchanged")])
    health = forms.ChoiceField(required=False, choices=[("", "Any")] + [(s, s) for s in ("degraded", "missing", "progressing", "unknown", "healthy")])


INVENTORY_KINDS = ("node", "namespace", "deployment", "statefulset", "daemonset", "pod", "service", "virtualmachine", "virtualmachineinstance")


class InventoryFilterForm(FilterForm):
    # The fabric's extra inventory clusters; the field is left out when it has none. The own
    # cluster is no choice: the service's filter has no term that matches it yet (`cluster=""`
    # matches a cluster named '""').
    cluster = forms.ChoiceField(required=False)
    kind = forms.ChoiceField(required=False, choices=[("", "Any")] + [(k, k) for k in INVENTORY_KINDS])
    namespace = forms.CharField(required=False, validators=[_TERM])
    name = forms.CharField(required=False, validators=[_TERM])
    node = forms.CharField(required=False, validators=[_TERM])
    workload = forms.ChoiceField(required=False, choices=(("", "Any"), ("container", "container"), ("vm", "vm")))

    def __init__(self, *args: Any, clusters: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if clusters:
            self.fields["cluster"].choices = [("", "Any")] + [(c, c) for c in clusters]
        else:
            del self.fields["cluster"]


class SwitchPortForm(forms.Form):
    switch_port = forms.CharField(label="Switch port", help_text="switch/port as Connections write it, e.g. leaf-01/E1/5")


class PlanForm(forms.Form):
    ref = forms.CharField(label="Ref", help_text="Branch, tag or commit to plan, e.g. a merge request's branch")
