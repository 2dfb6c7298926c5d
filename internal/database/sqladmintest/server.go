// Package sqladmintest is a local stand-in for the Cloud SQL Admin API v1, enough of it to take
// on-demand backups and restore them: an HTTP server on 127.0.0.1 that answers the real
// google.golang.org/api/sqladmin/v1 client with the JSON its types marshal to.
//
// It serves
//
//	POST /v1/projects/{project}/instances/{instance}/backupRuns          sql.backupRuns.insert
//	GET  /v1/projects/{project}/instances/{instance}/backupRuns          sql.backupRuns.list
//	GET  /v1/projects/{project}/instances/{instance}/backupRuns/{id}     sql.backupRuns.get
//	POST /v1/projects/{project}/instances/{instance}/restoreBackup       sql.instances.restoreBackup
//	GET  /v1/projects/{project}/operations?instance={instance}           sql.operations.list
//	GET  /v1/projects/{project}/operations/{operation}                   sql.operations.get
//	GET  /v1/projects/{project}/instances/{instance}/databases           sql.databases.list
//
// An instance holds the database `postgres` from its creation, as a Cloud SQL for PostgreSQL
// instance does (AddDatabase adds more). It
// behaves like Cloud SQL where a client can tell: an instance runs one backup or restore at a
// time (409 operationInProgress otherwise); an unknown instance is 404 instanceDoesNotExist; a
// denied permission is 403 notAuthorized; lists are newest first and paged. Backups and restores
// end after a number of polls and/or a duration (Timing), successfully unless told to fail.
// Every request is recorded (Calls) for tests to assert on.
//
// Point a client at it with the options of ClientOptions:
//
//	srv := sqladmintest.New(sqladmintest.Options{})
//	defer srv.Close()
//	srv.AddInstance("my-project", "mastodon-db")
//	svc, err := sqladmin.NewService(ctx, srv.ClientOptions()...)
package sqladmintest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"google.golang.org/api/option"
	sqladmin "google.golang.org/api/sqladmin/v1"
)

// The API methods served, by their ids in the API's discovery document: Call.API, Deny's
// permissions and FailNext use them.
const (
	BackupRunsInsert       = "sql.backupRuns.insert"
	BackupRunsGet          = "sql.backupRuns.get"
	BackupRunsList         = "sql.backupRuns.list"
	InstancesRestoreBackup = "sql.instances.restoreBackup"
	OperationsGet          = "sql.operations.get"
	OperationsList         = "sql.operations.list"
	DatabasesList          = "sql.databases.list"
)

// Permissions are the IAM permissions each method needs, as Cloud SQL documents them.
var Permissions = map[string][]string{
	BackupRunsInsert:       {"cloudsql.backupRuns.create"},
	BackupRunsGet:          {"cloudsql.backupRuns.get"},
	BackupRunsList:         {"cloudsql.backupRuns.list"},
	InstancesRestoreBackup: {"cloudsql.instances.restoreBackup", "cloudsql.backupRuns.get"},
	OperationsGet:          {"cloudsql.instances.get"},
	OperationsList:         {"cloudsql.instances.list"},
	DatabasesList:          {"cloudsql.databases.list"},
}

// Timing says when a backup or a restore ends: once it has been polled Polls times AND After has
// passed since it started. A poll is a get of the backup run or of the operation (lists do not
// count). The zero Timing ends at the first look.
type Timing struct {
	Polls int
	After time.Duration
}

// Options configure a Server. The zero value is usable.
type Options struct {
	// Backup and Restore say when backups and restores end.
	Backup, Restore Timing
	// Now is the server's clock; time.Now if nil.
	Now func() time.Time
	// PageSize is the page size of lists when the client sets no maxResults; 100 if zero.
	PageSize int
}

// Call is one request the server received.
type Call struct {
	// API is the method's id (BackupRunsInsert, ...); empty for a request to no known method.
	API    string
	Method string
	Path   string
	Query  url.Values
	Body   []byte
	// Status is the HTTP status the server answered.
	Status int
}

// Decode unmarshals the request's JSON body into v, e.g. a *sqladmin.InstancesRestoreBackupRequest.
func (c Call) Decode(v any) error { return json.Unmarshal(c.Body, v) }

