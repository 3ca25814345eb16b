{{/* Names, labels and shared fragments for the veu-governor chart. */}}

{{- define "veu.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "veu.fullname" -}}
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

{{/* Name with a component suffix, kept within the 63-character limit of DNS labels. */}}
{{- define "veu.componentName" -}}
{{- $root := index . 0 }}{{- $component := index . 1 }}
{{- printf "%s-%s" (include "veu.fullname" $root | trunc (int (sub 62 (len $component)))) $component | trimSuffix "-" }}
{{- end }}

{{- define "veu.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "veu.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: veu-governor
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels for one component: (list $ "webhook"). */}}
{{- define "veu.selectorLabels" -}}
{{- $root := index . 0 }}{{- $component := index . 1 -}}
app.kubernetes.io/name: {{ include "veu.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ $component }}
{{- end }}

{{- define "veu.componentLabels" -}}
{{ include "veu.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "veu.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "veu.serviceName" -}}
{{- include "veu.fullname" . }}
{{- end }}

{{/* The API/dashboard Service: separate from the webhook Service so each port has one server. */}}
{{- define "veu.apiServiceName" -}}
{{- include "veu.componentName" (list . "api") }}
{{- end }}

{{- /* The Services whose pods present the chart's serving certificate (webhook, and the API when enabled),
comma-separated: the certificate names them all, so clients of either verify it without a serverName. */}}
{{- define "veu.tlsServices" -}}
{{- $svcs := list (include "veu.serviceName" .) }}
{{- if .Values.api.enabled }}{{ $svcs = append $svcs (include "veu.apiServiceName" .) }}{{ end }}
{{- join "," $svcs }}
{{- end }}

{{- /* The serving certificate's DNS names as a JSON list: each of veu.tlsServices in its four in-cluster forms
(the same list files/rotate_certs.py derives from its SERVICE variable). */}}
{{- define "veu.tlsDNSNames" -}}
{{- $ns := .Release.Namespace }}
{{- $dns := list }}
{{- range splitList "," (include "veu.tlsServices" .) }}
{{- $dns = concat $dns (list . (printf "%s.%s" . $ns) (printf "%s.%s.svc" . $ns) (printf "%s.%s.svc.cluster.local" . $ns)) }}
{{- end }}
{{- toJson $dns }}
{{- end }}

{{- /* The Secret holding the dashboard's session-signing key (VEU_SESSION_SECRET). Every API replica must sign and
check session cookies with one key: `veuctl serve` otherwise draws its own at start, so behind a Service or an
Ingress a session signed by one replica is refused by the next (and every restart signs everyone out). */}}
{{- define "veu.sessionSecretName" -}}
{{- include "veu.componentName" (list . "session") }}
{{- end }}

{{- /* "true" when the chart supplies VEU_SESSION_SECRET: unless the operator sets it in api.extraEnv. */}}
{{- define "veu.chartSessionSecret" -}}
{{- $own := false }}
{{- range .Values.api.extraEnv }}{{ if eq (toString .name) "VEU_SESSION_SECRET" }}{{ $own = true }}{{ end }}{{ end }}
{{- if and .Values.api.enabled (not $own) }}true{{ end }}
{{- end }}

{{- define "veu.tlsSecretName" -}}
{{- include "veu.componentName" (list . "tls") }}
{{- end }}

{{- define "veu.caSecretName" -}}
{{- include "veu.componentName" (list . "ca") }}
{{- end }}

{{- define "veu.dbSecretName" -}}
{{- if .Values.database.url }}{{ include "veu.componentName" (list . "db") }}{{ else }}{{ .Values.database.existingSecret }}{{ end }}
{{- end }}

{{- define "veu.sqlite" -}}
{{- if eq .Values.database.type "sqlite" }}true{{ end }}
{{- end }}

{{/* Namespaces never sent to the webhook: kube-system and the release namespace always. */}}
{{- define "veu.excludedNamespaces" -}}
{{- $ns := list "kube-system" .Release.Namespace }}
{{- range .Values.webhook.excludeNamespaces }}{{ $ns = append $ns . }}{{ end }}
{{- toJson (uniq $ns) }}
{{- end }}

{{/* Checks across values that JSON Schema cannot phrase helpfully. */}}
{{- define "veu.validate" -}}
{{- /* `veuctl serve` refuses to start with an OIDC issuer but no audience (a token minted for any other application
would pass) or no key set: fail the render instead of every API pod. */}}
{{- $oidc := .Values.api.oidc }}
{{- if and $oidc.issuer (not (trim $oidc.audience)) }}
{{- fail "api.oidc.issuer is set but api.oidc.audience is empty: veuctl serve requires VEU_OIDC_AUDIENCE with an issuer (this API's client id at the issuer)" }}
{{- end }}
{{- if and $oidc.issuer (not $oidc.jwksSecret) }}
{{- fail "api.oidc.issuer is set but api.oidc.jwksSecret is empty: veuctl serve requires the issuer's key set (VEU_OIDC_JWKS_FILE); put it in a Secret under api.oidc.jwksKey" }}
{{- end }}
{{- $envNames := list }}
{{- range .Values.api.extraEnv }}{{ $envNames = append $envNames (toString .name) }}{{ end }}
{{- if and (has "VEU_OIDC_ISSUER" $envNames) (not (has "VEU_OIDC_AUDIENCE" $envNames)) (not $oidc.audience) }}
{{- fail "api.extraEnv sets VEU_OIDC_ISSUER without VEU_OIDC_AUDIENCE: veuctl serve refuses to start without it; prefer api.oidc.issuer/audience/jwksSecret" }}
{{- end }}
{{- if and (eq .Values.database.type "sqlite") (gt (int .Values.webhook.replicas) 1) }}
{{- fail (printf "database.type=sqlite keeps the store in one file on one volume: set webhook.replicas=1 (got %d), or use database.type=postgresql for HA" (int .Values.webhook.replicas)) }}
{{- end }}
{{- if and (eq .Values.database.type "postgresql") (not .Values.database.existingSecret) (not .Values.database.url) }}
{{- fail "database.type=postgresql needs the database URL: set database.existingSecret (a Secret with key 'url', recommended) or database.url" }}
{{- end }}
{{- if and (eq .Values.admission.mode "audit") (eq .Values.webhook.failurePolicy "Fail") }}
{{- fail "admission.mode=audit never blocks a job, so an unreachable webhook must not block one either: set webhook.failurePolicy=Ignore" }}
{{- end }}
{{- $ca := .Values.webhook.clientAuth }}
{{- if and $ca.enabled (not (or $ca.caSecret $ca.caConfigMap)) }}
{{- fail "webhook.clientAuth.enabled needs the CA bundle that signs the API server's client certificate: set webhook.clientAuth.caSecret or webhook.clientAuth.caConfigMap (and caKey)" }}
{{- end }}
{{- if and $ca.enabled $ca.caSecret $ca.caConfigMap }}
{{- fail "webhook.clientAuth: set caSecret or caConfigMap, not both (the webhook reads one CA bundle)" }}
{{- end }}
{{- if and $ca.allowedNames (not $ca.enabled) }}
{{- fail "webhook.clientAuth.allowedNames names the API server's client certificate, which the webhook asks for only with client certificates on: set webhook.clientAuth.enabled=true (and its CA), or drop allowedNames" }}
{{- end }}
{{- $mp := int (default 0 .Values.webhook.metricsPort) }}
{{- if and $mp (or (eq $mp (int .Values.webhook.port)) (and .Values.api.enabled (eq $mp (int .Values.api.port)))) }}
{{- fail (printf "webhook.metricsPort=%d clashes with webhook.port or api.port: give /metrics a port of its own (or 0 to turn it off)" $mp) }}
{{- end }}
{{- $cp := int (default 0 .Values.controllers.metricsPort) }}
{{- if and $cp .Values.controllers.enabled (has $cp (list $mp (int .Values.webhook.port) (int .Values.api.port))) }}
{{- fail (printf "controllers.metricsPort=%d clashes with webhook.port, webhook.metricsPort or api.port (the SQLite trial runs them in one pod): give it a port of its own (or 0 to turn it off)" $cp) }}
{{- end }}
{{- if and .Values.api.enabled (eq (int .Values.api.port) (int .Values.webhook.port)) }}
{{- fail (printf "api.port=%d equals webhook.port: the webhook's port serves only the webhook, so give the API another port" (int .Values.api.port)) }}
{{- end }}
{{- if and .Values.agent.kueueAdmissionCheck (not (and .Values.agent.enabled .Values.controllers.enabled)) }}
{{- fail "agent.kueueAdmissionCheck runs in the controllers component (`veuctl admission controllers --kueue`, with the agent's service account): set agent.enabled=true and controllers.enabled=true" }}
{{- end }}
{{- if and .Values.controllers.enabled (not .Values.agent.enabled) }}
{{- fail "controllers.enabled runs the running-job meter under the agent's service account and rights, so without agent.enabled it would not run at all: set agent.enabled=true, or controllers.enabled=false to go without metering" }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.api.enabled) }}
{{- fail "ingress.enabled routes to the API/dashboard Service: set api.enabled=true (the webhook port serves no API)" }}
{{- end }}
{{- $controllersMetrics := and .Values.agent.enabled .Values.controllers.enabled .Values.controllers.metricsPort }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.api.enabled) (not .Values.webhook.metricsPort) (not $controllersMetrics) }}
{{- fail "metrics.serviceMonitor.enabled has nothing to scrape: the API is off (api.enabled=false) and so are webhook.metricsPort and controllers.metricsPort; turn one on, or set metrics.serviceMonitor.enabled=false" }}
{{- end }}
{{- $ss := .Values.tls.selfSigned }}
{{- if and (not .Values.tls.certManager.enabled) (le (int $ss.caValidityDays) (int $ss.certValidityDays)) }}
{{- fail (printf "tls.selfSigned.caValidityDays=%d must exceed certValidityDays=%d: a serving certificate must not outlive its CA (the API server stops trusting it when the CA expires, and every upgrade and rotation run would replace the CA)" (int $ss.caValidityDays) (int $ss.certValidityDays)) }}
{{- end }}
{{- if and (not .Values.tls.certManager.enabled) (ge (int $ss.renewBeforeDays) (int $ss.certValidityDays)) }}
{{- fail (printf "tls.selfSigned.renewBeforeDays=%d must be below certValidityDays=%d: otherwise every upgrade and every daily rotation run re-issues the serving certificate" (int $ss.renewBeforeDays) (int $ss.certValidityDays)) }}
{{- end }}
{{- /* The agent refuses two registers of one file name (each file's name is its scope): refused here too, not by
a crash-looping agent after the install reported success. */}}
{{- with (.Values.agent.collectors | default dict).csv }}
{{- $seen := dict }}
{{- range .files }}
{{- $name := base . }}
{{- if hasKey $seen $name }}
{{- fail (printf "agent.collectors.csv.files: two registers named %s; each file's name is its scope (register:<file name>), so rename one" $name) }}
{{- end }}
{{- $_ := set $seen $name true }}
{{- end }}
{{- end }}
{{- include "veu.checkPdb" (dict "path" "webhook" "component" .Values.webhook) }}
{{- if and .Values.api.enabled (not (include "veu.sqlite" .)) }}
{{- include "veu.checkPdb" (dict "path" "api" "component" .Values.api) }}
{{- end }}
{{- end }}

