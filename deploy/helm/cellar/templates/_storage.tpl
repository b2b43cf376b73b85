{{/*
One storage StatefulSet. Called by storage.yaml with a dict:
  root     the chart's root context
  canary   false: <release>-cellar-storage, the stable storages (image.tag,
           cluster.track, storage.replicaCount, storage.rollout.partition);
           true: <release>-cellar-storage-canary (canary.image.tag, track
           canary, canary.storages), whose storages join the same cluster and
           hold only extra replicas (docs/rollouts.md, "Canary storages").
*/}}
{{- define "cellar.storageStatefulSet" -}}
{{- $canary := .canary }}
{{- with .root }}
{{- $suffix := ternary "-canary" "" $canary }}
{{- $track := ternary "canary" .Values.cluster.track $canary }}
{{- $tag := ternary .Values.canary.image.tag (include "cellar.tag" .) $canary }}
{{- $replicas := ternary .Values.canary.storages .Values.storage.replicaCount $canary }}
{{- $dbPrefix := .Values.storage.externalPostgres.databasePrefix }}
{{- if $canary }}{{ $dbPrefix = .Values.canary.externalDatabasePrefix | default (printf "%scanary" $dbPrefix) }}{{ end }}
{{- $c := dict "root" . "component" "storage" "track" $track "tag" $tag }}
{{- $fullname := include "cellar.fullname" . }}
{{- $backend := .Values.storage.backend }}
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ $fullname }}-storage{{ $suffix }}
  labels:
    {{- include "cellar.labels" $c | nindent 4 }}
