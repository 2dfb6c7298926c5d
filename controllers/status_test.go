package controllers

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/helm"
)

func TestTruncateKeepsToTheLimitAndSaysWhatIsCut(t *testing.T) {
	short := "3 findings: 3 block the migration; see status.preflight"
	if got := truncate(short, maxEventNote); got != short {
		t.Fatalf("a short string must pass unchanged, got %q", got)
	}
	for _, max := range []int{maxFindingCheck, maxEventNote, maxMessage} {
		long := strings.Repeat("デプロイ", 2*max) // multi-byte, so a naive cut would split a rune
		got := truncate(long, max)
		kept, marker, found := strings.Cut(got, "… (")
		if len(got) > max || !utf8.ValidString(got) || !found || !strings.HasPrefix(long, kept) {
			t.Fatalf("max %d: want a valid UTF-8 prefix of at most %d bytes and a marker, got %d bytes, valid=%v: %q",
				max, max, len(got), utf8.ValidString(got), got)
		}
		if want := fmt.Sprintf("%d more bytes)", len(long)-len(kept)); marker != want {
			t.Fatalf("max %d: the marker says %q, want %q", max, marker, want)
		}
	}
}

func TestBoundMigrationStatusCutsEveryLimitedField(t *testing.T) {
	long := strings.Repeat("x", 40000)
	st := v1alpha1.MastodonMigrationStatus{
		Steps:     []v1alpha1.StepStatus{{Name: StepPreflight, Message: long}},
		Preflight: []v1alpha1.Finding{{Check: long, Object: long, Message: long}},
		Rollback: &v1alpha1.RollbackStatus{Reason: long, Result: long,
			Uninstall: &v1alpha1.UninstallStatus{Summary: long, Deletes: []string{long}, Keeps: []string{long}}},
		Analysis: &v1alpha1.AnalysisStatus{Providers: []v1alpha1.ProviderStatus{{Name: "http", Message: long}}},
	}
	setProgress(&st.Conditions, 1, progressStalled, "PreflightFailed", long)
	boundMigrationStatus(&st)
	for field, got := range map[string]struct {
		s   string
		max int
	}{
		"steps[0].message":              {st.Steps[0].Message, 4096},
		"conditions[0].message":         {st.Conditions[0].Message, 4096},
		"preflight[0].check":            {st.Preflight[0].Check, 64},
		"preflight[0].object":           {st.Preflight[0].Object, 512},
		"preflight[0].message":          {st.Preflight[0].Message, 1024},
		"rollback.reason":               {st.Rollback.Reason, 2048},
		"rollback.result":               {st.Rollback.Result, 2048},
		"rollback.uninstall.summary":    {st.Rollback.Uninstall.Summary, 2048},
		"rollback.uninstall.deletes[0]": {st.Rollback.Uninstall.Deletes[0], 512},
		"rollback.uninstall.keeps[0]":   {st.Rollback.Uninstall.Keeps[0], 512},
		"analysis.providers[0].message": {st.Analysis.Providers[0].Message, 1024},
	} {
		if len(got.s) > got.max || !strings.Contains(got.s, "more bytes)") {
			t.Errorf("%s: %d bytes, want at most %d with the marker", field, len(got.s), got.max)
		}
	}
}

func TestFindingsMostSeriousFirstAndCounted(t *testing.T) {
	var findings []v1alpha1.Finding
	for i := range 60 {
		class := []v1alpha1.FindingClass{v1alpha1.FindingInformational, v1alpha1.FindingChanges, "", v1alpha1.FindingBlocks}[i%4]
		findings = append(findings, v1alpha1.Finding{Check: "EnvParity", Class: class, Object: fmt.Sprintf("Deployment/d%02d", i)})
	}
	sortFindings(findings)
	for i := 1; i < len(findings); i++ {
		a, b := findings[i-1], findings[i]
		// Within a class, the order they were found in: here by object.
		if classRank(a.Class) > classRank(b.Class) || classRank(a.Class) == classRank(b.Class) && a.Object > b.Object {
			t.Fatalf("finding %d (%s %s) comes before %d (%s %s)", i-1, a.Class, a.Object, i, b.Class, b.Object)
		}
	}
	sum := summarizeFindings(findings)
	if want := (v1alpha1.PreflightSummary{Blocks: 30, Changes: 15, Informational: 15, Omitted: 10}); sum != want {
		t.Fatalf("summary %+v, want %+v", sum, want)
	}
	for _, tc := range []struct {
		sum  v1alpha1.PreflightSummary
		want string
	}{
		{sum, "60 findings: 30 block the migration, 15 change behaviour, 15 informational; status.preflight lists the 50 most serious"},
		{v1alpha1.PreflightSummary{Blocks: 1, Changes: 1}, "2 findings: 1 blocks the migration, 1 changes behaviour; see status.preflight"},
		{v1alpha1.PreflightSummary{Informational: 1}, "1 finding, all informational: the migration goes on; see status.preflight"},
		{v1alpha1.PreflightSummary{}, "every pre-migration check passed"},
	} {
		if got := preflightMessage(tc.sum); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.sum, got, tc.want)
		}
	}
}

// The record of an uninstall counts both lists, names the kept objects first in its summary,
// and lists at most maxItems of each.
func TestUninstallStatusCountsThenNamesWhatIsKept(t *testing.T) {
	var deletes, keeps []string
	for i := range 70 {
		deletes = append(deletes, fmt.Sprintf("Deployment/d%d", i))
	}
	for i := range 12 {
		keeps = append(keeps, fmt.Sprintf("PersistentVolumeClaim/p%d", i))
	}
	st := uninstallStatus("mastodon-helm", &helm.UninstallList{Deletes: deletes, Keeps: keeps})
	want := "uninstalling release mastodon-helm deletes 70 objects and keeps 12: PersistentVolumeClaim/p0, "
	if !strings.HasPrefix(st.Summary, want) || !strings.Contains(st.Summary, "PersistentVolumeClaim/p9 and 2 more") ||
		strings.Contains(st.Summary, "p10") || !strings.Contains(st.Summary, "delete the PersistentVolumeClaims by hand") {
		t.Errorf("summary %q, want it to start %q and name the first 10 kept", st.Summary, want)
	}
	if len(st.Deletes) != maxUninstallNames || len(st.Keeps) != 12 {
		t.Errorf("%d deletes and %d keeps listed, want %d and 12", len(st.Deletes), len(st.Keeps), maxUninstallNames)
	}
	if none := uninstallStatus("r", &helm.UninstallList{Deletes: deletes[:1]}); none.Summary != "uninstalling release r deletes 1 object and keeps 0" {
		t.Errorf("summary %q", none.Summary)
	}
}
