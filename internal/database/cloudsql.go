// Package database takes and restores Cloud SQL backups through the Cloud SQL Admin API (v1).
//
// Nothing here waits for a backup or a restore to finish: each call either starts an operation or
// looks at one, so a reconcile loop can record the id it gets in status and come back later. The
// calls that start something are idempotent, because the operator can restart between starting an
// operation and recording its id:
//
//   - StartBackup finds an existing backup run by its description before it starts one;
//   - StartRestore finds a RESTORE_VOLUME operation on the instance, started after the backup
//     ended, before it starts one.
//
// Errors name what failed and what to do about it (a missing IAM permission, an unknown instance,
// an instance busy with another operation) and wrap the *googleapi.Error they come from.
package database

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
	sqladmin "google.golang.org/api/sqladmin/v1"
)

// Backup run states of the Cloud SQL Admin API (BackupRun.status).
const (
	BackupEnqueued   = "ENQUEUED"
	BackupRunning    = "RUNNING"
	BackupSuccessful = "SUCCESSFUL"
	BackupFailed     = "FAILED"
	BackupSkipped    = "SKIPPED"
	BackupOverdue    = "OVERDUE"
)

// Operation states and the operation type of a restore (Operation.status, Operation.operationType).
const (
	OperationPending = "PENDING"
	OperationRunning = "RUNNING"
	OperationDone    = "DONE"

	OperationRestoreVolume = "RESTORE_VOLUME"
)

// operationsScanLimit bounds how many pages of an instance's operations StartRestore reads while it
// looks for a restore it may have started already; the list is newest first and the scan stops at
// the first operation older than the backup anyway.
const operationsScanLimit = 20

// CloudSQL is a client of the Cloud SQL Admin API.
type CloudSQL struct {
	svc *sqladmin.Service
}

// Backup is a Cloud SQL backup run.
type Backup struct {
	// ID is the backup run's id, unique within its instance (a decimal number).
	ID string
	// Status is the backup run's state: ENQUEUED, RUNNING, SUCCESSFUL, FAILED, ...
	Status string
	// Description is the description the run was started with.
	Description string
	// EnqueuedAt is when the run was asked for; EndedAt when it ended (zero while it runs).
	EnqueuedAt, EndedAt time.Time
	// Error is why the run failed, when Status is FAILED and the API says.
	Error string
}

// NewCloudSQL connects to the Cloud SQL Admin API. Without options it uses the Application Default
// Credentials (on GKE: the Google service account bound to the operator's Kubernetes
// ServiceAccount by Workload Identity). Tests pass option.WithEndpoint and
// option.WithoutAuthentication to point it at a local server.
func NewCloudSQL(ctx context.Context, opts ...option.ClientOption) (*CloudSQL, error) {
	svc, err := sqladmin.NewService(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to the Cloud SQL Admin API: %w (on GKE, bind the operator's "+
			"Kubernetes ServiceAccount to a Google service account with Workload Identity)", err)
	}
	return &CloudSQL{svc: svc}, nil
}

// StartBackup asks for an on-demand backup run of the instance with the given description, which
// must identify the caller's purpose (e.g. "mastodon-operator ns/name uid"). If a backup run with
// that description exists already, in any state, it returns the newest such run instead of starting
// another: a restart between this call and recording the id must not take two backups. A FAILED
// run is returned as it is; to try again, use another description.
//
// The returned Backup is usually ENQUEUED or RUNNING; look at it later with Backup.
func (c *CloudSQL) StartBackup(ctx context.Context, project, instance, description string) (*Backup, error) {
	if err := need("project", project, "instance", instance, "description", description); err != nil {
		return nil, err
	}
	existing, err := c.findBackup(ctx, project, instance, description)
	if err != nil || existing != nil {
		return existing, err
	}

	op, err := c.svc.BackupRuns.Insert(project, instance, &sqladmin.BackupRun{Description: description}).
		Context(ctx).Do()
	if err != nil {
		return nil, apiError(err, apiCall{
			doing:      fmt.Sprintf("starting an on-demand backup of Cloud SQL instance %s in project %s", instance, project),
			project:    project,
			instance:   instance,
			permission: "cloudsql.backupRuns.create",
		})
	}
	if op.BackupContext != nil && op.BackupContext.BackupId != 0 {
		return &Backup{
			ID:          strconv.FormatInt(op.BackupContext.BackupId, 10),
			Status:      BackupEnqueued,
			Description: description,
			EnqueuedAt:  parseTime(op.InsertTime),
		}, nil
	}
	// The operation does not say which backup run it made: find the run by its description.
	existing, err = c.findBackup(ctx, project, instance, description)
	if err != nil {
		return nil, err
	}
	if existing == nil {
		return nil, fmt.Errorf("started a backup of Cloud SQL instance %s in project %s (operation %s), "+
			"but no backup run with description %q is listed yet; it will be looked for again",
			instance, project, op.Name, description)
	}
	return existing, nil
}

