package database_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/api/googleapi"
	sqladmin "google.golang.org/api/sqladmin/v1"

	"github.com/mastodon-operator/mastodon-operator/internal/database"
	"github.com/mastodon-operator/mastodon-operator/internal/database/sqladmintest"
)

const (
	project  = "my-project"
	instance = "mastodon-db"
	desc     = "mastodon-operator mastodon/to-helm 0d8c1a2e-uid"
)

// clock is a settable clock for the server.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// setup starts a server with the instance and a client pointed at it.
func setup(t *testing.T, opts sqladmintest.Options) (*sqladmintest.Server, *database.CloudSQL) {
	t.Helper()
	srv := sqladmintest.New(opts)
	t.Cleanup(srv.Close)
	srv.AddInstance(project, instance)
	db, err := database.NewCloudSQL(context.Background(), srv.ClientOptions()...)
	if err != nil {
		t.Fatalf("NewCloudSQL: %v", err)
	}
	return srv, db
}

// succeededBackup takes a backup and polls it until it is SUCCESSFUL.
func succeededBackup(t *testing.T, db *database.CloudSQL, description string) *database.Backup {
	t.Helper()
	ctx := context.Background()
	b, err := db.StartBackup(ctx, project, instance, description)
	if err != nil {
		t.Fatalf("StartBackup: %v", err)
	}
	for range 10 {
		if b, err = db.Backup(ctx, project, instance, b.ID); err != nil {
			t.Fatalf("Backup: %v", err)
		}
		if b.Status == database.BackupSuccessful {
			return b
		}
	}
	t.Fatalf("backup %s still %s after 10 polls", b.ID, b.Status)
	return nil
}

func wantContains(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q\ndoes not contain %q", err, p)
		}
	}
}

func wantCode(t *testing.T, err error, code int) {
	t.Helper()
	var gerr *googleapi.Error
	if !errors.As(err, &gerr) {
		t.Fatalf("error %v wraps no *googleapi.Error", err)
	}
	if gerr.Code != code {
		t.Errorf("HTTP code %d, want %d", gerr.Code, code)
	}
}

func TestBackupStartedAndPolledToSuccessful(t *testing.T) {
	srv, db := setup(t, sqladmintest.Options{Backup: sqladmintest.Timing{Polls: 3}})
	ctx := context.Background()

	b, err := db.StartBackup(ctx, project, instance, desc)
	if err != nil {
		t.Fatalf("StartBackup: %v", err)
	}
	if b.ID == "" || b.Status != database.BackupEnqueued || b.Description != desc || b.EnqueuedAt.IsZero() {
		t.Fatalf("StartBackup = %+v, want an ENQUEUED backup with an id, the description and an enqueue time", b)
	}
	for i, want := range []string{database.BackupRunning, database.BackupRunning, database.BackupSuccessful} {
		got, err := db.Backup(ctx, project, instance, b.ID)
		if err != nil {
			t.Fatalf("Backup poll %d: %v", i+1, err)
		}
		if got.ID != b.ID || got.Status != want {
			t.Fatalf("Backup poll %d = %s %s, want %s %s", i+1, got.ID, got.Status, b.ID, want)
		}
		if want == database.BackupSuccessful {
			if got.EndedAt.IsZero() || got.EndedAt.Before(got.EnqueuedAt) || got.Description != desc {
				t.Errorf("successful backup = %+v, want an end time after the enqueue time and the description", got)
			}
		} else if !got.EndedAt.IsZero() {
			t.Errorf("running backup has end time %v", got.EndedAt)
		}
	}

	inserts := srv.CallsTo(sqladmintest.BackupRunsInsert)
	if len(inserts) != 1 {
		t.Fatalf("backupRuns.insert called %d times, want 1", len(inserts))
	}
	var body sqladmin.BackupRun
	if err := inserts[0].Decode(&body); err != nil || body.Description != desc {
		t.Errorf("backupRuns.insert body %s (%v), want description %q", inserts[0].Body, err, desc)
	}
	if want := "/v1/projects/" + project + "/instances/" + instance + "/backupRuns"; inserts[0].Path != want {
		t.Errorf("backupRuns.insert path %s, want %s", inserts[0].Path, want)
	}
}

