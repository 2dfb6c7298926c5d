package controllers

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/notify"
)

// ReasonNotificationsNotSent: spec.notifications names a Secret the operator cannot send with.
const ReasonNotificationsNotSent = "NotificationsNotSent"

// notify queues the messages for what the status write just stored, compared with the status
// the reconcile started from: a requeue that changes nothing sends nothing, and an operator that
// restarts starts from the stored status, so it does not send again either.
func (r *MastodonMigrationReconciler) notify(ctx context.Context, base, m *v1alpha1.MastodonMigration) {
	if r.Notifier == nil || m.Spec.Notifications == nil {
		return
	}
	msgs := notify.Changes(base, m, time.Now())
	if len(msgs) == 0 {
		return
	}
	to, problem := r.receivers(ctx, m)
	if problem != "" && ctx.Err() == nil {
		// The messages are lost: the Event says so, and how to fix it.
		r.Recorder.Eventf(m, nil, corev1.EventTypeWarning, ReasonNotificationsNotSent, "Notify",
			"%s", eventNote(problem+"; not sent: "+msgs[0].Summary))
	}
	if problem != "" {
		// An operator that is stopping lost these with its context: the next leader does not
		// send them either, as it starts from the stored status.
		return
	}
	r.Notifier.Send(to, msgs)
}

// receivers reads the notifications Secret; problem says why it cannot be used.
func (r *MastodonMigrationReconciler) receivers(ctx context.Context, m *v1alpha1.MastodonMigration) (notify.Receivers, string) {
	name := m.Spec.Notifications.SecretRef.Name
	var s corev1.Secret
	if err := r.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: name}, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return notify.Receivers{}, "Secret " + name + " of spec.notifications.secretRef not found"
		}
		return notify.Receivers{}, "reading Secret " + name + " of spec.notifications.secretRef: " + err.Error()
	}
	to := notify.Receivers{WebhookURL: string(s.Data[notify.KeyWebhookURL]), SlackURL: string(s.Data[notify.KeySlackURL])}
	if to.WebhookURL == "" && to.SlackURL == "" {
		return to, "Secret " + name + " of spec.notifications.secretRef has neither key " +
			notify.KeyWebhookURL + " nor " + notify.KeySlackURL
	}
	return to, ""
}
