// Package values derives the values of the official Mastodon chart from the Kustomize-managed
// stack it replaces: the runbook's configuration mapping, from the environment, commands and
// pod specs of the old Deployments to chart values.
//
// It reads the names and keys of the Secrets the old pods use, never their values: a variable
// the chart can only take as a plain value is not carried over when it comes from a Secret,
// and a Note says so instead.
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
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/mastodon-operator/mastodon-operator/internal/envparity"
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
	// Secrets are those the pods reference, by name. Only their keys are read.
	Secrets map[string]*corev1.Secret
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

// Generate derives chart values from src; see GenerateWithNotes, whose notes it drops.
func Generate(src Source) (map[string]any, error) {
	v, _, err := GenerateWithNotes(src)
	return v, err
}

// GenerateWithNotes derives chart values from src, and says what it could not carry over or
// had to choose. The mapping:
//
//   - the environment of each container (as the kubelet resolves it, see envparity.Effective)
//     to the chart's settings: LOCAL_DOMAIN, WEB_DOMAIN, ALTERNATE_DOMAINS, DEFAULT_LOCALE,
//     SINGLE_USER_MODE, AUTHORIZED_FETCH, TRUSTED_PROXY_IP to mastodon.*; DB_* to postgresql.*,
//     REDIS_* to redis.*, ES_* to elasticsearch.*, the S3_* the chart knows to mastodon.s3.*,
//     SMTP_* to mastodon.smtp.*; anything else to mastodon.extraEnvVars, which every container
//     of the chart gets;
//   - variables the chart reads from a Secret (SECRET_KEY_BASE, OTP_SECRET, VAPID_*,
//     ACTIVE_RECORD_ENCRYPTION_*, DB_PASS, REDIS_PASSWORD, AWS_*, SMTP_LOGIN/SMTP_PASSWORD,
//     ES_USER/ES_PASS), when the old pods read them from a Secret, to the existingSecret and
//     existingSecretKeys of their group; a Secret-sourced variable the chart has no such
//     setting for is not carried over (Unmapped): extraEnvVars takes plain values only;
//   - per component: PORT, WEB_CONCURRENCY, MIN_THREADS, MAX_THREADS, PERSISTENT_TIMEOUT of
//     the web container to mastodon.web.*; PORT and STREAMING_CLUSTER_NUM of the streaming
//     container to mastodon.streaming.*; these never go to extraEnvVars, which would give them
//     to every container;
//   - one mastodon.sidekiq.workers entry per Sidekiq Deployment: name from the Deployment,
//     concurrency from `-c`, queues from `-q` (none when the old worker had none, so that
//     Sidekiq reads config/sidekiq.yml as before);
//   - replicas, resources, nodeSelector, tolerations and affinity per component; the
//     placement at the top level too (for the hook Jobs) when every component has the same;
//   - the image repository and tag of the web container (and of the streaming container
//     apart), so that the migration does not change Mastodon's version; pull policy and pull
//     Secrets; a ServiceAccount other than default (serviceAccount.create false); the pod
//     security context.
//
// Values are of the types the chart's values.yaml gives: ports, replicas and concurrency are
// int64, the Puma settings strings, switches bool.
func GenerateWithNotes(src Source) (map[string]any, []Note, error) {
	g := &generator{src: src, values: map[string]any{}}
	if err := g.run(); err != nil {
		return nil, nil, err
	}
	return g.values, g.notes, nil
}

type generator struct {
	src    Source
	values map[string]any
	notes  []Note
}

