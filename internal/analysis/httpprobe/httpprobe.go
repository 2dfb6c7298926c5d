// Package httpprobe is the analysis's embedded provider: it asks a URL of the instance a few
// times and counts what fails.
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

// Name implements analysis.Provider.
func (p *Probe) Name() string { return "http" }

// Measure sends the requests one after the other, so a measurement takes a moment rather than
// the interval. Every request counts in the error rate: a 5xx answer, a timeout, or a
// connection that breaks is an error. The latency is the mean of the answers, whatever their
// status; nil when none came back. When not one request got a connection (refused, no such
// host, unroutable) the probe reached nothing, and that is no data rather than 100% errors: the
// probe cannot tell a stack that is down from its own network, and the stack's readiness is
// watched apart.
func (p *Probe) Measure(ctx context.Context, _ time.Duration) (analysis.Measurement, error) {
	var failed, reached, answered int
	var total time.Duration
	var lastErr error
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
			lastErr = r.err
			continue
		}
		answered++
		total += r.latency
		if r.status >= http.StatusInternalServerError {
			failed++
		}
	}
	if reached == 0 {
		return analysis.Measurement{}, fmt.Errorf("no connection to %s: %w", p.url, lastErr)
	}
	rate := float64(failed) / float64(p.requests)
	m := analysis.Measurement{ErrorRate: &rate, Requests: float64(p.requests)}
	if answered > 0 {
		mean := total / time.Duration(answered)
		m.Latency = &mean
	}
	return m, nil
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
