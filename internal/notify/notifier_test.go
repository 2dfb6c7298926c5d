package notify

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/mastodon-operator/mastodon-operator/internal/metrics"
)

// receiver is a local HTTP server that records the bodies it is sent and answers with the
// statuses given, one per request (200 once they run out).
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	bodies   []string
	statuses []int
	hang     chan struct{}
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	r := &receiver{statuses: statuses}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.bodies = append(r.bodies, string(body))
		status := http.StatusOK
		if len(r.statuses) > 0 {
			status, r.statuses = r.statuses[0], r.statuses[1:]
		}
		hang := r.hang
		r.mu.Unlock()
		if hang != nil {
			select {
			case <-hang:
			case <-req.Context().Done():
			}
		}
		if req.Header.Get("Content-Type") != "application/json" {
			status = http.StatusUnsupportedMediaType
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bodies...)
}

func (r *receiver) waitFor(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if got := r.received(); len(got) >= n {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the receiver got %d requests, want %d", len(r.received()), n)
	return nil
}

// quick are short retries, so a test of five attempts takes milliseconds.
var quick = Options{QueueSize: 4, Timeout: time.Second,
	Backoff: wait.Backoff{Duration: 5 * time.Millisecond, Factor: 2, Steps: 4}}

func start(t *testing.T, opts Options, log logr.Logger) *Notifier {
	n := New(opts, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = n.Start(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return n
}

var rollback = Message{Kind: KindRollback, Severity: SeverityCritical, Namespace: "mastodon", Name: "to-helm",
	Phase: "RollingBack", Summary: "mastodon/to-helm: rolling back at level 1 (Automatic)",
	Reason: "analysis: critical: errorRate 80.00% over 50.00%",
	Action: RollbackCommand("mastodon", "to-helm", 2), Time: time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)}

func TestWebhookAndSlackPayloadsSayWhatWhyAndTheCommand(t *testing.T) {
	hook, slack := newReceiver(t), newReceiver(t)
	n := start(t, quick, logr.Discard())
	n.Send(Receivers{WebhookURL: hook.URL + "/hook", SlackURL: slack.URL + "/services/T0/B0/xyz"}, []Message{rollback})

	var got Message
	if err := json.Unmarshal([]byte(hook.waitFor(t, 1)[0]), &got); err != nil {
		t.Fatal(err)
	}
	if got != rollback {
		t.Fatalf("webhook got %+v, want %+v", got, rollback)
	}
	var payload struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type string `json:"type"`
			Text struct {
				Type, Text string
			} `json:"text"`
			Elements []struct{ Text string } `json:"elements"`
		} `json:"blocks"`
	}
	if err := json.Unmarshal([]byte(slack.waitFor(t, 1)[0]), &payload); err != nil {
		t.Fatal(err)
	}
	if payload.Text != rollback.Summary {
		t.Errorf("slack text = %q", payload.Text)
	}
	var texts []string
	for _, b := range payload.Blocks {
		texts = append(texts, b.Type+": "+b.Text.Text)
		for _, e := range b.Elements {
			texts = append(texts, "  "+e.Text)
		}
	}
	want := []string{
		"section: :rotating_light: *mastodon/to-helm: rolling back at level 1 (Automatic)*",
		"section: *Why:* analysis: critical: errorRate 80.00% over 50.00%",
		"section: *Act:* ```kubectl -n mastodon patch mastodonmigration to-helm --type merge -p '{\"spec\":{\"rollbackLevel\":2}}'```",
		"context: ",
		"  RollbackStarted · phase RollingBack · 2026-12-01T03:00:00Z",
	}
	if strings.Join(texts, "\n") != strings.Join(want, "\n") {
		t.Fatalf("slack blocks:\n%s\nwant:\n%s", strings.Join(texts, "\n"), strings.Join(want, "\n"))
	}
}