// component is one old Deployment and the Mastodon container in it.
type component struct {
	role      string // web, streaming or sidekiq
	deploy    *appsv1.Deployment
	container *corev1.Container
	env       map[string]envparity.Value
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
		w, err := g.component("sidekiq", d, "sidekiq", "worker")
		if err != nil {
			return err
		}
		workers = append(workers, w)
		comps = append(comps, w)
	}

	shared := g.sharedEnv(comps)
	g.mapPlain(shared)
	g.mapSecrets(shared)
	g.mapAbsent(shared)
	g.mapWeb(web)
	if streaming != nil {
		g.mapStreaming(streaming)
	}
	for _, c := range comps[1:] {
		if v, ok := c.env["MAX_THREADS"]; ok && v.Literal != "5" && v.FromSecret == nil && v.FieldRef == "" && !v.Missing {
			g.note(Unmapped, "MAX_THREADS", "%s sets it to %q; the chart gives MAX_THREADS to web only, and Mastodon versions whose "+
				"config/database.yml sizes the database pool from it (DB_POOL, else MAX_THREADS) give this container a pool of 5: "+
				"set DB_POOL in mastodon.extraEnvVars if that matters", c, v.Literal)
		}
	}
	g.mapSidekiq(workers)
	g.mapImages(web, streaming, workers)
	g.mapPods(web, streaming, workers)
	return nil
}

// component finds the Mastodon container of d and its effective environment.
func (g *generator) component(role string, d *appsv1.Deployment, names ...string) (*component, error) {
	c, err := pickContainer(d, role, names)
	if err != nil {
		return nil, err
	}
	env, err := envparity.Effective(d.Spec.Template.Spec, c.Name, g.src.ConfigMaps, g.src.Secrets)
	if err != nil {
		return nil, fmt.Errorf("%s Deployment %s: %w", role, d.Name, err)
	}
	return &component{role: role, deploy: d, container: c, env: env}, nil
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
var componentVars = map[string]bool{
	"PORT": true, "BIND": true, "STREAMING_CLUSTER_NUM": true,
	"WEB_CONCURRENCY": true, "MAX_THREADS": true, "MIN_THREADS": true, "PERSISTENT_TIMEOUT": true,
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
			if componentVars[name] {
				continue
			}
			v := c.env[name]
			prev, ok := env[name]
			if !ok {
				env[name] = shared{value: v, from: c}
				continue
			}
			if !sameValue(prev.value, v) {
				g.note(Conflict, name, "%s has %s, %s has %s; the chart gives every container one value: that of %s",
					prev.from, prev.value, c, v, prev.from)
			}
		}
	}
	return env
}

func sameValue(a, b envparity.Value) bool {
	if a.FromSecret != nil || b.FromSecret != nil {
		return a.FromSecret != nil && b.FromSecret != nil && *a.FromSecret == *b.FromSecret && a.Missing == b.Missing
	}
	return a.Literal == b.Literal && a.FieldRef == b.FieldRef && a.Missing == b.Missing
}

// plainVar is a variable the chart takes as a plain value.
type plainVar struct {
	path []string
	kind int
}

const (
	asString = iota
	asNumber
	asBool
	asList
	asFixed // set by the chart itself, always "production"
)