// Server is a running stand-in for the Cloud SQL Admin API. Its methods are safe for concurrent use.
type Server struct {
	// URL is the server's base URL, http://127.0.0.1:port, without a trailing slash.
	URL string

	hs   *httptest.Server
	opts Options
	rand *rand.Rand

	mu         sync.Mutex
	instances  map[key]*instance
	operations []*operation // in the order they were started
	denied     map[string]bool
	failBackup *sqladmin.OperationError
	failRestor *sqladmin.OperationError
	inject     map[string][]apiError
	calls      []Call
	nextBackup int64
}

type key struct{ project, instance string }

type instance struct {
	databases []string     // in the order they were created
	backups   []*backupRun // in the order they were enqueued
	restored  []string     // ids of the backups restored onto it successfully, in order
}

type backupRun struct {
	run sqladmin.BackupRun // what the API shows, refreshed from op
	op  *operation         // nil for a seeded run, which has ended
}

type operation struct {
	op      sqladmin.Operation // what the API shows, refreshed from the job
	target  key
	backup  *backupRun // of a BACKUP_VOLUME operation
	restore string     // backup run id restored by a RESTORE_VOLUME operation
	timing  Timing
	started time.Time
	polls   int
	fail    *sqladmin.OperationError
}

type apiError struct {
	code            int
	reason, message string
}

// New starts a server on 127.0.0.1. Close it when done.
func New(opts Options) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 100
	}
	s := &Server{
		opts:       opts,
		rand:       rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x5eed)),
		instances:  map[key]*instance{},
		denied:     map[string]bool{},
		inject:     map[string][]apiError{},
		nextBackup: opts.Now().UnixMilli(),
	}
	mux := http.NewServeMux()
	s.route(mux, "POST /v1/projects/{project}/instances/{instance}/backupRuns", BackupRunsInsert, s.insertBackupRun)
	s.route(mux, "GET /v1/projects/{project}/instances/{instance}/backupRuns", BackupRunsList, s.listBackupRuns)
	s.route(mux, "GET /v1/projects/{project}/instances/{instance}/backupRuns/{id}", BackupRunsGet, s.getBackupRun)
	s.route(mux, "POST /v1/projects/{project}/instances/{instance}/restoreBackup", InstancesRestoreBackup, s.restoreBackup)
	s.route(mux, "GET /v1/projects/{project}/operations", OperationsList, s.listOperations)
	s.route(mux, "GET /v1/projects/{project}/operations/{operation}", OperationsGet, s.getOperation)
	s.route(mux, "GET /v1/projects/{project}/instances/{instance}/databases", DatabasesList, s.listDatabases)
	s.route(mux, "/", "", func(r *http.Request, _ []byte) (any, *apiError) {
		return nil, &apiError{http.StatusNotFound, "notFound",
			fmt.Sprintf("sqladmintest: no method serves %s %s", r.Method, r.URL.Path)}
	})
	s.hs = httptest.NewServer(mux)
	s.URL = s.hs.URL
	return s
}

// Close shuts the server down.
func (s *Server) Close() { s.hs.Close() }

// ClientOptions point a google.golang.org/api client at the server, without credentials.
func (s *Server) ClientOptions() []option.ClientOption {
	return []option.ClientOption{
		option.WithEndpoint(s.URL + "/"),
		option.WithoutAuthentication(),
		option.WithHTTPClient(s.hs.Client()),
	}
}

// AddInstance makes a Cloud SQL instance exist. Any other instance is 404.
func (s *Server) AddInstance(project, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key{project, name}
	if s.instances[k] == nil {
		s.instances[k] = &instance{databases: []string{"postgres"}}
	}
}

// AddDatabase creates databases on an instance that exists, as `gcloud sql databases create`
// does; one that exists already stays as it is.
func (s *Server) AddDatabase(project, name string, databases ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	inst := s.instances[key{project, name}]
	if inst == nil {
		return fmt.Errorf("sqladmintest: no instance %s in project %s", name, project)
	}
	for _, db := range databases {
		if !slices.Contains(inst.databases, db) {
			inst.databases = append(inst.databases, db)
		}
	}
	return nil
}

// RemoveInstance makes an instance unknown again (404), with its backups. Its operations stay.
func (s *Server) RemoveInstance(project, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.instances, key{project, name})
}

// Deny makes every method that needs one of the IAM permissions answer 403, in every project.
// "*" denies them all.
func (s *Server) Deny(permissions ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range permissions {
		s.denied[p] = true
	}
}