// findBackup returns the newest backup run of the instance with the description, or nil.
func (c *CloudSQL) findBackup(ctx context.Context, project, instance, description string) (*Backup, error) {
	var found *sqladmin.BackupRun
	err := c.svc.BackupRuns.List(project, instance).Pages(ctx, func(page *sqladmin.BackupRunsListResponse) error {
		for _, run := range page.Items {
			if run == nil || run.Description != description {
				continue
			}
			if found == nil || parseTime(run.EnqueuedTime).After(parseTime(found.EnqueuedTime)) {
				found = run
			}
		}
		return nil
	})
	if err != nil {
		return nil, apiError(err, apiCall{
			doing:      fmt.Sprintf("listing the backup runs of Cloud SQL instance %s in project %s", instance, project),
			project:    project,
			instance:   instance,
			permission: "cloudsql.backupRuns.list",
		})
	}
	if found == nil {
		return nil, nil
	}
	return backupOf(found), nil
}

// Backup looks at one backup run of the instance: SUCCESSFUL, RUNNING, FAILED, ...
func (c *CloudSQL) Backup(ctx context.Context, project, instance, id string) (*Backup, error) {
	if err := need("project", project, "instance", instance, "backup id", id); err != nil {
		return nil, err
	}
	runID, err := parseBackupID(id)
	if err != nil {
		return nil, err
	}
	run, err := c.svc.BackupRuns.Get(project, instance, runID).Context(ctx).Do()
	if err != nil {
		return nil, apiError(err, apiCall{
			doing:      fmt.Sprintf("looking at backup run %s of Cloud SQL instance %s in project %s", id, instance, project),
			project:    project,
			instance:   instance,
			permission: "cloudsql.backupRuns.get",
			object:     "backup run " + id,
		})
	}
	return backupOf(run), nil
}

// StartRestore restores a backup run of the instance onto the instance itself (Level 3 of the
// rollback procedure: everything written since the backup is lost) and returns the name of the
// RESTORE_VOLUME operation; look at it with Operation.
//
// The backup run must be SUCCESSFUL. The Admin API does not say which backup a restore operation
// restores, so a RESTORE_VOLUME operation on the instance that was started after the backup ended
// and has not failed counts as this restore: StartRestore returns it instead of starting another,
// because a second restore would throw away what was written since the first. A restore that
// failed does not count, so calling StartRestore again after a failure tries again.
func (c *CloudSQL) StartRestore(ctx context.Context, project, instance, backupID string) (string, error) {
	if err := need("project", project, "instance", instance, "backup id", backupID); err != nil {
		return "", err
	}
	backup, err := c.Backup(ctx, project, instance, backupID)
	if err != nil {
		return "", err
	}
	if backup.Status != BackupSuccessful {
		msg := fmt.Sprintf("cannot restore Cloud SQL instance %s in project %s from backup run %s: the backup is %s, not %s",
			instance, project, backupID, backup.Status, BackupSuccessful)
		if backup.Error != "" {
			msg += " (" + backup.Error + ")"
		}
		return "", errors.New(msg)
	}

	since := backup.EndedAt
	if since.IsZero() {
		since = backup.EnqueuedAt
	}
	name, err := c.findRestore(ctx, project, instance, since)
	if err != nil || name != "" {
		return name, err
	}

	runID, _ := parseBackupID(backupID) // parsed by Backup already
	op, err := c.svc.Instances.RestoreBackup(project, instance, &sqladmin.InstancesRestoreBackupRequest{
		RestoreBackupContext: &sqladmin.RestoreBackupContext{
			BackupRunId: runID,
			InstanceId:  instance,
			Project:     project,
		},
	}).Context(ctx).Do()
	if err != nil {
		return "", apiError(err, apiCall{
			doing: fmt.Sprintf("starting the restore of Cloud SQL instance %s in project %s from backup run %s",
				instance, project, backupID),
			project:    project,
			instance:   instance,
			permission: "cloudsql.instances.restoreBackup",
			object:     "backup run " + backupID,
		})
	}
	if op.Name == "" {
		return "", fmt.Errorf("started the restore of Cloud SQL instance %s in project %s from backup run %s, "+
			"but the Cloud SQL Admin API returned no operation name", instance, project, backupID)
	}
	return op.Name, nil
}

