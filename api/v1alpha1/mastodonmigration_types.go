package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Strategy is how the old stack gives way to the release.
// +kubebuilder:validation:Enum=BlueGreen;InPlace;Maintenance
type Strategy string

const (
	// StrategyBlueGreen installs the release beside the old stack and then switches traffic.
	StrategyBlueGreen Strategy = "BlueGreen"
	// StrategyInPlace moves one component at a time (sidekiq, streaming, web); Helm adopts what it safely can.
	StrategyInPlace Strategy = "InPlace"
	// StrategyMaintenance serves a maintenance page while the old stack is stopped and the release installed.
	StrategyMaintenance Strategy = "Maintenance"
)

// TrafficMethod is how traffic moves from the old stack to the release.
// +kubebuilder:validation:Enum=ServiceSelector;Ingress
type TrafficMethod string

const (
	// TrafficServiceSelector points the selectors of the source Services at the release's pods, so the
	// Ingress, its static IP, certificate and GKE annotations stay untouched.
	TrafficServiceSelector TrafficMethod = "ServiceSelector"
	// TrafficIngress points the Ingress backends at the release's Services.
	TrafficIngress TrafficMethod = "Ingress"
)

// MastodonMigrationSpec says which Kustomize-managed stack to move, to which Helm release, and how.
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.rollbackLevel) || (has(self.rollbackLevel) && self.rollbackLevel >= oldSelf.rollbackLevel)",message="spec.rollbackLevel cannot be lowered once set: a rollback only escalates (1 -> 2 -> 3)"
// +kubebuilder:validation:XValidation:rule="!has(self.rollbackLevel) || self.rollbackLevel < 3 || (has(self.confirmDataLoss) && self.confirmDataLoss)",message="rollbackLevel 3 restores the database from the pre-migration backup and loses every write made since: set spec.confirmDataLoss: true to confirm"
// +kubebuilder:validation:XValidation:rule="!has(self.rollbackLevel) || self.rollbackLevel < 3 || (has(self.rollback) && has(self.rollback.database) && has(self.rollback.database.cloudSQL))",message="rollbackLevel 3 restores the Cloud SQL backup: set spec.rollback.database.cloudSQL (project and instance)"
// +kubebuilder:validation:XValidation:rule="!has(self.traffic) || !has(self.traffic.method) || self.traffic.method != 'Ingress' || has(self.source.ingress)",message="traffic.method Ingress moves the backends of an Ingress: set spec.source.ingress"
// +kubebuilder:validation:XValidation:rule="!has(self.preflight) || !has(self.preflight.allowImageChange) || !self.preflight.allowImageChange || (has(self.rollback) && has(self.rollback.database) && has(self.rollback.database.cloudSQL))",message="preflight.allowImageChange lets the chart's hooks migrate the database: set spec.rollback.database.cloudSQL so it is backed up first"
type MastodonMigrationSpec struct {
	// Strategy is how the old stack gives way to the release: BlueGreen (release beside the old
	// stack, then the traffic switch), InPlace (component by component) or Maintenance (a
	// maintenance page while the release is installed).
	// +kubebuilder:default=BlueGreen
	// +optional
	Strategy Strategy `json:"strategy,omitempty"`

	// Source is the Kustomize-managed stack as it runs today.
	// +required
	Source SourceSpec `json:"source"`

	// Release is the Helm release of the official chart that replaces the source stack.
	// +required
	Release ReleaseSpec `json:"release"`

	// Preflight tunes the pre-migration checklist.
	// +optional
	Preflight PreflightSpec `json:"preflight,omitempty"`

	// Cleanup says what becomes of the old stack once the migration completes.
	// +optional
	Cleanup CleanupSpec `json:"cleanup,omitempty"`

	// Maintenance is the maintenance page of the Maintenance strategy.
	// +optional
	Maintenance MaintenanceSpec `json:"maintenance,omitempty"`

	// Traffic is how traffic moves to the release.
	// +kubebuilder:default={}
	// +optional
	Traffic TrafficSpec `json:"traffic,omitempty"`

	// HealthChecks are the endpoints Verify asks the release's Services for before any traffic
	// moves, and the HTTP analysis asks the instance for once it has.
	// +kubebuilder:default={}
	// +optional
	HealthChecks HealthChecksSpec `json:"healthChecks,omitempty"`

	// Analysis is how the new stack is watched once it takes traffic.
	// +kubebuilder:default={}
	// +optional
	Analysis AnalysisSpec `json:"analysis,omitempty"`

	// Rollback says what the operator may undo by itself, and where the database backup goes.
	// +kubebuilder:default={}
	// +optional
	Rollback RollbackSpec `json:"rollback,omitempty"`

	// RollbackLevel asks for a rollback: 1 moves traffic back to the old stack, 2 also removes the
	// Helm release and restores the old manifests, 3 also restores the database from the
	// pre-migration backup (needs confirmDataLoss). 0 asks for none. It can only be raised.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=3
	// +optional
	RollbackLevel int32 `json:"rollbackLevel,omitempty"`

	// ConfirmDataLoss must be true before a level 3 rollback runs: it loses every database write
	// made after the backup.
	// +optional
	ConfirmDataLoss bool `json:"confirmDataLoss,omitempty"`

	// Paused stops the migration before its next step; the step under way finishes first.
	// +optional
	Paused bool `json:"paused,omitempty"`

	// Notifications says where the operator reports phase changes, preflight findings, breaches
	// and rollbacks.
	// +optional
	Notifications *NotificationsSpec `json:"notifications,omitempty"`
}

// NotificationsSpec names the receivers of a migration's notifications.
type NotificationsSpec struct {
	// SecretRef names a Secret in the migration's namespace whose key webhookURL (a JSON POST)
	// and/or slackURL (a Slack incoming webhook) say where to send. The URLs carry tokens: they
	// stay in the Secret and never appear in status, Events, logs or messages.
	// +required
	SecretRef LocalObjectReference `json:"secretRef"`
}

// SourceSpec names the objects of the running stack, all in the migration's namespace.
type SourceSpec struct {
	// Web is the Deployment of the Rails web server.
	// +required
	Web ComponentRef `json:"web"`

	// Streaming is the Deployment of the streaming API server.
	// +required
	Streaming ComponentRef `json:"streaming"`

	// Sidekiq lists the Deployments of the Sidekiq workers.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	// +required
	Sidekiq []ComponentRef `json:"sidekiq"`

	// Services are the Services that route to the source pods. Default: every Service in the
	// namespace whose selector picks pods of a source Deployment.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:items:MaxLength=63
	// +listType=set
	// +optional
	Services []string `json:"services,omitempty"`

	// Ingress is the Ingress that fronts the stack.
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Ingress string `json:"ingress,omitempty"`

	// ExtraResources are more objects to snapshot and restore with the stack: HPAs, BackendConfig,
	// FrontendConfig, ManagedCertificate, PodMonitoring.
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	// +optional
	ExtraResources []ObjectRef `json:"extraResources,omitempty"`
}

