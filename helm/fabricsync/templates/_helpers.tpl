{{/* The chart name, or nameOverride. */}}
{{- define "fabricsync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The fully qualified app name: fullnameOverride, else "<release>-<name>" (just the release name
when it already contains the chart name). 63 characters at most: some name fields are DNS labels.
*/}}
{{- define "fabricsync.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "fabricsync.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/). */}}
{{- define "fabricsync.labels" -}}
helm.sh/chart: {{ include "fabricsync.chart" . }}
{{ include "fabricsync.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: fabricsync
{{- end }}

{{/* Labels that select the pods; immutable in a Deployment, so no version in them. */}}
{{- define "fabricsync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fabricsync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "fabricsync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "fabricsync.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "fabricsync.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
The Secret holding DATABASE_URL. Required: without DATABASE_URL fabricsync starts an embedded
PostgreSQL inside the pod, which is for local use only (lost with the pod, not shared by replicas).
*/}}
{{- define "fabricsync.databaseSecret" -}}
{{- required "database.existingSecret is required: the name of a Secret whose key database.existingSecretKey (default \"url\") holds DATABASE_URL (postgres://...). The embedded PostgreSQL is for local use only; every replica must share one external PostgreSQL." .Values.database.existingSecret }}
{{- end }}

{{/* The Secret holding the encryption key file: the user's, or the one this chart generates. */}}
{{- define "fabricsync.encryptionSecret" -}}
{{- if .Values.encryption.existingSecret }}
{{- .Values.encryption.existingSecret }}
{{- else }}
{{- printf "%s-encryption" (include "fabricsync.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "fabricsync.encryptionSecretKey" -}}
{{- if .Values.encryption.existingSecret }}
{{- .Values.encryption.existingSecretKey }}
{{- else }}
{{- "keys" }}
{{- end }}
{{- end }}

{{/* The Secret with the server's tls.crt/tls.key: the user's (cert-manager's), or the generated one. */}}
{{- define "fabricsync.tlsSecret" -}}
{{- if .Values.tls.existingSecret }}
{{- .Values.tls.existingSecret }}
{{- else }}
{{- printf "%s-tls" (include "fabricsync.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The Secret holding the client CA for mTLS; the chart's own self-signed certificate is no CA. */}}
{{- define "fabricsync.clientCASecret" -}}
{{- $name := .Values.tls.clientCA.existingSecret | default .Values.tls.existingSecret }}
{{- required "tls.clientCA.existingSecret is required with tls.clientCA.enabled when the chart generates the server certificate (tls.existingSecret empty): the Secret holding the CA that issues client certificates" $name }}
{{- end }}

{{/* The Secret holding the bootstrap admin token: the user's, or the one this chart generates. */}}
{{- define "fabricsync.bootstrapTokenSecret" -}}
{{- if .Values.bootstrapToken.existingSecret }}
{{- .Values.bootstrapToken.existingSecret }}
{{- else }}
{{- printf "%s-admin-token" (include "fabricsync.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "fabricsync.bootstrapTokenSecretKey" -}}
{{- if .Values.bootstrapToken.existingSecret }}
{{- .Values.bootstrapToken.existingSecretKey }}
{{- else }}
{{- "token" }}
{{- end }}
{{- end }}

{{/* The transport settings must make sense together; fails the render otherwise. */}}
{{- define "fabricsync.validateTransport" -}}
{{- if .Values.insecurePlaintext }}
{{- if or .Values.tls.existingSecret .Values.tls.clientCA.enabled }}
{{- fail "insecurePlaintext: true turns TLS off; unset tls.existingSecret and tls.clientCA.enabled (or keep TLS and drop insecurePlaintext)" }}
{{- end }}
{{- end }}
{{- if and .Values.tls.clientCertIdentities (not .Values.tls.clientCA.enabled) }}
{{- fail "tls.clientCertIdentities needs tls.clientCA.enabled: true (identities map verified client certificates)" }}
{{- end }}
{{- if eq (int .Values.healthPort) (int .Values.containerPort) }}
{{- fail "healthPort must differ from containerPort" }}
{{- end }}
{{- end }}