{{/* Refuse a PodDisruptionBudget that would block every node drain: dict "path" (webhook|api) "component" (its values).
Only rendered when enabled with more than one replica (a budget of 1 with 1 replica would block every drain). */}}
{{- define "veu.checkPdb" -}}
{{- $pdb := .component.pdb }}
{{- $replicas := int .component.replicas }}
{{- if and $pdb.enabled (gt $replicas 1) }}
{{- if not (kindIs "string" $pdb.minAvailable) }}
{{- if ge (int $pdb.minAvailable) $replicas }}
{{- fail (printf "%s.pdb.minAvailable=%d with %s.replicas=%d would block every node drain: use a value below replicas" .path (int $pdb.minAvailable) .path $replicas) }}
{{- end }}
{{- else }}
{{- /* A percentage is rounded up (policy/v1): p% of n keeps all n when p*n > 100*(n-1), e.g. 67% of 3. */}}
{{- $pct := atoi (trimSuffix "%" $pdb.minAvailable) }}
{{- if gt (mul $pct $replicas) (mul 100 (sub $replicas 1)) }}
{{- fail (printf "%s.pdb.minAvailable=%s of %s.replicas=%d rounds up to all %d replicas and would block every node drain: use a percentage that leaves one replica free (at most %d%%) or a number below replicas" .path $pdb.minAvailable .path $replicas $replicas (div (mul 100 (sub $replicas 1)) $replicas)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Environment shared by every container that opens the store or the packs. */}}
{{- define "veu.env" -}}
- name: VEU_DATABASE_URL
{{- if include "veu.sqlite" . }}
  value: "sqlite:////data/veu.db"
{{- else }}
  valueFrom:
    secretKeyRef:
      name: {{ include "veu.dbSecretName" . }}
      key: {{ .Values.database.existingSecretKey }}
{{- end }}
- name: VEU_POLICY_DIRS
  value: {{ include "veu.policyDirs" . | quote }}
{{- if .Values.signingKey.existingSecret }}
- name: VEU_SIGNING_KEY_FILE
  value: /etc/veu-governor/signing/{{ .Values.signingKey.key }}
{{- else }}
{{- /* No key: no periodic audit checkpoints. Each pod would otherwise sign them with a key it generates in its
emptyDir /tmp, lost on restart and different per replica, and `veuctl audit verify` then fails on every one of
them ("signed by an untrusted key"). */}}
- name: VEU_AUDIT_CHECKPOINT_EVERY
  value: "0"
{{- end }}
- name: VEU_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- with .Values.controllers.cluster }}
- name: VEU_CLUSTER
  value: {{ . | quote }}
{{- end }}
- name: HOME
  value: /tmp
