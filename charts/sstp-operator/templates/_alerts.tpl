{{/* One alerting rule. Argument: dict with "root" (the chart context), "name", "settings" (the
     alert's values: for, severity), "expr" (PromQL), "summary" and "description" (Prometheus
     templates, passed through as they are) and "runbook" (what to look at first). Rendered into
     templates/prometheusrule.yaml, which is the only place the alerts are written down: the tests
     render the chart and feed exactly these rules to promtool and to a real Prometheus. */}}
{{- define "sstp-operator.alertRule" -}}
{{- $rule := .root.Values.metrics.prometheusRule -}}
- alert: {{ .name }}
  expr: |-
    {{- .expr | trim | nindent 4 }}
  {{- with .settings.for }}
  for: {{ . }}
  {{- end }}
  labels:
    severity: {{ .settings.severity | quote }}
    {{- with $rule.alertLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    summary: {{ .summary | quote }}
    description: {{ .description | quote }}
    runbook: {{ .runbook | quote }}
    runbook_url: {{ printf "%s#%s" $rule.runbookBaseUrl (lower .name) | quote }}
{{- end -}}

{{/* The `for` of an alert as words for a description ("" when it fires at once). */}}
{{- define "sstp-operator.forWords" -}}
{{- with .for }} for {{ . }}{{ end -}}
{{- end -}}
