// Package values derives the values of the official Mastodon chart from the Kustomize-managed
// stack it replaces: the runbook's configuration mapping, from the environment, commands and
// pod specs of the old Deployments to chart values.
//
// Of the Secrets the old pods use it reads the names and keys, and the values of the variables
// that are configuration rather than credentials (configInSecret: hosts, ports, domains, ...),
// which the chart takes as plain values. Credentials are only referenced: the existingSecret
// settings of the chart where it has one, the generated secretEnv, which the operator adds to
// the release's pods itself, where it has none.
package values

import (
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/envparity"
	"github.com/mastodon-operator/mastodon-operator/internal/scheduler"
)

// Source is the stack as it runs today.
type Source struct {
	// Web and Streaming are the Deployments of Mastodon's web (Puma) and streaming servers;
	// Web is required.
	Web, Streaming *appsv1.Deployment
	// Sidekiq are the Deployments of the Sidekiq workers, one chart worker each.
	Sidekiq []*appsv1.Deployment
	// ConfigMaps are those the pods reference (envFrom, configMapKeyRef), by name.
	ConfigMaps map[string]*corev1.ConfigMap
	// Secrets are those the pods reference, by name. Of their values only those of the
	// variables in configInSecret are copied; others are compared where two components read a
	// variable from different places, never copied.
	Secrets map[string]*corev1.Secret
	// Ingress is the name of the old stack's Ingress, which the migration keeps and points at
	// the release's pods; empty when there is none.
	Ingress string
	// HPAs are the HorizontalPodAutoscalers that Finish re-points at the release
	// (spec.source.extraResources): a Sidekiq worker one of them scales beyond one pod runs that
	// many, however many its replicas say.
	HPAs []*autoscalingv2.HorizontalPodAutoscaler
}

// NoteKind classifies a Note.
type NoteKind string

const (
	// Unmapped: a variable or setting of the old pods that the new pods will not have, or
	// not from the same place.
	Unmapped NoteKind = "Unmapped"
	// Required: the chart needs something the old stack does not say; the install fails (or
	// the pods do not start) until spec.release.values gives it.
	Required NoteKind = "Required"
	// ChartDefault: the new pods get a value from the chart's defaults that the old pods did
	// not have, and it may not be what Mastodon did without it.
	ChartDefault NoteKind = "ChartDefault"
	// Conflict: the old Deployments disagree where the chart has one setting; the note says
	// which one was taken.
	Conflict NoteKind = "Conflict"
	// Adjusted: a value the old pods did not set explicitly, filled in so that the new pods
	// behave as the old ones did.
	Adjusted NoteKind = "Adjusted"
	// FromSecret: configuration the old pods read from a Secret, copied into the values as a
	// plain value because it is no credential (configInSecret says why).
	FromSecret NoteKind = "FromSecret"
	// Injected: a variable the old pods read from a Secret that the chart cannot pass; the
	// generated secretEnv gives it to the release's pods from the same Secret key.
	Injected NoteKind = "Injected"
	// Unpinned: the old pods run an image tag that moves; the new pods may pull another build.
	Unpinned NoteKind = "Unpinned"
)

// Note is something about the generated values a person should know before the install. It
// never holds a Secret's value.
type Note struct {
	Kind NoteKind
	// Variable is the environment variable concerned, if any.
	Variable string
	Message  string
}

func (n Note) String() string {
	if n.Variable == "" {
		return string(n.Kind) + ": " + n.Message
	}
	return string(n.Kind) + ": " + n.Variable + ": " + n.Message
}

// Generated is what GenerateWithNotes derives from the source stack.
type Generated struct {
	// Values are the chart values.
	Values map[string]any
	// Notes say what could not be carried over, or had to be chosen.
	Notes []Note
	// SecretEnv are the variables the old pods read from Secrets that the chart cannot pass,
	// sorted by name: the operator adds each, as a secretKeyRef to the same Secret key, to
	// every Mastodon container and hook Job of the release (with spec.release.secretEnv).
	SecretEnv []v1alpha1.SecretEnvVar
}

// Generate derives chart values from src; see GenerateWithNotes, whose notes and secretEnv it
// drops.
func Generate(src Source) (map[string]any, error) {
	g, err := GenerateWithNotes(src)
	return g.Values, err
}

// GenerateWithNotes derives chart values from src, the variables the chart cannot pass from a
// Secret, and says what it could not carry over or had to choose. The mapping:
//
//   - the environment of each container (as the kubelet resolves it, see envparity.Effective)
//     to the chart's settings: LOCAL_DOMAIN, WEB_DOMAIN, ALTERNATE_DOMAINS, DEFAULT_LOCALE,
//     SINGLE_USER_MODE, AUTHORIZED_FETCH, TRUSTED_PROXY_IP, the log levels to mastodon.*; DB_*
//     and REPLICA_DB_* to postgresql.*, REDIS_*, SIDEKIQ_REDIS_* and CACHE_REDIS_* to redis.*,
//     ES_* to elasticsearch.*, the S3_* the chart knows to mastodon.s3.*, SMTP_* to
//     mastodon.smtp.*; anything else to mastodon.extraEnvVars, which every container of the
//     chart gets. A variable of configInSecret that the old pods read from a Secret is read
//     from it and mapped the same way (FromSecret);
//   - the variables the chart reads from a Secret (every group of its _secrets.tpl:
//     SECRET_KEY_BASE, VAPID_*, ACTIVE_RECORD_ENCRYPTION_*, DB_USER and DB_PASS, REDIS_PASSWORD,
//     AWS_*, SMTP_LOGIN/SMTP_PASSWORD, ES_USER/ES_PASS, ...), when the old pods read them from
//     a Secret, to the existingSecret and existingSecretKeys of their group;
//   - any other variable the old pods read from a Secret (OTP_SECRET, say), and those of a
//     group that the chart passes only when a switch the values leave off is on, to
//     Generated.SecretEnv (Injected);
//   - per component: PORT, WEB_CONCURRENCY, MIN_THREADS, MAX_THREADS, PERSISTENT_TIMEOUT of
//     the web container to mastodon.web.*; PORT and STREAMING_CLUSTER_NUM of the streaming
//     container to mastodon.streaming.*; these never go to extraEnvVars, which would give them
//     to every container;
//   - one mastodon.sidekiq.workers entry per Sidekiq Deployment: name from the Deployment,
//     concurrency from `-c`, queues from `-q` (none when the old worker had none, so that
//     Sidekiq reads config/sidekiq.yml as before); one that consumes the scheduler queue on
//     more than one pod is split, its other queues on its replicas and scheduler on a worker
//     of its own with 1 replica (splitScheduler);
//   - replicas, resources, nodeSelector, tolerations and affinity per component; the
//     placement at the top level too (for the hook Jobs) when every component has the same;
//   - the image repository and tag of the web container (and of the streaming container
//     apart), so that the migration does not change Mastodon's version; pull policy and pull
//     Secrets; a ServiceAccount other than default (serviceAccount.create false); the pod
//     security context;
//   - the chart's HTTPRoute and Ingress off: the migration keeps the old stack's routing and
//     points it at the release; S3 off unless the old pods had S3_ENABLED=true.
//
// Values are of the types the chart's values.yaml gives: ports, replicas and concurrency are
// int64, the Puma settings strings, switches bool.
func GenerateWithNotes(src Source) (Generated, error) {
	g := &generator{src: src, values: map[string]any{}, secretEnv: map[string]v1alpha1.SecretEnvVar{}}
	if err := g.run(); err != nil {
		return Generated{}, err
	}
	out := Generated{Values: g.values, Notes: g.notes}
	for _, name := range slices.Sorted(maps.Keys(g.secretEnv)) {
		out.SecretEnv = append(out.SecretEnv, g.secretEnv[name])
	}
	return out, nil
}