// Allow undoes Deny for the permissions; "*" allows everything again.
func (s *Server) Allow(permissions ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range permissions {
		if p == "*" {
			clear(s.denied)
		}
		delete(s.denied, p)
	}
}

// FailBackups makes the backups started from now on end FAILED, with the error code (e.g.
// "INTERNAL_ERROR") and message; an empty code and message makes them succeed again.
func (s *Server) FailBackups(code, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failBackup = operationError(code, message)
}

// FailRestores makes the restores started from now on end with the error code and message; an
// empty code and message makes them succeed again.
func (s *Server) FailRestores(code, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failRestor = operationError(code, message)
}

// FailNext makes the next request to the method (BackupRunsInsert, ...) answer the HTTP status
// with the error reason and message, before anything else is checked. Calls queue up.
func (s *Server) FailNext(api string, status int, reason, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inject[api] = append(s.inject[api], apiError{status, reason, message})
}

// AddBackupRun records a backup run that has ended, e.g. an automated one, and returns its id.
// Unset fields get defaults: status SUCCESSFUL, type AUTOMATED, enqueued and ended now.
func (s *Server) AddBackupRun(project, name string, run sqladmin.BackupRun) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inst := s.instances[key{project, name}]
	if inst == nil {
		return "", fmt.Errorf("sqladmintest: no instance %s in project %s; AddInstance first", name, project)
	}
	now := s.now()
	if run.Id == 0 {
		run.Id = s.newBackupID()
	}
	run.Kind = "sql#backupRun"
	run.Instance = name
	run.SelfLink = s.URL + fmt.Sprintf("/v1/projects/%s/instances/%s/backupRuns/%d", project, name, run.Id)
	setDefault(&run.Status, "SUCCESSFUL")
	setDefault(&run.Type, "AUTOMATED")
	setDefault(&run.EnqueuedTime, now)
	setDefault(&run.StartTime, run.EnqueuedTime)
	setDefault(&run.EndTime, run.StartTime)
	setDefault(&run.WindowStartTime, run.EnqueuedTime)
	setDefault(&run.BackupKind, "SNAPSHOT")
	setDefault(&run.Location, "us")
	inst.backups = append(inst.backups, &backupRun{run: run})
	return strconv.FormatInt(run.Id, 10), nil
}

// Calls returns every request received so far, in order.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// CallsTo returns the requests to one method (BackupRunsInsert, ...), in order, whatever they
// were answered.
func (s *Server) CallsTo(api string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if c.API == api {
			out = append(out, c)
		}
	}
	return out
}

// BackupRuns returns the instance's backup runs as the API would list them, newest first, without
// counting as a poll.
func (s *Server) BackupRuns(project, name string) []*sqladmin.BackupRun {
	s.mu.Lock()
	defer s.mu.Unlock()
	inst := s.instances[key{project, name}]
	if inst == nil {
		return nil
	}
	now := s.opts.Now()
	var out []*sqladmin.BackupRun
	for _, b := range slices.Backward(inst.backups) {
		s.advance(b.op, now, false)
		run := b.run
		out = append(out, &run)
	}
	return out
}

// Operations returns the operations on the instance as the API would list them, newest first,
// without counting as a poll.
func (s *Server) Operations(project, name string) []*sqladmin.Operation {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	var out []*sqladmin.Operation
	for _, o := range slices.Backward(s.operations) {
		if o.target == (key{project, name}) {
			s.advance(o, now, false)
			op := o.op
			out = append(out, &op)
		}
	}
	return out
}

// Restored returns the ids of the backup runs restored onto the instance so far, by restores that
// ended successfully, in order.
func (s *Server) Restored(project, name string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	for _, o := range s.operations {
		s.advance(o, now, false)
	}
	if inst := s.instances[key{project, name}]; inst != nil {
		return slices.Clone(inst.restored)
	}
	return nil
}

// --- handlers ---

type handler func(r *http.Request, body []byte) (any, *apiError)

