{{/* Chart name, cut to the 63 characters a label value allows. */}}
{{- define "sstp-operator.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of the release's objects: the release name when it already holds the chart's. */}}
{{- define "sstp-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels that select the operator pods; never change them between releases. Quoted: a
     release named "n" or "on" would otherwise be a YAML boolean. */}}
{{- define "sstp-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sstp-operator.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end -}}

{{/* Labels on every object of the release. */}}
{{- define "sstp-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" | quote }}
{{ include "sstp-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
app.kubernetes.io/part-of: sstp-operator
{{- end -}}

{{/* The operator's ServiceAccount. */}}
{{- define "sstp-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sstp-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The leader election Lease. */}}
{{- define "sstp-operator.leaseName" -}}
{{- default (include "sstp-operator.fullname" .) .Values.leaderElection.leaseName -}}
{{- end -}}

{{/* repository@digest, else repository:tag (tag defaults to appVersion). Argument: dict with
     "image" (repository/tag/digest) and "root" (the chart context). */}}
{{- define "sstp-operator.imageRef" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The watched namespaces, comma-separated as --watch-namespace takes them; empty in
     cluster-wide mode. */}}
{{- define "sstp-operator.watchNamespaces" -}}
{{- join "," .Values.watchNamespaces -}}
{{- end -}}

{{/* Rules on namespaced resources: what the two controllers read, write and watch.
     - SstpGateway/SstpUser: read and watch; only status is written (the spec never is, so GitOps
       tools see no drift). finalizers/update lets children carry blockOwnerDeletion owner
       references where the OwnerReferencesPermissionEnforcement admission plugin is on.
     - Children of a gateway (server-side apply: create + patch; list/watch: the controller owns
       them). They go by garbage collection of owner references with their gateway; the few that
       exist only in some configurations are deleted by the operator when the gateway stops
       wanting them (delete on secrets: <gw>-ca after leaving the built-in CA; services:
       <gw>-metrics; certificates; servicemonitors), and only if the gateway controls them.
     - secrets get/list/watch also covers the Role the operator gives gateway pods (read their own
       two Secrets): RBAC lets it grant only what it holds, so no bind/escalate is needed.
     - pods list/watch (never get, create or change): the gateway pods' status says why they
       cannot start, which the operator copies into the SstpGateway's conditions.
     - Events (events.k8s.io) for every user-visible change.
     - cert-manager Certificates and prometheus-operator ServiceMonitors: applied when a gateway
       asks for them, read back by name, deleted when it no longer does; never listed. */}}
{{- define "sstp-operator.namespacedRules" -}}
- apiGroups: ["sstp.io"]
  resources: ["sstpgateways", "sstpusers"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["sstp.io"]
  resources: ["sstpgateways/status", "sstpusers/status"]
  verbs: ["patch"]
- apiGroups: ["sstp.io"]
  resources: ["sstpgateways/finalizers", "sstpusers/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["secrets", "configmaps", "services", "serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["secrets", "services"]
  verbs: ["delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["cert-manager.io"]
  resources: ["certificates"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "create", "patch", "delete"]
{{- end -}}

{{/* The one cluster-scoped read: whether the cert-manager and ServiceMonitor CRDs exist, by name. */}}
{{- define "sstp-operator.clusterRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  resourceNames: ["certificates.cert-manager.io", "servicemonitors.monitoring.coreos.com"]
  verbs: ["get"]
{{- end -}}