func TestBackupEndsAfterDuration(t *testing.T) {
	clk := newClock()
	_, db := setup(t, sqladmintest.Options{Backup: sqladmintest.Timing{After: 10 * time.Minute}, Now: clk.Now})
	ctx := context.Background()
	b, err := db.StartBackup(ctx, project, instance, desc)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	if got, err := db.Backup(ctx, project, instance, b.ID); err != nil || got.Status != database.BackupRunning {
		t.Fatalf("after 1m: %+v, %v; want RUNNING", got, err)
	}
	clk.Advance(10 * time.Minute)
	got, err := db.Backup(ctx, project, instance, b.ID)
	if err != nil || got.Status != database.BackupSuccessful {
		t.Fatalf("after 11m: %+v, %v; want SUCCESSFUL", got, err)
	}
	if want := clk.Now(); !got.EndedAt.Equal(want) {
		t.Errorf("EndedAt %v, want %v", got.EndedAt, want)
	}
}

func TestStartBackupTwiceMakesOneBackupRun(t *testing.T) {
	// A small page size and other backups around: the lookup by description must page.
	srv, db := setup(t, sqladmintest.Options{Backup: sqladmintest.Timing{Polls: 2}, PageSize: 1})
	ctx := context.Background()
	for range 3 {
		if _, err := srv.AddBackupRun(project, instance, sqladmin.BackupRun{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := srv.AddBackupRun(project, instance, sqladmin.BackupRun{Type: "ON_DEMAND", Description: "someone else"}); err != nil {
		t.Fatal(err)
	}

	first, err := db.StartBackup(ctx, project, instance, desc)
	if err != nil {
		t.Fatal(err)
	}
	// The operator restarted before recording first.ID: it asks again, while the backup runs ...
	again, err := db.StartBackup(ctx, project, instance, desc)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != first.ID {
		t.Fatalf("second StartBackup started backup %s, want the first one, %s", again.ID, first.ID)
	}
	// ... and after it ended.
	succeededBackup(t, db, desc)
	after, err := db.StartBackup(ctx, project, instance, desc)
	if err != nil {
		t.Fatal(err)
	}
	if after.ID != first.ID || after.Status != database.BackupSuccessful {
		t.Fatalf("StartBackup after the backup ended = %+v, want %s SUCCESSFUL", after, first.ID)
	}

	if n := len(srv.CallsTo(sqladmintest.BackupRunsInsert)); n != 1 {
		t.Errorf("backupRuns.insert called %d times, want 1", n)
	}
	var ours int
	for _, run := range srv.BackupRuns(project, instance) {
		if run.Description == desc {
			ours++
		}
	}
	if ours != 1 {
		t.Errorf("%d backup runs with our description, want 1", ours)
	}

	// Another migration (another description) gets its own backup.
	other, err := db.StartBackup(ctx, project, instance, "mastodon-operator mastodon/other uid-2")
	if err != nil {
		t.Fatal(err)
	}
	if other.ID == first.ID {
		t.Errorf("another description got the same backup %s", other.ID)
	}
}

func TestFailedBackupIsReturnedNotRetaken(t *testing.T) {
	srv, db := setup(t, sqladmintest.Options{})
	srv.FailBackups("INTERNAL_ERROR", "backup failed: disk quota")
	ctx := context.Background()
	b, err := db.StartBackup(ctx, project, instance, desc)
	if err != nil {
		t.Fatal(err)
	}
	got, err := db.Backup(ctx, project, instance, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != database.BackupFailed || !strings.Contains(got.Error, "disk quota") {
		t.Fatalf("Backup = %+v, want FAILED with the error", got)
	}
	again, err := db.StartBackup(ctx, project, instance, desc)
	if err != nil || again.ID != b.ID || again.Status != database.BackupFailed {
		t.Fatalf("StartBackup again = %+v, %v; want the failed run %s", again, err, b.ID)
	}
	if _, err := db.StartRestore(ctx, project, instance, b.ID); err == nil {
		t.Error("StartRestore of a failed backup succeeded")
	} else {
		wantContains(t, err, "backup run "+b.ID, "FAILED", "disk quota")
	}
	if n := len(srv.CallsTo(sqladmintest.InstancesRestoreBackup)); n != 0 {
		t.Errorf("restoreBackup called %d times for a failed backup", n)
	}
}

func TestRestoreStartedOnce(t *testing.T) {
	srv, db := setup(t, sqladmintest.Options{Backup: sqladmintest.Timing{Polls: 1}, Restore: sqladmintest.Timing{Polls: 3}})
	ctx := context.Background()
	b := succeededBackup(t, db, desc)

	op, err := db.StartRestore(ctx, project, instance, b.ID)
	if err != nil {
		t.Fatalf("StartRestore: %v", err)
	}
	if op == "" {
		t.Fatal("StartRestore returned no operation")
	}
	// Restarted before recording op: asked again while the restore runs.
	again, err := db.StartRestore(ctx, project, instance, b.ID)
	if err != nil || again != op {
		t.Fatalf("StartRestore again = %q, %v; want %q", again, err, op)
	}

	for i, want := range []bool{false, false, true} {
		done, err := db.Operation(ctx, project, op)
		if err != nil || done != want {
			t.Fatalf("Operation poll %d = %v, %v; want %v, nil", i+1, done, err, want)
		}
	}
	// Asked again after it ended: still the same restore; restoring twice would lose writes.
	after, err := db.StartRestore(ctx, project, instance, b.ID)
	if err != nil || after != op {
		t.Fatalf("StartRestore after the restore ended = %q, %v; want %q", after, err, op)
	}

	calls := srv.CallsTo(sqladmintest.InstancesRestoreBackup)
	if len(calls) != 1 {
		t.Fatalf("restoreBackup called %d times, want 1", len(calls))
	}
	var req sqladmin.InstancesRestoreBackupRequest
	if err := calls[0].Decode(&req); err != nil {
		t.Fatal(err)
	}
	rc := req.RestoreBackupContext
	if rc == nil || strconv.FormatInt(rc.BackupRunId, 10) != b.ID || rc.InstanceId != instance || rc.Project != project {
		t.Errorf("restoreBackup body %s, want restoreBackupContext{backupRunId %s, instanceId %s, project %s}",
			calls[0].Body, b.ID, instance, project)
	}
	if want := "/v1/projects/" + project + "/instances/" + instance + "/restoreBackup"; calls[0].Path != want {
		t.Errorf("restoreBackup path %s, want %s", calls[0].Path, want)
	}
	if got := srv.Restored(project, instance); len(got) != 1 || got[0] != b.ID {
		t.Errorf("instance restored from %v, want [%s]", got, b.ID)
	}
}

func TestRestoreBeforeTheBackupIsNotOurs(t *testing.T) {
	clk := newClock()
	srv, db := setup(t, sqladmintest.Options{Now: clk.Now})
	ctx := context.Background()
	old, err := srv.AddBackupRun(project, instance, sqladmin.BackupRun{})
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	earlier, err := db.StartRestore(ctx, project, instance, old)
	if err != nil {
		t.Fatal(err)
	}
	if done, err := db.Operation(ctx, project, earlier); !done || err != nil {
		t.Fatalf("earlier restore: %v, %v", done, err)
	}
	clk.Advance(time.Hour)
	b := succeededBackup(t, db, desc)
	clk.Advance(time.Minute)

	op, err := db.StartRestore(ctx, project, instance, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if op == earlier {
		t.Fatalf("StartRestore took the restore from before the backup, %s, for its own", earlier)
	}
	if n := len(srv.CallsTo(sqladmintest.InstancesRestoreBackup)); n != 2 {
		t.Errorf("restoreBackup called %d times, want 2", n)
	}
}

func TestOperationErrorSurfaced(t *testing.T) {
	srv, db := setup(t, sqladmintest.Options{})
	ctx := context.Background()
	b := succeededBackup(t, db, desc)
	srv.FailRestores("ERROR_RDBMS", "restore failed: the backup's disk could not be attached")

	op, err := db.StartRestore(ctx, project, instance, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	done, err := db.Operation(ctx, project, op)
	if !done {
		t.Fatalf("Operation done = false, want true (err %v)", err)
	}
	wantContains(t, err, op, "RESTORE_VOLUME", instance, project, "could not be attached", "ERROR_RDBMS")
	var oe *database.OperationError
	if !errors.As(err, &oe) || oe.Operation != op || len(oe.Errors) != 1 || oe.Errors[0].Code != "ERROR_RDBMS" {
		t.Fatalf("error %#v is not the operation's *OperationError", err)
	}

	// A failed restore is not taken for a restore in progress: asking again tries again.
	srv.FailRestores("", "")
	retry, err := db.StartRestore(ctx, project, instance, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if retry == op {
		t.Fatal("StartRestore after a failed restore returned the failed one")
	}
	if done, err := db.Operation(ctx, project, retry); !done || err != nil {
		t.Fatalf("retried restore: %v, %v", done, err)
	}
	if got := srv.Restored(project, instance); len(got) != 1 || got[0] != b.ID {
		t.Errorf("instance restored from %v, want [%s]", got, b.ID)
	}
}

func TestForbidden(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		permission string
		call       func(db *database.CloudSQL, backupID string) error
	}{
		{"cloudsql.backupRuns.create", func(db *database.CloudSQL, _ string) error {
			_, err := db.StartBackup(ctx, project, instance, "another migration")
			return err
		}},
		{"cloudsql.backupRuns.list", func(db *database.CloudSQL, _ string) error {
			_, err := db.StartBackup(ctx, project, instance, "another migration")
			return err
		}},
		{"cloudsql.backupRuns.get", func(db *database.CloudSQL, id string) error {
			_, err := db.Backup(ctx, project, instance, id)
			return err
		}},
		{"cloudsql.instances.restoreBackup", func(db *database.CloudSQL, id string) error {
			_, err := db.StartRestore(ctx, project, instance, id)
			return err
		}},
		{"cloudsql.instances.list", func(db *database.CloudSQL, id string) error {
			_, err := db.StartRestore(ctx, project, instance, id)
			return err
		}},
		{"cloudsql.instances.get", func(db *database.CloudSQL, _ string) error {
			_, err := db.Operation(ctx, project, "any-operation")
			return err
		}},
	} {
		t.Run(tc.permission, func(t *testing.T) {
			srv, db := setup(t, sqladmintest.Options{})
			b := succeededBackup(t, db, desc)
			srv.Deny(tc.permission)
			err := tc.call(db, b.ID)
			wantContains(t, err, "missing permission "+tc.permission+" on project "+project, "roles/cloudsql.admin")
			wantCode(t, err, http.StatusForbidden)
		})
	}
}

func TestAPINotEnabled(t *testing.T) {
	srv, db := setup(t, sqladmintest.Options{})
	srv.FailNext(sqladmintest.BackupRunsList, http.StatusForbidden, "accessNotConfigured",
		"Cloud SQL Admin API has not been used in project 123 before or it is disabled.")
	_, err := db.StartBackup(context.Background(), project, instance, desc)
	wantContains(t, err, "not enabled on project "+project, "gcloud services enable sqladmin.googleapis.com")
}

func TestNotFound(t *testing.T) {
	_, db := setup(t, sqladmintest.Options{})
	ctx := context.Background()

	_, err := db.StartBackup(ctx, project, "mastodon-dbb", desc)
	wantContains(t, err, "Cloud SQL instance mastodon-dbb not found in project "+project)
	wantCode(t, err, http.StatusNotFound)

	_, err = db.StartBackup(ctx, "other-project", instance, desc)
	wantContains(t, err, "Cloud SQL instance "+instance+" not found in project other-project")

	_, err = db.Backup(ctx, project, "gone", "1234")
	wantContains(t, err, "Cloud SQL instance gone not found in project "+project)

	_, err = db.Backup(ctx, project, instance, "1234")
	wantContains(t, err, "backup run 1234 not found on Cloud SQL instance "+instance+" in project "+project)

	_, err = db.StartRestore(ctx, project, "gone", "1234")
	wantContains(t, err, "Cloud SQL instance gone not found in project "+project)

	_, err = db.Operation(ctx, project, "no-such-op")
	wantContains(t, err, "operation no-such-op not found in project "+project)
	wantCode(t, err, http.StatusNotFound)
}

func TestInstanceBusy(t *testing.T) {
	srv, db := setup(t, sqladmintest.Options{Backup: sqladmintest.Timing{Polls: 5}})
	ctx := context.Background()
	old, err := srv.AddBackupRun(project, instance, sqladmin.BackupRun{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.StartBackup(ctx, project, instance, desc); err != nil {
		t.Fatal(err)
	}
	_, err = db.StartRestore(ctx, project, instance, old)
	wantContains(t, err, "another operation is in progress on Cloud SQL instance "+instance)
	wantCode(t, err, http.StatusConflict)
}

func TestTransientAndArgumentErrors(t *testing.T) {
	srv, db := setup(t, sqladmintest.Options{})
	ctx := context.Background()

	srv.FailNext(sqladmintest.BackupRunsInsert, http.StatusServiceUnavailable, "backendError", "The service is currently unavailable.")
	_, err := db.StartBackup(ctx, project, instance, desc)
	wantContains(t, err, "starting an on-demand backup of Cloud SQL instance "+instance, "HTTP 503", "try again later")
	wantCode(t, err, http.StatusServiceUnavailable)
	// The retry starts the backup; the failed attempt made none.
	if _, err := db.StartBackup(ctx, project, instance, desc); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.BackupRuns(project, instance)); n != 1 {
		t.Errorf("%d backup runs, want 1", n)
	}

	before := len(srv.Calls())
	_, err = db.Backup(ctx, project, instance, "not-a-number")
	wantContains(t, err, `"not-a-number" is not a Cloud SQL backup run id`)
	_, err = db.StartBackup(ctx, project, instance, " ")
	wantContains(t, err, "no description given")
	_, err = db.StartRestore(ctx, "", "", "1")
	wantContains(t, err, "no project, instance given")
	if after := len(srv.Calls()); after != before {
		t.Errorf("bad arguments reached the API: %d calls", after-before)
	}

	// Nothing listens: the error says the API could not be reached.
	srv.Close()
	_, err = db.Operation(ctx, project, "op")
	wantContains(t, err, "looking at Cloud SQL operation op in project "+project, "could not reach the Cloud SQL Admin API")
}

// Databases reads the instance's databases through databases.list; OtherDatabases leaves out
// the migration's own and Cloud SQL's postgres, and names the rest.
func TestDatabasesOfASharedInstance(t *testing.T) {
	srv, db := setup(t, sqladmintest.Options{})
	ctx := context.Background()
	alone, err := db.Databases(ctx, project, instance)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.AddDatabase(project, instance, "mastodon_production"); err != nil {
		t.Fatal(err)
	}
	own, err := db.Databases(ctx, project, instance)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.AddDatabase(project, instance, "pixelfed", "matrix_synapse"); err != nil {
		t.Fatal(err)
	}
	shared, err := db.Databases(ctx, project, instance)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		all       []string
		wantAll   string
		wantOther string
	}{
		{alone, "postgres", ""},
		{own, "postgres,mastodon_production", ""},
		{shared, "postgres,mastodon_production,pixelfed,matrix_synapse", "pixelfed,matrix_synapse"},
	} {
		if got := strings.Join(c.all, ","); got != c.wantAll {
			t.Errorf("Databases = %s, want %s", got, c.wantAll)
		}
		if got := strings.Join(database.OtherDatabases(c.all, "mastodon_production"), ","); got != c.wantOther {
			t.Errorf("OtherDatabases(%v) = %s, want %s", c.all, got, c.wantOther)
		}
	}
	if got := database.OtherDatabases(shared, "pixelfed"); strings.Join(got, ",") != "mastodon_production,matrix_synapse" {
		t.Errorf("with pixelfed as its own database, the others are %v", got)
	}

	srv.Deny("cloudsql.databases.list")
	_, err = db.Databases(ctx, project, instance)
	wantContains(t, err, "listing the databases of Cloud SQL instance "+instance, "missing permission cloudsql.databases.list")
	if _, err := db.Databases(ctx, project, "nope"); err == nil {
		t.Error("an unknown instance listed databases")
	}
}
