package cloudmonitoring

import (
	"regexp"
	"strings"
)

// negLabelMax is how long GKE lets namespace, Service name and port be together in a NEG's name
// (ingress-gce's maxNEGDescriptiveLabel): 63 characters less k8s1-, the cluster id, the hash and
// the hyphens.
const negLabelMax = 38

// filter is the time series filter of metric for the configured backends.
func (p *Provider) filter(metric string) string {
	parts := []string{"metric.type = " + quote(metric), "resource.type = " + quote(resourceType)}
	if len(p.cfg.Services) > 0 {
		backends := make([]string, len(p.cfg.Services))
		for i, s := range p.cfg.Services {
			backends[i] = "resource.labels.backend_target_name = monitoring.regex.full_match(" + quote(backendPattern(p.cfg.Namespace, s)) + ")"
		}
		parts = append(parts, "("+strings.Join(backends, " OR ")+")")
	}
	if p.cfg.Filter != "" {
		parts = append(parts, "("+p.cfg.Filter+")")
	}
	return strings.Join(parts, " AND ")
}

// backendPattern is an RE2 regex of the name of the backend service that GKE makes for a
// Service's NEG: k8s1-<cluster>-<namespace>-<service>-<port>-<hash> (ingress-gce's namer.NEG),
// where namespace, name and port are cut when together longer than negLabelMax, each in
// proportion to its length. The port is not known here, so every length it can have gives an
// alternative. Names of the same shape with another prefix (GKE Gateway's gkegw1-) match too
// when not cut.
func backendPattern(namespace, service string) string {
	var alts []string
	seen := map[string]bool{}
	for portLen := 1; portLen <= 5; portLen++ {
		n := trimEvenly(negLabelMax, len(namespace), len(service), portLen)
		alt := regexp.QuoteMeta(namespace[:n[0]]) + "-" + regexp.QuoteMeta(service[:n[1]])
		if !seen[alt] {
			seen[alt] = true
			alts = append(alts, alt)
		}
	}
	return "[0-9a-z]+-[0-9a-z]+-(" + strings.Join(alts, "|") + ")-[0-9]*-[0-9a-z]+"
}

// trimEvenly is ingress-gce's TrimFieldsEvenly on lengths: the lengths the fields are cut to so
// that together they are at most max.
func trimEvenly(max int, lengths ...int) []int {
	total := 0
	for _, l := range lengths {
		total += l
	}
	if total <= max {
		return lengths
	}
	excess, remaining := total-max, max
	out := make([]int, len(lengths))
	for i, l := range lengths {
		out[i] = l - l*excess/total - 1
		remaining -= out[i]
	}
	for i := 0; i < remaining; i++ {
		out[i]++
	}
	return out
}

// quote makes s a string literal of the monitoring filter language, where a backslash escapes
// the next character.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
