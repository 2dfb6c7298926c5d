package preflight

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// The fixture's Secret values that a finding must never show.
const fixtureSecretKeyBase, fixtureOTPSecret = "fake-secret-key-base-0123456789abcdef0123456789abcdef", "fake-otp-secret-0123456789abcdef0123456789abcdef"

// envFindings runs the release rules and returns EnvParity's findings by variable.
func envFindings(t *testing.T, s *stack) map[string]v1alpha1.Finding {
	t.Helper()
	byName := map[string]v1alpha1.Finding{}
	for _, f := range run(t, s.in) {
		noSecretValue(t, s, f)
		for _, v := range []string{fixtureSecretKeyBase, fixtureOTPSecret} {
			if strings.Contains(f.Message, v) {
				t.Errorf("finding %s %s shows a secret value", f.Check, f.Object)
			}
		}
		if f.Check != "EnvParity" {
			continue
		}
		if len(f.Message) > 1024 {
			t.Errorf("finding about %s is %d bytes long, more than the API's 1024", f.Object, len(f.Message))
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(f.Message, "env "), ":")
		if _, dup := byName[name]; dup {
			t.Errorf("two findings about %s", name)
		}
		byName[name] = f
	}
	return byName
}

func TestEnvParityClassesAndFixes(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		breakIt  func(t *testing.T, s *stack)
		variable string
		// class is the finding's; "" means there is no finding about the variable.
		class v1alpha1.FindingClass
		says  []string
		not   []string
	}{{
		name: "a Change, accepted",
		breakIt: func(t *testing.T, s *stack) {
			s.overrides = setValue("postgresql.hostname", "10.99.0.1")
			acceptEnv(s, "DB_HOST")
		},
		variable: "DB_HOST",
	}, {
		name: "a Change accepted in one component stays in the others",
		breakIt: func(t *testing.T, s *stack) {
			s.overrides = setValue("postgresql.hostname", "10.99.0.1")
			acceptEnv(s, "web/DB_HOST")
		},
		variable: "DB_HOST", class: v1alpha1.FindingChanges,
		says: []string{`→ "10.99.0.1" (configmap mastodon-helm-env/DB_HOST) in streaming (mastodon-streaming → mastodon-helm-streaming), sidekiq (mastodon-worker → mastodon-helm-sidekiq-worker) [Changes`},
		not:  []string{"web (mastodon-web"},
	}, {
		name:     "the Puma tuning of web changed",
		breakIt:  func(t *testing.T, s *stack) { s.overrides = setValue("mastodon.web.maxThreads", "3") },
		variable: "MAX_THREADS", class: v1alpha1.FindingChanges,
		says: []string{`changed "5" (configmap mastodon-env/MAX_THREADS) → "3" in web (mastodon-web → mastodon-helm-web) [Changes`,
			"Fix: set mastodon.web.maxThreads"},
	}, {
		name: "OTP_SECRET, which the chart does not pass, without spec.release.secretEnv: a Block, not acceptable",
		breakIt: func(t *testing.T, s *stack) {
			s.in.Migration.Spec.Release.SecretEnv = nil
			acceptEnv(s, "OTP_SECRET")
		},
		variable: "OTP_SECRET", class: v1alpha1.FindingBlocks,
		says: []string{"dropped (was secret mastodon/OTP_SECRET) in web (mastodon-web → mastodon-helm-web), sidekiq (mastodon-worker → mastodon-helm-sidekiq-worker) [Blocks",
			"two-factor", "add {name: OTP_SECRET, secretName: mastodon, key: OTP_SECRET} to spec.release.secretEnv",
			"spec.preflight.acceptEnvChanges cannot accept it"},
	}, {
		// Web and Sidekiq read it as before; streaming, which did not, gets it too.
		name:     "OTP_SECRET in spec.release.secretEnv: the release's env has it, under the same key",
		breakIt:  func(*testing.T, *stack) {},
		variable: "OTP_SECRET", class: v1alpha1.FindingInformational,
		says: []string{"env OTP_SECRET: added secret mastodon/OTP_SECRET in streaming (mastodon-streaming → mastodon-helm-streaming) " +
			"[Informational: the streaming server does not read it].", "to change it: spec.release.secretEnv"},
		not: []string{"web (mastodon-web", "sidekiq (mastodon-worker"},
	}, {
		// The generated values found it in the old pods: the operator adds it without the spec.
		name: "OTP_SECRET generated, not in the spec",
		breakIt: func(t *testing.T, s *stack) {
			generated := s.in.Migration.Spec.Release.SecretEnv
			s.in.Migration.Spec.Release.SecretEnv = nil
			s.in.SecretEnv = func(context.Context) ([]v1alpha1.SecretEnvVar, error) { return generated, nil }
		},
		variable: "OTP_SECRET", class: v1alpha1.FindingInformational,
		says: []string{"added secret mastodon/OTP_SECRET in streaming", "to change it: spec.release.secretEnv"},
		not:  []string{"the chart sets it itself"},
	}, {
		name: "OTP_SECRET in spec.release.secretEnv, from a key of another value",
		breakIt: func(t *testing.T, s *stack) {
			s.in.Migration.Spec.Release.SecretEnv = []v1alpha1.SecretEnvVar{{Name: "OTP_SECRET", SecretName: "mastodon", Key: "SECRET_KEY_BASE"}}
		},
		variable: "OTP_SECRET", class: v1alpha1.FindingBlocks,
		says: []string{"changed secret mastodon/OTP_SECRET (different value) → secret mastodon/SECRET_KEY_BASE (different value)",
			"in web (mastodon-web → mastodon-helm-web), sidekiq", "spec.release.secretEnv must give it as {name: OTP_SECRET, secretName: mastodon, key: OTP_SECRET}"},
	}, {
		name: "SECRET_KEY_BASE from a Secret of another value",
		breakIt: func(t *testing.T, s *stack) {
			rotated := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "mastodon-rotated", Namespace: s.ns},
				StringData: map[string]string{"SECRET_KEY_BASE": "rotated-secret-key-base-5e1f"}}
			if err := s.c.Create(ctx, rotated); err != nil {
				t.Fatal(err)
			}
			s.overrides = setValue("mastodon.secrets", map[string]any{"existingSecret": "mastodon-rotated",
				"existingSecretKeys": map[string]any{"secretKeyBase": "SECRET_KEY_BASE"}})
		},
		variable: "SECRET_KEY_BASE", class: v1alpha1.FindingBlocks,
		says: []string{"secret mastodon/SECRET_KEY_BASE (different value) → secret mastodon-rotated/SECRET_KEY_BASE (different value)",
			"signs sessions", "set mastodon.secrets.existingSecret to mastodon and mastodon.secrets.existingSecretKeys.secretKeyBase to SECRET_KEY_BASE"},
		not: []string{"rotated-secret-key-base-5e1f"},
	}, {
		// As layouts keep it that keep every variable in one Secret: the fix is the chart's setting.
		name: "configuration held in a Secret, changed by the values",
		breakIt: func(t *testing.T, s *stack) {
			secret := &corev1.Secret{}
			if err := s.c.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: "mastodon"}, secret); err != nil {
				t.Fatal(err)
			}
			secret.StringData = map[string]string{"DB_HOST": "10.20.0.30"}
			if err := s.c.Update(ctx, secret); err != nil {
				t.Fatal(err)
			}
			s.overrides = setValue("postgresql.hostname", "10.99.0.1")
		},
		variable: "DB_HOST", class: v1alpha1.FindingChanges,
		says: []string{`changed secret mastodon/DB_HOST (different value) → "10.99.0.1"`, "Fix: set postgresql.hostname"},
		not:  []string{"secretEnv"},
	}, {
		name: "a key the chart reads that the Secret lacks",
		breakIt: func(t *testing.T, s *stack) {
			// The chart's default key, which Secret mastodon lacks.
			s.overrides = setValue("postgresql.existingSecretKeys.username", "username")
		},
		variable: "DB_USER", class: v1alpha1.FindingBlocks,
		says: []string{"→ secret mastodon/username (missing)", "would not start", "Fix: add key username to Secret mastodon"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			s := preparedStack(t)
			tc.breakIt(t, s)
			f, found := envFindings(t, s)[tc.variable]
			switch {
			case tc.class == "" && found:
				t.Fatalf("a finding about %s: %s", tc.variable, f.Message)
			case tc.class == "":
				return
			case !found:
				t.Fatalf("no finding about %s", tc.variable)
			}
			if f.Class != tc.class {
				t.Errorf("finding about %s is %s, want %s: %s", tc.variable, f.Class, tc.class, f.Message)
			}
			for _, want := range tc.says {
				if !strings.Contains(f.Message, want) {
					t.Errorf("%q does not say %q", f.Message, want)
				}
			}
			for _, unwanted := range tc.not {
				if strings.Contains(f.Message, unwanted) {
					t.Errorf("%q says %q", f.Message, unwanted)
				}
			}
		})
	}
}