type generator struct {
	src       Source
	values    map[string]any
	notes     []Note
	comps     []*component
	secretEnv map[string]v1alpha1.SecretEnvVar
}

// component is one old Deployment and the Mastodon container in it.
type component struct {
	role      string // web, streaming or sidekiq
	deploy    *appsv1.Deployment
	container *corev1.Container
	// env is the container's environment, with the variables of configInSecret that come
	// from a Secret read as literals; fromSecret says from where.
	env        map[string]envparity.Value
	fromSecret map[string]envparity.Ref
}

func (c *component) String() string { return c.role + " Deployment " + c.deploy.Name }

func (g *generator) set(value any, path ...string) {
	m := g.values
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	m[path[len(path)-1]] = value
}

func (g *generator) get(path ...string) any {
	var v any = g.values
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func (g *generator) note(kind NoteKind, variable, format string, args ...any) {
	g.notes = append(g.notes, Note{Kind: kind, Variable: variable, Message: fmt.Sprintf(format, args...)})
}

func (g *generator) run() error {
	if g.src.Web == nil {
		return fmt.Errorf("the web Deployment is required")
	}
	web, err := g.component("web", g.src.Web, "web")
	if err != nil {
		return err
	}
	comps := []*component{web}
	var streaming *component
	if g.src.Streaming != nil {
		if streaming, err = g.component("streaming", g.src.Streaming, "streaming"); err != nil {
			return err
		}
		comps = append(comps, streaming)
	} else {
		g.note(ChartDefault, "", "no streaming Deployment given: the chart's streaming server gets the chart's defaults")
	}
	var workers []*component
	for i, d := range g.src.Sidekiq {
		if d == nil {
			return fmt.Errorf("sidekiq[%d]: no Deployment", i)
		}
		w, err := g.component("sidekiq", d, sidekiqContainers...)
		if err != nil {
			return err
		}
		workers = append(workers, w)
		comps = append(comps, w)
	}
	g.comps = comps

	g.noteFromSecret()
	shared := g.sharedEnv(comps)
	g.mapPlain(shared)
	g.mapAbsent(shared)
	g.mapSecrets(shared)
	g.mapRouting()
	g.mapWeb(web)
	if streaming != nil {
		g.mapStreaming(streaming)
	}
	g.noteComponentVars()
	g.mapSidekiq(workers)
	g.mapImages(web, streaming, workers)
	g.mapPods(web, streaming, workers)
	return nil
}

// component finds the Mastodon container of d and its effective environment, reading the
// configuration it takes from Secrets.
func (g *generator) component(role string, d *appsv1.Deployment, names ...string) (*component, error) {
	c, err := pickContainer(d, role, names)
	if err != nil {
		return nil, err
	}
	env, err := envparity.Effective(d.Spec.Template.Spec, c.Name, g.src.ConfigMaps, g.src.Secrets)
	if err != nil {
		return nil, fmt.Errorf("%s Deployment %s: %w", role, d.Name, err)
	}
	comp := &component{role: role, deploy: d, container: c, env: env, fromSecret: map[string]envparity.Ref{}}
	for name, v := range env {
		if _, config := configInSecret[name]; !config || v.FromSecret == nil || v.Missing {
			continue
		}
		if value, ok := secretValue(g.src.Secrets[v.FromSecret.Name], v.FromSecret.Key); ok {
			env[name] = envparity.Value{Literal: value}
			comp.fromSecret[name] = *v.FromSecret
		}
	}
	return comp, nil
}

// secretValue is the value of a Secret key, StringData winning over Data as on write.
func secretValue(s *corev1.Secret, key string) (string, bool) {
	if s == nil {
		return "", false
	}
	if v, ok := s.StringData[key]; ok {
		return v, true
	}
	v, ok := s.Data[key]
	return string(v), ok
}

// noteFromSecret says, once per variable and Secret key, which configuration was read from a
// Secret.
func (g *generator) noteFromSecret() {
	seen := map[string]bool{}
	for _, c := range g.comps {
		for _, name := range slices.Sorted(maps.Keys(c.fromSecret)) {
			ref := c.fromSecret[name]
			if id := name + "=" + ref.Name + "/" + ref.Key; !seen[id] {
				seen[id] = true
				g.note(FromSecret, name, "read from Secret %s key %s into the values: not a credential (%s)", ref.Name, ref.Key, configInSecret[name])
			}
		}
	}
}

// inject has the operator give the release's pods a variable from a Secret key (secretEnv).
func (g *generator) inject(name string, ref envparity.Ref, why string) {
	if _, done := g.secretEnv[name]; done {
		return
	}
	g.secretEnv[name] = v1alpha1.SecretEnvVar{Name: name, SecretName: ref.Name, Key: ref.Key}
	g.note(Injected, name, "comes from Secret %s key %s; %s: the operator adds it to every Mastodon container and hook Job of the release "+
		"from the same key (the generated secretEnv)", ref.Name, ref.Key, why)
}

func pickContainer(d *appsv1.Deployment, role string, names []string) (*corev1.Container, error) {
	cs := d.Spec.Template.Spec.Containers
	switch len(cs) {
	case 0:
		return nil, fmt.Errorf("%s Deployment %s has no container", role, d.Name)
	case 1:
		return &cs[0], nil
	}
	for _, name := range names {
		for i := range cs {
			if cs[i].Name == name {
				return &cs[i], nil
			}
		}
	}
	if role == "sidekiq" {
		for i := range cs {
			if sidekiqArgs(&cs[i]) != nil {
				return &cs[i], nil
			}
		}
	}
	for i := range cs {
		if strings.Contains(cs[i].Image, "mastodon") {
			return &cs[i], nil
		}
	}
	return nil, fmt.Errorf("%s Deployment %s has %d containers and none is named %s or runs a mastodon image",
		role, d.Name, len(cs), strings.Join(names, " or "))
}

// componentVars are set per component by the chart; they never go to extraEnvVars, which
// every container gets.
// componentVars are set per component by the chart, on the components listed (nil: none);
// they never go to extraEnvVars, which every container gets.
var componentVars = map[string][]string{
	"PORT":                  {"web", "streaming"},
	"WEB_CONCURRENCY":       {"web"},
	"MAX_THREADS":           {"web"},
	"MIN_THREADS":           {"web"},
	"PERSISTENT_TIMEOUT":    {"web"},
	"STREAMING_CLUSTER_NUM": {"web", "streaming", "sidekiq"}, // in the chart's ConfigMap
	"BIND":                  nil,
}

// shared is a variable of the environment the chart gives every container, and the component
// it was taken from.
type shared struct {
	value envparity.Value
	from  *component
}

// sharedEnv merges the components' environments, web first: the chart has one environment for
// all of them.
func (g *generator) sharedEnv(comps []*component) map[string]shared {
	env := map[string]shared{}
	for _, c := range comps {
		for _, name := range slices.Sorted(maps.Keys(c.env)) {
			if _, ok := componentVars[name]; ok {
				continue
			}
			v := c.env[name]
			prev, ok := env[name]
			if !ok {
				env[name] = shared{value: v, from: c}
				continue
			}
			if !g.sameValue(prev.value, v) {
				g.note(Conflict, name, "%s has %s, %s has %s; the chart gives every container one value: that of %s",
					prev.from, prev.value, c, v, prev.from)
			}
		}
	}
	return env
}

// sameValue says whether two components see the same value. A Secret's value is compared with
// the other side's, never copied: the same user name in a ConfigMap and in a Secret is no
// conflict.
func (g *generator) sameValue(a, b envparity.Value) bool {
	resolve := func(v envparity.Value) (string, bool) {
		switch {
		case v.Missing || v.FieldRef != "":
			return "", false
		case v.FromSecret != nil:
			return secretValue(g.src.Secrets[v.FromSecret.Name], v.FromSecret.Key)
		}
		return v.Literal, true
	}
	va, knownA := resolve(a)
	vb, knownB := resolve(b)
	if knownA || knownB {
		return knownA && knownB && va == vb
	}
	return a.FieldRef == b.FieldRef && a.Missing == b.Missing && ref(a.FromSecret) == ref(b.FromSecret) &&
		ref(a.FromConfigMap) == ref(b.FromConfigMap)
}

func ref(r *envparity.Ref) envparity.Ref {
	if r == nil {
		return envparity.Ref{}
	}
	return *r
}

// plainVar is a variable the chart takes as a plain value; a value of it also sets each path
// of enables to true (the switch of the settings it belongs to).
type plainVar struct {
	path    []string
	kind    int
	enables [][]string
	// ifTrue: the chart writes the variable only when the switch is true.
	ifTrue bool
}

const (
	asString = iota
	asNumber
	asBool
	asList
	asFixed  // set by the chart itself, always "production"
	asESHost // elasticsearch.hostname, with its scheme in elasticsearch.tls
)

var plainVars = map[string]plainVar{
	"LOCAL_DOMAIN":               {path: []string{"mastodon", "localDomain"}},
	"WEB_DOMAIN":                 {path: []string{"mastodon", "webDomain"}},
	"ALTERNATE_DOMAINS":          {path: []string{"mastodon", "alternateDomains"}, kind: asList},
	"DEFAULT_LOCALE":             {path: []string{"mastodon", "locale"}},
	"TRUSTED_PROXY_IP":           {path: []string{"mastodon", "trustedProxyIp"}},
	"SINGLE_USER_MODE":           {path: []string{"mastodon", "singleUserMode"}, kind: asBool, ifTrue: true},
	"AUTHORIZED_FETCH":           {path: []string{"mastodon", "authorizedFetch"}, kind: asBool, ifTrue: true},
	"RAILS_LOG_LEVEL":            {path: []string{"mastodon", "logLevel", "rails"}},
	"LOG_LEVEL":                  {path: []string{"mastodon", "logLevel", "streaming"}},
	"TZ":                         {path: []string{"timezone"}},
	"DB_HOST":                    {path: []string{"postgresql", "hostname"}},
	"DB_PORT":                    {path: []string{"postgresql", "port"}, kind: asNumber},
	"DB_NAME":                    {path: []string{"postgresql", "database"}},
	"PREPARED_STATEMENTS":        {path: []string{"postgresql", "preparedStatements"}, kind: asBool},
	"REPLICA_DB_HOST":            {path: []string{"postgresql", "readReplica", "hostname"}},
	"REPLICA_DB_PORT":            {path: []string{"postgresql", "readReplica", "port"}, kind: asNumber},
	"REPLICA_DB_NAME":            {path: []string{"postgresql", "readReplica", "database"}},
	"REDIS_HOST":                 {path: []string{"redis", "hostname"}},
	"REDIS_PORT":                 {path: []string{"redis", "port"}, kind: asNumber},
	"SIDEKIQ_REDIS_HOST":         {path: []string{"redis", "sidekiq", "hostname"}, enables: [][]string{{"redis", "sidekiq", "enabled"}}},
	"SIDEKIQ_REDIS_PORT":         {path: []string{"redis", "sidekiq", "port"}, kind: asNumber},
	"CACHE_REDIS_HOST":           {path: []string{"redis", "cache", "hostname"}, enables: [][]string{{"redis", "cache", "enabled"}}},
	"CACHE_REDIS_PORT":           {path: []string{"redis", "cache", "port"}, kind: asNumber},
	"ES_ENABLED":                 {path: []string{"elasticsearch", "enabled"}, kind: asBool},
	"ES_HOST":                    {path: []string{"elasticsearch", "hostname"}, kind: asESHost},
	"ES_PORT":                    {path: []string{"elasticsearch", "port"}, kind: asNumber},
	"ES_PRESET":                  {path: []string{"elasticsearch", "preset"}},
	"S3_ENABLED":                 {path: []string{"mastodon", "s3", "enabled"}, kind: asBool},
	"S3_PROTOCOL":                {path: []string{"mastodon", "s3", "protocol"}},
	"S3_BUCKET":                  {path: []string{"mastodon", "s3", "bucket"}},
	"S3_ENDPOINT":                {path: []string{"mastodon", "s3", "endpoint"}},
	"S3_HOSTNAME":                {path: []string{"mastodon", "s3", "hostname"}},
	"S3_REGION":                  {path: []string{"mastodon", "s3", "region"}},
	"S3_PERMISSION":              {path: []string{"mastodon", "s3", "permission"}},
	"S3_ALIAS_HOST":              {path: []string{"mastodon", "s3", "aliasHost"}},
	"SMTP_SERVER":                {path: []string{"mastodon", "smtp", "server"}},
	"SMTP_PORT":                  {path: []string{"mastodon", "smtp", "port"}, kind: asNumber},
	"SMTP_FROM_ADDRESS":          {path: []string{"mastodon", "smtp", "fromAddress"}},
	"SMTP_DOMAIN":                {path: []string{"mastodon", "smtp", "domain"}},
	"SMTP_AUTH_METHOD":           {path: []string{"mastodon", "smtp", "authMethod"}},
	"SMTP_DELIVERY_METHOD":       {path: []string{"mastodon", "smtp", "deliveryMethod"}},
	"SMTP_ENABLE_STARTTLS":       {path: []string{"mastodon", "smtp", "enableStartTls"}},
	"SMTP_OPENSSL_VERIFY_MODE":   {path: []string{"mastodon", "smtp", "opensslVerifyMode"}},
	"SMTP_TLS":                   {path: []string{"mastodon", "smtp", "tls"}, kind: asBool, ifTrue: true},
	"SMTP_CA_FILE":               {path: []string{"mastodon", "smtp", "caFile"}},
	"SMTP_REPLY_TO":              {path: []string{"mastodon", "smtp", "replyTo"}},
	"SMTP_RETURN_PATH":           {path: []string{"mastodon", "smtp", "returnPath"}},
	"CACHE_BUSTER_ENABLED":       {path: []string{"mastodon", "cacheBuster", "enabled"}, kind: asBool},
	"CACHE_BUSTER_HTTP_METHOD":   {path: []string{"mastodon", "cacheBuster", "httpMethod"}},
	"CACHE_BUSTER_SECRET_HEADER": {path: []string{"mastodon", "cacheBuster", "authHeader"}},
	"RAILS_ENV":                  {kind: asFixed},
	"NODE_ENV":                   {kind: asFixed},
}

func (g *generator) mapPlain(env map[string]shared) {
	for _, name := range slices.Sorted(maps.Keys(env)) {
		if _, ok := secretVars[name]; ok {
			continue // mapSecrets
		}
		s := env[name]
		v := s.value
		target, known := plainVars[name]
		switch {
		case v.Missing:
			g.note(Unmapped, name, "%s refers to %s, which does not exist: not carried over", s.from, v)
		case v.FromSecret != nil:
			g.inject(name, *v.FromSecret, "the chart reads from Secrets only the variables of its existingSecret settings, and "+
				"mastodon.extraEnvVars takes plain values")
		case v.FieldRef != "":
			g.note(Unmapped, name, "is filled in by the kubelet (%s); mastodon.extraEnvVars takes plain values only: the new pods "+
				"will not have it", v.FieldRef)
		case known:
			g.setPlain(name, target, v.Literal)
		default:
			g.setExtra(s, name)
		}
	}
}

func (g *generator) setPlain(name string, target plainVar, s string) {
	for _, path := range target.enables {
		g.set(true, path...)
	}
	switch target.kind {
	case asFixed:
		if s != "production" {
			g.note(Conflict, name, "the old pods have %q; the chart always sets production", s)
		}
	case asNumber:
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			g.set(n, target.path...)
		} else {
			g.set(s, target.path...)
			g.note(Conflict, name, "%q is not a number; %s is given as a string, which the chart quotes as it is", s, dotted(target.path))
		}
	case asBool:
		// Mastodon reads these as ENV[...] == 'true'.
		g.set(s == "true", target.path...)
		switch {
		case s != "true" && s != "false" && s != "":
			g.note(Adjusted, name, "%q is not true or false; Mastodon reads it as false, and so is %s", s, dotted(target.path))
		case s != "true" && target.ifTrue:
			g.note(Unmapped, name, "the old pods have %q; the chart writes it only when %s is true: the new pods will not have it, "+
				"which Mastodon reads as false too", s, dotted(target.path))
		}
	case asList:
		list := []any{}
		if s != "" {
			for _, item := range strings.Split(s, ",") {
				list = append(list, item)
			}
		}
		g.set(list, target.path...)
	case asESHost:
		// The chart writes ES_HOST as https://<hostname> when elasticsearch.tls is on (its
		// default), else as the hostname alone.
		host, tls := strings.CutPrefix(s, "https://")
		g.set(host, target.path...)
		g.set(tls, "elasticsearch", "tls")
	default:
		g.set(s, target.path...)
	}
}

