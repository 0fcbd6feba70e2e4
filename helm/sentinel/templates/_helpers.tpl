{{/*
Names and labels.
*/}}
{{- define "sentinel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sentinel.fullname" -}}
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

{{/* <fullname>-<component>, kept within the 52 characters a CronJob name allows. */}}
{{- define "sentinel.componentName" -}}
{{- printf "%s-%s" (include "sentinel.fullname" .root | trunc 40 | trimSuffix "-") .component }}
{{- end }}

{{- define "sentinel.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels; call with (dict "root" $ "component" "scorer"). */}}
{{- define "sentinel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sentinel.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{- define "sentinel.labels" -}}
helm.sh/chart: {{ include "sentinel.chart" .root }}
{{ include "sentinel.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: sentinel
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "sentinel.image" -}}
{{- $img := .Values.image }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) }}
{{- end }}
{{- end }}

{{/* The service account of a component: (dict "root" $ "component" "scorer"). */}}
{{- define "sentinel.serviceAccountName" -}}
{{- $sa := (index .root.Values .component).serviceAccount }}
{{- if $sa.create }}
{{- default (include "sentinel.componentName" .) $sa.name }}
{{- else }}
{{- default "default" $sa.name }}
{{- end }}
{{- end }}

{{/*
One config value as text: whole numbers without an exponent (YAML numbers reach
templates as float64, and 1000000 would print as 1e+06); no newlines, which
would smuggle in another key.
*/}}
{{- define "sentinel.confValue" -}}
{{- $v := . }}
{{- if kindIs "float64" $v }}
{{- if eq $v (floor $v) }}{{ int64 $v }}{{ else }}{{ $v }}{{ end }}
{{- else if kindIs "invalid" $v }}
{{- else }}
{{- $s := toString $v }}
{{- if or (contains "\n" $s) (contains "\r" $s) }}
{{- fail (printf "config value %q contains a newline" $s) }}
{{- end }}
{{- $s }}
{{- end }}
{{- end }}

{{/*
The merged configuration of a component as a dict: first-class values <
.Values.config < (drift with retrainOnDrift: train.config, since the retrain
runs in the drift pod) < the component's config. Each role gets the storage
keys it uses: archive.url the archiver, drift and train; registry.url the
scorer, drift and train.
*/}}
{{- define "sentinel.confDict" -}}
{{- $v := .root.Values }}
{{- $comp := .component }}
{{- $conf := dict
    "kafka.bootstrap.servers" $v.kafka.bootstrapServers
    "topic.telemetry" $v.kafka.topic
    "log.level" $v.log.level
    "log.format" $v.log.format
    "schema.dir" $v.schema.dir
    "schema.reader" $v.schema.reader }}
{{- if has $comp (list "archiver" "drift" "train") }}
{{- $_ := set $conf "archive.url" $v.archive.url }}
{{- end }}
{{- if has $comp (list "scorer" "drift" "train") }}
{{- $_ := set $conf "registry.url" $v.registry.url }}
{{- end }}
{{- with $v.s3.region }}{{ $_ := set $conf "s3.region" . }}{{ end }}
{{- with $v.s3.endpoint }}{{ $_ := set $conf "s3.endpoint" . }}{{ end }}
{{- if eq $comp "scorer" }}
{{- $_ := set $conf "scorer.challenger" $v.scorer.challenger }}
{{- $_ := set $conf "scorer.canary.fraction" $v.scorer.canaryFraction }}
{{- $_ := set $conf "scorer.exactly.once" $v.scorer.exactlyOnce }}
{{- if gt (int $v.scorer.sessionTimeoutMs) 0 }}
{{- $_ := set $conf "kafka.session.timeout.ms" $v.scorer.sessionTimeoutMs }}
{{- end }}
{{- end }}
{{- $retrain := and (eq $comp "drift") $v.drift.retrainOnDrift }}
{{- if $retrain }}
{{- $_ := set $conf "drift.retrain.window.ms" $v.drift.retrainWindowMs }}
{{- end }}
{{- if $v.metrics.writeConfig }}
{{- $_ := set $conf "metrics.port" $v.metrics.port }}
{{- $_ := set $conf "metrics.bind" $v.metrics.bind }}
{{- else if ne (int $v.metrics.port) 9464 }}
{{- fail "metrics.port differs from the binary's default 9464 but metrics.writeConfig is false: set metrics.writeConfig=true (the binary must have the metrics.* keys)" }}
{{- end }}
{{- range $k, $val := $v.config }}
{{- $_ := set $conf $k $val }}
{{- end }}
{{- if $retrain }}
{{- range $k, $val := $v.train.config }}
{{- $_ := set $conf $k $val }}
{{- end }}
{{- end }}
{{- range $k, $val := (index $v .component).config }}
{{- $_ := set $conf $k $val }}
{{- end }}
{{- range $k := list "archive.url" "registry.url" }}
{{- if hasPrefix "file:" (toString (index $conf $k | default "")) }}
{{- fail (printf "%s of the %s role is %s: a folder inside one pod (the chart mounts no shared volume); use s3://bucket/prefix" $k $comp (index $conf $k)) }}
{{- end }}
{{- end }}
{{- toYaml $conf }}
{{- end }}

{{/* sentinel.conf of a component: key=value lines, sorted. */}}
{{- define "sentinel.conf" -}}
{{- $conf := include "sentinel.confDict" . | fromYaml -}}
# sentinel.conf of the {{ .component }} role, rendered by the sentinel chart; read with -c.
# Secrets come from SENTINEL_* environment variables, not from this file.
{{- range $k := keys $conf | sortAlpha }}
{{- if not (regexMatch "^[a-z0-9][a-z0-9._-]*$" $k) }}
{{- fail (printf "config key %q: keys are lower case, digits, dots" $k) }}
{{- end }}
{{- if regexMatch "(password|secret)" $k }}
{{- fail (printf "config key %q looks like a secret: use secretEnv, not the ConfigMap" $k) }}
{{- end }}
{{ $k }}={{ include "sentinel.confValue" (index $conf $k) }}
{{- end }}
{{- end }}

{{/* The SENTINEL_* variable of a config key. */}}
{{- define "sentinel.envName" -}}
{{- printf "SENTINEL_%s" (. | upper | replace "." "_" | replace "-" "_") }}
{{- end }}

{{/* Environment of every container: the secret references, then extraEnv. */}}
{{- define "sentinel.env" -}}
{{- $v := .root.Values }}
{{- range $name := keys $v.secretEnv | sortAlpha }}
{{- $s := index $v.secretEnv $name }}
{{- if $s.secretName }}
- name: {{ include "sentinel.envName" $s.configKey }}
  valueFrom:
    secretKeyRef:
      name: {{ $s.secretName }}
      key: {{ $s.secretKey }}
{{- end }}
{{- end }}
{{- if eq .component "scorer" }}
{{- /* scorer.exactly.once: the transactional id must be unique per running
instance and stable across its restarts; the pod name is both for a
container restart (a replaced pod's open transaction times out instead). */}}
- name: {{ include "sentinel.envName" "scorer.transactional.id" }}
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}
{{- with (index $v .component).extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The pod spec shared by every workload. Call with
(dict "root" $ "component" "scorer" "args" (list ...) "command" (list ...)
      "longRunning" true "restartPolicy" "Never").
*/}}
{{- define "sentinel.podSpec" -}}
{{- $root := .root }}
{{- $c := index $root.Values .component -}}
serviceAccountName: {{ include "sentinel.serviceAccountName" . }}
# The binary does not talk to the Kubernetes API; IRSA's web identity token is a
# projected volume of its own.
automountServiceAccountToken: false
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- if .restartPolicy }}
restartPolicy: {{ .restartPolicy }}
{{- end }}
{{- if .longRunning }}
terminationGracePeriodSeconds: {{ $c.terminationGracePeriodSeconds }}
{{- end }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
containers:
  - name: {{ .component }}
    image: {{ include "sentinel.image" $root }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    {{- with .command }}
    command:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .args }}
    args:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- $env := include "sentinel.env" . | trim }}
    {{- if $env }}
    env:
      {{- $env | nindent 6 }}
    {{- end }}
    {{- if .longRunning }}
    ports:
      - name: metrics
        containerPort: {{ $root.Values.metrics.port }}
        protocol: TCP
    startupProbe:
      httpGet: {path: /healthz, port: metrics}
      {{- toYaml $c.probes.startup | nindent 6 }}
    livenessProbe:
      httpGet: {path: /healthz, port: metrics}
      {{- toYaml $c.probes.liveness | nindent 6 }}
    readinessProbe:
      httpGet: {path: /readyz, port: metrics}
      {{- toYaml $c.probes.readiness | nindent 6 }}
    {{- end }}
    resources:
      {{- toYaml $c.resources | nindent 6 }}
    securityContext:
      {{- toYaml $root.Values.securityContext | nindent 6 }}
    volumeMounts:
      - name: config
        mountPath: /etc/sentinel
        readOnly: true
      - name: tmp
        mountPath: /tmp
      - name: data
        mountPath: /var/lib/sentinel
