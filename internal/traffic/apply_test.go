package traffic

import (
	"encoding/json"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
)

func TestPointers(t *testing.T) {
	doc, err := decode(`{"metadata":{"annotations":{"cloud.google.com/neg":"x","a~b":"y"}},"spec":{"rules":[{"host":"h"}]}}`)
	if err != nil {
		t.Fatal(err)
	}
	for ptr, want := range map[string]string{
		annotationPath("cloud.google.com/neg"): `"x"`,
		annotationPath("a~b"):                  `"y"`,
		"/spec/rules/0/host":                   `"h"`,
		"/spec/rules/1/host":                   "",
		"/spec/selector":                       "",
	} {
		v, ok := lookup(doc, ptr)
		if got := map[bool]string{true: mustJSON(v), false: ""}[ok]; got != want {
			t.Errorf("lookup %s = %s, want %s", ptr, got, want)
		}
	}
	if p, last := splitPointer(annotationPath("cloud.google.com/neg")); p != "/metadata/annotations" || last != "cloud.google.com/neg" {
		t.Errorf("splitPointer = %q %q", p, last)
	}
	if err := set(doc, "/spec/selector/app", `"web"`); err != nil {
		t.Fatal(err)
	}
	if err := set(doc, annotationPath("a~b"), ""); err != nil {
		t.Fatal(err)
	}
	if err := set(doc, "/metadata/labels/gone", ""); err != nil {
		t.Fatal(err)
	}
	want := `{"metadata":{"annotations":{"cloud.google.com/neg":"x"}},"spec":{"rules":[{"host":"h"}],"selector":{"app":"web"}}}`
	if !sameJSON(mustJSON(doc), want) {
		t.Errorf("after set: %s, want %s", mustJSON(doc), want)
	}
	if err := set(doc, "/spec/rules/3/host", `"x"`); err == nil {
		t.Error("set past the end of a list succeeded")
	}
}

func TestSameJSON(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{`{"a":"1","b":"2"}`, `{"b": "2", "a": "1"}`, true},
		{`{"a":"1"}`, `{"a":"1","b":"2"}`, false},
		{"", "", true},
		{"", `""`, false},
		{`{"port":{"number":3000}}`, `{"port":{"number":3000.0}}`, true},
	} {
		if got := sameJSON(tc.a, tc.b); got != tc.same {
			t.Errorf("sameJSON(%s, %s) = %v", tc.a, tc.b, got)
		}
	}
}

func TestChangesRoundTripThroughJSON(t *testing.T) {
	c := Change{Kind: "Service", Name: "mastodon-web", Path: PathSelector, Component: Web, Before: `{"app":"mastodon-web"}`, After: `{"a":"b"}`}
	data, err := json.Marshal([]Change{c})
	if err != nil {
		t.Fatal(err)
	}
	var back []Change
	if err := json.Unmarshal(data, &back); err != nil || !slices.Equal(back, []Change{c}) {
		t.Errorf("round trip: %v %v", back, err)
	}
	if got := c.String(); got != `Service/mastodon-web /spec/selector: {"app":"mastodon-web"} -> {"a":"b"}` {
		t.Errorf("String() = %s", got)
	}
}

func TestReverse(t *testing.T) {
	a := Change{Kind: "Service", Name: "a", Path: "/x", Before: "1", After: "2"}
	b := Change{Kind: "Ingress", Name: "b", Path: "/y", Before: "", After: "3"}
	got := Reverse([]Change{a, b})
	want := []Change{{Kind: "Ingress", Name: "b", Path: "/y", Before: "3", After: ""}, {Kind: "Service", Name: "a", Path: "/x", Before: "2", After: "1"}}
	if !slices.Equal(got, want) {
		t.Errorf("Reverse = %v, want %v", got, want)
	}
	if !slices.Equal(Reverse(Reverse([]Change{a, b})), []Change{a, b}) {
		t.Error("Reverse is not its own inverse")
	}
}