// setExtra gives every container of the chart the value the old container saw, through
// mastodon.extraEnvVars, which the chart writes into its ConfigMap: the kubelet does not expand
// $(VAR) there, so a reference it could not resolve from the old pod spec alone is noted.
func (g *generator) setExtra(s shared, name string) {
	if v := s.value; v.FromConfigMap == nil && s.from.fromSecret[name] == (envparity.Ref{}) && strings.Contains(v.Literal, "$(") {
		g.note(Unmapped, name, "%s gives it %s, with a $(...) reference the kubelet expands at run time (to a Secret's value, say); "+
			"mastodon.extraEnvVars is written into a ConfigMap, which the kubelet does not expand: the new pods get it as written", s.from, v)
	}
	g.set(s.value.Literal, "mastodon", "extraEnvVars", name)
}

func dotted(path []string) string { return strings.Join(path, ".") }

// secretVar is a variable the chart reads from a Secret: from <group>.existingSecret under
// the key <group>.existingSecretKeys.<field>, or from the release's own Secret holding the
// value <group>.<field>.
type secretVar struct {
	env, field, defaultKey string
}

// secretGroup is one group of the chart's _secrets.tpl: variables read from one Secret.
type secretGroup struct {
	path []string
	vars []secretVar
	// emitted says whether the chart gives the containers these variables, and when says
	// when it does.
	emitted func(g *generator) bool
	when    string
	// components are those the chart gives the variables to (its hook Jobs get those of the
	// groups given to every component).
	components []string
}