// ComponentRef names the Deployment of one Mastodon component.
type ComponentRef struct {
	// Deployment is the name of the Deployment.
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Deployment string `json:"deployment"`
}

// ObjectRef names one object in the migration's namespace.
type ObjectRef struct {
	// APIVersion of the object, such as autoscaling/v2 or cloud.google.com/v1.
	// +kubebuilder:validation:MinLength=1
	// +required
	APIVersion string `json:"apiVersion"`

	// Kind of the object, such as HorizontalPodAutoscaler or BackendConfig.
	// +kubebuilder:validation:MinLength=1
	// +required
	Kind string `json:"kind"`

	// Name of the object.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`
}

// ReleaseSpec is the Helm release to install.
type ReleaseSpec struct {
	// Name of the Helm release. The chart names its objects after it: release mastodon-helm gives
	// mastodon-helm-web, while release mastodon would give mastodon-web and collide with a
	// typical Kustomize layout.
	// +kubebuilder:default=mastodon-helm
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=53
	// +optional
	Name string `json:"name,omitempty"`

	// Chart is where the official Mastodon chart comes from.
	// +required
	Chart ChartRef `json:"chart"`

	// Values are chart values; they override generated values and are overridden by valuesFrom.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	// +optional
	Values *apiextensionsv1.JSON `json:"values,omitempty"`

	// ValuesFrom are ConfigMap or Secret keys holding values files, merged in order after values.
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	// +optional
	ValuesFrom []ValuesReference `json:"valuesFrom,omitempty"`

	// GenerateValues derives chart values from the source stack (the runbook's configuration
	// mapping) before values and valuesFrom apply.
	// +optional
	GenerateValues bool `json:"generateValues,omitempty"`

	// SecretEnv are variables the chart cannot pass from a Secret (chart 1.0.2 passes a fixed set
	// of Secret keys, and its extraEnvFrom and extraEnvVars take only ConfigMaps and literals),
	// such as OTP_SECRET, which Mastodon's older two-factor data still needs. The operator adds
	// each as a secretKeyRef to every Mastodon container and hook Job of the release when it
	// renders the chart. generateValues adds the Secret-held variables of the old pods that the
	// chart does not pass; this list adds to those.
	// +kubebuilder:validation:MaxItems=64
	// +listType=map
	// +listMapKey=name
	// +optional
	SecretEnv []SecretEnvVar `json:"secretEnv,omitempty"`

	// Timeout bounds the install, its hooks, and the wait for its resources.
	// +kubebuilder:default="10m"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('30s') && duration(self) <= duration('2h')",message="release.timeout must be between 30s and 2h"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// SecretEnvVar is one environment variable read from a Secret key in the migration's namespace.
type SecretEnvVar struct {
	// Name of the variable, such as OTP_SECRET.
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z][-._a-zA-Z0-9]*$`
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`

	// SecretName is the Secret holding the value.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	SecretName string `json:"secretName"`

	// Key of the Secret holding the value.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Key string `json:"key"`
}

// ChartRef names a chart in a Helm repository or an OCI registry.
type ChartRef struct {
	// Repository is the URL of a classic Helm repository (https://…, serving index.yaml) or of an
	// OCI registry path (oci://…).
	// +kubebuilder:validation:XValidation:rule="self.matches('^(https?|oci)://[^\\\\s]+$')",message="chart.repository must be an http(s):// Helm repository URL or an oci:// registry path"
	// +kubebuilder:validation:MaxLength=2048
	// +required
	Repository string `json:"repository"`

	// Name of the chart in the repository.
	// +kubebuilder:default=mastodon
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Name string `json:"name,omitempty"`

	// Version of the chart: an exact version or a semver constraint. Empty means the newest.
	// +kubebuilder:validation:MaxLength=128
	// +optional
	Version string `json:"version,omitempty"`
}

// ValuesReference points at a values file held in a ConfigMap or Secret key.
type ValuesReference struct {
	// Kind of the object holding the values.
	// +kubebuilder:validation:Enum=ConfigMap;Secret
	// +required
	Kind string `json:"kind"`

	// Name of the ConfigMap or Secret, in the migration's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`

	// Key holding a YAML values document.
	// +kubebuilder:default="values.yaml"
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Key string `json:"key,omitempty"`

	// Optional lets the migration go on when the object or key is missing.
	// +optional
	Optional bool `json:"optional,omitempty"`
}

