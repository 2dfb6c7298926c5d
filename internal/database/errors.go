package database

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/api/googleapi"
)

// apiCall says what a call to the Admin API was for, to explain its errors.
type apiCall struct {
	// doing is what the call was doing, in words: "starting an on-demand backup of ...".
	doing string
	// project and instance the call was about (instance is empty for operations).
	project, instance string
	// permission is the IAM permission the call needs.
	permission string
	// object is what else a 404 may be about: "backup run 123", "operation abc". Empty when
	// only the instance can be missing.
	object string
}

// Error is an error of the Cloud SQL Admin API, explained: what the operator was doing, why it
// failed, and what to do about it. It wraps the *googleapi.Error (or the transport error).
type Error struct {
	msg string
	err error
}

func (e *Error) Error() string { return e.msg }
func (e *Error) Unwrap() error { return e.err }

// apiError explains an error of the Admin API in words an on-call engineer can act on.
func apiError(err error, c apiCall) error {
	if err == nil {
		return nil
	}
	gerr := asGoogleAPI(err)
	if gerr == nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return &Error{msg: fmt.Sprintf("%s: %v", c.doing, err), err: err}
		}
		return &Error{msg: fmt.Sprintf("%s: could not reach the Cloud SQL Admin API: %v", c.doing, err), err: err}
	}

	var why string
	switch code := gerr.Code; {
	case code == 400:
		why = "the Cloud SQL Admin API refused the request as invalid"
	case code == 401:
		why = "the Cloud SQL Admin API rejected the operator's Google credentials " +
			"(expired, or the Workload Identity binding of its ServiceAccount is wrong)"
	case code == 403 && apiDisabled(gerr):
		why = fmt.Sprintf("the Cloud SQL Admin API is not enabled on project %s: "+
			"`gcloud services enable sqladmin.googleapis.com --project %s`", c.project, c.project)
	case code == 403:
		why = fmt.Sprintf("missing permission %s on project %s: grant the operator's Google service account "+
			"roles/cloudsql.admin, or a role with %s, on that project "+
			"(if it has it, check that %s is the project the instance is in)",
			c.permission, c.project, c.permission, c.project)
	case code == 404 && c.instance != "" && (c.object == "" || hasReason(gerr, "instanceDoesNotExist")):
		why = fmt.Sprintf("Cloud SQL instance %s not found in project %s: check the instance and project "+
			"names (spec.rollback.database.cloudSQL)", c.instance, c.project)
	case code == 404 && c.instance != "":
		why = fmt.Sprintf("%s not found on Cloud SQL instance %s in project %s (or the instance itself is gone)",
			c.object, c.instance, c.project)
	case code == 404:
		why = fmt.Sprintf("%s not found in project %s", c.object, c.project)
	case code == 409:
		why = fmt.Sprintf("another operation is in progress on Cloud SQL instance %s, which runs one at a time: "+
			"try again when it has ended (`gcloud sql operations list --instance %s --project %s`)",
			c.instance, c.instance, c.project)
	case code == 429:
		why = fmt.Sprintf("the Cloud SQL Admin API quota of project %s is used up for now: try again later", c.project)
	case code >= 500:
		why = fmt.Sprintf("the Cloud SQL Admin API failed (HTTP %d), usually for a short while: try again later", code)
	default:
		why = fmt.Sprintf("the Cloud SQL Admin API answered HTTP %d", code)
	}
	return &Error{msg: fmt.Sprintf("%s: %s [%s]", c.doing, why, serverSays(gerr)), err: err}
}

// serverSays is what the API itself said: "HTTP 403 notAuthorized: The client is not ...".
func serverSays(gerr *googleapi.Error) string {
	var reasons []string
	for _, item := range gerr.Errors {
		if item.Reason != "" {
			reasons = append(reasons, item.Reason)
		}
	}
	s := fmt.Sprintf("HTTP %d", gerr.Code)
	if len(reasons) > 0 {
		s += " " + strings.Join(reasons, ",")
	}
	msg := gerr.Message
	if msg == "" && len(gerr.Errors) > 0 {
		msg = gerr.Errors[0].Message
	}
	if msg != "" {
		s += ": " + msg
	}
	return s
}

func hasReason(gerr *googleapi.Error, reason string) bool {
	for _, item := range gerr.Errors {
		if item.Reason == reason {
			return true
		}
	}
	return false
}

// apiDisabled tells a 403 for an API that is not enabled on the project from a missing permission.
func apiDisabled(gerr *googleapi.Error) bool {
	if hasReason(gerr, "accessNotConfigured") || hasReason(gerr, "SERVICE_DISABLED") {
		return true
	}
	return strings.Contains(gerr.Body, "SERVICE_DISABLED") ||
		strings.Contains(gerr.Message, "has not been used in project") ||
		strings.Contains(gerr.Message, "it is disabled")
}