func always(*generator) bool { return true }

// enabled is an emitted func: the group's variables are given when the switch at path is on.
func enabled(path ...string) func(*generator) bool {
	return func(g *generator) bool { return g.get(path...) == true }
}

var (
	allComponents = []string{"web", "streaming", "sidekiq"}
	webAndSidekiq = []string{"web", "sidekiq"}
)

// secretGroups are the groups of the chart's templates/_secrets.tpl (chart 1.0.2), each with
// the components whose templates include it.
var secretGroups = []secretGroup{
	{path: []string{"mastodon", "secrets"}, vars: []secretVar{
		{"SECRET_KEY_BASE", "secretKeyBase", "secret-key-base"},
		{"VAPID_PRIVATE_KEY", "vapidPrivateKey", "vapid-private-key"},
		{"VAPID_PUBLIC_KEY", "vapidPublicKey", "vapid-public-key"},
		{"ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY", "arePrimaryKey", "are-primary-key"},
		{"ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY", "areDeterministicKey", "are-deterministic-key"},
		{"ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT", "areKeyDerivationSalt", "are-derivation-salt"},
	}, emitted: always, components: allComponents},
	{path: []string{"postgresql"}, vars: []secretVar{
		{"DB_USER", "username", "username"},
		{"DB_PASS", "password", "password"},
	}, emitted: always, components: allComponents},
	{path: []string{"postgresql", "readReplica"}, vars: []secretVar{
		{"REPLICA_DB_USER", "username", "username"},
		{"REPLICA_DB_PASS", "password", "password"},
	}, emitted: func(g *generator) bool { return g.get("postgresql", "readReplica", "existingSecret") != nil },
		when: "postgresql.readReplica.existingSecret is set", components: allComponents},
	{path: []string{"redis"}, vars: []secretVar{{"REDIS_PASSWORD", "password", "password"}}, emitted: always, components: allComponents},
	{path: []string{"redis", "sidekiq"}, vars: []secretVar{{"SIDEKIQ_REDIS_PASSWORD", "password", "password"}},
		emitted: enabled("redis", "sidekiq", "enabled"), when: "redis.sidekiq.enabled is true (SIDEKIQ_REDIS_HOST is set)", components: allComponents},
	{path: []string{"redis", "cache"}, vars: []secretVar{{"CACHE_REDIS_PASSWORD", "password", "password"}},
		emitted: enabled("redis", "cache", "enabled"), when: "redis.cache.enabled is true (CACHE_REDIS_HOST is set)", components: allComponents},
	{path: []string{"elasticsearch"}, vars: []secretVar{
		{"ES_USER", "username", "username"},
		{"ES_PASS", "password", "password"},
	}, emitted: enabled("elasticsearch", "enabled"), when: "elasticsearch.enabled is true (ES_ENABLED=true)", components: webAndSidekiq},
	{path: []string{"mastodon", "s3"}, vars: []secretVar{
		{"AWS_ACCESS_KEY_ID", "accessKeyId", "access-key-id"},
		{"AWS_SECRET_ACCESS_KEY", "secretAccessKey", "secret-access-key"},
	}, emitted: enabled("mastodon", "s3", "enabled"), when: "mastodon.s3.enabled is true (S3_ENABLED=true)", components: webAndSidekiq},
	{path: []string{"mastodon", "smtp"}, vars: []secretVar{
		{"SMTP_LOGIN", "username", "username"},
		{"SMTP_PASSWORD", "password", "password"},
	}, emitted: always, components: []string{"sidekiq"}},
	// The switches of these groups also set their other settings from the chart's defaults;
	// the values leave them off, and their plain variables go to extraEnvVars as they are.
	{path: []string{"mastodon", "smtp", "bulk"}, vars: []secretVar{
		{"BULK_SMTP_LOGIN", "username", "username"},
		{"BULK_SMTP_PASSWORD", "password", "password"},
	}, emitted: enabled("mastodon", "smtp", "bulk", "enabled"), when: "mastodon.smtp.bulk.enabled is true", components: []string{"sidekiq"}},
	{path: []string{"mastodon", "deepl"}, vars: []secretVar{{"DEEPL_API_KEY", "apiKey", "api-key"}},
		emitted: enabled("mastodon", "deepl", "enabled"), when: "mastodon.deepl.enabled is true", components: webAndSidekiq},
	{path: []string{"mastodon", "hcaptcha"}, vars: []secretVar{{"HCAPTCHA_SECRET_KEY", "apiKey", "api-key"}},
		emitted: enabled("mastodon", "hcaptcha", "enabled"), when: "mastodon.hcaptcha.enabled is true", components: []string{"web"}},
	{path: []string{"mastodon", "cacheBuster"}, vars: []secretVar{{"CACHE_BUSTER_SECRET", "authToken", "auth-token"}},
		emitted: enabled("mastodon", "cacheBuster", "enabled"), when: "mastodon.cacheBuster.enabled is true (CACHE_BUSTER_ENABLED=true)", components: webAndSidekiq},
	{path: []string{"externalAuth", "ldap"}, vars: []secretVar{{"LDAP_PASSWORD", "password", "password"}},
		emitted: enabled("externalAuth", "ldap", "enabled"), when: "externalAuth.ldap.enabled is true", components: allComponents},
	{path: []string{"externalAuth", "oidc"}, vars: []secretVar{
		{"OIDC_CLIENT_ID", "clientId", "client-id"},
		{"OIDC_CLIENT_SECRET", "clientSecret", "client-secret"},
	}, emitted: enabled("externalAuth", "oidc", "enabled"), when: "externalAuth.oidc.enabled is true", components: []string{"web"}},
}