// PreflightSpec tunes the pre-migration checklist.
type PreflightSpec struct {
	// AcceptEnvChanges lists environment variables whose difference between the old and the new
	// pods is intended; any other difference blocks the migration. NAME accepts a difference in
	// every component; web/NAME, streaming/NAME or sidekiq/NAME only in that one, so accepting a
	// Secret the chart adds to streaming does not hide a changed one in web.
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:Pattern=`^((web|streaming|sidekiq)/)?[-._a-zA-Z][-._a-zA-Z0-9]*$`
	// +listType=set
	// +optional
	AcceptEnvChanges []string `json:"acceptEnvChanges,omitempty"`

	// AllowImageChange lets the release run another Mastodon image than the source. The chart's
	// hook Jobs then migrate the shared database before any traffic moves, so a database backup
	// (spec.rollback.database) is required.
	// +optional
	AllowImageChange bool `json:"allowImageChange,omitempty"`

	// AcceptVersionChange confirms one change of Mastodon version that preflight's Version
	// check cannot judge or that needs the old stack stopped, written as it names it: the old
	// and the new image tag, such as "nightly -> v4.6.2". It accepts that jump only: a release
	// at another version is judged again. A downgrade is never accepted.
	// +kubebuilder:validation:MaxLength=260
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_][-.A-Za-z0-9_:]{0,127} -> [A-Za-z0-9_][-.A-Za-z0-9_:]{0,127}$`
	// +optional
	AcceptVersionChange string `json:"acceptVersionChange,omitempty"`

	// AcceptGitOpsOwners lets the migration change objects that a GitOps tool (Flux, Argo CD)
	// manages, once you have suspended it (Flux: flux suspend kustomization; Argo CD: automated
	// sync off for the Application). Each entry names the owner as preflight's GitOpsOwners
	// finding reports it: flux/<namespace>/<kustomization>, argocd/<application>, or
	// argocd/<namespace>/<application> for an Application outside Argo CD's namespace. An
	// accepted owner is still listed, as Informational; an entry that matches no owner is
	// ignored. An owner left running re-applies the old manifests and undoes the traffic switch.
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=512
	// +listType=set
	// +optional
	AcceptGitOpsOwners []string `json:"acceptGitOpsOwners,omitempty"`
}

// CleanupSpec says what becomes of the old stack.
type CleanupSpec struct {
	// DeleteSource deletes the old Deployments once the migration completes. By default they are
	// kept, scaled to 0, so a rollback can bring them back quickly. The snapshot is kept either way.
	// +optional
	DeleteSource bool `json:"deleteSource,omitempty"`
}

// TrafficSpec is how traffic moves to the release.
type TrafficSpec struct {
	// Method is ServiceSelector (re-point the selectors of the source Services; default) or Ingress
	// (re-point the Ingress backends at the release's Services).
	// +kubebuilder:default=ServiceSelector
	// +optional
	Method TrafficMethod `json:"method,omitempty"`
}

// MaintenanceSpec overrides the project's maintenance page: nginx serving one HTML page with
// status 503, and 200 on Mastodon's health paths so the load balancer keeps the backends.
type MaintenanceSpec struct {
	// Page is the HTML shown instead of the project's default page.
	// +kubebuilder:validation:MaxLength=262144
	// +optional
	Page string `json:"page,omitempty"`

	// Image is an nginx image that runs as a non-root user, instead of the default
	// nginxinc/nginx-unprivileged.
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Image string `json:"image,omitempty"`
}

// HealthChecksSpec names Mastodon's endpoints that prove a stack works. /health and the
// streaming health path answer OK without touching the database, so Verify also asks the
// instance API, which reads the database and the cache and reports the running version, and
// opens a WebSocket to the streaming API.
type HealthChecksSpec struct {
	// WebHealthPath is web's liveness endpoint, which must answer 200.
	// +kubebuilder:default="/health"
	// +kubebuilder:validation:Pattern=`^/[^\s#]*$`
	// +kubebuilder:validation:MaxLength=256
	// +optional
	WebHealthPath string `json:"webHealthPath,omitempty"`

	// StreamingHealthPath is streaming's liveness endpoint, which must answer 200.
	// +kubebuilder:default="/api/v1/streaming/health"
	// +kubebuilder:validation:Pattern=`^/[^\s#]*$`
	// +kubebuilder:validation:MaxLength=256
	// +optional
	StreamingHealthPath string `json:"streamingHealthPath,omitempty"`

	// InstancePath is the instance API on web: it must answer 200 with JSON whose version is the
	// Mastodon version of the stack asked (the image tag it runs; build metadata such as
	// +glitch is ignored, and a tag that is no version, such as nightly, is not compared).
	// +kubebuilder:default="/api/v2/instance"
	// +kubebuilder:validation:Pattern=`^/[^\s#]*$`
	// +kubebuilder:validation:MaxLength=256
	// +optional
	InstancePath string `json:"instancePath,omitempty"`

	// StreamingPath is the streaming API on streaming, where a WebSocket must upgrade (101). A
	// query selects a stream, such as /api/v1/streaming?stream=public.
	// +kubebuilder:default="/api/v1/streaming"
	// +kubebuilder:validation:Pattern=`^/[^\s#]*$`
	// +kubebuilder:validation:MaxLength=256
	// +optional
	StreamingPath string `json:"streamingPath,omitempty"`

	// AccessTokenSecretRef names the key of a Secret, in the migration's namespace, holding an
	// access token sent as a bearer token to the instance and streaming APIs, for instances that
	// require one (limited federation, no public timelines). It is never logged nor shown.
	// +optional
	AccessTokenSecretRef *corev1.SecretKeySelector `json:"accessTokenSecretRef,omitempty"`
}

// AnalysisSpec is how the new stack is watched.
// +kubebuilder:validation:XValidation:rule="!has(self.interval) || !has(self.window) || duration(self.window) >= duration(self.interval)",message="analysis.window must be at least analysis.interval"
// +kubebuilder:validation:XValidation:rule="!has(self.prometheus) || !has(self.prometheus.errorRateQuery) || has(self.prometheus.requestsQuery) || (has(self.minRequests) && self.minRequests == 0)",message="analysis.prometheus.errorRateQuery needs analysis.prometheus.requestsQuery too, the number of requests the rate is over, so that a rate over fewer than analysis.minRequests is not judged; or set analysis.minRequests: 0 to judge every rate"
type AnalysisSpec struct {
	// Interval between two measurements.
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('5s') && duration(self) <= duration('10m')",message="analysis.interval must be between 5s and 10m"
	// +optional
	Interval *metav1.Duration `json:"interval,omitempty"`

	// Window is how long the new stack is watched after it takes traffic before the migration
	// completes.
	// +kubebuilder:default="30m"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('168h')",message="analysis.window must be between 0s and 168h"
	// +optional
	Window *metav1.Duration `json:"window,omitempty"`

	// MinRequests is the fewest requests a rate from Prometheus or Cloud Monitoring must count
	// over the interval to be judged: fewer is Inconclusive, never a pass nor a breach (2 errors
	// in 3 requests at night are not a 67% error rate). The HTTP probe makes its own traffic and
	// is judged over the requests it sends (analysis.http.requests), however few.
	// +kubebuilder:default=50
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000
	// +optional
	MinRequests *int32 `json:"minRequests,omitempty"`

	// HTTP probes a URL of the instance, such as https://example.social/health, and asks the
	// instance API (healthChecks.instancePath) on the same host once per measurement.
	// +optional
	HTTP *HTTPAnalysis `json:"http,omitempty"`

	// Prometheus reads the error rate and latency with PromQL.
	// +optional
	Prometheus *PrometheusAnalysis `json:"prometheus,omitempty"`

	// CloudMonitoring reads the Google Cloud HTTPS load balancer's metrics.
	// +optional
	CloudMonitoring *CloudMonitoringAnalysis `json:"cloudMonitoring,omitempty"`

	// Sidekiq reads the job queues from Redis: the age of the oldest enqueued job and whether
	// jobs are being processed.
	// +optional
	Sidekiq *SidekiqAnalysis `json:"sidekiq,omitempty"`

	// Thresholds are the rollback procedure's criteria; the defaults are the procedure's own.
	// +kubebuilder:default={}
	// +optional
	Thresholds Thresholds `json:"thresholds,omitempty"`
}

