package mastodonhealth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

const token = "s3cret-token-value"

// mastodon serves the instance API and the streaming API as Mastodon does; an instance whose
// database is down answers the instance API 503 while its /health still says OK.
func mastodon(t *testing.T, instance http.HandlerFunc, wantToken bool) string {
	mux := http.NewServeMux()
	authorized := func(r *http.Request) bool { return !wantToken || r.Header.Get("Authorization") == "Bearer "+token }
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("OK")) })
	mux.HandleFunc("/api/v2/instance", func(w http.ResponseWriter, r *http.Request) {
		if !authorized(r) {
			http.Error(w, `{"error":"This API requires an authenticated user"}`, http.StatusUnauthorized)
			return
		}
		instance(w, r)
	})
	upgrader := websocket.Upgrader{}
	mux.HandleFunc("/api/v1/streaming", func(w http.ResponseWriter, r *http.Request) {
		if !authorized(r) {
			http.Error(w, `{"error":"Missing access token"}`, http.StatusUnauthorized)
			return
		}
		c, err := upgrader.Upgrade(w, r, nil)
		if err == nil {
			_ = c.Close()
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func reports(version string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_, _ = w.Write([]byte(`{"domain":"example.social","title":"Mastodon","version":"` + version + `","usage":{"users":{"active_month":3}}}`))
	}
}

func TestInstance(t *testing.T) {
	for _, tc := range []struct {
		name     string
		instance http.HandlerFunc
		want     string
		err      string // empty: no error
	}{
		{"the version of the image", reports("4.6.2"), "4.6.2", ""},
		{"a fork's build metadata is the same version", reports("4.6.2+glitch"), "4.6.2", ""},
		{"a tag's leading v", reports("4.6.2"), "v4.6.2", ""},
		{"no version to compare", reports("4.7.0-alpha.1+nightly-20261201"), "", ""},
		{"another version is the old stack", reports("4.5.0"), "4.6.2",
			"answered version 4.5.0, want 4.6.2: the old stack answered?"},
		{"a pre-release is not the release", reports("4.6.2-rc.1"), "4.6.2", "answered version 4.6.2-rc.1, want 4.6.2"},
		{"the database is down", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "<html>We're sorry, but something went wrong</html>", http.StatusServiceUnavailable)
		}, "4.6.2", "/api/v2/instance: 503 Service Unavailable"},
		{"a page that is not JSON", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte("<h1>Back soon</h1>"))
		}, "4.6.2", "answered text/html, not the instance's JSON"},
		{"JSON without a version", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{"status":"ok"}`)) },
			"4.6.2", "JSON without a version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := mastodon(t, tc.instance, false)
			_, err := Instance(context.Background(), nil, base+"/api/v2/instance", "", tc.want)
			switch {
			case tc.err == "" && err != nil:
				t.Fatal(err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one with %q", err, tc.err)
			}
		})
	}
}

func TestTheTokenIsSentAndNeverShown(t *testing.T) {
	base := mastodon(t, func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}, true)
	ctx := context.Background()
	if _, err := Instance(ctx, nil, base+"/api/v2/instance", "", ""); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("without the token: %v, want 401", err)
	}
	if err := Streaming(ctx, base+"/api/v1/streaming", ""); err == nil || !strings.Contains(err.Error(), "401 Unauthorized, not 101") {
		t.Fatalf("without the token: %v, want 401", err)
	}
	if err := Streaming(ctx, base+"/api/v1/streaming", token); err != nil {
		t.Fatal(err)
	}
	_, err := Instance(ctx, nil, base+"/api/v2/instance", token, "4.6.2")
	if err == nil || !strings.Contains(err.Error(), "503") || strings.Contains(err.Error(), token) {
		t.Fatalf("with the token: %v, want a 503 that does not show the token", err)
	}
}

func TestStreaming(t *testing.T) {
	base := mastodon(t, reports("4.6.2"), false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := Streaming(ctx, base+"/api/v1/streaming", ""); err != nil {
		t.Fatal(err)
	}
	// /health answers 200 OK, but no WebSocket: a streaming server that cannot serve its API.
	if err := Streaming(ctx, base+"/health", ""); err == nil || !strings.Contains(err.Error(), "200 OK, not 101 Switching Protocols") {
		t.Fatalf("a plain 200: %v", err)
	}
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	if err := Streaming(ctx, srv.URL+"/api/v1/streaming", ""); err == nil {
		t.Fatal("a WebSocket to nothing upgraded")
	}
}

func TestImageVersion(t *testing.T) {
	for image, want := range map[string]string{
		"ghcr.io/mastodon/mastodon:v4.6.2":                  "4.6.2",
		"tootsuite/mastodon:4.3.0":                          "4.3.0",
		"ghcr.io/mastodon/mastodon:v4.6.0-beta.2":           "4.6.0-beta.2",
		"registry.local:5000/mastodon:v4.6.2@sha256:" + sha: "4.6.2",
		"ghcr.io/mastodon/mastodon:nightly":                 "",
		"ghcr.io/mastodon/mastodon:latest":                  "",
		"ghcr.io/mastodon/mastodon":                         "",
		"ghcr.io/mastodon/mastodon@sha256:" + sha:           "",
		"ghcr.io/mastodon/mastodon:4":                       "",
	} {
		got, ok := ImageVersion(image)
		if got != want || ok != (want != "") {
			t.Errorf("ImageVersion(%s) = %q, %v; want %q", image, got, ok, want)
		}
	}
}

const sha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
