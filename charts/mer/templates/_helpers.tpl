{{/* Chart name. */}}
{{- define "mer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name (release-scoped), at most 63 characters. */}}
{{- define "mer.fullname" -}}
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

{{/* Common labels. */}}
{{- define "mer.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "mer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of the coordinator. */}}
{{- define "mer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: coordinator
{{- end }}

{{/* The coordinator's service account. */}}
{{- define "mer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mer.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the token. */}}
{{- define "mer.tokenSecret" -}}
{{- default (printf "%s-token" (include "mer.fullname" .)) .Values.token.existingSecret }}
{{- end }}

{{/* Coordinator image reference. */}}
{{- define "mer.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Worker image reference. */}}
{{- define "mer.workerImage" -}}
{{- printf "%s:%s" .Values.worker.image.repository (default .Chart.AppVersion .Values.worker.image.tag) }}
{{- end }}

{{/* gRPC address of the coordinator as worker pods reach it. */}}
{{- define "mer.coordinatorAddress" -}}
{{- printf "http://%s.%s.svc:%v" (include "mer.fullname" .) .Release.Namespace .Values.coordinator.grpcPort }}
{{- end }}