var secretVars = func() map[string]bool {
	m := map[string]bool{}
	for _, grp := range secretGroups {
		for _, v := range grp.vars {
			m[v.env] = true
		}
	}
	return m
}()

func sub(path []string, elem ...string) []string { return slices.Concat(path, elem) }

func (g *generator) mapSecrets(env map[string]shared) {
	for _, grp := range secretGroups {
		secretName := ""
		for _, sv := range grp.vars {
			if s, ok := env[sv.env]; ok && s.value.FromSecret != nil && !s.value.Missing {
				secretName = s.value.FromSecret.Name
				break
			}
		}
		if secretName != "" {
			g.set(secretName, sub(grp.path, "existingSecret")...)
		}
		emitted := grp.emitted(g)
		for _, sv := range grp.vars {
			keyPath := sub(grp.path, "existingSecretKeys", sv.field)
			s, ok := env[sv.env]
			v := s.value
			switch {
			case ok && v.Missing:
				g.note(Unmapped, sv.env, "%s refers to %s, which does not exist: not carried over", s.from, v)
			case ok && v.FieldRef != "":
				g.note(Unmapped, sv.env, "is filled in by the kubelet (%s); the chart reads it from a Secret: not carried over", v.FieldRef)
			case ok && v.FromSecret != nil && !emitted:
				if v.FromSecret.Name == secretName {
					g.set(v.FromSecret.Key, keyPath...)
				}
				g.inject(sv.env, *v.FromSecret, "the chart passes it only when "+grp.when+", which the generated values leave off")
			case ok && v.FromSecret != nil && v.FromSecret.Name == secretName:
				g.set(v.FromSecret.Key, keyPath...)
				g.noteScoped(sv.env, grp)
			case ok && v.FromSecret != nil:
				g.note(Conflict, sv.env, "comes from %s, but the chart reads every variable of %s from one Secret, %s (%s.existingSecret): "+
					"copy the key into %s and name it in %s", v, dotted(grp.path), secretName, dotted(grp.path), secretName, dotted(keyPath))
			case ok && !emitted:
				g.setExtra(s, sv.env)
			case ok && secretName != "":
				// The chart has no plain setting beside an existing Secret: the key the pods
				// will read is named after the variable, for a person to add.
				g.set(sv.env, keyPath...)
				g.note(Required, sv.env, "the old pods have it as a plain value (%s), but the chart reads it only from Secret %s "+
					"(%s.existingSecret), under %s, set to %s: add key %s with that value to Secret %s before the install (the operator "+
					"never writes a Secret), or the new pods will not start", v, secretName, dotted(grp.path), dotted(keyPath), sv.env,
					sv.env, secretName)
			case ok:
				g.set(v.Literal, sub(grp.path, sv.field)...)
				g.note(Adjusted, sv.env, "has a plain value in the old pods; the chart keeps it in the release's own Secret (%s)",
					dotted(sub(grp.path, sv.field)))
			case !emitted:
			case secretName != "":
				if secret := g.src.Secrets[secretName]; secret != nil && slices.Contains(envparity.SecretKeys(secret), sv.defaultKey) {
					g.note(ChartDefault, sv.env, "not set in the old pods; the chart adds it from Secret %s key %s (%s)",
						secretName, sv.defaultKey, dotted(keyPath))
				} else {
					g.note(Required, sv.env, "not set in the old pods, but the chart reads it from Secret %s key %s (%s), which "+
						"has no such key: the new pods will not start until it has, or %s names a key it has", secretName,
						sv.defaultKey, dotted(keyPath), dotted(keyPath))
				}
			default:
				g.note(Required, sv.env, "not set in the old pods, but the chart reads it from a Secret, and does not render without "+
					"%s.existingSecret (and a key %s names) or %s: set one in spec.release.values", dotted(grp.path),
					dotted(keyPath), dotted(sub(grp.path, sv.field)))
			}
		}
	}
}

// noteScoped says which old components had a variable of grp that the chart gives to other
// components only.
func (g *generator) noteScoped(name string, grp secretGroup) {
	var without []string
	for _, c := range g.comps {
		if _, had := c.env[name]; had && !slices.Contains(grp.components, c.role) {
			without = append(without, c.String())
		}
	}
	if len(without) > 0 {
		g.note(Unmapped, name, "the chart gives it to %s only, not to %s, which had it: the new pods there will not have it "+
			"(the chart gives each process the %s settings it uses)", strings.Join(grp.components, " and "), strings.Join(without, ", "), dotted(grp.path))
	}
}

// mapAbsent notes the variables the chart always sets that the old pods did not have, where
// that may change Mastodon's behaviour, and fills in Mastodon's own default where the chart's
// differs.
func (g *generator) mapAbsent(env map[string]shared) {
	has := func(name string) bool { _, ok := env[name]; return ok }
	for _, name := range []string{"DB_HOST", "REDIS_HOST"} {
		if !has(name) {
			target := plainVars[name].path
			g.note(Required, name, "not set in the old pods; the chart requires %s: set it in spec.release.values", dotted(target))
		}
	}
	if !has("DB_NAME") {
		// config/database.yml: production's database is DB_NAME, else mastodon_production;
		// the chart's default (mastodon) would point the new pods at another database.
		g.set("mastodon_production", "postgresql", "database")
		g.note(Adjusted, "DB_NAME", "not set in the old pods, which used Mastodon's default mastodon_production; "+
			"postgresql.database is set to it, the chart's default being another database")
	}
	if !has("LOCAL_DOMAIN") {
		g.note(Required, "LOCAL_DOMAIN", "not set in the old pods; the chart sets it from mastodon.localDomain, whose default "+
			"is a placeholder: set it in spec.release.values")
	}
	for _, name := range []string{"SMTP_SERVER", "SMTP_PORT", "SMTP_FROM_ADDRESS"} {
		if !has(name) {
			g.note(ChartDefault, name, "not set in the old pods; the chart sets it from %s (its default), not Mastodon's own default",
				dotted(plainVars[name].path))
		}
	}
	if g.get("elasticsearch", "enabled") == true && !has("ES_HOST") {
		g.note(Required, "ES_HOST", "Elasticsearch is enabled but ES_HOST is not set; the chart requires elasticsearch.hostname")
	}
	if g.get("elasticsearch", "enabled") == true && !has("ES_PRESET") {
		g.note(ChartDefault, "ES_PRESET", "not set in the old pods; the chart sets it from elasticsearch.preset (its default "+
			"single_node_cluster), which is what Mastodon's index settings (lib/chewy/index_extensions.rb) take when it is unset")
	}
	if !has("S3_ENABLED") {
		// Mastodon stores media on local disk unless S3_ENABLED is true; the chart's
		// default is S3 on.
		g.set(false, "mastodon", "s3", "enabled")
		g.note(Adjusted, "S3_ENABLED", "not set in the old pods, which kept media on local disk; mastodon.s3.enabled (the chart's "+
			"default true) is set to false")
	}
	if g.get("mastodon", "s3", "enabled") != true {
		g.note(Required, "S3_ENABLED", "the chart renders only with mastodon.s3.enabled or mastodon.pvc.enabled (volumes for "+
			"public/system and public/assets): set mastodon.pvc.* (existingClaim for the volumes the old pods mount) in spec.release.values")
	}
}