// route serves one method: records the call, answers injected errors and denied permissions, then
// runs h under the lock and writes its answer.
func (s *Server) route(mux *http.ServeMux, pattern, api string, h handler) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		var (
			resp any
			aerr *apiError
		)
		if q := s.inject[api]; api != "" && len(q) > 0 {
			aerr = &q[0]
			s.inject[api] = q[1:]
		} else if perm := s.deniedPermission(api); perm != "" {
			aerr = &apiError{http.StatusForbidden, "notAuthorized", "The client is not authorized to make this request."}
		} else {
			resp, aerr = h(r, body)
		}
		status := http.StatusOK
		if aerr != nil {
			status = aerr.code
		}
		s.calls = append(s.calls, Call{API: api, Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(),
			Body: body, Status: status})
		s.mu.Unlock()

		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		w.WriteHeader(status)
		if aerr != nil {
			resp = errorBody(aerr)
		}
		var buf bytes.Buffer
		if err := json.NewEncoder(&buf).Encode(resp); err != nil {
			buf.Reset()
			fmt.Fprintf(&buf, `{"error":{"code":500,"message":%q}}`, err.Error())
		}
		_, _ = w.Write(buf.Bytes())
	})
}

func (s *Server) deniedPermission(api string) string {
	for _, p := range Permissions[api] {
		if s.denied["*"] || s.denied[p] {
			return p
		}
	}
	return ""
}

func (s *Server) insertBackupRun(r *http.Request, body []byte) (any, *apiError) {
	k, inst, aerr := s.instanceOf(r)
	if aerr != nil {
		return nil, aerr
	}
	var req sqladmin.BackupRun
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, invalid("Invalid JSON payload received. " + err.Error())
		}
	}
	if aerr := s.busy(k); aerr != nil {
		return nil, aerr
	}
	now := s.opts.Now()
	id := s.newBackupID()
	o := s.newOperation(k, "BACKUP_VOLUME", now, s.opts.Backup, s.failBackup)
	o.op.BackupContext = &sqladmin.BackupContext{BackupId: id, Kind: "sql#backupContext"}
	b := &backupRun{op: o, run: sqladmin.BackupRun{
		Kind:            "sql#backupRun",
		Id:              id,
		Instance:        k.instance,
		Description:     req.Description,
		Type:            "ON_DEMAND",
		Status:          "ENQUEUED",
		EnqueuedTime:    stamp(now),
		WindowStartTime: stamp(now),
		BackupKind:      "SNAPSHOT",
		Location:        "us",
		SelfLink:        s.URL + fmt.Sprintf("/v1/projects/%s/instances/%s/backupRuns/%d", k.project, k.instance, id),
	}}
	o.backup = b
	inst.backups = append(inst.backups, b)
	op := o.op
	return &op, nil
}

func (s *Server) getBackupRun(r *http.Request, _ []byte) (any, *apiError) {
	_, inst, aerr := s.instanceOf(r)
	if aerr != nil {
		return nil, aerr
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return nil, invalid(fmt.Sprintf("Invalid value at 'id' (TYPE_INT64), %q", r.PathValue("id")))
	}
	for _, b := range inst.backups {
		if b.run.Id == id {
			s.advance(b.op, s.opts.Now(), true)
			run := b.run
			return &run, nil
		}
	}
	return nil, &apiError{http.StatusNotFound, "notFound", "The backup run does not exist."}
}

func (s *Server) listBackupRuns(r *http.Request, _ []byte) (any, *apiError) {
	_, inst, aerr := s.instanceOf(r)
	if aerr != nil {
		return nil, aerr
	}
	now := s.opts.Now()
	var all []*sqladmin.BackupRun
	for _, b := range slices.Backward(inst.backups) {
		s.advance(b.op, now, false)
		run := b.run
		all = append(all, &run)
	}
	page, next, aerr := s.page(r, len(all))
	if aerr != nil {
		return nil, aerr
	}
	return &sqladmin.BackupRunsListResponse{Kind: "sql#backupRunsList", Items: all[page.from:page.to],
		NextPageToken: next}, nil
}

// listDatabases answers as Cloud SQL does: every database of the instance in one answer (the
// method has no paging), each with its instance and project.
func (s *Server) listDatabases(r *http.Request, _ []byte) (any, *apiError) {
	k, inst, aerr := s.instanceOf(r)
	if aerr != nil {
		return nil, aerr
	}
	resp := &sqladmin.DatabasesListResponse{Kind: "sql#databasesList"}
	for _, name := range inst.databases {
		resp.Items = append(resp.Items, &sqladmin.Database{Kind: "sql#database", Name: name, Instance: k.instance,
			Project: k.project, Charset: "UTF8", Collation: "en_US.UTF8",
			SelfLink: fmt.Sprintf("%s/v1/projects/%s/instances/%s/databases/%s", s.URL, k.project, k.instance, name)})
	}
	return resp, nil
}