// findRestore returns the name of the newest RESTORE_VOLUME operation on the instance that was
// started at or after since and has not failed, or "".
func (c *CloudSQL) findRestore(ctx context.Context, project, instance string, since time.Time) (string, error) {
	call := apiCall{
		doing:      fmt.Sprintf("listing the operations of Cloud SQL instance %s in project %s", instance, project),
		project:    project,
		instance:   instance,
		permission: "cloudsql.instances.list",
	}
	token := ""
	for range operationsScanLimit {
		req := c.svc.Operations.List(project).Instance(instance).Context(ctx)
		if token != "" {
			req = req.PageToken(token)
		}
		page, err := req.Do()
		if err != nil {
			return "", apiError(err, call)
		}
		for _, op := range page.Items {
			if op == nil {
				continue
			}
			inserted := parseTime(op.InsertTime)
			if !inserted.IsZero() && inserted.Before(since) {
				return "", nil // newest first: nothing older can be this restore
			}
			if op.OperationType != OperationRestoreVolume || (op.TargetId != "" && op.TargetId != instance) {
				continue
			}
			if op.Status == OperationDone && op.Error != nil && len(op.Error.Errors) > 0 {
				continue // failed: a new attempt may start
			}
			return op.Name, nil
		}
		if page.NextPageToken == "" {
			return "", nil
		}
		token = page.NextPageToken
	}
	return "", nil
}

// Operation looks at a Cloud SQL operation. done is true once the operation has ended; err is then
// an *OperationError if it failed. While it runs, Operation returns false and nil. If the operation
// cannot be looked at, Operation returns false and an error saying why.
func (c *CloudSQL) Operation(ctx context.Context, project, name string) (bool, error) {
	if err := need("project", project, "operation", name); err != nil {
		return false, err
	}
	op, err := c.svc.Operations.Get(project, name).Context(ctx).Do()
	if err != nil {
		return false, apiError(err, apiCall{
			doing:      fmt.Sprintf("looking at Cloud SQL operation %s in project %s", name, project),
			project:    project,
			permission: "cloudsql.instances.get",
			object:     "operation " + name,
		})
	}
	if op.Status != OperationDone {
		return false, nil
	}
	if op.Error != nil && len(op.Error.Errors) > 0 {
		oe := &OperationError{Operation: name, Type: op.OperationType, Project: project, Instance: op.TargetId}
		for _, e := range op.Error.Errors {
			if e != nil {
				oe.Errors = append(oe.Errors, OperationErrorItem{Code: e.Code, Message: e.Message})
			}
		}
		return true, oe
	}
	return true, nil
}

// OperationError is a Cloud SQL operation that ended with errors.
type OperationError struct {
	Operation, Type, Project, Instance string
	Errors                             []OperationErrorItem
}

