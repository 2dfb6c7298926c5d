package upgrade

import "testing"

func TestJudge(t *testing.T) {
	for _, tc := range []struct {
		from, to string
		changed  bool
		support  Support
		rule     string
	}{
		{"ghcr.io/mastodon/mastodon:v4.6.2", "ghcr.io/mastodon/mastodon:v4.6.2", false, "", ""},
		{"tootsuite/mastodon:v4.6.2", "ghcr.io/mastodon/mastodon:4.6.2", false, "", ""},
		{"ghcr.io/mastodon/mastodon:v4.6.1", "ghcr.io/mastodon/mastodon:v4.6.2", true, Online, "patch release"},
		{"ghcr.io/mastodon/mastodon:v4.6.0-rc.1", "ghcr.io/mastodon/mastodon:v4.6.2", true, Online, "patch release"},
		{"ghcr.io/mastodon/mastodon:v4.5.3", "ghcr.io/mastodon/mastodon:v4.6.2", true, Online, "next minor release"},
		{"ghcr.io/mastodon/mastodon:v4.5.3", "ghcr.io/mastodon/mastodon:v4.6.0-beta.2", true, Online, "next minor release"},
		{"tootsuite/mastodon:v3.5.19", "ghcr.io/mastodon/mastodon:v4.0.2", true, Online, "3.5 to 4.0"},
		{"ghcr.io/mastodon/mastodon:v4.2.20", "ghcr.io/mastodon/mastodon:v4.4.8", true, Offline, "skips releases"},
		{"tootsuite/mastodon:v3.4.10", "ghcr.io/mastodon/mastodon:v4.0.2", true, Offline, "skips releases"},
		{"tootsuite/mastodon:v3.5.19", "ghcr.io/mastodon/mastodon:v4.6.2", true, Offline, "skips releases"},
		{"ghcr.io/mastodon/mastodon:v4.6.2", "ghcr.io/mastodon/mastodon:v4.6.1", true, Never, "downgrade"},
		{"ghcr.io/mastodon/mastodon:v4.6.0", "ghcr.io/mastodon/mastodon:v4.6.0-rc.1", true, Never, "downgrade"},
		{"ghcr.io/mastodon/mastodon:v4.6.2", "ghcr.io/mastodon/mastodon:v4.5.3", true, Never, "downgrade"},
		{"ghcr.io/mastodon/mastodon:nightly", "ghcr.io/mastodon/mastodon:v4.6.2", true, Unknown, ""},
		{"ghcr.io/mastodon/mastodon:v4.6", "ghcr.io/mastodon/mastodon:v4.6.2", true, Unknown, ""},
		{"ghcr.io/mastodon/mastodon", "ghcr.io/mastodon/mastodon:v4.6.2", true, Unknown, ""},
		{"ghcr.io/mastodon/mastodon:nightly", "ghcr.io/mastodon/mastodon:nightly", false, "", ""},
	} {
		j := Between(tc.from, tc.to)
		if j.Changed() != tc.changed {
			t.Errorf("%s -> %s: changed %v, want %v", tc.from, tc.to, j.Changed(), tc.changed)
			continue
		}
		if !tc.changed {
			continue
		}
		v := Judge(j)
		var rule string
		if v.Rule != nil {
			rule = v.Rule.Name
		}
		if v.Support != tc.support || rule != tc.rule {
			t.Errorf("%s: %s by rule %q, want %s by %q", j, v.Support, rule, tc.support, tc.rule)
		}
	}
}

func TestEveryRuleNamesItsSource(t *testing.T) {
	for _, r := range Rules {
		if r.Name == "" || r.Why == "" || r.Source == "" || r.Matches == nil {
			t.Errorf("rule %+v lacks a name, a reason, a source or its match", r)
		}
	}
}

func TestDescribe(t *testing.T) {
	for _, tc := range []struct{ from, to, want string }{
		{"mastodon:v4.5.3", "mastodon:v4.6.2", "Mastodon v4.5.3 -> v4.6.2 (next minor release): the next minor release, whose upgrade notes start from this one (source: https://github.com/mastodon/mastodon/releases)"},
		{"mastodon:nightly", "mastodon:v4.6.2", "Mastodon nightly -> v4.6.2: tag nightly names no version, so whether Mastodon supports the jump cannot be judged"},
		{"mastodon:v4.6.2", "mastodon:latest", "Mastodon v4.6.2 -> latest: tag latest names no version, so whether Mastodon supports the jump cannot be judged"},
	} {
		if got := Judge(Between(tc.from, tc.to)).Describe(); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
}