func (s *Server) restoreBackup(r *http.Request, body []byte) (any, *apiError) {
	k, _, aerr := s.instanceOf(r)
	if aerr != nil {
		return nil, aerr
	}
	var req sqladmin.InstancesRestoreBackupRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, invalid("Invalid JSON payload received. " + err.Error())
	}
	rc := req.RestoreBackupContext
	if rc == nil || rc.BackupRunId == 0 {
		return nil, invalid("Invalid request: restoreBackupContext.backupRunId is required.")
	}
	source := key{rc.Project, rc.InstanceId}
	if source.project == "" {
		source.project = k.project
	}
	if source.instance == "" {
		source.instance = k.instance
	}
	src := s.instances[source]
	if src == nil {
		return nil, notFoundInstance()
	}
	var b *backupRun
	for _, c := range src.backups {
		if c.run.Id == rc.BackupRunId {
			b = c
		}
	}
	if b == nil {
		return nil, &apiError{http.StatusNotFound, "notFound", "The backup run does not exist."}
	}
	now := s.opts.Now()
	s.advance(b.op, now, false)
	if b.run.Status != "SUCCESSFUL" {
		return nil, invalid(fmt.Sprintf("Invalid request: backup run %d is %s; only a SUCCESSFUL backup can be restored.",
			b.run.Id, b.run.Status))
	}
	if aerr := s.busy(k); aerr != nil {
		return nil, aerr
	}
	o := s.newOperation(k, "RESTORE_VOLUME", now, s.opts.Restore, s.failRestor)
	o.restore = strconv.FormatInt(b.run.Id, 10)
	op := o.op
	return &op, nil
}

func (s *Server) getOperation(r *http.Request, _ []byte) (any, *apiError) {
	project, name := r.PathValue("project"), r.PathValue("operation")
	for _, o := range s.operations {
		if o.op.Name == name && o.target.project == project {
			s.advance(o, s.opts.Now(), true)
			op := o.op
			return &op, nil
		}
	}
	return nil, &apiError{http.StatusNotFound, "notFound", "The Cloud SQL operation does not exist."}
}

func (s *Server) listOperations(r *http.Request, _ []byte) (any, *apiError) {
	project := r.PathValue("project")
	name := r.URL.Query().Get("instance")
	if name != "" && s.instances[key{project, name}] == nil {
		return nil, notFoundInstance()
	}
	now := s.opts.Now()
	var all []*sqladmin.Operation
	for _, o := range slices.Backward(s.operations) {
		if o.target.project != project || (name != "" && o.target.instance != name) {
			continue
		}
		s.advance(o, now, false)
		op := o.op
		all = append(all, &op)
	}
	page, next, aerr := s.page(r, len(all))
	if aerr != nil {
		return nil, aerr
	}
	return &sqladmin.OperationsListResponse{Kind: "sql#operationsList", Items: all[page.from:page.to],
		NextPageToken: next}, nil
}

// --- state ---

func (s *Server) instanceOf(r *http.Request) (key, *instance, *apiError) {
	k := key{r.PathValue("project"), r.PathValue("instance")}
	inst := s.instances[k]
	if inst == nil {
		return k, nil, notFoundInstance()
	}
	return k, inst, nil
}

// busy answers 409 when a backup or restore of the instance has not ended.
func (s *Server) busy(k key) *apiError {
	now := s.opts.Now()
	for _, o := range s.operations {
		if o.target == k {
			s.advance(o, now, false)
			if o.op.Status != "DONE" {
				return &apiError{http.StatusConflict, "operationInProgress",
					"Operation failed because another operation was already in progress."}
			}
		}
	}
	return nil
}

func (s *Server) newOperation(k key, typ string, now time.Time, timing Timing, fail *sqladmin.OperationError) *operation {
	name := fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", s.rand.Uint32(), s.rand.Uint32()&0xffff,
		s.rand.Uint32()&0xfff, 0x8000|s.rand.Uint32()&0x3fff, s.rand.Uint64()&0xffffffffffff)
	o := &operation{
		target:  k,
		timing:  timing,
		started: now,
		fail:    fail,
		op: sqladmin.Operation{
			Kind:          "sql#operation",
			Name:          name,
			OperationType: typ,
			Status:        "PENDING",
			InsertTime:    stamp(now),
			TargetId:      k.instance,
			TargetProject: k.project,
			TargetLink:    s.URL + fmt.Sprintf("/v1/projects/%s/instances/%s", k.project, k.instance),
			SelfLink:      s.URL + fmt.Sprintf("/v1/projects/%s/operations/%s", k.project, name),
			User:          "mastodon-operator@" + k.project + ".iam.gserviceaccount.com",
		},
	}
	s.operations = append(s.operations, o)
	return o
}