func acceptEnv(s *stack, entries ...string) {
	s.in.Migration.Spec.Preflight.AcceptEnvChanges = append(s.in.Migration.Spec.Preflight.AcceptEnvChanges, entries...)
}

// The production fixture as it is, with the values generated from it, on the official chart:
// what env parity reports, by class. Only the Blocks and Changes stop the migration.
func TestEnvParityOnTheProductionFixture(t *testing.T) {
	s := newStack(t, nil)
	byClass := map[v1alpha1.FindingClass][]string{}
	findings := envFindings(t, s)
	for _, name := range slices.Sorted(maps.Keys(findings)) {
		f := findings[name]
		byClass[f.Class] = append(byClass[f.Class], name)
		t.Logf("%s: %s", f.Class, f.Message)
		if f.Object != "Deployment/mastodon-web" && f.Object != "Deployment/mastodon-streaming" && f.Object != "Deployment/mastodon-worker" {
			t.Errorf("finding about %s is about %s, not a source Deployment", name, f.Object)
		}
		_, fix, ok := strings.Cut(f.Message, ". Fix: ")
		if !ok {
			_, fix, ok = strings.Cut(f.Message, ". Nothing to do; to change it: ")
		}
		if !ok || !slices.ContainsFunc([]string{"mastodon.", "postgresql.", "timezone", "spec.release.secretEnv", "add key "},
			func(key string) bool { return strings.Contains(fix, key) }) {
			t.Errorf("finding about %s names no values key that fixes it: %s", name, f.Message)
		}
	}
	t.Logf("Blocks %d %v; Changes %d %v; Informational %d %v", len(byClass[v1alpha1.FindingBlocks]), byClass[v1alpha1.FindingBlocks],
		len(byClass[v1alpha1.FindingChanges]), byClass[v1alpha1.FindingChanges],
		len(byClass[v1alpha1.FindingInformational]), byClass[v1alpha1.FindingInformational])
	for class, want := range map[v1alpha1.FindingClass][]string{
		// The chart drops OTP_SECRET (the generated secretEnv, which this render leaves out, gives it).
		v1alpha1.FindingBlocks: {"OTP_SECRET"},
		// The chart always sets MALLOC_ARENA_MAX and SMTP_OPENSSL_VERIFY_MODE, and gives the SMTP
		// credentials to Sidekiq only.
		v1alpha1.FindingChanges: {"MALLOC_ARENA_MAX", "SMTP_LOGIN", "SMTP_OPENSSL_VERIFY_MODE", "SMTP_PASSWORD"},
	} {
		if !slices.Equal(byClass[class], want) {
			t.Errorf("%s: %v, want %v", class, byClass[class], want)
		}
	}
	// The rest is the chart's own: CAS_ENABLED=false, TZ=UTC, Puma's defaults, streaming given
	// secrets it does not read, ...
	for _, name := range []string{"CAS_ENABLED", "TZ", "PREPARED_STATEMENTS", "PERSISTENT_TIMEOUT", "SECRET_KEY_BASE", "WEB_CONCURRENCY"} {
		if !slices.Contains(byClass[v1alpha1.FindingInformational], name) {
			t.Errorf("no informational finding about %s", name)
		}
	}
}

func TestBoundedMessageCutsOnACharacter(t *testing.T) {
	long := strings.Repeat("→", 600) // 3 bytes each
	got := boundedMessage(long)
	if len(got) > 1024 || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
		t.Errorf("%d bytes, valid UTF-8 %v, ends %q", len(got), utf8.ValidString(got), got[len(got)-6:])
	}
	if short := "env A: added"; boundedMessage(short) != short {
		t.Errorf("a short message is changed")
	}
}
