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

{{/* Labels of a component's objects; "tag" and "track" in the dict override
the release's (the canary storages). */}}
{{- define "cellar.labels" -}}
{{- $tag := .tag | default (include "cellar.tag" .root) }}
{{ include "cellar.selectorLabels" . }}
app.kubernetes.io/part-of: cellar
app.kubernetes.io/version: {{ $tag | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
cellar.io/version: {{ $tag | quote }}
cellar.io/track: {{ .track | default .root.Values.cluster.track | quote }}
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

{{/* TLS (values tls.*): the Secrets, the files in the pods, the flags. */}}
{{- define "cellar.tlsSecret" -}}{{ .Values.tls.existingSecret | default (printf "%s-tls" (include "cellar.fullname" .)) }}{{- end -}}
{{- define "cellar.tlsCaSecret" -}}{{ include "cellar.fullname" . }}-tls-ca{{- end -}}
{{- define "cellar.tlsClientSecret" -}}
{{- if .Values.tls.existingClientSecret -}}{{ .Values.tls.existingClientSecret }}
{{- else if .Values.tls.existingSecret -}}{{ .Values.tls.existingSecret }}
{{- else -}}{{ include "cellar.fullname" . }}-tls-client
{{- end -}}
{{- end -}}
{{- define "cellar.tlsDir" -}}/etc/cellar/tls{{- end -}}

{{/* Every name a node is dialled at: the pods' headless DNS names (one
wildcard per headless Service), the client Services, localhost for the
probes and port-forwards, and tls.extraDnsNames. */}}
{{- define "cellar.tlsDnsNames" -}}
{{- $fullname := include "cellar.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- $out := list "localhost" -}}
{{- range $component := list "master" "storage" "admin" -}}
{{- $hl := printf "%s-%s-hl.%s.svc" $fullname $component $ns -}}
{{- $out = append $out (printf "*.%s" $hl) -}}
{{- $out = append $out (printf "*.%s.%s" $hl $.Values.clusterDomain) -}}
{{- if ne $component "storage" -}}
{{- $svc := printf "%s-%s" $fullname $component -}}
{{- $out = concat $out (list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns $.Values.clusterDomain)) -}}
{{- end -}}
{{- end -}}
{{- concat $out .Values.tls.extraDnsNames | uniq | toJson -}}
{{- end -}}

{{/*
The generated TLS material as JSON (tls.enabled without tls.existingSecret):
a CA, the nodes' certificate (every name of cellar.tlsDnsNames, 127.0.0.1,
::1; server and client use) and, with tls.mutual, a client certificate for
applications and the test pod. Generated once and kept across upgrades like
the auth material: the CA is read back from its Secret (buildCustomCert), a
certificate is kept while it is the one of that CA. Memoized in .Values.
Helm's genSignedCert cannot sign URI SANs: the generated node certificate
carries no spiffe://cellar/node, so the nodes' role comes from the cluster
secret (auth.enabled), not from the certificate.
*/}}
{{- define "cellar.tlsData" -}}
{{- if not (hasKey .Values "_cellarTlsData") -}}
{{- $fullname := include "cellar.fullname" . -}}
{{- $days := int .Values.tls.validityDays -}}
{{- $d := dict -}}
{{- $oldCa := (lookup "v1" "Secret" .Release.Namespace (include "cellar.tlsCaSecret" .)).data | default dict -}}
{{- $ca := dict -}}
{{- if and (hasKey $oldCa "tls.crt") (hasKey $oldCa "tls.key") -}}
{{- $ca = buildCustomCert (index $oldCa "tls.crt") (index $oldCa "tls.key") -}}
{{- else -}}
{{- $ca = genCA (printf "%s cellar CA" $fullname) $days -}}
{{- end -}}
{{- $_ := set $d "ca.crt" $ca.Cert -}}
{{- $_ := set $d "ca.key" $ca.Key -}}
{{- $ips := concat (list "127.0.0.1" "::1") .Values.tls.extraIpAddresses | uniq -}}
{{- $certs := dict "node" (list (include "cellar.tlsSecret" .) (printf "%s cellar node" $fullname) $ips (include "cellar.tlsDnsNames" . | fromJsonArray)) -}}
{{- if and .Values.tls.mutual (not .Values.tls.existingClientSecret) -}}
{{- $_ := set $certs "client" (list (include "cellar.tlsClientSecret" .) (printf "%s cellar client" $fullname) (list) (list)) -}}
{{- end -}}
{{- range $kind, $spec := $certs -}}
{{- $old := (lookup "v1" "Secret" $.Release.Namespace (index $spec 0)).data | default dict -}}
{{- if and (hasKey $old "tls.crt") (hasKey $old "tls.key") (eq (index $old "ca.crt" | default "" | b64dec) $ca.Cert) -}}
{{- $_ := set $d (printf "%s.crt" $kind) (index $old "tls.crt" | b64dec) -}}
{{- $_ := set $d (printf "%s.key" $kind) (index $old "tls.key" | b64dec) -}}
{{- else -}}
{{- $cert := genSignedCert (index $spec 1) (index $spec 2) (index $spec 3) $days $ca -}}
{{- $_ := set $d (printf "%s.crt" $kind) $cert.Cert -}}
{{- $_ := set $d (printf "%s.key" $kind) $cert.Key -}}
{{- end -}}
{{- end -}}
{{- $_ := set .Values "_cellarTlsData" $d -}}
{{- end -}}
{{- .Values._cellarTlsData | toJson -}}
{{- end -}}

{{/* Flags every process gets for TLS (files of the mounted Secret). */}}
{{- define "cellar.tlsArgs" -}}
{{- if .Values.tls.enabled }}
{{- $dir := include "cellar.tlsDir" . }}
- --tls_cert_file={{ $dir }}/tls.crt
- --tls_key_file={{ $dir }}/tls.key
- --tls_ca_file={{ $dir }}/ca.crt
- --tls_reload_interval={{ .Values.tls.reloadInterval }}
{{- with .Values.tls.serverName }}
- --tls_server_name={{ . }}
{{- end }}
{{- if .Values.tls.mutual }}
- --tls_client_ca_file={{ $dir }}/ca.crt
- --tls_require_client_cert
{{- end }}
{{- end }}
{{- if .Values.metrics.auth }}
- --metrics_auth
{{- end }}
{{- end -}}

{{/* The whole directory, never subPath: the kubelet replaces a Secret's files
in place (a symlink swap) only in a directory mount, and the processes
re-read them every tls.reloadInterval. */}}
{{- define "cellar.tlsVolume" -}}
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ .secret | default (include "cellar.tlsSecret" .root) }}
    defaultMode: 0440
    items:
      - {key: ca.crt, path: ca.crt}
      {{- if not .caOnly }}
      - {key: tls.crt, path: tls.crt}
      - {key: tls.key, path: tls.key}
      {{- end }}
{{- end }}
{{- end -}}

{{- define "cellar.tlsMount" -}}
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: {{ include "cellar.tlsDir" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{/*
A probe's handler: the kubelet's native gRPC probe on the health service, or
with TLS (which that probe cannot speak) `cellarctl health` over TLS on
127.0.0.1, checking the certificate for localhost (or tls.serverName) and
presenting the node's certificate (needed with tls.mutual). Health is open
without a token. dict: root, port, service.
*/}}
{{- define "cellar.probe" -}}
{{- $v := .root.Values -}}
{{- if $v.tls.enabled -}}
{{- $dir := include "cellar.tlsDir" .root -}}
exec:
  command:
    - /usr/local/bin/cellarctl
    - health
    - 127.0.0.1:{{ .port }}
    {{- with .service }}
    - --service={{ . }}
    {{- end }}
    - --timeout=4s
    - --tls-ca={{ $dir }}/ca.crt
    - --tls-cert={{ $dir }}/tls.crt
    - --tls-key={{ $dir }}/tls.key
    - --tls-server-name={{ $v.tls.serverName | default "localhost" }}
{{- else -}}
grpc: {port: {{ .port }}{{ with .service }}, service: {{ . }}{{ end }}}
{{- end -}}
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
(admin, client), with metrics.auth a third (readonly, for the scrapes), generated once and kept across upgrades (an existing
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
{{- if and .Values.metrics.auth (not (hasKey $d "metrics-token")) -}}
{{- /* A readonly token for the scrapes (metrics.auth), added once. */ -}}
{{- $metrics := list (randAlphaNum 32 | sha256sum | trunc 8) (randAlphaNum 64 | sha256sum) -}}
{{- $_ := set $d "metrics-username" "prometheus" -}}
{{- $_ := set $d "metrics-token" (printf "cellar_%s_%s" (index $metrics 0) (index $metrics 1)) -}}
{{- $_ := set $d "tokens" (printf "%s%s readonly %s helm-metrics\n" (index $d "tokens") (index $metrics 0) (index $metrics 1 | sha256sum)) -}}
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
{{- if and .Values.tls.mutual (not .Values.tls.enabled) -}}
{{- fail "tls.mutual=true needs tls.enabled=true" -}}
{{- end -}}
{{- if and .Values.tls.mutual (not .Values.auth.enabled) (not .Values.tls.existingSecret) -}}
{{- fail "tls.mutual=true with auth.enabled=false needs tls.existingSecret: the nodes then prove their role by certificate (URI SAN spiffe://cellar/node), which the chart's generated certificate cannot carry (docs/security.md)" -}}
{{- end -}}
{{- if regexMatch "^(0+(\\.0+)?(ns|us|ms|s|m|h))+$" (toString .Values.master.versionQuarantine.window) -}}
{{- fail "master.versionQuarantine.window must be positive (turn a signal off with restarts: 0 or downs: 0)" -}}
{{- end -}}
{{- if and .Values.metrics.auth (not .Values.auth.enabled) -}}
{{- fail "metrics.auth=true needs auth.enabled=true (the scrape's password is a token)" -}}
{{- end -}}
{{- if and .Values.tls.existingClientSecret (not .Values.tls.mutual) -}}
{{- fail "tls.existingClientSecret is used with tls.mutual=true only" -}}
{{- end -}}
{{- if gt (int .Values.storage.rollout.partition) (int .Values.storage.replicaCount) -}}
{{- fail (printf "storage.rollout.partition=%d is above storage.replicaCount=%d: no storage would ever take a new template" (int .Values.storage.rollout.partition) (int .Values.storage.replicaCount)) -}}
{{- end -}}
{{- if and .Values.canary.enabled (not .Values.canary.image.tag) -}}
{{- fail "canary.enabled=true needs canary.image.tag (the version to try)" -}}
{{- end -}}
{{- if and .Values.canary.enabled (ne .Values.cluster.track "stable") -}}
{{- fail (printf "canary.enabled=true needs cluster.track=stable (it is %s): the canary storages run beside the stable ones" .Values.cluster.track) -}}
{{- end -}}
{{- if and (eq .Values.storage.backend "external") (not .Values.storage.externalPostgres.existingSecret) -}}
{{- fail "storage.backend=external needs storage.externalPostgres.existingSecret (a Secret with keys host, port, user, password)" -}}
{{- end -}}
{{- end -}}

{{/*
The featureFlags value as the master's --initial_feature_flags JSON (a
FeatureFlagTable): {"flags":[{"name":..,"boolValue"|"stringValue":..,..}]}.
*/}}
{{- define "cellar.featureFlagsJson" -}}
{{- $flags := list -}}
{{- range .Values.featureFlags -}}
{{- $flag := dict "name" .name "owner" .owner "description" .description -}}
{{- if kindIs "bool" .value -}}
{{- $_ := set $flag "boolValue" .value -}}
{{- else -}}
{{- $_ := set $flag "stringValue" (toString .value) -}}
{{- end -}}
{{- $flags = append $flags $flag -}}
{{- end -}}
{{- dict "flags" $flags | toJson -}}
{{- end -}}