- name: POD_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
- name: POD_NAMESPACE
  valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
{{- end }}

{{- /* The env the chart gives each container that takes an extraEnv list, before that list: the container renders it
and veu.checkExtraEnv reads its names from it, so a variable added here is covered by the duplicate check. */}}
{{- define "veu.webhookChartEnv" -}}
{{ include "veu.env" . }}
{{- /* A store outage or pack error is answered by the webhook itself (allowed=false unless "allow"), which the
API server's failurePolicy never sees: follow webhook.failurePolicy so Ignore (and audit mode) fail open. */}}
- name: VEU_WEBHOOK_FAILURE_MODE
  value: {{ ternary "allow" "deny" (eq .Values.webhook.failurePolicy "Ignore") | quote }}
{{- end }}

{{- define "veu.apiChartEnv" -}}
{{ include "veu.env" . }}
{{- if include "veu.chartSessionSecret" . }}
- name: VEU_SESSION_SECRET
  valueFrom:
    secretKeyRef: {name: {{ include "veu.sessionSecretName" . }}, key: session-secret}
{{- end }}
{{- with .Values.api.oidc.issuer }}
- {name: VEU_OIDC_ISSUER, value: {{ . | quote }}}
- {name: VEU_OIDC_AUDIENCE, value: {{ $.Values.api.oidc.audience | quote }}}
- {name: VEU_OIDC_JWKS_FILE, value: /etc/veu-governor/oidc/jwks.json}
- {name: VEU_OIDC_ROLE_CLAIM, value: {{ $.Values.api.oidc.roleClaim | quote }}}
{{- end }}
{{- end }}