spec:
  replicas: {{ $replicas }}
  serviceName: {{ include "cellar.storageHeadless" . }}
  # A new cluster starts only once every storage joined: they cannot wait for
  # each other's readiness. Rolling updates still go one pod at a time and wait
  # for readiness (cellar.v1.Storage.Ready: every cell caught up).
  podManagementPolicy: Parallel
  minReadySeconds: {{ .Values.storage.minReadySeconds }}
  updateStrategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 1
      {{- if not $canary }}
      # Pods with an ordinal >= partition take a new template; lower ones keep
      # theirs (a promotion steps it down one pod at a time, docs/rollouts.md).
      partition: {{ .Values.storage.rollout.partition }}
      {{- end }}
  persistentVolumeClaimRetentionPolicy:
    {{- if $canary }}
    # A canary storage holds only extra replicas: its volume goes with it.
    whenDeleted: Delete
    whenScaled: Delete
    {{- else }}
    whenDeleted: Retain
    whenScaled: Retain
    {{- end }}
  selector:
    matchLabels:
      {{- include "cellar.selectorLabels" $c | nindent 6 }}
      {{- if $canary }}
      cellar.io/track: canary
      {{- end }}
  template:
    metadata:
      labels:
        {{- include "cellar.labels" $c | nindent 8 }}
        {{- with .Values.storage.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/auth: {{ include "cellar.authChecksum" . }}
        {{- with .Values.storage.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- with .Values.imagePullSecrets }}
      imagePullSecrets: {{- toYaml . | nindent 8 }}
      {{- end }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      securityContext:
        {{- include "cellar.podSecurityContext" . | nindent 8 }}
      terminationGracePeriodSeconds: {{ .Values.storage.terminationGracePeriodSeconds }}
      affinity:
        {{- if .Values.storage.affinity }}
        {{- toYaml .Values.storage.affinity | nindent 8 }}
        {{- else }}
        {{- include "cellar.softAntiAffinity" $c | nindent 8 }}
        {{- end }}
      {{- if .Values.storage.topologySpread }}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: topology.kubernetes.io/zone
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "cellar.selectorLabels" $c | nindent 14 }}
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "cellar.selectorLabels" $c | nindent 14 }}
      {{- end }}
      {{- with .Values.storage.nodeSelector }}
      nodeSelector: {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.storage.tolerations }}
      tolerations: {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if eq $backend "postgres" }}
      initContainers:
        # PostgreSQL beside the storage (a native sidecar: it starts, and its
        # startup probe passes, before the storage starts; it stops after it).
        # Unix socket only (no TCP port), data in /data/pgdata on the pod's PVC.
        - name: postgres
          image: {{ include "cellar.postgresImage" . }}
          imagePullPolicy: {{ .Values.postgresImage.pullPolicy }}
          restartPolicy: Always
          command: [/usr/local/bin/cellar-postgres-entrypoint]
          env:
            - {name: PGDATA, value: /data/pgdata}
            - {name: CELLAR_PG_SOCKET_DIR, value: /run/postgresql}
            - {name: CELLAR_PG_USER, value: cellar}
            - {name: CELLAR_PG_DATABASE, value: cellar}
            - {name: CELLAR_PG_ARGS, value: {{ .Values.storage.postgres.args | quote }}}
          startupProbe:
            exec:
              command: [/usr/lib/postgresql/15/bin/pg_isready, -q, -h, /run/postgresql]
            periodSeconds: 2
            failureThreshold: 150
          livenessProbe:
            exec:
              command: [/usr/lib/postgresql/15/bin/pg_isready, -q, -h, /run/postgresql]
            periodSeconds: 10
            timeoutSeconds: 5
            failureThreshold: 6
          resources:
            {{- toYaml .Values.storage.postgres.resources | nindent 12 }}
          securityContext:
            {{- include "cellar.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            - {name: data, mountPath: /data}
            - {name: pgsocket, mountPath: /run/postgresql}
            - {name: tmp, mountPath: /tmp}
      {{- end }}
      containers:
        - name: storage
          image: {{ .Values.image.repository }}:{{ $tag }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          command: [/usr/local/bin/cellar-storage]
          args:
            - --listen=0.0.0.0:7200
            - --advertise=$(POD_NAME).{{ include "cellar.storageHeadless" . }}.{{ include "cellar.domain" . }}:7200
            - --metrics_listen=0.0.0.0:9200
            - --master={{ include "cellar.masterAddresses" . }}
            - --cluster_name={{ .Values.cluster.name }}
            - --track={{ $track }}
            - --build_id={{ $tag }}
            - --label=$(CELLAR_ZONE)/$(NODE_NAME)/$(POD_NAME)
            - --max_object_bytes={{ int64 .Values.storage.maxObjectBytes }}
            {{- if eq $backend "sqlite" }}
            - --backend=sqlite:///data/storage.db
            - --writer_threads=1
            {{- else if eq $backend "postgres" }}
            - --backend=host=/run/postgresql dbname=cellar user=cellar
            - --writer_threads={{ .Values.storage.writerThreads }}
            {{- else }}
            # libpq takes host, port, user, password, sslmode from PG* variables.
            - --backend=dbname={{ $dbPrefix }}$(POD_INDEX)
            - --writer_threads={{ .Values.storage.writerThreads }}
            {{- end }}
            {{- include "cellar.authArgs" . | nindent 12 }}
            {{- include "cellar.tlsArgs" . | nindent 12 }}
            {{- with .Values.storage.extraArgs }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- if $canary }}
            {{- with .Values.canary.extraArgs }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- end }}
          env:
            - name: POD_NAME
              valueFrom: {fieldRef: {fieldPath: metadata.name}}
            - name: NODE_NAME
              valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
            - name: POD_INDEX
              valueFrom: {fieldRef: {fieldPath: "metadata.labels['apps.kubernetes.io/pod-index']"}}
            {{- if .Values.storage.failureDomain.zoneFromPodLabel }}
            - name: CELLAR_ZONE
              valueFrom: {fieldRef: {fieldPath: "metadata.labels['topology.kubernetes.io/zone']"}}
            {{- else }}
            - {name: CELLAR_ZONE, value: {{ .Values.storage.failureDomain.zone | quote }}}
            {{- end }}
            {{- if eq $backend "external" }}
            {{- $s := .Values.storage.externalPostgres.existingSecret }}
            {{- range $key, $var := dict "host" "PGHOST" "port" "PGPORT" "user" "PGUSER" "password" "PGPASSWORD" "sslmode" "PGSSLMODE" }}
            - name: {{ $var }}
              valueFrom:
                secretKeyRef: {name: {{ $s }}, key: {{ $key }}, optional: {{ if or (eq $key "host") (eq $key "user") }}false{{ else }}true{{ end }}}
            {{- end }}
            {{- end }}
          ports:
            - {name: grpc, containerPort: 7200}
            - {name: metrics, containerPort: 9200}
          # "" = the process serves; cellar.v1.Storage.Ready = registered, cluster
          # RUNNING and every cell of this node caught up (not OUT_OF_DATE).
          startupProbe:
            {{- include "cellar.probe" (dict "root" . "port" 7200 "service" "") | nindent 12 }}
            periodSeconds: 2
            timeoutSeconds: 5
            failureThreshold: 150
          livenessProbe:
            {{- include "cellar.probe" (dict "root" . "port" 7200 "service" "") | nindent 12 }}
            periodSeconds: 10
            timeoutSeconds: 5
            failureThreshold: 3
          readinessProbe:
            {{- include "cellar.probe" (dict "root" . "port" 7200 "service" "cellar.v1.Storage.Ready") | nindent 12 }}
            periodSeconds: 5
            timeoutSeconds: 5
          resources:
            {{- toYaml .Values.storage.resources | nindent 12 }}
          securityContext:
            {{- include "cellar.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            - {name: tmp, mountPath: /tmp}
            {{- if eq $backend "sqlite" }}
            - {name: data, mountPath: /data}
            {{- end }}
            {{- if eq $backend "postgres" }}
            - {name: pgsocket, mountPath: /run/postgresql}
            {{- end }}
            {{- include "cellar.authMount" . | nindent 12 }}
            {{- include "cellar.tlsMount" . | nindent 12 }}
      volumes:
        - name: tmp
          emptyDir: {sizeLimit: 256Mi}
        {{- if eq $backend "postgres" }}
        - name: pgsocket
          emptyDir: {medium: Memory, sizeLimit: 1Mi}
        {{- end }}
        {{- include "cellar.authVolume" . | nindent 8 }}
        {{- include "cellar.tlsVolume" (dict "root" . "Values" .Values) | nindent 8 }}
  {{- if ne $backend "external" }}
  volumeClaimTemplates:
    # No version labels here: volumeClaimTemplates cannot change after creation.
    - metadata:
        name: data
        labels:
          {{- include "cellar.selectorLabels" $c | nindent 10 }}
      spec:
        accessModes: {{ toYaml .Values.storage.persistence.accessModes | nindent 10 }}
        {{- with .Values.storage.persistence.storageClass }}
        storageClassName: {{ . }}
        {{- end }}
        resources:
          requests:
            storage: {{ .Values.storage.persistence.size }}
  {{- end }}
{{- end }}
{{- end -}}