// mapRouting turns off the chart's own routing: the migration keeps the old stack's and
// points it at the release's Services.
func (g *generator) mapRouting() {
	g.set(false, "httproute", "enabled")
	if g.src.Ingress != "" {
		g.set(false, "ingress", "enabled")
		g.note(Adjusted, "", "the old stack's Ingress %s stays and is pointed at the release: httproute.enabled (the chart's default "+
			"true, which needs the Gateway API) and ingress.enabled are false", g.src.Ingress)
		return
	}
	g.note(Adjusted, "", "httproute.enabled (the chart's default true, for a placeholder Gateway) is false: the migration moves "+
		"the old Services to the release and routes nothing itself; set httproute.* or ingress.* to have the chart route")
}

// plainComponentVar returns the plain value of one of a component's own variables, noting
// when it is not plain.
func (g *generator) plainComponentVar(c *component, name string) (string, bool) {
	v, ok := c.env[name]
	if !ok {
		return "", false
	}
	if v.FromSecret != nil || v.FieldRef != "" || v.Missing {
		g.note(Unmapped, name, "%s has %s; the chart sets it from a plain value: not carried over", c, v)
		return "", false
	}
	return v.Literal, true
}

func (g *generator) setPort(c *component, path ...string) {
	s, ok := g.plainComponentVar(c, "PORT")
	if !ok {
		return
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > 65535 {
		g.note(Unmapped, "PORT", "%s has %q, not a port number; the chart needs a number (%s): not carried over", c, s, dotted(path))
		return
	}
	g.set(n, path...)
}

func (g *generator) mapWeb(web *component) {
	g.setPort(web, "mastodon", "web", "port")
	for _, puma := range [][2]string{
		{"WEB_CONCURRENCY", "workers"}, {"MAX_THREADS", "maxThreads"}, {"MIN_THREADS", "minThreads"}, {"PERSISTENT_TIMEOUT", "persistentTimeout"},
	} {
		if s, ok := g.plainComponentVar(web, puma[0]); ok {
			g.set(s, "mastodon", "web", puma[1])
		}
	}
	// config/puma.rb: MIN_THREADS defaults to MAX_THREADS; the chart's default does not follow
	// maxThreads.
	if _, ok := web.env["MIN_THREADS"]; !ok {
		if max, ok := g.get("mastodon", "web", "maxThreads").(string); ok {
			g.set(max, "mastodon", "web", "minThreads")
			g.note(Adjusted, "MIN_THREADS", "not set in the old web pods, so Puma used MAX_THREADS (%s); mastodon.web.minThreads "+
				"is set to it", max)
		}
	}
}

func (g *generator) mapStreaming(streaming *component) {
	g.setPort(streaming, "mastodon", "streaming", "port")
	if s, ok := g.plainComponentVar(streaming, "STREAMING_CLUSTER_NUM"); ok {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			g.set(n, "mastodon", "streaming", "workers")
		} else {
			g.note(Unmapped, "STREAMING_CLUSTER_NUM", "%s has %q, not a number: not carried over", streaming, s)
		}
	}
}

// sidekiqArgs is the command line after `sidekiq`, or nil when the container does not run

// noteComponentVars says which of componentVars the old pods had that the chart does not give
// their component.
func (g *generator) noteComponentVars() {
	for _, name := range slices.Sorted(maps.Keys(componentVars)) {
		var without, values []string
		for _, c := range g.comps {
			v, had := c.env[name]
			if !had || slices.Contains(componentVars[name], c.role) {
				continue
			}
			without = append(without, c.String())
			if v.FromSecret == nil && v.FieldRef == "" && !v.Missing {
				values = append(values, v.Literal)
			}
		}
		if len(without) == 0 {
			continue
		}
		msg := fmt.Sprintf("the chart does not set it, and %s had it: the new pods will not have it", strings.Join(without, ", "))
		if on := componentVars[name]; len(on) > 0 {
			msg = fmt.Sprintf("the chart sets it on %s only, not on %s, which had it: the new pods there will not have it",
				strings.Join(on, " and "), strings.Join(without, ", "))
		}
		switch name {
		case "BIND":
			if slices.ContainsFunc(values, func(v string) bool { return v != "0.0.0.0" }) {
				msg += fmt.Sprintf(", and listen on 0.0.0.0 (the BIND of Mastodon's images), not on %q", values)
			}
		case "MAX_THREADS":
			if slices.ContainsFunc(values, func(v string) bool { return v != "5" }) {
				msg += "; Mastodon versions whose config/database.yml sizes the database pool from it (DB_POOL, else MAX_THREADS) " +
					"give those containers a pool of 5: set DB_POOL in mastodon.extraEnvVars if that matters"
			}
		}
		g.note(Unmapped, name, "%s", msg)
	}
}

func sidekiqArgs(c *corev1.Container) []string {
	args := slices.Concat(c.Command, c.Args)
	find := func(args []string) []string {
		for i, a := range args {
			if a == "sidekiq" || strings.HasSuffix(a, "/sidekiq") {
				return append([]string{}, args[i+1:]...)
			}
		}
		return nil
	}
	if rest := find(args); rest != nil {
		return rest
	}
	for _, a := range args {
		if fields := strings.Fields(a); len(fields) > 1 {
			if rest := find(fields); rest != nil {
				return rest
			}
		}
	}
	return nil
}

type sidekiqCommand struct {
	concurrency string
	queues      []string
	ignored     []string
}

func parseSidekiq(args []string) sidekiqCommand {
	var cmd sidekiqCommand
	for i := 0; i < len(args); i++ {
		a := args[i]
		value := func(short, long string) (string, bool) {
			switch {
			case a == short || a == long:
				if i+1 < len(args) {
					i++
					return args[i], true
				}
				return "", true
			case strings.HasPrefix(a, long+"="):
				return strings.TrimPrefix(a, long+"="), true
			case strings.HasPrefix(a, short) && !strings.HasPrefix(a, "--") && len(a) > len(short):
				return strings.TrimPrefix(a, short), true
			}
			return "", false
		}
		if v, ok := value("-c", "--concurrency"); ok {
			cmd.concurrency = v
		} else if v, ok := value("-q", "--queue"); ok {
			cmd.queues = append(cmd.queues, v)
		} else {
			cmd.ignored = append(cmd.ignored, a)
		}
	}
	return cmd
}

