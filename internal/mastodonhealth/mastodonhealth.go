// Package mastodonhealth asks a Mastodon stack the questions that prove it works. Its /health
// and the streaming health path answer OK without touching the database; the instance API reads
// the database and the cache and reports the version that runs, and a WebSocket to the
// streaming API needs the streaming server, its Redis and (with a token) its database.
package mastodonhealth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"
	"github.com/distribution/reference"
	"github.com/gorilla/websocket"
)

// maxInstanceBody bounds what is read of the instance API's answer (a few KB in practice).
const maxInstanceBody = 1 << 20

// Instance asks the instance API at url (GET, with token as a bearer token when set) and
// returns the version it reports. It fails unless the answer is 200 with JSON holding a
// version, and, when want is set, unless that version is want (see SameVersion). The token
// never appears in an error.
func Instance(ctx context.Context, client *http.Client, url, token, want string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxInstanceBody))
	if err != nil {
		return "", fmt.Errorf("GET %s: reading the answer: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var instance struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(body, &instance); err != nil {
		return "", fmt.Errorf("GET %s answered %s, not the instance's JSON: %w", url, contentType(resp), err)
	}
	if instance.Version == "" {
		return "", fmt.Errorf("GET %s answered JSON without a version: not Mastodon's instance API", url)
	}
	if want != "" && !SameVersion(want, instance.Version) {
		return instance.Version, fmt.Errorf("GET %s answered version %s, want %s: the old stack answered?", url, instance.Version, want)
	}
	return instance.Version, nil
}

func contentType(resp *http.Response) string {
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		return ct
	}
	return "no content type"
}

// Streaming opens a WebSocket to url (http:// or https://, with token as a bearer token when
// set), which must upgrade (101 Switching Protocols), and closes it.
func Streaming(ctx context.Context, rawURL, token string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	}
	header := http.Header{}
	if token != "" {
		header.Set("Authorization", "Bearer "+token)
	}
	conn, resp, err := websocket.DefaultDialer.DialContext(ctx, u.String(), header)
	if resp != nil && resp.Body != nil {
		defer func() { _ = resp.Body.Close() }()
	}
	if err != nil {
		if resp != nil {
			return fmt.Errorf("WebSocket to %s answered %s, not 101 Switching Protocols", rawURL, resp.Status)
		}
		return fmt.Errorf("WebSocket to %s: %w", rawURL, err)
	}
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), deadline(ctx))
	return conn.Close()
}

// ImageVersion is the Mastodon version an image runs, from its tag (v4.6.2 gives 4.6.2);
// false when the tag is no whole version (nightly, latest, v4.6, a digest alone): then it
// cannot be known before the stack answers.
func ImageVersion(image string) (string, bool) {
	ref, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return "", false
	}
	tagged, ok := ref.(reference.Tagged)
	if !ok {
		return "", false
	}
	// Only a whole version: a floating tag such as v4.6 runs whichever 4.6.x was pushed last.
	v, err := semver.StrictNewVersion(strings.TrimPrefix(tagged.Tag(), "v"))
	if err != nil {
		return "", false
	}
	return v.String(), true
}

// SameVersion says whether the instance's reported version is want: the same release and
// pre-release, build metadata ignored, as semver orders them. Forks append theirs
// (4.6.2+glitch, 4.3.0+hometown-1.1.1) to the Mastodon version they are built on, and their
// images are tagged with the fork's own names, so an image tag v4.6.2 and a reported
// 4.6.2+glitch are the same stack. A leading v is ignored. Versions that do not parse are
// compared as strings.
func SameVersion(want, got string) bool {
	w, errW := semver.NewVersion(want)
	g, errG := semver.NewVersion(got)
	if errW != nil || errG != nil {
		return strings.TrimPrefix(want, "v") == strings.TrimPrefix(got, "v")
	}
	return w.Equal(g)
}

// deadline is ctx's deadline, or none.
func deadline(ctx context.Context) time.Time {
	t, _ := ctx.Deadline()
	return t
}
