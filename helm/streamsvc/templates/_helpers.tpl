{{- define "streamsvc.name" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "streamsvc.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
streamsvc/mode: {{ .Values.mode }}
{{- end -}}

{{- define "streamsvc.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "streamsvc.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-env" (include "streamsvc.name" .)) -}}
{{- end -}}

{{/* A TOML value: strings quoted, numbers and booleans bare. */}}
{{- define "streamsvc.toml" -}}
{{- if kindIs "string" . -}}{{ . | quote }}{{- else -}}{{ . }}{{- end -}}
{{- end -}}

{{- define "streamsvc.args" -}}
{{- if eq .Values.mode "worker" }}
- run
{{- range .Values.worker.topologies }}
- {{ . | quote }}
{{- end }}
{{- else }}
- iceberg
- sink
{{- range .Values.icebergSink.specs }}
- {{ . | quote }}
{{- end }}
{{- end }}
- --config
- /etc/streamsvc/streamsvc.toml
{{- end -}}
