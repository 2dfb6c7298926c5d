package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/mastodon-operator/mastodon-operator/internal/metrics"
)

// The keys of the notifications Secret (spec.notifications.secretRef).
const (
	KeyWebhookURL = "webhookURL"
	KeySlackURL   = "slackURL"
)

// Receivers are where one migration's messages go; an empty URL sends nowhere. The URLs carry
// tokens: they are never logged.
type Receivers struct {
	WebhookURL string
	SlackURL   string
}

// The receivers' names, in the metrics and logs.
const (
	receiverWebhook = "webhook"
	receiverSlack   = "slack"
)

// Options tune a Notifier; the zero value is DefaultOptions.
type Options struct {
	// QueueSize is how many messages wait per receiver kind; one more is dropped and counted.
	QueueSize int
	// Timeout bounds each request.
	Timeout time.Duration
	// Backoff spaces the attempts of one message: its Steps is how many.
	Backoff wait.Backoff
}

// DefaultOptions: 100 messages per queue, 10 s per request, 5 attempts over about 15 s.
var DefaultOptions = Options{
	QueueSize: 100,
	Timeout:   10 * time.Second,
	Backoff:   wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Steps: 5, Cap: 30 * time.Second},
}

// Notifier sends messages in the background, one queue and one sender per receiver kind, so that
// a Slack that hangs does not hold the webhook's messages, and messages of one kind arrive in
// order. It is a manager Runnable.
type Notifier struct {
	opts   Options
	client *http.Client
	queues map[string]chan delivery
	log    logr.Logger
}

type delivery struct {
	url  string
	body []byte
	// about names the message in logs: the migration and the summary, never the URL.
	about string
}

// New makes a Notifier; Start runs its senders.
func New(opts Options, log logr.Logger) *Notifier {
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultOptions.QueueSize
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultOptions.Timeout
	}
	if opts.Backoff.Steps <= 0 {
		opts.Backoff = DefaultOptions.Backoff
	}
	n := &Notifier{opts: opts, client: &http.Client{Timeout: opts.Timeout}, log: log, queues: map[string]chan delivery{}}
	for _, r := range []string{receiverWebhook, receiverSlack} {
		n.queues[r] = make(chan delivery, opts.QueueSize)
	}
	return n
}

// Send queues msgs for the receivers, and never waits: a full queue drops the message, counts it
// in mastodon_operator_notifications_total{result="dropped"} and logs it.
func (n *Notifier) Send(to Receivers, msgs []Message) {
	for _, m := range msgs {
		about := m.Summary
		if to.WebhookURL != "" {
			body, _ := json.Marshal(m)
			n.enqueue(receiverWebhook, delivery{url: to.WebhookURL, body: body, about: about})
		}
		if to.SlackURL != "" {
			body, _ := json.Marshal(slackPayload(m))
			n.enqueue(receiverSlack, delivery{url: to.SlackURL, body: body, about: about})
		}
	}
}

func (n *Notifier) enqueue(receiver string, d delivery) {
	select {
	case n.queues[receiver] <- d:
	default:
		metrics.Notifications.WithLabelValues(receiver, "dropped").Inc()
		n.log.Info("notification dropped: the queue is full", "receiver", receiver, "message", d.about)
	}
}

// Start runs one sender per receiver kind until ctx ends; what is still queued then is not sent.
func (n *Notifier) Start(ctx context.Context) error {
	done := make(chan struct{})
	for receiver, q := range n.queues {
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				select {
				case <-ctx.Done():
					return
				case d := <-q:
					n.deliver(ctx, receiver, d)
				}
			}
		}()
	}
	for range n.queues {
		<-done
	}
	return nil
}

// deliver posts one message, retrying network errors, 429 and 5xx with backoff.
func (n *Notifier) deliver(ctx context.Context, receiver string, d delivery) {
	var last error
	attempts := 0
	err := wait.ExponentialBackoffWithContext(ctx, n.opts.Backoff, func(ctx context.Context) (bool, error) {
		attempts++
		last = n.post(ctx, d)
		var permanent permanentError
		if errors.As(last, &permanent) {
			return false, last
		}
		return last == nil, nil
	})
	if err == nil {
		metrics.Notifications.WithLabelValues(receiver, "sent").Inc()
		return
	}
	if last == nil {
		last = err
	}
	metrics.Notifications.WithLabelValues(receiver, "failed").Inc()
	n.log.Error(last, "notification not delivered", "receiver", receiver, "attempts", attempts, "message", d.about)
}

// permanentError is an answer that another attempt would not change (a 4xx but 429).
type permanentError struct{ error }

func (n *Notifier) post(ctx context.Context, d delivery) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(d.body))
	if err != nil {
		// The URL itself is wrong; the error would print it.
		return permanentError{errors.New("the receiver URL is not valid")}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "mastodon-operator")
	resp, err := n.client.Do(req)
	if err != nil {
		// A url.Error names the URL, token and all: keep only what went wrong.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			return fmt.Errorf("POST: %w", uerr.Err)
		}
		return errors.New("POST failed")
	}
	defer func() { _ = resp.Body.Close() }()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("the receiver answered %s", resp.Status)
	default:
		return permanentError{fmt.Errorf("the receiver answered %s", resp.Status)}
	}
}

// slackPayload is a Slack incoming webhook's message: text for the notification itself, blocks
// for the channel: what happened, why, and the command to act.
func slackPayload(m Message) map[string]any {
	icon := map[Severity]string{SeverityInfo: ":information_source:", SeverityWarning: ":warning:", SeverityCritical: ":rotating_light:"}[m.Severity]
	blocks := []map[string]any{section(fmt.Sprintf("%s *%s*", icon, m.Summary))}
	if m.Reason != "" {
		blocks = append(blocks, section("*Why:* "+m.Reason))
	}
	if m.Action != "" {
		blocks = append(blocks, section("*Act:* ```"+m.Action+"```"))
	}
	blocks = append(blocks, map[string]any{"type": "context", "elements": []map[string]any{
		{"type": "mrkdwn", "text": fmt.Sprintf("%s · phase %s · %s", m.Kind, m.Phase, m.Time.UTC().Format(time.RFC3339))},
	}})
	return map[string]any{"text": m.Summary, "blocks": blocks}
}

// section is a Slack mrkdwn section. Slack refuses a text over 3000 characters; a message's
// reason is cut to 1000.
func section(text string) map[string]any {
	return map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": text}}
}
