{{/*
The humtemp Deployment, shared by the server pods (every route) and, with readers.enabled,
the reader pods (same image, the ingress sends them /summary*). Arguments: root (the
top-level context), name, component (server or reader), replicas, autoscaling (bool: an
HPA owns the replica count), resources.
*/}}
{{- define "humtemp.deployment" -}}
{{- $root := .root }}
{{- $component := .component }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "humtemp.componentLabels" (dict "root" $root "component" $component) | nindent 4 }}
spec:
  {{- if not .autoscaling }}
  replicas: {{ .replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
  selector:
    matchLabels:
      {{- include "humtemp.componentSelectorLabels" (dict "root" $root "component" $component) | nindent 6 }}
  template:
    metadata:
      {{- $annotations := deepCopy $root.Values.podAnnotations }}
      {{- if and $root.Values.redis.enabled $root.Values.redis.auth.enabled (not $root.Values.redis.auth.existingSecret) }}
      {{- $_ := set $annotations "checksum/redis-secret" (include (print $root.Template.BasePath "/redis/secret.yaml") $root | sha256sum) }}
      {{- end }}
      {{- with $annotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      labels:
        {{- include "humtemp.componentLabels" (dict "root" $root "component" $component) | nindent 8 }}
        {{- with $root.Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- range . }}
        - name: {{ . }}
        {{- end }}
      {{- end }}
      serviceAccountName: {{ include "humtemp.serviceAccountName" $root }}
      automountServiceAccountToken: {{ $root.Values.serviceAccount.automount }}
      {{- with $root.Values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      # > preStop sleep + HUMTEMP_SHUTDOWN_TIMEOUT: the drain finishes before SIGKILL.
      terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
      containers:
        - name: humtemp
          image: {{ include "humtemp.image" $root | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: ["serve", "--host", "0.0.0.0", "--port", {{ $root.Values.containerPort | int64 | quote }}]
          ports:
            - name: http
              containerPort: {{ $root.Values.containerPort }}
              protocol: TCP
          env:
            {{- if eq (include "humtemp.redis.authOn" $root) "true" }}
            - name: REDIS_PASSWORD
              valueFrom:
                secretKeyRef:
                  name: {{ include "humtemp.redis.secretName" $root }}
                  key: {{ include "humtemp.redis.secretKey" $root }}
            {{- end }}
            {{- with $root.Values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            - name: HUMTEMP_REDIS_URLS
              value: {{ include "humtemp.redisUrls" $root | quote }}
            - name: HUMTEMP_WORKERS
              value: {{ $root.Values.workers | int64 | quote }}
            - name: TMPDIR
              value: /tmp
            - name: HUMTEMP_BUCKET_OFFSET
              value: {{ $root.Values.config.bucketOffset | quote }}
            - name: HUMTEMP_BUCKET_DURATION
              value: {{ $root.Values.config.bucketDuration | int64 | quote }}
            - name: HUMTEMP_BUCKET_RETENTION
              value: {{ $root.Values.config.bucketRetention | int64 | quote }}
            - name: HUMTEMP_KEY_PREFIX
              value: {{ $root.Values.config.keyPrefix | quote }}
            - name: HUMTEMP_MAX_BODY_BYTES
              value: {{ $root.Values.config.maxBodyBytes | int64 | quote }}
            - name: HUMTEMP_MAX_BATCH_ITEMS
              value: {{ $root.Values.config.maxBatchItems | int64 | quote }}
            - name: HUMTEMP_MAX_PENDING
              value: {{ $root.Values.config.maxPending | int64 | quote }}
            - name: HUMTEMP_REDIS_CONNECT_TIMEOUT
              value: {{ $root.Values.config.redisConnectTimeout | quote }}
            - name: HUMTEMP_REDIS_TIMEOUT
              value: {{ $root.Values.config.redisTimeout | quote }}
            - name: HUMTEMP_READ_CONNECTIONS
              value: {{ $root.Values.config.readConnections | int64 | quote }}
            - name: HUMTEMP_READ_CACHE_SECONDS
              value: {{ $root.Values.config.readCacheSeconds | quote }}
            - name: HUMTEMP_MAX_LABS_PER_BUCKET
              value: {{ $root.Values.config.maxLabsPerBucket | int64 | quote }}
            - name: HUMTEMP_ON_SHARD_DOWN
              value: {{ $root.Values.config.onShardDown | quote }}
            - name: HUMTEMP_MIN_LIVE_SHARDS
              value: {{ $root.Values.config.minLiveShards | int64 | quote }}
            - name: HUMTEMP_SHUTDOWN_TIMEOUT
              value: {{ $root.Values.config.shutdownTimeout | int64 | quote }}
            - name: HUMTEMP_IDEMPOTENCY_TTL
              value: {{ $root.Values.config.idempotencyTtl | int64 | quote }}
            - name: HUMTEMP_CLIENT_TIMEOUT
              value: {{ $root.Values.config.clientTimeout | int64 | quote }}
            - name: HUMTEMP_LOG_LEVEL
              value: {{ $root.Values.config.logLevel | quote }}
          {{- with $root.Values.extraEnvFrom }}
          envFrom:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          lifecycle:
            preStop:
              # Keep serving while the endpoint removal propagates to every ingress/kube-proxy;
              # SIGTERM (and the drain) follows. /bin/sleep is in the image.
              exec:
                command: ["sleep", {{ $root.Values.preStopSleepSeconds | quote }}]
          {{- with $root.Values.startupProbe }}
          startupProbe:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $root.Values.livenessProbe }}
          livenessProbe:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $root.Values.readinessProbe }}
          readinessProbe:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          resources:
            {{- toYaml .resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            # Writable scratch on a read-only root filesystem. With workers > 1 humtemp keeps
            # its per-worker metric files in a fresh mkdtemp() directory here (a fixed
            # PROMETHEUS_MULTIPROC_DIR would carry stale files across container restarts).
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
      {{- with $root.Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- range . }}
        - {{ toYaml . | nindent 10 | trim }}
          {{- if not .labelSelector }}
          labelSelector:
            matchLabels:
              {{- include "humtemp.componentSelectorLabels" (dict "root" $root "component" $component) | nindent 14 }}
          {{- end }}
        {{- end }}
      {{- end }}
{{- end }}
