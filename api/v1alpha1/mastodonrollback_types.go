package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MastodonRollbackSpec asks for one rollback of a migration. It cannot change once created.
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="a MastodonRollback cannot be changed once created: create a new one (a higher level escalates)"
// +kubebuilder:validation:XValidation:rule="self.level < 3 || (has(self.confirmDataLoss) && self.confirmDataLoss)",message="level 3 restores the database from the pre-migration backup and loses every write made since: set confirmDataLoss: true to confirm"
type MastodonRollbackSpec struct {
	// MigrationRef names the MastodonMigration to roll back, in the same namespace.
	// +required
	MigrationRef LocalObjectReference `json:"migrationRef"`

	// Level of the rollback: 1 moves traffic back to the old stack, 2 also removes the Helm
	// release and restores the old manifests, 3 also restores the database from the backup.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=3
	// +required
	Level int32 `json:"level"`

	// Reason is why the rollback is asked for; it is recorded with the rollback.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Reason string `json:"reason,omitempty"`

	// ConfirmDataLoss must be true for level 3.
	// +optional
	ConfirmDataLoss bool `json:"confirmDataLoss,omitempty"`
}

// LocalObjectReference names an object in the same namespace.
type LocalObjectReference struct {
	// Name of the object.
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`
}

// RollbackPhase is where a MastodonRollback stands.
// +kubebuilder:validation:Enum=Pending;Running;Succeeded;Failed
type RollbackPhase string

// The phases of a MastodonRollback.
const (
	RollbackPending   RollbackPhase = "Pending"
	RollbackRunning   RollbackPhase = "Running"
	RollbackSucceeded RollbackPhase = "Succeeded"
	RollbackFailed    RollbackPhase = "Failed"
)

// MastodonRollbackStatus reports the rollback's progress and result.
type MastodonRollbackStatus struct {
	// Phase is where the rollback stands.
	// +optional
	Phase RollbackPhase `json:"phase,omitempty"`

	// ObservedGeneration is the last generation the operator has fully handled.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready, Reconciling and Stalled.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Steps records each step of the rollback.
	// +listType=map
	// +listMapKey=name
	// +optional
	Steps []StepStatus `json:"steps,omitempty"`
}

// MastodonRollback asks for a rollback of a MastodonMigration and reports its progress.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=mrb,categories=mastodon
// +kubebuilder:printcolumn:name="Migration",type=string,JSONPath=`.spec.migrationRef.name`
// +kubebuilder:printcolumn:name="Level",type=integer,JSONPath=`.spec.level`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MastodonRollback struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec MastodonRollbackSpec `json:"spec"`
	// Status is what the operator observed and did. Before its first write it holds
	// observedGeneration 0, so kstatus (Flux, kubectl wait) reads a new object as InProgress,
	// not Current.
	// +optional
	// +kubebuilder:default={observedGeneration: 0}
	Status MastodonRollbackStatus `json:"status,omitempty"`
}

// MastodonRollbackList is a list of MastodonRollbacks.
// +kubebuilder:object:root=true
type MastodonRollbackList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MastodonRollback `json:"items"`
}

func init() {
	SchemeBuilder.Register(&MastodonRollback{}, &MastodonRollbackList{})
}