volumes:
  - name: config
    configMap:
      name: {{ include "sentinel.fullname" $root }}-config
      items:
        - key: {{ .component }}.conf
          path: sentinel.conf
  - name: tmp
    emptyDir:
      sizeLimit: {{ $c.tmpSizeLimit }}
  - name: data
    emptyDir:
      sizeLimit: {{ $c.dataSizeLimit }}
{{- with $c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .longRunning }}
topologySpreadConstraints:
{{- if $c.topologySpreadConstraints }}
  {{- toYaml $c.topologySpreadConstraints | nindent 2 }}
{{- else }}
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "sentinel.selectorLabels" . | nindent 8 }}
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "sentinel.selectorLabels" . | nindent 8 }}
{{- end }}
{{- end }}
{{- end }}

{{/* Pod template metadata: labels and the config checksum that rolls pods on change. */}}
{{- define "sentinel.podMetadata" -}}
{{- $c := index .root.Values .component -}}
labels:
  {{- include "sentinel.selectorLabels" . | nindent 2 }}
  app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
  app.kubernetes.io/part-of: sentinel
  {{- with $c.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  checksum/config: {{ include "sentinel.conf" . | sha256sum }}
  {{- with $c.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/* Max replicas: the component's value, capped at the partition count. */}}
{{- define "sentinel.maxReplicas" -}}
{{- $a := (index .root.Values .component).autoscaling }}
{{- $p := int .root.Values.kafka.partitions }}
{{- $m := int $a.maxReplicas }}
{{- if or (eq $m 0) (gt $m $p) }}{{ $p }}{{ else }}{{ $m }}{{ end }}
{{- end }}
