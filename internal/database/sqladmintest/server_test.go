package sqladmintest_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/api/googleapi"
	sqladmin "google.golang.org/api/sqladmin/v1"

	"github.com/mastodon-operator/mastodon-operator/internal/database/sqladmintest"
)

const (
	project  = "p"
	instance = "db"
)

func setup(t *testing.T, opts sqladmintest.Options) (*sqladmintest.Server, *sqladmin.Service) {
	t.Helper()
	srv := sqladmintest.New(opts)
	t.Cleanup(srv.Close)
	srv.AddInstance(project, instance)
	svc, err := sqladmin.NewService(context.Background(), srv.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	return srv, svc
}

// rawJSON does a request without the client and decodes the answer into a generic map.
func rawJSON(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(res.Body).Decode(&m); err != nil {
		t.Fatalf("%s %s: answer is not a JSON object: %v", method, url, err)
	}
	return res.StatusCode, m
}

func TestWireShapes(t *testing.T) {
	srv, _ := setup(t, sqladmintest.Options{})
	base := srv.URL + "/v1/projects/p/instances/db"

	code, op := rawJSON(t, "POST", base+"/backupRuns", `{"description":"d"}`)
	if code != 200 || op["kind"] != "sql#operation" || op["operationType"] != "BACKUP_VOLUME" ||
		op["status"] != "PENDING" || op["targetId"] != instance || op["targetProject"] != project {
		t.Fatalf("insert answered %d %v", code, op)
	}
	bc, _ := op["backupContext"].(map[string]any)
	id, ok := bc["backupId"].(string) // int64 fields are JSON strings
	if !ok || id == "" {
		t.Fatalf("backupContext %v has no string backupId", op["backupContext"])
	}

	code, run := rawJSON(t, "GET", base+"/backupRuns/"+id, "")
	if code != 200 || run["id"] != id || run["kind"] != "sql#backupRun" || run["status"] != "SUCCESSFUL" ||
		run["description"] != "d" || run["type"] != "ON_DEMAND" || run["enqueuedTime"] == nil || run["endTime"] == nil {
		t.Fatalf("get answered %d %v", code, run)
	}

	code, e := rawJSON(t, "GET", srv.URL+"/v1/projects/p/instances/nope/backupRuns", "")
	errObj, _ := e["error"].(map[string]any)
	items, _ := errObj["errors"].([]any)
	if code != 404 || errObj["code"] != float64(404) || len(items) != 1 ||
		items[0].(map[string]any)["reason"] != "instanceDoesNotExist" {
		t.Fatalf("unknown instance answered %d %v", code, e)
	}

	code, _ = rawJSON(t, "GET", srv.URL+"/v1/projects/p/instances/db/users", "")
	if code != 404 {
		t.Fatalf("unknown method answered %d", code)
	}
	calls := srv.Calls()
	if last := calls[len(calls)-1]; last.API != "" || last.Status != 404 || last.Path != "/v1/projects/p/instances/db/users" {
		t.Errorf("unknown method recorded as %+v", last)
	}
}

func TestListsArePagedNewestFirst(t *testing.T) {
	srv, svc := setup(t, sqladmintest.Options{PageSize: 2})
	ctx := context.Background()
	var ids []int64
	for range 5 {
		op, err := svc.BackupRuns.Insert(project, instance, &sqladmin.BackupRun{}).Do()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, op.BackupContext.BackupId)
		if _, err := svc.Operations.Get(project, op.Name).Do(); err != nil { // ends it
			t.Fatal(err)
		}
	}
	var got []int64
	pages := 0
	err := svc.BackupRuns.List(project, instance).Pages(ctx, func(page *sqladmin.BackupRunsListResponse) error {
		pages++
		for _, r := range page.Items {
			got = append(got, r.Id)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if pages != 3 || len(got) != 5 || got[0] != ids[4] || got[4] != ids[0] {
		t.Fatalf("%d pages of %v, want 3 pages of %v newest first", pages, got, ids)
	}
	ops, err := svc.Operations.List(project).Instance(instance).MaxResults(10).Do()
	if err != nil || len(ops.Items) != 5 || ops.NextPageToken != "" || ops.Items[0].BackupContext.BackupId != ids[4] {
		t.Fatalf("operations list %+v, %v", ops, err)
	}
	srv.AddInstance(project, "other")
	ops, err = svc.Operations.List(project).Instance("other").Do()
	if err != nil || len(ops.Items) != 0 {
		t.Fatalf("operations of another instance: %+v, %v", ops, err)
	}
}

func TestTimingAndBusyInstance(t *testing.T) {
	srv, svc := setup(t, sqladmintest.Options{Backup: sqladmintest.Timing{Polls: 2}, Restore: sqladmintest.Timing{Polls: 2}})
	seeded, err := srv.AddBackupRun(project, instance, sqladmin.BackupRun{})
	if err != nil {
		t.Fatal(err)
	}
	op, err := svc.BackupRuns.Insert(project, instance, &sqladmin.BackupRun{}).Do()
	if err != nil {
		t.Fatal(err)
	}
	// A second backup, or a restore, while the first runs: 409.
	_, err = svc.BackupRuns.Insert(project, instance, &sqladmin.BackupRun{}).Do()
	wantAPIError(t, err, 409, "operationInProgress")
	seededID, _ := strconv.ParseInt(seeded, 10, 64)
	_, err = svc.Instances.RestoreBackup(project, instance, &sqladmin.InstancesRestoreBackupRequest{
		RestoreBackupContext: &sqladmin.RestoreBackupContext{BackupRunId: seededID, InstanceId: instance, Project: project}}).Do()
	wantAPIError(t, err, 409, "operationInProgress")
	id := op.BackupContext.BackupId
	restore := &sqladmin.InstancesRestoreBackupRequest{RestoreBackupContext: &sqladmin.RestoreBackupContext{
		BackupRunId: id, InstanceId: instance, Project: project}}
	_, err = svc.Instances.RestoreBackup(project, instance, restore).Do()
	wantAPIError(t, err, 400, "invalid") // not SUCCESSFUL yet

	// Polls count across the backup run and its operation.
	if run, err := svc.BackupRuns.Get(project, instance, id).Do(); err != nil || run.Status != "RUNNING" {
		t.Fatalf("first poll: %v, %v", run, err)
	}
	if o, err := svc.Operations.Get(project, op.Name).Do(); err != nil || o.Status != "DONE" || o.EndTime == "" {
		t.Fatalf("second poll: %+v, %v", o, err)
	}
	if run, err := svc.BackupRuns.Get(project, instance, id).Do(); err != nil || run.Status != "SUCCESSFUL" {
		t.Fatalf("after the end: %v, %v", run, err)
	}

	rop, err := svc.Instances.RestoreBackup(project, instance, restore).Do()
	if err != nil || rop.OperationType != "RESTORE_VOLUME" || rop.Status != "PENDING" {
		t.Fatalf("restore: %+v, %v", rop, err)
	}
	noID := &sqladmin.InstancesRestoreBackupRequest{RestoreBackupContext: &sqladmin.RestoreBackupContext{
		InstanceId: instance, Project: project}}
	_, err = svc.Instances.RestoreBackup(project, instance, noID).Do()
	wantAPIError(t, err, 400, "invalid")
	if got := srv.Restored(project, instance); len(got) != 0 {
		t.Fatalf("restored %v before the restore ended", got)
	}
	for range 2 {
		if _, err := svc.Operations.Get(project, rop.Name).Do(); err != nil {
			t.Fatal(err)
		}
	}
	if got := srv.Restored(project, instance); len(got) != 1 {
		t.Fatalf("restored %v, want one restore", got)
	}
}

func TestKnobs(t *testing.T) {
	srv, svc := setup(t, sqladmintest.Options{})

	srv.Deny("*")
	_, err := svc.Operations.List(project).Instance(instance).Do()
	wantAPIError(t, err, 403, "notAuthorized")
	srv.Allow("*")
	srv.Deny("cloudsql.instances.restoreBackup")
	if _, err := svc.Operations.List(project).Instance(instance).Do(); err != nil {
		t.Fatalf("after Allow: %v", err)
	}
	_, err = svc.Instances.RestoreBackup(project, instance, &sqladmin.InstancesRestoreBackupRequest{}).Do()
	wantAPIError(t, err, 403, "notAuthorized")

	srv.FailNext(sqladmintest.BackupRunsList, 500, "backendError", "try later")
	_, err = svc.BackupRuns.List(project, instance).Do()
	wantAPIError(t, err, 500, "backendError")
	if _, err := svc.BackupRuns.List(project, instance).Do(); err != nil {
		t.Fatalf("FailNext failed more than the next call: %v", err)
	}

	srv.FailBackups("INTERNAL_ERROR", "no")
	op, err := svc.BackupRuns.Insert(project, instance, &sqladmin.BackupRun{}).Do()
	if err != nil {
		t.Fatal(err)
	}
	o, err := svc.Operations.Get(project, op.Name).Do()
	if err != nil || o.Status != "DONE" || o.Error == nil || len(o.Error.Errors) != 1 || o.Error.Errors[0].Code != "INTERNAL_ERROR" {
		t.Fatalf("failed backup operation %+v, %v", o, err)
	}
	run, err := svc.BackupRuns.Get(project, instance, op.BackupContext.BackupId).Do()
	if err != nil || run.Status != "FAILED" || run.Error == nil || run.Error.Message != "no" {
		t.Fatalf("failed backup run %+v, %v", run, err)
	}

	srv.RemoveInstance(project, instance)
	_, err = svc.BackupRuns.Get(project, instance, op.BackupContext.BackupId).Do()
	wantAPIError(t, err, 404, "instanceDoesNotExist")

	if n := len(srv.CallsTo(sqladmintest.BackupRunsList)); n != 2 {
		t.Errorf("CallsTo(list) = %d, want 2", n)
	}
}

func wantAPIError(t *testing.T, err error, code int, reason string) {
	t.Helper()
	var gerr *googleapi.Error
	if !errors.As(err, &gerr) {
		t.Fatalf("error %v, want a *googleapi.Error", err)
	}
	if gerr.Code != code || len(gerr.Errors) == 0 || gerr.Errors[0].Reason != reason {
		t.Fatalf("error %d %v, want %d %s", gerr.Code, gerr.Errors, code, reason)
	}
}

// databases.list answers the shape the API documents: {"kind": "sql#databasesList", "items":
// [{"kind": "sql#database", "name": ...}]}, the instance's default postgres database first.
func TestDatabasesList(t *testing.T) {
	srv, svc := setup(t, sqladmintest.Options{})
	if err := srv.AddDatabase(project, instance, "mastodon_production", "pixelfed", "mastodon_production"); err != nil {
		t.Fatal(err)
	}
	code, list := rawJSON(t, "GET", srv.URL+"/v1/projects/p/instances/db/databases", "")
	items, _ := list["items"].([]any)
	if code != 200 || list["kind"] != "sql#databasesList" || len(items) != 3 {
		t.Fatalf("databases.list answered %d %v", code, list)
	}
	first, _ := items[0].(map[string]any)
	if first["kind"] != "sql#database" || first["name"] != "postgres" || first["instance"] != instance || first["project"] != project {
		t.Fatalf("first database %v", first)
	}

	got, err := svc.Databases.List(project, instance).Do()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, db := range got.Items {
		names = append(names, db.Name)
	}
	if strings.Join(names, ",") != "postgres,mastodon_production,pixelfed" {
		t.Errorf("the client reads %v", names)
	}
	if err := srv.AddDatabase(project, "nope", "x"); err == nil {
		t.Error("AddDatabase on an unknown instance succeeded")
	}
	srv.Deny("cloudsql.databases.list")
	_, err = svc.Databases.List(project, instance).Do()
	var gerr *googleapi.Error
	if !errors.As(err, &gerr) || gerr.Code != http.StatusForbidden {
		t.Errorf("denied databases.list answered %v, want 403", err)
	}
}