func TestA5xxIsRetriedWithBackoffAndA4xxIsNot(t *testing.T) {
	sent := testutil.ToFloat64(metrics.Notifications.WithLabelValues("webhook", "sent"))
	failed := testutil.ToFloat64(metrics.Notifications.WithLabelValues("webhook", "failed"))
	flaky := newReceiver(t, http.StatusInternalServerError, http.StatusBadGateway, http.StatusTooManyRequests)
	n := start(t, quick, logr.Discard())
	n.Send(Receivers{WebhookURL: flaky.URL}, []Message{rollback})
	bodies := flaky.waitFor(t, 4)
	if bodies[3] != bodies[0] {
		t.Fatalf("the retry sent another body: %s", bodies[3])
	}
	waitMetric(t, "webhook", "sent", sent+1)

	refusing := newReceiver(t, http.StatusForbidden)
	n.Send(Receivers{WebhookURL: refusing.URL}, []Message{rollback})
	waitMetric(t, "webhook", "failed", failed+1)
	if got := len(refusing.received()); got != 1 {
		t.Fatalf("a 403 was tried %d times, want once", got)
	}

	down := newReceiver(t, http.StatusServiceUnavailable, http.StatusServiceUnavailable, http.StatusServiceUnavailable,
		http.StatusServiceUnavailable, http.StatusServiceUnavailable)
	n.Send(Receivers{WebhookURL: down.URL}, []Message{rollback})
	waitMetric(t, "webhook", "failed", failed+2)
	if got := len(down.received()); got != quick.Backoff.Steps {
		t.Fatalf("a receiver that stays down was tried %d times, want %d", got, quick.Backoff.Steps)
	}
}

func TestAHangingReceiverNeverHoldsTheSenderAndAFullQueueDrops(t *testing.T) {
	dropped := testutil.ToFloat64(metrics.Notifications.WithLabelValues("slack", "dropped"))
	hanging := newReceiver(t)
	hanging.hang = make(chan struct{})
	t.Cleanup(func() { close(hanging.hang) })
	webhook := newReceiver(t)
	var logged strings.Builder
	var mu sync.Mutex
	log := funcr.New(func(prefix, args string) { mu.Lock(); logged.WriteString(args + "\n"); mu.Unlock() }, funcr.Options{})
	n := start(t, Options{QueueSize: 2, Timeout: time.Hour, Backoff: quick.Backoff}, log)

	to := Receivers{WebhookURL: webhook.URL + "/token-abc", SlackURL: hanging.URL + "/services/T0/B0/secret-xyz"}
	slackOnly := Receivers{SlackURL: to.SlackURL}
	n.Send(slackOnly, []Message{rollback})
	hanging.waitFor(t, 1)
	began := time.Now()
	for range 9 {
		n.Send(slackOnly, []Message{rollback})
	}
	if took := time.Since(began); took > 100*time.Millisecond {
		t.Fatalf("Send waited %s for a hanging receiver", took)
	}
	// The webhook's queue is its own: its messages arrive while Slack hangs.
	n.Send(Receivers{WebhookURL: to.WebhookURL}, []Message{rollback})
	webhook.waitFor(t, 1)
	// Slack holds one message in flight and two queued: the other seven are dropped and counted.
	if got := testutil.ToFloat64(metrics.Notifications.WithLabelValues("slack", "dropped")) - dropped; got != 7 {
		t.Fatalf("dropped %v, want 7", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logged.String(), "notification dropped") {
		t.Fatalf("no log of the drop:\n%s", logged.String())
	}
	if strings.Contains(logged.String(), "secret-xyz") || strings.Contains(logged.String(), "token-abc") {
		t.Fatalf("a receiver URL was logged:\n%s", logged.String())
	}
}

func TestAnUnreachableReceiverIsLoggedWithoutItsURL(t *testing.T) {
	gone := newReceiver(t)
	url := gone.URL + "/services/T0/B0/secret-xyz"
	gone.Close()
	var logged strings.Builder
	var mu sync.Mutex
	log := funcr.New(func(prefix, args string) { mu.Lock(); logged.WriteString(args + "\n"); mu.Unlock() }, funcr.Options{})
	failed := testutil.ToFloat64(metrics.Notifications.WithLabelValues("slack", "failed"))
	n := start(t, quick, log)
	n.Send(Receivers{SlackURL: url}, []Message{rollback})
	waitMetric(t, "slack", "failed", failed+1)
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logged.String(), "notification not delivered") || !strings.Contains(logged.String(), "connection refused") {
		t.Fatalf("the failure is not logged with its cause:\n%s", logged.String())
	}
	if strings.Contains(logged.String(), "secret-xyz") {
		t.Fatalf("the receiver URL was logged:\n%s", logged.String())
	}
}

func waitMetric(t *testing.T, receiver, result string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if testutil.ToFloat64(metrics.Notifications.WithLabelValues(receiver, result)) == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("notifications{%s,%s} = %v, want %v", receiver, result,
		testutil.ToFloat64(metrics.Notifications.WithLabelValues(receiver, result)), want)
}
