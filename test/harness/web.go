package harness

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// Web stands in for the HTTP side of the stack, which kwok's pods do not serve: every Service
// the operator asks for health, and the public URL the analysis probes, answer here. Tests set
// what a path answers, to make the stack look healthy, failing or slow.
type Web struct {
	*httptest.Server
	mu      sync.Mutex
	answers map[string]answer
}

type answer struct {
	status int
	delay  time.Duration
}

func newWeb() *Web {
	w := &Web{answers: map[string]answer{}}
	w.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		a, ok := w.answers[r.URL.Path]
		w.mu.Unlock()
		if !ok {
			a = answer{status: http.StatusOK}
		}
		time.Sleep(a.delay)
		rw.WriteHeader(a.status)
	}))
	return w
}

// Answer makes path answer status after delay; by default every path answers 200 at once.
func (w *Web) Answer(path string, status int, delay time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.answers[path] = answer{status: status, delay: delay}
}

// Reset makes every path answer 200 at once again.
func (w *Web) Reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.answers = map[string]answer{}
}

// Address is the operator's ServiceAddress: every Service is reached here.
func (w *Web) Address(_, _ string, _ int32) string {
	return strings.TrimPrefix(w.URL, "http://")
}
