package controllers

import (
	"strings"
	"testing"
)

// The GenerateValues step says how many notes there are of each kind and where to read them,
// never the notes themselves: fifty notes would not fit a step message.
func TestValuesMessageCountsTheNotesByKind(t *testing.T) {
	notes := strings.Repeat("FromSecret: DB_HOST: read from Secret mastodon-secrets key DB_HOST\n", 33) +
		"Injected: OTP_SECRET: from Secret mastodon-secrets key OTP_SECRET\nRequired: mastodon.pvc: give the chart a volume\n"
	got := valuesMessage("to-helm-generated-values", notes)
	want := "values generated from the source stack into ConfigMap to-helm-generated-values; 35 notes to read before the install " +
		"(33 FromSecret, 1 Injected, 1 Required): kubectl get configmap to-helm-generated-values -o jsonpath='{.data.notes\\.txt}'"
	if got != want {
		t.Errorf("valuesMessage =\n%s\nwant\n%s", got, want)
	}
	if got := valuesMessage("v", ""); got != "values generated from the source stack into ConfigMap v" {
		t.Errorf("without notes: %q", got)
	}
}