{{- define "veu.agentChartEnv" -}}
{{ include "veu.env" . }}
- name: VEU_AGENT_CONFIG
  value: /etc/veu-governor/agent/config.yaml
- name: VEU_POLICY_REPORTS
  value: {{ ternary "true" "false" .Values.policyReports.enabled | quote }}
- name: VEU_OPENREPORTS
  value: {{ ternary "true" "false" (and .Values.policyReports.enabled .Values.policyReports.openreports) | quote }}
- name: VEU_POLICY_REPORT_MAX_RESULTS
  value: {{ .Values.policyReports.maxResults | int | quote }}
{{- end }}

{{- /* Fails the render when an extraEnv list names a variable the chart already gives that container, or names one
twice: Kubernetes keeps the last of two same-named entries without a word (one of the two settings is silently
lost) and server-side apply refuses the duplicate key. Takes (dict "root" $ "path" "api.extraEnv" "chartEnv" <the
container's veu.*ChartEnv> "extraEnv" <the list>). VEU_SESSION_SECRET never clashes: with it in api.extraEnv the
chart gives none (veu.chartSessionSecret). Every entry is a map with a non-empty string name by now: values.schema.json
($defs.envVar) refuses anything else, naming its place, before any template runs. */}}
{{- define "veu.checkExtraEnv" -}}
{{- $v := .root.Values }}
{{- /* The value that makes the chart set each name, for the message; a name missing here is one the chart always
sets, whatever the values. */}}
{{- $sources := dict
  "VEU_DATABASE_URL" (ternary "database.type=sqlite" (ternary "database.url" "database.existingSecret" (not (empty $v.database.url))) (eq $v.database.type "sqlite"))
  "VEU_POLICY_DIRS" "policyPacks and existingPolicyConfigMap"
  "VEU_SIGNING_KEY_FILE" "signingKey.existingSecret"
  "VEU_AUDIT_CHECKPOINT_EVERY" "signingKey.existingSecret (empty: no checkpoints)"
  "VEU_LOG_LEVEL" "logLevel"
  "VEU_CLUSTER" "controllers.cluster"
  "VEU_WEBHOOK_FAILURE_MODE" "webhook.failurePolicy"
  "VEU_OIDC_ISSUER" "api.oidc.issuer"
  "VEU_OIDC_AUDIENCE" "api.oidc.audience"
  "VEU_OIDC_JWKS_FILE" "api.oidc.jwksSecret"
  "VEU_OIDC_ROLE_CLAIM" "api.oidc.roleClaim"
  "VEU_AGENT_CONFIG" "agent.collectors"
  "VEU_POLICY_REPORTS" "policyReports.enabled"
  "VEU_OPENREPORTS" "policyReports.openreports"
  "VEU_POLICY_REPORT_MAX_RESULTS" "policyReports.maxResults" }}
{{- $chartNames := list }}
{{- range fromYamlArray .chartEnv }}{{ $chartNames = append $chartNames (toString .name) }}{{ end }}
{{- $seen := list }}
{{- range .extraEnv }}
{{- $name := toString .name }}
{{- if has $name $chartNames }}
{{- with get $sources $name }}
{{- fail (printf "%s sets %s, which %s already sets: set it in one place" $.path $name .) }}
{{- else }}
{{- fail (printf "%s sets %s, which the chart always sets in that container: remove it from %s" $.path $name $.path) }}
{{- end }}
{{- end }}
{{- if has $name $seen }}
{{- fail (printf "%s sets %s twice: Kubernetes keeps only the last one, so keep one entry" $.path $name) }}
{{- end }}
{{- $seen = append $seen $name }}
{{- end }}
{{- end }}

