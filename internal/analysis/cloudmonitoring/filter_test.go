package cloudmonitoring

import (
	"regexp"
	"testing"
)

func TestBackendPatternMatchesTheNEGsGKENames(t *testing.T) {
	for _, c := range []struct {
		namespace, service, name string
		match                    bool
	}{
		{"social", "mastodon-web", "k8s1-0a1b2c3d-social-mastodon-web-80-9f8e7d6c", true},
		{"social", "mastodon-web", "k8s1-0a1b2c3d-social-mastodon-web-3000-9f8e7d6c", true},
		{"social", "mastodon-web", "gkegw1-l2ms-social-mastodon-web-3000-jbqk3oea", true},
		// Another Service whose name starts with ours, another namespace whose name ends with
		// ours, an instance group backend.
		{"social", "mastodon-web", "k8s1-0a1b2c3d-social-mastodon-web-v2-80-9f8e7d6c", false},
		{"social", "mastodon-web", "k8s1-0a1b2c3d-x-social-mastodon-web-80-9f8e7d6c", false},
		{"social", "mastodon-web", "k8s-be-30080--0a1b2c3d4e5f6a7b", false},
		// Cut to 38 characters together, each field in proportion to its length, with the
		// ports 4000 and 30000.
		{"mastodon-production", "mastodon-streaming", "k8s1-0a1b2c3d-mastodon-productio-mastodon-streamin-400-1b2c3d4e", true},
		{"mastodon-production", "mastodon-streaming", "k8s1-0a1b2c3d-mastodon-productio-mastodon-streami-3000-1b2c3d4e", true},
		{"mastodon-production", "mastodon-web", "k8s1-0a1b2c3d-mastodon-productio-mastodon-streamin-400-1b2c3d4e", false},
	} {
		re := regexp.MustCompile(`\A(?:` + backendPattern(c.namespace, c.service) + `)\z`)
		if got := re.MatchString(c.name); got != c.match {
			t.Errorf("%s/%s matches %s: %v, want %v (%s)", c.namespace, c.service, c.name, got, c.match, re)
		}
	}
}

func TestQuote(t *testing.T) {
	if got, want := quote(`a"b\c`), `"a\"b\\c"`; got != want {
		t.Fatalf("quote: %s, want %s", got, want)
	}
}