// advance moves an operation (and its backup run) on: a poll counts towards its Timing; once the
// Timing is met it ends, failed if it was told to. A nil operation (a seeded backup) has ended.
func (s *Server) advance(o *operation, now time.Time, poll bool) {
	if o == nil || o.op.Status == "DONE" {
		return
	}
	if poll {
		o.polls++
	}
	if o.polls < o.timing.Polls || now.Sub(o.started) < o.timing.After {
		if poll || now.After(o.started) {
			o.op.Status = "RUNNING"
			setDefault(&o.op.StartTime, stamp(now))
			if b := o.backup; b != nil {
				b.run.Status = "RUNNING"
				setDefault(&b.run.StartTime, stamp(now))
			}
		}
		return
	}
	o.op.Status = "DONE"
	setDefault(&o.op.StartTime, stamp(now))
	o.op.EndTime = stamp(now)
	if o.fail != nil {
		e := *o.fail
		o.op.Error = &sqladmin.OperationErrors{Kind: "sql#operationErrors", Errors: []*sqladmin.OperationError{&e}}
	}
	if b := o.backup; b != nil {
		setDefault(&b.run.StartTime, stamp(now))
		b.run.EndTime = stamp(now)
		b.run.Status = "SUCCESSFUL"
		if o.fail != nil {
			e := *o.fail
			b.run.Status = "FAILED"
			b.run.Error = &e
		}
	}
	if o.restore != "" && o.fail == nil {
		if inst := s.instances[o.target]; inst != nil {
			inst.restored = append(inst.restored, o.restore)
		}
	}
}

func (s *Server) newBackupID() int64 {
	s.nextBackup++
	return s.nextBackup
}

func (s *Server) now() string { return stamp(s.opts.Now()) }

type span struct{ from, to int }

// page reads maxResults and pageToken (an offset) and returns the slice of n items to answer and
// the next page's token.
func (s *Server) page(r *http.Request, n int) (span, string, *apiError) {
	size := s.opts.PageSize
	if v := r.URL.Query().Get("maxResults"); v != "" {
		m, err := strconv.Atoi(v)
		if err != nil || m <= 0 {
			return span{}, "", invalid(fmt.Sprintf("Invalid value at 'max_results' (TYPE_UINT32), %q", v))
		}
		size = m
	}
	from := 0
	if v := r.URL.Query().Get("pageToken"); v != "" {
		m, err := strconv.Atoi(v)
		if err != nil || m < 0 || m > n {
			return span{}, "", invalid("Invalid page token.")
		}
		from = m
	}
	to := min(from+size, n)
	next := ""
	if to < n {
		next = strconv.Itoa(to)
	}
	return span{from, to}, next, nil
}

// --- JSON helpers ---

func errorBody(e *apiError) any {
	type item struct {
		Message string `json:"message"`
		Domain  string `json:"domain"`
		Reason  string `json:"reason"`
	}
	type status struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Errors  []item `json:"errors"`
		Status  string `json:"status,omitempty"`
	}
	return map[string]status{"error": {
		Code:    e.code,
		Message: e.message,
		Errors:  []item{{Message: e.message, Domain: "global", Reason: e.reason}},
		Status:  rpcStatus[e.code],
	}}
}

var rpcStatus = map[int]string{
	400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
	409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE",
}

func notFoundInstance() *apiError {
	return &apiError{http.StatusNotFound, "instanceDoesNotExist", "The Cloud SQL instance does not exist."}
}

func invalid(message string) *apiError {
	return &apiError{http.StatusBadRequest, "invalid", message}
}

func operationError(code, message string) *sqladmin.OperationError {
	if code == "" && message == "" {
		return nil
	}
	return &sqladmin.OperationError{Kind: "sql#operationError", Code: code, Message: message}
}

// stamp formats a time as the API does: RFC 3339 in UTC with milliseconds.
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

func setDefault(field *string, value string) {
	if *field == "" {
		*field = value
	}
}
