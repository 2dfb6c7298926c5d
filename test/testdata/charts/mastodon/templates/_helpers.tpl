{{/* Chart name, or nameOverride. */}}
{{- define "mastodon.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every object name: fullnameOverride; else the release name when it already contains
the chart name; else <release>-<chart name>.
*/}}
{{- define "mastodon.fullname" -}}
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

{{- define "mastodon.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mastodon.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mastodon.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "mastodon.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels of one component's pods. Args: ctx (root), component, rails (web and sidekiq run
the Rails code and say so with part-of: rails).
*/}}
{{- define "mastodon.componentSelectorLabels" -}}
{{ include "mastodon.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- if .rails }}
app.kubernetes.io/part-of: rails
{{- end }}
{{- end }}

{{- define "mastodon.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mastodon.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The hook Jobs run before the release's own ServiceAccount exists. */}}
{{- define "mastodon.preDeployServiceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- printf "%s-predeploy" (include "mastodon.serviceAccountName" .) }}
{{- else }}
{{- include "mastodon.serviceAccountName" . }}
{{- end }}
{{- end }}

{{- define "mastodon.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* Annotations of the objects that pre-install and pre-upgrade hook Jobs depend on. */}}
{{- define "mastodon.preDeployAnnotations" -}}
helm.sh/hook: pre-install,pre-upgrade
helm.sh/hook-weight: "-10"
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end }}

{{/*
Environment of every Mastodon container that is not secret. DB_HOST and REDIS_HOST are
required: the chart deploys neither PostgreSQL nor Redis.
*/}}
{{- define "mastodon.env" -}}
{{- $m := .Values.mastodon -}}
RAILS_ENV: production
NODE_ENV: production
LOCAL_DOMAIN: {{ $m.localDomain | quote }}
{{- with $m.webDomain }}
WEB_DOMAIN: {{ . | quote }}
{{- end }}
{{- with $m.alternateDomains }}
ALTERNATE_DOMAINS: {{ join "," . | quote }}
{{- end }}
{{- with $m.locale }}
DEFAULT_LOCALE: {{ . | quote }}
{{- end }}
{{- with $m.trustedProxyIp }}
TRUSTED_PROXY_IP: {{ . | quote }}
{{- end }}
{{- if $m.singleUserMode }}
SINGLE_USER_MODE: "true"
{{- end }}
{{- if $m.authorizedFetch }}
AUTHORIZED_FETCH: "true"
{{- end }}
DB_HOST: {{ required "postgresql.hostname is required: the chart deploys no database" .Values.postgresql.hostname | quote }}
DB_PORT: {{ .Values.postgresql.port | quote }}
DB_NAME: {{ .Values.postgresql.database | quote }}
DB_USER: {{ .Values.postgresql.username | quote }}
REDIS_HOST: {{ required "redis.hostname is required: the chart deploys no Redis" .Values.redis.hostname | quote }}
REDIS_PORT: {{ .Values.redis.port | quote }}
{{- with .Values.elasticsearch }}
{{- if .enabled }}
ES_ENABLED: "true"
ES_HOST: {{ required "elasticsearch.hostname is required when elasticsearch.enabled is true" .hostname | quote }}
ES_PORT: {{ .port | quote }}
{{- end }}
{{- end }}
{{- with $m.s3 }}
{{- if .enabled }}
S3_ENABLED: "true"
S3_PROTOCOL: {{ .protocol | quote }}
{{- with .bucket }}
S3_BUCKET: {{ . | quote }}
{{- end }}
{{- with .endpoint }}
S3_ENDPOINT: {{ . | quote }}
{{- end }}
{{- with .hostname }}
S3_HOSTNAME: {{ . | quote }}
{{- end }}
{{- with .region }}
S3_REGION: {{ . | quote }}
{{- end }}
{{- with .permission }}
S3_PERMISSION: {{ . | quote }}
{{- end }}
{{- with .aliasHost }}
S3_ALIAS_HOST: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- with $m.smtp }}
SMTP_SERVER: {{ .server | quote }}
SMTP_PORT: {{ .port | quote }}
SMTP_FROM_ADDRESS: {{ .fromAddress | quote }}
{{- with .domain }}
SMTP_DOMAIN: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Every secret environment variable as a YAML list of {env, secret, key, value}: secret and key
name an existing Secret and its key; an empty secret means the chart's own Secret, which holds
value under the name env.
*/}}
{{- define "mastodon.secretSources" -}}
{{- $s := .Values.mastodon.secrets }}
{{- $sk := $s.existingSecretKeys }}
- {env: SECRET_KEY_BASE, secret: {{ $s.existingSecret | toJson }}, key: {{ $sk.secretKeyBase | toJson }}, value: {{ $s.secretKeyBase | toJson }}}
- {env: OTP_SECRET, secret: {{ $s.existingSecret | toJson }}, key: {{ $sk.otpSecret | toJson }}, value: {{ $s.otpSecret | toJson }}}
- {env: VAPID_PRIVATE_KEY, secret: {{ $s.existingSecret | toJson }}, key: {{ $sk.vapidPrivateKey | toJson }}, value: {{ $s.vapidPrivateKey | toJson }}}
- {env: VAPID_PUBLIC_KEY, secret: {{ $s.existingSecret | toJson }}, key: {{ $sk.vapidPublicKey | toJson }}, value: {{ $s.vapidPublicKey | toJson }}}
- {env: ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY, secret: {{ $s.existingSecret | toJson }}, key: {{ $sk.arePrimaryKey | toJson }}, value: {{ $s.arePrimaryKey | toJson }}}
- {env: ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY, secret: {{ $s.existingSecret | toJson }}, key: {{ $sk.areDeterministicKey | toJson }}, value: {{ $s.areDeterministicKey | toJson }}}
- {env: ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT, secret: {{ $s.existingSecret | toJson }}, key: {{ $sk.areKeyDerivationSalt | toJson }}, value: {{ $s.areKeyDerivationSalt | toJson }}}
{{- with .Values.postgresql }}
- {env: DB_PASS, secret: {{ .existingSecret | toJson }}, key: {{ .existingSecretKeys.password | toJson }}, value: {{ .password | toJson }}}
{{- end }}
{{- with .Values.redis }}
- {env: REDIS_PASSWORD, secret: {{ .existingSecret | toJson }}, key: {{ .existingSecretKeys.password | toJson }}, value: {{ .password | toJson }}}
{{- end }}
{{- with .Values.mastodon.s3 }}
{{- if .enabled }}
- {env: AWS_ACCESS_KEY_ID, secret: {{ .existingSecret | toJson }}, key: {{ .existingSecretKeys.accessKeyId | toJson }}, value: {{ .accessKeyId | toJson }}}
- {env: AWS_SECRET_ACCESS_KEY, secret: {{ .existingSecret | toJson }}, key: {{ .existingSecretKeys.secretAccessKey | toJson }}, value: {{ .secretAccessKey | toJson }}}
{{- end }}
{{- end }}
{{- with .Values.mastodon.smtp }}
{{- if or .existingSecret .username }}
- {env: SMTP_LOGIN, secret: {{ .existingSecret | toJson }}, key: {{ .existingSecretKeys.username | toJson }}, value: {{ .username | toJson }}}
- {env: SMTP_PASSWORD, secret: {{ .existingSecret | toJson }}, key: {{ .existingSecretKeys.password | toJson }}, value: {{ .password | toJson }}}
{{- end }}
{{- end }}
{{- with .Values.elasticsearch }}
{{- if and .enabled (or .existingSecret .username) }}
- {env: ES_USER, secret: {{ .existingSecret | toJson }}, key: {{ .existingSecretKeys.username | toJson }}, value: {{ .username | toJson }}}
- {env: ES_PASS, secret: {{ .existingSecret | toJson }}, key: {{ .existingSecretKeys.password | toJson }}, value: {{ .password | toJson }}}
{{- end }}
{{- end }}
{{- end }}

{{/* Data of the chart's own Secret: the secret values that no existing Secret provides. */}}
{{- define "mastodon.ownSecretData" -}}
{{- range include "mastodon.secretSources" . | fromYamlArray }}
{{- if not .secret }}
{{ .env }}: {{ .value | toString | b64enc | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Environment of a Mastodon container, as list entries: the secrets by secretKeyRef (not
optional, so a missing key stops the pod), then mastodon.extraEnvVars. Args: ctx (root),
preDeploy (hook Jobs before install or upgrade read the predeploy copies).
*/}}
{{- define "mastodon.containerEnv" -}}
{{- $own := include "mastodon.fullname" .ctx }}
{{- if .preDeploy }}
{{- $own = printf "%s-predeploy" $own }}
{{- end }}
{{- range include "mastodon.secretSources" .ctx | fromYamlArray }}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret | default $own }}
      key: {{ if .secret }}{{ .key }}{{ else }}{{ .env }}{{ end }}
{{- end }}
{{- range $name, $value := .ctx.Values.mastodon.extraEnvVars }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/* envFrom of a Mastodon container. Args as for mastodon.containerEnv. */}}
{{- define "mastodon.containerEnvFrom" -}}
- configMapRef:
    name: {{ include "mastodon.fullname" .ctx }}-env{{ if .preDeploy }}-predeploy{{ end }}
{{- end }}