// defaultConcurrency is the concurrency of the chart's default worker, and that of Mastodon's
// config/sidekiq.yml.
const defaultConcurrency int64 = 25

var nonName = regexp.MustCompile(`[^a-z0-9-]+`)

// workerName derives a chart worker name from the Deployment's: mastodon-sidekiq-push gives
// push, mastodon-worker gives worker.
func workerName(deploy string, hasQueues bool) string {
	n := nonName.ReplaceAllString(strings.ToLower(deploy), "-")
	n = strings.TrimPrefix(n, "mastodon-")
	n = strings.TrimPrefix(n, "sidekiq-")
	n = strings.TrimSuffix(n, "-sidekiq")
	if len(n) > 30 {
		n = n[:30]
	}
	n = strings.Trim(n, "-")
	if n == "" || n == "sidekiq" || n == "mastodon" {
		if hasQueues {
			return "worker"
		}
		return "all-queues"
	}
	return n
}

func (g *generator) mapSidekiq(workers []*component) {
	if len(workers) == 0 {
		g.note(ChartDefault, "", "no Sidekiq Deployment given: the chart runs its default worker")
		return
	}
	deploys := make([]*appsv1.Deployment, len(workers))
	for i, w := range workers {
		deploys[i] = w.deploy
	}
	// The components were found with the same containers: no error here.
	names, _ := WorkerNames(deploys)
	used := map[string]bool{}
	for _, n := range names {
		used[n] = true
	}
	var list []any
	for i, w := range workers {
		args := sidekiqArgs(w.container)
		if args == nil {
			g.note(Conflict, "", "%s: container %s does not run sidekiq; the chart runs `bundle exec sidekiq` with the chart's "+
				"defaults in its place", w, w.container.Name)
		}
		cmd := parseSidekiq(args)
		entry := map[string]any{"name": names[i], "replicas": replicas(w.deploy)}
		switch n, err := strconv.ParseInt(cmd.concurrency, 10, 64); {
		case cmd.concurrency == "" || err != nil:
			// The chart passes -c <concurrency> whatever it is, and its default is in its own
			// worker entry, which this list replaces.
			entry["concurrency"] = defaultConcurrency
			if cmd.concurrency == "" {
				g.note(ChartDefault, "", "%s: no -c, so Sidekiq took its concurrency from config/sidekiq.yml in the image; the chart "+
					"always passes -c: concurrency is set to %d, the chart's default and Mastodon's config/sidekiq.yml's: check it", w, defaultConcurrency)
			} else {
				g.note(Unmapped, "", "%s: -c %q is not a number; concurrency is set to %d", w, cmd.concurrency, defaultConcurrency)
			}
		default:
			entry["concurrency"] = n
		}
		// No -q: Sidekiq reads the queues from config/sidekiq.yml, and the chart passes no
		// -q either when the list is empty.
		entry["queues"] = queueValues(cmd.queues)
		if len(cmd.ignored) > 0 {
			g.note(Unmapped, "", "%s: the chart runs `bundle exec sidekiq -c N -q ...` only; not carried over: %s",
				w, strings.Join(cmd.ignored, " "))
		}
		pod := w.deploy.Spec.Template.Spec
		entry["resources"] = toValues(&w.container.Resources)
		placement := placementOf(pod)
		entry["nodeSelector"] = orEmptyMap(placement["nodeSelector"])
		entry["tolerations"] = orEmptyList(placement["tolerations"])
		entry["affinity"] = orEmptyMap(placement["affinity"])
		list = append(list, entry)
		if split := g.splitScheduler(w, entry, cmd.queues, len(list)-1, used); split != nil {
			list = append(list, split)
		}
	}
	g.set(list, "mastodon", "sidekiq", "workers")
}

// splitScheduler keeps scheduled jobs to one process: they run once per process of the
// scheduler queue, where Mastodon wants one. A worker with more than one replica (or an HPA of
// src.HPAs that scales it beyond one) that consumes it as the chart runs it (the chart refuses
// more only for a worker that lists scheduler, not for one without queues, which Sidekiq runs
// on config/sidekiq.yml, scheduler included) keeps its replicas for its other queues, and the
// queue moves to a worker of its own, returned, with 1 replica. A worker of scheduler alone is
// set to 1 replica instead. entry is the worker's values, at index i of the list.
func (g *generator) splitScheduler(w *component, entry map[string]any, queues []string, i int, used map[string]bool) map[string]any {
	n := entry["replicas"].(int64)
	replicas := fmt.Sprintf("%d replicas", n)
	if n == 1 {
		replicas = "1 replica"
	}
	pods := replicas
	for _, h := range g.src.HPAs {
		if t := h.Spec.ScaleTargetRef; t.Kind == "Deployment" && t.Name == w.deploy.Name && int64(h.Spec.MaxReplicas) > n {
			pods = fmt.Sprintf("%s and HorizontalPodAutoscaler %s up to %d, which Finish moves to the release", pods, h.Name, h.Spec.MaxReplicas)
			n = int64(h.Spec.MaxReplicas)
		}
	}
	v := scheduler.Consumes(chartWorkerPod(queues))
	if n <= 1 || !v.Consumes {
		return nil
	}
	rest := withoutScheduler(queues)
	if len(rest) == 0 || scheduler.Consumes(chartWorkerPod(rest)).Consumes {
		g.note(Conflict, "", "%s runs the Sidekiq scheduler queue with %s (%s), so every scheduled job runs up to %d times; "+
			"Mastodon wants one process: mastodon.sidekiq.workers[%d].replicas is set to 1", w, pods, v.Why, n, i)
		entry["replicas"] = int64(1)
		return nil
	}
	entry["queues"] = queueValues(rest)
	split := maps.Clone(entry)
	split["name"] = uniqueName(used, scheduler.Queue)
	split["queues"] = []any{scheduler.Queue}
	split["replicas"] = int64(1)
	// Mastodon's scheduler queue gets a handful of jobs a minute (the scheduled ones only push
	// other jobs to other queues): a few threads are plenty.
	split["concurrency"] = schedulerConcurrency
	g.note(Adjusted, "", "%s runs the Sidekiq scheduler queue with %s (%s), where Mastodon wants one process (every "+
		"scheduled job runs once per process): it is split in two, mastodon.sidekiq.workers[%d] (%s) with its %s on the "+
		"other queues (%s) and mastodon.sidekiq.workers[%d] (%s) with 1 replica on scheduler alone, so the other queues keep their capacity",
		w, pods, v.Why, i, entry["name"], replicas, strings.Join(rest, " "), i+1, split["name"])
	return split
}

// schedulerConcurrency is the concurrency of a worker split off for the scheduler queue.
const schedulerConcurrency int64 = 5

// configQueuesWithoutScheduler are the queues a worker without -q consumes, as Mastodon's
// config/sidekiq.yml lists them, but scheduler: the same list as the official chart's default
// worker all-queues has (values.yaml of chart 1.0.2, mastodon.sidekiq.workers[0].queues), which
// lists scheduler too.
var configQueuesWithoutScheduler = []string{"default,8", "push,6", "ingress,4", "mailers,2", "pull", "fasp"}

// withoutScheduler is a worker's queues but scheduler (with or without a weight): an empty list
// stands for config/sidekiq.yml's.
func withoutScheduler(queues []string) []string {
	if len(queues) == 0 {
		return slices.Clone(configQueuesWithoutScheduler)
	}
	return slices.DeleteFunc(slices.Clone(queues), func(q string) bool {
		name, _, _ := strings.Cut(q, ",")
		return strings.TrimSpace(name) == scheduler.Queue
	})
}

