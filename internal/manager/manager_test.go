package manager

import (
	"bufio"
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"
)

// chartArgs are the arguments of the chart's Deployment rendered with its defaults, as
// config/manager/manager.yaml holds them (make generate).
func chartArgs(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "manager", "manager.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	for {
		doc, err := docs.Read()
		if err == io.EOF {
			t.Fatal("config/manager/manager.yaml has no Deployment")
		}
		if err != nil {
			t.Fatal(err)
		}
		var d appsv1.Deployment
		if err := yaml.Unmarshal(doc, &d); err != nil {
			t.Fatal(err)
		}
		if d.Kind == "Deployment" {
			return d.Spec.Template.Spec.Containers[0].Args
		}
	}
}

func TestParseReadsTheChartsDeployment(t *testing.T) {
	args := chartArgs(t)
	f, err := Parse(flag.NewFlagSet("manager", flag.ContinueOnError), append(args,
		"--watch-namespaces=mastodon, mastodon-2", "--watch-namespaces=mastodon-3"))
	if err != nil {
		t.Fatalf("the chart's arguments %q: %v", args, err)
	}
	want := Flags{
		MetricsAddress: ":8443", ProbeAddress: ":8081", LeaderElect: true, Concurrent: 4, KubeAPIQPS: 50, KubeAPIBurst: 300,
		WatchNamespaces:          []string{"mastodon", "mastodon-2", "mastodon-3"},
		AllowedChartRepositories: []string{"https://mastodon.github.io/helm-charts/"},
	}
	got := *f
	got.Log = zap.Options{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse(%q) = %+v, want %+v", args, got, want)
	}
	if f.Log.NewEncoder == nil || f.Log.Level == nil {
		t.Errorf("--zap-encoder=json --zap-log-level=info were not read: %+v", f.Log)
	}
}

func TestParseRefusesWhatTheManagerDoesNotKnow(t *testing.T) {
	for _, args := range [][]string{{"--watch-namespace=mastodon"}, {"mastodon"}} {
		fs := flag.NewFlagSet("manager", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		if _, err := Parse(fs, args); err == nil {
			t.Errorf("Parse(%q) accepted them", args)
		}
	}
}