{{/*
Pod-level settings shared by every pod. Args: ctx (root), component (the component's values;
its placement wins over the top-level one), preDeploy.
*/}}
{{- define "mastodon.podSpec" -}}
{{- $v := .ctx.Values }}
serviceAccountName: {{ if .preDeploy }}{{ include "mastodon.preDeployServiceAccountName" .ctx }}{{ else }}{{ include "mastodon.serviceAccountName" .ctx }}{{ end }}
{{- with $v.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .component.nodeSelector | default $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .component.tolerations | default $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .component.affinity | default $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
A database Job run as a hook. Args: ctx (root), name, hook, weight, preDeploy, task (the rails
task), env (extra {name, value} entries).
*/}}
{{- define "mastodon.dbJob" -}}
{{- $fullname := include "mastodon.fullname" .ctx -}}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ $fullname }}-{{ .name }}
  labels:
    {{- include "mastodon.labels" .ctx | nindent 4 }}
    app.kubernetes.io/component: {{ .name }}
  annotations:
    helm.sh/hook: {{ .hook }}
    helm.sh/hook-weight: {{ .weight | quote }}
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  backoffLimit: 3
  template:
    metadata:
      labels:
        {{- include "mastodon.selectorLabels" .ctx | nindent 8 }}
        app.kubernetes.io/component: {{ .name }}
    spec:
      restartPolicy: Never
      {{- include "mastodon.podSpec" (dict "ctx" .ctx "component" (dict) "preDeploy" .preDeploy) | nindent 6 }}
      containers:
        - name: {{ .name }}
          image: {{ include "mastodon.image" .ctx }}
          imagePullPolicy: {{ .ctx.Values.image.pullPolicy }}
          command: [bundle, exec, rails, {{ .task }}]
          envFrom:
            {{- include "mastodon.containerEnvFrom" . | nindent 12 }}
          env:
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- include "mastodon.containerEnv" . | nindent 12 }}
          resources:
            {{- toYaml .ctx.Values.resources | nindent 12 }}
{{- end }}