func queueValues(queues []string) []any {
	out := []any{}
	for _, q := range queues {
		out = append(out, q)
	}
	return out
}

// chartWorkerPod is the pod the chart runs for a worker with these queues: `bundle exec
// sidekiq -c N -q <queue>...`.
func chartWorkerPod(queues []string) corev1.PodSpec {
	command := []string{"bundle", "exec", "sidekiq", "-c", "25"}
	for _, q := range queues {
		command = append(command, "-q", q)
	}
	return corev1.PodSpec{Containers: []corev1.Container{{Name: "mastodon", Command: command}}}
}

func replicas(d *appsv1.Deployment) int64 {
	if d.Spec.Replicas == nil {
		return 1
	}
	return int64(*d.Spec.Replicas)
}

// splitImage splits a reference into repository, tag and digest.
func splitImage(image string) (repo, tag, digest string) {
	if i := strings.Index(image, "@"); i >= 0 {
		image, digest = image[:i], image[i+1:]
	}
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image, tag = image[:i], image[i+1:]
	}
	return image, tag, digest
}

// imageValues gives the repository and tag that the chart's "repository:tag" turns back into
// the same reference: a digest is kept (tag@digest, or repository@algorithm and the hex as
// tag), and a missing tag becomes latest rather than the chart's appVersion.
func (g *generator) imageValues(c *component, tagPath string) (string, string) {
	repo, tag, digest := splitImage(c.container.Image)
	switch {
	case digest != "" && tag != "":
		tag += "@" + digest
	case digest != "":
		algo, hex, _ := strings.Cut(digest, ":")
		repo, tag = repo+"@"+algo, hex
	case tag == "":
		tag = "latest"
		g.note(Adjusted, "", "%s: image %s has no tag; the tag is set to latest, as the old pods had, rather than the chart's appVersion; latest may have moved since: pin the version they run",
			c, c.container.Image)
	case movingTags[tag]:
		g.note(Unpinned, "", "%s runs image %s, a tag that moves: the new pods pull it again and may get a newer Mastodon, whose "+
			"migrations the chart's db-prepare Job runs on the live database before any traffic moves: pin the digest the old pods run "+
			"(the imageID of their status) in %s", c, c.container.Image, tagPath)
	}
	return repo, tag
}

// movingTags are tags that name a branch or a build channel rather than a release.
var movingTags = map[string]bool{"latest": true, "nightly": true, "edge": true, "main": true, "master": true}

func (g *generator) mapImages(web, streaming *component, workers []*component) {
	repo, tag := g.imageValues(web, "image.tag")
	g.set(repo, "image", "repository")
	g.set(tag, "image", "tag")
	if p := web.container.ImagePullPolicy; p != "" {
		g.set(string(p), "image", "pullPolicy")
	}
	if streaming != nil {
		repo, tag := g.imageValues(streaming, "mastodon.streaming.image.tag")
		g.set(repo, "mastodon", "streaming", "image", "repository")
		g.set(tag, "mastodon", "streaming", "image", "tag")
	}
	for _, w := range workers {
		if w.container.Image != web.container.Image {
			g.note(Conflict, "", "%s runs image %s, web runs %s; the chart runs web's image everywhere", w, w.container.Image, web.container.Image)
		}
	}
}

func (g *generator) mapPods(web, streaming *component, workers []*component) {
	comps := []*component{web}
	g.set(replicas(web.deploy), "mastodon", "web", "replicas")
	g.setPod(web, "mastodon", "web")
	if streaming != nil {
		comps = append(comps, streaming)
		g.set(replicas(streaming.deploy), "mastodon", "streaming", "replicas")
		g.setPod(streaming, "mastodon", "streaming")
	}
	comps = append(comps, workers...)

	// The top-level placement is the default of every component; one whose own is empty would
	// take it, so it is set only when every component has the same.
	first := placementOf(web.deploy.Spec.Template.Spec)
	same := true
	placed := false
	for _, c := range comps {
		p := placementOf(c.deploy.Spec.Template.Spec)
		same = same && reflect.DeepEqual(first, p)
		placed = placed || len(p) > 0
	}
	switch {
	case same:
		for _, k := range slices.Sorted(maps.Keys(first)) {
			g.set(first[k], k)
		}
	default:
		g.note(Conflict, "", "the components are placed differently (nodeSelector, tolerations, affinity); each keeps its own")
	}
	if placed {
		// Chart 1.0.2's Job templates have no placement, whatever mastodon.hooks.*.nodeSelector says.
		g.note(ChartDefault, "", "the old pods are placed (nodeSelector, tolerations or affinity), but the chart places its hook Jobs "+
			"(db-prepare, db-migrate) nowhere: they run on whichever node the scheduler picks, which must reach the database")
	}

	pod := web.deploy.Spec.Template.Spec
	if len(pod.ImagePullSecrets) > 0 {
		var list []any
		for _, s := range pod.ImagePullSecrets {
			list = append(list, map[string]any{"name": s.Name})
		}
		g.set(list, "imagePullSecrets")
	}
	if pod.SecurityContext != nil {
		if sc := toValues(pod.SecurityContext); len(sc) > 0 {
			g.set(sc, "podSecurityContext")
		}
	}
	sa := serviceAccount(pod)
	for _, c := range comps[1:] {
		if other := serviceAccount(c.deploy.Spec.Template.Spec); other != sa {
			g.note(Conflict, "", "%s runs as ServiceAccount %s, web as %s; the chart runs every pod as web's", c, other, sa)
		}
	}
	if sa != "default" {
		g.set(map[string]any{"create": false, "name": sa}, "serviceAccount")
	}
}

func serviceAccount(pod corev1.PodSpec) string {
	switch {
	case pod.ServiceAccountName != "":
		return pod.ServiceAccountName
	case pod.DeprecatedServiceAccount != "":
		return pod.DeprecatedServiceAccount
	}
	return "default"
}

// setPod sets a component's resources and placement, those it has.
func (g *generator) setPod(c *component, path ...string) {
	if r := toValues(&c.container.Resources); len(r) > 0 {
		g.set(r, sub(path, "resources")...)
	}
	for k, v := range placementOf(c.deploy.Spec.Template.Spec) {
		g.set(v, sub(path, k)...)
	}
}

// placementOf is the non-empty nodeSelector, tolerations and affinity of a pod, as values.
func placementOf(pod corev1.PodSpec) map[string]any {
	all := toValues(&corev1.PodSpec{NodeSelector: pod.NodeSelector, Tolerations: pod.Tolerations, Affinity: pod.Affinity})
	out := map[string]any{}
	for _, k := range []string{"nodeSelector", "tolerations", "affinity"} {
		switch v := all[k].(type) {
		case map[string]any:
			if len(v) > 0 {
				out[k] = v
			}
		case []any:
			if len(v) > 0 {
				out[k] = v
			}
		}
	}
	return out
}

// toValues converts an API struct to values, as its JSON would read: quantities as strings,
// integers as int64.
func toValues(obj any) map[string]any {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		// Only API structs are converted, and those always convert.
		panic(fmt.Sprintf("converting %T to values: %v", obj, err))
	}
	return m
}

func orEmptyMap(v any) any {
	if v == nil {
		return map[string]any{}
	}
	return v
}

func orEmptyList(v any) any {
	if v == nil {
		return []any{}
	}
	return v
}
