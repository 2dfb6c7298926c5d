// Package scheduler tells which pods consume Sidekiq's `scheduler` queue, from their containers'
// command and args. Exactly one process may consume it (Mastodon's scaling guide): two stacks
// side by side with a consumer each run every scheduled job twice.
package scheduler

import (
	"fmt"
	"path"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/syntax"
)

// Queue is the queue Mastodon's scheduled jobs run on.
const Queue = "scheduler"

// Verdict is whether a pod consumes the scheduler queue, and why, for status and tests.
type Verdict struct {
	Consumes bool
	// Container is the container that runs Sidekiq, when one does.
	Container string
	Why       string
}

// mastodonConfig are the paths of Mastodon's own config/sidekiq.yml, which Sidekiq reads when
// started without -C; its queue list includes scheduler.
var mastodonConfig = []string{"config/sidekiq.yml", "config/sidekiq.yaml", "/opt/mastodon/config/sidekiq.yml", "/mastodon/config/sidekiq.yml"}

// Consumes says whether a pod with this spec consumes the scheduler queue. Sidekiq's queues come
// from -q/--queue (which win over a config file, as in Sidekiq's CLI), else from the -C/--config
// file, else from Mastodon's config/sidekiq.yml, which lists scheduler. A config file other than
// Mastodon's cannot be read from here: such a worker is taken for a consumer, since two
// schedulers are the harm to avoid. A container that names no command runs its image's, which
// for Mastodon's image is not Sidekiq.
func Consumes(spec corev1.PodSpec) Verdict {
	for _, c := range spec.Containers {
		argv := append(slices.Clone(c.Command), c.Args...)
		for _, call := range invocations(argv, literalEnv(c)) {
			if opts, ok := sidekiqOptions(call); ok {
				v := fromOptions(opts)
				v.Container = c.Name
				return v
			}
		}
	}
	return Verdict{Why: "no container runs sidekiq"}
}

// invocations are the commands a container runs: its argv, or each command of the script a shell
// runs (`sh -c "bundle exec rake db:migrate && exec bundle exec sidekiq -q default"`).
func invocations(argv []string, env expand.Environ) [][]string {
	shells := []string{"sh", "bash", "ash", "dash", "zsh"}
	for i := 0; i+1 < len(argv); i++ {
		if !slices.Contains(shells, path.Base(argv[i])) {
			continue
		}
		for j := i + 1; j+1 < len(argv); j++ {
			if strings.HasPrefix(argv[j], "-") && strings.Contains(argv[j], "c") {
				return scriptCommands(argv[j+1], env)
			}
		}
	}
	return [][]string{argv}
}

// scriptCommands parses a shell script and returns the words of each simple command in it, with
// the container's literal env expanded.
func scriptCommands(script string, env expand.Environ) [][]string {
	file, err := syntax.NewParser().Parse(strings.NewReader(script), "")
	if err != nil {
		// Not a script a shell would run either: the words as they are.
		return [][]string{strings.Fields(script)}
	}
	cfg := &expand.Config{Env: env}
	var out [][]string
	syntax.Walk(file, func(n syntax.Node) bool {
		if call, ok := n.(*syntax.CallExpr); ok && len(call.Args) > 0 {
			if words, err := expand.Fields(cfg, call.Args...); err == nil {
				out = append(out, words)
			}
		}
		return true
	})
	return out
}

// literalEnv is the container's env given by value, for expanding a script.
func literalEnv(c corev1.Container) expand.Environ {
	var pairs []string
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			pairs = append(pairs, e.Name+"="+e.Value)
		}
	}
	return expand.ListEnviron(pairs...)
}

// sidekiqOptions returns the arguments after the sidekiq executable (bundle exec sidekiq,
// bin/sidekiq, sidekiqswarm), if the command runs it.
func sidekiqOptions(argv []string) ([]string, bool) {
	for i, a := range argv {
		if b := path.Base(a); b == "sidekiq" || b == "sidekiqswarm" {
			return argv[i+1:], true
		}
	}
	return nil, false
}

// options are Sidekiq's options that decide its queues.
type options struct {
	queues []string
	config string
	// misread are -q arguments whose weight names the scheduler (`-q default,scheduler`):
	// Sidekiq reads one queue per -q, so that is queue default with a weight it ignores.
	misread []string
}

// parse reads Sidekiq's queue and config options in every form Ruby's OptionParser accepts:
// -q scheduler, -qscheduler, --queue scheduler, --queue=scheduler, each queue with an optional
// ",weight".
func parse(args []string) options {
	var o options
	value := func(i *int, a, short, long string) (string, bool) {
		switch {
		case a == short || a == long:
			if *i+1 < len(args) {
				*i++
				return args[*i], true
			}
			return "", false
		case strings.HasPrefix(a, long+"="):
			return strings.TrimPrefix(a, long+"="), true
		case strings.HasPrefix(a, short) && !strings.HasPrefix(a, "--"):
			return strings.TrimPrefix(a, short), true
		}
		return "", false
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if q, ok := value(&i, a, "-q", "--queue"); ok {
			name, weight, _ := strings.Cut(q, ",")
			o.queues = append(o.queues, strings.TrimSpace(name))
			if strings.Contains(weight, Queue) {
				o.misread = append(o.misread, q)
			}
		} else if c, ok := value(&i, a, "-C", "--config"); ok {
			o.config = c
		}
	}
	return o
}

func fromOptions(args []string) Verdict {
	o := parse(args)
	switch {
	case len(o.queues) > 0 && slices.Contains(o.queues, Queue):
		return Verdict{Consumes: true, Why: "sidekiq -q " + Queue}
	case len(o.queues) > 0:
		why := fmt.Sprintf("sidekiq consumes only %s", strings.Join(o.queues, ", "))
		if len(o.misread) > 0 {
			why += fmt.Sprintf(" (-q %s names one queue and a weight: Sidekiq takes one queue per -q)", o.misread[0])
		}
		return Verdict{Why: why}
	case o.config == "":
		return Verdict{Consumes: true, Why: "sidekiq without -q reads Mastodon's config/sidekiq.yml, which lists " + Queue}
	case slices.Contains(mastodonConfig, strings.TrimPrefix(o.config, "./")):
		return Verdict{Consumes: true, Why: "sidekiq -C " + o.config + " (Mastodon's, which lists " + Queue + ")"}
	}
	return Verdict{Consumes: true, Why: "sidekiq -C " + o.config + ": its queues cannot be read from here, taken for a scheduler consumer"}
}