// OperationErrorItem is one error of a failed operation, as the API reports it.
type OperationErrorItem struct{ Code, Message string }

func (e *OperationError) Error() string {
	var b strings.Builder
	b.WriteString("Cloud SQL operation " + e.Operation)
	var about []string
	if e.Type != "" {
		about = append(about, e.Type)
	}
	if e.Instance != "" {
		about = append(about, "of instance "+e.Instance)
	}
	if e.Project != "" {
		about = append(about, "in project "+e.Project)
	}
	if len(about) > 0 {
		b.WriteString(" (" + strings.Join(about, " ") + ")")
	}
	b.WriteString(" failed")
	for i, item := range e.Errors {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(describe(item.Message, item.Code))
	}
	b.WriteString("; see `gcloud sql operations describe " + e.Operation + " --project " + e.Project + "`")
	return b.String()
}

// describe joins a message and its code: "message (CODE)", or whichever of the two is set.
func describe(message, code string) string {
	switch {
	case message != "" && code != "":
		return message + " (" + code + ")"
	case message != "":
		return message
	default:
		return code
	}
}

func backupOf(run *sqladmin.BackupRun) *Backup {
	b := &Backup{
		ID:          strconv.FormatInt(run.Id, 10),
		Status:      run.Status,
		Description: run.Description,
		EnqueuedAt:  parseTime(run.EnqueuedTime),
		EndedAt:     parseTime(run.EndTime),
	}
	if run.Error != nil {
		b.Error = describe(run.Error.Message, run.Error.Code)
	}
	return b
}

func parseBackupID(id string) (int64, error) {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a Cloud SQL backup run id (a positive decimal number, as `gcloud sql backups list` shows)", id)
	}
	return n, nil
}

// parseTime reads an RFC 3339 time of the API; an empty or malformed one is the zero time.
func parseTime(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// need checks that every named argument is set: pairs of name and value.
func need(pairs ...string) error {
	var missing []string
	for i := 0; i+1 < len(pairs); i += 2 {
		if strings.TrimSpace(pairs[i+1]) == "" {
			missing = append(missing, pairs[i])
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("cloud SQL: no %s given", strings.Join(missing, ", "))
	}
	return nil
}

// asGoogleAPI returns the *googleapi.Error in err's chain, or nil.
func asGoogleAPI(err error) *googleapi.Error {
	var gerr *googleapi.Error
	if errors.As(err, &gerr) {
		return gerr
	}
	return nil
}

// systemDatabases are the databases Cloud SQL for PostgreSQL keeps on every instance for itself:
// `postgres`, which every instance is created with and which holds no application's data unless
// someone put it there, and `cloudsqladmin`, Cloud SQL's own (not listed by the API, but named
// in case it is); `template0` and `template1` are PostgreSQL's templates. A restore rewinds them
// too, harmlessly.
var systemDatabases = []string{"postgres", "cloudsqladmin", "template0", "template1"}

// Databases lists the names of the databases on the instance, in the API's order.
func (c *CloudSQL) Databases(ctx context.Context, project, instance string) ([]string, error) {
	if err := need("project", project, "instance", instance); err != nil {
		return nil, err
	}
	list, err := c.svc.Databases.List(project, instance).Context(ctx).Do()
	if err != nil {
		return nil, apiError(err, apiCall{
			doing:      fmt.Sprintf("listing the databases of Cloud SQL instance %s in project %s", instance, project),
			project:    project,
			instance:   instance,
			permission: "cloudsql.databases.list",
		})
	}
	var names []string
	for _, db := range list.Items {
		if db != nil && db.Name != "" {
			names = append(names, db.Name)
		}
	}
	return names, nil
}

// OtherDatabases are the databases of all that a restore of the instance would rewind besides
// own and Cloud SQL's system databases: another application's, or another Mastodon's.
func OtherDatabases(all []string, own string) []string {
	var other []string
	for _, name := range all {
		if name != own && !slices.Contains(systemDatabases, name) && !slices.Contains(other, name) {
			other = append(other, name)
		}
	}
	return other
}
