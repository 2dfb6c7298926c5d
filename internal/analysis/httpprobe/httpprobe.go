// Package httpprobe is the analysis's embedded provider: it asks a URL of the instance a few
// times, and the instance API once, and counts what fails.
package httpprobe

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"

	"github.com/mastodon-operator/mastodon-operator/internal/analysis"
	"github.com/mastodon-operator/mastodon-operator/internal/mastodonhealth"
)

// Defaults for a zero requests or timeout.
const (
	DefaultRequests = 5
	DefaultTimeout  = 5 * time.Second
)

// Probe measures a URL.
type Probe struct {
	url      string
	requests int
	timeout  time.Duration
	client   *http.Client
	instance *instanceCheck
}

// instanceCheck is the instance API request of each measurement.
type instanceCheck struct {
	url, token, version string
}

var _ analysis.Provider = (*Probe)(nil)

// New probes url with requests GETs per measurement, each given up after timeout; a nil client
// is http.DefaultClient.
func New(url string, requests int, timeout time.Duration, client *http.Client) *Probe {
	if requests < 1 {
		requests = DefaultRequests
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if client == nil {
		client = http.DefaultClient
	}
	return &Probe{url: url, requests: requests, timeout: timeout, client: client}
}

// CheckInstance makes each measurement also ask the instance API at url once, with token as a
// bearer token when set: /health answers OK even when the database is down, the instance API
// does not. It counts as failed unless it answers 200 with JSON holding a version, and, when
// version is set, that version (mastodonhealth.SameVersion): the stack that should take the
// traffic answered, not the other one.
func (p *Probe) CheckInstance(url, token, version string) *Probe {
	p.instance = &instanceCheck{url: url, token: token, version: version}
	return p
}

// Name implements analysis.Provider.
func (p *Probe) Name() string { return "http" }

// Measure sends the requests one after the other, so a measurement takes a moment rather than
// the interval. Every request counts in the error rate: a 5xx answer, a timeout, or a
// connection that breaks is an error. The latency is the mean of the answers, whatever their
// status; nil when none came back. When not one request got a connection (refused, no such
// host, unroutable) the probe reached nothing, and that is no data rather than 100% errors: the
// probe cannot tell a stack that is down from its own network, and the stack's readiness is
// watched apart. The instance API request (CheckInstance) comes last, once the URL was reached,
// and counts in the error rate, not in the latency. The measurement names the last failure.
func (p *Probe) Measure(ctx context.Context, _ time.Duration) (analysis.Measurement, error) {
	var failed, reached, answered int
	var total time.Duration
	var lastErr, lastFailure error
	for range p.requests {
		r := p.get(ctx)
		if ctx.Err() != nil {
			// The caller gave up: that says nothing about the stack.
			return analysis.Measurement{}, ctx.Err()
		}
		if r.connected || r.err == nil {
			reached++
		}
		if r.err != nil {
			failed++
			lastErr, lastFailure = r.err, r.err
			continue
		}
		answered++
		total += r.latency
		if r.status >= http.StatusInternalServerError {
			failed++
			lastFailure = fmt.Errorf("GET %s: %d %s", p.url, r.status, http.StatusText(r.status))
		}
	}
	if reached == 0 {
		return analysis.Measurement{}, fmt.Errorf("no connection to %s: %w", p.url, lastErr)
	}
	requests := p.requests
	if p.instance != nil {
		requests++
		if err := p.checkInstance(ctx); err != nil {
			if ctx.Err() != nil {
				return analysis.Measurement{}, ctx.Err()
			}
			failed++
			lastFailure = err
		}
	}
	rate := float64(failed) / float64(requests)
	m := analysis.Measurement{ErrorRate: &rate, Requests: float64(requests), OwnRequests: true}
	if lastFailure != nil {
		m.Failure = lastFailure.Error()
	}
	if answered > 0 {
		mean := total / time.Duration(answered)
		m.Latency = &mean
	}
	return m, nil
}

func (p *Probe) checkInstance(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	_, err := mastodonhealth.Instance(ctx, p.client, p.instance.url, p.instance.token, p.instance.version)
	return err
}

type response struct {
	latency time.Duration
	status  int
	// connected says whether the request got a connection, even if no answer came on it.
	connected bool
	err       error
}

// get sends one request and reads the whole answer.
func (p *Probe) get(ctx context.Context) response {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	var connected atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { connected.Store(true) }})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return response{err: err}
	}
	start := time.Now()
	resp, err := p.client.Do(req)
	var status int
	if err == nil {
		status = resp.StatusCode
		_, err = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	return response{latency: time.Since(start), status: status, connected: connected.Load(), err: err}
}