{{- /* Pod-template annotation for every pod that reads VEU_DATABASE_URL from the chart-managed Secret: env from a Secret
is read only when a container starts, so without it a changed database.url reached the migration Job (a new pod) while
the running pods stayed on the old database. A hash of the rendered Secret, as for the policy packs. */}}
{{- define "veu.databaseChecksum" -}}
{{- if and (not (include "veu.sqlite" .)) .Values.database.url }}
checksum/database: {{ include (print .Template.BasePath "/database.yaml") . | sha256sum }}
{{- end }}
{{- end }}

{{- define "veu.policyDirs" -}}
{{- $dirs := list "/etc/veu-governor/policies/chart" }}
{{- if .Values.existingPolicyConfigMap }}{{ $dirs = append $dirs "/etc/veu-governor/policies/extra" }}{{ end }}
{{- join ":" $dirs }}
{{- end }}

{{- define "veu.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: policies-chart
  mountPath: /etc/veu-governor/policies/chart
  readOnly: true
{{- if .Values.existingPolicyConfigMap }}
- name: policies-extra
  mountPath: /etc/veu-governor/policies/extra
  readOnly: true
{{- end }}
{{- if .Values.signingKey.existingSecret }}
- name: signing-key
  mountPath: /etc/veu-governor/signing
  readOnly: true
{{- end }}
{{- if include "veu.sqlite" . }}
- name: data
  mountPath: /data
{{- end }}
{{- end }}

{{- define "veu.volumes" -}}
- name: tmp
  emptyDir: {sizeLimit: 256Mi}
- name: policies-chart
  configMap:
    name: {{ include "veu.componentName" (list . "policies") }}
{{- if .Values.existingPolicyConfigMap }}
- name: policies-extra
  configMap:
    name: {{ .Values.existingPolicyConfigMap }}
{{- end }}
{{- if .Values.signingKey.existingSecret }}
- name: signing-key
  secret:
    secretName: {{ .Values.signingKey.existingSecret }}
    defaultMode: 0400
{{- end }}
{{- if include "veu.sqlite" . }}
- name: data
  persistentVolumeClaim:
    claimName: {{ default (include "veu.componentName" (list . "data")) .Values.database.sqlite.existingClaim }}
{{- end }}
{{- end }}

{{- define "veu.agentVolume" -}}
- name: agent-config
  configMap:
    name: {{ include "veu.componentName" (list . "agent-config") }}
{{- end }}

{{- define "veu.controllersContainer" -}}
- name: controllers
  image: {{ include "veu.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    - admission
    - controllers
    - --interval={{ .Values.controllers.intervalSeconds }}
    {{- with .Values.controllers.cluster }}
    - --cluster={{ . }}
    {{- end }}
    {{- /* Only the Lease holder meters and runs the Kueue check (rights: the -controllers-lease Role). */}}
    {{- $le := .Values.controllers.leaderElection }}
    {{- if not (and (gt (int $le.leaseDurationSeconds) (add (int $le.renewDeadlineSeconds) (int $le.retryPeriodSeconds))) (gt (int $le.renewDeadlineSeconds) (int $le.retryPeriodSeconds))) }}
    {{- fail "controllers.leaderElection: needs leaseDurationSeconds > renewDeadlineSeconds + retryPeriodSeconds and renewDeadlineSeconds > retryPeriodSeconds" }}
    {{- end }}
    {{- if eq .Values.controllers.leaseName .Values.agent.leaseName }}
    {{- fail (printf "controllers.leaseName: %q is agent.leaseName too; give the controllers a Lease of their own" .Values.controllers.leaseName) }}
    {{- end }}
    - --leader-election=on
    - --lease-name={{ .Values.controllers.leaseName }}
    - --lease-namespace={{ .Release.Namespace }}
    - --lease-duration={{ $le.leaseDurationSeconds | int }}
    - --lease-renew-deadline={{ $le.renewDeadlineSeconds | int }}
    - --lease-retry-period={{ $le.retryPeriodSeconds | int }}
    {{- if .Values.agent.kueueAdmissionCheck }}
    - --kueue
    {{- $base := int64 .Values.agent.kueueRetryBaseSeconds }}
    {{- $max := int64 .Values.agent.kueueRetryMaxSeconds }}
    {{- if lt $max $base }}
    {{- fail (printf "agent.kueueRetryMaxSeconds (%d) is less than agent.kueueRetryBaseSeconds (%d): the controllers would refuse to start" $max $base) }}
    {{- end }}
    - --kueue-retry-base-seconds={{ $base }}
    - --kueue-retry-max-seconds={{ $max }}
    - --kueue-api-version={{ .Values.agent.kueueApiVersion }}
    {{- end }}
    {{- with .Values.controllers.metricsPort }}
    - --metrics-port={{ . }}
    {{- end }}
  {{- with .Values.controllers.metricsPort }}
  ports:
    - {name: ctl-metrics, containerPort: {{ . }}, protocol: TCP}
  {{- end }}
  env:
    {{- include "veu.env" . | nindent 4 }}
  resources:
    {{- toYaml .Values.controllers.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    {{- include "veu.volumeMounts" . | nindent 4 }}
    {{- include "veu.kubeApiAccessMount" . | nindent 4 }}
{{- end }}

{{/* `veuctl serve --no-webhook`: the API, dashboard and /metrics on api.port (TLS from the chart's Secret); /validate
     is served only on the webhook's own port. */}}
{{- define "veu.apiContainer" -}}
- name: api
  image: {{ include "veu.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    - serve
    - --no-webhook
    - --host=0.0.0.0
    - --port={{ .Values.api.port }}
    - --tls-cert=/tls/tls.crt
    - --tls-key=/tls/tls.key
    - --log-level={{ lower .Values.logLevel }}
  ports:
    - {name: api, containerPort: {{ .Values.api.port }}, protocol: TCP}
  env:
    {{- $chartEnv := include "veu.apiChartEnv" . }}
    {{- $chartEnv | nindent 4 }}
    {{- with .Values.api.extraEnv }}
    {{- include "veu.checkExtraEnv" (dict "root" $ "path" "api.extraEnv" "chartEnv" $chartEnv "extraEnv" .) }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  readinessProbe:
    httpGet: {path: /readyz, port: api, scheme: HTTPS}
    periodSeconds: {{ .Values.api.probes.readiness.periodSeconds }}
    timeoutSeconds: {{ .Values.api.probes.readiness.timeoutSeconds }}
    failureThreshold: {{ .Values.api.probes.readiness.failureThreshold }}
  livenessProbe:
    httpGet: {path: /healthz, port: api, scheme: HTTPS}
    periodSeconds: {{ .Values.api.probes.liveness.periodSeconds }}
    timeoutSeconds: {{ .Values.api.probes.liveness.timeoutSeconds }}
    failureThreshold: {{ .Values.api.probes.liveness.failureThreshold }}
  resources:
    {{- toYaml .Values.api.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    {{- include "veu.volumeMounts" . | nindent 4 }}
    - name: tls
      mountPath: /tls
      readOnly: true
    {{- if .Values.api.oidc.issuer }}
    - name: oidc-jwks
      mountPath: /etc/veu-governor/oidc
      readOnly: true
    {{- end }}
{{- end }}

{{- /* Volumes only the API container mounts (in its Deployment, or in the SQLite trial's single pod). */}}
{{- define "veu.apiVolumes" -}}
{{- if .Values.api.oidc.issuer }}
- name: oidc-jwks
  secret:
    secretName: {{ .Values.api.oidc.jwksSecret }}
    items: [{key: {{ .Values.api.oidc.jwksKey | quote }}, path: jwks.json}]
    defaultMode: 0440
{{- end }}
{{- end }}

{{- define "veu.agentContainer" -}}
- name: agent
  image: {{ include "veu.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: ["agent", "run"]
  env:
    {{- $chartEnv := include "veu.agentChartEnv" . }}
    {{- $chartEnv | nindent 4 }}
    {{- with .Values.agent.extraEnv }}
    {{- include "veu.checkExtraEnv" (dict "root" $ "path" "agent.extraEnv" "chartEnv" $chartEnv "extraEnv" .) }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.agent.envFromSecrets }}
  envFrom:
    {{- range . }}
    - secretRef: {name: {{ . }}}
    {{- end }}
  {{- end }}
  {{- /* `veuctl agent run` serves no HTTP endpoint, so no port and no HTTP probes (a probe on a port nobody
  listens on would restart the agent forever). */}}
  resources:
    {{- toYaml .Values.agent.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    {{- include "veu.volumeMounts" . | nindent 4 }}
    - name: agent-config
      mountPath: /etc/veu-governor/agent
      readOnly: true
    {{- include "veu.kubeApiAccessMount" . | nindent 4 }}
{{- end }}

{{/* The SQLite trial runs the webhook, the API, the agent and the controllers in one pod: the pod mounts no token,
     and only the agent and controllers containers, which call the Kubernetes API, get the projected one (the API
     may be reachable through an Ingress, and the webhook calls no Kubernetes API). Elsewhere each component's
     ServiceAccount decides. */}}
{{- define "veu.kubeApiAccessMount" -}}
{{- if include "veu.sqlite" . }}
- name: kube-api-access
  mountPath: /var/run/secrets/kubernetes.io/serviceaccount
  readOnly: true
{{- end }}
{{- end }}

{{- define "veu.kubeApiAccessVolume" -}}
- name: kube-api-access
  projected:
    defaultMode: 0444
    sources:
      - serviceAccountToken: {path: token, expirationSeconds: 3607}
      - configMap: {name: kube-root-ca.crt, items: [{key: ca.crt, path: ca.crt}]}
      - downwardAPI: {items: [{path: namespace, fieldRef: {apiVersion: v1, fieldPath: metadata.namespace}}]}
{{- end }}
