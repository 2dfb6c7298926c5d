package values

import "testing"

func TestChartKey(t *testing.T) {
	for _, tc := range []struct {
		name, component, key string
		fromSecret           bool
	}{
		{"LOCAL_DOMAIN", "web", "mastodon.localDomain", false},
		{"DB_HOST", "sidekiq", "postgresql.hostname", false},
		{"MAX_THREADS", "web", "mastodon.web.maxThreads", false},
		// The chart gives Puma's settings to web only.
		{"MAX_THREADS", "sidekiq", "", false},
		{"PORT", "streaming", "mastodon.streaming.port", false},
		{"TZ", "streaming", "timezone", false},
		{"DB_PASS", "web", "postgresql.existingSecretKeys.password", true},
		{"SECRET_KEY_BASE", "streaming", "mastodon.secrets.existingSecretKeys.secretKeyBase", true},
		{"RAILS_ENV", "web", "", false},
		{"RAILS_SERVE_STATIC_FILES", "web", "", false},
	} {
		if key, fromSecret := ChartKey(tc.name, tc.component); key != tc.key || fromSecret != tc.fromSecret {
			t.Errorf("ChartKey(%s, %s) = %q, %v; want %q, %v", tc.name, tc.component, key, fromSecret, tc.key, tc.fromSecret)
		}
	}
}