// Source -> maintenance -> release, planned each time against the original objects, and back.
func TestOriginalAndThenChainSwitches(t *testing.T) {
	old, rel := loadOldStack(t), renderRelease(t)
	maint := MaintenanceTargets("mastodon-maintenance")
	for _, sw := range []Switcher{ServiceSelector{}, IngressBackends{}} {
		t.Run(sw.Method(), func(t *testing.T) {
			s := old.stack()
			s.TargetServices = append(slices.Clone(rel.services), maintenanceService(t, "mastodon-maintenance"))
			toMaint, problems := sw.Plan(s, maint)
			if len(problems) > 0 {
				t.Fatal(problems)
			}
			// The cluster as the switch to maintenance leaves it.
			live, err := Original(s, Reverse(toMaint))
			if err != nil {
				t.Fatal(err)
			}
			if sw.Method() == MethodServiceSelector {
				if got := SourceServices(live.Services, []*appsv1.Deployment{old.deployments["mastodon-web"], old.deployments["mastodon-streaming"]}); len(got) != 0 {
					t.Errorf("in maintenance, Services still pick source pods: %v", names(got))
				}
			}
			orig, err := Original(live, toMaint)
			if err != nil {
				t.Fatal(err)
			}
			if !sameJSON(mustJSON(orig), mustJSON(s)) {
				t.Fatalf("Original of the maintenance state is not the original:\n%s\n%s", mustJSON(orig), mustJSON(s))
			}
			if got := names(SourceServices(orig.Services, []*appsv1.Deployment{old.deployments["mastodon-web"]})); !slices.Equal(got, webServices) {
				t.Errorf("Original finds web Services %v, want %v", got, webServices)
			}
			toRelease, problems := sw.Plan(orig, rel.targets(t))
			if len(problems) > 0 {
				t.Fatal(problems)
			}
			hop := Then(toMaint, toRelease)
			for _, c := range hop {
				m, ok := byObject(toMaint)[c.Object()+c.Path]
				r := byObject(toRelease)[c.Object()+c.Path]
				if ok && (c.Before != m.After || c.After != r.After) {
					t.Errorf("hop %s, want %s -> %s", c, m.After, r.After)
				}
			}
			// Applied in memory, the hop leads where a direct switch would have.
			viaMaint, err := Original(live, Reverse(hop))
			if err != nil {
				t.Fatal(err)
			}
			direct, err := Original(s, Reverse(toRelease))
			if err != nil {
				t.Fatal(err)
			}
			if !sameJSON(mustJSON(viaMaint), mustJSON(direct)) {
				t.Errorf("via maintenance:\n%s\ndirect:\n%s", mustJSON(viaMaint), mustJSON(direct))
			}
			// Back to the source from the release: Reverse of the plan made against the original.
			back, err := Original(viaMaint, toRelease)
			if err != nil {
				t.Fatal(err)
			}
			if !sameJSON(mustJSON(back), mustJSON(s)) {
				t.Error("reverting the release plan does not give the original back")
			}
		})
	}
}

func TestThenDropsFieldsThatStay(t *testing.T) {
	prev := []Change{
		{Kind: "Service", Name: "a", Path: "/spec/selector", Before: `{"app":"a"}`, After: `{"m":"1"}`},
		{Kind: "Service", Name: "m", Path: "/metadata/annotations/x", Before: "", After: `"v"`},
	}
	next := []Change{
		{Kind: "Service", Name: "a", Path: "/spec/selector", Before: `{"app":"a"}`, After: `{"m":"1"}`},
		{Kind: "Service", Name: "b", Path: "/spec/selector", Before: `{"app":"b"}`, After: `{"r":"1"}`},
	}
	got := Then(prev, next)
	want := []Change{
		{Kind: "Service", Name: "b", Path: "/spec/selector", Before: `{"app":"b"}`, After: `{"r":"1"}`},
		{Kind: "Service", Name: "m", Path: "/metadata/annotations/x", Before: `"v"`, After: ""},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Then = %v, want %v", got, want)
	}
}
