{{/* Names */}}
{{- define "cellar.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cellar.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains (include "cellar.name" .) .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "cellar.name" .) | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cellar.tag" -}}{{ .Values.image.tag | default .Chart.AppVersion }}{{- end -}}
{{- define "cellar.image" -}}{{ .Values.image.repository }}:{{ include "cellar.tag" . }}{{- end -}}
{{- define "cellar.postgresImage" -}}{{ .Values.postgresImage.repository }}:{{ .Values.postgresImage.tag | default (include "cellar.tag" .) }}{{- end -}}

{{/* Labels. Selector labels never carry the version (selectors are immutable). */}}
{{- define "cellar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cellar.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "cellar.labels" -}}
{{ include "cellar.selectorLabels" . }}
app.kubernetes.io/part-of: cellar
app.kubernetes.io/version: {{ include "cellar.tag" .root | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
cellar.io/version: {{ include "cellar.tag" .root | quote }}
cellar.io/track: {{ .root.Values.cluster.track | quote }}
{{- end -}}

{{/* Labels of release-wide objects (secrets, config maps, policies). */}}
{{- define "cellar.commonLabels" -}}
app.kubernetes.io/name: {{ include "cellar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: cellar
app.kubernetes.io/version: {{ include "cellar.tag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
cellar.io/version: {{ include "cellar.tag" . | quote }}
cellar.io/track: {{ .Values.cluster.track | quote }}
{{- end -}}

{{/* Service names */}}
{{- define "cellar.masterHeadless" -}}{{ include "cellar.fullname" . }}-master-hl{{- end -}}
{{- define "cellar.storageHeadless" -}}{{ include "cellar.fullname" . }}-storage-hl{{- end -}}
{{- define "cellar.adminHeadless" -}}{{ include "cellar.fullname" . }}-admin-hl{{- end -}}
{{- define "cellar.authSecret" -}}{{ .Values.auth.existingSecret | default (printf "%s-auth" (include "cellar.fullname" .)) }}{{- end -}}
{{- define "cellar.domain" -}}{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}{{- end -}}

{{/* Every master's stable address, comma-separated (storages, admin, clients find the primary among them). */}}
{{- define "cellar.masterAddresses" -}}
{{- $out := list -}}
{{- range $i := until (int .Values.master.replicaCount) -}}
{{- $out = append $out (printf "%s-master-%d.%s.%s:7100" (include "cellar.fullname" $) $i (include "cellar.masterHeadless" $) (include "cellar.domain" $)) -}}
{{- end -}}
{{- join "," $out -}}
{{- end -}}

{{/* Flags every process gets for authentication. */}}
{{- define "cellar.authArgs" -}}
{{- if .Values.auth.enabled }}
- --cluster_secret_file=/etc/cellar/auth/cluster-secret
- --auth_tokens_file=/etc/cellar/auth/tokens
{{- if .Values.auth.reflection }}
- --reflection
{{- end }}
{{- end }}
{{- if .Values.auth.insecure }}
- --insecure
{{- end }}
{{- end -}}

{{- define "cellar.authVolume" -}}
{{- if .Values.auth.enabled }}
- name: auth
  secret:
    secretName: {{ include "cellar.authSecret" . }}
    defaultMode: 0440
    items:
      - {key: cluster-secret, path: cluster-secret}
      - {key: tokens, path: tokens}
{{- end }}
{{- end -}}

{{- define "cellar.authMount" -}}
{{- if .Values.auth.enabled }}
- name: auth
  mountPath: /etc/cellar/auth
  readOnly: true
{{- end }}
{{- end -}}

{{- define "cellar.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "cellar.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Soft anti-affinity: one pod of a component per node if possible. */}}
{{- define "cellar.softAntiAffinity" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "cellar.selectorLabels" . | nindent 12 }}
{{- end -}}

{{/*
The generated auth material as JSON: the cluster secret and two tokens
(admin, client), generated once and kept across upgrades (an existing
Secret's values are reused through lookup; with `helm template` they are new
on every render). Computed once per render and memoized in .Values, so the
Secret and the pods' checksum/auth annotation see the same values.
Token: cellar_<8 hex id>_<64 hex secret>; the tokens file holds the SHA-256
of the secret part only (docs/security.md).
*/}}
{{- define "cellar.authData" -}}
{{- if not (hasKey .Values "_cellarAuthData") -}}
{{- $old := (lookup "v1" "Secret" .Release.Namespace (include "cellar.authSecret" .)).data | default dict -}}
{{- $d := dict -}}
{{- if and (hasKey $old "cluster-secret") (hasKey $old "admin-token") (hasKey $old "client-token") (hasKey $old "tokens") -}}
{{- range $k, $v := $old }}{{ $_ := set $d $k (b64dec $v) }}{{ end -}}
{{- else -}}
{{- $admin := list (randAlphaNum 32 | sha256sum | trunc 8) (randAlphaNum 64 | sha256sum) -}}
{{- $client := list (randAlphaNum 32 | sha256sum | trunc 8) (randAlphaNum 64 | sha256sum) -}}
{{- $_ := set $d "cluster-secret" (randAlphaNum 64 | sha256sum) -}}
{{- $_ := set $d "admin-token" (printf "cellar_%s_%s" (index $admin 0) (index $admin 1)) -}}
{{- $_ := set $d "client-token" (printf "cellar_%s_%s" (index $client 0) (index $client 1)) -}}
{{- $_ := set $d "tokens" (printf "# id role sha256(secret) name  (cellarctl token new --file appends here)\n%s admin %s helm-admin\n%s client %s helm-client\n" (index $admin 0) (index $admin 1 | sha256sum) (index $client 0) (index $client 1 | sha256sum)) -}}
{{- end -}}
{{- $_ := set .Values "_cellarAuthData" $d -}}
{{- end -}}
{{- .Values._cellarAuthData | toJson -}}
{{- end -}}

{{/* Checksum of the auth material: new credentials roll every pod. */}}
{{- define "cellar.authChecksum" -}}
{{- if and .Values.auth.enabled (not .Values.auth.existingSecret) -}}
{{- include "cellar.authData" . | sha256sum -}}
{{- else -}}
{{- .Values.auth | toJson | sha256sum -}}
{{- end -}}
{{- end -}}

{{/* Consistency checks the schema cannot express. */}}
{{- define "cellar.validate" -}}
{{- if and (not .Values.auth.enabled) (not .Values.auth.insecure) -}}
{{- fail "auth.enabled=false needs auth.insecure=true: cellar refuses to listen on a pod IP without authentication (docs/security.md)" -}}
{{- end -}}
{{- if ge (int .Values.cluster.replicas) (int .Values.storage.replicaCount) -}}
{{- fail (printf "cluster.replicas=%d needs at least %d storages (copies = replicas + 1), storage.replicaCount is %d" (int .Values.cluster.replicas) (add1 (int .Values.cluster.replicas)) (int .Values.storage.replicaCount)) -}}
{{- end -}}
{{- if and (eq .Values.storage.backend "external") (not .Values.storage.externalPostgres.existingSecret) -}}
{{- fail "storage.backend=external needs storage.externalPostgres.existingSecret (a Secret with keys host, port, user, password)" -}}
{{- end -}}
{{- end -}}