var plainVars = map[string]plainVar{
	"LOCAL_DOMAIN":      {[]string{"mastodon", "localDomain"}, asString},
	"WEB_DOMAIN":        {[]string{"mastodon", "webDomain"}, asString},
	"ALTERNATE_DOMAINS": {[]string{"mastodon", "alternateDomains"}, asList},
	"DEFAULT_LOCALE":    {[]string{"mastodon", "locale"}, asString},
	"TRUSTED_PROXY_IP":  {[]string{"mastodon", "trustedProxyIp"}, asString},
	"SINGLE_USER_MODE":  {[]string{"mastodon", "singleUserMode"}, asBool},
	"AUTHORIZED_FETCH":  {[]string{"mastodon", "authorizedFetch"}, asBool},
	"DB_HOST":           {[]string{"postgresql", "hostname"}, asString},
	"DB_PORT":           {[]string{"postgresql", "port"}, asNumber},
	"DB_NAME":           {[]string{"postgresql", "database"}, asString},
	"DB_USER":           {[]string{"postgresql", "username"}, asString},
	"REDIS_HOST":        {[]string{"redis", "hostname"}, asString},
	"REDIS_PORT":        {[]string{"redis", "port"}, asNumber},
	"ES_ENABLED":        {[]string{"elasticsearch", "enabled"}, asBool},
	"ES_HOST":           {[]string{"elasticsearch", "hostname"}, asString},
	"ES_PORT":           {[]string{"elasticsearch", "port"}, asNumber},
	"S3_ENABLED":        {[]string{"mastodon", "s3", "enabled"}, asBool},
	"S3_PROTOCOL":       {[]string{"mastodon", "s3", "protocol"}, asString},
	"S3_BUCKET":         {[]string{"mastodon", "s3", "bucket"}, asString},
	"S3_ENDPOINT":       {[]string{"mastodon", "s3", "endpoint"}, asString},
	"S3_HOSTNAME":       {[]string{"mastodon", "s3", "hostname"}, asString},
	"S3_REGION":         {[]string{"mastodon", "s3", "region"}, asString},
	"S3_PERMISSION":     {[]string{"mastodon", "s3", "permission"}, asString},
	"S3_ALIAS_HOST":     {[]string{"mastodon", "s3", "aliasHost"}, asString},
	"SMTP_SERVER":       {[]string{"mastodon", "smtp", "server"}, asString},
	"SMTP_PORT":         {[]string{"mastodon", "smtp", "port"}, asNumber},
	"SMTP_FROM_ADDRESS": {[]string{"mastodon", "smtp", "fromAddress"}, asString},
	"SMTP_DOMAIN":       {[]string{"mastodon", "smtp", "domain"}, asString},
	"RAILS_ENV":         {nil, asFixed},
	"NODE_ENV":          {nil, asFixed},
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
		case v.FromSecret != nil && known && target.kind != asFixed:
			g.note(Unmapped, name, "comes from %s, but the chart takes it only as the plain value %s, and a Secret's value is "+
				"never copied into values: set %s in spec.release.values or a valuesFrom Secret", v, dotted(target.path), dotted(target.path))
		case v.FromSecret != nil:
			g.note(Unmapped, name, "comes from %s; the chart reads from Secrets only the variables of its existingSecret settings, "+
				"and mastodon.extraEnvVars takes plain values, so a Secret's value is never copied there: the new pods will not have it",
				v)
		case v.FieldRef != "":
			g.note(Unmapped, name, "is filled in by the kubelet (%s); mastodon.extraEnvVars takes plain values only: the new pods "+
				"will not have it", v.FieldRef)
		case known:
			g.setPlain(name, target, v.Literal)
		default:
			g.set(extraValue(s, name), "mastodon", "extraEnvVars", name)
		}
	}
}

func (g *generator) setPlain(name string, target plainVar, s string) {
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
		if s != "true" && s != "false" && s != "" {
			g.note(Adjusted, name, "%q is not true or false; Mastodon reads it as false, and so is %s", s, dotted(target.path))
		}
	case asList:
		list := []any{}
		if s != "" {
			for _, item := range strings.Split(s, ",") {
				list = append(list, item)
			}
		}
		g.set(list, target.path...)
	default:
		g.set(s, target.path...)
	}
}

// extraValue is the mastodon.extraEnvVars value that gives the new container what the old one
// had. The chart writes it as a literal env value, which the kubelet expands: a literal of the
// old pod spec is copied as written (so that $(VAR) references expand as before), a ConfigMap
// value, which the kubelet did not expand, gets its $ escaped.
func extraValue(s shared, name string) string {
	if s.value.FromConfigMap != nil {
		return strings.ReplaceAll(s.value.Literal, "$", "$$")
	}
	raw := s.value.Literal
	for _, e := range s.from.container.Env {
		if e.Name == name && e.ValueFrom == nil {
			raw = e.Value
		}
	}
	return raw
}

func dotted(path []string) string { return strings.Join(path, ".") }

// secretVar is a variable the chart reads from a Secret: from <group>.existingSecret under
// the key <group>.existingSecretKeys.<field>, or from the release's own Secret holding the
// value <group>.<field>.
type secretVar struct {
	env, field, defaultKey string
}

