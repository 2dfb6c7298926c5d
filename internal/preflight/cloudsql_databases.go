package preflight

import (
	"context"
	"fmt"
	"strings"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/database"
)

// chartDatabase is the official chart's default postgresql.database, what the release connects
// to when the values name none.
const chartDatabase = "mastodon"

// OwnDatabase is the PostgreSQL database the migration's Mastodon uses: postgresql.database of
// the release's values (generated from the old pods' DB_NAME), else the chart's default.
func OwnDatabase(values map[string]any) string {
	if pg, ok := values["postgresql"].(map[string]any); ok {
		if name, ok := pg["database"].(string); ok && name != "" {
			return name
		}
	}
	return chartDatabase
}

// listedNames is how many names a message lists before it counts the rest.
const listedNames = 20

// Names joins names for a message: the first listedNames, then how many more.
func Names(names []string) string {
	if len(names) <= listedNames {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:listedNames], ", "), len(names)-listedNames)
}

// cloudSQLDatabases lists the databases on the Cloud SQL instance that a level 3 rollback
// restores: a restore rewinds every database on it, not only Mastodon's. It is informational:
// levels 1 and 2 never touch the database, and level 3 lists them again and refuses on a
// shared instance unless spec.rollback.database.cloudSQL.sharedInstance is confirmed.
func cloudSQLDatabases(ctx context.Context, in Input) ([]v1alpha1.Finding, error) {
	instance := in.Migration.Spec.Rollback.Database.CloudSQL
	if instance == nil || in.Databases == nil {
		return nil, nil
	}
	object := "Cloud SQL instance " + instance.Project + "/" + instance.Instance
	info := func(format string, args ...any) []v1alpha1.Finding {
		f := finding(object, format, args...)
		f.Class = v1alpha1.FindingInformational
		return []v1alpha1.Finding{f}
	}
	all, err := in.Databases(ctx, instance.Project, instance.Instance)
	if err != nil {
		return info("could not list its databases (%v): a level 3 rollback lists them again before it restores, "+
			"and refuses while it cannot", err), nil
	}
	own := chartDatabase
	if in.Values != nil {
		if values, err := in.Values(ctx); err == nil {
			own = OwnDatabase(values)
		}
	}
	others := database.OtherDatabases(all, own)
	switch {
	case len(others) == 0:
		return info("holds %d databases (%s): none besides Mastodon's %s and Cloud SQL's own", len(all), Names(all), own), nil
	case instance.SharedInstance == v1alpha1.SharedInstanceConfirmed:
		return info("shared: besides Mastodon's %s it holds %s; sharedInstance is confirmed, so a level 3 rollback "+
			"rewinds them too, losing their writes since the backup", own, Names(others)), nil
	}
	return info("shared: besides Mastodon's %s it holds %s; restoring its backup rewinds them too, so a level 3 "+
		"rollback refuses unless spec.rollback.database.cloudSQL.sharedInstance is confirmed", own, Names(others)), nil
}
