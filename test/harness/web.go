package harness

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// MastodonVersion is the version the stand-in's instance API reports by default: the official
// chart's appVersion, which the fixture's images run.
const MastodonVersion = "4.6.2"

// The paths where the stand-in answers as Mastodon does, not only with a status.
const (
	InstancePath  = "/api/v2/instance"
	StreamingPath = "/api/v1/streaming"
)

// Web stands in for the HTTP side of the stack, which kwok's pods do not serve: every Service
// the operator asks for health, and the public URL the analysis probes, answer here. By default
// it is a healthy Mastodon: every path answers 200, the instance API answers JSON with
// MastodonVersion, and the streaming API upgrades WebSockets. Tests set what a path answers, to
// make the stack look failing, slow or another version.
type Web struct {
	*httptest.Server
	mu      sync.Mutex
	answers map[string]answer
	version string
}

type answer struct {
	status int
	delay  time.Duration
}

func newWeb() *Web {
	w := &Web{answers: map[string]answer{}, version: MastodonVersion}
	upgrader := websocket.Upgrader{}
	w.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		a, set := w.answers[r.URL.Path]
		version := w.version
		w.mu.Unlock()
		time.Sleep(a.delay)
		switch {
		case set && a.status != http.StatusOK:
			rw.WriteHeader(a.status)
		case r.URL.Path == InstancePath:
			rw.Header().Set("Content-Type", "application/json; charset=utf-8")
			_ = json.NewEncoder(rw).Encode(map[string]any{"domain": "mastodon.example", "title": "Mastodon", "version": version})
		case r.URL.Path == StreamingPath && websocket.IsWebSocketUpgrade(r):
			if c, err := upgrader.Upgrade(rw, r, nil); err == nil {
				_ = c.Close()
			}
		}
	}))
	return w
}

// Answer makes path answer status after delay; by default every path answers 200 at once. Any
// other status than 200 on InstancePath or StreamingPath replaces their JSON or WebSocket.
func (w *Web) Answer(path string, status int, delay time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.answers[path] = answer{status: status, delay: delay}
}

// ReportVersion makes the instance API report version, as another stack of Mastodon would.
func (w *Web) ReportVersion(version string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.version = version
}

// Reset makes the stand-in a healthy Mastodon of MastodonVersion again.
func (w *Web) Reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.answers = map[string]answer{}
	w.version = MastodonVersion
}

// Address is the operator's ServiceAddress: every Service is reached here.
func (w *Web) Address(_, _ string, _ int32) string {
	return strings.TrimPrefix(w.URL, "http://")
}
