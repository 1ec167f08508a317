{{/*
Names, labels and shared snippets for the facegrid chart.
*/}}

{{- define "facegrid.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release-prefixed unless the release name already holds the chart name. */}}
{{- define "facegrid.fullname" -}}
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

{{/* "<fullname>-<component>", kept within 63 characters. */}}
{{- define "facegrid.componentName" -}}
{{- printf "%s-%s" (include "facegrid.fullname" .root | trunc (int (sub 62 (len .component))) | trimSuffix "-") .component }}
{{- end }}

{{- define "facegrid.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "facegrid.labels" -}}
helm.sh/chart: {{ include "facegrid.chart" . }}
app.kubernetes.io/name: {{ include "facegrid.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: facegrid
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Usage: include "facegrid.componentLabels" (dict "root" $ "component" "server") */}}
{{- define "facegrid.componentLabels" -}}
{{ include "facegrid.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "facegrid.selectorLabels" -}}
app.kubernetes.io/name: {{ include "facegrid.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Image reference. Usage: include "facegrid.image" (dict "root" $ "image" .Values.server.image) */}}
{{- define "facegrid.image" -}}
{{- $registry := .root.Values.global.imageRegistry | default .image.registry | default "" -}}
{{- $repo := .image.repository -}}
{{- if $registry }}{{ $repo = printf "%s/%s" $registry $repo }}{{ end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repo .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (.image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion | toString) -}}
{{- end -}}
{{- end }}

{{- define "facegrid.imagePullPolicy" -}}
{{- .image.pullPolicy | default .root.Values.image.pullPolicy -}}
{{- end }}

{{- define "facegrid.imagePullSecrets" -}}
{{- with .Values.global.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{- define "facegrid.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "facegrid.componentName" (dict "root" . "component" "operator")) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "facegrid.app.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "facegrid.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* ---------------- Redis ---------------- */}}
{{- define "facegrid.redis.host" -}}
{{- include "facegrid.componentName" (dict "root" . "component" "redis") -}}
{{- end }}

{{/* Secret that holds the Redis URL (key .Values.redis.auth.urlKey) and, for the bundled Redis, the password. */}}
{{- define "facegrid.redis.secretName" -}}
{{- if and (not .Values.redis.enabled) .Values.externalRedis.existingSecret -}}
{{- .Values.externalRedis.existingSecret -}}
{{- else if and .Values.redis.enabled .Values.redis.auth.existingSecret -}}
{{- .Values.redis.auth.existingSecret -}}
{{- else -}}
{{- include "facegrid.componentName" (dict "root" . "component" "redis") -}}
{{- end -}}
{{- end }}

{{/* Redis ACL users per role (server, worker, operator: the rules of src/facegrid/acl.py,
a test keeps them equal), each with its own password Secret, and one node user per
CameraNode made by the operator: only for the bundled Redis with generated credentials;
with redis.auth.existingSecret or an external Redis every component uses that one URL. */}}
{{- define "facegrid.redis.aclUsers" -}}
{{- if and .Values.redis.enabled (not .Values.redis.auth.existingSecret) -}}true{{- end -}}
{{- end }}

{{/* The roles with a chart-made Redis user: KEDA's only when it scales the worker. */}}
{{- define "facegrid.redis.roles" -}}
{{- $roles := list "server" "worker" "operator" -}}
{{- if .Values.worker.keda.enabled -}}{{- $roles = append $roles "keda" -}}{{- end -}}
{{- toJson $roles -}}
{{- end }}

{{- define "facegrid.redis.aclRules" -}}
{{- if eq .role "operator" -}}
+acl|setuser +acl|deluser +acl|getuser +ping
{{- else if eq .role "keda" -}}
~facegrid:events +info +xinfo|groups +xlen +hello +ping
{{- else -}}
~facegrid:* &facegrid:* +@all -@dangerous +info
{{- end -}}
{{- end }}

{{/* The Secret holding a role's Redis URL (key: facegrid.redis.roleUrlKey). */}}
{{- define "facegrid.redis.roleSecretName" -}}
{{- if include "facegrid.redis.aclUsers" .root -}}
{{- printf "%s-%s" (include "facegrid.componentName" (dict "root" .root "component" "redis")) .role -}}
{{- else -}}
{{- include "facegrid.redis.secretName" .root -}}
{{- end -}}
{{- end }}

{{- define "facegrid.redis.roleUrlKey" -}}
{{- if include "facegrid.redis.aclUsers" .root -}}
redis-url
{{- else -}}
{{- include "facegrid.redis.urlKey" .root -}}
{{- end -}}
{{- end }}

{{/* FACEGRID_REDIS_URL of a role. */}}
{{- define "facegrid.redis.roleUrlEnv" -}}
- name: FACEGRID_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "facegrid.redis.roleSecretName" . }}
      key: {{ include "facegrid.redis.roleUrlKey" . }}
{{- end }}

{{- define "facegrid.redis.urlKey" -}}
{{- if and (not .Values.redis.enabled) .Values.externalRedis.existingSecret -}}
{{- .Values.externalRedis.existingSecretUrlKey -}}
{{- else -}}
redis-url
{{- end -}}
{{- end }}

{{/* ---------------- PostgreSQL ---------------- */}}
{{- define "facegrid.postgresql.host" -}}
{{- include "facegrid.componentName" (dict "root" . "component" "postgresql") -}}
{{- end }}

{{- define "facegrid.database.secretName" -}}
{{- if and (not .Values.postgresql.enabled) .Values.externalDatabase.existingSecret -}}
{{- .Values.externalDatabase.existingSecret -}}
{{- else if and .Values.postgresql.enabled .Values.postgresql.auth.existingSecret -}}
{{- .Values.postgresql.auth.existingSecret -}}
{{- else -}}
{{- include "facegrid.componentName" (dict "root" . "component" "database") -}}
{{- end -}}
{{- end }}

{{- define "facegrid.database.urlKey" -}}
{{- if and (not .Values.postgresql.enabled) .Values.externalDatabase.existingSecret -}}
{{- .Values.externalDatabase.existingSecretUrlKey -}}
{{- else -}}
database-url
{{- end -}}
{{- end }}

{{/* ---------------- keys and tokens ---------------- */}}
{{- define "facegrid.signing.secretName" -}}
{{- .Values.signing.secretName | default (include "facegrid.componentName" (dict "root" . "component" "signing-key")) -}}
{{- end }}

{{- define "facegrid.signing.publicConfigMap" -}}
{{- .Values.signing.publicKeyConfigMap | default (include "facegrid.componentName" (dict "root" . "component" "signing-pub")) -}}
{{- end }}

{{- define "facegrid.admin.secretName" -}}
{{- .Values.adminToken.existingSecret | default (include "facegrid.componentName" (dict "root" . "component" "admin")) -}}
{{- end }}

{{- define "facegrid.server.url" -}}
{{- printf "http://%s.%s.svc:%v" (include "facegrid.componentName" (dict "root" . "component" "server")) .Release.Namespace .Values.server.service.port -}}
{{- end }}

{{/*
A password that survives upgrades: reuse the value in the live Secret when it
exists (lookup returns nothing under `helm template`), else generate one.
Usage: include "facegrid.stablePassword" (dict "root" $ "secret" NAME "key" KEY "length" 32)
*/}}
{{- define "facegrid.stablePassword" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- if and $existing $existing.data (hasKey $existing.data .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum (int .length) -}}
{{- end -}}
{{- end }}

{{/* ---------------- security ---------------- */}}
{{/* Restricted Pod Security Standard, pod level. */}}
{{- define "facegrid.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid | default 10001 }}
runAsGroup: {{ .gid | default 10001 }}
fsGroup: {{ .gid | default 10001 }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Restricted Pod Security Standard, container level. */}}
{{- define "facegrid.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Env shared by the server and the worker (each adds its own Redis user's URL). */}}
{{- define "facegrid.commonEnv" -}}
- name: FACEGRID_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "facegrid.database.secretName" . }}
      key: {{ include "facegrid.database.urlKey" . }}
- name: FACEGRID_PUBLIC_KEY_FILE
  value: /etc/facegrid/keys/signing.pub
- name: FACEGRID_SITE_TIMEZONE
  value: {{ .Values.siteTimezone | quote }}
- name: FACEGRID_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- end }}

{{/* Redis names from src/facegrid/keys.py (a test keeps them equal). */}}
{{- define "facegrid.keys.eventsStream" -}}facegrid:events{{- end }}
{{- define "facegrid.keys.workerGroup" -}}facegrid-workers{{- end }}

{{/* Server-only env (ServerSettings). */}}
{{- define "facegrid.server.env" -}}
{{ include "facegrid.redis.roleUrlEnv" (dict "root" . "role" "server") }}
- name: FACEGRID_PORT
  value: "8000"
- name: FACEGRID_ADMIN_TOKEN_FILE
  value: /etc/facegrid/admin/token
{{- end }}

{{/* Worker-only env (WorkerSettings). */}}
{{- define "facegrid.worker.env" -}}
{{ include "facegrid.redis.roleUrlEnv" (dict "root" . "role" "worker") }}
- name: FACEGRID_METRICS_PORT
  value: {{ .Values.worker.metrics.port | quote }}
- name: FACEGRID_MODEL
  value: {{ .Values.model | quote }}
- name: FACEGRID_NOTIFY
  value: {{ .Values.notifier.enabled | quote }}
{{- end }}

{{/* Operator env (OperatorSettings). */}}
{{- define "facegrid.operator.env" -}}
- name: FACEGRID_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: FACEGRID_SERVER_URL
  value: {{ include "facegrid.server.url" . | quote }}
{{- with .Values.operator.nodeServerUrl }}
- name: FACEGRID_NODE_SERVER_URL
  value: {{ . | quote }}
{{- end }}
{{- if include "facegrid.redis.aclUsers" . }}
{{- /* Each CameraNode its own Redis user, made through the operator's; the nodes get the
       host only, their credentials come from the <camera>-redis Secret. */}}
- name: FACEGRID_REDIS_ADMIN_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "facegrid.redis.roleSecretName" (dict "root" . "role" "operator") }}
      key: redis-url
- name: FACEGRID_NODE_REDIS_URL
  value: {{ printf "redis://%s:6379/0" (include "facegrid.redis.host" .) | quote }}
{{- else }}
- name: FACEGRID_NODE_REDIS_URL_SECRET
  value: {{ printf "%s:%s" (include "facegrid.redis.secretName" .) (include "facegrid.redis.urlKey" .) | quote }}
{{- end }}
- name: FACEGRID_ADMIN_TOKEN_FILE
  value: /etc/facegrid/admin/token
- name: FACEGRID_SIGNING_KEY_SECRET
  value: {{ include "facegrid.signing.secretName" . | quote }}
- name: FACEGRID_PUBLIC_KEY_CONFIGMAP
  value: {{ include "facegrid.signing.publicConfigMap" . | quote }}
- name: FACEGRID_NODE_IMAGE
  value: {{ include "facegrid.image" (dict "root" . "image" .Values.operator.nodeImage) | quote }}
- name: FACEGRID_NODE_IMAGE_PULL_POLICY
  value: {{ include "facegrid.imagePullPolicy" (dict "root" . "image" .Values.operator.nodeImage) | quote }}
- name: FACEGRID_DEFAULT_TOKEN_TTL
  value: {{ .Values.signing.tokenTTL | quote }}
{{- if not .Values.operator.clusterWide }}
- name: FACEGRID_WATCH_NAMESPACES
  value: {{ include "facegrid.operator.namespaces" . | fromJsonArray | join "," | quote }}
{{- end }}
{{- with .Values.operator.allowedNodeImages }}
- name: FACEGRID_ALLOWED_IMAGES
  value: {{ join "," . | quote }}
{{- end }}
- name: FACEGRID_FILE_SOURCE_PREFIX
  value: {{ .Values.operator.fileSourcePrefix | quote }}
- name: FACEGRID_DEVICE_RESOURCE_PREFIX
  value: {{ .Values.operator.cameraDevices.resourcePrefix | quote }}
- name: FACEGRID_DEVICE_GROUP
  value: {{ .Values.operator.cameraDevices.group | quote }}
- name: FACEGRID_PRIVILEGED_DEVICES
  value: {{ .Values.operator.cameraDevices.privileged | quote }}
- name: FACEGRID_METRICS_PORT
  value: {{ .Values.operator.metrics.port | quote }}
- name: FACEGRID_LIVENESS_PORT
  value: {{ .Values.operator.healthPort | quote }}
- name: FACEGRID_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- end }}

{{/* The namespaces whose CameraNodes the operator runs (unless clusterWide), as a
     JSON list: operator.watchNamespaces, else the release namespace. */}}
{{- define "facegrid.operator.namespaces" -}}
{{- toJson (default (list .Release.Namespace) .Values.operator.watchNamespaces) }}
{{- end }}

{{/* The operator's RBAC rules are written once, in operator/deploy/rbac.yaml;
     files/operator-rbac.yaml is its copy (scripts/sync-chart; a unit test fails
     while they differ).  "facegrid.operator.rbacRules" returns, as YAML, the rules
     of the Role/ClusterRole called .name there; .names renames resourceNames
     (the fixed names of the plain manifest -> this release's names). */}}
{{- define "facegrid.operator.rbacRules" -}}
{{- $out := list -}}
{{- range $doc := regexSplit "(?m)^---[ \t]*$" (.root.Files.Get "files/operator-rbac.yaml") -1 }}
{{- $d := fromYaml $doc }}
{{- if and (has ($d.kind | default "") (list "Role" "ClusterRole")) (eq (($d.metadata | default dict).name | default "") $.name) }}
{{- range $r := $d.rules }}
{{- if $r.resourceNames }}
{{- $names := list }}
{{- range $n := $r.resourceNames }}
{{- $names = append $names (get ($.names | default dict) $n | default $n) }}
{{- end }}
{{- $r = set (deepCopy $r) "resourceNames" $names }}
{{- end }}
{{- $out = append $out $r }}
{{- end }}
{{- end }}
{{- end }}
{{- if not $out }}{{ fail (printf "files/operator-rbac.yaml has no rules for %s: run scripts/sync-chart" .name) }}{{ end }}
{{- toYaml $out }}
{{- end }}

{{/* RBAC rules of the operator in the namespaces whose CameraNodes it runs. */}}
{{- define "facegrid.operator.watchRules" -}}
{{ include "facegrid.operator.rbacRules" (dict "root" . "name" "facegrid-operator") }}
{{- end }}

{{/* Cluster-scoped reads in every mode (Nodes). */}}
{{- define "facegrid.operator.clusterRules" -}}
{{ include "facegrid.operator.rbacRules" (dict "root" . "name" "facegrid-operator-nodes") }}
{{- end }}

{{/* The signing key Secret and public-key ConfigMap, under this release's names. */}}
{{- define "facegrid.operator.keysRules" -}}
{{ include "facegrid.operator.rbacRules" (dict "root" . "name" "facegrid-operator-signing" "names" (dict "facegrid-signing-key" (include "facegrid.signing.secretName" .) "facegrid-signing-pub" (include "facegrid.signing.publicConfigMap" .))) }}
{{- end }}

{{/* Notifier env (NotifierSettings): the store, metrics, MQTT. */}}
{{- define "facegrid.notifier.mqttUrl" -}}
{{- if .Values.notifier.mqtt.url -}}
{{- .Values.notifier.mqtt.url -}}
{{- else if .Values.mqttBroker.enabled -}}
{{- printf "mqtt://%s:1883" (include "facegrid.componentName" (dict "root" . "component" "mqtt")) -}}
{{- end -}}
{{- end }}

{{- define "facegrid.notifier.env" -}}
- name: FACEGRID_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "facegrid.database.secretName" . }}
      key: {{ include "facegrid.database.urlKey" . }}
- name: FACEGRID_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: FACEGRID_METRICS_PORT
  value: {{ .Values.notifier.metrics.port | quote }}
{{- with (include "facegrid.notifier.mqttUrl" .) }}
- name: FACEGRID_MQTT_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.notifier.mqtt }}
{{- if .username }}
- name: FACEGRID_MQTT_USERNAME
  value: {{ .username | quote }}
{{- end }}
{{- if .existingSecret }}
- name: FACEGRID_MQTT_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .passwordKey }}
{{- end }}
- name: FACEGRID_MQTT_DISCOVERY
  value: {{ .discovery | quote }}
- name: FACEGRID_MQTT_INCLUDE_NAMES
  value: {{ .includeNames | quote }}
- name: FACEGRID_MQTT_TOPIC_PREFIX
  value: {{ .topicPrefix | quote }}
{{- end }}
{{- end }}
