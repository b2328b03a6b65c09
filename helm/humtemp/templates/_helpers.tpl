{{/*
Expand the name of the chart.
*/}}
{{- define "humtemp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
Truncated to 63 chars (DNS label limit); the redis suffix below needs room, so keep overrides short.
If the release name contains the chart name it is used as the full name.
*/}}
{{- define "humtemp.fullname" -}}
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

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "humtemp.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels shared by every object (no component: callers add it).
*/}}
{{- define "humtemp.commonLabels" -}}
helm.sh/chart: {{ include "humtemp.chart" . }}
app.kubernetes.io/name: {{ include "humtemp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: humtemp
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Labels of the humtemp server objects.
*/}}
{{- define "humtemp.labels" -}}
{{ include "humtemp.commonLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{/*
Selector labels of the humtemp server pods. The component keeps them disjoint from the shard pods.
*/}}
{{- define "humtemp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "humtemp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{/*
Labels and selector labels of one humtemp component (server or reader): dict root, component.
*/}}
{{- define "humtemp.componentLabels" -}}
{{ include "humtemp.commonLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "humtemp.componentSelectorLabels" -}}
app.kubernetes.io/name: {{ include "humtemp.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Name of the read-only Deployment, Service and HPA (readers.enabled).
*/}}
{{- define "humtemp.readers.fullname" -}}
{{- printf "%s-readers" (include "humtemp.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Name of the service account to use.
*/}}
{{- define "humtemp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "humtemp.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
humtemp image reference: digest wins over tag, tag defaults to the appVersion.
*/}}
{{- define "humtemp.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Redis shard objects: StatefulSet name (= pod name prefix), headless Service, labels.
*/}}
{{- define "humtemp.redis.fullname" -}}
{{- printf "%s-redis" (include "humtemp.fullname" . | trunc 50 | trimSuffix "-") }}
{{- end }}

{{- define "humtemp.redis.headlessName" -}}
{{- printf "%s-headless" (include "humtemp.redis.fullname" .) }}
{{- end }}

{{- define "humtemp.redis.labels" -}}
{{ include "humtemp.commonLabels" . }}
app.kubernetes.io/component: redis
{{- end }}

{{- define "humtemp.redis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "humtemp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end }}

{{/*
Secret holding the Redis password (existing or chart-managed).
*/}}
{{- define "humtemp.redis.secretName" -}}
{{- if .Values.redis.auth.existingSecret }}
{{- .Values.redis.auth.existingSecret }}
{{- else }}
{{- include "humtemp.redis.fullname" . }}
{{- end }}
{{- end }}

{{- define "humtemp.redis.secretKey" -}}
{{- if .Values.redis.auth.existingSecret }}
{{- .Values.redis.auth.existingSecretPasswordKey }}
{{- else -}}
redis-password
{{- end }}
{{- end }}

{{/*
Whether the app needs REDIS_PASSWORD in its environment.
*/}}
{{- define "humtemp.redis.authOn" -}}
{{- if and .Values.redis.enabled .Values.redis.auth.enabled }}true{{ end }}
{{- end }}

{{/*
HUMTEMP_REDIS_URLS. In-release shards: one entry per StatefulSet pod,
"<pod>=redis://[:$(REDIS_PASSWORD)@]<pod>.<headless>.<ns>.svc.cluster.local:<port>/0".
The ring hashes the pod names, which are stable, so rescheduling a shard moves no labs.
External shards: "<name>=<url>" as given.
*/}}
{{- define "humtemp.redisUrls" -}}
{{- $urls := list }}
{{- if .Values.redis.enabled }}
{{- $sts := include "humtemp.redis.fullname" . }}
{{- $svc := include "humtemp.redis.headlessName" . }}
{{- $auth := ternary ":$(REDIS_PASSWORD)@" "" (eq (include "humtemp.redis.authOn" .) "true") }}
{{- range $i := until (int .Values.redis.shards) }}
{{- $pod := printf "%s-%d" $sts $i }}
{{- $urls = append $urls (printf "%s=redis://%s%s.%s.%s.svc.cluster.local:%d/0" $pod $auth $pod $svc $.Release.Namespace (int $.Values.redis.port)) }}
{{- end }}
{{- else }}
{{- range .Values.externalShards }}
{{- $urls = append $urls (printf "%s=%s" .name .url) }}
{{- end }}
{{- end }}
{{- join "," $urls }}
{{- end }}

{{/*
Fail early on combinations the schema cannot express well.
*/}}
{{- define "humtemp.validate" -}}
{{- if and .Values.redis.enabled (gt (len .Values.externalShards) 0) }}
{{- fail "externalShards is set: also set redis.enabled=false (either the chart runs the shards or you bring them)" }}
{{- end }}
{{- if and (not .Values.redis.enabled) (eq (len .Values.externalShards) 0) }}
{{- fail "redis.enabled=false needs at least one entry in externalShards" }}
{{- end }}
{{- $drain := add (int .Values.preStopSleepSeconds) (int .Values.config.shutdownTimeout) }}
{{- if le (int .Values.terminationGracePeriodSeconds) $drain }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds + config.shutdownTimeout (%d), or pods are killed mid-drain" (int .Values.terminationGracePeriodSeconds) $drain) }}
{{- end }}
{{- $count := ternary (int .Values.redis.shards) (len .Values.externalShards) .Values.redis.enabled }}
{{- if gt (int .Values.config.minLiveShards) $count }}
{{- fail (printf "config.minLiveShards (%d) exceeds the number of shards (%d): pods would never be ready" (int .Values.config.minLiveShards) $count) }}
{{- end }}
{{- end }}