type secretGroup struct {
	path []string
	vars []secretVar
	// emitted says whether the chart gives the containers these variables, and when says
	// when it does.
	emitted func(g *generator) bool
	when    string
}

func always(*generator) bool { return true }

var secretGroups = []secretGroup{
	{[]string{"mastodon", "secrets"}, []secretVar{
		{"SECRET_KEY_BASE", "secretKeyBase", "secret-key-base"},
		{"OTP_SECRET", "otpSecret", "otp-secret"},
		{"VAPID_PRIVATE_KEY", "vapidPrivateKey", "vapid-private-key"},
		{"VAPID_PUBLIC_KEY", "vapidPublicKey", "vapid-public-key"},
		{"ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY", "arePrimaryKey", "are-primary-key"},
		{"ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY", "areDeterministicKey", "are-deterministic-key"},
		{"ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT", "areKeyDerivationSalt", "are-derivation-salt"},
	}, always, ""},
	{[]string{"postgresql"}, []secretVar{{"DB_PASS", "password", "password"}}, always, ""},
	{[]string{"redis"}, []secretVar{{"REDIS_PASSWORD", "password", "password"}}, always, ""},
	{[]string{"mastodon", "s3"}, []secretVar{
		{"AWS_ACCESS_KEY_ID", "accessKeyId", "access-key-id"},
		{"AWS_SECRET_ACCESS_KEY", "secretAccessKey", "secret-access-key"},
	}, func(g *generator) bool { return g.get("mastodon", "s3", "enabled") == true }, "mastodon.s3.enabled is true"},
	{[]string{"mastodon", "smtp"}, []secretVar{
		{"SMTP_LOGIN", "username", "username"},
		{"SMTP_PASSWORD", "password", "password"},
	}, func(g *generator) bool {
		return g.get("mastodon", "smtp", "existingSecret") != nil || g.get("mastodon", "smtp", "username") != nil
	}, "mastodon.smtp.existingSecret or mastodon.smtp.username is set"},
	{[]string{"elasticsearch"}, []secretVar{
		{"ES_USER", "username", "username"},
		{"ES_PASS", "password", "password"},
	}, func(g *generator) bool {
		return g.get("elasticsearch", "enabled") == true &&
			(g.get("elasticsearch", "existingSecret") != nil || g.get("elasticsearch", "username") != nil)
	}, "elasticsearch.enabled is true and elasticsearch.existingSecret or elasticsearch.username is set"},
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
		for _, sv := range grp.vars {
			keyPath := dotted(sub(grp.path, "existingSecretKeys", sv.field))
			s, ok := env[sv.env]
			v := s.value
			switch {
			case ok && v.Missing:
				g.note(Unmapped, sv.env, "%s refers to %s, which does not exist: not carried over", s.from, v)
			case ok && v.FieldRef != "":
				g.note(Unmapped, sv.env, "is filled in by the kubelet (%s); the chart reads it from a Secret: not carried over", v.FieldRef)
			case ok && v.FromSecret != nil && v.FromSecret.Name == secretName:
				g.set(v.FromSecret.Key, sub(grp.path, "existingSecretKeys", sv.field)...)
			case ok && v.FromSecret != nil:
				g.note(Conflict, sv.env, "comes from %s, but the chart reads every variable of %s from one Secret, %s (%s.existingSecret): "+
					"copy the key into %s and name it in %s", v, dotted(grp.path), secretName, dotted(grp.path), secretName, keyPath)
			case ok && secretName != "":
				g.note(Unmapped, sv.env, "has a plain value in the old pods, but the chart reads it from Secret %s under the key %s names "+
					"(default %s): add it there; values are never written into a Secret by the operator", secretName, keyPath, sv.defaultKey)
			case ok:
				g.set(v.Literal, sub(grp.path, sv.field)...)
				if grp.emitted(g) {
					g.note(Adjusted, sv.env, "has a plain value in the old pods; the chart keeps it in the release's own Secret (%s)",
						dotted(sub(grp.path, sv.field)))
				}
			case !grp.emitted(g):
			case secretName != "":
				if secret := g.src.Secrets[secretName]; secret != nil && slices.Contains(envparity.SecretKeys(secret), sv.defaultKey) {
					g.note(ChartDefault, sv.env, "not set in the old pods; the chart adds it from Secret %s key %s (%s)",
						secretName, sv.defaultKey, keyPath)
				} else {
					g.note(Required, sv.env, "not set in the old pods, but the chart reads it from Secret %s key %s (%s), which "+
						"has no such key: the new pods will not start until it has, or %s names a key it has", secretName,
						sv.defaultKey, keyPath, keyPath)
				}
			default:
				g.note(ChartDefault, sv.env, "not set in the old pods; the chart adds it, empty, from the release's own Secret (%s)",
					dotted(sub(grp.path, sv.field)))
			}
			if ok && !grp.emitted(g) {
				g.note(Unmapped, sv.env, "the chart sets it only when %s, which the old pods' environment does not make so: "+
					"the new pods will not have it", grp.when)
			}
		}
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

func (g *generator) checkBind(c *component) {
	if s, ok := g.plainComponentVar(c, "BIND"); ok && s != "0.0.0.0" {
		g.note(Unmapped, "BIND", "%s has %q; the chart listens on 0.0.0.0: not carried over", c, s)
	}
}

func (g *generator) mapWeb(web *component) {
	g.setPort(web, "mastodon", "web", "port")
	g.checkBind(web)
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
	g.checkBind(streaming)
	if s, ok := g.plainComponentVar(streaming, "STREAMING_CLUSTER_NUM"); ok {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			g.set(n, "mastodon", "streaming", "workers")
		} else {
			g.note(Unmapped, "STREAMING_CLUSTER_NUM", "%s has %q, not a number: not carried over", streaming, s)
		}
	}
}

