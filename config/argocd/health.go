// Package argocd ships the Argo CD health checks of the operator's kinds (the .lua files beside
// this file, and argocd-cm.yaml and argo-cd-values.yaml that carry them) and runs them as Argo
// CD runs a custom health check, so that tests hold them to what kstatus reads (docs/health.md).
package argocd

import (
	"context"
	_ "embed"
	"fmt"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The scripts, keyed as Argo CD's argocd-cm keys them: resource.customizations.health.<key>.
var (
	//go:embed health-mastodonmigration.lua
	migrationHealth string
	//go:embed health-mastodonrollback.lua
	rollbackHealth string

	// Scripts maps each argocd-cm key suffix (group_Kind) to its script.
	Scripts = map[string]string{
		"migration.mastodon-operator.io_MastodonMigration": migrationHealth,
		"migration.mastodon-operator.io_MastodonRollback":  rollbackHealth,
	}
)

// Health is what a health check returns: Argo CD's status and message.
type Health struct {
	Status  string
	Message string
}

// Argo CD's health statuses (gitops-engine's HealthStatusCode).
var statuses = map[string]bool{"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true}

// Evaluate runs the health check of obj's kind on obj (an object as the API server returns it,
// in its unstructured form) in the sandbox Argo CD gives a check from argocd-cm: the base and
// table libraries only (no string, math, io or os unless resource.customizations.useOpenLibs is
// set), obj as a global, one second.
func Evaluate(obj map[string]any) (Health, error) {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return Health{}, err
	}
	script, ok := Scripts[gv.Group+"_"+kind]
	if !ok {
		return Health{}, fmt.Errorf("no health check for %s %s", apiVersion, kind)
	}
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for name, open := range map[string]lua.LGFunction{lua.BaseLibName: lua.OpenBase, lua.TabLibName: lua.OpenTable} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(open), Protect: true}, lua.LString(name)); err != nil {
			return Health{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return Health{}, fmt.Errorf("%s health check: %w", kind, err)
	}
	hs, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return Health{}, fmt.Errorf("%s health check returned %s, not a table", kind, l.Get(-1).Type())
	}
	status, _ := hs.RawGetString("status").(lua.LString)
	message, _ := hs.RawGetString("message").(lua.LString)
	if !statuses[string(status)] {
		return Health{}, fmt.Errorf("%s health check returned status %q, which Argo CD reads as Unknown", kind, status)
	}
	return Health{Status: string(status), Message: string(message)}, nil
}

// toLua converts an unstructured value as Argo CD does (util/lua's decodeValue): maps and slices
// to tables, numbers to numbers.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case int32:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case []any:
		t := l.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(v))
		for key, item := range v {
			t.RawSetString(key, toLua(l, item))
		}
		return t
	}
	return lua.LNil
}
