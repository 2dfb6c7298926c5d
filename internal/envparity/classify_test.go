package envparity

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

func TestClassify(t *testing.T) {
	const otp, rotatedKey = "fake-otp-0123456789", "fake-rotated-secret-key-base"
	secrets := map[string]*corev1.Secret{
		"old": secret("old", map[string]string{"OTP_SECRET": otp, "SECRET_KEY_BASE": "fake-secret-key-base", "ARE_KEY": "fake-are-key",
			"SMTP_LOGIN": "fake-smtp-login"}),
		"new": secret("new", map[string]string{"SECRET_KEY_BASE": rotatedKey, "ARE_KEY": "fake-are-key"}),
	}
	lit := func(s string) Value { return Value{Literal: s} }
	fromCM := func(s string) Value { return Value{Literal: s, FromConfigMap: &Ref{"env", "X"}} }
	fromSecret := func(name, key string) Value { return Value{FromSecret: &Ref{name, key}} }
	blocks, changes, info := v1alpha1.FindingBlocks, v1alpha1.FindingChanges, v1alpha1.FindingInformational
	for _, tc := range []struct {
		name      string
		component string
		variable  string
		old, new  *Value
		// oldEnv is the rest of the old container's environment.
		oldEnv map[string]Value
		want   v1alpha1.FindingClass
		says   string
	}{
		{name: "a Secret key the new pods read is missing", component: "web", variable: "DB_USER",
			old: ptr(fromCM("mastodon")), new: &Value{FromSecret: &Ref{"old", "username"}, Missing: true},
			want: blocks, says: "would not start"},
		{name: "OTP_SECRET dropped", component: "sidekiq", variable: "OTP_SECRET",
			old: ptr(fromSecret("old", "OTP_SECRET")), want: blocks, says: "two-factor"},
		{name: "OTP_SECRET dropped where streaming had it", component: "streaming", variable: "OTP_SECRET",
			old: ptr(fromSecret("old", "OTP_SECRET")), want: info, says: "streaming server does not read it"},
		{name: "SECRET_KEY_BASE of another value", component: "web", variable: "SECRET_KEY_BASE",
			old: ptr(fromSecret("old", "SECRET_KEY_BASE")), new: ptr(fromSecret("new", "SECRET_KEY_BASE")), want: blocks},
		{name: "an encryption key under another Secret, same value", component: "web", variable: "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY",
			old: ptr(fromSecret("old", "ARE_KEY")), new: ptr(fromSecret("new", "ARE_KEY"))},
		{name: "an encryption key moved out of a Secret, same value", component: "web", variable: "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY",
			old: ptr(fromSecret("old", "ARE_KEY")), new: ptr(lit("fake-are-key")), want: info, says: "moved"},
		{name: "a glibc tuning Mastodon does not set", component: "web", variable: "MALLOC_ARENA_MAX",
			new: ptr(fromCM("2")), want: changes, says: "no default"},
		{name: "the image's time zone by another name", component: "sidekiq", variable: "TZ",
			new: ptr(fromCM("UTC")), want: info, says: "Dockerfile"},
		{name: "an authentication switch added off", component: "web", variable: "CAS_ENABLED",
			new: ptr(fromCM("false")), want: info, says: "config/omniauth.yml"},
		{name: "an authentication switch added on", component: "web", variable: "CAS_ENABLED",
			new: ptr(fromCM("true")), want: changes},
		{name: "MIN_THREADS added at the old MAX_THREADS", component: "web", variable: "MIN_THREADS",
			new: ptr(lit("8")), oldEnv: map[string]Value{"MAX_THREADS": fromCM("8")}, want: info, says: "config/puma.rb"},
		{name: "MIN_THREADS added below the old MAX_THREADS", component: "web", variable: "MIN_THREADS",
			new: ptr(lit("5")), oldEnv: map[string]Value{"MAX_THREADS": fromCM("8")}, want: changes},
		{name: "STARTTLS auto, as unset", component: "sidekiq", variable: "SMTP_ENABLE_STARTTLS",
			new: ptr(fromCM("auto")), want: info},
		{name: "STARTTLS auto where the old pods turned it off", component: "sidekiq", variable: "SMTP_ENABLE_STARTTLS",
			new: ptr(fromCM("auto")), oldEnv: map[string]Value{"SMTP_ENABLE_STARTTLS_AUTO": fromCM("false")}, want: changes},
		{name: "Puma workers dropped at Puma's default", component: "sidekiq", variable: "WEB_CONCURRENCY",
			old: ptr(fromCM("2")), want: info},
		{name: "Puma workers tuned, dropped", component: "web", variable: "WEB_CONCURRENCY",
			old: ptr(fromCM("4")), want: changes, says: "dropped"},
		{name: "Puma workers tuned, dropped from streaming", component: "streaming", variable: "WEB_CONCURRENCY",
			old: ptr(fromCM("4")), want: info},
		{name: "search dropped", component: "sidekiq", variable: "ES_ENABLED",
			old: ptr(fromCM("true")), want: changes},
		{name: "search off, dropped", component: "sidekiq", variable: "ES_ENABLED",
			old: ptr(fromCM("false")), want: info},
		{name: "another database host", component: "web", variable: "DB_HOST",
			old: ptr(fromCM("10.0.0.1")), new: ptr(fromCM("10.0.0.2")), want: changes, says: "differs"},
		{name: "a setting no Mastodon process reads", component: "web", variable: "STREAMING_CLUSTER_NUM",
			new: ptr(fromCM("1")), want: info},
		{name: "streaming's own port", component: "streaming", variable: "PORT", new: ptr(lit("4000")), want: info},
		{name: "web on streaming's port", component: "web", variable: "PORT", new: ptr(lit("4000")), want: changes},
		{name: "a Secret-held setting without a default, dropped", component: "web", variable: "SMTP_LOGIN",
			old: ptr(fromSecret("old", "SMTP_LOGIN")), want: changes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old, new := map[string]Value{}, map[string]Value{}
			for k, v := range tc.oldEnv {
				old[k], new[k] = v, v
			}
			if tc.old != nil {
				old[tc.variable] = *tc.old
			}
			if tc.new != nil {
				new[tc.variable] = *tc.new
			}
			diffs := Diff(old, new, secrets)
			if tc.want == "" {
				if len(diffs) != 0 {
					t.Fatalf("differences %v, want none", diffs)
				}
				return
			}
			if len(diffs) != 1 {
				t.Fatalf("differences %v, want one of %s", diffs, tc.variable)
			}
			class, reason := Classify(tc.component, diffs[0], old)
			if class != tc.want || !strings.Contains(reason, tc.says) {
				t.Errorf("%s: %s (%s), want %s saying %q", diffs[0], class, reason, tc.want, tc.says)
			}
			for _, v := range []string{otp, rotatedKey, "fake-secret-key-base", "fake-are-key", "fake-smtp-login"} {
				if strings.Contains(reason+diffs[0].String(), v) {
					t.Errorf("%s (%s) shows a secret value", diffs[0], reason)
				}
			}
		})
	}
}