// sidekiqArgs is the command line after `sidekiq`, or nil when the container does not run
// Sidekiq. A shell command (sh -c "bundle exec sidekiq -c 25") is split on spaces.
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
	used := map[string]bool{}
	var list []any
	for _, w := range workers {
		args := sidekiqArgs(w.container)
		if args == nil {
			g.note(Conflict, "", "%s: container %s does not run sidekiq; the chart runs `bundle exec sidekiq` with the chart's "+
				"defaults in its place", w, w.container.Name)
		}
		cmd := parseSidekiq(args)
		name := workerName(w.deploy.Name, len(cmd.queues) > 0)
		for base, i := name, 2; used[name]; i++ {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		used[name] = true
		entry := map[string]any{"name": name, "replicas": replicas(w.deploy)}
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
		queues := []any{}
		for _, q := range cmd.queues {
			queues = append(queues, q)
		}
		entry["queues"] = queues
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
	}
	g.set(list, "mastodon", "sidekiq", "workers")
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
func (g *generator) imageValues(c *component) (string, string) {
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
	}
	return repo, tag
}

func (g *generator) mapImages(web, streaming *component, workers []*component) {
	repo, tag := g.imageValues(web)
	g.set(repo, "image", "repository")
	g.set(tag, "image", "tag")
	if p := web.container.ImagePullPolicy; p != "" {
		g.set(string(p), "image", "pullPolicy")
	}
	if streaming != nil {
		repo, tag := g.imageValues(streaming)
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

	// The hook Jobs (database migrations) take the top-level placement; a component whose own
	// is empty would take it too, so it is set only when every component has the same.
	first := placementOf(web.deploy.Spec.Template.Spec)
	same := true
	for _, c := range comps[1:] {
		same = same && reflect.DeepEqual(first, placementOf(c.deploy.Spec.Template.Spec))
	}
	switch {
	case same:
		for _, k := range slices.Sorted(maps.Keys(first)) {
			g.set(first[k], k)
		}
	case len(first) > 0:
		g.note(Conflict, "", "the components are placed differently (nodeSelector, tolerations, affinity); each keeps its own, "+
			"and the chart's hook Jobs get no placement: set nodeSelector, tolerations or affinity at the top level if they need one")
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