// HTTPAnalysis probes a URL.
type HTTPAnalysis struct {
	// URL to probe.
	// +kubebuilder:validation:XValidation:rule="isURL(self) && self.matches('^https?://')",message="analysis.http.url must be an http:// or https:// URL"
	// +kubebuilder:validation:MaxLength=2048
	// +required
	URL string `json:"url"`

	// Requests is how many requests each measurement sends.
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	Requests int32 `json:"requests,omitempty"`

	// Timeout of one request; a request that times out counts as failed.
	// +kubebuilder:default="5s"
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s') && duration(self) <= duration('1m')",message="analysis.http.timeout must be between 0s and 1m"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// SidekiqAnalysis reads Sidekiq's queues and counters from its Redis.
type SidekiqAnalysis struct {
	// Address of the Redis server, host:port.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +required
	Address string `json:"address"`

	// PasswordSecretRef names the key of a Secret, in the migration's namespace, that holds the
	// Redis password.
	// +optional
	PasswordSecretRef *corev1.SecretKeySelector `json:"passwordSecretRef,omitempty"`

	// DB is the Redis database number.
	// +kubebuilder:validation:Minimum=0
	// +optional
	DB int32 `json:"db,omitempty"`

	// Namespace is the key prefix Sidekiq uses (REDIS_NAMESPACE), if any.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Namespace string `json:"namespace,omitempty"`
}

// PrometheusAnalysis reads metrics from a Prometheus HTTP API.
type PrometheusAnalysis struct {
	// Address of the Prometheus server, such as http://prometheus.monitoring:9090.
	// +kubebuilder:validation:XValidation:rule="self == '' || (isURL(self) && self.matches('^https?://'))",message="analysis.prometheus.address must be an http:// or https:// URL"
	// +kubebuilder:validation:MaxLength=2048
	// +optional
	Address string `json:"address,omitempty"`

	// ErrorRateQuery is a PromQL expression giving the fraction of 5xx responses (0 to 1). The
	// default reads ingress-nginx's metrics for the migration's Ingress. $namespace, $ingress
	// and $window are replaced by the migration's namespace, spec.source.ingress and the
	// analysis interval (at least 1m, so that rate() has samples).
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	ErrorRateQuery string `json:"errorRateQuery,omitempty"`

	// LatencyQuery is a PromQL expression giving a latency in seconds; the default is the 95th
	// percentile of ingress-nginx's request duration. The same placeholders apply.
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	LatencyQuery string `json:"latencyQuery,omitempty"`

	// RequestsQuery is a PromQL expression giving the number of requests that the error rate is
	// over, compared with analysis.minRequests; the default counts ingress-nginx's requests of
	// the migration's Ingress over $window. The same placeholders apply.
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	RequestsQuery string `json:"requestsQuery,omitempty"`
}

// CloudMonitoringAnalysis reads the HTTPS load balancer's metrics from Google Cloud Monitoring.
type CloudMonitoringAnalysis struct {
	// ProjectID of the Google Cloud project.
	// +kubebuilder:validation:Pattern=`^$|^[a-z][-a-z0-9]{4,28}[a-z0-9]$`
	// +optional
	ProjectID string `json:"projectID,omitempty"`

	// Filter is added to the time series filter, such as
	// resource.labels.url_map_name = "k8s2-um-abc-mastodon-mastodon". By default the series are
	// the load balancer backends of the migration's Services (GKE NEG names carry the namespace
	// and the Service name).
	// +kubebuilder:validation:MaxLength=2048
	// +optional
	Filter string `json:"filter,omitempty"`
}

// Thresholds are the rollback procedure's criteria.
type Thresholds struct {
	// Critical acts at once (default: 5xx above 50%).
	// +kubebuilder:default={}
	// +optional
	Critical CriticalThreshold `json:"critical,omitempty"`

	// High acts once it has held for its duration (default: 5xx above 10%, latency 3x the
	// baseline, Sidekiq jobs not processed or more than 1% of them dead, for 15 minutes; the
	// oldest Sidekiq job waiting more than 120s, for 10 minutes).
	// +kubebuilder:default={}
	// +optional
	High HighThreshold `json:"high,omitempty"`

	// Medium acts once it has held for its duration (default: 5xx above 5%, for 30 minutes).
	// +kubebuilder:default={}
	// +optional
	Medium MediumThreshold `json:"medium,omitempty"`

	// Warning is shown in status and never acts (default: the oldest Sidekiq job waiting more
	// than 30s).
	// +kubebuilder:default={}
	// +optional
	Warning WarningThreshold `json:"warning,omitempty"`
}

// WarningThreshold is shown in status.analysis.warnings, never acted on.
type WarningThreshold struct {
	// QueueLatency is the age of the oldest waiting Sidekiq job above which status warns
	// (needs analysis.sidekiq); 0s turns it off.
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('24h')",message="warning.queueLatency must be a duration between 0s and 24h, such as \"30s\""
	// +optional
	QueueLatency *metav1.Duration `json:"queueLatency,omitempty"`
}

// CriticalThreshold acts as soon as it is crossed.
type CriticalThreshold struct {
	// ErrorRate is the fraction of 5xx responses, from 0 to 1, above which the stack is down.
	// +kubebuilder:default="0.5"
	// +optional
	ErrorRate Fraction `json:"errorRate,omitempty"`
}

// HighThreshold acts once crossed for a duration.
type HighThreshold struct {
	// ErrorRate is the fraction of 5xx responses, from 0 to 1.
	// +kubebuilder:default="0.1"
	// +optional
	ErrorRate Fraction `json:"errorRate,omitempty"`

	// LatencyRatio is the latency of the new stack over the baseline of the old one. A latency
	// of 100ms or less is never a breach, whatever its ratio: 4ms against a 1ms baseline is
	// jitter, not a slower stack.
	// +kubebuilder:default="3"
	// +kubebuilder:validation:XValidation:rule="self.matches('^[0-9]*[.]?[0-9]+$') && double(self) >= 1.0",message="latencyRatio must be a decimal of at least 1, such as \"3\""
	// +kubebuilder:validation:MaxLength=16
	// +optional
	LatencyRatio string `json:"latencyRatio,omitempty"`

	// JobsNotProcessed counts Sidekiq jobs waiting while none is processed as a high breach
	// (needs analysis.sidekiq).
	// +kubebuilder:default=true
	// +optional
	JobsNotProcessed *bool `json:"jobsNotProcessed,omitempty"`

	// DeadJobsRatio is the Sidekiq jobs that died since the baseline over those processed
	// since, from 0 to 1, above which the new stack's jobs are failing (needs analysis.sidekiq);
	// "0" turns it off. It acts once it has held for high.for.
	// +kubebuilder:default="0.01"
	// +optional
	DeadJobsRatio Fraction `json:"deadJobsRatio,omitempty"`

	// QueueLatency is the age of the oldest waiting Sidekiq job above which the new stack's
	// jobs fall behind (needs analysis.sidekiq); 0s turns it off. It acts once it has held for
	// queueLatencyFor.
	// +kubebuilder:default="120s"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('24h')",message="high.queueLatency must be a duration between 0s and 24h, such as \"120s\""
	// +optional
	QueueLatency *metav1.Duration `json:"queueLatency,omitempty"`

	// QueueLatencyFor is how long the queue latency must stay above high.queueLatency before it
	// acts.
	// +kubebuilder:default="10m"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('24h')",message="high.queueLatencyFor must be a duration between 0s and 24h, such as \"10m\""
	// +optional
	QueueLatencyFor *metav1.Duration `json:"queueLatencyFor,omitempty"`

	// For is how long the threshold must hold before it acts.
	// +kubebuilder:default="15m"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('24h')",message="for must be a duration between 0s and 24h, such as \"15m\""
	// +optional
	For *metav1.Duration `json:"for,omitempty"`
}

// MediumThreshold acts once crossed for a duration.
type MediumThreshold struct {
	// ErrorRate is the fraction of 5xx responses, from 0 to 1.
	// +kubebuilder:default="0.05"
	// +optional
	ErrorRate Fraction `json:"errorRate,omitempty"`

	// For is how long the threshold must hold before it acts.
	// +kubebuilder:default="30m"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('24h')",message="for must be a duration between 0s and 24h, such as \"15m\""
	// +optional
	For *metav1.Duration `json:"for,omitempty"`
}

// Fraction is a decimal between 0 and 1, written as a string such as "0.1".
// +kubebuilder:validation:XValidation:rule="self.matches('^[0-9]*[.]?[0-9]+$') && double(self) >= 0.0 && double(self) <= 1.0",message="must be a decimal fraction between 0 and 1, such as \"0.1\""
// +kubebuilder:validation:MaxLength=16
type Fraction string

// RollbackSpec says what the operator may undo by itself.
type RollbackSpec struct {
	// Automatic lets the analysis verdict start a rollback. When false, a verdict that calls for
	// one stops the migration (phase Failed) with the command that rolls back, until a person acts.
	// +kubebuilder:default=true
	// +optional
	Automatic *bool `json:"automatic,omitempty"`

	// MaxAutomaticLevel is the highest level an automatic rollback may take. Level 3 loses data
	// and is never automatic.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=2
	// +optional
	MaxAutomaticLevel int32 `json:"maxAutomaticLevel,omitempty"`

	// SourceReadyTimeout is how long a rollback waits for the old pods to be ready (the
	// runbook's kubectl wait --timeout=60s).
	// +kubebuilder:default="60s"
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s') && duration(self) <= duration('1h')",message="rollback.sourceReadyTimeout must be between 0s and 1h"
	// +optional
	SourceReadyTimeout *metav1.Duration `json:"sourceReadyTimeout,omitempty"`

	// Watch is how long the restored stack is watched after a rollback; the result goes into
	// status.rollback.
	// +kubebuilder:default="30m"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('168h')",message="rollback.watch must be between 0s and 168h"
	// +optional
	Watch *metav1.Duration `json:"watch,omitempty"`

	// Database is where the pre-migration database backup is taken and restored from.
	// +optional
	Database DatabaseSpec `json:"database,omitempty"`
}

// DatabaseSpec names the database to back up before the migration.
type DatabaseSpec struct {
	// CloudSQL is a Cloud SQL instance, backed up and restored through the Cloud SQL Admin API.
	// +optional
	CloudSQL *CloudSQLInstance `json:"cloudSQL,omitempty"`
}

// CloudSQLInstance names a Cloud SQL instance.
type CloudSQLInstance struct {
	// Project is the Google Cloud project of the instance.
	// +kubebuilder:validation:MinLength=1
	// +required
	Project string `json:"project"`

	// Instance is the Cloud SQL instance name, such as mastodon-db.
	// +kubebuilder:validation:MinLength=1
	// +required
	Instance string `json:"instance"`

	// SharedInstance: "confirmed" says that a level 3 rollback may restore the backup although
	// the instance holds other databases than Mastodon's: a restore rewinds every database on
	// the instance. Without it, level 3 refuses on such an instance and names the others.
	// +kubebuilder:validation:Enum=confirmed
	// +optional
	SharedInstance SharedInstance `json:"sharedInstance,omitempty"`
}

// SharedInstance confirms that restoring the instance's backup may rewind other databases.
type SharedInstance string

// SharedInstanceConfirmed is the one value of spec.rollback.database.cloudSQL.sharedInstance.
const SharedInstanceConfirmed SharedInstance = "confirmed"

// Phase is where a migration stands.
// +kubebuilder:validation:Enum=Pending;Preflight;BackingUp;Installing;Verifying;ShiftingTraffic;Observing;Completed;RollingBack;RolledBack;Failed
type Phase string

// The phases of a migration, in the order a BlueGreen migration goes through them.
const (
	PhasePending         Phase = "Pending"
	PhasePreflight       Phase = "Preflight"
	PhaseBackingUp       Phase = "BackingUp"
	PhaseInstalling      Phase = "Installing"
	PhaseVerifying       Phase = "Verifying"
	PhaseShiftingTraffic Phase = "ShiftingTraffic"
	PhaseObserving       Phase = "Observing"
	PhaseCompleted       Phase = "Completed"
	PhaseRollingBack     Phase = "RollingBack"
	PhaseRolledBack      Phase = "RolledBack"
	PhaseFailed          Phase = "Failed"
)

// MastodonMigrationStatus is what the operator has done and seen.
type MastodonMigrationStatus struct {
	// Phase is where the migration stands.
	// +optional
	Phase Phase `json:"phase,omitempty"`

	// ObservedGeneration is the last generation of the spec the operator has fully handled.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready, Reconciling and Stalled (the Kubernetes API conventions, read by kstatus,
	// Argo CD and Flux), and PreflightPassed.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Steps records each step of the plan: its state, times and outcome.
	// +listType=map
	// +listMapKey=name
	// +optional
	Steps []StepStatus `json:"steps,omitempty"`

	// Preflight lists what the last preflight found, most serious first: Blocks, then Changes,
	// then Informational. It keeps the first 50; preflightSummary counts them all.
	// +kubebuilder:validation:MaxItems=50
	// +listType=atomic
	// +optional
	Preflight []Finding `json:"preflight,omitempty"`

	// PreflightSummary counts the last preflight's findings by class, listed or not.
	// +optional
	PreflightSummary *PreflightSummary `json:"preflightSummary,omitempty"`

	// Snapshot is where the live objects were stored before anything changed.
	// +optional
	Snapshot *SnapshotStatus `json:"snapshot,omitempty"`

	// DatabaseBackup is the on-demand database backup taken before the install.
	// +optional
	DatabaseBackup *DatabaseBackupStatus `json:"databaseBackup,omitempty"`

	// Release is the installed Helm release.
	// +optional
	Release *ReleaseStatus `json:"release,omitempty"`

	// Adoption is what InPlace hands from the old stack to the release when the chart names
	// its objects as the old stack did.
	// +optional
	Adoption *AdoptionStatus `json:"adoption,omitempty"`

	// Traffic is where the traffic points.
	// +optional
	Traffic *TrafficStatus `json:"traffic,omitempty"`

	// Analysis is the last measurement of the new stack and its verdict.
	// +optional
	Analysis *AnalysisStatus `json:"analysis,omitempty"`

	// Schema records that the release's hooks migrated the database to another Mastodon
	// version than the old stack's: the old code now runs on the new schema.
	// +optional
	Schema *SchemaStatus `json:"schema,omitempty"`

	// Rollback records the rollback that ran, if any.
	// +optional
	Rollback *RollbackStatus `json:"rollback,omitempty"`

	// Scheduler says which Deployment consumes Sidekiq's scheduler queue, and each hand-over of
	// it between the stacks: only one may, or every scheduled job runs twice.
	// +optional
	Scheduler *SchedulerStatus `json:"scheduler,omitempty"`
}

// SchedulerStatus is who holds Sidekiq's scheduler queue.
type SchedulerStatus struct {
	// Holder is the Deployment (or Deployments, comma-separated) whose pods consume the
	// scheduler queue; empty while it is handed over.
	// +optional
	Holder string `json:"holder,omitempty"`
	// Since is when the holder's pods were ready.
	// +optional
	Since *metav1.MicroTime `json:"since,omitempty"`
	// HandOvers are the hand-overs so far, oldest first: to the release, and back at a rollback.
	// +kubebuilder:validation:MaxItems=4
	// +listType=atomic
	// +optional
	HandOvers []SchedulerHandOver `json:"handOvers,omitempty"`
}

// SchedulerHandOver is one hand-over of the scheduler queue: the new consumer starts only once
// the old one's pods are gone.
type SchedulerHandOver struct {
	// From are the Deployments that held the scheduler, comma-separated; empty when none did.
	// +optional
	From string `json:"from,omitempty"`
	// To are the Deployments that take it, comma-separated; empty when none does.
	// +optional
	To string `json:"to,omitempty"`
	// OldStoppedAt is when the last pod of From was seen gone.
	// +optional
	OldStoppedAt *metav1.MicroTime `json:"oldStoppedAt,omitempty"`
	// NewStartedAt is when the pods of To were seen ready.
	// +optional
	NewStartedAt *metav1.MicroTime `json:"newStartedAt,omitempty"`
}

// StepState is the state of one step.
// +kubebuilder:validation:Enum=Pending;Running;Succeeded;Failed;Skipped
type StepState string

// The states of a step.
const (
	StepPending   StepState = "Pending"
	StepRunning   StepState = "Running"
	StepSucceeded StepState = "Succeeded"
	StepFailed    StepState = "Failed"
	StepSkipped   StepState = "Skipped"
)

// StepStatus is the record of one step.
type StepStatus struct {
	// Name of the step, such as Preflight or Snapshot.
	// +required
	Name string `json:"name"`

	// State of the step.
	// +required
	State StepState `json:"state"`

	// Generation is the spec generation the step last ran against.
	// +optional
	Generation int64 `json:"generation,omitempty"`

	// StartedAt is when the step first ran, to the microsecond: most steps take less than a
	// second.
	// +optional
	StartedAt *metav1.MicroTime `json:"startedAt,omitempty"`

	// FinishedAt is when the step succeeded, failed or was skipped.
	// +optional
	FinishedAt *metav1.MicroTime `json:"finishedAt,omitempty"`

	// Message says what the step did, or why it waits or failed.
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	Message string `json:"message,omitempty"`
}

// FindingClass says what a finding means for the migration.
// +kubebuilder:validation:Enum=Blocks;Changes;Informational
type FindingClass string

// The classes of a finding. Blocks and Changes stop the migration (a Change can be accepted in
// spec.preflight); Informational ones are only listed.
const (
	// FindingBlocks: the new stack would not start, would lose access to data, or the migration
	// cannot go on safely.
	FindingBlocks FindingClass = "Blocks"
	// FindingChanges: the new stack would behave differently (a value differs, a setting the old
	// pods had is dropped).
	FindingChanges FindingClass = "Changes"
	// FindingInformational: a difference that changes nothing Mastodon does, such as a variable
	// added at the value Mastodon uses when it is unset.
	FindingInformational FindingClass = "Informational"
)

// Finding is one thing that preflight found.
type Finding struct {
	// Check is the name of the check that found it, such as SourceDeployments.
	// +kubebuilder:validation:MaxLength=64
	// +required
	Check string `json:"check"`

	// Class is what the finding means: Blocks (the default), Changes or Informational.
	// +optional
	Class FindingClass `json:"class,omitempty"`

	// Object names what the finding is about, such as Deployment/mastodon-web.
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Object string `json:"object,omitempty"`

	// Message says what is wrong and what to do about it.
	// +kubebuilder:validation:MaxLength=1024
	// +required
	Message string `json:"message"`
}

// PreflightSummary counts findings by class.
type PreflightSummary struct {
	// Blocks is how many findings block the migration.
	Blocks int32 `json:"blocks"`
	// Changes is how many findings change behaviour (accepted ones are not found).
	Changes int32 `json:"changes"`
	// Informational is how many findings are only listed.
	Informational int32 `json:"informational"`
	// Omitted is how many findings status.preflight leaves out to stay bounded.
	// +optional
	Omitted int32 `json:"omitted,omitempty"`
}

// SnapshotStatus is where the live objects were stored.
type SnapshotStatus struct {
	// Name of the snapshot; its parts are Secrets labelled with it.
	Name string `json:"name"`
	// Objects is how many objects the snapshot holds.
	Objects int32 `json:"objects"`
	// TakenAt is when the snapshot was stored.
	// +optional
	TakenAt *metav1.Time `json:"takenAt,omitempty"`
}

// DatabaseBackupStatus is the on-demand database backup.
type DatabaseBackupStatus struct {
	// Instance is the backed-up Cloud SQL instance, as project/instance.
	Instance string `json:"instance"`
	// ID of the backup run.
	// +optional
	ID string `json:"id,omitempty"`
	// State of the backup, as the Admin API reports it.
	// +optional
	State string `json:"state,omitempty"`
	// TakenAt is when the backup finished.
	// +optional
	TakenAt *metav1.Time `json:"takenAt,omitempty"`
	// RestoreOperation is the Admin API operation of a level 3 restore.
	// +optional
	RestoreOperation string `json:"restoreOperation,omitempty"`
}

// ReleaseStatus is the Helm release as last seen.
type ReleaseStatus struct {
	// Name of the release.
	Name string `json:"name"`
	// Revision of the release.
	// +optional
	Revision int32 `json:"revision,omitempty"`
	// ChartVersion is the version of the installed chart.
	// +optional
	ChartVersion string `json:"chartVersion,omitempty"`
	// Status is Helm's status of the release, such as deployed.
	// +optional
	Status string `json:"status,omitempty"`
	// GeneratedValues is the ConfigMap holding the values derived from the source stack
	// (spec.release.generateValues), for review before the install.
	// +optional
	GeneratedValues string `json:"generatedValues,omitempty"`
}

// AdoptionStatus is what the release took over from the old stack (InPlace).
type AdoptionStatus struct {
	// Adopted are the objects Helm took over as they were, as Kind/name: the roll steps move
	// their traffic, and a level 2 rollback keeps them and restores them from the snapshot.
	// +listType=atomic
	// +optional
	Adopted []string `json:"adopted,omitempty"`
	// SetAside are the old Deployments whose names the release's take: each runs on under a
	// new name, with the same pods, until its component rolls.
	// +listType=map
	// +listMapKey=name
	// +optional
	SetAside []SetAsideDeployment `json:"setAside,omitempty"`
}

// SetAsideDeployment is an old Deployment that runs on under another name.
type SetAsideDeployment struct {
	// Name is the Deployment's name in the snapshot, which the release's Deployment now has.
	Name string `json:"name"`
	// As is the name it runs on under.
	As string `json:"as"`
}

// TrafficTarget is which stack serves the traffic.
// +kubebuilder:validation:Enum=Source;Release;Maintenance
type TrafficTarget string

// The stacks that traffic can point at.
const (
	TrafficToSource      TrafficTarget = "Source"
	TrafficToRelease     TrafficTarget = "Release"
	TrafficToMaintenance TrafficTarget = "Maintenance"
)

// TrafficStatus is where the traffic points.
type TrafficStatus struct {
	// Target is the stack that serves the traffic.
	Target TrafficTarget `json:"target"`
	// Method is how it was moved.
	// +optional
	Method TrafficMethod `json:"method,omitempty"`
	// SwitchedAt is when it last moved.
	// +optional
	SwitchedAt *metav1.Time `json:"switchedAt,omitempty"`
	// Changes lists each field the switch changed, with its value before and after.
	// +listType=atomic
	// +optional
	Changes []TrafficChange `json:"changes,omitempty"`
}

// TrafficChange is one field of one object that the traffic switch changed, recorded so that a
// rollback can put it back.
type TrafficChange struct {
	// Kind of the changed object: Service or Ingress.
	Kind string `json:"kind"`
	// Name of the changed object.
	Name string `json:"name"`
	// Path is the changed field's JSON pointer, such as /spec/selector.
	Path string `json:"path"`
	// Component is the component whose traffic the field carries: web or streaming.
	// +optional
	Component string `json:"component,omitempty"`
	// Before is the field's JSON before the switch; empty when it was absent.
	// +optional
	Before string `json:"before,omitempty"`
	// After is the field's JSON after the switch; empty when it is removed.
	// +optional
	After string `json:"after,omitempty"`
}

// AnalysisStatus is the last measurement of the new stack.
type AnalysisStatus struct {
	// Verdict of the last measurement: Pass, Inconclusive (no data), Breaching (a threshold is
	// crossed but has not held long enough to act) or Failed (a rollback is called for).
	// +optional
	Verdict string `json:"verdict,omitempty"`
	// ErrorRate is the last measured fraction of 5xx responses, the worst of the providers.
	// +optional
	ErrorRate string `json:"errorRate,omitempty"`
	// Latency is the last measured latency, the worst of the providers.
	// +optional
	Latency string `json:"latency,omitempty"`
	// LatencyRatio is the last latency over the baseline.
	// +optional
	LatencyRatio string `json:"latencyRatio,omitempty"`
	// QueueLatency is the age of the oldest enqueued Sidekiq job.
	// +optional
	QueueLatency string `json:"queueLatency,omitempty"`
	// JobsProcessed is Sidekiq's processed counter at the last measurement; a counter that does
	// not move while jobs wait means jobs are not processed.
	// +optional
	JobsProcessed *int64 `json:"jobsProcessed,omitempty"`
	// JobsSinceBaseline is what Sidekiq processed, failed, added to its retry set and to its
	// dead set since the baseline.
	// +optional
	JobsSinceBaseline *SidekiqJobs `json:"jobsSinceBaseline,omitempty"`
	// DeadJobsRatio is the dead jobs since the baseline over the processed ones.
	// +optional
	DeadJobsRatio string `json:"deadJobsRatio,omitempty"`
	// Warnings are thresholds crossed that never act, such as the queue latency's warning.
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MaxLength=256
	// +listType=atomic
	// +optional
	Warnings []string `json:"warnings,omitempty"`
	// Baseline is the old stack measured before the traffic moved.
	// +optional
	Baseline *Baseline `json:"baseline,omitempty"`
	// Breaches are the thresholds crossed now, each with since when.
	// +listType=atomic
	// +optional
	Breaches []Breach `json:"breaches,omitempty"`
	// Providers is the state of each metric provider.
	// +listType=map
	// +listMapKey=name
	// +optional
	Providers []ProviderStatus `json:"providers,omitempty"`
	// LastMeasuredAt is when the last measurement was taken.
	// +optional
	LastMeasuredAt *metav1.Time `json:"lastMeasuredAt,omitempty"`
	// UnhealthySince is when the new stack was first seen not ready in the current run of bad
	// measurements; the operator acts once it has lasted an interval.
	// +optional
	UnhealthySince *metav1.Time `json:"unhealthySince,omitempty"`
}

// Baseline is the old stack's error rate, latency and Sidekiq counters before the traffic moved.
type Baseline struct {
	// ErrorRate of the old stack.
	// +optional
	ErrorRate string `json:"errorRate,omitempty"`
	// Latency of the old stack.
	// +optional
	Latency string `json:"latency,omitempty"`
	// Jobs are Sidekiq's counters and sets at the baseline, which the new stack's failures
	// are counted from.
	// +optional
	Jobs *SidekiqJobs `json:"jobs,omitempty"`
	// MeasuredAt is when it was measured.
	// +optional
	MeasuredAt *metav1.Time `json:"measuredAt,omitempty"`
}

// SchemaStatus is the database schema after the release's migration hooks ran.
type SchemaStatus struct {
	// From is the old stack's Mastodon image tag, whose code no longer matches the schema.
	// +kubebuilder:validation:MaxLength=128
	From string `json:"from"`
	// Version is the release's Mastodon image tag, whose migrations ran.
	// +kubebuilder:validation:MaxLength=128
	Version string `json:"version"`
	// MigratedAt is when the install, its db:prepare hook done, recorded it.
	MigratedAt metav1.Time `json:"migratedAt"`
}

// SidekiqJobs are Sidekiq's counters (stat:processed, stat:failed) and the sizes of its retry
// and dead sets, or their growth.
type SidekiqJobs struct {
	Processed int64 `json:"processed"`
	Failed    int64 `json:"failed"`
	Retry     int64 `json:"retry"`
	Dead      int64 `json:"dead"`
}

// Breach is one threshold crossed.
type Breach struct {
	// Severity is Critical, High or Medium.
	Severity string `json:"severity"`
	// Metric is errorRate, latencyRatio, jobsNotProcessed, deadJobsRatio or queueLatency.
	Metric string `json:"metric"`
	// Value measured.
	Value string `json:"value"`
	// Threshold crossed.
	Threshold string `json:"threshold"`
	// Since is when the breach was first measured in the current run of breaching measurements.
	Since metav1.Time `json:"since"`
	// For is how long it must hold before it acts.
	// +optional
	For string `json:"for,omitempty"`
}

// ProviderStatus is the state of one metric provider.
type ProviderStatus struct {
	// Name of the provider: http, prometheus, cloudMonitoring or sidekiq.
	Name string `json:"name"`
	// Available is false while the provider gives no data.
	Available bool `json:"available"`
	// Message is the provider's last values, or why it gave no data.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Message string `json:"message,omitempty"`
	// Since is when Available last changed.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
}

// RollbackStatus records a rollback.
type RollbackStatus struct {
	// Level of the rollback.
	Level int32 `json:"level"`
	// Trigger is what asked for it: Automatic, RollbackLevel (the spec field) or MastodonRollback.
	Trigger string `json:"trigger"`
	// Reason says why.
	// +kubebuilder:validation:MaxLength=2048
	// +optional
	Reason string `json:"reason,omitempty"`
	// Breaches are the metric values that caused an automatic rollback.
	// +listType=atomic
	// +optional
	Breaches []Breach `json:"breaches,omitempty"`
	// StartedAt is when it started, to the microsecond: a level 1 rollback takes seconds.
	// +optional
	StartedAt *metav1.MicroTime `json:"startedAt,omitempty"`
	// FinishedAt is when it finished.
	// +optional
	FinishedAt *metav1.MicroTime `json:"finishedAt,omitempty"`
	// WatchedUntil is when the watch of the restored stack ends, to the microsecond like
	// FinishedAt: a whole second cut off the end made a 10 s watch read "watched for 9s".
	// +optional
	WatchedUntil *metav1.MicroTime `json:"watchedUntil,omitempty"`
	// Result of the watch of the restored stack: Watching, Healthy or Unhealthy, with why.
	// +kubebuilder:validation:MaxLength=2048
	// +optional
	Result string `json:"result,omitempty"`
	// Uninstall is what the level 2 uninstall of the release deletes and what it keeps, recorded
	// before it runs. The kept objects (the release's PersistentVolumeClaims, and the Secrets and
	// ConfigMaps the old stack reads too) stay for a person to delete once the data is safe.
	// +optional
	Uninstall *UninstallStatus `json:"uninstall,omitempty"`
}

// UninstallStatus lists, as Kind/name, what uninstalling the release does to its objects.
type UninstallStatus struct {
	// Summary counts both lists, then names what is kept.
	// +kubebuilder:validation:MaxLength=2048
	// +required
	Summary string `json:"summary"`
	// Deletes are the objects the uninstall deletes, the first 50.
	// +kubebuilder:validation:MaxItems=50
	// +kubebuilder:validation:items:MaxLength=512
	// +listType=atomic
	// +optional
	Deletes []string `json:"deletes,omitempty"`
	// Keeps are the objects it leaves in place (helm.sh/resource-policy: keep), the first 50.
	// +kubebuilder:validation:MaxItems=50
	// +kubebuilder:validation:items:MaxLength=512
	// +listType=atomic
	// +optional
	Keeps []string `json:"keeps,omitempty"`
}

// MastodonMigration carries a Kustomize-managed Mastodon over to a Helm release of the official
// chart, and rolls it back when the new stack misbehaves.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=mmig;mastomig,categories=mastodon
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 45",message="a MastodonMigration's name can be at most 45 characters: its snapshots and generated values are named and labelled after it"
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Strategy",type=string,JSONPath=`.spec.strategy`
// +kubebuilder:printcolumn:name="Release",type=string,JSONPath=`.spec.release.name`
// +kubebuilder:printcolumn:name="Traffic",type=string,JSONPath=`.status.traffic.target`
// +kubebuilder:printcolumn:name="Error rate",type=string,JSONPath=`.status.analysis.errorRate`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`,priority=1
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MastodonMigration struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec MastodonMigrationSpec `json:"spec"`
	// Status is what the operator observed and did. Before its first write it holds
	// observedGeneration 0, so kstatus (Flux, kubectl wait) reads a new object as InProgress,
	// not Current.
	// +optional
	// +kubebuilder:default={observedGeneration: 0}
	Status MastodonMigrationStatus `json:"status,omitempty"`
}

// MastodonMigrationList is a list of MastodonMigrations.
// +kubebuilder:object:root=true
type MastodonMigrationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MastodonMigration `json:"items"`
}

func init() {
	SchemeBuilder.Register(&MastodonMigration{}, &MastodonMigrationList{})
}
